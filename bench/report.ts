/**
 * The CLI's two outputs of `s2emu run` over the same scenario: the readable report
 * (aggregated per step, formatted once) and `--json` (a line per access). Both parse the file,
 * build the host and run every access; the difference is the output. Issue 11 asks the report
 * to stay within 1.5× of --json's time; the bench prints the ratio after both cases.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../src/cli/run.js';
import type { BenchCase } from './harness.js';

/** A grace host, 256 MiB of THP RAM written at 4K stride, then read: 131072 accesses. */
const ACCESSES = 2 * 65536;
const SCENARIO = {
  cpu: { profile: 'grace' },
  granule: '4K',
  physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
  vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '256M', backing: 'thp', prot: 'rw' }],
  memslots: [{ slot: 0, gpa: '0x4000_0000', size: '256M', vma: 'ram' }],
  steps: [
    { touch: { from: '0x4000_0000', size: '256M', stride: '4K', access: 'write' } },
    { touch: { from: '0x4000_0000', size: '256M', stride: '4K', access: 'read', order: 'random' } },
  ],
};

function cliCase(name: string, json: boolean): BenchCase<{ file: string; bytes: number }> {
  return {
    name,
    opsPerCall: ACCESSES,
    setup() {
      const dir = mkdtempSync(join(tmpdir(), 's2emu-bench-'));
      const file = join(dir, 'scenario.json');
      writeFileSync(file, JSON.stringify(SCENARIO));
      return { file, bytes: 0 };
    },
    run(s) {
      const status = runCommand([s.file], {
        json,
        kernel: undefined,
        color: false,
        quiet: true,
        write: (t) => {
          s.bytes += t.length;
        },
      });
      if (status !== 0) throw new Error(`${name}: exit status ${status}`);
    },
    reset() {},
  };
}

/** The two cases, report first. */
export function reportCases(): BenchCase<{ file: string; bytes: number }>[] {
  return [cliCase('cli/run-report', false), cliCase('cli/run-json', true)];
}
