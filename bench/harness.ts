/**
 * The benchmark harness: benchmark.js for the timing and its statistics, one timed call per
 * cycle (each call is a large batch of operations, so the timer never dominates), an
 * untimed reset between cycles, heap bytes per operation from a forced GC around a batch,
 * and table memory per mapped GiB.
 */

import Benchmark from 'benchmark';

/** One benchmark case: a batch of `opsPerCall` operations and how to reset between batches. */
export interface BenchCase<S = unknown> {
  /** `floor`, `pgtable/...` or `fault/...`. */
  name: string;
  /** Operations one call of `run` performs. */
  opsPerCall: number;
  /** Builds the state (untimed, once). */
  setup(): S;
  /** One timed batch. */
  run(state: S): void;
  /** Brings the state back to where `run` starts (untimed, between batches). */
  reset(state: S): void;
  /** Table bytes per GiB mapped after one batch, when meaningful. */
  tableBytesPerGiB?(state: S): number;
  /** A line of modelled hardware cost for the same work, when the case has one. */
  modelled?(state: S): string;
}

/** One result line (the JSON file's `results[]`). */
export interface BenchResult {
  name: string;
  opsPerSec: number;
  /** Relative margin of error, percent. */
  rme: number;
  /** Heap bytes per op in the steady state: the median over several batches. */
  bytesPerOp: number;
  /** The largest of those batches (JIT activity shows here, not in the median). */
  bytesPerOpMax: number;
  tableBytesPerGiB?: number;
  samples: number;
  modelled?: string;
}

declare const gc: (() => void) | undefined;

function forceGc(): boolean {
  if (typeof gc === 'function') {
    gc();
    return true;
  }
  return false;
}

/** How many batches the allocation figure is taken over. */
const ALLOC_BATCHES = 7;

/**
 * Heap bytes one operation allocates in the steady state: for each of ALLOC_BATCHES batches,
 * GC, run the batch, heap delta; the median per op, and the largest. One batch alone is
 * noisy: a batch during which V8 reoptimizes a function (after another case changed the
 * type feedback) also counts the compiler's allocations. Run with a large young generation
 * fixed in size (--min/--max-semi-space-size, as `npm run bench` passes) so no scavenge
 * hides allocation inside a batch. Returns NaN figures without --expose-gc.
 */
function measureBytesPerOp<S>(c: BenchCase<S>, state: S): { median: number; max: number } {
  const per: number[] = [];
  // What the measurement itself allocates (process.memoryUsage() builds objects), taken off
  // each batch: it is a few KiB, which matters for the cases with few ops per batch.
  let overhead = Infinity;
  for (let i = 0; i < 3; i++) {
    if (!forceGc()) return { median: NaN, max: NaN };
    const before = process.memoryUsage().heapUsed;
    const after = process.memoryUsage().heapUsed;
    overhead = Math.min(overhead, after - before);
  }
  for (let i = 0; i < ALLOC_BATCHES; i++) {
    c.reset(state);
    forceGc();
    const before = process.memoryUsage().heapUsed;
    c.run(state);
    const after = process.memoryUsage().heapUsed;
    per.push(Math.max(0, (after - before - overhead) / c.opsPerCall));
  }
  per.sort((a, b) => a - b);
  return { median: per[ALLOC_BATCHES >> 1]!, max: per[ALLOC_BATCHES - 1]! };
}

/**
 * Runs one case with benchmark.js (`maxTime`, seconds, overrides the default sampling time).
 * Returns its result.
 */
export function runCase<S>(c: BenchCase<S>, opts: { quick: boolean; maxTime?: number }): BenchResult {
  const state = c.setup();
  // Warm up: let the JIT settle and the pools grow before anything is measured.
  for (let i = 0; i < (opts.quick ? 2 : 4); i++) {
    c.reset(state);
    c.run(state);
  }
  c.reset(state);
  // benchmark.js calls fn once, untimed, at the start of every cycle (clock()'s "pretest one
  // more time to check for errors") and then the timed call. Run as is, the pretest would
  // consume the state the reset prepared and the timed call would time a batch with nothing
  // left to do (maps of mapped pages, accesses that take no fault). So the first call after
  // each reset is skipped, and every cycle is checked to have been that pretest plus one
  // timed call.
  let calls = 0;
  let badCycle = -1;
  const bench = new Benchmark(c.name, {
    fn: () => {
      if (calls++ === 0) return;
      c.run(state);
    },
    initCount: 1,
    // A tiny minTime keeps one timed call per cycle, so the reset in onCycle runs between batches.
    minTime: 1e-9,
    minSamples: opts.quick ? 5 : 15,
    maxTime: opts.maxTime ?? (opts.quick ? 1.5 : 5),
    onCycle: () => {
      if (calls !== 2 && badCycle < 0) badCycle = calls;
      calls = 0;
      c.reset(state);
    },
  });
  bench.run();
  const b = bench as unknown as { error?: Error; hz: number; stats: { rme: number; sample: number[] } };
  if (b.error) throw b.error;
  if (badCycle >= 0)
    throw new Error(
      `${c.name}: benchmark.js made ${badCycle} calls in a cycle (expected a pretest and one timed call)`,
    );
  c.reset(state);
  c.run(state);
  const tableBytesPerGiB = c.tableBytesPerGiB?.(state);
  const modelled = c.modelled?.(state);
  const bytes = measureBytesPerOp(c, state);
  return {
    name: c.name,
    opsPerSec: b.hz * c.opsPerCall,
    rme: b.stats.rme,
    bytesPerOp: bytes.median,
    bytesPerOpMax: bytes.max,
    samples: b.stats.sample.length,
    ...(tableBytesPerGiB !== undefined ? { tableBytesPerGiB } : {}),
    ...(modelled !== undefined ? { modelled } : {}),
  };
}

/** Formats a rate as 12.3M/s. */
export function fmtRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M/s`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}K/s`;
  return `${x.toFixed(1)}/s`;
}

export { permutation } from '../src/scenario/permutation.js';
