// Where a scenario's CPU goes (`npm run bench -- --profile`): one more round of the scenario,
// run under `perf record` (call chains at a fixed rate; JavaScript names from the server's
// --perf-basic-prof map) and `perf stat` (system calls and page faults, counted by the kernel's
// tracepoints). The round is not one of the measured ones: sampling costs the server a little.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/** The system calls counted per request; any this kernel has no tracepoint for are skipped. */
const SYSCALLS = [
  'read',
  'write',
  'writev',
  'pread64',
  'pwrite64',
  'fsync',
  'fdatasync',
  'futex',
  'epoll_wait',
  'epoll_pwait',
  'fcntl',
  'mmap',
  'munmap',
  'madvise',
  'brk',
  'openat',
  'close',
  'getrandom',
  'accept4',
];
const SOFTWARE = ['page-faults', 'context-switches'];
const HZ = 999;

/** Whether perf is here and may sample processes (root, or a permissive perf_event_paranoid). */
export function canProfile() {
  return spawnSync('perf', ['record', '-q', '-F', String(HZ), '-o', '/dev/null', '--', 'true']).status === 0;
}

let tracepoints = null;
function syscallEvents() {
  if (tracepoints) return tracepoints;
  const listed = spawnSync('perf', ['list', 'syscalls:sys_enter_*'], { encoding: 'utf8' }).stdout ?? '';
  tracepoints = SYSCALLS.filter((name) => listed.includes(`syscalls:sys_enter_${name} `));
  return tracepoints;
}

/**
 * The argv prefix that runs a load command under both perf tools, attached to `pid` for exactly
 * as long as the load runs. Both are pinned to `cpu` (the load generator's), not the server's.
 */
export function perfWrap(pid, cpu, dataFile, statFile) {
  const events = [...syscallEvents().map((n) => `syscalls:sys_enter_${n}`), ...SOFTWARE];
  return [
    'taskset',
    '-c',
    cpu,
    'perf',
    'record',
    '-q',
    '-g',
    '-F',
    String(HZ),
    '-p',
    String(pid),
    '-o',
    dataFile,
    '--',
    'perf',
    'stat',
    '-x',
    ',',
    '-o',
    statFile,
    '-e',
    events.join(','),
    '-p',
    String(pid),
    '--',
  ];
}

/** `perf stat -x,` output → counts by event (system calls by their bare name). */
export function parseStat(text) {
  const counts = {};
  for (const line of text.split('\n')) {
    const cols = line.split(',');
    if (cols.length < 3 || !/^\d+$/.test(cols[0])) continue;
    counts[cols[2].replace(/^syscalls:sys_enter_/, '')] = Number(cols[0]);
  }
  return counts;
}

/** `perf script -F tid,ip,sym,dso` output → samples, each `{ tid, frames: [{ sym, dso }] }` leaf first. */
export function parseScript(text) {
  const samples = [];
  let current = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      current = null;
      continue;
    }
    // A sample's first line is its thread id (right-aligned: it may start with spaces); its
    // frames are indented with a tab.
    if (!line.startsWith('\t')) {
      current = { tid: Number(line.trim().split(/\s+/)[0]), frames: [] };
      samples.push(current);
      continue;
    }
    if (!current) continue;
    // "	    7f98cf56405b JS:*getJson file:///…/engine.js:450:18 (/tmp/perf-1.map)"
    const m = /^\s*([0-9a-f]+)\s+(.*?)\s+\(([^()]*)\)\s*$/.exec(line);
    if (m) current.frames.push({ sym: m[2].replace(/\+0x[0-9a-f]+$/, ''), dso: m[3], ip: m[1] });
  }
  return samples;
}

/**
 * A --perf-basic-prof map (`start size name` per line, in the order V8 wrote them) → the name of
 * the code at an address. V8 appends a line for each piece of code it makes, and never removes
 * one: where the collector freed code and new code took its place, the older line still covers
 * the address, and perf may name a sample by it (a PostgreSQL GET's samples once read as 33%
 * `fast-uri`, a URI parser that ran at start-up only). Here the line written last wins.
 */
export function jitNames(mapText) {
  const entries = [];
  for (const line of mapText.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/i.exec(line);
    if (!m) continue;
    const start = Number.parseInt(m[1], 16);
    entries.push({ start, end: start + Number.parseInt(m[2], 16), name: m[3], order: entries.length });
  }
  // A sweep over the entries' starts and ends: each stretch between two of them belongs to the
  // latest entry covering it (the highest order among those open there).
  const points = [...new Set(entries.flatMap((e) => [e.start, e.end]))].sort((a, b) => a - b);
  const byStart = [...entries].sort((a, b) => a.start - b.start);
  const open = []; // a max-heap by order; entries that ended are dropped when they reach the top
  const push = (e) => {
    open.push(e);
    for (let i = open.length - 1; i > 0; ) {
      const up = (i - 1) >> 1;
      if (open[up].order >= open[i].order) break;
      [open[up], open[i]] = [open[i], open[up]];
      i = up;
    }
  };
  const pop = () => {
    const last = open.pop();
    if (open.length === 0) return;
    open[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < open.length && open[l].order > open[top].order) top = l;
      if (r < open.length && open[r].order > open[top].order) top = r;
      if (top === i) break;
      [open[top], open[i]] = [open[i], open[top]];
      i = top;
    }
  };
  const starts = [];
  const names = [];
  let next = 0;
  for (const at of points) {
    while (next < byStart.length && byStart[next].start <= at) push(byStart[next++]);
    while (open.length > 0 && open[0].end <= at) pop();
    const owner = open.length > 0 ? open[0].name : null;
    if (names.length === 0 || names[names.length - 1] !== owner) {
      starts.push(at);
      names.push(owner);
    }
  }
  /** The name of the code at `address` (a number), or null where no line covers it. */
  return (address) => {
    let lo = 0;
    let hi = starts.length - 1;
    if (hi < 0 || address < starts[0]) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= address) lo = mid;
      else hi = mid - 1;
    }
    return names[lo];
  };
}

/** Names the samples' frames in a perf map by `jitNames` instead of as perf named them. */
export function renameJitFrames(samples, mapText) {
  const nameAt = jitNames(mapText);
  for (const { frames } of samples) {
    for (const frame of frames) {
      if (!frame.dso.startsWith('/tmp/perf-') || frame.ip === undefined) continue;
      const name = nameAt(Number.parseInt(frame.ip, 16));
      if (name !== null) frame.sym = name;
    }
  }
  return samples;
}

const GC =
  /Scaveng|MarkCompact|Marking|Sweep|Evacuat|GCTracer|Heap::|HeapObjectVisitor|RememberedSet|MemoryChunk|Compactor|WorkStealing|ConcurrentMarking|PagedSpace|NewSpace|LargeObjectSpace|MemoryReducer/;
const FASTIFY = new Set([
  'fastify',
  'find-my-way',
  'avvio',
  'light-my-request',
  'fast-json-stringify',
  'fast-querystring',
  'fast-content-type-parse',
  'fast-decode-uri-component',
  'secure-json-parse',
  'toad-cache',
  'rfdc',
  'process-warning',
  'abstract-logging',
  'json-schema-ref-resolver',
]);

const isKernel = (f) => f.dso === '[kernel.kallsyms]' || f.dso.startsWith('[kernel');
const isJit = (f) =>
  f.dso.startsWith('/tmp/perf-') || f.dso.startsWith('[JIT]') || /^(JS|RegExp|Function|LazyCompile):/.test(f.sym);

/** What the sampled instruction was doing: a kernel sample by the system call it serves. */
export function kindOf(frames) {
  const leaf = frames[0];
  if (!leaf) return 'unknown';
  if (isKernel(leaf)) {
    const entry = frames.findIndex((f) => f.sym === 'do_syscall_64');
    if (entry > 0) {
      const call = frames[entry - 1].sym.replace(/^(__x64_sys_|__se_sys_|__do_sys_|ksys_|__sys_|do_)/, '');
      return `kernel: ${call}`;
    }
    if (frames.some((f) => /exc_page_fault/.test(f.sym))) return 'kernel: page faults';
    if (frames.some((f) => /interrupt|softirq|sysvec_/.test(f.sym))) return 'kernel: interrupts';
    return 'kernel: other';
  }
  const { sym, dso } = leaf;
  if (isJit(leaf)) return 'JavaScript (compiled)';
  if (dso.endsWith('better_sqlite3.node')) return sym.includes('::') ? 'better-sqlite3 (C++)' : 'SQLite';
  if (/libc\.so|libc-/.test(dso)) {
    if (/^(__)?mem(cpy|move|set|cmp)/.test(sym)) return 'memcpy/memmove/memset';
    if (/malloc|free|_int_|unlink_chunk|realloc|calloc|tcache|arena|sysmalloc|systrim/.test(sym)) return 'malloc/free';
    return 'libc (other)';
  }
  if (dso.endsWith('/node') || dso === 'node') {
    if (GC.test(sym)) return 'V8 garbage collection';
    if (/compiler::|maglev::|Maglev|Turbofan|OptimizedCompilationJob|Pipeline/.test(sym)) return 'V8 JIT compiler';
    if (/^Builtins_(Interpreter|Baseline)|^Builtins_.*Handler$/.test(sym)) return 'V8 interpreter';
    if (sym.startsWith('Builtins_')) return 'V8 builtins (property access, strings, promises)';
    if (/Json(Parser|Stringifier|Stringify|Parse)/.test(sym)) return 'V8 JSON';
    if (/String|Utf8|Utf16|Latin1|Internaliz/.test(sym)) return 'V8 strings';
    if (/LookupIterator|JSObject|Map::|Transition|Property|Descriptor|Runtime_|Object::|Factory/.test(sym)) {
      return 'V8 objects and properties (runtime)';
    }
    if (sym.startsWith('llhttp')) return 'HTTP parser (llhttp)';
    if (/^uv_|^uv__/.test(sym)) return 'libuv';
    if (sym.startsWith('node::')) return 'Node.js (C++)';
    return 'V8 (other)';
  }
  if (dso.includes('libstdc++')) return 'C++ runtime';
  if (dso === '[vdso]') return 'vDSO (clock)';
  return dso.split('/').pop();
}

/** On whose behalf: the nearest JavaScript frame with a source, by package (ours by layer). */
export function layerOf(frames) {
  for (const f of frames) {
    if (!/^(JS|Function|LazyCompile):/.test(f.sym)) continue;
    const source = f.sym.split(/\s+/).pop() ?? '';
    const ours = /\/dist\/([^/]+)\//.exec(source);
    if (ours && !source.includes('/node_modules/')) return `EDM: ${ours[1]}`;
    const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(source);
    if (pkg) {
      if (FASTIFY.has(pkg[1]) || pkg[1].startsWith('@fastify/')) return 'Fastify';
      return pkg[1];
    }
    if (source.startsWith('node:')) return 'Node.js (http, streams, timers)';
  }
  return 'no JavaScript frame';
}

const shares = (counts, total) =>
  Object.entries(counts)
    .map(([k, n]) => [k, Math.round((n / total) * 10_000) / 10_000])
    .sort((a, b) => b[1] - a[1]);

/**
 * Samples → shares of the process's CPU: by kind of work (`kinds`), by the code it ran for
 * (`layers`, main thread only: other threads run V8's collector helpers and the checkpoint
 * worker), by thread and by leaf symbol (`top`).
 */
export function summarizeSamples(samples, mainTid) {
  const kinds = {};
  const layers = {};
  const top = {};
  let main = 0;
  for (const { tid, frames } of samples) {
    const kind = kindOf(frames);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    const layer = tid === mainTid ? layerOf(frames) : 'other threads';
    layers[layer] = (layers[layer] ?? 0) + 1;
    if (tid === mainTid) main++;
    const leaf = frames[0] ? `${frames[0].sym}${isKernel(frames[0]) ? ' [k]' : ''}` : 'unknown';
    top[leaf] = (top[leaf] ?? 0) + 1;
  }
  const total = samples.length || 1;
  return {
    samples: samples.length,
    main_thread: Math.round((main / total) * 10_000) / 10_000,
    kinds: shares(kinds, total),
    layers: shares(layers, total),
    top: shares(top, total).slice(0, 15),
  };
}

/** Reads a finished profile round's files into its summary, per request where counts allow. */
export function readProfile(dataFile, statFile, { pid, requests, cpuUs }) {
  const script = execFileSync('perf', ['script', '-i', dataFile, '-F', 'tid,ip,sym,dso'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const samples = parseScript(script);
  // The map as the round left it (the server goes on writing to it after the round).
  const map = `/tmp/perf-${pid}.map`;
  if (existsSync(map)) renameJitFrames(samples, readFileSync(map, 'utf8'));
  const summary = summarizeSamples(samples, pid);
  const counts = parseStat(readFileSync(statFile, 'utf8'));
  const perRequest = {};
  for (const [name, n] of Object.entries(counts)) {
    const each = Math.round((n / requests) * 100) / 100;
    if (each > 0) perRequest[name] = each;
  }
  return { cpu_us: cpuUs, requests, ...summary, per_request: perRequest };
}

/** A profile as a few lines of text: µs per request by kind and by layer, counts per request. */
export function formatProfile(name, profile) {
  const us = (share) => (share * profile.cpu_us).toFixed(1);
  const list = (pairs, n) =>
    pairs
      .slice(0, n)
      .map(([k, s]) => `${k} ${us(s)}`)
      .join(' · ');
  const budgetUs = profile.budget_us;
  const budget = Number.isFinite(budgetUs) ? ` (to meet its target: ≤ ${budgetUs.toFixed(0)} µs)` : '';
  const counts = Object.entries(profile.per_request)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(' · ');
  return [
    `${name}: ${profile.cpu_us.toFixed(0)} µs of CPU per request${budget}; ${profile.samples} samples, main thread ${(profile.main_thread * 100).toFixed(0)}%`,
    `  doing (µs): ${list(profile.kinds, 9)}`,
    `  for (µs):   ${list(profile.layers, 8)}`,
    `  per request: ${counts}`,
  ].join('\n');
}
