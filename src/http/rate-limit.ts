import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../core/errors.js';

/** How many calls one caller may make per window (EDM_RATE_LIMIT, EDM_RATE_LIMIT_WINDOW_MS). */
export interface RateLimitPolicy {
  max: number;
  windowMs: number;
  /** How many callers' counts are kept (least recently seen dropped first). */
  callers?: number;
}

/** The headers every limited answer carries (browsers may read them: see the CORS policy). */
export const RATE_LIMIT_HEADERS = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'] as const;

/**
 * The budget a call counts against: each application of a tenant has its own (`app_id` of its
 * token), the tenant's people share one (tokens without `app_id`), and the tenant's signed
 * webhook calls share another. Calls that need no token (manifest, OpenAPI, Playground, health)
 * are not limited. `null`: not limited.
 */
export function rateLimitKey(request: FastifyRequest): string | null {
  const principal = request.principal;
  if (principal === null) return null;
  if (request.routeOptions.config.signed) return `${principal.tenantId}\nsigned`;
  return `${principal.tenantId}\n${principal.appId === null ? 'people' : `app:${principal.appId}`}`;
}

/**
 * Per-caller rate limits with `@fastify/rate-limit` (fixed windows, counted in this process).
 * It runs after authentication (it needs the token's tenant and app) and before the body is
 * parsed, so a 401 or 403 comes first and an over-limit caller's body is never read. Every
 * limited answer carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds); a refused one
 * is 429 `rate_limited` with `Retry-After`. Register it before the routes it covers.
 */
export async function registerRateLimit(app: FastifyInstance, policy: RateLimitPolicy): Promise<void> {
  await app.register(rateLimit, {
    global: true,
    max: policy.max,
    timeWindow: policy.windowMs,
    cache: policy.callers ?? 100_000,
    hook: 'preParsing',
    keyGenerator: (request) => rateLimitKey(request) ?? '',
    allowList: (request) => request.principal === null,
    errorResponseBuilder: (_request, context) =>
      new ApiError(
        'rate_limited',
        `Over ${context.max} calls per ${policy.windowMs / 1000} s for this caller; retry in ${context.after}`,
        { extra: { limit: context.max, retry_after_seconds: Math.ceil(context.ttl / 1000) } },
      ),
  });
}
