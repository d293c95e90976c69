import { resolve } from 'node:path';
import { defineConfig } from 'vite';

const here = import.meta.dirname;

/** Builds the Playground into dist/playground, served by the API at /playground (src/http/playground.ts). */
export default defineConfig({
  root: here,
  base: '/playground/',
  publicDir: false,
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: resolve(here, '../../dist/playground'),
    emptyOutDir: true,
    target: 'es2022',
    // Fonts, icons and images stay files of our own origin; nothing is fetched from elsewhere.
    assetsInlineLimit: 0,
  },
});
