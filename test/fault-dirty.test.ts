/**
 * Dirty logging and the fault path (user_mem_abort()'s S2, S4, S10 and exit in docs/decisions.md,
 * "Step labels"; kvm_arch_prepare_memory_region(); block splitting in the map walker):
 * write protection on enable, page-only mappings while logging, block splitting on a write
 * permission fault, KVM_GET_DIRTY_LOG (ascending gfns) and re-protection.
 */
import { describe, expect, it } from 'vitest';
import { accesses, faults, leaf, more, oneVma, run, scenario } from './helpers/scenarios.js';

const HVA = '0x7e00_0000_0000';
const GPA = 0x80_0000_0000;
const THP = { start: HVA, size: '8M', backing: 'thp', prot: 'rw' };

describe('dirty logging on a THP-backed slot', () => {
  const r = run(
    oneVma(THP, GPA, {
      steps: [
        ...accesses(['write', GPA + 0x1000], ['write', GPA + 0x20_1000]), // 0, 1: two RWX blocks
        { dirtyLog: { slot: 0, op: 'enable' } }, // 2
        ...accesses(
          ['read', GPA + 0x3000], // 3
          ['write', GPA + 0x5000], // 4
          ['write', GPA + 0x4000], // 5
          ['read', GPA + 0x40_0000], // 6
          ['write', GPA + 0x40_0000], // 7
          ['write', GPA + 0x20_2000], // 8
        ),
        { dirtyLog: { slot: 0, op: 'get-and-clear' } }, // 9
        ...accesses(['write', GPA + 0x5000], ['read', GPA + 0x4000]), // 10, 11
        { dirtyLog: { slot: 0, op: 'get-and-clear' } }, // 12
        { dirtyLog: { slot: 0, op: 'disable' } }, // 13
        ...accesses(['write', GPA + 0x6000], ['write', GPA + 0x60_0000]), // 14, 15
      ],
    }),
  );
  const at = (step: number) => r.lines.find((l) => l.step === step)!;

  it('before logging: THP blocks', () => {
    expect(leaf(at(0))).toBe('L2 0x8000000000 0x200000 0x00000000802007d9');
    expect(leaf(at(1))).toBe('L2 0x8000200000 0x200000 0x00000000804007d9');
  });

  it('enabling write-protects the slot: reads still hit the block, now without W', () => {
    expect(at(3).faults).toEqual([]);
    expect(leaf(at(3))).toBe('L2 0x8000000000 0x200000 0x0000000080200759');
  });

  it('a write permission fault on a block maps a page (force_pte): the block is split', () => {
    expect(faults(at(4))).toEqual(['permission L2 user_mem_abort 0']);
    expect(leaf(at(4))).toBe('L3 0x8000005000 0x1000 0x00000000802057db');
    expect(at(4).tlbi).toBe(1);
    // the split is lazy: the rest of the block is unmapped and faults in page by page
    expect(faults(at(5))).toEqual(['translation L3 user_mem_abort 0']);
    expect(leaf(at(5))).toBe('L3 0x8000004000 0x1000 0x00000000802047db');
  });

  it('fresh memory under logging is mapped page by page; a read maps without W', () => {
    expect(faults(at(6))).toEqual(['translation L2 user_mem_abort 0']);
    // the huge zero page (0x80600000), one 4K page of it, R-X
    expect(leaf(at(6))).toBe('L3 0x8000400000 0x1000 0x000000008060075b');
    expect(faults(at(7))).toEqual(['permission L3 user_mem_abort 0', 'translation L2 user_mem_abort 0']);
    expect(leaf(at(7))).toBe('L3 0x8000400000 0x1000 0x00000000808007db');
    expect(leaf(at(8))).toBe('L3 0x8000202000 0x1000 0x00000000804027db');
  });

  it('get-and-clear reports the written gfns ascending, whatever the write order', () => {
    expect(r.dirty[0]).toEqual({
      step: 9,
      slot: 0,
      gfns: ['0x8000004', '0x8000005', '0x8000202', '0x8000400'],
    });
  });

  it('the reported pages are write-protected again: a write relaxes, a read does not fault', () => {
    expect(faults(at(10))).toEqual(['permission L3 user_mem_abort 0']);
    expect(leaf(at(10))).toBe('L3 0x8000005000 0x1000 0x00000000802057db');
    expect(at(11).faults).toEqual([]);
    expect(leaf(at(11))).toBe('L3 0x8000004000 0x1000 0x000000008020475b');
    expect(r.dirty[1]).toEqual({ step: 12, slot: 0, gfns: ['0x8000005'] });
    expect(r.summary.relaxes).toBe(1);
  });

  it('after disabling, faults map blocks again (the table is replaced by a block)', () => {
    expect(faults(at(14))).toEqual(['translation L3 user_mem_abort 0']);
    expect(leaf(at(14))).toBe('L2 0x8000000000 0x200000 0x00000000802007d9');
    expect(leaf(at(15))).toBe('L2 0x8000600000 0x200000 0x0000000080a007d9');
  });

  it('no livelock, no diagnostics, every page released', () => {
    expect(r.summary.diagnostics).toEqual([]);
    expect(r.summary.outcomes).toEqual({ done: r.lines.length });
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });
});

describe('S10 row 4 under logging', () => {
  it('a read of a host-writable page maps it read-only while logging (writable = false)', () => {
    const shm = { start: HVA, size: '2M', backing: 'shmem', prot: 'rw', flags: ['shared'] };
    const off = run(oneVma(shm, GPA, { steps: accesses(['read', GPA + 0x1000]) }));
    expect(leaf(off.lines[0]!)).toBe('L3 0x8000001000 0x1000 0x00000000800017db');
    const on = run(
      oneVma(
        shm,
        GPA,
        { steps: accesses(['read', GPA + 0x1000], ['write', GPA + 0x1000]) },
        { flags: ['log-dirty'] },
      ),
    );
    expect(leaf(on.lines[0]!)).toBe('L3 0x8000001000 0x1000 0x000000008000175b');
    // read faults mark nothing; the write relaxes and marks its gfn
    expect(faults(on.lines[1]!)).toEqual(['permission L3 user_mem_abort 0']);
    expect(leaf(on.lines[1]!)).toBe('L3 0x8000001000 0x1000 0x00000000800017db');
    expect(on.summary.dirtyPages).toBe(1);
  });

  it('a read-only memslot is never "logging" (memslot_is_logging), so it still maps blocks', () => {
    const r = run(
      oneVma(THP, GPA, { steps: accesses(['read', GPA + 0x1000]) }, { flags: ['log-dirty', 'readonly'] }),
    );
    expect(r.lines[0]!.leaf!.level).toBe(2);
  });
});

describe('dirty bitmap marks', () => {
  it('a slot created with log-dirty marks each written gfn once; get-and-clear empties it', () => {
    const r = run(
      scenario({
        memslots: [{ slot: 0, gpa: 0x4000_0000, size: '64M', vma: 'ram', flags: ['log-dirty'] }],
        steps: [
          ...accesses(
            ['write', 0x4000_3000],
            ['write', 0x4000_1000],
            ['write', 0x4000_3008],
            ['read', 0x4000_2000],
          ),
          { dirtyLog: { slot: 0, op: 'get-and-clear' } },
          { dirtyLog: { slot: 0, op: 'get-and-clear' } },
        ],
      }),
    );
    expect(r.dirty).toEqual([
      { step: 4, slot: 0, gfns: ['0x40001', '0x40003'] },
      { step: 5, slot: 0, gfns: [] },
    ]);
    expect(r.summary.dirtyPages).toBe(2);
  });
});

describe('S2: memcache top-up for a logging write', () => {
  it('a write permission fault that must split a block tops up; with no pages left it fails -ENOMEM', () => {
    const r = run(
      oneVma(THP, GPA, {
        steps: [...accesses(['write', GPA + 0x1000]), { dirtyLog: { slot: 0, op: 'enable' } }],
      }),
    );
    const pool = r.runner.kvm.pgt.pool;
    const mc = r.runner.vcpu.memcache;
    while (mc.nobjs > 0) mc.take();
    pool.limit = pool.inUse;
    const l = more(r, 'write', GPA + 0x2000);
    expect(l.outcome).toBe('error');
    expect(l.errno).toBe('ENOMEM');
    expect(faults(l)).toEqual(['permission L2 user_mem_abort -12']);
    // the block is untouched (still write-protected)
    expect(l.leaf!.desc).toBe('0x0000000080200759');
    pool.limit = Infinity;
    expect(leaf(more(r, 'write', GPA + 0x2000))).toBe('L3 0x8000002000 0x1000 0x00000000802027db');
  });
});
