import { randomFillSync } from 'node:crypto';
import { encodeTime } from 'ulid';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

/** Random bytes from a refilled pool: one system call per 4 KiB instead of one per id. */
function randomByte(): number {
  if (poolAt === pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  return pool[poolAt++];
}

function base32(n: number, chars: number): string {
  let out = '';
  for (let i = 0; i < chars; i++) {
    out = CROCKFORD[n % 32] + out;
    n = Math.floor(n / 32);
  }
  return out;
}

// The random half of a ULID as two 40-bit numbers; within one millisecond it counts up (monotonic).
let lastMs = -1;
let timePart = '';
let hi = 0;
let lo = 0;

/** A monotonic ULID: ids made by one process sort by creation, even within a millisecond. */
export function ulid(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    timePart = encodeTime(now, 10);
    hi = 0;
    lo = 0;
    for (let i = 0; i < 5; i++) {
      hi = hi * 256 + randomByte();
      lo = lo * 256 + randomByte();
    }
    // Leave headroom so counting up within the millisecond never overflows.
    lo = Math.floor(lo / 2);
  } else {
    lo++;
  }
  return `${timePart}${base32(hi, 8)}${base32(lo, 8)}`;
}

/** A new resource id: type prefix + `_` + ULID (`kr_01J…`); ids from one process sort by creation. */
export function newId(prefix: string): string {
  return `${prefix}_${ulid()}`;
}

/**
 * Request ids shaped like ULIDs (time, then 16 characters), from the same generator: unique and
 * ordered, without drawing fresh randomness for every request.
 * @example const id = requestIds(); id() // 'req_01JB…'
 */
export function requestIds(prefix = 'req'): () => string {
  return () => `${prefix}_${ulid()}`;
}
