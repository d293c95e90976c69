/** Local mode's dev-token request, declared once for its route (app.ts) and its OpenAPI body. */
import { MAX_CLAIM_LENGTH } from '../core/auth.js';
import { text } from '../core/fields.js';
import { isNoBody, validateInput } from '../core/validation.js';

/** The dev-token request's members: both optional (the dev tenant and user otherwise). */
export const DEV_TOKEN_FIELDS = {
  // Not empty: "" (an unset variable in a script) is a 400, not a token for the default tenant.
  tenant_id: text({ minLength: 1, maxLength: MAX_CLAIM_LENGTH, notes: 'The tenant the token is for (default dev).' }),
  sub: text({ minLength: 1, maxLength: MAX_CLAIM_LENGTH, notes: 'The caller it names (default the dev user).' }),
};

/** The dev-token request's body, checked as any write's: a number for tenant_id is a 400, not the default tenant. */
export function devTokenBody(body: unknown): { tenant_id?: string; sub?: string } {
  if (isNoBody(body)) return {};
  const input = validateInput(DEV_TOKEN_FIELDS, body);
  return {
    ...(typeof input.tenant_id === 'string' ? { tenant_id: input.tenant_id } : {}),
    ...(typeof input.sub === 'string' ? { sub: input.sub } : {}),
  };
}
