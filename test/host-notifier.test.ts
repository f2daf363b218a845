import { describe, it, expect } from 'vitest';
import { MmuNotifier, RACE_COMPLETE, RACE_HOLD } from '../src/mmu/host/notifier.js';

function withLog() {
  const n = new MmuNotifier();
  const log: string[] = [];
  n.subscribe({
    invalidateRange: (r) => log.push(`inv ${r.start}-${r.end} inProgress=${n.inProgress} seq=${n.seq}`),
    clearYoung: (r) => {
      log.push(`young ${r.start}-${r.end}`);
      return r.start === 0;
    },
  });
  return { n, log };
}

describe('MMU notifier counters', () => {
  it('start raises in_progress before the subscriber runs; end bumps seq then drops in_progress', () => {
    const { n, log } = withLog();
    n.invalidateRangeStart(0x1000, 0x3000);
    expect(log).toEqual(['inv 4096-12288 inProgress=1 seq=0']);
    expect(n.mmuInvalidateRetry(0)).toBe(true);
    n.invalidateRangeEnd(0x1000, 0x3000);
    expect(n.seq).toBe(1);
    expect(n.inProgress).toBe(0);
    expect(n.mmuInvalidateRetry(0)).toBe(true);
    expect(n.mmuInvalidateRetry(1)).toBe(false);
  });

  it('clearYoung returns what the subscriber reports', () => {
    const { n } = withLog();
    expect(n.clearYoung(0, 10)).toBe(true);
    expect(n.clearYoung(5, 10)).toBe(false);
    n.subscribe(null);
    expect(n.clearYoung(0, 10)).toBe(false);
  });
});

describe('race injection in the fault window', () => {
  it('does nothing unless armed', () => {
    const { n, log } = withLog();
    expect(n.raceWindow()).toBe(false);
    expect(log).toEqual([]);
  });

  it('RACE_COMPLETE moves the sequence once, so a sampled mmu_seq must retry', () => {
    const { n, log } = withLog();
    const mmuSeq = n.seq;
    n.armRace(RACE_COMPLETE, 0x2000, 0x4000);
    expect(n.raceArmed).toBe(true);
    expect(n.raceWindow()).toBe(true);
    expect(n.raceWindow()).toBe(false); // one-shot
    expect(log).toEqual(['inv 8192-16384 inProgress=1 seq=0']);
    expect(n.inProgress).toBe(0);
    expect(n.mmuInvalidateRetry(mmuSeq)).toBe(true);
    expect(n.stats.racesFired).toBe(1);
  });

  it('RACE_HOLD keeps the invalidation in progress until released', () => {
    const { n } = withLog();
    const mmuSeq = n.seq;
    n.armRace(RACE_HOLD, 0, 0x1000);
    n.raceWindow();
    expect(n.seq).toBe(mmuSeq);
    expect(n.inProgress).toBe(1);
    expect(n.mmuInvalidateRetry(mmuSeq)).toBe(true);
    expect(n.releaseHeld()).toBe(1);
    expect(n.inProgress).toBe(0);
    expect(n.seq).toBe(mmuSeq + 1);
    expect(n.mmuInvalidateRetry(n.seq)).toBe(false);
    expect(n.releaseHeld()).toBe(0);
  });
});
