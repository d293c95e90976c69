#!/usr/bin/env node
import { main } from '../dist/cli/edm.js';

process.exitCode = await main(process.argv.slice(2));
