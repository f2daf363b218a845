/**
 * The cost model (src/mmu/cost.ts): hand-computed totals for small scenarios on each preset,
 * the published calibration points, and the reporting (access lines, summary).
 */

import { describe, expect, it } from 'vitest';
import { CPU_PRESETS, cpuCostParams } from '../src/mmu/cpu.js';
import {
  COST_CAUSES,
  CostBreakdown,
  DEFAULT_COST_SHAPE,
  formatBreakdown,
  formatNs,
  modelledCost,
} from '../src/mmu/cost.js';
import type { CostParams } from '../src/mmu/cost.js';
import { AccessStats } from '../src/mmu/stats.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner, accessJson } from '../src/scenario/run.js';
import type { RunSummary } from '../src/scenario/run.js';

const MIB = 2 ** 20;
const GIB = 2 ** 30;
/** Kunpeng 920 [K]: 20 GiB, 40 vCPUs, 104.5 s before and 3.7 s after: Z + 40C and Z + C. */
const K_C = ((104.5 - 3.7) / 39) * 1e9; // ns to clean 20 GiB once
const K_Z = 3.7e9 - K_C; // ns to zero 20 GiB once
const K_CLEAN = K_C / (20 * GIB); // ns per byte
const K_ZERO = K_Z / ((20 * GIB) / 1024); // ns per KiB

interface Line {
  costNs: number;
  dcacheBytes: number;
  [k: string]: unknown;
}

/** Runs one VMA + slot 0 (2 GiB at IPA 0x4000_0000, 4K granule, 40-bit IPA) on `profile`. */
function run(
  profile: string,
  vma: Record<string, unknown>,
  steps: Record<string, unknown>[],
  over: Record<string, unknown> = {},
): { runner: ScenarioRunner; lines: Line[]; summary: RunSummary } {
  const runner = new ScenarioRunner(
    parseScenario({
      kernel: '6.17',
      cpu: { profile },
      granule: '4K',
      physical: [
        { base: '0x1_0000_0000', size: '8G', type: 'ram' },
        { base: '0x40_0000_0000', size: '4G', type: 'nomap' },
      ],
      vmas: [{ name: 'm', start: '0x7f00_0000_0000', size: '2G', prot: 'rw', ...vma }],
      vm: { ipaBits: 40 },
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '2G', vma: 'm' }],
      steps,
      ...over,
    }),
  );
  const lines: Line[] = [];
  const summary = runner.run({
    access: (step, r) => lines.push(accessJson(step, r, runner.accessCost(r).total) as Line),
  });
  return { runner, lines, summary };
}

const W = (ipa: string): Record<string, unknown> => ({ access: 'write', ipa });

describe('cost model: hand-computed totals', () => {
  it('one 2M THP write fault on kunpeng-920: exit, handler, 2 walks, one L2 table, 2 MiB zeroed and cleaned', () => {
    const { lines, summary } = run('kunpeng-920', { backing: 'thp' }, [W('0x4000_0000')]);
    // exit 350; handler 175 + faultin 925; walk: (1 fault + 1 map) × 3 levels × 12;
    // alloc: one table page 290 + 4 KiB zeroed; zero: 512 pages × 4 KiB; dcache: 2 MiB.
    const expected = 350 + 175 + 925 + 2 * 3 * 12 + (290 + 4 * K_ZERO) + 512 * 4 * K_ZERO + 2 * MIB * K_CLEAN;
    expect(lines[0]!.dcacheBytes).toBe(2 * MIB);
    expect(lines[0]!.costNs).toBe(Math.round(expected));
    expect(summary.modelledNs).toBe(Math.round(expected));
    expect(summary.costModel).toBe('kunpeng-920');
    expect(summary.modelledByCause.dcache).toBe(Math.round(2 * MIB * K_CLEAN)); // ≈ 252 µs
    expect(summary.modelledByCause.dcache).toBe(252404);
  });

  it('the same fault on grace: FWB, so no dcache term', () => {
    const { lines, summary } = run('grace', { backing: 'thp' }, [W('0x4000_0000')]);
    const expected = 250 + 120 + 650 + 2 * 3 * 8 + (200 + 4 * 35) + 512 * 4 * 35;
    expect(expected).toBe(73088);
    expect(lines[0]!.dcacheBytes).toBe(0);
    expect(lines[0]!.costNs).toBe(73088);
    expect(summary.modelledByCause.dcache).toBe(0);
    expect(summary.modelledByCause.zero).toBe(71680);
  });

  it('ampere-altra: an MMIO read costs the published 1.7 µs; a 4K anon write fault', () => {
    const { lines } = run('ampere-altra', { backing: 'anon' }, [
      { access: 'read', ipa: '0x10_0000_0000' },
      W('0x4000_0000'),
    ]);
    expect(lines[0]!.outcome).toBe('mmio');
    expect(lines[0]!.costNs).toBe(1700); // 300 exit + 150 handler + 3 × 10 walk + 1220 mmio
    // 300 + 150 + 800 + 2 × 3 × 10 + two tables (2 × (250 + 4 × 50)) + one page zeroed + 4 KiB cleaned.
    expect(lines[1]!.costNs).toBe(
      Math.round(300 + 150 + 800 + 60 + 2 * (250 + 200) + 200 + 4096 * (100e3 / (2 * MIB))),
    );
  });

  it('neoverse-n1 prices like ampere-altra', () => {
    const a = run('ampere-altra', { backing: 'anon' }, [W('0x4000_0000')]).summary;
    const n = run('neoverse-n1', { backing: 'anon' }, [W('0x4000_0000')]).summary;
    expect(n.modelledNs).toBe(a.modelledNs);
    expect(n.costModel).toBe('neoverse-n1');
  });

  it('cortex-a76: a 2M THP fault cleans 2 MiB in the published 100 µs', () => {
    const { summary } = run('cortex-a76', { backing: 'thp' }, [W('0x4000_0000')]);
    expect(summary.modelledByCause.dcache).toBe(100_000);
    const expected = 400 + 200 + 1050 + 2 * 3 * 12 + (330 + 4 * 70) + 512 * 4 * 70 + 100_000;
    expect(summary.modelledNs).toBe(expected);
  });

  it('generic-v8 (also the default without a profile): a 4K anon write', () => {
    const { summary } = run('generic-v8', { backing: 'anon' }, [W('0x4000_0000')]);
    const clean = (100e3 / (2 * MIB)) * 1.5 * 4096;
    const expected = 450 + 225 + 1200 + 2 * 3 * 15 + 2 * (375 + 4 * 75) + 4 * 75 + clean;
    expect(summary.modelledNs).toBe(Math.round(expected));
    expect(cpuCostParams(undefined).name).toBe('generic-v8');
    expect(cpuCostParams('no-such-cpu').name).toBe('generic-v8');
  });

  it('kunpeng-920: exec permission fault (I-cache by range, local TLBI), access-flag fault, dirty-log enable', () => {
    const steps = [
      W('0x4000_0000'),
      { access: 'exec', ipa: '0x4000_0000' },
      { age: { ipa: '0x4000_0000', size: '4K' } },
      { access: 'read', ipa: '0x4000_0000' },
      { dirtyLog: { slot: 0, op: 'enable' } },
    ];
    // Without FEAT_HAFDBS (VTCR_EL2.HA has no effect) the aged leaf takes an access-flag fault.
    const { lines, summary } = run('kunpeng-920', { backing: 'anon', prot: 'rwx' }, steps, {
      cpu: { profile: 'kunpeng-920', hafdbs: false },
    });
    // With it (the profile's default) the walk sets AF: one descriptor update, 2 × 12 ns.
    const ha = run('kunpeng-920', { backing: 'anon', prot: 'rwx' }, steps);
    expect(ha.lines[2]!.costNs).toBe(2 * 12);
    expect(ha.summary.faults).toBe(summary.faults - 1);
    // exec: exit 350 + handler 175 + faultin 925 (a relax) + walk 2 × 3 × 12 + icache 4096 × 0.025 + TLBI nsh 115.
    expect(lines[1]!.costNs).toBe(Math.round(350 + 175 + 925 + 72 + 4096 * 0.025 + 115));
    // access flag: exit + handler + (1 fault + 1 mkyoung) × 3 × 12; no faultin.
    expect(lines[2]!.costNs).toBe(350 + 175 + 72);
    // The summary also prices the host side: enabling dirty logging flushes the whole VMID (no TLBI range).
    expect(summary.modelledByCause.tlbi).toBe(115 + 900);
    const sumLines = lines.reduce((a, l) => a + l.costNs, 0);
    expect(Math.abs(summary.modelledNs - (sumLines + 900))).toBeLessThanOrEqual(2);
  });

  it('an MTE guest clears tags per page (grace with an mte override)', () => {
    const { summary } = run('grace', { backing: 'anon' }, [W('0x4000_0000')], {
      cpu: { profile: 'grace', mte: true },
      vm: { ipaBits: 40, mte: true },
    });
    expect(summary.mtePagesCleared).toBe(1);
    expect(summary.modelledByCause.mte).toBe(50);
  });
});

describe('cost model: calibration', () => {
  it('kunpeng-920: 20 × 1G hugetlbfs faults ≈ 3.7 s; with 40 vCPUs each cleaning ≈ 104.5 s', () => {
    const { summary } = run('kunpeng-920', { backing: 'hugetlb', hugePage: '1G', flags: ['shared'] }, [
      W('0x4000_0000'),
    ]);
    expect(summary.modelledByCause.dcache).toBe(Math.round(GIB * K_CLEAN)); // 129 ms
    const one = summary.modelledNs;
    expect(Math.abs(20 * one - 3.7e9) / 3.7e9).toBeLessThan(0.001);
    const before = 20 * one + 39 * 20 * summary.modelledByCause.dcache;
    expect(Math.abs(before - 104.5e9) / 104.5e9).toBeLessThan(0.001);
  });

  it('the Pixel 6 figure: 2 MiB to PoC in 100 µs; the Altra hypercall ≈ 0.3 µs', () => {
    const s = new AccessStats();
    s.dcacheBytes = 2 * MIB;
    const b = new CostBreakdown();
    expect(modelledCost(s, CPU_PRESETS['cortex-a76']!.cost, b)).toBeCloseTo(100_000, 6);
    expect(CPU_PRESETS['ampere-altra']!.cost.exitNs).toBe(300);
  });
});

describe('cost model: structure', () => {
  const everything = (): AccessStats => {
    const s = new AccessStats();
    s.faults = 3;
    s.maps = 2;
    s.relaxes = 1;
    s.mkyoungs = 1;
    s.tlbiIpa = 1;
    s.tlbiIpaNsh = 2;
    s.tlbiRange = 3;
    s.tlbiVmid = 4;
    s.dcacheBytes = 8192;
    s.icacheBytes = 4096;
    s.icacheInvalAll = 1;
    s.tablePagesAllocated = 2;
    s.hostPagesZeroed = 5;
    s.mtePagesCleared = 6;
    s.uffdEvents = 1;
    s.exits = 1;
    return s;
  };

  it('every preset has documented cost parameters, and the breakdown adds up to the total', () => {
    const s = everything();
    for (const [name, preset] of Object.entries(CPU_PRESETS)) {
      const p: CostParams = preset.cost;
      expect(p.name).toBe(name);
      expect(p.source.length).toBeGreaterThan(40);
      for (const [k, v] of Object.entries(p))
        if (typeof v === 'number') expect(v, `${name}.${k}`).toBeGreaterThan(0);
      const b = new CostBreakdown();
      const total = modelledCost(s, p, b);
      let sum = 0;
      for (const c of COST_CAUSES) {
        expect(b[c], `${name} ${c}`).toBeGreaterThan(0);
        sum += b[c];
      }
      expect(total).toBe(b.total);
      expect(Math.abs(sum - total)).toBeLessThan(1e-6);
      // Each term by hand.
      expect(b.exit).toBe(3 * p.exitNs);
      expect(b.handler).toBe(3 * p.handlerNs + 3 * p.faultinNs);
      expect(b.walk).toBe(7 * 3 * p.walkLevelNs);
      expect(b.alloc).toBeCloseTo(2 * (p.tablePageNs + 4 * p.zeroNsPerKiB), 9);
      expect(b.zero).toBeCloseTo(5 * 4 * p.zeroNsPerKiB, 9);
      expect(b.dcache).toBeCloseTo(8192 * p.dcacheNsPerByte, 9);
      expect(b.icache).toBeCloseTo(4096 * p.icacheNsPerByte + p.icacheInvalAllNs, 9);
      expect(b.tlbi).toBe(p.tlbiIpaNs + 2 * p.tlbiIpaNshNs + 3 * p.tlbiRangeNs + 4 * p.tlbiVmidNs);
      expect(b.mte).toBe(6 * p.mteNsPer4K);
      expect(b.mmio).toBe(p.mmioExitNs);
      expect(b.uffd).toBe(p.uffdNs);
    }
  });

  it('the VM shape scales per-page and per-level work (64K granule, 2 levels)', () => {
    const s = everything();
    const p = CPU_PRESETS['grace']!.cost;
    const a = new CostBreakdown();
    const b = new CostBreakdown();
    modelledCost(s, p, a, DEFAULT_COST_SHAPE);
    modelledCost(s, p, b, { pageSize: 65536, levels: 2 });
    expect(b.zero).toBeCloseTo(a.zero * 16, 9);
    expect(b.mte).toBeCloseTo(a.mte * 16, 9);
    expect(b.walk).toBeCloseTo((a.walk * 2) / 3, 9);
    expect(b.dcache).toBe(a.dcache);
  });

  it('overwrites the breakdown, add() accumulates, reset() clears', () => {
    const p = CPU_PRESETS['kunpeng-920']!.cost;
    const b = new CostBreakdown();
    const s = everything();
    modelledCost(s, p, b);
    const t = b.total;
    modelledCost(s, p, b);
    expect(b.total).toBe(t);
    const acc = new CostBreakdown();
    acc.add(b);
    acc.add(b);
    expect(acc.total).toBe(2 * t);
    acc.reset();
    for (const c of COST_CAUSES) expect(acc[c]).toBe(0);
    expect(acc.total).toBe(0);
    expect(Object.keys(b.toRecord())).toEqual([...COST_CAUSES]);
  });

  it('formats', () => {
    expect(formatNs(850)).toBe('850 ns');
    expect(formatNs(1520)).toBe('1.52 µs');
    expect(formatNs(129_230_769)).toBe('129 ms');
    expect(formatNs(3.7e9)).toBe('3.70 s');
    const b = new CostBreakdown();
    b.dcache = 129e6;
    b.zero = 55.8e6;
    b.exit = 350;
    expect(formatBreakdown(b, 2)).toBe('dcache 129 ms, zero 55.8 ms');
  });

  it('access lines end with costNs; the summary ends with the modelled keys', () => {
    const { lines, summary } = run('grace', { backing: 'anon' }, [W('0x4000_0000')]);
    expect(Object.keys(lines[0]!).at(-1)).toBe('costNs');
    expect(Object.keys(summary).slice(-3)).toEqual(['modelledNs', 'modelledByCause', 'costModel']);
  });
});
