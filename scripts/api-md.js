// Writes docs/api.md from the built declarations and docs/errors.md from the error registry: `npm run docs:api`.
import { writeFileSync } from 'node:fs';
import { renderApiMd } from '../dist/http/api-md.js';
import { buildManifest } from '../dist/http/manifest.js';
import { renderErrorsMd } from '../dist/http/problem-docs.js';
import { modules } from '../dist/modules/index.js';

const target = new URL('../docs/api.md', import.meta.url);
writeFileSync(target, renderApiMd(buildManifest(modules)));
process.stdout.write(`wrote ${target.pathname}\n`);
const errors = new URL('../docs/errors.md', import.meta.url);
writeFileSync(errors, renderErrorsMd());
process.stdout.write(`wrote ${errors.pathname}\n`);
