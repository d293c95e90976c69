import { monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** A new resource id: type prefix + `_` + ULID (`kr_01J…`); ids from one process sort by creation. */
export function newId(prefix: string): string {
  return `${prefix}_${next()}`;
}
