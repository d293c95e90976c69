/**
 * The metric query language of `data_source: query` key results (PRODUCT.md §2): numbers,
 * `+ - * /`, unary minus, parentheses, `kr("kr_…")` (another key result's current value, same
 * tenant) and `sum/avg/min/max/count(…)`. Parsed into a tree and evaluated by walking it: never
 * JavaScript `eval`, no names but these, no loops, bounded depth and size.
 */
import { idPattern, NUMBER_LIMIT } from '../../core/fields.js';

export type QueryNode =
  | { kind: 'number'; value: number }
  | { kind: 'kr'; id: string }
  | { kind: 'neg'; arg: QueryNode }
  | { kind: 'binary'; op: '+' | '-' | '*' | '/'; left: QueryNode; right: QueryNode }
  | { kind: 'call'; fn: Aggregate; args: QueryNode[] };

export const AGGREGATES = ['sum', 'avg', 'min', 'max', 'count'] as const;
export type Aggregate = (typeof AGGREGATES)[number];

/** A parsed query: its tree and the key results it reads (distinct, in order of appearance). */
export interface ParsedQuery {
  root: QueryNode;
  reads: readonly string[];
}

/** Nesting deeper than this is refused (the evaluator recurses). */
export const MAX_DEPTH = 32;
/** A query reads at most this many distinct key results. */
export const MAX_READS = 100;

/** A syntax error at a 1-based column of the query. */
export class QuerySyntaxError extends Error {
  constructor(
    message: string,
    readonly column: number,
  ) {
    super(`${message} at column ${column}`);
  }
}

const KR_ID = new RegExp(idPattern('kr'));

type Token =
  | { t: 'num'; value: number; text: string; at: number }
  | { t: 'str'; value: string; at: number }
  | { t: 'name'; value: string; at: number }
  | { t: 'op'; value: string; at: number }
  | { t: 'end'; at: number };

const NUMBER = /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y;
const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;

/** Whether a sticky pattern matches at `i` (its lastIndex then ends the match). */
function matchAt(re: RegExp, src: string, i: number): boolean {
  re.lastIndex = i;
  return re.test(src);
}

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if ('+-*/(),'.includes(c)) {
      tokens.push({ t: 'op', value: c, at: i });
      i++;
    } else if (c === '"' || c === "'") {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw new QuerySyntaxError('unterminated string', i + 1);
      tokens.push({ t: 'str', value: src.slice(i + 1, end), at: i });
      i = end + 1;
    } else if (matchAt(NUMBER, src, i)) {
      const text = src.slice(i, NUMBER.lastIndex);
      tokens.push({ t: 'num', value: Number(text), text, at: i });
      i = NUMBER.lastIndex;
    } else if (matchAt(NAME, src, i)) {
      tokens.push({ t: 'name', value: src.slice(i, NAME.lastIndex), at: i });
      i = NAME.lastIndex;
    } else {
      // The whole character (an emoji is two UTF-16 units), as written.
      const char = String.fromCodePoint(src.codePointAt(i) as number);
      throw new QuerySyntaxError(`unexpected character ${JSON.stringify(char)}`, i + 1);
    }
  }
  tokens.push({ t: 'end', at: src.length });
  return tokens;
}

/** A token as the query wrote it (a number's text, not the value it parses to: `.2`, not `0.2`). */
const describe = (tok: Token) =>
  tok.t === 'end'
    ? 'end of query'
    : tok.t === 'str'
      ? `string "${tok.value}"`
      : `'${tok.t === 'num' ? tok.text : tok.value}'`;

/** Parses a query, or throws QuerySyntaxError naming the column of the first problem. */
export function parseQuery(src: string): ParsedQuery {
  const tokens = tokenize(src);
  const reads: string[] = [];
  let pos = 0;
  const peek = () => tokens[pos];
  const fail = (message: string, tok: Token = peek()): never => {
    throw new QuerySyntaxError(message, tok.at + 1);
  };
  const isOp = (value: string) => {
    const tok = peek();
    return tok.t === 'op' && tok.value === value;
  };
  const expectOp = (value: string, what: string) => {
    if (!isOp(value)) fail(`expected ${what}, found ${describe(peek())}`);
    pos++;
  };

  const expr = (depth: number): QueryNode => {
    if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
    let left = term(depth);
    while (isOp('+') || isOp('-')) {
      const op = (tokens[pos++] as { value: '+' | '-' }).value;
      left = { kind: 'binary', op, left, right: term(depth) };
    }
    return left;
  };
  const term = (depth: number): QueryNode => {
    let left = unary(depth);
    while (isOp('*') || isOp('/')) {
      const op = (tokens[pos++] as { value: '*' | '/' }).value;
      left = { kind: 'binary', op, left, right: unary(depth) };
    }
    return left;
  };
  const unary = (depth: number): QueryNode => {
    if (isOp('-') || isOp('+')) {
      // A sign nests its operand one level down, as parentheses do: 32 of either, not 33.
      if (depth + 1 > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
      const minus = isOp('-');
      pos++;
      const arg = unary(depth + 1);
      return minus ? { kind: 'neg', arg } : arg;
    }
    return primary(depth);
  };
  const primary = (depth: number): QueryNode => {
    const tok = peek();
    if (tok.t === 'num') {
      pos++;
      if (!Number.isFinite(tok.value)) fail('number out of range', tok);
      return { kind: 'number', value: tok.value };
    }
    if (isOp('(')) {
      pos++;
      const inner = expr(depth + 1);
      expectOp(')', "')'");
      return inner;
    }
    if (tok.t === 'name') {
      pos++;
      const name = tok.value;
      expectOp('(', `'(' after ${name}`);
      if (name === 'kr') {
        const arg = peek();
        if (arg.t !== 'str') fail('kr() takes a key result id in quotes, like kr("kr_…")');
        const id = (arg as { value: string }).value;
        if (!KR_ID.test(id)) fail(`"${id}" is not a key result id (kr_ and 26 characters)`, arg);
        pos++;
        expectOp(')', "')' after the key result id");
        if (!reads.includes(id)) {
          if (reads.length === MAX_READS) fail(`a query reads at most ${MAX_READS} key results`, arg);
          reads.push(id);
        }
        return { kind: 'kr', id };
      }
      if (!(AGGREGATES as readonly string[]).includes(name)) {
        fail(`unknown function ${name}(): use kr, ${AGGREGATES.join(', ')}`, tok);
      }
      if (isOp(')')) fail(`${name}() needs at least one argument`);
      const args = [expr(depth + 1)];
      while (isOp(',')) {
        pos++;
        args.push(expr(depth + 1));
      }
      expectOp(')', `',' or ')' in ${name}()`);
      return { kind: 'call', fn: name as Aggregate, args };
    }
    return fail(`expected a number, kr("…"), a function or '(', found ${describe(tok)}`, tok);
  };

  if (peek().t === 'end') fail('the query is empty');
  const root = expr(0);
  if (peek().t !== 'end') fail(`unexpected ${describe(peek())}`);
  return { root, reads };
}

const cache = new Map<string, ParsedQuery>();
let cachedChars = 0;
/**
 * How much query text the parse cache keeps, all queries together: a parsed query's tree takes
 * ~50 bytes per character of its text (1,000 queries of 4,000 characters held ~196 MB, shared by
 * every tenant, and writes refused later, 422, parse theirs too), so ~13 MB at most.
 */
export const QUERY_CACHE_CHARS = 256 * 1024;
/** At most this many queries, however short. */
const QUERY_CACHE_COUNT = 1000;

/**
 * parseQuery, remembering the queries parsed last (a recompute parses its readers'): at most
 * QUERY_CACHE_COUNT of them and QUERY_CACHE_CHARS of their text, the oldest dropped first.
 */
export function parsed(src: string): ParsedQuery {
  let hit = cache.get(src);
  if (!hit) {
    hit = parseQuery(src);
    while (cache.size > 0 && (cache.size >= QUERY_CACHE_COUNT || cachedChars + src.length > QUERY_CACHE_CHARS)) {
      const oldest = cache.keys().next().value as string;
      cache.delete(oldest);
      cachedChars -= oldest.length;
    }
    cache.set(src, hit);
    cachedChars += src.length;
  }
  return hit;
}

/** What the parse cache keeps (for tests). */
export function keptQueries(): { queries: number; chars: number } {
  return { queries: cache.size, chars: cachedChars };
}

/** Thrown by evaluate's walk at a step whose value is not a finite number. */
const NOT_FINITE = new Error('not a finite number');

/**
 * The query's value, given each key result's current value. Not a finite number (a division by
 * zero, an overflow) at any step → null: the caller keeps the value it had. At any step, not only
 * the last: `min(a / b, 100)` at b = 0 is no 100, nor `1 / (1 / 0)` 0, nor `count(1 / 0)` 1.
 */
export function evaluate(query: ParsedQuery, current: (id: string) => number): number | null {
  const finite = (value: number): number => {
    if (!Number.isFinite(value)) throw NOT_FINITE;
    return value;
  };
  const walk = (n: QueryNode): number => {
    switch (n.kind) {
      case 'number':
        return n.value;
      case 'kr':
        return current(n.id);
      case 'neg':
        return -walk(n.arg);
      case 'binary': {
        const a = walk(n.left);
        const b = walk(n.right);
        return finite(n.op === '+' ? a + b : n.op === '-' ? a - b : n.op === '*' ? a * b : a / b);
      }
      case 'call': {
        const values = n.args.map(walk);
        switch (n.fn) {
          case 'sum':
            return finite(values.reduce((s, v) => s + v, 0));
          case 'avg':
            return finite(values.reduce((s, v) => s + v, 0) / values.length);
          case 'min':
            return Math.min(...values);
          case 'max':
            return Math.max(...values);
          case 'count':
            return values.length;
        }
      }
    }
  };
  let value: number;
  try {
    value = walk(query.root);
  } catch (err) {
    if (err === NOT_FINITE) return null;
    throw err;
  }
  // −0 is stored and shown as 0. Beyond ±1e15 is no number the API stores (PRODUCT.md §1): a
  // `current` there would fail every later write's validation of the merged document.
  return Number.isFinite(value) && Math.abs(value) <= NUMBER_LIMIT ? value + 0 : null;
}
