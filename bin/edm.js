#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=33554432:glibc.malloc.arena_max=1 node --max-semi-space-size=8 --no-allocation-site-pretenuring
// Process settings for `edm serve`; they apply when this file runs as the executable (`npm
// start`, an installed `edm`), not under `node bin/edm.js`.
// GLIBC_TUNABLES (glibc's malloc; other C libraries ignore it): blocks up to 1 MB come from the
//   heap instead of a fresh mmap each, up to 32 MB of freed memory stays mapped, and all threads
//   share one arena. A list page is a few blocks of ~50–200 KB (SQLite's packed page, its copy
//   into a Buffer, the answer); with glibc's defaults each was mapped, faulted in page by page
//   and unmapped again, and without the single arena some processes still did so (the main
//   thread moved to a thread arena, which hands freed memory back). A 50-row page on a
//   1,000,000-row store: ~7–10 page faults per request → ~0.01, CPU ~340–620 → ~150–165 µs
//   (req/s ×2–3), peak RSS ~10–40 MB lower; writes unchanged.
// V8 flags:
// --max-semi-space-size=8: young-generation semi-spaces of 8 MB instead of 16: under load the
//   server peaks 5–25 MB lower (VmHWM) for ~1% more CPU per request.
// --no-allocation-site-pretenuring: V8 learned to allocate pg's result rows straight in the old
//   generation (many outlive one young collection while a page arrives), and every document
//   string stored in such a row was then kept alive through young collections by it, and
//   promoted, until the next full collection. A 50-row PostgreSQL page: ~65–110 KB promoted and
//   ~190 µs of collection per request with it, none promoted and ~22 µs without; CPU per page
//   ~480–530 → ~255–305 µs. SQLite's answers promote next to nothing either way.
import { main } from '../dist/cli/edm.js';

process.exitCode = await main(process.argv.slice(2));
