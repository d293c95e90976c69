import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  importSPKI,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
} from 'jose';
import { LRUCache } from 'lru-cache';
import type { Clock } from './clock.js';
import { maskedUrl } from './config.js';
import { ApiError } from './errors.js';
import type { Principal } from './resource.js';
import { isStorableText, longerThan } from './validation.js';

export interface VerifierOptions {
  /** HS256 secret; absent when only public keys verify tokens. */
  secret?: Uint8Array | undefined;
  /** PEM public key (SPKI) for RS256, ES256 or EdDSA. */
  publicKey?: string | undefined;
  /** JWKS URL for RS256, ES256 or EdDSA keys chosen by `kid`. */
  jwksUrl?: string | undefined;
  clock: Clock;
  issuer?: string | undefined;
  audience?: string | undefined;
  /** Distinct tokens kept verified at once. */
  cacheSize?: number;
  /** The token cache's bound in estimated bytes (default TOKEN_CACHE_BYTES); see cachedTokenBytes. */
  cacheBytes?: number;
  /** How soon the JWKS may be fetched again for a `kid` it lacks (jose's cooldown; default 30 s). */
  jwksCooldownMs?: number;
  /** How long a fetched JWKS is used before it is fetched again (jose's cache age; default 10 minutes). */
  jwksMaxAgeMs?: number;
  /**
   * Told once each time the JWKS stops answering while a set fetched before still verifies
   * tokens (the server logs it): why, and when that set arrived.
   */
  onStaleKeys?: (why: Error, setArrivedAt: number) => void;
}

interface Cached {
  principal: Principal;
  /** Seconds since the epoch. */
  exp: number;
  nbf: number;
  /**
   * For a token verified by a key of the JWKS: how many sets had arrived when its verification
   * began, and when (ms, the server's clock) it must be verified again. A key taken out of the
   * JWKS is how an identity provider revokes it: a token it signed is refused once a set
   * without it arrives (fetched for another token's `kid`, or when jose's copy is 10 minutes
   * old and this entry expires), not only at the token's own `exp`.
   */
  jwks?: { fetched: number; recheckAt: number };
}

/** How long a JWKS-verified token is trusted before it is verified again (jose's JWKS cache age). */
export const JWKS_RECHECK_MS = 10 * 60 * 1000;

/** After a JWKS fetch fails, how long before it is tried again (the 503's Retry-After says so too). */
export const JWKS_RETRY_MS = 5_000;

/**
 * While the JWKS cannot be fetched, the last set that arrived keeps verifying tokens, for up to
 * this long after it arrived: an identity provider's outage does not stop every caller whose
 * token is not cached. Past it, 503 until a set arrives.
 */
export const JWKS_STALE_MAX_MS = 24 * 60 * 60 * 1000;

/** The longest `sub`, `tenant_id` or `app_id` a token may carry (both stores index them). */
export const MAX_CLAIM_LENGTH = 256;

/**
 * Why a `sub`, `tenant_id` or `app_id` value could key no row (said after the claim's name), or
 * null. Text with U+0000 or a lone surrogate: the two stores would see two callers, or one refuse
 * it. Longer than an index entry holds: refused here alike on both stores, not by PostgreSQL's
 * index as a 500. The CLI asks the same of the tenants and subjects it is given.
 */
export function claimProblem(value: string): string | null {
  if (!isStorableText(value)) return 'must be text without U+0000 or a lone surrogate';
  if (longerThan(value, MAX_CLAIM_LENGTH)) return `is longer than ${MAX_CLAIM_LENGTH} characters`;
  return null;
}

/** A key source that could not be read (a JWKS that did not answer, or not with a key set). */
class KeysUnavailable extends Error {}

/** Whether a JWKS failure is its fetch's (no answer, not 200, not a key set), not a key's or the token's. */
function unreachable(err: unknown): boolean {
  return (
    err instanceof KeysUnavailable ||
    (err as { cause?: unknown })?.cause instanceof KeysUnavailable ||
    err instanceof joseErrors.JWKSTimeout ||
    err instanceof joseErrors.JWKSInvalid
  );
}

function keysUnavailable(err: unknown): KeysUnavailable {
  return err instanceof KeysUnavailable ? err : new KeysUnavailable('The key set could not be fetched', { cause: err });
}

/**
 * A key of the last set that arrived, while the JWKS cannot be fetched. A `kid` it lacks may be
 * in the set that cannot be fetched: that is the server's matter (503), not the token's.
 */
async function fromStale(
  keys: JWTVerifyGetKey,
  unavailable: KeysUnavailable,
  ...args: Parameters<JWTVerifyGetKey>
): Promise<Awaited<ReturnType<JWTVerifyGetKey>>> {
  try {
    return await keys(...args);
  } catch (err) {
    if (err instanceof joseErrors.JWKSNoMatchingKey) throw unavailable;
    throw err;
  }
}

const ASYMMETRIC = ['RS256', 'ES256', 'EdDSA'];

/**
 * What a key source answers for a fault of the token itself, which no other key mends: its
 * claims (expired, not yet valid, wrong issuer or audience), its form, a refused algorithm.
 * Anything else — no key of its `kid`, a key that does not verify it, a JWKS that cannot be
 * fetched right now — and the next source is tried.
 */
const TOKEN_FAULTS = [
  joseErrors.JWTExpired,
  joseErrors.JWTClaimValidationFailed,
  joseErrors.JWTInvalid,
  joseErrors.JWSInvalid,
  joseErrors.JOSEAlgNotAllowed,
];

/** The token cache's default bound in estimated bytes: 64 MB. */
export const TOKEN_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * What a cached token is estimated to hold, in bytes: its text and its claims, the scopes a Set
 * of up to as many names as the text holds (~8 bytes of heap per character of a token that is
 * mostly scopes, measured), and the entry itself.
 */
export function cachedTokenBytes(token: string): number {
  return 512 + 8 * token.length;
}

/**
 * Verifies bearer tokens. Each distinct token is verified once and its claims cached until
 * `exp` in a bounded LRU: an HS256 verification costs more than the rest of a GET.
 */
export class TokenVerifier {
  private readonly cache: LRUCache<string, Cached>;
  /** Full signature verifications done (cache misses), for metrics and tests. */
  verifications = 0;

  /** The cached tokens' estimated bytes (cachedTokenBytes), for tests. */
  get cachedBytes(): number {
    return this.cache.calculatedSize;
  }

  /** The explicit allow-list: HS256 with a secret, the asymmetric ones with public keys. */
  private readonly algorithms: string[];

  constructor(private readonly options: VerifierOptions) {
    // Bounded by count and by memory: a token's scopes are a Set of up to as many names as its
    // text holds (a 9 KB token of 1,100 scopes took ~73 KB of heap), so 10,000 large tokens would
    // hold ~0.75 GB. Estimated at 8 bytes per character of the token, plus the entry itself.
    this.cache = new LRUCache({
      max: options.cacheSize ?? 10_000,
      maxSize: options.cacheBytes ?? TOKEN_CACHE_BYTES,
      sizeCalculation: (_cached, token) => cachedTokenBytes(token),
    });
    const asymmetric = Boolean(options.publicKey || options.jwksUrl);
    this.algorithms = [...(options.secret ? ['HS256'] : []), ...(asymmetric ? ASYMMETRIC : [])];
    // Each set that arrives is counted once its body is read, as jose puts it in place: a token
    // whose verification began before is verified again. A fetch that fails (no answer, another
    // status, a body that is not JSON) says so as KeysUnavailable.
    // As logs show it: its password and query (which may carry a key) masked.
    const shown = options.jwksUrl ? maskedUrl(options.jwksUrl, 'all') : '';
    const remote = options.jwksUrl
      ? createRemoteJWKSet(new URL(options.jwksUrl), {
          ...(options.jwksCooldownMs !== undefined ? { cooldownDuration: options.jwksCooldownMs } : {}),
          ...(options.jwksMaxAgeMs !== undefined ? { cacheMaxAge: options.jwksMaxAgeMs } : {}),
          [customFetch]: async (...args: Parameters<typeof fetch>) => {
            let response: Response;
            try {
              response = await fetch(...args);
            } catch (err) {
              // Why, from fetch's cause: refused, a name not found, a certificate not trusted, …
              const why = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
              const detail = String(why?.code ?? why?.message ?? (err as Error).message);
              throw new KeysUnavailable(`The key set at ${shown} did not answer (${detail})`, { cause: err });
            }
            if (response.status !== 200) {
              throw new KeysUnavailable(`The key set at ${shown} answered HTTP ${response.status}`);
            }
            const json = response.json.bind(response);
            response.json = async () => {
              let body: unknown;
              try {
                body = await json();
              } catch (err) {
                throw new KeysUnavailable(`The key set at ${shown} is not JSON`, { cause: err });
              }
              this.jwksFetches++;
              // Kept apart from jose's copy, which a failed fetch leaves unused once 10 minutes old.
              try {
                this.lastSet = { keys: createLocalJWKSet(body as JSONWebKeySet), at: options.clock.now() };
              } catch {
                // Not a key set: jose says so (JWKSInvalid) and the last set stays.
              }
              return body;
            };
            return response;
          },
        })
      : null;
    // Whether a token's key is in the set or not, or usable, is the token's matter (401); a set
    // that cannot be fetched is the server's (503: the token may well be good).
    const jwks: JWTVerifyGetKey | null = remote
      ? async (header, token) => {
          const now = options.clock.now();
          const stale = this.lastSet && now - this.lastSet.at < JWKS_STALE_MAX_MS ? this.lastSet : null;
          const failed = this.jwksFailure;
          // The set stopped answering moments ago: no fetch per request meanwhile. With a set
          // from before, verify by it, and fetch again in the background once the pause is over
          // (no request waits for a key set that may not answer for seconds).
          if (failed && (stale || now < failed.retryAt)) {
            if (stale && now >= failed.retryAt && !remote.reloading) {
              failed.retryAt = now + JWKS_RETRY_MS;
              remote.reload().then(
                () => {
                  this.jwksFailure = null;
                },
                (err: unknown) => {
                  this.jwksFailure = { error: keysUnavailable(err), retryAt: options.clock.now() + JWKS_RETRY_MS };
                },
              );
            }
            if (!stale) throw failed.error;
            return fromStale(stale.keys, failed.error, header, token);
          }
          try {
            const key = await remote(header, token);
            this.jwksFailure = null;
            return key;
          } catch (err) {
            if (!unreachable(err)) throw err;
            const error = keysUnavailable(err);
            if (!this.jwksFailure && stale) options.onStaleKeys?.(error, stale.at);
            this.jwksFailure = { error, retryAt: options.clock.now() + JWKS_RETRY_MS };
            if (!stale) throw error;
            return fromStale(stale.keys, error, header, token);
          }
        }
      : null;
    this.jwksSource = jwks;
    const pemKeys = new Map<string, Promise<CryptoKey | Uint8Array>>();
    const pem: JWTVerifyGetKey | null = options.publicKey
      ? async (header) => {
          const alg = header.alg as string;
          let key = pemKeys.get(alg);
          if (!key) {
            key = importSPKI(options.publicKey as string, alg);
            pemKeys.set(alg, key);
          }
          return key;
        }
      : null;
    const secret = options.secret;
    // Where the key of a token may be, by its algorithm, in the order tried: the secret for
    // HS256; for the others the JWKS's key of its `kid`, then the PEM key (both configured: a
    // rotation from one to the other).
    this.hs256 = secret ? [async () => secret] : [];
    this.asymmetric = [jwks, pem].filter((k): k is JWTVerifyGetKey => k !== null);
  }

  private readonly hs256: JWTVerifyGetKey[];
  private readonly asymmetric: JWTVerifyGetKey[];
  /** Sets of the JWKS that have arrived so far (see Cached.jwks). */
  private jwksFetches = 0;
  /** The last key set that arrived, and when (the server's clock): used while none can be fetched. */
  private lastSet: { keys: JWTVerifyGetKey; at: number } | null = null;
  /** The JWKS's last fetch failed: why, and when it may be tried again. */
  private jwksFailure: { error: KeysUnavailable; retryAt: number } | null = null;
  private readonly jwksSource: JWTVerifyGetKey | null;

  /** The principal of a token verified before and still valid; null when it needs verifying. */
  cached(token: string): Principal | null {
    const hit = this.cache.get(token);
    if (!hit) return null;
    const now = this.options.clock.now();
    if (hit.jwks && (now >= hit.jwks.recheckAt || this.jwksFetches !== hit.jwks.fetched)) return null;
    const nowSec = now / 1000;
    if (nowSec < hit.exp && nowSec >= hit.nbf) return hit.principal;
    if (nowSec >= hit.exp) this.cache.delete(token);
    throw new ApiError('invalid_token', nowSec >= hit.exp ? 'The token has expired' : 'The token is not yet valid');
  }

  async verify(token: string): Promise<Principal> {
    const hit = this.cached(token);
    if (hit) return hit;
    this.verifications++;
    // Read before any key is: a set that arrives while this verification runs makes its entry stale.
    const fetched = this.jwksFetches;
    const verifyOptions = {
      algorithms: this.algorithms,
      requiredClaims: ['exp', 'sub', 'tenant_id'],
      currentDate: new Date(this.options.clock.now()),
      ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
      ...(this.options.audience ? { audience: this.options.audience } : {}),
    };
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (err) {
      throw new ApiError('invalid_token', describeJoseError(err));
    }
    const sources = alg === 'HS256' ? this.hs256 : this.asymmetric;
    let failure: unknown = new joseErrors.JOSEAlgNotAllowed('no key for this algorithm');
    let verified: Record<string, unknown> | null = null;
    let by: JWTVerifyGetKey | null = null;
    let unavailable: KeysUnavailable | null = null;
    for (const source of sources) {
      try {
        verified = (await jwtVerify(token, source, verifyOptions)).payload;
        by = source;
        break;
      } catch (err) {
        if (err instanceof KeysUnavailable) {
          unavailable = err;
          continue;
        }
        // The next source may hold the key where this one had none that verifies the token; a
        // signature none verifies is said as such, not as the last source's missing key.
        if (!(failure instanceof joseErrors.JWSSignatureVerificationFailed)) failure = err;
        if (TOKEN_FAULTS.some((fault) => err instanceof fault)) {
          unavailable = null;
          break;
        }
      }
    }
    if (!verified) {
      if (unavailable) {
        // The request log says why (problem.ts logs a 503's cause): an operator learns of a JWKS
        // URL that is wrong, not only of the 503s.
        throw new ApiError('service_unavailable', 'The keys that verify tokens cannot be fetched now; retry shortly', {
          headers: { 'retry-after': String(JWKS_RETRY_MS / 1000) },
          cause: unavailable,
        });
      }
      throw new ApiError('invalid_token', describeJoseError(failure));
    }
    const payload = verified;
    const principal = toPrincipal(payload);
    const fromJwks = by !== null && by === this.jwksSource;
    this.cache.set(token, {
      principal,
      exp: payload.exp as number,
      nbf: typeof payload.nbf === 'number' ? payload.nbf : 0,
      ...(fromJwks ? { jwks: { fetched, recheckAt: this.options.clock.now() + JWKS_RECHECK_MS } } : {}),
    });
    return principal;
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'The token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `Token claim check failed: ${err.message}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'Token algorithm not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'Token signature is invalid';
  return 'The token could not be verified';
}

/**
 * A claim naming someone or something: a string of at most 256 characters that a store can hold
 * (claimProblem). Absent (or null) is refused where required, else read as none. Each refusal
 * says what is wrong: absent, not a string, empty, or what claimProblem finds.
 */
function nameClaim(name: string, value: unknown, required: true): string;
function nameClaim(name: string, value: unknown, required: false): string | null;
function nameClaim(name: string, value: unknown, required: boolean): string | null {
  if (value === undefined || value === null) {
    if (required) throw new ApiError('invalid_token', `The token has no ${name} claim`);
    return null;
  }
  if (typeof value !== 'string') throw new ApiError('invalid_token', `The ${name} claim must be a string`);
  // There but naming nothing: not taken as absent (an app named '' is no application).
  if (value === '') throw new ApiError('invalid_token', `The ${name} claim is empty`);
  const problem = claimProblem(value);
  if (problem) throw new ApiError('invalid_token', `The ${name} claim ${problem}`);
  return value;
}

function toPrincipal(payload: Record<string, unknown>): Principal {
  const sub = nameClaim('sub', payload.sub, true);
  const tenantId = nameClaim('tenant_id', payload.tenant_id, true);
  const appId = nameClaim('app_id', payload.app_id, false);
  const { scope } = payload;
  if (scope !== undefined && typeof scope !== 'string')
    throw new ApiError('invalid_token', 'The scope claim must be a string');
  return {
    sub,
    tenantId,
    appId,
    scopes: typeof scope === 'string' ? new Set(scope.split(' ').filter(Boolean)) : null,
  };
}

/** Whether the principal may read (or write) in the module; `okr:write` includes `okr:read`. */
export function hasScope(principal: Principal, module: string, write: boolean): boolean {
  if (principal.scopes === null) return true;
  if (principal.scopes.has(`${module}:write`)) return true;
  return !write && principal.scopes.has(`${module}:read`);
}

/** 403 unless the principal may read (or write) in the module (see hasScope). */
export function requireScope(principal: Principal, module: string, write: boolean): void {
  if (hasScope(principal, module, write)) return;
  const scope = `${module}:${write ? 'write' : 'read'}`;
  // RFC 6750 §3: the challenge names the error and the scope the call needs.
  throw new ApiError('insufficient_scope', `This call needs the ${scope} scope`, {
    headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="${scope}"` },
  });
}

export interface MintOptions {
  secret: Uint8Array;
  tenant: string;
  sub: string;
  app?: string | undefined;
  scope?: string | undefined;
  /** Lifetime: seconds, or `30m`, `1h`, `7d`. */
  ttl?: string | number;
  issuer?: string | undefined;
  audience?: string | undefined;
  now?: number;
}

/** The longest life `edm token` gives a token: ten years. */
export const MAX_TOKEN_TTL_S = 3650 * 86400;

export function parseTtl(ttl: string | number): number {
  if (typeof ttl === 'number') return ttl;
  const m = /^(\d+)\s*([smhd]?)$/.exec(ttl.trim());
  if (!m) throw new Error(`Invalid ttl ${ttl}: use seconds or a number with s, m, h or d`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

/** The tenant and sub of the Playground's dev token (local mode), and `edm seed`'s defaults. */
export const DEV_TENANT = 'dev';
export const DEV_SUB = 'usr-00000000-0000-4000-8000-000000000001';

/**
 * Mints an HS256 token for a tenant.
 * @example await mintToken({ secret, tenant: 'acme', sub: 'usr-…', scope: 'okr:read', ttl: '1h' })
 */
export async function mintToken(o: MintOptions): Promise<string> {
  const now = Math.floor((o.now ?? Date.now()) / 1000);
  const claims: Record<string, unknown> = { tenant_id: o.tenant };
  if (o.app) claims.app_id = o.app;
  if (o.scope) claims.scope = o.scope;
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(o.sub)
    .setIssuedAt(now)
    .setExpirationTime(now + parseTtl(o.ttl ?? '1h'));
  if (o.issuer) jwt = jwt.setIssuer(o.issuer);
  if (o.audience) jwt = jwt.setAudience(o.audience);
  return jwt.sign(o.secret);
}
