import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { LockTracker, LOCK_MMU_READ } from '../src/mmu/locks.js';

describe('lock tracking', () => {
  it('a balanced fault path reports nothing', () => {
    const l = new LockTracker();
    const idx = l.srcuReadLock();
    l.mmapReadLock();
    l.mmapReadUnlock();
    l.mmuReadLock();
    l.mmuReadUnlock();
    l.srcuReadUnlock(idx);
    expect(l.isBalanced()).toBe(true);
    expect(l.assertBalanced()).toEqual([]);
    expect(l.acquires[LOCK_MMU_READ]).toBe(1);
  });

  it('a return that leaks mmap_lock is a diagnostic, and reset clears it', () => {
    const l = new LockTracker();
    l.srcuReadLock();
    l.mmapReadLock();
    l.srcuReadUnlock(0);
    const d = l.assertBalanced('step 4');
    expect(d).toEqual(['step 4: mmap_lock (read) still held (1) at exit']);
    l.reset();
    expect(l.assertBalanced()).toEqual([]);
  });

  it('reports releases without acquisitions and self-deadlocks', () => {
    const l = new LockTracker();
    l.mmuReadUnlock();
    l.mmuReadLock();
    l.mmuWriteLock();
    l.mmuWriteUnlock();
    l.mmuReadUnlock();
    const d = l.assertBalanced();
    expect(d).toHaveLength(2);
    expect(d[0]).toMatch(/mmu_lock \(read\) released 1 time/);
    expect(d[1]).toMatch(/self-deadlock/);
  });

  it('isBalanced() is "nothing held, no underflow, no deadlock", under any sequence', () => {
    // isBalanced() reads two running counts (the check after every access); the per-kind arrays
    // and the deadlock count are the reference.
    const ops = [
      'mmapReadLock',
      'mmapReadUnlock',
      'mmuReadLock',
      'mmuReadUnlock',
      'mmuWriteLock',
      'mmuWriteUnlock',
      'srcuReadLock',
      'srcuReadUnlock',
      'reset',
    ] as const;
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...ops), { maxLength: 40 }), (seq) => {
        const l = new LockTracker();
        for (const op of seq) {
          if (op === 'srcuReadUnlock') l.srcuReadUnlock(0);
          else l[op]();
          const reference =
            l.held.every((n) => n === 0) && l.underflows.every((n) => n === 0) && l.deadlocks === 0;
          expect(l.isBalanced()).toBe(reference);
          expect(l.assertBalanced().length === 0).toBe(reference);
        }
      }),
      { numRuns: 300 },
    );
  });
});
