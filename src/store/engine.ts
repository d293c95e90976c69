import { type Expression, type SqlBool, sql } from 'kysely';
import { type Clock, isoTime } from '../core/clock.js';
import { ApiError, type FieldError, fieldError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { type CursorCodec, type ListQuery, searchText } from '../core/list-query.js';
import type { Doc, HookContext, ModuleDef, Principal, Resource } from '../core/resource.js';
import { asObject, checkWritableKeys, mergePatch, validateDocument } from '../core/validation.js';
import type { DB, Store } from './database.js';
import { SEARCH_COLUMN, storedFields } from './schema.js';

export interface EngineOptions {
  store: Store;
  clock: Clock;
  modules: readonly ModuleDef[];
  cursors: CursorCodec;
  /** EDM_REQUIRE_IF_MATCH: writes without If-Match or a body `version` are 428. */
  requireIfMatch: boolean;
}

/** Preconditions of a write: the versions an `If-Match` names (`any` for `*`), or null without one. */
export interface WriteConditions {
  ifMatch: readonly number[] | 'any' | null;
}

export interface ListPage {
  object: 'list';
  data: Doc[];
  has_more: boolean;
  next_cursor: string | null;
}

interface Child {
  resource: Resource;
  field: string;
}

/**
 * The generic behaviour of every declared resource: create, read, update, soft delete,
 * restore and list, with the platform rules of PRODUCT.md §1 in their check order. Writes run
 * inside a transaction the caller opens (so idempotency records commit with the work).
 */
export class Engine {
  readonly store: Store;
  readonly clock: Clock;
  private readonly byPrefix = new Map<string, Resource>();
  private readonly children = new Map<Resource, Child[]>();

  constructor(private readonly options: EngineOptions) {
    this.store = options.store;
    this.clock = options.clock;
    const resources = options.modules.flatMap((m) => m.resources);
    for (const r of resources) this.byPrefix.set(r.idPrefix, r);
    for (const r of resources) {
      for (const [name, field] of Object.entries(r.allFields)) {
        if (!field.parent || !field.ref) continue;
        const parent = this.byPrefix.get(field.ref);
        if (!parent) throw new Error(`${r.name}.${name} references unknown prefix ${field.ref}`);
        this.children.set(parent, [...(this.children.get(parent) ?? []), { resource: r, field: name }]);
      }
    }
  }

  get resources(): Resource[] {
    return [...this.byPrefix.values()];
  }

  transaction<T>(fn: (trx: DB) => Promise<T>): Promise<T> {
    return this.store.db.transaction().execute(fn);
  }

  // ---- rows ----

  private toRow(resource: Resource, doc: Doc): Record<string, unknown> {
    const row: Record<string, unknown> = {};
    for (const [name, field] of storedFields(resource)) row[name] = this.store.encode(field, doc[name]);
    const title = doc[resource.titleField];
    row[SEARCH_COLUMN] = typeof title === 'string' ? searchText(title) : null;
    return row;
  }

  private fromRow(resource: Resource, row: Record<string, unknown>): Doc {
    const doc: Doc = {};
    for (const [name, field] of Object.entries(resource.allFields)) {
      doc[name] = field.column === null ? null : this.store.decode(field, row[name]);
    }
    return doc;
  }

  /** Rows the principal may see: its tenant, and its app when the token names one. */
  private visible(db: DB, resource: Resource, principal: Principal) {
    let q = db.selectFrom(resource.table).selectAll().where('tenant_id', '=', principal.tenantId);
    if (principal.appId !== null) q = q.where('app_id', '=', principal.appId);
    return q;
  }

  private async load(db: DB, resource: Resource, principal: Principal, id: string, lock: boolean): Promise<Doc> {
    let q = this.visible(db, resource, principal).where('id', '=', id);
    if (lock && this.store.kind === 'postgres') q = q.forUpdate();
    const row = await q.executeTakeFirst();
    if (!row) throw new ApiError('not_found', `No ${resource.name} with id ${id}`);
    return this.fromRow(resource, row);
  }

  // ---- reads ----

  async get(resource: Resource, principal: Principal, id: string): Promise<Doc> {
    return this.load(this.store.db, resource, principal, id, false);
  }

  async list(resource: Resource, principal: Principal, query: ListQuery): Promise<ListPage> {
    const { store } = this;
    const { field: sortField, desc } = query.sort;
    const sortSpec = resource.allFields[sortField];
    const nullable = !sortSpec.alwaysPresent;
    let q = this.visible(store.db, resource, principal);
    if (!query.includeDeleted) q = q.where('is_deleted', '=', store.encode(resource.allFields.is_deleted, false));
    for (const f of query.filters) {
      const spec = resource.allFields[f.field];
      if (f.op === 'in') {
        const values = f.values.map((v) => store.encode(spec, v));
        q = values.length === 1 ? q.where(f.field, '=', values[0]) : q.where(f.field, 'in', values);
      } else if (f.op === 'has_any') {
        q = q.where(this.hasAny(f.field, f.values));
      } else {
        const op = { gte: '>=', gt: '>', lte: '<=', lt: '<' }[f.op] as '>=' | '>' | '<=' | '<';
        q = q.where(f.field, op, store.encode(spec, f.value));
      }
    }
    if (query.q !== null) {
      const fn = store.kind === 'postgres' ? sql`strpos` : sql`instr`;
      q = q.where(sql<SqlBool>`${fn}(${sql.ref(SEARCH_COLUMN)}, ${query.q}) > 0`);
    }
    if (query.after) {
      const { value, id } = query.after;
      const cmp = desc ? '<' : '>';
      const col = sql.ref(sortField);
      const v = store.encode(sortSpec, value);
      q =
        value === null
          ? q.where(sql<SqlBool>`(${col} IS NULL AND ${sql.ref('id')} ${sql.raw(cmp)} ${id})`)
          : q.where(
              sql<SqlBool>`(${col} ${sql.raw(cmp)} ${v} OR (${col} = ${v} AND ${sql.ref('id')} ${sql.raw(cmp)} ${id})${
                nullable ? sql` OR ${col} IS NULL` : sql``
              })`,
            );
    }
    const dir = desc ? 'desc' : 'asc';
    q = nullable ? q.orderBy(sortField, (ob) => (desc ? ob.desc() : ob.asc()).nullsLast()) : q.orderBy(sortField, dir);
    q = q.orderBy('id', dir).limit(query.limit + 1);
    const rows = await q.execute();
    const hasMore = rows.length > query.limit;
    const data = rows.slice(0, query.limit).map((r) => this.fromRow(resource, r));
    const last = data[data.length - 1];
    return {
      object: 'list',
      data,
      has_more: hasMore,
      next_cursor:
        hasMore && last ? this.options.cursors.encode(query.fingerprint, last[sortField], last.id as string) : null,
    };
  }

  private hasAny(column: string, values: string[]): Expression<SqlBool> {
    if (this.store.kind === 'postgres') {
      return sql<SqlBool>`${sql.ref(column)} ?| ${sql.val(values)}::text[]`;
    }
    return sql<SqlBool>`EXISTS (SELECT 1 FROM json_each(${sql.ref(column)}) WHERE json_each.value IN (${sql.join(values)}))`;
  }

  // ---- writes ----

  private context(principal: Principal, op: HookContext['op']): HookContext {
    return { principal, now: this.clock.now(), op };
  }

  private checkPreconditions(current: Doc, cond: WriteConditions, bodyVersion: unknown): void {
    const tags = cond.ifMatch;
    if (Array.isArray(tags) && !tags.includes(current.version as number)) {
      throw new ApiError('precondition_failed', `If-Match does not name the current version ${current.version}`, {
        extra: { current_version: current.version },
      });
    }
    if (this.options.requireIfMatch && cond.ifMatch === null && bodyVersion === undefined) {
      throw new ApiError('precondition_required', 'This server requires If-Match (or a body version) on writes');
    }
  }

  /** 422 unless every reference the write sets names a live row of the caller's tenant (any app). */
  private async checkReferences(db: DB, resource: Resource, principal: Principal, doc: Doc, before: Doc | null) {
    const errors: FieldError[] = [];
    for (const [name, field] of Object.entries(resource.allFields)) {
      const value = doc[name];
      if (!field.ref || typeof value !== 'string' || (before && before[name] === value)) continue;
      const target = this.byPrefix.get(field.ref);
      const found =
        target &&
        (await db
          .selectFrom(target.table)
          .select('id')
          .where('tenant_id', '=', principal.tenantId)
          .where('id', '=', value)
          .where('is_deleted', '=', this.store.encode(target.allFields.is_deleted, false))
          .executeTakeFirst());
      if (!found) {
        errors.push({
          path: `/${name}`,
          code: 'invalid_reference',
          message: `${name} must name a live ${target?.name ?? 'resource'} of this tenant; ${value} does not`,
        });
      }
    }
    if (errors.length) throw fieldError('invalid_reference', errors);
  }

  async create(db: DB, resource: Resource, principal: Principal, body: Doc): Promise<Doc> {
    checkWritableKeys(resource, body, false);
    const ctx = this.context(principal, 'create');
    const now = isoTime(ctx.now);
    const doc: Doc = {};
    for (const [name, field] of Object.entries(resource.allFields)) {
      doc[name] = field.access === 'read' ? null : (body[name] ?? field.default ?? null);
    }
    Object.assign(doc, {
      id: newId(resource.idPrefix),
      tenant_id: principal.tenantId,
      app_id: principal.appId,
      created_at: now,
      updated_at: now,
      created_by: principal.sub,
      updated_by: principal.sub,
      is_deleted: false,
      schema_version: resource.schemaVersion,
      version: 1,
    });
    resource.hooks?.prepare?.(doc, null, ctx);
    validateDocument(resource, doc, null, ctx);
    await this.checkReferences(db, resource, principal, doc, null);
    await db.insertInto(resource.table).values(this.toRow(resource, doc)).execute();
    return doc;
  }

  async update(db: DB, resource: Resource, principal: Principal, id: string, body: unknown, cond: WriteConditions) {
    const before = await this.load(db, resource, principal, id, true);
    this.checkPreconditions(before, cond, (body as Doc | null)?.version);
    const patch = asObject(body);
    checkWritableKeys(resource, patch, true);
    const ctx = this.context(principal, 'update');
    const doc: Doc = { ...before };
    for (const [name, value] of Object.entries(patch)) {
      if (name === 'version') continue;
      const isObject = value !== null && typeof value === 'object' && !Array.isArray(value);
      doc[name] = isObject && resource.allFields[name].column === 'json' ? mergePatch(before[name], value) : value;
    }
    resource.hooks?.prepare?.(doc, before, ctx);
    validateDocument(resource, doc, before, ctx);
    if (before.is_deleted)
      throw new ApiError('resource_deleted', `${resource.name} ${id} is deleted; restore it first`);
    if (patch.version !== undefined && patch.version !== before.version) {
      throw new ApiError(
        'version_conflict',
        `The body names version ${patch.version}; the current version is ${before.version}`,
        {
          extra: { current_version: before.version },
        },
      );
    }
    await this.checkReferences(db, resource, principal, doc, before);
    Object.assign(doc, {
      updated_at: isoTime(ctx.now),
      updated_by: principal.sub,
      schema_version: resource.schemaVersion,
      version: (before.version as number) + 1,
    });
    return this.writeBack(db, resource, before, doc);
  }

  /** The version check and the write are one statement: of concurrent writers at one version, one wins. */
  private async writeBack(db: DB, resource: Resource, before: Doc, doc: Doc): Promise<Doc> {
    const result = await db
      .updateTable(resource.table)
      .set(this.toRow(resource, doc))
      .where('tenant_id', '=', before.tenant_id)
      .where('id', '=', before.id)
      .where('version', '=', before.version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) {
      throw new ApiError('version_conflict', `${resource.name} ${before.id} was changed by another writer`, {
        extra: { current_version: null },
      });
    }
    return doc;
  }

  async remove(
    db: DB,
    resource: Resource,
    principal: Principal,
    id: string,
    cond: WriteConditions,
    cascade: boolean,
  ): Promise<Doc> {
    const before = await this.load(db, resource, principal, id, true);
    if (before.is_deleted) throw new ApiError('not_found', `${resource.name} ${id} is already deleted`);
    this.checkPreconditions(before, cond, undefined);
    const now = this.clock.now();
    if (cascade) {
      await this.cascadeDelete(db, resource, principal, [id], now);
    } else {
      const dependents = await this.liveDependents(db, resource, principal.tenantId, id);
      if (dependents.length) {
        throw new ApiError(
          'has_dependents',
          `${resource.name} ${id} has live ${dependents.map((d) => `${d.resource.name} (${d.count})`).join(', ')}; delete them first or pass cascade=true`,
          { extra: { dependents: Object.fromEntries(dependents.map((d) => [d.resource.path, d.count])) } },
        );
      }
    }
    return this.writeBack(db, resource, before, this.deletedState(before, principal, now, true));
  }

  private deletedState(before: Doc, principal: Principal, now: number, deleted: boolean): Doc {
    const ts = isoTime(now);
    return {
      ...before,
      is_deleted: deleted,
      deleted_at: deleted ? ts : null,
      deleted_by: deleted ? principal.sub : null,
      updated_at: ts,
      updated_by: principal.sub,
      version: (before.version as number) + 1,
    };
  }

  private async liveDependents(db: DB, resource: Resource, tenantId: string, id: string) {
    const found: { resource: Resource; count: number }[] = [];
    for (const child of this.children.get(resource) ?? []) {
      const row = await db
        .selectFrom(child.resource.table)
        .select((eb) => eb.fn.countAll().as('n'))
        .where('tenant_id', '=', tenantId)
        .where(child.field, '=', id)
        .where('is_deleted', '=', this.store.encode(child.resource.allFields.is_deleted, false))
        .executeTakeFirst();
      const n = Number(row?.n ?? 0);
      if (n > 0) found.push({ resource: child.resource, count: n });
    }
    return found;
  }

  /** Soft-deletes the live descendants of the given parents, deepest first, in the caller's transaction. */
  private async cascadeDelete(db: DB, resource: Resource, principal: Principal, parentIds: string[], now: number) {
    for (const child of this.children.get(resource) ?? []) {
      const live = this.store.encode(child.resource.allFields.is_deleted, false);
      const rows = await db
        .selectFrom(child.resource.table)
        .selectAll()
        .where('tenant_id', '=', principal.tenantId)
        .where(child.field, 'in', parentIds)
        .where('is_deleted', '=', live)
        .execute();
      if (rows.length === 0) continue;
      const docs = rows.map((r) => this.fromRow(child.resource, r));
      await this.cascadeDelete(
        db,
        child.resource,
        principal,
        docs.map((d) => d.id as string),
        now,
      );
      for (const before of docs) {
        await this.writeBack(db, child.resource, before, this.deletedState(before, principal, now, true));
      }
    }
  }

  async restore(db: DB, resource: Resource, principal: Principal, id: string, cond: WriteConditions): Promise<Doc> {
    const before = await this.load(db, resource, principal, id, true);
    this.checkPreconditions(before, cond, undefined);
    if (!before.is_deleted) throw new ApiError('not_deleted', `${resource.name} ${id} is not deleted`);
    for (const [name, field] of Object.entries(resource.allFields)) {
      const parentId = before[name];
      if (!field.parent || !field.ref || typeof parentId !== 'string') continue;
      const parent = this.byPrefix.get(field.ref) as Resource;
      const row = await db
        .selectFrom(parent.table)
        .select('is_deleted')
        .where('tenant_id', '=', principal.tenantId)
        .where('id', '=', parentId)
        .executeTakeFirst();
      if (!row || this.store.decode(parent.allFields.is_deleted, row.is_deleted) === true) {
        throw new ApiError(
          'parent_deleted',
          `${resource.name} ${id} belongs to deleted ${parent.name} ${parentId}; restore it first`,
          {
            errors: [{ path: `/${name}`, code: 'parent_deleted', message: `${parent.name} ${parentId} is deleted` }],
          },
        );
      }
    }
    return this.writeBack(db, resource, before, this.deletedState(before, principal, this.clock.now(), false));
  }
}
