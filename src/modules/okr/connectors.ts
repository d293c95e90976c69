import { isDeepStrictEqual } from 'node:util';
import { Type } from '@sinclair/typebox';
import { isoTime } from '../../core/clock.js';
import { ApiError, type FieldError } from '../../core/errors.js';
import { datetime, integer, json, number, text } from '../../core/fields.js';
import { OutboundError } from '../../core/outbound.js';
import {
  type CustomOperation,
  type Doc,
  defineResource,
  fillNullDefaults,
  type Job,
  type OutboundPolicy,
  parseSignature,
  signedUrl,
} from '../../core/resource.js';
import { isCredentialParam, type ServerKeys } from '../../core/secrets.js';
import { defineTable, type Tx } from '../../core/tables.js';
import { operationBody, validateInput } from '../../core/validation.js';
import { failureText, postgresUrlParts, readConnector, SSLMODES, sslmodeProblem } from './connector-read.js';
import { keyResults } from './key-results.js';
import { propagate } from './query-source.js';
import { recordSystemValue } from './values.js';

export const CONNECTOR_KINDS = ['http_json', 'postgres', 'webhook'] as const;
export const SYNC_STATUSES = ['ok', 'error'] as const;
/** How often a pulled connector syncs unless told otherwise (seconds). */
const DEFAULT_INTERVAL = 3600;

/** When each pulled connector syncs next. Platform-internal, small, not distributed. */
export const connectorSchedule = defineTable({
  name: 'okr_connector_schedule',
  columns: { tenant_id: 'text', connector_id: 'text', due_at: 'datetime' },
  primaryKey: ['tenant_id', 'connector_id'],
  indexes: [['due_at']],
  queue: true,
});

const ConfigSchema = Type.Object(
  {
    url: Type.Optional(
      Type.String({
        maxLength: 2000,
        description:
          'http_json: the URL to GET, shown to every reader: no credential in it (a user, a password, or a key in its query: that is the secret, sent as config.auth says).',
      }),
    ),
    pointer: Type.Optional(
      Type.String({ maxLength: 500, description: 'http_json: a JSON Pointer (RFC 6901) to the number.' }),
    ),
    headers: Type.Optional(
      // The key's maxLength is not kept by a Record's schema: propertyNames says it. The
      // resource's validate hook checks each name and the count (not maxProperties, which the
      // compiled schema would apply to a restored row too: HookContext.restoring).
      Type.Record(Type.String({ maxLength: 100 }), Type.String({ maxLength: 2000 }), {
        description:
          'http_json: extra request headers, at most 50, shown to every reader: no credential (that is the secret, sent as config.auth says).',
        propertyNames: { maxLength: 100 },
      }),
    ),
    auth: Type.Optional(
      Type.Union([Type.Literal('bearer'), Type.Literal('basic'), Type.Literal('header'), Type.Literal('query')], {
        description:
          'http_json: how the secret is sent. bearer (the default): `Authorization: Bearer <secret>`; basic: `Authorization: Basic` with the secret (`user:password`) in base64; header: as it is, in the header config.secret_header names; query: in the URL’s query parameter config.secret_param names.',
      }),
    ),
    secret_header: Type.Optional(
      Type.String({
        maxLength: 100,
        description: 'http_json, with config.auth `header`: the header the secret is sent in (`X-Api-Key`).',
      }),
    ),
    secret_param: Type.Optional(
      Type.String({
        maxLength: 100,
        description: 'http_json, with config.auth `query`: the URL query parameter the secret is sent in (`api_key`).',
      }),
    ),
    query: Type.Optional(
      Type.String({ maxLength: 10_000, description: 'postgres: one SQL statement; its first row’s first column.' }),
    ),
  },
  { additionalProperties: false },
);

/**
 * Why a postgres:// secret does not parse whole (a URL, with %-escapes that decode and an
 * `sslmode` libpq knows), or null. It says which part is wrong, never the secret itself.
 */
function postgresSecretProblem(secret: string): string | null {
  const message = 'the secret must be a postgres:// URL';
  if (!/^postgres(ql)?:\/\//.test(secret)) return message;
  let url: URL;
  try {
    url = new URL(secret);
  } catch {
    return `${message}: it does not parse as one`;
  }
  if (postgresUrlParts(url) !== null) {
    // A read takes the host, port, user, password and database from the URL's parts and sslmode
    // from its query, nothing else: `?port=6432` or `?host=…` would be dropped unsaid, and the read
    // would go where the parts say.
    const unread = [...new Set(url.searchParams.keys())].filter((name) => name !== 'sslmode');
    if (unread.length) {
      return `the secret's ${unread.map((n) => `?${n}`).join(', ')} is not read: a postgres connector takes its host, port, user, password and database from the URL's parts, and sslmode alone from its query`;
    }
    if (url.searchParams.getAll('sslmode').length > 1) return "the secret's ?sslmode is given more than once";
    // Read as TLS with no certificate check, a misspelt `verify_full` would drop the check unsaid.
    const sslmode = url.searchParams.get('sslmode');
    return sslmode === null || SSLMODES.includes(sslmode) ? null : sslmodeProblem(sslmode);
  }
  const parts: [string, string][] = [
    ['host', url.hostname],
    ['user', url.username],
    ['password', url.password],
    ['database name', url.pathname.slice(1)],
  ];
  for (const [part, text] of parts) {
    try {
      decodeURIComponent(text);
    } catch {
      return `the secret's ${part} has a malformed percent-escape: write a literal % as %25`;
    }
  }
  return `${message}: a percent-escape in it does not decode`;
}

/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** How many headers a connector sends, and how long a name is, at most (as the config's schema says). */
const MAX_HEADERS = 50;
const MAX_HEADER_NAME = 100;
/** A header value Node sends as is: visible Latin-1 and inner spaces or tabs, no line breaks. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HEADER_VALUE_TEXT = 'a header value is visible Latin-1 text without line breaks';
/** Headers the request itself owns: its host and framing, and what only a proxy may set or see. */
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-connection',
  // What a proxy in front of the feed may take for where to send the request on, or for whom it
  // comes from (a feed that lets in its own network by client address would let this one in).
  'forwarded',
  'x-forwarded-host',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-original-url',
  'x-rewrite-url',
  'via',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
]);

/**
 * Parts of a header's name that say it carries a credential, anywhere in it, read in lower case
 * without `-` and `_` (header names are case-insensitive: `X-AUTHKEY` is `XAuthKey`): auth (not
 * author…), token, secret, a password, an API, access, private or client key, a session, …
 */
const CREDENTIAL_NAME =
  /authori[sz]ation|auth(?!or)|cookie|token|secret|passw|pwd|apikey|accesskey|privatekey|clientkey|secretkey|signingkey|session|bearer|jwt|credential|signature/;
/** Words of a name, between `-`, `_` and a lower-case letter before an upper-case one (`X-Key`, `ClientSid`). */
const CREDENTIAL_WORD = /^(key|pass|sid)$/i;
/** A value in a scheme of HTTP authentication, whatever header sends it. */
const CREDENTIAL_VALUE = /^\s*(bearer|basic|digest|token|negotiate)\s+\S/i;

/**
 * Whether a header of config carries a credential, by its name or its value: config, which every
 * reader of the tenant sees, must not hold one (the secret does, sent as config.auth says).
 */
function carriesCredential(name: string, value: string): boolean {
  if (CREDENTIAL_NAME.test(name.toLowerCase().replace(/[-_]/g, '')) || CREDENTIAL_VALUE.test(value)) return true;
  const words = name.replace(/([a-z])([A-Z])/g, '$1-$2').split(/[-_]/);
  return words.some((w) => CREDENTIAL_WORD.test(w));
}

/** A query parameter's name a connector may send its secret in: RFC 3986's unreserved characters. */
const PARAM_NAME = /^[A-Za-z0-9._~-]+$/;

/** The first query parameter of a URL that carries a credential by its name (isCredentialParam), or null. */
function credentialParam(url: string): string | null {
  for (const name of new URL(url).searchParams.keys()) if (isCredentialParam(name)) return name;
  return null;
}

/** Why a feed's URL is none a sync can fetch (it is parsed as the sync parses it), or null. */
function feedUrlProblem(url: string): string | null {
  const message = 'config.url must be an http or https URL';
  if (!/^https?:\/\/[^/\s]+/i.test(url)) return message;
  try {
    new URL(url);
  } catch {
    return `${message}: ${url} does not parse as one`;
  }
  return null;
}

/** Whether a URL names a user or a password (which fetch sends as Basic credentials). */
function hasUserinfo(url: string): boolean {
  const parsed = new URL(url);
  return parsed.username !== '' || parsed.password !== '';
}

/** What one read of a connector came to: its value, or why there is none. */
export type SyncOutcome = { value: number } | { error: string };

/**
 * Reads a pulled connector, outside any transaction; a failure is an outcome, not a throw.
 * `readAt` (by `clock`) is when the feed was read: as the request went out, its host looked up
 * and checked (a read that failed before that, when it failed). Overlapping syncs are ordered by
 * it (applySync), not by when each was asked for: one may wait for a connection before it reads.
 */
export async function readOutcome(
  connector: Doc,
  policy: OutboundPolicy,
  clock: () => number,
): Promise<{ outcome: SyncOutcome; readAt: number }> {
  const sent: { at: number | null } = { at: null };
  let outcome: SyncOutcome;
  try {
    outcome = { value: await readConnector(connector, policy, () => (sent.at = clock())) };
  } catch (err) {
    if (!(err instanceof OutboundError)) throw err;
    outcome = { error: failureText(err.message, connector.secret) };
  }
  return { outcome, readAt: sent.at ?? clock() };
}

/** The internal field that says when the value (or failure) a connector last recorded was read. */
const LAST_READ_AT = 'last_read_at';

/**
 * Records one sync: on success, the value on every live key result the connector feeds whose
 * value it changes (system writes with snapshots, and the queries reading them); on failure,
 * nothing but the connector's `last_sync_status` and `last_error`. Schedules the next sync.
 * `readAt` is when the outcome was read (ms): an outcome read before the one recorded last (two
 * syncs overlapped, and the later read committed first) is older news and records nothing, as
 * does one read in the same millisecond (which of the two is older cannot be told). A
 * pushed value (`null`) is news as it arrives, in the order pushes take the connector's lock.
 * `slot`: the due time (ms) the schedule read it for, when it did (see nextSlot).
 */
export async function applySync(
  tx: Tx,
  tenantId: string,
  connector: Doc,
  outcome: SyncOutcome,
  readAt: number | null,
  slot: number | null = null,
): Promise<Doc> {
  const id = connector.id as string;
  const lastRead = typeof connector[LAST_READ_AT] === 'string' ? Date.parse(connector[LAST_READ_AT]) : null;
  if (readAt !== null && lastRead !== null && readAt <= lastRead) return connector;
  if ('value' in outcome) {
    const fed = await tx.findLive(keyResults, tenantId, { connector_id: id, data_source: 'connector' });
    // Their objectives first, as every write locks them (Tx.lock).
    const locked = await tx.lock(
      keyResults,
      tenantId,
      fed.map((row) => row.id as string),
    );
    const changed: Doc[] = [];
    for (const kr of locked.values()) {
      if (kr.is_deleted || kr.connector_id !== id || kr.data_source !== 'connector') continue;
      if (kr.current === outcome.value) continue; // an unchanged value records no snapshot
      changed.push(await recordSystemValue(tx, tenantId, kr, outcome.value));
    }
    // Every fed value first, then the queries reading them, each once: a query that reads two
    // of them records no value from halfway through the sync.
    await propagate(tx, tenantId, changed);
  }
  const after = await tx.systemWrite(connectors, connector, {
    last_sync_at: isoTime(tx.now),
    last_sync_status: 'value' in outcome ? 'ok' : 'error',
    last_error: 'error' in outcome ? outcome.error : null,
    last_value: 'value' in outcome ? outcome.value : connector.last_value,
    [LAST_READ_AT]: isoTime(readAt ?? Math.max(tx.now, lastRead ?? tx.now)),
  });
  await schedule(tx, after, nextSlot(slot, after.interval_seconds as number, tx.now));
  return after;
}

/**
 * When a connector is next due: a sync the schedule read for its due time `slot` (ms) is next due
 * a whole number of intervals after that slot, the first after `now`, so the schedule's lateness
 * (its job runs every 15 s; a read takes time) does not add up from one sync to the next: at 60 s,
 * syncs every 60 s, not every 75. Slots missed meanwhile (the server was down) are skipped, not
 * read in a row. A sync asked for (sync now, a new or changed feed) starts the count from `now`.
 */
export function nextSlot(slot: number | null, intervalSeconds: number, now: number): number {
  const interval = intervalSeconds * 1000;
  if (slot === null || !Number.isFinite(slot) || slot > now) return now + interval;
  return slot + (Math.floor((now - slot) / interval) + 1) * interval;
}

/** What a read of a connector went by: its kind, settings and secret (a value read under others is stale). */
function readFrom(connector: Doc): string {
  return JSON.stringify([connector.kind, connector.config, connector.secret]);
}

/** Puts a pulled connector in the schedule for `due` (ms), or takes it out (null, and for webhooks). */
async function schedule(tx: Tx, connector: Doc, due: number | null): Promise<void> {
  const key = { tenant_id: connector.tenant_id, connector_id: connector.id };
  if (due === null || connector.kind === 'webhook' || connector.is_deleted) await tx.remove(connectorSchedule, key);
  else await tx.upsert(connectorSchedule, { ...key, due_at: isoTime(due) });
}

/** What a sync (or a push) sets in the connector's example (docs only). */
const EXAMPLE_SYNCED = {
  last_sync_at: '2026-11-01T13:00:00.000Z',
  last_sync_status: 'ok',
  last_error: null,
  last_value: 118_500,
  updated_at: '2026-11-01T13:00:00.000Z',
};
/** The example connector's signed URL, up to its signature (docs only). */
const EXAMPLE_SIGNED = '/api/v1/okr/connectors/con_01JBZ7Q3V5R4N8KX2M6T9WCH1D/webhook?tenant_id=acme&signature=';
/** The connector's example as a webhook, with its first signed URL (docs only). */
const EXAMPLE_WEBHOOK = {
  kind: 'webhook',
  config: {},
  interval_seconds: null,
  webhook_url: `${EXAMPLE_SIGNED}q4c1T0b8JmZ2xGk7yVt5Hn3Rw9Lp6Ds0Fa2Ke8Uc1Yo`,
};

const syncOperation = {
  name: 'sync',
  method: 'POST',
  path: '/{id}/sync',
  summary:
    'Sync now: read the value and record it on every key result this connector feeds (a snapshot with source_type system where it changed). A failed read answers 200 with last_sync_status error and last_error.',
  response: { kind: 'resource', status: 200 },
  responseExample: EXAMPLE_SYNCED,
  async prepare({ resource, id, ops, outbound, clock }) {
    const connector = await ops.get(resource, id);
    if (connector.kind === 'webhook') {
      throw new ApiError('not_pulled', `Connector ${id} is a webhook: its values arrive at its webhook_url`);
    }
    if (connector.is_deleted) return null;
    return { ...(await readOutcome(connector, outbound, clock)), from: readFrom(connector) };
  },
  async run({ resource, principal, id, tx, ops, prepared }) {
    const connector = await ops.get(resource, id);
    // Deleted now, or when it was read (and restored since): nothing read to record.
    const read = prepared as { outcome: SyncOutcome; from: string; readAt: number } | null;
    if (connector.is_deleted || read === null) {
      throw new ApiError('resource_deleted', `Connector ${id} is deleted; restore it first`);
    }
    // Its settings changed while the feed was read: that value is not the new feed's (the change
    // queued a sync of its own).
    if (readFrom(connector) !== read.from) {
      throw new ApiError('version_conflict', `Connector ${id} changed while its feed was read; sync again`, {
        extra: { current_version: connector.version },
      });
    }
    // A sync that read the feed later and recorded first stands: this answers the connector as it left it.
    return applySync(tx, principal.tenantId, connector, read.outcome, read.readAt);
  },
} as const satisfies CustomOperation;

const pushFields = {
  value: number({ required: true, notes: 'The metric’s value now.' }),
};

/** The internal field that says which of a webhook connector's URLs is the current one. */
const WEBHOOK_GENERATION = 'webhook_generation';
/** Which of a webhook connector's URLs is the current one (0: the first; null in rows from before). */
const webhookGeneration = (connector: Doc) => Number(connector[WEBHOOK_GENERATION] ?? 0);

/** A webhook connector's signed URL: the current one of its generations. */
const webhookUrl = (keys: ServerKeys, connector: Doc) =>
  signedUrl(
    keys,
    connectors,
    'webhook',
    connector.tenant_id as string,
    connector.id as string,
    webhookGeneration(connector),
  );

/** `POST …/connectors/{id}/webhook?tenant_id=…&signature=…`: another system pushes a value. */
const webhookOperation = {
  name: 'webhook',
  method: 'POST',
  path: '/{id}/webhook',
  auth: 'signed',
  summary:
    'Push a value to a webhook connector, at its signed webhook_url (no token: the URL’s signature admits it); recorded like a sync.',
  ...operationBody(pushFields),
  response: { kind: 'resource', status: 200 },
  example: { value: 118_500 },
  // Only a webhook connector takes pushes: the connector's example as one, after this push.
  responseExample: { ...EXAMPLE_WEBHOOK, ...EXAMPLE_SYNCED },
  // Which URL is current is checked when the call is admitted (app.ts) and again here, under the
  // row's lock (a rotation may commit in between).
  signedGeneration: WEBHOOK_GENERATION,
  // A URL stays signed after its connector is deleted or turned into another kind: 404 then (a
  // restore brings it back; a turn back into a webhook signs a new one).
  acts: (connector) => connector.is_deleted !== true && connector.kind === 'webhook',
  async run({ resource, principal, id, body, query, tx, ops }) {
    const connector = await ops.get(resource, id);
    // Signed, but a URL this connector has replaced since (rotateWebhookUrl): refused as a forged one.
    const signed = typeof query.signature === 'string' ? parseSignature(query.signature) : null;
    if (signed?.generation !== webhookGeneration(connector)) {
      throw new ApiError('invalid_token', 'This webhook URL was replaced: use the webhook_url the connector shows now');
    }
    const input = validateInput(pushFields, body);
    return applySync(tx, principal.tenantId, connector, { value: input.value as number }, null);
  },
} as const satisfies CustomOperation;

/**
 * `POST …/connectors/{id}/rotate-webhook-url`: a new signed URL for a webhook connector, the old
 * one refused from then on (401), as a leaked credential is replaced.
 */
const rotateWebhookUrlOperation = {
  name: 'rotateWebhookUrl',
  method: 'POST',
  path: '/{id}/rotate-webhook-url',
  summary:
    'Replace a webhook connector’s webhook_url (a credential): the answer carries the new URL, and the old one is refused with 401 from now on.',
  response: { kind: 'resource', status: 200 },
  responseExample: {
    ...EXAMPLE_WEBHOOK,
    webhook_url: `${EXAMPLE_SIGNED}1.Vb7Qx2Lm9Tk4Rp0Wz6Hc3Nd8Ys1Fe5Ga2Uj7Ko4Ii0Q`,
    updated_at: EXAMPLE_SYNCED.updated_at,
  },
  // It replaces a credential the caller read: EDM_REQUIRE_IF_MATCH asks it for If-Match (428).
  overwrites: true,
  async run({ resource, id, ops }) {
    const connector = await ops.get(resource, id);
    // Only a webhook connector has a URL to replace; another kind is a row the caller sees, in
    // a state this call does not take (409, as a sync of a webhook connector is).
    if (connector.kind !== 'webhook') {
      throw new ApiError('not_webhook', `Connector ${id} is a ${connector.kind} connector: it has no webhook_url`);
    }
    return ops.update(resource, id, {}, { internal: { [WEBHOOK_GENERATION]: webhookGeneration(connector) + 1 } });
  },
} as const satisfies CustomOperation;

/**
 * A restored key result that a connector feeds missed what the connector read while it was
 * deleted: the connector's last value is recorded now, as a sync records one (a system write).
 */
export async function catchUpFeed(tx: Tx, tenantId: string, kr: Doc): Promise<void> {
  if (kr.data_source !== 'connector' || typeof kr.connector_id !== 'string') return;
  const feed = await tx.peek(connectors, tenantId, kr.connector_id);
  if (typeof feed?.last_value !== 'number' || feed.last_value === kr.current) return;
  await propagate(tx, tenantId, await recordSystemValue(tx, tenantId, kr, feed.last_value));
}

const has = (config: Doc, key: string) => typeof config[key] === 'string' && (config[key] as string) !== '';

export const connectors = defineResource({
  module: 'okr',
  name: 'Connector',
  path: 'connectors',
  idPrefix: 'con',
  // 2: `webhook_url` is in every answer (builds before it stored documents without it), and
  // `source` and `source_type` are never null (a PATCH to null gives the default).
  schemaVersion: 2,
  description: 'A metric feed: one number per sync, recorded on every key result it feeds.',
  titleField: 'name',
  fields: {
    name: text({
      required: true,
      minLength: 1,
      maxLength: 200,
      example: 'Billing MRR',
      notes: 'What the feed measures.',
    }),
    kind: text({
      enum: CONNECTOR_KINDS,
      required: true,
      example: 'http_json',
      notes:
        'http_json: GET a URL and take the number at a JSON Pointer; postgres: one SQL query’s number; webhook: values pushed to its signed webhook_url.',
    }),
    config: json(ConfigSchema, {
      example: { url: 'https://billing.example.com/api/metrics/mrr', pointer: '/data/value' },
      notes: 'http_json: url, pointer, headers, auth, secret_header, secret_param; postgres: query; webhook: none.',
    }),
    secret: text({
      writeOnly: true,
      sealed: true,
      maxLength: 4000,
      notes:
        'Write-only, encrypted at rest, never returned. http_json: the credential, sent as config.auth says (a bearer token by default); postgres: the connection URL.',
    }),
    interval_seconds: integer({
      min: 60,
      max: 604_800,
      default: DEFAULT_INTERVAL,
      notes: 'How often a pulled connector syncs (60 s to 7 days; default 3600); null for a webhook.',
    }),
    last_sync_at: datetime({ computed: true, notes: 'When the last sync ran.' }),
    last_sync_status: text({ enum: SYNC_STATUSES, computed: true, notes: 'ok, or error (see last_error).' }),
    last_error: text({ computed: true, notes: 'Why the last sync failed; null after a good one.' }),
    last_value: number({ computed: true, notes: 'The last value a sync read.' }),
    webhook_url: text({
      computed: true,
      credential: true,
      notes:
        'webhook: where another system POSTs { "value": … } (path and query; the signature in it is the credential: keep it secret). Null to a token with read scope alone.',
    }),
  },
  internal: {
    [LAST_READ_AT]: datetime({
      notes: 'When the value (or failure) last recorded was read; a sync whose read came before it records nothing.',
    }),
    [WEBHOOK_GENERATION]: integer({
      default: 0,
      notes: 'Which signed webhook URL is the current one (rotateWebhookUrl adds one; 0: the first).',
    }),
  },
  tables: [connectorSchedule],
  operations: [syncOperation, webhookOperation, rotateWebhookUrlOperation],
  hooks: {
    // What a write derives now, for a row stored before: a webhook connector of a build before
    // webhook_url shows its URL (the first: such a row's generation is none, read as 0) and,
    // not being pulled, no interval (that build gave every kind the default); a pulled one that
    // build let a PATCH leave without an interval has the default.
    upgrade(doc, _fromVersion, { keys }) {
      fillNullDefaults(connectors, doc);
      if (doc.kind === 'webhook') {
        doc.webhook_url ??= webhookUrl(keys, doc);
        doc.interval_seconds = null;
      } else if (doc.interval_seconds === null) {
        doc.interval_seconds = DEFAULT_INTERVAL;
      }
    },
    prepare(doc, before, ctx) {
      doc.webhook_url = null;
      // Turned into a webhook (again): a URL of its own, not the one it had before it was
      // turned into another kind, which whoever held it could use again.
      if (before && before.kind !== 'webhook' && doc.kind === 'webhook') {
        doc[WEBHOOK_GENERATION] = webhookGeneration(before) + 1;
      }
      // A secret is used only as it was given for: a write that changes the kind or any setting
      // drops it unless it sends one too. Else whoever may edit the connector could point it at
      // a server of theirs and read the secret there, or have the feed echo it (a header, a
      // pointer to where the request's own headers are shown, another SQL query over the same
      // credentials) into `last_error`.
      if (before && !(ctx.input !== null && 'secret' in ctx.input)) {
        if (doc.kind !== before.kind || !isDeepStrictEqual(doc.config ?? null, before.config ?? null))
          doc.secret = null;
      }
      // A webhook is not pulled: no interval, unless the client sends one (400 below); a pulled
      // kind without one (a webhook turned into one, or a PATCH to null) takes the default.
      const given = ctx.input?.interval_seconds !== undefined && ctx.input.interval_seconds !== null;
      if (doc.kind === 'webhook' && !given) doc.interval_seconds = null;
      if (doc.kind !== 'webhook' && doc.interval_seconds === null) doc.interval_seconds = DEFAULT_INTERVAL;
    },
    async derive(doc, _before, ctx) {
      if (doc.kind === 'webhook') doc.webhook_url = webhookUrl(ctx.keys, doc);
    },
    validate(doc, before, ctx) {
      const errors: FieldError[] = [];
      const config = (doc.config ?? {}) as Doc;
      const newSecret = !before || doc.secret !== before.secret;
      const need = (key: string, what: string) => {
        if (!has(config, key)) {
          errors.push({ path: `/config/${key}`, code: 'required', message: `a ${doc.kind} connector needs ${what}` });
        }
      };
      const none = (keys: string[]) => {
        for (const key of keys) {
          if (config[key] !== undefined) {
            errors.push({
              path: `/config/${key}`,
              code: 'not_allowed',
              message: `${key} is not a setting of a ${doc.kind} connector`,
            });
          }
        }
      };
      if (doc.kind === 'http_json') {
        need('url', 'config.url');
        if (has(config, 'url')) {
          const problem = feedUrlProblem(config.url as string);
          // A user or password in it is refused where a write sets it (a stored one, an import's,
          // still takes a rename): every reader of the tenant sees config, a secret no one else.
          const setsUrl = (before?.config as { url?: unknown } | undefined)?.url !== config.url && !ctx.restoring;
          if (problem) errors.push({ path: '/config/url', code: 'invalid_url', message: problem });
          else if (setsUrl && hasUserinfo(config.url as string)) {
            errors.push({
              path: '/config/url',
              code: 'invalid_url',
              message:
                'config.url must not hold a user or password (every reader sees config): send them as the secret (user:password), with config.auth "basic", instead',
            });
          } else if (setsUrl) {
            const param = credentialParam(config.url as string);
            if (param !== null) {
              errors.push({
                path: '/config/url',
                code: 'credential_in_config',
                message: `config.url's query parameter ${JSON.stringify(param)} carries a credential, and every reader of the connector sees config: send its value as the secret, with config.auth "query" and config.secret_param ${JSON.stringify(param)}`,
              });
            }
          }
        }
        if (config.pointer !== undefined && config.pointer !== '' && !String(config.pointer).startsWith('/')) {
          errors.push({
            path: '/config/pointer',
            code: 'invalid_pointer',
            message: 'config.pointer must be a JSON Pointer: empty, or starting with /',
          });
        } else if (
          // Where the write sets it: a stored one (an import's) still takes a change of the URL.
          (before?.config as { pointer?: unknown } | undefined)?.pointer !== config.pointer &&
          !ctx.restoring &&
          /~(?![01])/.test(String(config.pointer ?? ''))
        ) {
          // RFC 6901: ~0 is ~ and ~1 is /; any other ~ is no pointer (a sync read it as text).
          errors.push({
            path: '/config/pointer',
            code: 'invalid_pointer',
            message: 'config.pointer escapes ~ as ~0 and / as ~1; another ~ is no JSON Pointer',
          });
        }
        // What the write sets: a connector stored under earlier rules still takes a rename or a
        // new URL, its headers left out of the patch or sent back as they were read.
        const stored = (before?.config as { headers?: unknown } | undefined)?.headers;
        const headers =
          before && isDeepStrictEqual(stored ?? null, config.headers ?? null)
            ? {}
            : ((config.headers ?? {}) as Record<string, string>);
        // Bounds added after rows could hold more: a restored row keeps what it held.
        const bounded = !ctx.restoring;
        if (bounded && Object.keys(headers).length > MAX_HEADERS) {
          errors.push({
            path: '/config/headers',
            code: 'too_many_items',
            message: `config.headers holds ${MAX_HEADERS} headers at most`,
          });
        }
        for (const [name, value] of Object.entries(headers)) {
          const path = `/config/headers/${name.replaceAll('~', '~0').replaceAll('/', '~1')}`;
          if (bounded && name.length > MAX_HEADER_NAME) {
            errors.push({
              path,
              code: 'invalid_header',
              message: `a header name is ${MAX_HEADER_NAME} characters at most`,
            });
          } else if (!HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) {
            const message = `${JSON.stringify(name)} is not a header a connector may send`;
            errors.push({ path, code: 'invalid_header', message });
          } else if (bounded && carriesCredential(name, value)) {
            const as =
              name.toLowerCase() === 'authorization'
                ? 'config.auth "bearer" or "basic", or "header" with config.secret_header "Authorization" to send it as it is'
                : `config.auth "header" and config.secret_header ${JSON.stringify(name)}`;
            errors.push({
              path,
              code: 'credential_in_config',
              message: `${JSON.stringify(name)} carries a credential, and every reader of the connector sees config: send its value as the secret, with ${as}`,
            });
          } else if (!HEADER_VALUE.test(value)) {
            errors.push({ path, code: 'invalid_header', message: HEADER_VALUE_TEXT });
          }
        }
        const auth = config.auth ?? 'bearer';
        // Where config.auth puts the secret, named by a setting of its own: a header
        // (secret_header) or a query parameter of the URL (secret_param), which config's own
        // headers or URL must not send too; the setting goes with that auth only.
        const carrier = (
          mode: 'header' | 'query',
          setting: 'secret_header' | 'secret_param',
          what: string,
          problem: (name: string) => Omit<FieldError, 'path'> | null,
          sentToo: (name: string) => string | null,
        ) => {
          const path = `/config/${setting}`;
          const name = config[setting];
          if (auth !== mode) {
            if (name !== undefined) {
              const message = `config.${setting} goes with config.auth "${mode}" only`;
              errors.push({ path, code: 'not_allowed', message });
            }
            return;
          }
          if (typeof name !== 'string' || name === '') {
            const message = `config.auth "${mode}" needs config.${setting}, the ${what} the secret is sent in`;
            errors.push({ path, code: 'required', message });
            return;
          }
          const refused = problem(name);
          const where = refused ? null : sentToo(name);
          if (refused) errors.push({ path, ...refused });
          else if (where) {
            const message = `${where} sends ${JSON.stringify(name)} too: the secret goes in it alone`;
            errors.push({ path, code: 'inconsistent', message });
          }
        };
        carrier(
          'header',
          'secret_header',
          'header',
          (name) =>
            !HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())
              ? { code: 'invalid_header', message: `${JSON.stringify(name)} is not a header a connector may send` }
              : null,
          (name) =>
            Object.keys((config.headers ?? {}) as Doc).some((h) => h.toLowerCase() === name.toLowerCase())
              ? 'config.headers'
              : null,
        );
        carrier(
          'query',
          'secret_param',
          'URL query parameter',
          (name) =>
            PARAM_NAME.test(name)
              ? null
              : { code: 'invalid_format', message: 'config.secret_param is letters, digits and - . _ ~ only' },
          (name) =>
            typeof config.url === 'string' && !feedUrlProblem(config.url) && new URL(config.url).searchParams.has(name)
              ? 'config.url'
              : null,
        );
        if (newSecret && typeof doc.secret === 'string') {
          if (auth === 'basic' && !doc.secret.includes(':')) {
            // RFC 7617: user-id ":" password (base64 makes any UTF-8 text a header value).
            errors.push({
              path: '/secret',
              code: 'invalid_format',
              message: 'with config.auth "basic" the secret is user:password',
            });
          } else if (auth !== 'basic' && auth !== 'query' && !HEADER_VALUE.test(doc.secret)) {
            // It goes in a header as it is (after "Bearer "); in a query, percent-encoded.
            errors.push({ path: '/secret', code: 'invalid_header', message: HEADER_VALUE_TEXT });
          }
        }
        none(['query']);
      } else if (doc.kind === 'postgres') {
        need('query', 'config.query');
        // No secret yet (an import brings none): its syncs fail, saying so, until one is set.
        const problem = newSecret && doc.secret !== null ? postgresSecretProblem(doc.secret as string) : null;
        if (problem) errors.push({ path: '/secret', code: 'invalid_url', message: problem });
        none(['url', 'pointer', 'headers', 'auth', 'secret_header', 'secret_param']);
      } else if (doc.kind === 'webhook') {
        none(['url', 'pointer', 'headers', 'auth', 'secret_header', 'secret_param', 'query']);
        // Sealed and kept, it would be a credential nothing uses (and a caller's mistake unsaid).
        if (newSecret && doc.secret !== null) {
          errors.push({
            path: '/secret',
            code: 'not_allowed',
            message: 'a webhook connector takes no secret: its signed webhook_url admits the pushes',
          });
        }
        if (doc.interval_seconds !== null) {
          errors.push({
            path: '/interval_seconds',
            code: 'not_allowed',
            message: 'a webhook connector is not pulled: it takes no interval_seconds',
          });
        }
      }
      return errors;
    },
    async afterWrite(after, before, ctx, tx) {
      if (ctx.op === 'system') return; // a sync schedules its own next one
      if (after.is_deleted) {
        // Not while it feeds live key results: their connector_id is a `restrict` reference.
        await schedule(tx, after, null);
        return;
      }
      // A new, restored or changed feed syncs at the next run of the schedule (at once: the job's
      // wakeAfter), then every interval.
      const changed =
        !before ||
        ctx.op === 'restore' ||
        (['kind', 'config', 'secret', 'interval_seconds'] as const).some(
          (k) => !isDeepStrictEqual(before[k], after[k]),
        );
      if (changed) await schedule(tx, after, tx.now);
    },
  },
  sortable: ['created_at', 'updated_at', 'name'],
  filterable: ['kind', 'last_sync_status', 'created_at', 'updated_at'],
});

/** How many connectors one run of the schedule reads at a time: a slow feed does not hold up the rest. */
const PARALLEL_READS = 4;
/**
 * How long, past the connector timeout, a run of the schedule waits for one read before it
 * leaves the read to finish (and record) on its own and goes on. With no timeout
 * (EDM_CONNECTOR_TIMEOUT_MS=0) a feed that never answers would otherwise hold every run, and
 * with it every other connector's schedule, of every tenant.
 */
const READ_WAIT_MS = 15_000;
/**
 * Reads under way in this process, by tenant and connector, each with the settings it reads
 * (readFrom): a run starts no read of the same settings again meanwhile, but does read settings
 * changed since (whose sync the change queued; the read under way will record nothing).
 */
const readsUnderWay = new Map<string, { from: string }>();

/**
 * How often the schedule runs, and how long one run takes new reads: what is left then is still
 * due, and the next run shares it out by tenant again, so one tenant's backlog of slow feeds does
 * not hold another's due connector for the length of that backlog.
 */
const RUN_EVERY_MS = 15_000;
/** A schedule row's due time in ms, as the queue read it (null if it cannot be read). */
const slotOf = (due: unknown): number | null =>
  typeof due === 'string' ? Date.parse(due) : due instanceof Date ? due.getTime() : null;
/** How long a claim of a due connector holds past the read timeout (the process may die with it). */
const CLAIM_MS = 60_000;
/** How often a read under way looks at its claim, to renew it in time (see keepClaimed). */
const RENEW_CHECK_MS = 1_000;
/** How often a run looks for connectors that came due since it last looked. */
const LOOK_AGAIN_MS = 1_000;

/**
 * Syncs the pulled connectors whose time has come, a batch per run (reads outside transactions),
 * shared out by tenant: each tenant's earliest due connector, then each one's second, and so on.
 */
export const connectorSyncJob: Job = {
  name: 'okr.connector-sync',
  intervalMs: RUN_EVERY_MS,
  // A new, changed or restored feed is read right after its write, not up to 15 s later.
  wakeAfter: ['Connector'],
  async run(ctx) {
    // Claimed first (its due time moved past the read's longest wait): of several processes
    // running the schedule, one reads it; if that one dies, the claim runs out and another does.
    // The lease counts from the claim, not from the run's start: a run of many slow feeds lasts
    // longer than one read's wait, and a lease already out would let another process read it too.
    const leaseFrom = (now: number) => isoTime(now + ctx.outbound.timeoutMs + CLAIM_MS);
    const claim = (tx: Tx, row: Record<string, unknown>) =>
      tx.claim(
        connectorSchedule,
        { tenant_id: row.tenant_id, connector_id: row.connector_id },
        'due_at',
        row.due_at,
        leaseFrom(tx.now),
      );
    /**
     * Keeps the claim of a read under way from running out while the read goes on (a feed that
     * never answers, with EDM_CONNECTOR_TIMEOUT_MS=0): renewed once it has less than half of
     * CLAIM_MS left, only while it is still the one this read set (a change of the connector
     * moved it: read anew). Else another process's run would find it due and read the feed too,
     * a read per process. Stops when the read ends, or when the claim ran out unrenewed (the
     * database away): another process may have taken it since.
     */
    const keepClaimed = (tenantId: string, key: { tenant_id: string; connector_id: string }, claimed: string) => {
      let held = claimed;
      let renewing = false;
      const timer = setInterval(() => {
        const now = ctx.clock();
        if (now >= Date.parse(held)) {
          clearInterval(timer);
          return;
        }
        if (renewing || Date.parse(held) - now > CLAIM_MS / 2) return;
        renewing = true;
        const next = leaseFrom(now);
        ctx
          .transaction(tenantId, (tx) => tx.claim(connectorSchedule, { ...key, due_at: held }, 'due_at', held, next))
          .then(
            (renewed) => {
              if (renewed) held = next;
              else clearInterval(timer);
            },
            () => {}, // the database away: tried again at the next check
          )
          .finally(() => {
            renewing = false;
          });
      }, RENEW_CHECK_MS);
      timer.unref();
      return () => clearInterval(timer);
    };
    const syncOne = async (row: Record<string, unknown>, underWay: string): Promise<boolean> => {
      const tenantId = row.tenant_id as string;
      const id = row.connector_id as string;
      const key = { tenant_id: tenantId, connector_id: id };
      const [mine, connector, claimed] = await ctx.transaction(
        tenantId,
        async (tx) => [await claim(tx, row), await tx.peek(connectors, tenantId, id), leaseFrom(tx.now)] as const,
      );
      if (!mine) return false;
      if (!connector || connector.is_deleted || connector.kind === 'webhook') {
        await ctx.transaction(tenantId, (tx) => tx.remove(connectorSchedule, key));
        return false;
      }
      const mark = { from: readFrom(connector) };
      readsUnderWay.set(underWay, mark);
      const release = keepClaimed(tenantId, key, claimed);
      try {
        return await readAndRecord(connector, tenantId, id, key, slotOf(row.due_at));
      } finally {
        release();
        if (readsUnderWay.get(underWay) === mark) readsUnderWay.delete(underWay);
      }
    };
    const readAndRecord = async (
      connector: Doc,
      tenantId: string,
      id: string,
      key: { tenant_id: string; connector_id: string },
      slot: number | null,
    ): Promise<boolean> => {
      // A read that failed in an unforeseen way is recorded like any failed read, not retried forever.
      const { outcome, readAt } = await readOutcome(connector, ctx.outbound, ctx.clock).catch((err: Error) => ({
        outcome: { error: failureText(`the read failed: ${err.message}`, connector.secret) } as SyncOutcome,
        readAt: ctx.clock(),
      }));
      try {
        await ctx.transaction(tenantId, async (tx) => {
          const now = await tx.find(connectors, tenantId, id);
          // Changed while it was read: the change queued its own sync, of the new settings.
          if (now && !now.is_deleted && readFrom(now) === readFrom(connector))
            await applySync(tx, tenantId, now, outcome, readAt, slot);
        });
        return true;
      } catch {
        // Not recorded (a conflicting write, the database away): tried again at its next interval.
        const due = isoTime(nextSlot(slot, connector.interval_seconds as number, ctx.clock()));
        await ctx.transaction(tenantId, (tx) => tx.upsert(connectorSchedule, { ...key, due_at: due }));
        return false;
      }
    };
    let synced = 0;
    // The rows this run took (each once), and its reads under way by tenant.
    const taken = new Set<string>();
    const reading = new Map<string, number>();
    // The due rows, looked up whole (each tenant's first, then each one's second…) when the run
    // starts and when those found are all taken, and between, once a second, only those that came
    // due since (by the due_at index): a whole lookup per pick sorted the backlog each time
    // (thousands of rows, on the thread that serves the API, with SQLite).
    let found: Record<string, unknown>[] = [];
    let lookedAt: number | null = null;
    const keyOf = (row: Record<string, unknown>) => `${row.tenant_id}\u0000${row.connector_id}`;
    // One lookup at a time, each judged when its turn comes: what another reader's lookup found
    // meanwhile may make it needless.
    let lookups: Promise<void> = Promise.resolve();
    const lookUp = (whole: boolean) => {
      const next = lookups.then(async () => {
        const at = ctx.clock();
        if (whole || lookedAt === null) {
          if (lookedAt !== null && found.some((row) => !taken.has(keyOf(row)))) return;
          found = await ctx.queue(connectorSchedule, 'due_at', 500, { byTenant: true });
        } else {
          if (at - lookedAt < LOOK_AGAIN_MS) return;
          // From a moment before the last look: a row dated just before it, committed after.
          const since = isoTime(lookedAt - LOOK_AGAIN_MS);
          const known = new Set(found.map(keyOf));
          for (const row of await ctx.queue(connectorSchedule, 'due_at', 500, { byTenant: true, since })) {
            if (!known.has(keyOf(row))) found.push(row);
          }
        }
        lookedAt = at;
      });
      // A lookup that failed fails its caller's pick only, not the next ones.
      lookups = next.catch(() => {});
      return next;
    };
    // Of the rows found (each tenant's earliest first, then each one's second…), the first of a
    // tenant with the fewest of this run's reads under way: a tenant's backlog of slow feeds takes
    // the readers only while no other tenant's connector is due.
    const choose = (rows: Record<string, unknown>[]) => {
      let pick: Record<string, unknown> | undefined;
      let least = Number.POSITIVE_INFINITY;
      for (const row of rows) {
        const count = reading.get(row.tenant_id as string) ?? 0;
        if (count >= least || taken.has(keyOf(row))) continue;
        pick = row;
        least = count;
        if (count === 0) break;
      }
      if (pick) taken.add(keyOf(pick));
      return pick;
    };
    const nextDue = async (): Promise<Record<string, unknown> | undefined> => {
      if (lookedAt === null || ctx.clock() - lookedAt >= LOOK_AGAIN_MS) await lookUp(false);
      const pick = choose(found);
      if (pick || found.length === 0) return pick;
      await lookUp(true);
      return choose(found);
    };
    // Each of PARALLEL_READS readers takes the next due connector as it is done with one, for one
    // interval of the job (RUN_EVERY_MS), looking again each time: one that comes due meanwhile
    // is read in this run.
    const reader = async () => {
      while (ctx.clock() - ctx.now < RUN_EVERY_MS) {
        const row = await nextDue();
        if (!row) return;
        const tenantId = row.tenant_id as string;
        const underWay = keyOf(row);
        const going = readsUnderWay.get(underWay);
        // Read still, by an earlier run, as it is now: its claim held on, so it does not come due
        // again meanwhile. Changed since (the change queued this sync): read anew.
        if (
          going !== undefined &&
          (await ctx.transaction(tenantId, async (tx) => {
            const now = await tx.peek(connectors, tenantId, row.connector_id as string);
            if (!now || now.is_deleted || readFrom(now) !== going.from) return false;
            await claim(tx, row);
            return true;
          }))
        ) {
          continue;
        }
        const read = syncOne(row, underWay);
        let timer: NodeJS.Timeout | undefined;
        const waited = new Promise<null>((resolve) => {
          timer = setTimeout(resolve, ctx.outbound.timeoutMs + READ_WAIT_MS, null);
        });
        reading.set(tenantId, (reading.get(tenantId) ?? 0) + 1);
        const done = await Promise.race([read, waited]).finally(() => {
          clearTimeout(timer);
          reading.set(tenantId, (reading.get(tenantId) ?? 1) - 1);
        });
        // Left to finish on its own: recorded when it does.
        if (done === null) read.catch(() => {});
        else if (done) synced++;
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_READS }, reader));
    return synced;
  },
};
