import { randomBytes } from 'node:crypto';
import { encodeTime, monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** A new resource id: type prefix + `_` + ULID (`kr_01J…`); ids from one process sort by creation. */
export function newId(prefix: string): string {
  return `${prefix}_${next()}`;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * Request ids shaped like ULIDs (time, then 16 characters): a random per-process prefix and a
 * counter instead of fresh randomness per request, which costs more than a cached GET.
 * @example const id = requestIds(); id() // 'req_01JB…'
 */
export function requestIds(prefix = 'req'): () => string {
  const bytes = randomBytes(8);
  const processPart = Array.from(bytes, (b) => CROCKFORD[b & 31]).join('');
  let counter = 0;
  let lastMs = -1;
  let timePart = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      timePart = encodeTime(now, 10);
    }
    counter = (counter + 1) % 32 ** 8;
    let c = counter;
    let tail = '';
    for (let i = 0; i < 8; i++) {
      tail = CROCKFORD[c & 31] + tail;
      c = Math.floor(c / 32);
    }
    return `${prefix}_${timePart}${processPart}${tail}`;
  };
}
