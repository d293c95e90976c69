import type { FastifyReply } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import { ApiError } from '../core/errors.js';
import type { Principal } from '../core/resource.js';

/** How many calls one caller may make per window (EDM_RATE_LIMIT, EDM_RATE_LIMIT_WINDOW_MS). */
export interface RateLimitPolicy {
  max: number;
  windowMs: number;
  /** How many callers' buckets are kept (least recently seen dropped first, i.e. refilled). */
  callers?: number;
  /** The kept buckets' bound in estimated bytes (default CALLER_BYTES; see callerBytes). */
  callerBytes?: number;
}

/**
 * The buckets' bound in estimated bytes. A caller's key holds its claims whole (up to 256 code
 * points each): 100,000 callers of long tenant and app ids held ~110 MB of heap, and a server
 * RSS of 384 MB. 100,000 callers of short ids fit in this.
 */
export const CALLER_BYTES = 24 * 1024 * 1024;

/** What a caller's bucket is estimated to hold, in bytes: its key (two bytes a character at most) and the entry. */
export function callerBytes(key: string): number {
  return 64 + 2 * key.length;
}

/** The headers every limited answer carries (browsers may read them: see the CORS policy). */
export const RATE_LIMIT_HEADERS = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'] as const;

/**
 * The budget a call counts against: each application of a tenant has its own (`app_id` of its
 * token), the tenant's people share one (tokens without `app_id`), and the tenant's signed
 * webhook pushes share another.
 */
export function rateLimitKey(principal: Principal, signed: boolean): string {
  // Joined by U+0000, which no claim may hold (auth.ts): claims with line breaks cannot make two
  // callers' keys the same (tenant `t` of app `z\npeople`, and the people of tenant `t\napp:z`).
  if (signed) return `${principal.tenantId}\u0000signed`;
  return principal.appId === null
    ? `${principal.tenantId}\u0000people`
    : `${principal.tenantId}\u0000app:${principal.appId}`;
}

/** Milliseconds of rounding tolerated in the bucket's arithmetic. */
const SLACK = 0.01;

/**
 * Per-caller token buckets, kept in this process (GCRA: one number per caller, the time at which
 * its bucket would be full again). A caller may spend `max` calls at once, and gets one back
 * every `windowMs / max`: `max` per window on average, with no burst of twice that where two
 * fixed windows meet.
 *
 * In place of `@fastify/rate-limit`, which counts fixed windows (a caller may spend twice its
 * budget where two windows meet) on `Date.now()` rather than the server's clock, from a hook of
 * its own: this runs inside the authentication hook, synchronously, so 401 and 403 come first by
 * construction. Under `wrk` (GET by id, 16 connections, one machine) both read 4–8 µs of CPU
 * per request above ~53 with the limit off (alternating runs); this check costs 0.3 µs in a loop,
 * and a build whose check returned at once read about as high, so that is mostly the spread
 * between processes of one build, not the check.
 */
export class RateLimiter {
  readonly #max: number;
  readonly #windowMs: number;
  /** Milliseconds one call's token takes to come back. */
  readonly #interval: number;
  readonly #full: LRUCache<string, number>;
  readonly #clock: Clock;
  readonly #limit: string;

  constructor(policy: RateLimitPolicy, clock: Clock) {
    this.#max = policy.max;
    this.#windowMs = policy.windowMs;
    this.#interval = policy.windowMs / policy.max;
    this.#full = new LRUCache({
      max: policy.callers ?? 100_000,
      maxSize: policy.callerBytes ?? CALLER_BYTES,
      sizeCalculation: (_full, key) => callerBytes(key),
    });
    this.#clock = clock;
    this.#limit = String(policy.max);
  }

  /** The kept buckets' estimated bytes (callerBytes), for tests. */
  get keptBytes(): number {
    return this.#full.calculatedSize;
  }

  /**
   * Spends one call of the caller's budget and sets the X-RateLimit-* headers; throws 429
   * `rate_limited` (with `Retry-After`) when none is left, spending nothing.
   */
  take(key: string, reply: FastifyReply): void {
    const { now, next } = this.refuseIfEmpty(key);
    this.#full.set(key, next);
    reply.header('x-ratelimit-limit', this.#limit);
    reply.header('x-ratelimit-remaining', String(Math.floor((this.#windowMs - (next - now) + SLACK) / this.#interval)));
    reply.header('x-ratelimit-reset', String(Math.ceil((next - now) / 1000)));
  }

  /**
   * Throws 429 `rate_limited` (with `Retry-After`) when the caller has no call left, spending
   * nothing either way: for a call that must do some work (a read) before it is admitted, so a
   * caller over its limit costs no such work.
   */
  refuseIfEmpty(key: string): { now: number; next: number } {
    const now = this.#clock.now();
    let full = Math.max(this.#full.get(key) ?? now, now);
    // A bucket is never more than empty: a time past now + windowMs is one kept before the
    // clock was set back (an NTP step, a VM resumed), and would refuse its caller for as long.
    if (full > now + this.#windowMs) {
      full = now + this.#windowMs;
      this.#full.set(key, full);
    }
    const next = full + this.#interval;
    // The bucket holds `windowMs` worth of calls: over that, this call has no token. (Times are
    // ~1.8e12 ms, precise to ~0.0002 ms, and the interval may be a fraction: hence SLACK.)
    const wait = next - now - this.#windowMs;
    if (wait > SLACK) {
      const retryAfter = Math.ceil(wait / 1000);
      throw new ApiError(
        'rate_limited',
        `Over ${this.#max} calls per ${this.#windowMs / 1000} s for this caller; retry in ${retryAfter} s`,
        {
          extra: { limit: this.#max, retry_after_seconds: retryAfter },
          headers: {
            'x-ratelimit-limit': this.#limit,
            'x-ratelimit-remaining': '0',
            'x-ratelimit-reset': String(Math.ceil((full - now) / 1000)),
            'retry-after': String(retryAfter),
          },
        },
      );
    }
    return { now, next };
  }
}
