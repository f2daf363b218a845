/**
 * The behaviour differences between the modelled kernels (src/mmu/kernel.ts): "6.16" (before
 * the cacheable-PFNMAP series), "seed" (the diff of the 19 Jun 2025 reply, step by step),
 * "v7" (the archived v7 4/5 patch of 18 Jun 2025) and "6.17" (as merged, with the
 * 5f9466b50c1b page-leak fix). Functions named are arch/arm64/kvm/mmu.c's user_mem_abort()
 * and kvm_arch_prepare_memory_region(), and virt/kvm/kvm_main.c's hva_to_pfn().
 */
import { describe, expect, it } from 'vitest';
import { KERNELS as KERNEL_MODELS } from '../src/mmu/kernel.js';
import { VM_MIXEDMAP, vmaSetUpdateFlags } from '../src/mmu/host/vma.js';
import type { ScenarioRunner } from '../src/scenario/run.js';
import type { Kvm } from '../src/mmu/vm.js';
import {
  CPU_BARE,
  CPU_FWB_DIC,
  KERNELS,
  accesses,
  faults,
  leaf,
  more,
  oneVma,
  run,
  scenario,
} from './helpers/scenarios.js';

const HVA = '0x7e00_0000_0000';
const GPA = 0x80_0000_0000;

/**
 * Makes every pfn look outside the linear map from the race window on (after GUP, before the
 * memory-type classification): a page with a struct page that pfn_is_map_memory() rejects,
 * as ZONE_DEVICE memory is. Lets the tests hold a page reference on the early-return paths.
 * The hook patches a step of the general path, so these runs switch the fused fast path off
 * (an anonymous page, the only kind it handles, is always in the linear map).
 */
const GENERAL_PATH = { fusedFaults: false };
function outsideLinearMapAfterGup(r: ScenarioRunner): void {
  const kvm = r.kvm;
  const window = kvm.notifier.raceWindow.bind(kvm.notifier);
  kvm.notifier.raceWindow = () => {
    kvm.phys.pfnIsMapMemoryOp = () => false;
    return window();
  };
}

/**
 * Marks the RAM VMA VM_MIXEDMAP, as a driver's VMA whose pages were inserted with
 * vm_insert_page(): normal, refcounted pages that GUP takes (unlike vmf_insert_mixed()'s
 * special entries).
 */
function mixedmapOfPages(r: ScenarioRunner): void {
  const mm = r.kvm.mm;
  const v = mm.vmas.vmas[0]!;
  mm.vmas = vmaSetUpdateFlags(mm.vmas, v.id, v.vmFlags | VM_MIXEDMAP);
}

const PFNMAP_DEV = { start: HVA, size: '4M', backing: 'pfnmap', pa: '0x40_0000_0000', prot: 'rw' };

describe('COW VM_PFNMAP (private, VM_MAYWRITE)', () => {
  for (const k of ['seed', 'v7'] as const) {
    it(`${k}: -EINVAL under mmap_lock, and the lock is leaked (lock-balance diagnostic)`, () => {
      const r = run(oneVma(PFNMAP_DEV, GPA, { kernel: k, steps: accesses(['read', GPA + 0x1000]) }));
      const l = r.lines[0]!;
      expect(l.outcome).toBe('error');
      expect(l.errno).toBe('EINVAL');
      expect(faults(l)).toEqual(['translation L1 user_mem_abort -22']);
      expect(r.summary.diagnostics).toEqual([
        'access read 0x8000001000: mmap_lock (read) still held (1) at exit',
      ]);
    });
  }

  it('6.16 and 6.17 have no such check: the read maps the PFNMAP read-only', () => {
    // 6.16: Device (pfn outside the linear map); 6.17: cacheable VMA with FWB+DIC → Normal-WB, X.
    const want = { '6.16': '0x0040004000000745', '6.17': '0x0000004000000759' };
    for (const k of ['6.16', '6.17'] as const) {
      const r = run(oneVma(PFNMAP_DEV, GPA, { kernel: k, steps: accesses(['read', GPA + 0x1000]) }));
      expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 ' + want[k]);
      // No lock left held. 6.16 maps the cacheable VMA's device memory uncached, which the
      // host-consistency audit names (and 6.17 does not).
      expect(r.summary.diagnostics.filter((d) => !d.startsWith('host-consistency: memtype'))).toEqual([]);
      expect(r.summary.diagnostics.length).toBe(k === '6.16' ? 1 : 0);
    }
  });

  it('a shared PFNMAP is not a COW mapping: the seed maps it', () => {
    const r = run(
      oneVma({ ...PFNMAP_DEV, flags: ['shared'] }, GPA, {
        kernel: 'seed',
        steps: accesses(['read', GPA + 0x1000]),
      }),
    );
    expect(r.lines[0]!.outcome).toBe('done');
  });
});

describe('a write to a private PFNMAP whose host entry is present and read-only', () => {
  // hva_to_pfn_remapped(): follow_pfnmap_start() finds the entry, so fixup_user_fault() is
  // not called and copy-on-write is never broken; `write_fault && !args.writable` gives
  // KVM_PFN_ERR_RO_FAULT, and user_mem_abort() returns -EFAULT (is_error_noslot_pfn).
  for (const k of ['6.16', '6.17'] as const) {
    it(`${k}: -EFAULT, nothing mapped, the host keeps mapping the device pfn`, () => {
      const r = run(oneVma(PFNMAP_DEV, GPA, { kernel: k, steps: accesses(['write', GPA + 0x1000]) }));
      const l = r.lines[0]!;
      expect(l.outcome).toBe('error');
      expect(l.errno).toBe('EFAULT');
      expect(faults(l)).toEqual(['translation L1 user_mem_abort -14']);
      expect(l.leaf).toBeNull();
      const mm = r.runner.kvm.mm;
      expect(mm.stats.cowBreaks).toBe(0);
      expect(mm.stats.faultAllocs).toBe(0);
      expect(r.summary.maps).toBe(0);
    });

    it(`${k}: after a read mapped it read-only, the write's permission fault is -EFAULT too`, () => {
      const r = run(
        oneVma(PFNMAP_DEV, GPA, {
          kernel: k,
          steps: accesses(['read', GPA + 0x1000], ['write', GPA + 0x1000]),
        }),
      );
      const w = r.lines[1]!;
      expect(faults(w)).toEqual(['permission L2 user_mem_abort -14']);
      expect(w.errno).toBe('EFAULT');
      // The read-only block stays as the read installed it, over the device pfns.
      expect(w.leaf!.desc).toBe(r.lines[0]!.leaf!.desc);
      expect(r.runner.kvm.mm.stats.cowBreaks).toBe(0);
    });
  }
});

describe('which pfns count as "no cache maintenance possible"', () => {
  it('an anonymous page outside the linear map: Device in 6.16, -EINVAL in the seed, Normal in v7 and 6.17', () => {
    const want: Record<string, string> = {
      '6.16': '0x00400000800017c7', // kvm_is_device_pfn(): Device RW, XN
      // !pfn_is_map_memory(): s2_noncacheable (not a cacheable PFNMAP), and the VMA is
      // cacheable: the seed's mismatched-mapping -EINVAL (step 3).
      seed: 'EINVAL',
      v7: '0x00000000800017db', // kvm_can_use_cmo_pfn() false, but the VMA is cacheable and FWB+DIC
      '6.17': '0x00000000800017db', // not PFNMAP/MIXEDMAP: ordinary RAM
    };
    for (const k of KERNELS) {
      const r = run(
        scenario({ kernel: k, steps: accesses(['write', 0x4000_1000]) }),
        outsideLinearMapAfterGup,
        GENERAL_PATH,
      );
      const l = r.lines[0]!;
      expect(l.outcome === 'error' ? l.errno : l.leaf!.desc).toBe(want[k]);
    }
  });

  it('without FWB+DIC only 6.17 maps it cacheable (the early -EFAULT needs PFNMAP/MIXEDMAP)', () => {
    const out: Record<string, string> = {};
    for (const k of KERNELS) {
      const r = run(
        scenario({ kernel: k, cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }),
        outsideLinearMapAfterGup,
        GENERAL_PATH,
      );
      const l = r.lines[0]!;
      out[k] = l.outcome === 'error' ? l.errno! : l.leaf!.desc;
    }
    expect(out).toEqual({
      '6.16': '0x00400000800017c7',
      seed: 'EINVAL',
      v7: 'EINVAL',
      '6.17': '0x00400000800017ff',
    });
  });
});

describe('a cacheable VMA on a CPU without FWB+DIC', () => {
  it('ordinary RAM: v7 fails late with -EINVAL; 6.16, the seed and 6.17 map Normal-WB', () => {
    for (const k of KERNELS) {
      const r = run(scenario({ kernel: k, cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }));
      const l = r.lines[0]!;
      if (k === 'v7') {
        expect(l.errno).toBe('EINVAL');
        expect(faults(l)).toEqual(['translation L1 user_mem_abort -22']);
        // late: under mmu_lock, with the page released there
        expect(r.runner.kvm.mm.pagesHeld).toBe(0);
        expect(r.summary.diagnostics).toEqual([]);
      } else {
        expect(leaf(l)).toBe('L3 0x40001000 0x1000 0x00400000800017ff');
        expect(r.summary.diagnostics).toEqual([]);
      }
    }
  });

  it('v7: the late check is not retried by a racing invalidation: it comes after the retry check', () => {
    // with an invalidation in the window, the fault is retried first (L1 before the late check)
    const r = run(scenario({ kernel: 'v7', cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }), (rr) =>
      rr.kvm.notifier.armRace(1, 0x7f00_0000_0000, 0x7f00_0000_1000),
    );
    expect(faults(r.lines[0]!)).toEqual([
      'translation L1 user_mem_abort 0',
      'translation L1 user_mem_abort -22',
    ]);
  });

  it('6.17: the -EFAULT is decided before mmu_lock, so a racing invalidation cannot turn it into a retry', () => {
    const mixed = {
      start: HVA,
      size: '4M',
      backing: 'mixedmap',
      pa: '0x40_0000_0000',
      prot: 'rw',
      flags: ['shared', 'io'],
    };
    const r = run(oneVma(mixed, GPA, { cpu: CPU_BARE, steps: accesses(['read', GPA]) }), (rr) =>
      rr.kvm.notifier.armRace(1, 0x7e00_0000_0000, 0x7e00_0000_1000),
    );
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort -14']);
  });
});

/**
 * The seed (docs/decisions.md, "The seed model"), one test per difference and per step, with the
 * outcome the other kernels give beside it.
 */
describe('seed: user_mem_abort() of the 19 Jun 2025 diff, row by row', () => {
  const sharedDev = { ...PFNMAP_DEV, flags: ['shared'] };

  it('row "COW VM_PFNMAP" (step 1): -EINVAL with mmap_lock held, before any pfn lookup', () => {
    const r = run(oneVma(PFNMAP_DEV, GPA, { kernel: 'seed', steps: accesses(['write', GPA]) }));
    expect(r.lines[0]!.errno).toBe('EINVAL');
    expect(r.summary.diagnostics[0]).toMatch(/mmap_lock \(read\) still held/);
    // No pfn was looked up: the host entry was never even synthesised by a fault.
    expect(r.runner.kvm.mm.stats.faultAllocs).toBe(0);
  });

  it('row "no CMO possible" (step 2): any VMA, by pfn: a non-cacheable PFNMAP of device memory is Device', () => {
    const d = { ...sharedDev, memType: 'device-nGnRE' };
    const r = run(oneVma(d, GPA, { kernel: 'seed', steps: accesses(['write', GPA]) }));
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00400040000007c5');
  });

  it('row "cacheable PFNMAP, FWB+DIC" (step 5): Normal write-back, executable, like RAM', () => {
    const r = run(oneVma(sharedDev, GPA, { kernel: 'seed', steps: accesses(['exec', GPA]) }));
    expect(r.lines[0]!.outcome).toBe('done');
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00000040000007d9');
  });

  it('row "cacheable PFNMAP without FWB+DIC" (step 2): -EFAULT early, when the VMA under a memslot changed', () => {
    // The memslot check (step 6) refuses such a slot, so the fault is reachable only when
    // the VMA under an existing slot is replaced: a non-cacheable PFNMAP passes the check,
    // then a cacheable one is mapped over it (MAP_FIXED).
    const scen = (k: string) =>
      oneVma({ ...sharedDev, memType: 'device-nGnRE' }, GPA, {
        kernel: k,
        cpu: CPU_BARE,
        steps: [{ mmap: { ...sharedDev, name: 'hbm' } }, ...accesses(['read', GPA])],
      });
    const out: Record<string, string> = {};
    for (const k of KERNELS) {
      const r = run(scen(k));
      expect(r.refused).toEqual([]);
      const l = r.lines[0]!;
      out[k] = l.outcome === 'error' ? `${l.errno} ${faults(l).join()}` : l.leaf!.desc;
      if (k === 'seed') expect(r.runner.kvm.mm.pagesHeld).toBe(0); // a PFNMAP holds no page
    }
    expect(out).toEqual({
      '6.16': '0x00400040000007c5', // Device, whatever the VMA says
      seed: 'EFAULT translation L1 user_mem_abort -14', // early, before mmu_lock
      v7: 'EINVAL translation L1 user_mem_abort -22', // late, under mmu_lock
      '6.17': 'EFAULT translation L1 user_mem_abort -14',
    });
  });

  it('the same through the library: the slot made under 6.16, the fault taken by the seed', () => {
    const r = run(oneVma(sharedDev, GPA, { kernel: '6.16', cpu: CPU_BARE, steps: [] }));
    expect(r.refused).toEqual([]);
    (r.runner.kvm as { kernel: Kvm['kernel'] }).kernel = KERNEL_MODELS.seed;
    const l = more(r, 'read', GPA);
    expect(l.errno).toBe('EFAULT');
    expect(faults(l)).toEqual(['translation L1 user_mem_abort -14']);
    expect(l.leaf).toBeNull();
  });

  it('row "cacheable VMA + non-cacheable S2" (step 3): -EINVAL, no lock held; other kernels differ', () => {
    const mixed = { ...sharedDev, backing: 'mixedmap', flags: ['shared', 'io'] };
    const out: Record<string, string> = {};
    for (const k of KERNELS) {
      const r = run(oneVma(mixed, GPA, { kernel: k, steps: accesses(['read', GPA]) }));
      const l = r.lines[0]!;
      out[k] = l.outcome === 'error' ? l.errno! : l.leaf!.desc;
      if (k === 'seed') expect(r.summary.diagnostics).toEqual([]);
    }
    // 6.16 maps a Device page (a MIXEDMAP gets no PFNMAP block); v7 and 6.17 a Normal-WB
    // page (cacheable VMA, FWB+DIC), X from DIC.
    expect(out).toEqual({
      '6.16': '0x00400040000007c7',
      seed: 'EINVAL',
      v7: '0x00000040000007db',
      '6.17': '0x00000040000007db',
    });
  });

  it('row "exec on non-cacheable S2" (step 4): -ENOEXEC, an injected instruction abort', () => {
    const nc = { ...sharedDev, memType: 'normal-nc', flags: ['shared', 'allow-any-uncached'] };
    const r = run(oneVma(nc, GPA, { kernel: 'seed', steps: accesses(['exec', GPA]) }));
    expect(r.lines[0]!.outcome).toBe('iabt');
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort -8']);
  });

  it('row "memslot check" (step 6): a cacheable PFNMAP slot is refused without FWB+DIC only', () => {
    const bare = run(oneVma(sharedDev, GPA, { kernel: 'seed', cpu: CPU_BARE }));
    expect(bare.refused).toEqual([{ slot: 0, errno: 'EINVAL', step: null }]);
    const grace = run(oneVma(sharedDev, GPA, { kernel: 'seed', cpu: CPU_FWB_DIC }));
    expect(grace.refused).toEqual([]);
    const nc = run(oneVma({ ...sharedDev, memType: 'device-nGnRE' }, GPA, { kernel: 'seed', cpu: CPU_BARE }));
    expect(nc.refused).toEqual([]);
  });

  it('"nothing else differs from 6.16": ordinary RAM on a bare CPU faults exactly as in 6.16', () => {
    const steps = accesses(['read', 0x4000_1000], ['write', 0x4000_1000], ['exec', 0x4020_0000]);
    const a = run(scenario({ kernel: 'seed', cpu: CPU_BARE, steps }));
    const b = run(scenario({ kernel: '6.16', cpu: CPU_BARE, steps }));
    expect(a.lines).toEqual(b.lines);
    expect(a.lines.every((l) => l.outcome === 'done')).toBe(true);
  });
});

describe('early returns and the page reference (5f9466b50c1b)', () => {
  const deviceAnon = {
    vmas: [
      {
        name: 'ram',
        start: 0x7f00_0000_0000,
        size: '64M',
        backing: 'anon',
        prot: 'rw',
        memType: 'device-nGnRE',
      },
    ],
  };

  it('-ENOEXEC with a page held: 6.16, the seed and v7 return without releasing it (diagnosed)', () => {
    for (const k of ['6.16', 'seed', 'v7'] as const) {
      const r = run(
        scenario({ kernel: k, ...deviceAnon, steps: accesses(['exec', 0x4000_1000]) }),
        outsideLinearMapAfterGup,
        GENERAL_PATH,
      );
      const l = r.lines[0]!;
      expect(l.outcome).toBe('iabt');
      expect(faults(l)).toEqual(['translation L1 user_mem_abort -8']);
      expect(r.summary.diagnostics).toEqual([
        `kernel ${k}: user_mem_abort returned -8 without releasing the page (leaked)`,
      ]);
    }
  });

  it('6.17 releases it (a MIXEDMAP VMA of refcounted pages outside the linear map)', () => {
    const r = run(scenario({ ...deviceAnon, steps: accesses(['exec', 0x4000_1000]) }), (rr) => {
      outsideLinearMapAfterGup(rr);
      mixedmapOfPages(rr);
    });
    const l = r.lines[0]!;
    expect(l.outcome).toBe('iabt');
    expect(faults(l)).toEqual(['translation L1 user_mem_abort -8']);
    expect(r.summary.diagnostics).toEqual([]);
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });

  it('6.17: the early -EFAULT releases the page too', () => {
    const r = run(scenario({ cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }), (rr) => {
      outsideLinearMapAfterGup(rr);
      mixedmapOfPages(rr);
    });
    expect(r.lines[0]!.errno).toBe('EFAULT');
    expect(r.summary.diagnostics).toEqual([]);
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });

  it('without a page (raw pfn) there is nothing to leak in any kernel', () => {
    const dev = { ...PFNMAP_DEV, flags: ['shared'], memType: 'device-nGnRE' };
    for (const k of KERNELS) {
      const r = run(oneVma(dev, GPA, { kernel: k, steps: accesses(['exec', GPA + 0x1000]) }));
      expect(r.lines[0]!.outcome).toBe('iabt');
      expect(r.summary.diagnostics).toEqual([]);
    }
  });
});

describe('the run option overrides the scenario kernel', () => {
  it('kernel: "6.17" in the file, run as 6.16 → Device mapping', () => {
    const pf = { ...PFNMAP_DEV, flags: ['shared'] };
    const r = run(oneVma(pf, GPA, { cpu: CPU_FWB_DIC, steps: accesses(['read', GPA]) }), undefined, {
      kernel: '6.16',
    });
    expect(r.lines[0]!.leaf!.desc).toBe('0x00400040000007c5');
  });
});
