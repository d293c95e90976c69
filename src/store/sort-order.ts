/**
 * Whether a SQLite list page's rows came in the order its query asked for, checked from the sort
 * keys and ids the page row carries (see `Engine.packed`). SQLite joins an ordered subquery's
 * rows in its order but does not promise to, so the page is used only when this says yes; a no
 * sends the list down the row-by-row path. Asking SQLite itself (a second `group_concat` under an
 * aggregate ORDER BY) sorted every page again in a temporary b-tree: ~15 of a 50-row page's
 * ~85 µs.
 *
 * The order is SQLite's for the values the page row's JSON carries: NULL, then numbers
 * (numerically), then text in code-point order (the BINARY collation compares UTF-8 bytes,
 * which order as code points do); empty values last when `nullsLast`, otherwise as SQLite puts
 * them (first ascending, last descending); ties broken by id in the same direction. It never
 * answers yes for rows out of that order: a value it cannot compare exactly (an integer past
 * 2^53, which JSON may have rounded; any other type) answers no.
 */
export function inSortOrder(
  keys: readonly unknown[],
  ids: readonly string[],
  desc: boolean,
  nullsLast: boolean,
): boolean {
  if (keys.length !== ids.length) return false;
  for (let i = 1; i < keys.length; i++) {
    const c = compareKeys(keys[i - 1], keys[i], desc, nullsLast);
    if (c === undefined || c > 0) return false;
    if (c === 0) {
      const byId = compareText(ids[i - 1], ids[i]);
      if ((desc ? -byId : byId) >= 0) return false;
    }
  }
  return true;
}

/** a against b in the page's order: negative if a comes first; undefined if not comparable. */
function compareKeys(a: unknown, b: unknown, desc: boolean, nullsLast: boolean): number | undefined {
  const ra = rank(a);
  const rb = rank(b);
  if (ra === undefined || rb === undefined) return undefined;
  if (ra === 0 || rb === 0) {
    if (ra === rb) return 0;
    // SQLite's own placement of NULL (smallest) unless the query puts it last either way.
    const nullFirst = nullsLast ? false : !desc;
    return ra === 0 ? (nullFirst ? -1 : 1) : nullFirst ? 1 : -1;
  }
  let c: number;
  if (ra !== rb) c = ra - rb;
  else if (ra === 1) c = (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
  else c = compareText(a as string, b as string);
  return desc ? -c : c;
}

/** 0 for NULL, 1 for a number JSON carried exactly, 2 for text; undefined for anything else. */
function rank(v: unknown): 0 | 1 | 2 | undefined {
  if (v === null) return 0;
  if (typeof v === 'number')
    return Number.isFinite(v) && (!Number.isInteger(v) || Number.isSafeInteger(v)) ? 1 : undefined;
  if (typeof v === 'string') return 2;
  return undefined;
}

/**
 * Strings in code-point order (UTF-8 byte order), not JavaScript's UTF-16 unit order: the two
 * differ where a surrogate pair (a character past U+FFFF) meets a unit in U+E000–U+FFFF.
 */
export function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (D800–DFFF) stand for code points past FFFF: move them above E000–FFFF.
      x += x < 0xe000 ? 0x2000 : -0x800;
      y += y < 0xe000 ? 0x2000 : -0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}
