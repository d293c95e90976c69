// The ceiling: a bare node:http server answering fixed bytes (argv: body file, port, status,
// and a JSON file of the answer's headers, as EDM sent them). `GET /__pad?bytes=n` makes the body
// n bytes longer (spaces after the JSON), as EDM's answers grow during a write scenario.
import { readFileSync } from 'node:fs';
import http from 'node:http';

const base = readFileSync(process.argv[2]);
const status = Number(process.argv[4] ?? 200);
const headers = process.argv[5]
  ? JSON.parse(readFileSync(process.argv[5], 'utf8'))
  : { 'content-type': 'application/json; charset=utf-8' };
let body = base;
http
  .createServer((req, res) => {
    if (req.url === '/healthz') {
      res.end('{"status":"ok"}');
      return;
    }
    if (req.url?.startsWith('/__pad?bytes=')) {
      body = Buffer.concat([base, Buffer.alloc(Number(req.url.slice('/__pad?bytes='.length)), 0x20)]);
      res.end();
      return;
    }
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { ...headers, 'content-length': body.length });
      res.end(body);
    });
  })
  .listen(Number(process.argv[3]), '127.0.0.1');
