#!/usr/bin/env node
// The `s2emu` executable: all logic is in app.ts, so tests can import it without running it.
import { cli } from './app.js';

cli(process.argv.slice(2));
