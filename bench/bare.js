// The ceiling: a bare node:http server answering fixed bytes (argv: body file, port, status).
import { readFileSync } from 'node:fs';
import http from 'node:http';

const body = readFileSync(process.argv[2]);
const status = Number(process.argv[4] ?? 200);
http
  .createServer((req, res) => {
    if (req.url === '/healthz') {
      res.end('{"status":"ok"}');
      return;
    }
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
      res.end(body);
    });
  })
  .listen(Number(process.argv[3]), '127.0.0.1');
