import { existsSync, statSync } from 'node:fs';
import { extname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../core/errors.js';

/** Where `vite build` writes the Playground (src/http → repo root → dist/playground, from src or dist alike). */
export const PLAYGROUND_DIR = fileURLToPath(new URL('../../dist/playground/', import.meta.url));

/** The page may talk to its own origin only: no CDN, no third-party font or script. */
const CSP = [
  "default-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "style-src 'self'",
  "script-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

/**
 * A file's `If-Match` that fails: RFC 9110 §13.1.1 compares entity tags strongly there, and the
 * only tags these files have are weak (`W/"size-mtime"`, from the static sender, which matched
 * its own weak tag): anything but `*` fails. The sender judges the other conditions.
 */
function checkIfMatch(request: FastifyRequest): void {
  const condition = request.headers['if-match'];
  if (condition === undefined) return;
  if (condition.trim() !== '*') {
    throw new ApiError('precondition_failed', "The file does not meet the request's conditions");
  }
  // RFC 9110 §13.2.2: with an If-Match, If-Unmodified-Since is not evaluated (the sender would).
  delete request.headers['if-unmodified-since'];
}

export interface PlaygroundOptions {
  /** The built app (default: dist/playground). */
  root?: string;
}

/**
 * Serves the Playground single-page app at /playground: built files under it, index.html for
 * every other /playground/* path (deep links such as /playground/okr/key-results#create), and
 * redirects `/` there.
 */
export async function playground(app: FastifyInstance, options: PlaygroundOptions): Promise<void> {
  const root = resolve(options.root ?? PLAYGROUND_DIR);
  app.get('/', async (_request, reply) => reply.redirect('/playground', 302));

  if (!existsSync(resolve(root, 'index.html'))) {
    // A server started from source without `npm run build`: say how to get the page.
    const notBuilt = async (_request: unknown, reply: FastifyReply) =>
      reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .send('The Playground is not built: run `npm run build` (npm start does it), then reload.\n');
    app.get('/playground', notBuilt);
    app.get('/playground/*', notBuilt);
    return;
  }

  await app.register(fastifyStatic, { root, serve: false });

  const sendIndex = (request: FastifyRequest, reply: FastifyReply) => {
    checkIfMatch(request);
    return reply.header('content-security-policy', CSP).sendFile('index.html', { cacheControl: false, maxAge: 0 });
  };

  app.get('/playground', async (request, reply) => sendIndex(request, reply.header('cache-control', 'no-cache')));
  app.get<{ Params: { '*': string } }>('/playground/*', async (request, reply) => {
    const rel = request.params['*'] ?? '';
    const file = resolve(root, rel);
    const inside = file.startsWith(root + sep);
    if (rel && inside && existsSync(file) && statSync(file).isFile()) {
      // Vite names assets by content hash: they never change under one name. Judged on the file
      // the path resolves to (`assets/..%2findex.html` is the app's page, to be revalidated).
      const immutable = relative(root, file).startsWith(`assets${sep}`);
      checkIfMatch(request);
      // The policy on every file: `/playground/index.html` is the app too (no framing by others).
      return (
        reply
          .header('content-security-policy', CSP)
          .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
          // No ranges: the Playground's files are small, and a range it cannot serve was a 400.
          .sendFile(rel, { cacheControl: false, acceptRanges: false })
      );
    }
    if (extname(rel) !== '') {
      return reply.code(404).type('text/plain; charset=utf-8').send(`Not found: /playground/${rel}\n`);
    }
    return sendIndex(request, reply.header('cache-control', 'no-cache'));
  });
}
