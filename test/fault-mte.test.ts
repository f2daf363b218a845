/**
 * MTE on the fault path (user_mem_abort()'s L3, sanitise_mte_tags() and the memslot check of
 * kvm_arch_prepare_memory_region(), arch/arm64/kvm/mmu.c).
 */
import { describe, expect, it } from 'vitest';
import { VM_MTE_ALLOWED, vmaByName, vmaSetUpdateFlags } from '../src/mmu/host/vma.js';
import {
  CPU_BARE,
  CPU_FWB_DIC,
  accesses,
  faults,
  leaf,
  more,
  oneVma,
  run,
  scenario,
} from './helpers/scenarios.js';

const MTE_CPU = { ...CPU_FWB_DIC, mte: true };
const MTE_VM = { cpu: MTE_CPU, vm: { ipaBits: 40, mte: true } };
const HVA = '0x7e00_0000_0000';
const GPA = 0x80_0000_0000;

describe('L3: sanitise_mte_tags on first mapping', () => {
  it('anon: one page cleared per new page; the zero page is never cleared', () => {
    const r = run(
      scenario({
        ...MTE_VM,
        steps: accesses(['write', 0x4000_1000], ['write', 0x4000_2000], ['read', 0x4000_3000]),
      }),
    );
    expect(r.lines.map((l) => l.outcome)).toEqual(['done', 'done', 'done']);
    expect(r.summary.mtePagesCleared).toBe(2);
  });

  it('THP block: the whole 2M (512 pages) is cleared by the one fault', () => {
    const r = run(
      oneVma({ start: HVA, size: '4M', backing: 'thp', prot: 'rw' }, GPA, {
        ...MTE_VM,
        steps: accesses(['write', GPA + 0x1000]),
      }),
    );
    expect(r.lines[0]!.leaf!.level).toBe(2);
    expect(r.summary.mtePagesCleared).toBe(512);
  });

  it('hugetlb under force_pte (logging): nr_pages cleared, but the whole folio is marked tagged', () => {
    const hp = { start: HVA, size: '2M', backing: 'hugetlb', hugePage: '2M', prot: 'rw' };
    const r = run(
      oneVma(
        hp,
        GPA,
        { ...MTE_VM, steps: accesses(['write', GPA + 0x1000], ['write', GPA + 0x2000]) },
        { flags: ['log-dirty'] },
      ),
    );
    expect(r.lines.map((l) => l.leaf!.level)).toEqual([3, 3]);
    // the second page is in the same folio: its tags are never cleared (literal kernel behaviour)
    expect(r.summary.mtePagesCleared).toBe(1);
  });

  it('THP under logging: pages are latched one by one', () => {
    const thp = { start: HVA, size: '2M', backing: 'thp', prot: 'rw' };
    const r = run(
      oneVma(
        thp,
        GPA,
        { ...MTE_VM, steps: accesses(['write', GPA + 0x1000], ['write', GPA + 0x2000]) },
        { flags: ['log-dirty'] },
      ),
    );
    expect(r.summary.mtePagesCleared).toBe(2);
  });

  it('a non-cacheable mapping skips L3 (no tags), even on an MTE VM', () => {
    const mixed = {
      start: HVA,
      size: '4M',
      backing: 'mixedmap',
      pa: '0x40_0000_0000',
      prot: 'rw',
      memType: 'device-nGnRE',
      // VM_IO: hva_to_pfn() reaches a MIXEDMAP's special entries only through
      // hva_to_pfn_remapped().
      flags: ['shared', 'mte-allowed', 'io'],
    };
    const r = run(oneVma(mixed, GPA, { ...MTE_VM, steps: accesses(['write', GPA + 0x1000]) }));
    expect(leaf(r.lines[0]!)).toBe('L3 0x8000001000 0x1000 0x00400040000017c7');
    expect(r.summary.mtePagesCleared).toBe(0);
  });

  it('a cacheable PFNMAP forced to VM_MTE_ALLOWED reaches sanitise_mte_tags without a struct page: diagnosed, nothing cleared', () => {
    const hbm = {
      start: HVA,
      size: '4M',
      backing: 'pfnmap',
      pa: '0x40_0000_0000',
      prot: 'rw',
      memType: 'normal',
      flags: ['shared', 'mte-allowed'],
    };
    const r = run(oneVma(hbm, GPA, { ...MTE_VM, steps: accesses(['write', GPA + 0x1000]) }));
    expect(r.lines[0]!.outcome).toBe('done');
    expect(r.summary.mtePagesCleared).toBe(0);
    expect(
      r.summary.diagnostics.some((d) =>
        d.startsWith('sanitise_mte_tags on pfn 0x4000000 outside the linear map'),
      ),
    ).toBe(true);
  });

  it('a VM without MTE clears nothing', () => {
    const r = run(scenario({ cpu: MTE_CPU, steps: accesses(['write', 0x4000_1000]) }));
    expect(r.summary.mtePagesCleared).toBe(0);
  });
});

describe('L3: -EFAULT for a VMA without VM_MTE_ALLOWED', () => {
  it('memslot creation refuses such a VMA first (kvm_arch_prepare_memory_region(), -EINVAL)', () => {
    const r = run(
      scenario({
        ...MTE_VM,
        vmas: [
          {
            name: 'ram',
            start: 0x7f00_0000_0000,
            size: '64M',
            backing: 'anon',
            prot: 'rw',
            flags: ['no-mte-allowed'],
          },
        ],
        steps: accesses(['write', 0x4000_1000]),
      }),
    );
    expect(r.refused).toEqual([{ slot: 0, errno: 'EINVAL', step: null }]);
    expect(r.lines[0]!.outcome).toBe('mmio');
  });

  it('at fault time (the VMA changed after the slot was made): -EFAULT under mmu_lock, page released', () => {
    const r = run(scenario({ ...MTE_VM, steps: accesses(['write', 0x4000_1000]) }));
    const mm = r.runner.kvm.mm;
    const vma = vmaByName(mm.vmas, 'ram')!;
    mm.vmas = vmaSetUpdateFlags(mm.vmas, vma.id, vma.vmFlags & ~VM_MTE_ALLOWED);
    const cleared = r.runner.kvm.totals.mtePagesCleared;
    const l = more(r, 'write', 0x4000_2000);
    expect(l.outcome).toBe('error');
    expect(l.errno).toBe('EFAULT');
    expect(faults(l)).toEqual(['translation L3 user_mem_abort -14']);
    expect(l.leaf).toBeNull();
    expect(mm.pagesHeld).toBe(0);
    expect(r.runner.kvm.locks.isBalanced()).toBe(true);
    expect(r.runner.kvm.totals.mtePagesCleared).toBe(cleared);
    // a permission fault skips L3: the mapped page can still be made executable / written
    expect(more(r, 'read', 0x4000_1000).outcome).toBe('done');
  });
});

describe('v7: the late -EINVAL comes after MTE sanitisation', () => {
  it('v7 without FWB+DIC: tags cleared, then -EINVAL; 6.17 maps ordinary RAM', () => {
    const cpu = { ...CPU_BARE, mte: true };
    const seed = run(
      scenario({
        kernel: 'v7',
        cpu,
        vm: { ipaBits: 40, mte: true },
        steps: accesses(['write', 0x4000_1000]),
      }),
    );
    expect(seed.lines[0]!.errno).toBe('EINVAL');
    expect(faults(seed.lines[0]!)).toEqual(['translation L1 user_mem_abort -22']);
    expect(seed.summary.mtePagesCleared).toBe(1);
    expect(seed.runner.kvm.mm.pagesHeld).toBe(0);
    const k617 = run(
      scenario({ cpu, vm: { ipaBits: 40, mte: true }, steps: accesses(['write', 0x4000_1000]) }),
    );
    expect(leaf(k617.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00400000800017ff');
    expect(k617.summary.mtePagesCleared).toBe(1);
  });
});
