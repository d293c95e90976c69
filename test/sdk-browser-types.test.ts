import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

describe('the SDK’s declarations', () => {
  // PRODUCT §3: the SDK works in the browser. Its types are derived from the declarations, so
  // they reach core and module declaration files: none may need Node's types (a Buffer did).
  it('compile in a browser project: DOM and ES libraries, no Node types, no declaration file skipped', () => {
    expect(existsSync(resolve(root, 'dist/client/index.d.ts')), 'run `npm run build` first').toBe(true);
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const run = spawnSync(process.execPath, [tsc, '-p', resolve(root, 'test/types-browser')], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(`${run.stdout}${run.stderr}`).toBe('');
    expect(run.status).toBe(0);
  }, 60_000);
});
