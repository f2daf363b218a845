/**
 * The readable report's per-step aggregation (src/cli/report.ts) keeps constant memory per
 * distinct class, whatever the number of accesses and distinct leaves: a run of 2^25 + 1
 * accesses, each ending on a different leaf, keeps one leaf class, one fault class, and no
 * per-leaf state (the old report kept a Set of leaf IPAs and died at 2^24 entries).
 */
import { describe, expect, it } from 'vitest';
import { StepReport, retText, wrap } from '../src/cli/report.js';
import { AccessResult, OUT_DONE } from '../src/mmu/vcpu.js';
import { FAULT_TRANSLATION } from '../src/pgtable/hwwalk.js';

describe('StepReport', () => {
  it('aggregates 2^25 + 1 distinct leaves in constant memory', () => {
    const r = new AccessResult();
    r.outcome = OUT_DONE;
    r.leafValid = true;
    r.leafLevel = 3;
    r.leafSize = 4096;
    r.leafHi = 0;
    const a = new StepReport();
    const n = 2 ** 25 + 1;
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < n; i++) {
      // A different page each time (PA and IPA), the same attributes.
      r.leafIpa = 0x4000_0000 + i * 4096;
      r.leafLo = ((0x8000_0000 + i * 4096) % 2 ** 32) | 0x7db;
      r.nFaults = 0;
      if ((i & 0xffff) === 0) r.pushFault(0, FAULT_TRANSLATION, 3, false, 'user_mem_abort', 0);
      a.add(r, null);
    }
    const grown = process.memoryUsage().heapUsed - before;
    expect(a.accesses).toBe(n);
    expect(a.leaves.size).toBe(1);
    expect([...a.leaves.values()][0]!.count).toBe(n);
    expect(a.faults.size).toBe(1);
    expect([...a.faults.values()][0]!.count).toBe(Math.ceil(n / 0x10000));
    expect(a.outcomes[OUT_DONE]).toBe(n);
    // A Set of 2^25 leaf IPAs alone would hold hundreds of MiB; garbage of the loop aside,
    // the aggregate itself holds a few objects.
    expect(grown).toBeLessThan(64 * 2 ** 20);
  }, 120_000);

  it('keeps one class per distinct level and attribute set', () => {
    const r = new AccessResult();
    r.outcome = OUT_DONE;
    r.leafValid = true;
    const a = new StepReport();
    for (const [level, lo, hi] of [
      [3, 0x8000_17db, 0],
      [3, 0x8000_27db, 0], // same class, another page
      [2, 0x8020_07d9, 0], // a block
      [3, 0x8000_17c7, 0x0040_0000], // Device, XN
    ] as const) {
      r.leafLevel = level;
      r.leafLo = lo;
      r.leafHi = hi;
      a.add(r, null);
    }
    expect([...a.leaves.values()].map((c) => c.count)).toEqual([2, 1, 1]);
  });
});

describe('report text helpers', () => {
  it('names negative returns by errno', () => {
    expect(retText(-8)).toBe('-ENOEXEC');
    expect(retText(-14)).toBe('-EFAULT');
    expect(retText(0)).toBe('0');
    expect(retText(1)).toBe('1');
  });

  it('wraps long text to the width, indenting continuation lines', () => {
    expect(wrap('aaa bbb ccc ddd', 8, '  ')).toEqual(['aaa bbb', '  ccc', '  ddd']);
    expect(wrap('x'.repeat(20), 8, '  ')).toEqual(['x'.repeat(20)]);
  });
});
