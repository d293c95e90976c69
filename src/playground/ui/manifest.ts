import type { Manifest, ManifestModule, ManifestOperation, ManifestResource } from '../../core/manifest-types';

export type {
  Manifest,
  ManifestField,
  ManifestHeader,
  ManifestModule,
  ManifestOperation,
  ManifestResource,
} from '../../core/manifest-types';

export { IDEMPOTENCY_KEY, limitsText, requiredUnlessText } from '../../core/manifest-types';

export const MANIFEST_PATH = '/api/v1/manifest';

/** Why the manifest could not be loaded, worded for the page. */
export class ManifestError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

/** Loads `GET /api/v1/manifest` from the serving origin. */
export async function fetchManifest(fetchImpl: typeof fetch = fetch): Promise<Manifest> {
  let res: Response;
  try {
    res = await fetchImpl(MANIFEST_PATH, { headers: { accept: 'application/json' } });
  } catch (err) {
    throw new ManifestError(`The server could not be reached (${(err as Error).message}).`, null);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok) {
    const detail = (body as { detail?: unknown } | null)?.detail;
    const why = typeof detail === 'string' ? detail : res.statusText || 'no detail';
    throw new ManifestError(`GET ${MANIFEST_PATH} answered ${res.status}: ${why}`, res.status);
  }
  if (!isManifest(body)) {
    throw new ManifestError(`GET ${MANIFEST_PATH} did not answer a manifest (no modules list).`, res.status);
  }
  return body;
}

function isManifest(body: unknown): body is Manifest {
  const m = body as Manifest | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    Array.isArray(m.modules) &&
    m.modules.every((mod) => typeof mod?.name === 'string' && Array.isArray(mod.resources))
  );
}

/** The URL segment of a resource: `key-results` for `/api/v1/okr/key-results`. */
export function resourceSlug(resource: ManifestResource): string {
  return resource.path.split('/').filter(Boolean).pop() ?? resource.name;
}

export function findResource(
  manifest: Manifest,
  module: string | null,
  slug: string | null,
): { module: ManifestModule; resource: ManifestResource } | null {
  const mod = manifest.modules.find((m) => m.name === module);
  const resource = mod?.resources.find((r) => resourceSlug(r) === slug);
  return mod && resource ? { module: mod, resource } : null;
}

/** Names of the `{param}` placeholders of an operation's path, in order. */
export function pathParams(op: Pick<ManifestOperation, 'path'>): string[] {
  return [...op.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string);
}

/** `keyResult` for `KeyResult`: the variable name a snippet gives one document. */
export function camelName(name: string): string {
  return name.charAt(0).toLowerCase() + name.slice(1);
}

/**
 * Whether the SDK has a method for the operation. A signed one (a connector's webhook) has none:
 * another system calls its signed URL without a token, so the console sends it with plain fetch.
 */
export function viaSdk(op: ManifestOperation): op is ManifestOperation & { client_method: string } {
  return op.client_method !== null && op.auth !== 'signed_url';
}
