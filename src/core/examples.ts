import type { AnyField } from './fields.js';
import type { Doc, Resource } from './resource.js';

/** A plausible value for a field: its declared example, else its default, else one by type. */
export function exampleValue(name: string, field: AnyField): unknown {
  if (field.example !== undefined) return field.example;
  if (field.default !== undefined) return field.default;
  if (field.enum) return field.enum[0];
  switch (field.column) {
    case 'real':
    case 'integer':
      return 1;
    case 'boolean':
      return true;
    case 'date':
      return '2026-01-01';
    case 'datetime':
      return '2026-01-01T00:00:00.000Z';
    case 'json':
      return field.type === 'json' ? [] : {};
    default:
      return `Example ${name.replaceAll('_', ' ')}`;
  }
}

/**
 * A valid create body built from the declaration: every required field, plus the optional
 * fields that carry an example. `refs` gives ids for reference fields, keyed by id prefix.
 */
export function exampleBody(resource: Resource, refs: Record<string, string> = {}): Doc {
  const body: Doc = {};
  for (const [name, field] of Object.entries(resource.allFields)) {
    if (field.access === 'read' || field.platform) continue;
    if (field.ref) {
      const id = refs[field.ref];
      if (id && (field.required || field.parent)) body[name] = id;
      else if (field.required) body[name] = `${field.ref}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      continue;
    }
    if (field.required || field.example !== undefined) body[name] = exampleValue(name, field);
  }
  return body;
}
