#!/usr/bin/env -S node --max-semi-space-size=8 --no-allocation-site-pretenuring
// V8 flags for `edm serve` (they apply when this file runs as the executable: `npm start`, an
// installed `edm`; not under `node bin/edm.js`):
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
