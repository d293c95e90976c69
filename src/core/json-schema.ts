import { fieldErrorRegistry } from './errors.js';
import { type AnyField, clientEnum } from './fields.js';
import type { Resource } from './resource.js';

/** JSON Schema (2020-12 / OpenAPI 3.1) objects derived from declarations. */
export type JsonSchema = Record<string, unknown>;

/**
 * A field's value schema, allowing `null` where the field may be null; `input`: as a client
 * sends it (an enum without the values only the platform writes).
 */
export function fieldSchema(field: AnyField, nullable: boolean, input = false): JsonSchema {
  // Enums render as `enum` (the runtime checker holds them as a union of literals).
  const values = input ? clientEnum(field) : field.enum;
  const base: JsonSchema = values
    ? { type: 'string', enum: [...values] }
    : (structuredClone(field.schema) as JsonSchema);
  if (nullable) {
    if (typeof base.type === 'string') base.type = [base.type, 'null'];
    if (Array.isArray(base.enum)) base.enum = [...base.enum, null];
  }
  base.description = field.notes;
  if (field.access === 'read') base.readOnly = true;
  if (field.access === 'writeOnly') base.writeOnly = true;
  if (field.default !== undefined) base.default = field.default;
  // A default derived from other fields, said where a client sends the field.
  if (input && field.defaultRule) base.description = `${field.notes} Default: ${field.defaultRule}.`;
  return base;
}

/**
 * The document reads answer: every field but write-only ones, all always present; null only
 * where a value may be missing (not for a required field, nor one the server always sets).
 */
export function responseSchema(resource: Resource): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const [name, field] of Object.entries(resource.allFields)) {
    if (field.access === 'writeOnly') continue;
    properties[name] = fieldSchema(field, !(field.alwaysPresent || field.nonNull || field.required));
  }
  properties.id = { ...properties.id, pattern: resource.idPattern };
  return {
    type: 'object',
    title: resource.name,
    description: resource.description,
    properties,
    required: Object.keys(properties),
    additionalProperties: false,
  };
}

/** The body a create accepts. */
export function createSchema(resource: Resource): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  // Fields a create may leave out only under some values of others: required, and not null, else.
  const conditions: JsonSchema[] = [];
  for (const [name, field] of Object.entries(resource.allFields)) {
    if (field.access === 'read') continue;
    // A field the create's hooks may fill in takes null as leaving it out (a milestone's target).
    properties[name] = fieldSchema(field, !field.required || field.optionalOnCreate === true, true);
    if (field.required && !field.optionalOnCreate) required.push(name);
    const unless = field.optionalOnCreate ? field.requiredUnless : undefined;
    if (unless) {
      conditions.push({
        if: {
          properties: Object.fromEntries(Object.entries(unless).map(([other, value]) => [other, { const: value }])),
          required: Object.keys(unless),
        },
        else: { properties: { [name]: fieldSchema(field, false, true) }, required: [name] },
      });
      const when = Object.entries(unless).map(([other, value]) => `${other} is ${value}`);
      properties[name].description =
        `${properties[name].description ?? ''} Required on create unless ${when.join(' and ')}.`.trim();
    }
  }
  return {
    type: 'object',
    title: `${resource.name}Create`,
    properties,
    required,
    additionalProperties: false,
    ...(conditions.length ? { allOf: conditions } : {}),
  };
}

/** The JSON Merge Patch an update accepts. */
export function updateSchema(resource: Resource): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const [name, field] of Object.entries(resource.allFields)) {
    if (field.access === 'read') continue;
    // null clears a field, or has the hooks fill it in again (optionalOnCreate), unless it may
    // never be cleared (required, notNullInWrites).
    const clearable = (!field.required || field.optionalOnCreate === true) && !field.notNullInWrites;
    properties[name] = fieldSchema(field, clearable, true);
    // A member a patch leaves out is left as it is: a `default` here would read as a value to
    // send (a generated model that fills one in would reset the field on every update).
    delete properties[name].default;
    // Nor a default a create derives: a patch that leaves the field out keeps its value.
    properties[name].description = field.notes;
  }
  properties.version = {
    type: 'integer',
    minimum: 1,
    description: 'Optional lock token: the update is refused with 409 unless it equals the current version.',
  };
  return { type: 'object', title: `${resource.name}Update`, properties, additionalProperties: false };
}

/** The list envelope. */
export function listSchema(resource: Resource): JsonSchema {
  return {
    type: 'object',
    title: `${resource.name}List`,
    properties: {
      object: { type: 'string', enum: ['list'] },
      data: { type: 'array', items: responseSchema(resource) },
      has_more: { type: 'boolean' },
      next_cursor: { type: ['string', 'null'] },
    },
    required: ['object', 'data', 'has_more', 'next_cursor'],
    additionalProperties: false,
  };
}

export const problemSchema: JsonSchema = {
  type: 'object',
  title: 'Problem',
  description: 'RFC 9457 problem details.',
  properties: {
    type: {
      type: 'string',
      format: 'uri-reference',
      description: "`/problems/<code>`, relative to the server's address: GET it for a page about the code.",
    },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    request_id: { type: 'string' },
    errors: {
      type: 'array',
      description: 'Each field or parameter refused, the first 100 (detail says how many more).',
      maxItems: 100,
      items: {
        type: 'object',
        properties: {
          path: { type: 'string' },
          code: { type: 'string', enum: Object.keys(fieldErrorRegistry) },
          message: { type: 'string' },
        },
        required: ['path', 'code', 'message'],
      },
    },
    current_version: {
      type: ['integer', 'null'],
      description:
        'On 412 precondition_failed and 409 version_conflict: the version the resource is at (null where another writer changed it meanwhile, at a version not read).',
    },
    dependents: {
      type: 'object',
      additionalProperties: { type: 'integer' },
      description: 'On 409 has_dependents: the live rows in the way, counted by resource path.',
    },
    limit: { type: 'integer', description: "On 429 rate_limited: the caller's calls per window." },
    retry_after_seconds: { type: 'integer', description: 'On 429 rate_limited: as Retry-After says.' },
  },
  required: ['type', 'title', 'status', 'detail', 'code', 'request_id'],
};
