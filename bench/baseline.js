// `npm run bench:baseline [-- --quick]`: re-takes the committed baseline on this machine, for
// when the bench runs on another machine than the baseline's (it says so). Without --quick: one
// full run with --profile → bench/results/baseline.json. With it: three quick runs →
// bench/results/baseline-quick.json, each row and check the median of the three (baselineOf).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { baselineOf } from './compare.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
  },
});
const root = new URL('..', import.meta.url).pathname;
const runs = Number(args.runs ?? (args.quick ? 3 : 1));
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${args.runs}`);
const flags = args.quick ? ['--quick'] : ['--profile'];
const results = [];
for (let i = 1; i <= runs; i++) {
  process.stderr.write(`[baseline] run ${i} of ${runs}: node bench/run.js ${flags.join(' ')}\n`);
  const run = spawnSync(process.execPath, [join(root, 'bench/run.js'), ...flags], { stdio: 'inherit' });
  if (run.status !== 0) throw new Error(`bench run ${i} failed (exit ${run.status}); the baseline is unchanged`);
  results.push(JSON.parse(readFileSync(join(root, 'bench/results/latest.json'), 'utf8')));
}
const file = join(root, args.quick ? 'bench/results/baseline-quick.json' : 'bench/results/baseline.json');
const note =
  runs > 1
    ? `Each row and check: the median of ${runs} ${args.quick ? 'quick ' : ''}runs on the baseline machine (rows by ratio, checks by value).`
    : undefined;
writeFileSync(file, `${JSON.stringify(baselineOf(results, note), null, 2)}\n`);
process.stderr.write(`[baseline] wrote ${file}\n`);
