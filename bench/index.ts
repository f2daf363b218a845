/**
 * `npm run bench`: the hot-path benchmarks, and the CLI's report against its --json output.
 *
 *   npm run bench                    readable table
 *   npm run bench -- --quick         a shorter run (well under a minute)
 *   npm run bench -- --json FILE     also write { "results": [ { name, opsPerSec, rme, bytesPerOp, ... } ] }
 *   npm run bench -- --compare FILE  print the change against a saved --json run
 *   npm run bench -- --filter TEXT   only cases whose name contains TEXT
 *   npm run bench -- --alloc-sites   also, under each case, where it allocates (V8's sampling heap
 *                                    profiler over a few batches; the top sites by bytes per op)
 *   npm run bench -- --scale         1 TiB at 4K through the page table, then through the fault path
 *                                    (each in its own process; --scale-part pgtable|fault for one)
 *
 * Run through the npm script, which passes --expose-gc (for bytes per op) and a large young
 * generation (so a batch's allocation is not hidden by a scavenge).
 */

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pc from 'picocolors';
import { allocationSites } from './allocsites.js';
import { faultCases } from './fault.js';
import { floorCase } from './floor.js';
import type { BenchCase, BenchResult } from './harness.js';
import { fmtRate, runCase } from './harness.js';
import { pgtableCases } from './pgtable.js';
import { reportCases } from './report.js';
import { SCALE_PARTS, runScale } from './scale.js';
import type { ScalePart } from './scale.js';

function fail(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    args: process.argv.slice(2),
    options: {
      json: { type: 'string' },
      compare: { type: 'string' },
      quick: { type: 'boolean' },
      filter: { type: 'string' },
      scale: { type: 'boolean' },
      'scale-part': { type: 'string' },
      'alloc-sites': { type: 'boolean' },
    },
  }).values;
} catch (e) {
  fail((e as Error).message);
}

if (args.scale) {
  const part = args['scale-part'];
  if (part !== undefined && !(SCALE_PARTS as readonly string[]).includes(part))
    fail(`--scale-part: expected one of ${SCALE_PARTS.join(', ')}`);
  runScale(part as ScalePart | undefined);
  process.exit(0);
}

let previous: Map<string, BenchResult> | null = null;
if (args.compare !== undefined) {
  if (!existsSync(args.compare)) fail(`--compare: no such file ${args.compare}`);
  try {
    const prev = JSON.parse(readFileSync(args.compare, 'utf8')) as { results: BenchResult[] };
    previous = new Map(prev.results.map((r) => [r.name, r]));
  } catch (e) {
    fail(`--compare: ${args.compare} is not a saved bench JSON (${(e as Error).message})`);
  }
}

const cases: BenchCase<never>[] = [
  floorCase,
  ...pgtableCases(4096),
  ...pgtableCases(65536),
  ...(args.quick ? [] : pgtableCases(16384)),
  ...faultCases(args.quick ?? false),
  ...reportCases(),
] as BenchCase<never>[];
const selected = cases.filter((c) => args.filter === undefined || c.name.includes(args.filter));
if (selected.length === 0) fail(`--filter ${args.filter}: no case matches`);

const results: BenchResult[] = [];
const floorHz = { v: NaN };
const pad = (s: string, n: number): string => s.padEnd(n);
process.stdout.write(
  pc.bold(
    `${pad('case', 44)} ${pad('ops/s', 11)} ${pad('±', 7)} ${pad('B/op', 7)} ${pad('×floor', 7)} tables/GiB\n`,
  ),
);
for (const c of selected) {
  // The fault cases' batches are long and their resets heavy: a shorter sampling time in --quick.
  const quickFault = (args.quick ?? false) && c.name.startsWith('fault/');
  const r = runCase(c, { quick: args.quick ?? false, ...(quickFault ? { maxTime: 0.4 } : {}) });
  results.push(r);
  if (c.name === 'floor') floorHz.v = r.opsPerSec;
  const frac = Number.isNaN(floorHz.v) ? '' : (r.opsPerSec / floorHz.v).toFixed(3);
  const tbl = r.tableBytesPerGiB === undefined ? '' : `${(r.tableBytesPerGiB / 2 ** 20).toFixed(2)} MiB`;
  let line = `${pad(r.name, 44)} ${pad(fmtRate(r.opsPerSec), 11)} ${pad(r.rme.toFixed(1) + '%', 7)} ${pad(
    Number.isNaN(r.bytesPerOp) ? 'n/a' : r.bytesPerOp.toFixed(1),
    7,
  )} ${pad(frac, 7)} ${tbl}`;
  const before = previous?.get(r.name);
  if (before) {
    const d = (r.opsPerSec / before.opsPerSec - 1) * 100;
    line += `  ${(d >= 0 ? pc.green : pc.red)(`${d >= 0 ? '+' : ''}${d.toFixed(1)}%`)}`;
  }
  if (r.modelled) line += `\n${' '.repeat(4)}${pc.dim(r.modelled)}`;
  process.stdout.write(line + '\n');
  if (args['alloc-sites']) {
    const sites = await allocationSites(c);
    if (sites.length === 0)
      process.stdout.write(`${' '.repeat(4)}${pc.dim('allocation sites: none sampled')}\n`);
    for (const s of sites)
      process.stdout.write(
        `${' '.repeat(4)}${pc.dim(`${s.bytesPerOp.toFixed(1).padStart(8)} B/op  ${s.site}`)}\n`,
      );
  }
}

// Issue 11: the readable report within 1.5× of --json's time on the same scenario.
const reportRun = results.find((r) => r.name === 'cli/run-report');
const jsonRun = results.find((r) => r.name === 'cli/run-json');
if (reportRun && jsonRun) {
  const ratio = jsonRun.opsPerSec / reportRun.opsPerSec;
  process.stdout.write(
    `report time / --json time: ${ratio.toFixed(2)} (${ratio <= 1.5 ? 'within' : pc.red('over')} the 1.5× bound)\n`,
  );
}

if (args.json !== undefined) {
  writeFileSync(args.json, JSON.stringify({ results }, null, 2) + '\n');
  process.stdout.write(`wrote ${args.json}\n`);
}
