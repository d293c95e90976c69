import { createHash, createHmac } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { isoTime } from '../core/clock.js';
import { ApiError } from '../core/errors.js';
import { IDEMPOTENCY_KEY } from '../core/manifest-types.js';
import type { Principal } from '../core/resource.js';
import { MalformedBody } from '../core/validation.js';
import type { DB, Store } from '../store/database.js';
import { deferWrite, verify } from '../store/pg-batch.js';
import { IDEMPOTENCY_COLUMNS, IDEMPOTENCY_TABLE } from '../store/schema.js';
import { asApiError } from './problem.js';

/** A response as it is sent and, for idempotent requests, stored and replayed. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export const RETENTION_MS = 24 * 3600 * 1000;
/**
 * A claimed key whose request died without finishing can be taken over after this long, past
 * what the request may spend outside its transaction first (a sync's read of its feed, up to
 * the connector timeout: see Idempotency's `outsideMs`).
 */
const LEASE_MS = 60 * 1000;
/** Past what a request spends before its transaction, a claim held this long is likely orphaned. */
const STALE_AFTER_MS = 10 * 1000;

interface Claim {
  tenantId: string;
  scope: string;
  key: string;
  fingerprint: string;
  /** The fingerprints earlier builds gave the request (see Idempotency.earlierFingerprints). */
  earlier?: (() => string[]) | undefined;
  /** Claim time, so only this claim's own row is completed or released. */
  claimedAt: string;
  /** How long the claim holds before another request may take it over (see Idempotency.claim). */
  leaseMs: number;
}

/** A claim being released in the background (Idempotency.release), and whether a retry took it over. */
interface Releasing {
  claimedAt: string;
  taken: boolean;
}

/** A claim's key within the store: tenant, scope (app) and key, joined by NUL, which none holds. */
function claimKey(claim: Pick<Claim, 'tenantId' | 'scope' | 'key'>): string {
  return `${claim.tenantId}\u0000${claim.scope}\u0000${claim.key}`;
}

/** What a request's fingerprint hashes: method, path, caller and body's text. */
function requestText(method: string, url: string, principal: Principal, text: string): string {
  return `${method} ${url}\n${principal.sub}\n${text}`;
}

/**
 * The text of a request's body a fingerprint hashes. A body that is not JSON by its text, marked
 * so no JSON body's text is the same (JSON never starts with NUL). A JSON body by its members,
 * not their order: a retry that serialized the same object again (another client library, a
 * queue) is the same request.
 */
function bodyText(body: unknown): string {
  if (body === undefined) return '';
  if (body instanceof MalformedBody) return `\u0000${body.text}`;
  return JSON.stringify(sortedMembers(body));
}

/** A JSON value with every object's members in one order (by name), arrays as they are. */
function sortedMembers(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedMembers);
  // A number beyond a double's range (`1e400`) parses as ±Infinity, which JSON.stringify writes
  // as null: marked, so such a body is not the same request as one with null.
  if (typeof value === 'number' && !Number.isFinite(value)) return `\u0000${value}`;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) out[key] = sortedMembers((value as Record<string, unknown>)[key]);
  return out;
}

/**
 * Idempotency keys (PRODUCT.md §1): scoped by (tenant, app, key), fingerprinted by method, path,
 * caller and body; the first 2xx/4xx response is kept 24 h, stored in the same transaction as
 * the work, and replayed; a different fingerprint is 422; a request still running is 409.
 */
export class Idempotency {
  /**
   * `outsideMs`: the most a request may spend before its transaction (a connector's read): a
   * claim of such a request (Idempotency.claim's `outside`) holds that much longer.
   * `transaction`: where the key's own writes run (the claim, a 4xx's record, a release, the
   * sweep). On SQLite, the engine's group commit: they share its commits and, like every write,
   * wait for a lock another process holds without stalling this one. By default (PostgreSQL),
   * statements of their own.
   */
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** The HMAC key of fingerprints (ServerKeys.requestKey): the body may hold a secret. */
    private readonly key: Uint8Array,
    private readonly outsideMs = 0,
    transaction?: <T>(fn: (db: DB) => Promise<T>) => Promise<T>,
  ) {
    this.transaction = transaction ?? ((fn) => fn(this.store.db));
  }

  private readonly transaction: <T>(fn: (db: DB) => Promise<T>) => Promise<T>;

  parseKey(header: string | string[] | undefined): string | null {
    if (header === undefined) return null;
    if (Array.isArray(header) || !IDEMPOTENCY_KEY.test(header)) {
      const message = 'must be one header of 1–255 visible ASCII characters';
      throw new ApiError('invalid_header', `Idempotency-Key: ${message}`, {
        errors: [{ path: 'Idempotency-Key', code: 'invalid_header', message }],
      });
    }
    return header;
  }

  /** A request's fingerprint: an HMAC of its method, path, caller and body (bodyText). */
  fingerprint(method: string, url: string, principal: Principal, body: unknown): string {
    return createHmac('sha256', this.key)
      .update(requestText(method, url, principal, bodyText(body)))
      .digest('base64url');
  }

  /**
   * The fingerprints earlier builds gave the request, which a key they stored is kept with for
   * 24 h: a retry of its request across an upgrade (a rolling deploy, the SDK's retry of a 503
   * while servers restart) is replayed, not refused as another request (422). Builds before
   * 83ac4a2 hashed a JSON body's members in the order they came, and builds before the keyed
   * fingerprint hashed with plain SHA-256. Builds before the refusal of a member named twice
   * took such a body as JSON.parse reads it.
   */
  earlierFingerprints(method: string, url: string, principal: Principal, body: unknown): string[] {
    const sha256 = (text: string) =>
      createHash('sha256')
        .update(requestText(method, url, principal, text))
        .digest('base64url');
    const out = [sha256(bodyText(body))];
    let value = body;
    if (body instanceof MalformedBody) {
      // JSON this build refuses that earlier ones took (a member named twice, which JSON.parse
      // reads as its last): fingerprinted as they did, by the value they read.
      try {
        value = JSON.parse(body.text);
      } catch {
        return out;
      }
      if (value === null || typeof value !== 'object') return out;
      out.push(sha256(bodyText(value)));
    }
    if (value === undefined) return out;
    const asSent = JSON.stringify(value);
    if (asSent !== bodyText(value)) out.push(sha256(asSent));
    return out;
  }

  /**
   * Claims the key, or answers the replay (or throws 409/422). `outside`: the request spends
   * time before its transaction (a sync's read of its feed), so its claim's lease is longer by
   * `outsideMs`; every other write's is a minute.
   */
  async claim(
    principal: Principal,
    key: string,
    fingerprint: string,
    earlier?: () => string[],
    outside = false,
  ): Promise<{ claim: Claim } | { replay: StoredResponse }> {
    const now = this.clock.now();
    const claim: Claim = {
      tenantId: principal.tenantId,
      scope: principal.appId ?? '',
      key,
      fingerprint,
      earlier,
      claimedAt: isoTime(now),
      leaseMs: LEASE_MS + (outside ? this.outsideMs : 0),
    };
    try {
      const got = await this.transaction((db) => this.claimIn(db, claim, now));
      // Committed: the background release of the claim this one took over has nothing left to do.
      if ('tookOver' in got && got.tookOver) got.tookOver.taken = true;
      return 'claim' in got ? { claim: got.claim } : got;
    } catch (err) {
      // Failed as an outage, the claim may still have committed (its answer lost on the way, a
      // session cut at its read deadline): released in the background like a 5xx's, else the
      // retry would meet 409 in-flight for the lease's minute once the database is back.
      if (asApiError(err).status >= 500) void this.release(claim);
      throw err;
    }
  }

  private async claimIn(
    db: DB,
    claim: Claim,
    now: number,
  ): Promise<{ claim: Claim; tookOver?: Releasing } | { replay: StoredResponse }> {
    const { key, fingerprint } = claim;
    for (;;) {
      const inserted = await db
        .insertInto(IDEMPOTENCY_TABLE)
        .values({
          tenant_id: claim.tenantId,
          scope: claim.scope,
          key,
          fingerprint,
          state: 'running',
          claimed_at: claim.claimedAt,
          lease_until: isoTime(now + claim.leaseMs),
          expires_at: isoTime(now + RETENTION_MS),
        })
        .onConflict((oc) => oc.columns(['tenant_id', 'scope', 'key']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) return { claim };

      // Gone since the insert met it (swept, or released by a 5xx): try again.
      const row = await this.find(db, claim);
      if (!row) continue;
      const expired = Date.parse(row.expires_at as string) <= now;
      const abandoned = row.state === 'running' && Date.parse(row.lease_until as string) <= now;
      // A claim this process is releasing in the background (its request answered a 5xx, the
      // database away then): finished, so its retry takes it over now, not at the release's next
      // attempt (up to 16 s later after an outage, its Retry-After the lease's ~50 s).
      const releasing = this.#releasing.get(claimKey(claim));
      const released = row.state === 'running' && releasing?.claimedAt === row.claimed_at;
      if (expired || abandoned || released) {
        // A time of its own, after the claim it takes over: a release of that one, which names it
        // by its claim time, must never match this one (two claims in one millisecond).
        const before = Date.parse(row.claimed_at as string);
        if (Date.parse(claim.claimedAt) <= before) claim.claimedAt = isoTime(before + 1);
        const taken = await db
          .updateTable(IDEMPOTENCY_TABLE)
          .set({
            fingerprint,
            state: 'running',
            claimed_at: claim.claimedAt,
            lease_until: isoTime(now + claim.leaseMs),
            expires_at: isoTime(now + RETENTION_MS),
            status: null,
            headers: null,
            body: null,
          })
          .where('tenant_id', '=', claim.tenantId)
          .where('scope', '=', claim.scope)
          .where('key', '=', key)
          .where('claimed_at', '=', row.claimed_at as string)
          // As it was read: a claim whose work committed meanwhile (its answer lost on the way,
          // its COMMIT still in flight when the retry read it running) is replayed, not run again.
          .where('state', '=', row.state as string)
          .executeTakeFirst();
        if (Number(taken.numUpdatedRows) === 1) return released ? { claim, tookOver: releasing } : { claim };
        continue; // another request took it over first, or the work it held committed: read it again
      }
      if (row.fingerprint !== fingerprint && !claim.earlier?.().includes(row.fingerprint as string)) {
        throw new ApiError(
          'idempotency_key_reused',
          'This Idempotency-Key was used with a different request (method, path, caller or body)',
        );
      }
      if (row.state === 'running') {
        // A claim held longer than a request takes (its process may have died with it, `kill -9`)
        // is freed by its lease: Retry-After says when, not "a second" for up to a minute.
        // Past the time its own request may spend outside (the row's lease says how long that is).
        const claimedAt = Date.parse(row.claimed_at as string);
        const leaseUntil = Date.parse(row.lease_until as string);
        const held = now - claimedAt;
        const left = Math.ceil((leaseUntil - now) / 1000);
        const wait = held > leaseUntil - claimedAt - LEASE_MS + STALE_AFTER_MS ? Math.max(1, left) : 1;
        throw new ApiError(
          'idempotency_in_flight',
          'A request with this Idempotency-Key is still running; retry shortly',
          {
            headers: { 'retry-after': String(wait) },
          },
        );
      }
      return {
        replay: {
          status: Number(row.status),
          headers: JSON.parse(row.headers as string) as Record<string, string>,
          body: row.body as string,
        },
      };
    }
  }

  private find(db: DB, claim: Pick<Claim, 'tenantId' | 'scope' | 'key'>) {
    return db
      .selectFrom(IDEMPOTENCY_TABLE)
      .select(IDEMPOTENCY_COLUMNS)
      .where('tenant_id', '=', claim.tenantId)
      .where('scope', '=', claim.scope)
      .where('key', '=', claim.key)
      .executeTakeFirst();
  }

  /** Records the response; called inside the work's transaction (see `completeAlone` for a 4xx). */
  async complete(db: DB, claim: Claim, response: StoredResponse): Promise<void> {
    const update = db
      .updateTable(IDEMPOTENCY_TABLE)
      .set({ state: 'done', status: response.status, headers: JSON.stringify(response.headers), body: response.body })
      .where('tenant_id', '=', claim.tenantId)
      .where('scope', '=', claim.scope)
      .where('key', '=', claim.key)
      .where('claimed_at', '=', claim.claimedAt);
    // On PostgreSQL it goes to the server with the work's own writes (one statement before COMMIT),
    // checked there: a claim released meanwhile (the request outlived its statement timeout, was
    // answered 503, and a retry may run) fails the transaction, so the work is not done twice.
    const check = {
      rows: 1,
      error: () =>
        new ApiError(
          'service_unavailable',
          'This request took too long and its Idempotency-Key was released; retry it',
          {
            headers: { 'retry-after': '1' },
          },
        ),
    };
    const result = await db.executeQuery(deferWrite(update.compile(), check));
    if (result.numAffectedRows !== undefined) verify(check, Number(result.numAffectedRows));
  }

  /** Records the response of a request whose work failed (a 4xx), in a transaction of its own. */
  completeAlone(claim: Claim, response: StoredResponse): Promise<void> {
    return this.transaction((db) => this.complete(db, claim, response));
  }

  /**
   * Releases a claim (release) before a 5xx is answered, waiting for the first attempt at most
   * `ms`: where the database answers, the key is free by the time the answer is (a retry runs
   * again); where it does not (a pool with no connection to lend, the very wait that made the
   * 503), the answer goes without waiting a second connect timeout for the delete, which goes on
   * in the background (a retry meanwhile is 409 in flight, `Retry-After: 1`).
   */
  async releaseWithin(claim: Claim, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.release(claim),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Forgets a claim whose request failed with a 5xx, so a retry runs again. Only a claim still
   * running: when the work's transaction committed and its answer was lost on the way (the
   * connection dropped during COMMIT), the stored response stays and the retry replays it. When
   * the database cannot take the delete either (the outage that made the 5xx), it is tried
   * again in the background, a second, then twice as long each time, until the claim's lease
   * would free it anyway: else a retry would meet 409 in-flight for a minute after the outage.
   * Resolves after the first attempt; `settled` after the last.
   */
  release(claim: Claim): Promise<void> & { settled: Promise<boolean> } {
    const until = Date.parse(claim.claimedAt) + claim.leaseMs;
    const releasing = claimKey(claim);
    const entry = { claimedAt: claim.claimedAt, taken: false };
    this.#releasing.set(releasing, entry);
    let first!: () => void;
    const firstDone = new Promise<void>((resolve) => {
      first = resolve;
    });
    const settled = (async () => {
      for (let wait = 1000; ; wait *= 2) {
        if (entry.taken) return true;
        try {
          await this.transaction((db) =>
            db
              .deleteFrom(IDEMPOTENCY_TABLE)
              .where('tenant_id', '=', claim.tenantId)
              .where('scope', '=', claim.scope)
              .where('key', '=', claim.key)
              .where('claimed_at', '=', claim.claimedAt)
              .where('state', '=', 'running')
              .execute(),
          );
          return true;
        } catch {
          first();
          if (this.stopped || this.clock.now() + wait >= until) return false;
          await new Promise((resolve) => setTimeout(resolve, wait).unref());
          if (this.stopped) return false; // the store may be closed by now
        } finally {
          first();
        }
      }
    })().finally(() => {
      if (this.#releasing.get(releasing) === entry) this.#releasing.delete(releasing);
    });
    return Object.assign(firstDone, { settled });
  }

  /**
   * Claims being released (`release`), by key: the claim time of each, and whether a retry has
   * taken the claim over since (its release then stops).
   */
  readonly #releasing = new Map<string, Releasing>();

  /** Stops background releases (the server is closing). */
  stop(): void {
    this.stopped = true;
  }

  private stopped = false;

  /** Deletes expired keys; answers how many. */
  async sweep(): Promise<number> {
    const result = await this.transaction((db) =>
      db.deleteFrom(IDEMPOTENCY_TABLE).where('expires_at', '<=', isoTime(this.clock.now())).executeTakeFirst(),
    );
    return Number(result.numDeletedRows);
  }
}
