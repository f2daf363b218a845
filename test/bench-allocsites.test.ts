/**
 * `npm run bench -- --alloc-sites`: the sampling heap profiler's report names the function
 * that allocates, in bytes per op, and reports nothing for a case that allocates nothing.
 */
import { describe, expect, it } from 'vitest';
import { allocationSites } from '../bench/allocsites.js';
import type { BenchCase } from '../bench/harness.js';

const OPS = 20_000;

interface Sink {
  kept: { i: number }[];
  sum: number;
}

/** One small object per op, kept until the next reset. */
function allocateOnePerOp(s: Sink): void {
  for (let i = 0; i < OPS; i++) s.kept.push({ i });
}

/** Arithmetic only. */
function allocateNothing(s: Sink): void {
  let x = 0;
  for (let i = 0; i < OPS; i++) x = (x + i) | 0;
  s.sum = x;
}

function benchCase(name: string, run: (s: Sink) => void): BenchCase<Sink> {
  return {
    name,
    opsPerCall: OPS,
    setup: () => ({ kept: [], sum: 0 }),
    run,
    reset: (s) => {
      s.kept = [];
    },
  };
}

describe('bench --alloc-sites', () => {
  it('names the allocating function, with its bytes per op', async () => {
    const sites = await allocationSites(benchCase('allocates', allocateOnePerOp));
    expect(sites.length).toBeGreaterThan(0);
    expect(sites[0]!.site).toMatch(/^allocateOnePerOp \(bench-allocsites\.test\.ts\) ← /);
    // A small object is 16 to 32 bytes, plus the array growing under it.
    expect(sites[0]!.bytesPerOp).toBeGreaterThan(8);
  });

  it('reports no site for a case that allocates nothing', async () => {
    const sites = await allocationSites(benchCase('silent', allocateNothing));
    expect(sites.filter((s) => s.site.startsWith('allocateNothing'))).toEqual([]);
  });
});
