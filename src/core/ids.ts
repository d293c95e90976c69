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

/** Every 10-bit value as its two Crockford base-32 characters. */
const PAIRS = Array.from({ length: 1024 }, (_, n) => `${CROCKFORD[n >> 5]}${CROCKFORD[n & 31]}`);
const TWO_20 = 2 ** 20;

/** A number below 2^40 as 8 Crockford base-32 characters, most significant first. */
export function base32x8(n: number): string {
  const high = Math.floor(n / TWO_20);
  const low = n % TWO_20;
  return PAIRS[high >> 10] + PAIRS[high & 1023] + PAIRS[low >> 10] + PAIRS[low & 1023];
}

// The random half of a ULID as two 40-bit numbers; within one millisecond it counts up (monotonic).
let lastMs = -1;
/** The time and the first random half, which hold for the millisecond. */
let head = '';
let lo = 0;

/**
 * A monotonic ULID: ids made by one process sort by creation, even within a millisecond or after
 * the clock was set back. Each call encodes only the half that counts (every request takes one
 * for its id).
 */
export function ulid(): string {
  const now = Date.now();
  // A clock set back (an NTP step, a VM resumed) keeps the last millisecond, counting up, until
  // it is past it again: ids made after it still sort after those made before (the ULID
  // spec's monotonic generator does the same).
  if (now > lastMs) {
    lastMs = now;
    let hi = 0;
    lo = 0;
    for (let i = 0; i < 5; i++) {
      hi = hi * 256 + randomByte();
      lo = lo * 256 + randomByte();
    }
    // Leave headroom so counting up within the millisecond never overflows.
    lo = Math.floor(lo / 2);
    head = encodeTime(now, 10) + base32x8(hi);
  } else {
    lo++;
  }
  return head + base32x8(lo);
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
