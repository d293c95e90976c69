#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=33554432:glibc.malloc.arena_max=1:${GLIBC_TUNABLES} node --max-semi-space-size=8 --heap-growing-percent=150 --no-allocation-site-pretenuring
// Process settings for `edm serve`; they apply when this file runs as the executable (`npm
// start`, an installed `edm`), not under `node bin/edm.js`.
// GLIBC_TUNABLES (glibc's malloc; other C libraries ignore it): blocks up to 1 MB come from the
//   heap instead of a fresh mmap each, up to 32 MB of freed memory stays mapped, and all threads
//   share one arena. A list page is a few blocks of ~50–200 KB (SQLite's packed page, its copy
//   into a Buffer, the answer); with glibc's defaults each was mapped, faulted in page by page
//   and unmapped again, and without the single arena some processes still did so (the main
//   thread moved to a thread arena, which hands freed memory back). A 50-row page on a
//   1,000,000-row store: ~7–10 page faults per request → ~0.01, CPU ~340–620 → ~150–165 µs
//   (req/s ×2–3), peak RSS ~10–40 MB lower; writes unchanged. An operator's own GLIBC_TUNABLES
//   comes after these (env -S expands it), and glibc lets the last setting of a tunable win.
// V8 flags:
// --max-semi-space-size=8: young-generation semi-spaces of 8 MB instead of 16: under load the
//   server peaks 5–25 MB lower (VmHWM) for ~1% more CPU per request.
// --heap-growing-percent=150: after a full collection the old generation may grow to 2.5× what
//   survived before the next one begins. V8 begins marking once the old generation's headroom is
//   no larger than the young generation's capacity; left to its own growing factor, a server with
//   ~19 MB live and 8 MB semi-spaces was given ~16 MB of headroom, and under list load it marked
//   and compacted every ~80 ms (`--trace-incremental-marking`: "Start (allocation limit) 19MB /
//   35MB"), freeing ~0.5 MB each time, on the server's core and two helper threads. Not every
//   process fell into it (one of three probes did not), which is why LIST's cost moved so much
//   between runs. A 50-row page on a 100,000-row tenant, two alternating pairs: full collections
//   in 10 s 19 and 88 → 1 and 0, CPU 316–320 → 215–226 µs, p99 27–32 → 7–8 ms, peak RSS the
//   same (~150 MB); GET and writes unchanged within noise. (2.0 was not enough: 82–96 collections.)
//   The factor holds at any heap size; this server's live heap is small and bounded (its caches
//   are capped), so the headroom costs tens of MB at most (peak RSS on the 1,000,000-row bench
//   194 → 211 MB).
// --no-allocation-site-pretenuring: V8 learned to allocate pg's result rows straight in the old
//   generation (many outlive one young collection while a page arrives), and every document
//   string stored in such a row was then kept alive through young collections by it, and
//   promoted, until the next full collection. A 50-row PostgreSQL page: ~65–110 KB promoted and
//   ~190 µs of collection per request with it, none promoted and ~22 µs without; CPU per page
//   ~480–530 → ~255–305 µs. SQLite's answers promote next to nothing either way.
import { main } from '../dist/cli/edm.js';

process.exitCode = await main(process.argv.slice(2));
