import type { ManifestOperation, ManifestResource } from './manifest';

const base = '/api/v1/okr/key-results';

function op(o: Partial<ManifestOperation> & Pick<ManifestOperation, 'name' | 'method' | 'path'>): ManifestOperation {
  return {
    summary: o.name,
    client_method: `client.okr.keyResults.${o.name}`,
    query: [],
    has_body: false,
    body_fields: null,
    example: null,
    response: 'resource',
    success_status: 200,
    auth: 'bearer',
    // As the manifest says: writes take an Idempotency-Key; update, delete and restore If-Match too.
    headers: o.method === 'GET' ? [] : o.path.endsWith('{id}') ? ['If-Match', 'Idempotency-Key'] : ['Idempotency-Key'],
    ...o,
  };
}

/** A KeyResult as GET /api/v1/manifest describes it (trimmed to what the tests need). */
export const keyResult: ManifestResource = {
  name: 'KeyResult',
  module: 'okr',
  path: base,
  description: 'A measurable result rolling up to an Objective.',
  id_prefix: 'kr',
  schema_version: 1,
  client_namespace: 'client.okr.keyResults',
  title_field: 'title',
  operations: [
    op({
      name: 'list',
      method: 'GET',
      path: base,
      response: 'list',
      query: [
        { name: 'limit', type: 'integer', description: 'Page size' },
        { name: 'status', type: 'string', description: 'Filter', enum: ['on_track', 'at_risk'], multiple: true },
        { name: 'progress_pct[gte]', type: 'number', description: 'At least' },
        { name: 'tag', type: 'string', description: 'Has any of these tags', multiple: true },
        { name: 'q', type: 'string', description: 'Title contains (case-insensitive)' },
      ],
    }),
    op({ name: 'get', method: 'GET', path: `${base}/{id}` }),
    op({
      name: 'create',
      method: 'POST',
      path: base,
      has_body: true,
      success_status: 201,
      example: { objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', title: 'Grow MRR to 120k', target: 120000 },
    }),
    op({
      name: 'delete',
      method: 'DELETE',
      path: `${base}/{id}`,
      query: [{ name: 'cascade', type: 'boolean', description: 'Children too' }],
    }),
    op({
      name: 'checkIns.create',
      method: 'POST',
      path: `${base}/{id}/check-ins`,
      has_body: true,
      success_status: 201,
      example: { value: 95000, note: 'Two deals closed' },
    }),
  ],
  fields: [
    {
      name: 'objective_id',
      type: 'string',
      required: true,
      always_present: false,
      notes: 'ID of the Objective this KeyResult contributes to.',
      enum: null,
      read_only: false,
      write_only: false,
      computed: false,
      default: null,
      pattern: null,
      ref: 'obj',
      platform: false,
      required_unless: null,
      default_rule: null,
      limits: null,
    },
  ],
  list: {
    sortable: ['created_at'],
    filterable: ['status'],
    default_sort: '-created_at',
    default_limit: 50,
    max_limit: 200,
  },
};

export const opNamed = (name: string): ManifestOperation =>
  keyResult.operations.find((o) => o.name === name) as ManifestOperation;

/** A custom write without a body, as a connector's `sync` is: `(id, undefined, options)` in the SDK. */
export const syncOp: ManifestOperation = op({
  name: 'sync',
  method: 'POST',
  path: `${base}/{id}/sync`,
  headers: ['If-Match', 'Idempotency-Key'],
});

/** A signed operation, as a connector's `webhook` is: no SDK method, called at a signed URL without a token. */
export const webhookOp: ManifestOperation = op({
  name: 'webhook',
  method: 'POST',
  path: `${base}/{id}/webhook`,
  client_method: null,
  auth: 'signed_url',
  has_body: true,
  example: { value: 5 },
  headers: ['If-Match', 'Idempotency-Key'],
  query: [
    { name: 'tenant_id', type: 'string', description: '' },
    { name: 'signature', type: 'string', description: '' },
  ],
});
