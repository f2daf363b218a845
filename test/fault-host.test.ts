/**
 * The host side of the fault path (user_mem_abort()'s S3, S9 and L1 in docs/decisions.md, "Step
 * labels", and its outcomes): anonymous memory (zero page, copy-on-write invalidation and
 * retry), userfaultfd, hardware poison, the MMU-notifier race window, host unmap/mprotect, and
 * user_mem_abort()'s errors.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { RACE_COMPLETE, RACE_HOLD } from '../src/mmu/host/notifier.js';
import { EMPTY_VMA_SET } from '../src/mmu/host/vma.js';
import { AccessResult, OUT_SIGBUS } from '../src/mmu/vcpu.js';
import { ACC_READ, ACC_WRITE } from '../src/mmu/access.js';
import { accesses, faults, leaf, more, oneVma, run, scenario } from './helpers/scenarios.js';

const RAM_HVA = 0x7f00_0000_0000;

describe('anonymous memory', () => {
  it('a read maps the shared zero page read-only; a write breaks CoW: invalidation, retry, new page', () => {
    const r = run(
      scenario({ steps: accesses(['read', 0x4000_1000], ['read', 0x4000_2000], ['write', 0x4000_1000]) }),
    );
    // both reads map the same zero page (PA 0x80000000), R-X
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x000000008000075b');
    expect(leaf(r.lines[1]!)).toBe('L3 0x40002000 0x1000 0x000000008000075b');
    const w = r.lines[2]!;
    // the permission fault's faultin breaks CoW; the MMU notifier unmaps stage 2 and bumps
    // the sequence, so mmu_invalidate_retry() makes it return 0; the guest faults again.
    expect(faults(w)).toEqual(['permission L3 user_mem_abort 0', 'translation L3 user_mem_abort 0']);
    expect(leaf(w)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
    expect(r.runner.kvm.notifier.stats.invalidations).toBe(1);
    expect(r.summary.maps).toBe(3);
    expect(r.summary.relaxes).toBe(0);
  });

  it('a write to never-touched memory allocates directly (no CoW, one fault)', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000]) }));
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort 0']);
    expect(r.runner.kvm.notifier.stats.invalidations).toBe(0);
    expect(r.summary.hostPagesZeroed).toBe(1);
  });
});

describe('userfaultfd (missing mode)', () => {
  it('one event per unpopulated page; the VMM populates it writable, so a read maps RW', () => {
    const r = run(
      scenario({
        vmas: [
          { name: 'ram', start: RAM_HVA, size: '64M', backing: 'anon', prot: 'rw', userfaultfd: 'missing' },
        ],
        steps: accesses(
          ['read', 0x4000_1000],
          ['write', 0x4000_2000],
          ['write', 0x4000_1000],
          ['read', 0x4000_2000],
        ),
      }),
    );
    expect(r.lines.map((l) => l.uffd)).toEqual([1, 1, 0, 0]);
    expect(r.summary.uffdEvents).toBe(2);
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
    expect(r.lines[2]!.faults).toEqual([]);
  });

  it('hugetlb: one event per huge page', () => {
    const r = run(
      oneVma(
        {
          start: '0x7e00_0000_0000',
          size: '4M',
          backing: 'hugetlb',
          hugePage: '2M',
          prot: 'rw',
          userfaultfd: 'missing',
        },
        0x80_0000_0000,
        { steps: accesses(['write', 0x80_0000_1000], ['write', 0x80_0010_0000], ['write', 0x80_0020_0000]) },
      ),
    );
    expect(r.lines.map((l) => l.uffd)).toEqual([1, 0, 1]);
  });
});

describe('hardware poison (S9)', () => {
  it('SIGBUS (BUS_MCEERR_AR) with lsb = PAGE_SHIFT, handler returns 0, nothing mapped', () => {
    const r = run(scenario({ steps: accesses(['read', 0x4000_1000], ['write', 0x4000_2000]) }), (rr) => {
      expect(rr.kvm.mm.poisonHva(RAM_HVA + 0x2000)).toBeGreaterThan(0);
    });
    expect(r.lines[0]!.outcome).toBe('done');
    const p = r.lines[1]!;
    expect(p.outcome).toBe('sigbus');
    expect(faults(p)).toEqual(['translation L3 user_mem_abort 0']);
    expect(p.leaf).toBeNull();
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
    const res = new AccessResult();
    expect(r.runner.vcpu.access(ACC_WRITE, 0x4000_2000, res)).toBe(OUT_SIGBUS);
    expect(res.sigbusLsb).toBe(12);
  });

  it('hugetlb 2M: lsb = the hstate shift (21)', () => {
    const r = run(
      oneVma(
        { start: '0x7e00_0000_0000', size: '4M', backing: 'hugetlb', hugePage: '2M', prot: 'rw' },
        0x80_0000_0000,
        {},
      ),
      (rr) => rr.kvm.mm.poisonHva(0x7e00_0000_0000),
    );
    const res = new AccessResult();
    expect(r.runner.vcpu.access(ACC_READ, 0x80_0000_1000, res)).toBe(OUT_SIGBUS);
    expect(res.sigbusLsb).toBe(21);
    expect(res.nFaults).toBe(1);
    expect(res.faults[0]!.ret).toBe(0);
  });
});

describe('hardware poison: the lsb is the vma_shift left by S4', () => {
  function lsb(hugePage: string, size: string, gpa: number, slot: Record<string, unknown> = {}): number {
    const r = run(
      oneVma({ start: '0x7e00_0000_0000', size, backing: 'hugetlb', hugePage, prot: 'rw' }, gpa, {}, slot),
      (rr) => rr.kvm.mm.poisonHva(0x7e00_0000_0000),
    );
    const res = new AccessResult();
    expect(r.runner.vcpu.access(ACC_READ, gpa + 0x1000, res)).toBe(OUT_SIGBUS);
    return res.sigbusLsb;
  }
  it('2M under dirty logging (force_pte): PAGE_SHIFT', () => {
    expect(lsb('2M', '4M', 0x80_0000_0000, { flags: ['log-dirty'] })).toBe(12);
  });
  it('64K (CONT_PTE, demoted to PAGE): PAGE_SHIFT', () => {
    expect(lsb('64K', '2M', 0x80_0000_0000)).toBe(12);
  });
  it('1G with the PUD check failing: PMD_SHIFT', () => {
    expect(lsb('1G', '1G', 0x80_0020_0000)).toBe(21);
  });
  it('a poisoned subpage makes the whole hugetlb folio poisoned', () => {
    const r = run(
      oneVma(
        { start: '0x7e00_0000_0000', size: '4M', backing: 'hugetlb', hugePage: '2M', prot: 'rw' },
        0x80_0000_0000,
        {},
        { flags: ['log-dirty'] },
      ),
      (rr) => rr.kvm.mm.poisonHva(0x7e00_0000_5000),
    );
    const res = new AccessResult();
    expect(r.runner.vcpu.access(ACC_READ, 0x80_0000_1000, res)).toBe(OUT_SIGBUS);
    expect(r.runner.vcpu.access(ACC_READ, 0x80_0020_1000, res)).not.toBe(OUT_SIGBUS);
  });
  it('1G mapped at PUD: PUD_SHIFT', () => {
    expect(lsb('1G', '1G', 0x80_0000_0000)).toBe(30);
  });
});

describe('L1: mmu_invalidate_retry and the race window', () => {
  it('an invalidation that completes between faultin and mmu_lock: -EAGAIN → 0, the guest refaults', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000], ['read', 0x4000_1000]) }), (rr) =>
      rr.kvm.notifier.armRace(RACE_COMPLETE, RAM_HVA, RAM_HVA + 0x1000),
    );
    expect(r.runner.kvm.notifier.stats.racesFired).toBe(1);
    expect(faults(r.lines[0]!)).toEqual([
      'translation L1 user_mem_abort 0',
      'translation L1 user_mem_abort 0',
    ]);
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
    expect(r.summary.maps).toBe(1); // the first fault never reached the map
    expect(r.lines[1]!.faults).toEqual([]);
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });

  it('a race on an unrelated range still retries (the sequence is global)', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000]) }), (rr) =>
      rr.kvm.notifier.armRace(RACE_COMPLETE, 0x1000, 0x2000),
    );
    expect(faults(r.lines[0]!)).toHaveLength(2);
  });

  it('an invalidation still in progress makes every fault retry until it ends', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000]) }), (rr) =>
      rr.kvm.notifier.armRace(RACE_HOLD, RAM_HVA, RAM_HVA + 0x1000),
    );
    const l = r.lines[0]!;
    expect(l.outcome).toBe('livelock');
    expect(l.faults.every((f) => f.handler === 'user_mem_abort' && f.ret === 0)).toBe(true);
    expect(l.leaf).toBeNull();
    expect(r.summary.diagnostics.some((d) => d.startsWith('livelock'))).toBe(true);
    expect(r.runner.kvm.notifier.releaseHeld()).toBe(1);
    const after = more(r, 'write', 0x4000_1000);
    expect(after.outcome).toBe('done');
    expect(faults(after)).toEqual(['translation L1 user_mem_abort 0']);
  });
});

describe('host unmap and mprotect', () => {
  it('MADV_DONTNEED unmaps stage 2; the next access faults a fresh page in', () => {
    const r = run(
      scenario({
        steps: [
          ...accesses(['write', 0x4000_1000]),
          { hostUnmap: { vma: 'ram', offset: 0x1000, size: 0x1000 } },
          ...accesses(['read', 0x4000_1000]),
        ],
      }),
    );
    expect(faults(r.lines[1]!)).toEqual(['translation L1 user_mem_abort 0']);
    // the freed page is gone: an untouched anon page reads as the zero page
    expect(leaf(r.lines[1]!)).toBe('L3 0x40001000 0x1000 0x000000008000075b');
  });

  it('mprotect to read-only: reads map without W; a write is an error PFN → -EFAULT', () => {
    const r = run(
      scenario({
        steps: [
          ...accesses(['write', 0x4000_1000]),
          { hostProtect: { vma: 'ram', prot: 'r' } },
          ...accesses(['read', 0x4000_1000], ['write', 0x4000_1000]),
        ],
      }),
    );
    expect(leaf(r.lines[1]!)).toBe('L3 0x40001000 0x1000 0x000000008000175b');
    const w = r.lines[2]!;
    expect(w.outcome).toBe('error');
    expect(w.errno).toBe('EFAULT');
    expect(faults(w)).toEqual(['permission L3 user_mem_abort -14']);
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });
});

describe("user_mem_abort()'s errors", () => {
  it('error PFN: a write to a VMA without VM_WRITE → -EFAULT', () => {
    const r = run(
      scenario({
        vmas: [{ name: 'ram', start: RAM_HVA, size: '64M', backing: 'anon', prot: 'r' }],
        steps: accesses(['write', 0x4000_1000]),
      }),
    );
    expect(r.lines[0]!.errno).toBe('EFAULT');
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort -14']);
  });

  it('no VMA at the slot address: -EFAULT with mmap_lock dropped', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000]) }));
    r.runner.kvm.mm.vmas = EMPTY_VMA_SET;
    const l = more(r, 'write', 0x4000_2000);
    expect(l.errno).toBe('EFAULT');
    expect(faults(l)).toEqual(['translation L3 user_mem_abort -14']);
    expect(r.runner.kvm.locks.isBalanced()).toBe(true);
    expect(r.runner.kvm.diagnostics).toEqual([]);
  });

  it('memcache top-up failure: -ENOMEM from KVM_RUN, nothing mapped', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000]) }), (rr) => {
      const pool = rr.kvm.pgt.pool;
      pool.limit = pool.inUse;
    });
    expect(r.lines[0]!.outcome).toBe('error');
    expect(r.lines[0]!.errno).toBe('ENOMEM');
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort -12']);
    expect(r.lines[0]!.leaf).toBeNull();
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });

  it('a permission fault needs no top-up: a full pool does not stop a relax', () => {
    const r = run(
      scenario({
        cpu: { fwb: true, dic: false, idc: true, mte: false, tlbiRange: true, hafdbs: true, lse: true },
        steps: accesses(['write', 0x4000_1000]),
      }),
    );
    const pool = r.runner.kvm.pgt.pool;
    pool.limit = pool.inUse;
    // drain the vCPU's memcache so a top-up would have to allocate
    const mc = r.runner.vcpu.memcache;
    while (mc.nobjs > 0) mc.take();
    const x = more(r, 'exec', 0x4000_1000);
    expect(faults(x)).toEqual(['permission L3 user_mem_abort 0']);
    expect(x.outcome).toBe('done');
    expect(x.leaf!.desc).toBe('0x00000000800017db');
  });
});

describe('livelock never happens in normal scenarios', () => {
  it('the Grace example and a mixed workload end without livelock or diagnostics', () => {
    const grace = JSON.parse(
      readFileSync(new URL('../examples/grace-gpu-passthrough.json', import.meta.url), 'utf8'),
    );
    const g = run(grace);
    expect(g.summary.outcomes['livelock']).toBeUndefined();
    expect(g.summary.diagnostics).toEqual([]);
    const r = run(
      scenario({
        cpu: { profile: 'neoverse-n1' },
        steps: [
          {
            touch: { from: 0x4000_0000, size: '4M', stride: '4K', access: 'read', order: 'random', seed: 7 },
          },
          { touch: { from: 0x4000_0000, size: '4M', stride: '4K', access: 'exec' } },
          { touch: { from: 0x4000_0000, size: '4M', stride: '4K', access: 'cas', order: 'random', seed: 3 } },
          { hostUnmap: { vma: 'ram', offset: 0, size: '1M' } },
          { dirtyLog: { slot: 0, op: 'enable' } },
          { touch: { from: 0x4000_0000, size: '4M', stride: '4K', access: 'write' } },
          { age: { ipa: 0x4000_0000, size: '4M' } },
          { touch: { from: 0x4000_0000, size: '4M', stride: '4K', access: 'read' } },
        ],
      }),
    );
    expect(r.summary.outcomes).toEqual({ done: r.lines.length });
    expect(r.summary.diagnostics).toEqual([]);
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });
});
