/**
 * kvm_arch_prepare_memory_region() (arch/arm64/kvm/mmu.c) per modelled kernel, and what the fault
 * path does with the slots it accepts.
 */
import { describe, expect, it } from 'vitest';
import {
  CPU_BARE,
  CPU_FWB_DIC,
  KERNELS,
  accesses,
  faults,
  leaf,
  oneVma,
  run,
  scenario,
} from './helpers/scenarios.js';

const HVA = '0x7e00_0000_0000';
const GPA = 0x80_0000_0000;
const PFN = {
  start: HVA,
  size: '4M',
  backing: 'pfnmap',
  pa: '0x40_0000_0000',
  prot: 'rw',
  flags: ['shared'],
};

describe('kvm_arch_prepare_memory_region() step 2: the slot must lie inside the IPA space', () => {
  it('a slot ending beyond 2^ipaBits is refused with -EFAULT; one ending exactly at it is accepted', () => {
    const at = (gpa: string) =>
      run(
        scenario({
          vm: { ipaBits: 36 },
          memslots: [{ slot: 0, gpa, size: '4M', vma: 'ram' }],
          steps: accesses(['write', 0xf_ffe0_1000]),
        }),
      );
    const beyond = at('0xf_ffe0_0000');
    expect(beyond.refused).toEqual([{ slot: 0, errno: 'EFAULT', step: null }]);
    expect(beyond.lines[0]!.outcome).toBe('mmio');
    const edge = at('0xf_ffc0_0000');
    expect(edge.refused).toEqual([]);
    expect(edge.lines[0]!.outcome).toBe('done');
  });
});

describe('kvm_arch_prepare_memory_region() step 3: VM_PFNMAP and dirty logging', () => {
  for (const k of KERNELS) {
    it(`${k}: a PFNMAP slot with log-dirty is refused (-EINVAL); enabling logging later is refused too`, () => {
      const r = run(
        oneVma(PFN, GPA, { kernel: k, steps: accesses(['read', GPA]) }, { flags: ['log-dirty'] }),
      );
      expect(r.refused).toEqual([{ slot: 0, errno: 'EINVAL', step: null }]);
      expect(r.lines[0]!.outcome).toBe('mmio');
      const r2 = run(
        oneVma(PFN, GPA, {
          kernel: k,
          steps: [{ dirtyLog: { slot: 0, op: 'enable' } }, ...accesses(['read', GPA])],
        }),
      );
      expect(r2.refused).toEqual([]);
      // (6.16 also maps the cacheable VMA's device memory uncached: the audit's memtype line.)
      expect(r2.summary.diagnostics.filter((d) => !d.startsWith('host-consistency: memtype'))).toEqual([
        'steps[0]: dirtyLog enable on slot 0 failed: EINVAL',
      ]);
      // the slot kept its flags: still mapped with blocks
      expect(r2.lines[0]!.leaf!.level).toBe(2);
    });
  }

  it('a MIXEDMAP slot with log-dirty is accepted (only VM_PFNMAP is checked)', () => {
    const r = run(
      oneVma(
        { ...PFN, backing: 'mixedmap', flags: ['shared', 'io'] },
        GPA,
        { steps: accesses(['write', GPA]) },
        { flags: ['log-dirty'] },
      ),
    );
    expect(r.refused).toEqual([]);
    expect(r.lines[0]!.leaf!.level).toBe(3);
  });
});

describe('kvm_arch_prepare_memory_region() step 3: cacheable VM_PFNMAP needs FWB and DIC', () => {
  const cpus: [string, object][] = [
    ['neither', CPU_BARE],
    ['FWB only', { ...CPU_BARE, fwb: true }],
    ['DIC only', { ...CPU_BARE, dic: true }],
  ];
  for (const [name, cpu] of cpus) {
    it(`${name}: seed and 6.17 refuse (-EINVAL); 6.16 accepts and maps Device`, () => {
      for (const k of ['seed', '6.17']) {
        const r = run(oneVma(PFN, GPA, { kernel: k, cpu, steps: accesses(['read', GPA]) }));
        expect(r.refused).toEqual([{ slot: 0, errno: 'EINVAL', step: null }]);
      }
      const old = run(oneVma(PFN, GPA, { kernel: '6.16', cpu, steps: accesses(['read', GPA]) }));
      expect(old.refused).toEqual([]);
      expect(old.lines[0]!.leaf!.desc).toBe('0x00400040000007c5');
    });
  }

  it('FWB and DIC: accepted everywhere', () => {
    for (const k of KERNELS)
      expect(run(oneVma(PFN, GPA, { kernel: k, cpu: CPU_FWB_DIC })).refused).toEqual([]);
  });

  it('a non-cacheable PFNMAP is accepted without FWB+DIC', () => {
    for (const memType of ['normal-nc', 'device-nGnRE', 'device-nGnRnE']) {
      const r = run(oneVma({ ...PFN, memType }, GPA, { cpu: CPU_BARE, steps: accesses(['read', GPA]) }));
      expect(r.refused).toEqual([]);
      expect(r.lines[0]!.leaf!.desc).toBe('0x00400040000007c5');
    }
  });

  it('a cacheable MIXEDMAP passes memslot creation and fails at fault time with -EFAULT (6.17)', () => {
    const r = run(
      oneVma({ ...PFN, backing: 'mixedmap' }, GPA, {
        cpu: CPU_BARE,
        steps: accesses(['read', GPA], ['write', GPA + 0x1000]),
      }),
    );
    expect(r.refused).toEqual([]);
    for (const l of r.lines) {
      expect(l.errno).toBe('EFAULT');
      expect(l.leaf).toBeNull();
    }
    expect(faults(r.lines[1]!)).toEqual(['translation L1 user_mem_abort -14']);
  });

  it('a refused slot added by a step reports the step index', () => {
    const r = run(
      scenario({
        cpu: CPU_BARE,
        vmas: [PFN].map((v) => ({ ...v, name: 'dev' })),
        memslots: [],
        steps: [{ memslot: { slot: 3, gpa: GPA, size: '4M', vma: 'dev' } }, ...accesses(['read', GPA])],
      }),
    );
    expect(r.refused).toEqual([{ slot: 3, errno: 'EINVAL', step: 0 }]);
    expect(r.lines[0]!.outcome).toBe('mmio');
  });
});

describe('kvm_arch_prepare_memory_region() step 3: MTE', () => {
  const cpu = { ...CPU_FWB_DIC, mte: true };
  it('every VMA in the slot range must have VM_MTE_ALLOWED (-EINVAL), checked before PFNMAP rules', () => {
    const r = run(oneVma(PFN, GPA, { cpu, vm: { ipaBits: 40, mte: true } }));
    expect(r.refused).toEqual([{ slot: 0, errno: 'EINVAL', step: null }]);
    const ok = run(
      oneVma({ ...PFN, flags: ['shared', 'mte-allowed'] }, GPA, { cpu, vm: { ipaBits: 40, mte: true } }),
    );
    expect(ok.refused).toEqual([]);
  });
  it('anon VMAs get VM_MTE_ALLOWED implicitly on an MTE CPU', () => {
    expect(run(scenario({ cpu, vm: { ipaBits: 40, mte: true } })).refused).toEqual([]);
  });
});

describe('kvm_arch_prepare_memory_region() step 1 and deletion', () => {
  it('deleting a slot unmaps its stage-2 range; the IPA becomes MMIO', () => {
    const r = run(
      scenario({
        steps: [
          ...accesses(['write', 0x4000_1000]),
          { deleteMemslot: 0 },
          ...accesses(['read', 0x4000_1000]),
        ],
      }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
    expect(r.lines[1]!.outcome).toBe('mmio');
    expect(r.lines[1]!.leaf).toBeNull();
  });
});
