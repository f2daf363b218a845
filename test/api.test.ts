import { describe, expect, it } from 'vitest';
import * as s2 from '../src/index.js';

describe('the public API (src/index.ts)', () => {
  it('builds a table, maps a block and decodes the leaf', () => {
    const events = new s2.CountingEvents();
    const pgt = new s2.Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, events });
    const mc = new s2.MemCache(pgt.pool);
    expect(mc.topup(pgt.geo.minCachePages)).toBe(0);
    const ret = pgt.map(0x4020_0000, 0x20_0000, 0x4020_0000, s2.KVM_PGTABLE_PROT_RWX, mc);
    expect(ret).toBe(0);
    const leaf = new s2.LeafResult();
    expect(pgt.getLeaf(0x4020_1000, leaf)).toBe(0);
    // stage2_set_prot_attr(): a 2 MiB RWX block at 0x40200000 without FWB.
    expect(s2.hex64(leaf.lo, leaf.hi)).toBe('0x00000000402007fd');
    expect(events.dcacheBytes).toBe(0x20_0000);
    expect(events.icacheBytes).toBe(0x20_0000);
    const view = new s2.DescriptorView(leaf.lo, leaf.hi, leaf.level, pgt);
    expect(String(view)).toBe('L2 block 0x40200000 RWX Normal-WB AF');
    expect(s2.auditStage2(pgt, { memcacheHeld: mc.nobjs })).toEqual([]);
  });

  it('runs a guest access through KVM on a Grace-class host', () => {
    const kvm = new s2.Kvm({
      cpu: s2.CPU_PRESETS['grace']!.features,
      granule: 4096,
      physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' }],
    });
    const vma = kvm.mm.mmap({
      name: 'ram',
      start: 0x7f00_0000_0000,
      size: 0x4000_0000,
      vmFlags: s2.VM_READ | s2.VM_WRITE | s2.VM_MAYWRITE,
      backing: 'anon',
    });
    expect(typeof vma).toBe('object');
    expect(
      kvm.createMemslot({
        id: 0,
        baseGfn: 0x40000,
        npages: 0x40000,
        userspaceAddr: 0x7f00_0000_0000,
        flags: 0,
      }),
    ).toBe(0);
    const vcpu = new s2.Vcpu(kvm);
    const r = new s2.AccessResult();
    expect(vcpu.access(s2.ACC_WRITE, 0x4000_1000, r)).toBe(s2.OUT_DONE);
    expect(r.nFaults).toBe(1);
    expect(r.faults[0]).toMatchObject({ handler: 'user_mem_abort', ret: 0, level: 1 });
    // A 4K page, Normal-WB with FWB (MemAttr 6), RW, and X because Grace has DIC.
    expect(r.leafLevel).toBe(3);
    expect(s2.hex64(r.leafLo, r.leafHi).slice(-3)).toBe('7db');
    expect(r.stats.dcacheBytes).toBe(0);
  });

  it('parses and runs a scenario, and names what is wrong in a bad one', () => {
    const s = s2.parseScenario({
      cpu: { profile: 'kunpeng-920' },
      granule: '4K',
      physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
      vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '2M', backing: 'anon', prot: 'rw' }],
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '2M', vma: 'ram' }],
      steps: [{ access: 'write', ipa: '0x4000_0000' }],
    });
    const lines: Record<string, unknown>[] = [];
    const summary = new s2.ScenarioRunner(s).run({ access: (step, r) => lines.push(s2.accessJson(step, r)) });
    expect(lines[0]).toMatchObject({ step: 0, outcome: 'done', dcacheBytes: 4096 });
    expect(summary.accesses).toBe(1);
    expect(() => s2.parseScenario({ cpu: { profile: 'grace' } })).toThrow(s2.ScenarioError);
  });
});

describe('AccessResult', () => {
  it('shows only the current access its faults (no stale record from an earlier access)', () => {
    const kvm = new s2.Kvm({
      cpu: s2.CPU_PRESETS['grace']!.features,
      granule: 4096,
      physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' }],
    });
    kvm.mm.mmap({
      name: 'ram',
      start: 0x7f00_0000_0000,
      size: 0x400_0000,
      vmFlags: s2.VM_READ | s2.VM_WRITE | s2.VM_MAYWRITE,
      backing: 'anon',
    });
    kvm.createMemslot({ id: 0, baseGfn: 0x40000, npages: 0x4000, userspaceAddr: 0x7f00_0000_0000, flags: 0 });
    const vcpu = new s2.Vcpu(kvm);
    const r = new s2.AccessResult();
    vcpu.access(s2.ACC_WRITE, 0x4000_1000, r);
    expect(r.faults.map((f) => f.handler)).toEqual(['user_mem_abort']);
    expect(r.fault(0).handler).toBe('user_mem_abort');
    vcpu.access(s2.ACC_READ, 0x4000_1000, r); // mapped: no fault
    expect(r.nFaults).toBe(0);
    expect(r.faults).toEqual([]);
    expect(() => r.fault(0)).toThrow(RangeError);
  });
});
