/**
 * The behaviour differences between the modelled kernels (fault-path.md §1.2): "6.16" (before
 * the cacheable-PFNMAP series), "seed" (the v7 proposal) and "6.17" (as merged, with the
 * 5f9466b50c1b page-leak fix).
 */
import { describe, expect, it } from 'vitest';
import type { ScenarioRunner } from '../src/scenario/run.js';
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

/**
 * Makes every pfn look outside the linear map from the race window on (after GUP, before the
 * memory-type classification): a page with a struct page that pfn_is_map_memory() rejects,
 * as ZONE_DEVICE memory is. Lets the tests hold a page reference on the early-return paths.
 */
function outsideLinearMapAfterGup(r: ScenarioRunner): void {
  const kvm = r.kvm;
  const window = kvm.notifier.raceWindow.bind(kvm.notifier);
  kvm.notifier.raceWindow = () => {
    kvm.phys.pfnIsMapMemoryAt = () => false;
    return window();
  };
}

describe('COW VM_PFNMAP (private, VM_MAYWRITE)', () => {
  const cow = { start: HVA, size: '4M', backing: 'pfnmap', pa: '0x40_0000_0000', prot: 'rw' };

  it('seed: -EINVAL under mmap_lock, and the lock is leaked (lock-balance diagnostic)', () => {
    const r = run(oneVma(cow, GPA, { kernel: 'seed', steps: accesses(['read', GPA + 0x1000]) }));
    const l = r.lines[0]!;
    expect(l.outcome).toBe('error');
    expect(l.errno).toBe('EINVAL');
    expect(faults(l)).toEqual(['translation L1 user_mem_abort -22']);
    expect(r.summary.diagnostics).toEqual([
      'access read 0x8000001000: mmap_lock (read) still held (1) at exit',
    ]);
  });

  it('6.16 and 6.17 have no such check: the read maps the PFNMAP read-only', () => {
    // 6.16: Device (pfn outside the linear map); 6.17: cacheable VMA with FWB+DIC → Normal-WB, X.
    const want = { '6.16': '0x0040004000000745', '6.17': '0x0000004000000759' };
    for (const k of ['6.16', '6.17'] as const) {
      const r = run(oneVma(cow, GPA, { kernel: k, steps: accesses(['read', GPA + 0x1000]) }));
      expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 ' + want[k]);
      expect(r.summary.diagnostics).toEqual([]);
    }
  });

  it('a shared PFNMAP is not a COW mapping: the seed maps it', () => {
    const r = run(
      oneVma({ ...cow, flags: ['shared'] }, GPA, { kernel: 'seed', steps: accesses(['read', GPA + 0x1000]) }),
    );
    expect(r.lines[0]!.outcome).toBe('done');
  });
});

describe('which pfns count as "no cache maintenance possible"', () => {
  it('an anonymous page outside the linear map: Device in 6.16, Normal in seed and 6.17', () => {
    const want: Record<string, string> = {
      '6.16': '0x00400000800017c7', // kvm_is_device_pfn(): Device RW, XN
      seed: '0x00000000800017db', // kvm_can_use_cmo_pfn() false, but the VMA is cacheable and FWB+DIC
      '6.17': '0x00000000800017db', // not PFNMAP/MIXEDMAP: ordinary RAM
    };
    for (const k of KERNELS) {
      const r = run(
        scenario({ kernel: k, steps: accesses(['write', 0x4000_1000]) }),
        outsideLinearMapAfterGup,
      );
      expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 ' + want[k]);
    }
  });

  it('without FWB+DIC only 6.17 maps it (the early -EFAULT needs PFNMAP/MIXEDMAP)', () => {
    const out: Record<string, string> = {};
    for (const k of KERNELS) {
      const r = run(
        scenario({ kernel: k, cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }),
        outsideLinearMapAfterGup,
      );
      const l = r.lines[0]!;
      out[k] = l.outcome === 'error' ? l.errno! : l.leaf!.desc;
    }
    expect(out).toEqual({ '6.16': '0x00400000800017c7', seed: 'EINVAL', '6.17': '0x00400000800017ff' });
  });
});

describe('a cacheable VMA on a CPU without FWB+DIC', () => {
  it('ordinary RAM: seed fails late with -EINVAL; 6.16 and 6.17 map Normal-WB', () => {
    for (const k of KERNELS) {
      const r = run(scenario({ kernel: k, cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }));
      const l = r.lines[0]!;
      if (k === 'seed') {
        expect(l.errno).toBe('EINVAL');
        expect(faults(l)).toEqual(['translation L1 user_mem_abort -22']);
        // late: under mmu_lock, with the page released there
        expect(r.runner.kvm.mm.pagesHeld).toBe(0);
        expect(r.summary.diagnostics).toEqual([]);
      } else {
        expect(leaf(l)).toBe('L3 0x40001000 0x1000 0x00400000800017ff');
      }
    }
  });

  it('the seed check is not retried by a racing invalidation: it comes after the retry check', () => {
    // with an invalidation in the window, the seed's fault is retried first (L1 before the late check)
    const r = run(
      scenario({ kernel: 'seed', cpu: CPU_BARE, steps: accesses(['write', 0x4000_1000]) }),
      (rr) => rr.kvm.notifier.armRace(1, 0x7f00_0000_0000, 0x7f00_0000_1000),
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
      flags: ['shared'],
    };
    const r = run(oneVma(mixed, GPA, { cpu: CPU_BARE, steps: accesses(['read', GPA]) }), (rr) =>
      rr.kvm.notifier.armRace(1, 0x7e00_0000_0000, 0x7e00_0000_1000),
    );
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort -14']);
  });
});

describe('early returns and the page reference (5f9466b50c1b)', () => {
  const mixedRam = {
    start: HVA,
    size: '4M',
    backing: 'mixedmap',
    pa: '0x9000_0000',
    prot: 'rw',
    flags: ['shared'],
    memType: 'device-nGnRE',
  };

  it('-ENOEXEC with a page held: 6.16 and seed return without releasing it (diagnosed), 6.17 releases', () => {
    for (const k of KERNELS) {
      const r = run(
        oneVma(mixedRam, GPA, { kernel: k, steps: accesses(['exec', GPA + 0x1000]) }),
        outsideLinearMapAfterGup,
      );
      const l = r.lines[0]!;
      expect(l.outcome).toBe('iabt');
      expect(faults(l)).toEqual(['translation L1 user_mem_abort -8']);
      const leak = `kernel ${k}: user_mem_abort returned -8 without releasing the page (leaked)`;
      if (k === '6.17') expect(r.summary.diagnostics).toEqual([]);
      else expect(r.summary.diagnostics).toEqual([leak]);
    }
  });

  it('6.17: the early -EFAULT releases the page too', () => {
    const r = run(
      oneVma({ ...mixedRam, memType: 'normal' }, GPA, {
        cpu: CPU_BARE,
        steps: accesses(['write', GPA + 0x1000]),
      }),
      outsideLinearMapAfterGup,
    );
    expect(r.lines[0]!.errno).toBe('EFAULT');
    expect(r.summary.diagnostics).toEqual([]);
    expect(r.runner.kvm.mm.pagesHeld).toBe(0);
  });

  it('without a page (raw pfn) there is nothing to leak in any kernel', () => {
    const dev = { ...mixedRam, pa: '0x40_0000_0000' };
    for (const k of KERNELS) {
      const r = run(oneVma(dev, GPA, { kernel: k, steps: accesses(['exec', GPA + 0x1000]) }));
      expect(r.lines[0]!.outcome).toBe('iabt');
      expect(r.summary.diagnostics).toEqual([]);
    }
  });
});

describe('the run option overrides the scenario kernel', () => {
  it('kernel: "6.17" in the file, run as 6.16 → Device mapping', () => {
    const pf = {
      start: HVA,
      size: '4M',
      backing: 'pfnmap',
      pa: '0x40_0000_0000',
      prot: 'rw',
      flags: ['shared'],
    };
    const r = run(oneVma(pf, GPA, { cpu: CPU_FWB_DIC, steps: accesses(['read', GPA]) }), undefined, {
      kernel: '6.16',
    });
    expect(r.lines[0]!.leaf!.desc).toBe('0x00400040000007c5');
  });
});
