/**
 * Memory type and permissions of the stage-2 mapping (user_mem_abort()'s S10, S11, L4 and L5 in
 * docs/decisions.md, "Step labels") for each modelled kernel. Descriptors by hand
 * (stage2_set_prot_attr(), MemAttr values of arch/arm64/include/asm/memory.h):
 *   MemAttr<<2: Normal-WB 0x3c (no FWB) / 0x18 (FWB), Normal-NC 0x14, Device-nGnRE 0x04;
 *   R 0x40, W 0x80, SH=IS 0x300, AF 0x400, XN bit 54 (0x0040_0000_0000_0000);
 *   bits[1:0] = 01 for a block, 11 for a page.
 */
import { describe, expect, it } from 'vitest';
import type { Json } from './helpers/scenarios.js';
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

function dev(over: Record<string, unknown> = {}) {
  return {
    start: HVA,
    size: '4M',
    backing: 'pfnmap',
    pa: '0x40_0000_0000',
    prot: 'rw',
    flags: ['shared'],
    ...over,
  };
}

type Expect = { outcome: string; faults: string[]; leaf: string | null; errno?: string };

function check(k: string, cpu: object, vma: Json, access: string, want: Expect) {
  const r = run(oneVma(vma, GPA, { kernel: k, cpu, steps: accesses([access, GPA + 0x1000]) }));
  const l = r.lines[0]!;
  expect(l.outcome).toBe(want.outcome);
  if (want.errno) expect(l.errno).toBe(want.errno);
  expect(faults(l)).toEqual(want.faults);
  expect(leaf(l)).toBe(want.leaf);
  expect(r.refused).toEqual([]);
  expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  return r;
}

const MAP_L1 = ['translation L1 user_mem_abort 0'];
const BLOCK = 'L2 0x8000000000 0x200000 ';
const PAGE = 'L3 0x8000001000 0x1000 ';

describe('S10 row 1: PFNMAP outside the linear map, cacheable VMA, FWB+DIC', () => {
  const want: Record<string, string> = {
    // 6.16 knows no cacheable PFNMAP: any pfn outside the linear map is Device (RW, XN).
    '6.16': BLOCK + '0x00400040000007c5',
    // seed (cacheable_pfnmap), v7 and 6.17: Normal-WB (FWB 6), X because of DIC, W from the
    // shared writable host entry.
    seed: BLOCK + '0x00000040000007d9',
    v7: BLOCK + '0x00000040000007d9',
    '6.17': BLOCK + '0x00000040000007d9',
  };
  for (const k of KERNELS) {
    it(`${k}: a read maps ${want[k]}`, () => {
      check(k, CPU_FWB_DIC, dev(), 'read', { outcome: 'done', faults: MAP_L1, leaf: want[k]! });
    });
  }
  it('6.17: an exec fault on it is fine (cacheable, X from DIC); 6.16 injects an instruction abort', () => {
    check('6.17', CPU_FWB_DIC, dev(), 'exec', { outcome: 'done', faults: MAP_L1, leaf: want['6.17']! });
    check('6.16', CPU_FWB_DIC, dev(), 'exec', {
      outcome: 'iabt',
      faults: ['translation L1 user_mem_abort -8'],
      leaf: null,
    });
  });
});

describe('S10 row 2: cacheable MIXEDMAP (VM_IO) outside the linear map without FWB+DIC', () => {
  // VM_IO makes hva_to_pfn() fall back to hva_to_pfn_remapped(); without it GUP refuses the
  // special entries vmf_insert_mixed() installs (see the next block).
  const mixed = dev({ backing: 'mixedmap', flags: ['shared', 'io'] });
  it('6.17: -EFAULT decided before mmu_lock; nothing mapped', () => {
    const r = check('6.17', CPU_BARE, mixed, 'read', {
      outcome: 'error',
      errno: 'EFAULT',
      faults: ['translation L1 user_mem_abort -14'],
      leaf: null,
    });
    expect(r.summary.maps).toBe(0);
    expect(r.summary.errors).toEqual({ EFAULT: 1 });
  });
  it('v7: -EINVAL (the late check under mmu_lock)', () => {
    check('v7', CPU_BARE, mixed, 'read', {
      outcome: 'error',
      errno: 'EINVAL',
      faults: ['translation L1 user_mem_abort -22'],
      leaf: null,
    });
  });
  it('seed: -EINVAL from the mismatched-mapping check (MIXEDMAP never sets cacheable_pfnmap), FWB or not', () => {
    for (const cpu of [CPU_BARE, CPU_FWB_DIC]) {
      const r = check('seed', cpu, mixed, 'read', {
        outcome: 'error',
        errno: 'EINVAL',
        faults: ['translation L1 user_mem_abort -22'],
        leaf: null,
      });
      expect(r.summary.diagnostics).toEqual([]);
    }
  });
  it('6.16: mapped as Device (page-sized host entries → L3 page)', () => {
    check('6.16', CPU_BARE, mixed, 'read', {
      outcome: 'done',
      faults: MAP_L1,
      leaf: PAGE + '0x00400040000017c7',
    });
  });
  it('6.17 with FWB+DIC: Normal-WB page', () => {
    check('6.17', CPU_FWB_DIC, mixed, 'write', {
      outcome: 'done',
      faults: MAP_L1,
      leaf: PAGE + '0x00000040000017db',
    });
  });
});

describe('VM_MIXEDMAP without VM_IO: hva_to_pfn() has no fallback (virt/kvm/kvm_main.c)', () => {
  // On arm64 (pte_special) vmf_insert_mixed() installs special entries: GUP's
  // follow_page_pte() refuses them, and hva_to_pfn() tries hva_to_pfn_remapped() only for
  // VM_IO | VM_PFNMAP, so the pfn is KVM_PFN_ERR_FAULT and user_mem_abort() returns -EFAULT.
  for (const k of KERNELS) {
    for (const pa of ['0x40_0000_0000', '0x9000_0000']) {
      it(`${k}: over ${pa === '0x9000_0000' ? 'RAM' : 'device memory'}: -EFAULT, nothing mapped`, () => {
        const r = check(k, CPU_FWB_DIC, dev({ backing: 'mixedmap', pa }), 'read', {
          outcome: 'error',
          errno: 'EFAULT',
          faults: ['translation L1 user_mem_abort -14'],
          leaf: null,
        });
        expect(r.summary.maps).toBe(0);
      });
    }
  }
});

describe('S10 row 3 and L4: non-cacheable VMA → s2_force_noncacheable', () => {
  for (const k of KERNELS) {
    it(`${k}: Normal-NC with VM_ALLOW_ANY_UNCACHED, Device without; never X even with DIC`, () => {
      const nc = dev({ memType: 'normal-nc', flags: ['shared', 'allow-any-uncached'] });
      check(k, CPU_FWB_DIC, nc, 'read', {
        outcome: 'done',
        faults: MAP_L1,
        leaf: BLOCK + '0x00400040000007d5',
      });
      const ncNoAau = dev({ memType: 'normal-nc' });
      check(k, CPU_FWB_DIC, ncNoAau, 'read', {
        outcome: 'done',
        faults: MAP_L1,
        leaf: BLOCK + '0x00400040000007c5',
      });
      const d = dev({ memType: 'device-nGnRE' });
      check(k, CPU_BARE, d, 'write', { outcome: 'done', faults: MAP_L1, leaf: BLOCK + '0x00400040000007c5' });
      const dnE = dev({ memType: 'device-nGnRnE', flags: ['shared', 'allow-any-uncached'] });
      check(k, CPU_BARE, dnE, 'write', {
        outcome: 'done',
        faults: MAP_L1,
        leaf: BLOCK + '0x00400040000007d5',
      });
    });
  }

  it('a read of a non-cacheable mapping keeps W from the host even while dirty logging (MIXEDMAP slot)', () => {
    const r = run(
      oneVma(
        dev({ backing: 'mixedmap', memType: 'device-nGnRE', flags: ['shared', 'io'] }),
        GPA,
        { steps: accesses(['read', GPA + 0x1000]) },
        { flags: ['log-dirty'] },
      ),
    );
    expect(r.refused).toEqual([]);
    expect(leaf(r.lines[0]!)).toBe(PAGE + '0x00400040000017c7');
  });

  it('a read-only host entry (private PFNMAP) maps R only: 0x...745', () => {
    const r = run(
      oneVma(dev({ memType: 'device-nGnRE', flags: [], prot: 'r' }), GPA, {
        steps: accesses(['read', GPA + 0x1000]),
      }),
    );
    expect(leaf(r.lines[0]!)).toBe(BLOCK + '0x0040004000000745');
  });
});

describe('S11: exec on Device / Normal-NC → -ENOEXEC → injected instruction abort', () => {
  for (const k of KERNELS) {
    it(`${k}: translation fault, and permission fault on the existing mapping`, () => {
      const nc = dev({ memType: 'normal-nc', flags: ['shared', 'allow-any-uncached'] });
      const r = run(
        oneVma(nc, GPA, {
          kernel: k,
          steps: accesses(['exec', GPA + 0x1000], ['read', GPA + 0x1000], ['exec', GPA + 0x2000]),
        }),
      );
      expect(r.lines[0]!.outcome).toBe('iabt');
      expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort -8']);
      expect(r.lines[0]!.leaf).toBeNull();
      expect(faults(r.lines[2]!)).toEqual(['permission L2 user_mem_abort -8']);
      expect(r.lines[2]!.outcome).toBe('iabt');
      expect(r.lines[2]!.leaf!.desc).toBe('0x00400040000007d5');
      expect(r.summary.injected).toBe(2);
      expect(r.summary.errors).toEqual({});
    });
  }
});

describe('S10 row 4: memory in the linear map is Normal whatever the VMA says', () => {
  const ramDev = dev({ memType: 'device-nGnRE', pa: '0x9000_0000' });
  for (const k of KERNELS) {
    it(`${k}: PFNMAP of RAM with a Device vm_page_prot → Normal-WB`, () => {
      check(k, CPU_FWB_DIC, ramDev, 'read', {
        outcome: 'done',
        faults: MAP_L1,
        leaf: BLOCK + '0x00000000900007d9',
      });
    });
  }
  it('without FWB: Normal-WB 0xF, cleaned to PoC over the whole block, XN without an exec fault', () => {
    const r = check('6.17', CPU_BARE, ramDev, 'read', {
      outcome: 'done',
      faults: MAP_L1,
      leaf: BLOCK + '0x00400000900007fd',
    });
    expect(r.lines[0]!.dcacheBytes).toBe(0x20_0000);
    expect(r.lines[0]!.icacheBytes).toBe(0);
  });
});

describe('L4: protection bits', () => {
  it('W comes from the host entry: a read of shared shmem maps RW, a read of untouched anon maps the zero page R', () => {
    const r = run(
      scenario({
        vmas: [
          { name: 'ram', start: 0x7f00_0000_0000, size: '64M', backing: 'anon', prot: 'rw' },
          {
            name: 'shm',
            start: 0x7f10_0000_0000,
            size: '2M',
            backing: 'shmem',
            prot: 'rw',
            flags: ['shared'],
          },
        ],
        memslots: [
          { slot: 0, gpa: 0x4000_0000, size: '64M', vma: 'ram' },
          { slot: 1, gpa: 0x8000_0000, size: '2M', vma: 'shm' },
        ],
        steps: accesses(['read', 0x8000_1000], ['read', 0x4000_1000]),
      }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x80001000 0x1000 0x00000000800017db');
    expect(leaf(r.lines[1]!)).toBe('L3 0x40001000 0x1000 0x000000008000075b');
  });

  it('without DIC: X only on an exec fault; the exec map invalidates the I-cache over the page', () => {
    const r = run(
      scenario({
        cpu: CPU_BARE,
        steps: accesses(['read', 0x4000_1000], ['exec', 0x4000_2000], ['write', 0x4000_3000]),
      }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x004000008000077f');
    expect(leaf(r.lines[1]!)).toBe('L3 0x40002000 0x1000 0x000000008000077f');
    expect(r.lines[1]!.icacheBytes).toBe(0x1000);
    expect(r.lines[1]!.dcacheBytes).toBe(0x1000);
    expect(leaf(r.lines[2]!)).toBe('L3 0x40003000 0x1000 0x00400000800017ff');
    expect(r.lines[0]!.icacheBytes).toBe(0);
  });

  it('with DIC: every cacheable mapping is X, and no exec permission faults follow', () => {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000], ['exec', 0x4000_1000]) }));
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
    expect(r.lines[1]!.faults).toEqual([]);
    expect(r.summary.relaxes).toBe(0);
  });
});

describe('L5: relax or map', () => {
  it('a permission fault at the mapping size relaxes (adds X, I-cache only, one TLBI)', () => {
    const r = run(
      scenario({ cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000], ['exec', 0x4000_1000]) }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00400000800017ff');
    const x = r.lines[1]!;
    expect(faults(x)).toEqual(['permission L3 user_mem_abort 0']);
    expect(leaf(x)).toBe('L3 0x40001000 0x1000 0x00000000800017ff');
    expect(x.dcacheBytes).toBe(0);
    expect(x.icacheBytes).toBe(0x1000);
    expect(x.tlbi).toBe(1);
    expect(r.summary.relaxes).toBe(1);
    expect(r.summary.maps).toBe(1);
  });

  it('THP block: the permission fault reuses fault_granule (2M) and relaxes the block', () => {
    const thp = { start: HVA, size: '4M', backing: 'thp', prot: 'rw' };
    const r = run(
      oneVma(thp, GPA, {
        cpu: CPU_BARE,
        steps: accesses(['write', GPA + 0x1000], ['exec', GPA + 0x1f_f000]),
      }),
    );
    expect(leaf(r.lines[0]!)).toBe(BLOCK + '0x00400000802007fd');
    expect(r.lines[0]!.dcacheBytes).toBe(0x20_0000);
    const x = r.lines[1]!;
    expect(faults(x)).toEqual(['permission L2 user_mem_abort 0']);
    expect(leaf(x)).toBe(BLOCK + '0x00000000802007fd');
    expect(x.dcacheBytes).toBe(0);
    expect(r.summary.relaxes).toBe(1);
    // 2M is above MAX_DVM_OPS lines: the whole I-cache is invalidated instead of a range.
    expect(r.summary.icacheInvalAll).toBe(1);
  });

  it('a write permission fault on the read-only huge zero page maps (CoW retry), not relaxes', () => {
    const thp = { start: HVA, size: '4M', backing: 'thp', prot: 'rw' };
    const r = run(oneVma(thp, GPA, { steps: accesses(['read', GPA + 0x1000], ['write', GPA + 0x1000]) }));
    expect(leaf(r.lines[0]!)).toBe(BLOCK + '0x0000000080200759');
    // the CoW invalidation races the fault (retry → 0), the replayed translation fault maps the new folio
    expect(faults(r.lines[1]!)).toEqual([
      'permission L2 user_mem_abort 0',
      'translation L1 user_mem_abort 0',
    ]);
    expect(leaf(r.lines[1]!)).toBe(BLOCK + '0x00000000804007d9');
    expect(r.summary.relaxes).toBe(0);
  });
});
