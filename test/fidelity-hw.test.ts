/**
 * Issue 8, items 4 and 6, through the library API:
 * - the stage-2 hardware access-flag update (VTCR_EL2.HA, set by kvm_get_vtcr() in
 *   arch/arm64/kvm/hyp/pgtable.c unless the AmpereOne AC03_CPU_38 workaround applies, and
 *   honoured by a CPU with FEAT_HAFDBS);
 * - LPA2: kvm_set_ipa_limit() (arch/arm64/kvm/reset.c) caps the IPA at 48 bits with 4K/16K
 *   pages unless LPA2 is in use, and with it (kvm_lpa2_is_enabled()) every descriptor holds
 *   OA[51:50] in bits [9:8] and no SH field (stage2_set_prot_attr() adds SH only without LPA2).
 * Descriptors are derived by hand from stage2_set_prot_attr(): page bits[1:0] = 0b11, MemAttr FWB
 * Normal-WB 0b0110 << 2 = 0x18, R 0x40, W 0x80, SH = IS 0x300, AF 0x400.
 */
import { describe, expect, it } from 'vitest';
import { CPU_PRESETS, type CpuFeatures } from '../src/mmu/cpu.js';
import { modelledCost, CostBreakdown } from '../src/mmu/cost.js';
import { VM_MAYWRITE, VM_READ, VM_WRITE } from '../src/mmu/host/vma.js';
import { AccessResult, Vcpu } from '../src/mmu/vcpu.js';
import { ACC_READ, ACC_WRITE } from '../src/mmu/access.js';
import { Kvm } from '../src/mmu/vm.js';
import { KVM_PTE_LEAF_ATTR_LO_S2_AF } from '../src/pgtable/descriptor.js';
import { FAULT_PERMISSION } from '../src/pgtable/hwwalk.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioError } from '../src/scenario/errors.js';

const GRACE = CPU_PRESETS.grace!.features;
const HVA = 0x7f00_0000_0000;
const RW = VM_READ | VM_WRITE | VM_MAYWRITE;

function vm(cpu: CpuFeatures, opts: { paBits?: number; ipaBits?: number; ramBase?: number } = {}) {
  const ramBase = opts.ramBase ?? 0x8000_0000;
  const kvm = new Kvm({
    cpu,
    granule: 4096,
    paBits: opts.paBits,
    ipaBits: opts.ipaBits,
    physical: [{ base: ramBase, size: 0x4000_0000, type: 'ram' }],
  });
  const v = kvm.mm.mmap({ name: 'ram', start: HVA, size: 0x400_0000, vmFlags: RW, backing: 'anon' });
  expect(typeof v).not.toBe('string');
  return kvm;
}

describe('stage-2 hardware access flag (VTCR_EL2.HA)', () => {
  function agedAccess(cpu: CpuFeatures) {
    const kvm = vm(cpu);
    expect(kvm.createMemslot({ id: 0, baseGfn: 0x40000, npages: 0x4000, userspaceAddr: HVA, flags: 0 })).toBe(
      0,
    );
    const vcpu = new Vcpu(kvm);
    const r = new AccessResult();
    vcpu.access(ACC_WRITE, 0x4000_1000, r);
    expect(r.outcomeName).toBe('done');
    // Reclaim ages the page: clear_young → kvm_age_gfn → stage-2 mkold clears AF.
    expect(kvm.mm.clearYoung(HVA + 0x1000, HVA + 0x2000)).toBe(true);
    vcpu.access(ACC_READ, 0x4000_1000, r);
    return { kvm, r };
  }

  it('with FEAT_HAFDBS (Grace) an aged leaf is made young by the walk: no fault, AF set again', () => {
    const { r } = agedAccess(GRACE);
    expect(r.nFaults).toBe(0);
    expect(r.outcomeName).toBe('done');
    expect(r.leafLo & KVM_PTE_LEAF_ATTR_LO_S2_AF).toBe(KVM_PTE_LEAF_ATTR_LO_S2_AF);
    expect(r.stats.hwAfUpdates).toBe(1);
    expect(r.stats.mkyoungs).toBe(0);
    // The cost model prices it as one descriptor read-modify-write (2 × walkLevelNs), no exit.
    const b = new CostBreakdown();
    const p = CPU_PRESETS.grace!.cost;
    modelledCost(r.stats, p, b);
    expect(b.exit).toBe(0);
    expect(b.walk).toBe(2 * p.walkLevelNs);
  });

  it('without FEAT_HAFDBS (HA is RES0) the access takes an access-flag fault that KVM handles', () => {
    const { r } = agedAccess({ ...GRACE, hafdbs: false });
    expect(r.nFaults).toBe(1);
    expect(r.faults[0]!.handler).toBe('handle_access_fault');
    expect(r.stats.mkyoungs).toBe(1);
    expect(r.stats.hwAfUpdates).toBe(0);
    expect(r.leafLo & KVM_PTE_LEAF_ATTR_LO_S2_AF).toBe(KVM_PTE_LEAF_ATTR_LO_S2_AF);
  });

  it('a write to an aged read-only leaf still takes its permission fault (AF is set only on success)', () => {
    const kvm = vm(GRACE);
    kvm.createMemslot({ id: 0, baseGfn: 0x40000, npages: 0x4000, userspaceAddr: HVA, flags: 0 });
    const vcpu = new Vcpu(kvm);
    const r = new AccessResult();
    vcpu.access(ACC_READ, 0x4000_1000, r); // the zero page, read-only
    kvm.mm.clearYoung(HVA, HVA + 0x2000);
    vcpu.access(ACC_WRITE, 0x4000_1000, r);
    // No access-flag fault first: the walk faults on permission, and AF stays clear until an
    // access succeeds (the MMU updates AF only for an access that does not fault).
    expect(r.faults[0]!.fsc).toBe(FAULT_PERMISSION);
    expect(r.faults[0]!.level).toBe(3);
    expect(r.outcomeName).toBe('done');
  });
});

describe('LPA2 and the IPA limit (kvm_set_ipa_limit)', () => {
  it('4K pages, PARange 52, no LPA2: KVM_CREATE_VM refuses a 52-bit IPA (limit 48)', () => {
    expect(() => vm(GRACE, { paBits: 52, ipaBits: 52 })).toThrow(/IPA limit \(48 bits/);
    expect(vm(GRACE, { paBits: 52, ipaBits: 48 }).ipaLimitBits).toBe(48);
  });

  it('the scenario names vm.ipaBits and the limit', () => {
    const s = {
      cpu: { profile: 'grace' },
      granule: '4K',
      paBits: 52,
      physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
      vmas: [],
      vm: { ipaBits: 52 },
      memslots: [],
      steps: [],
    };
    expect(() => parseScenario(s)).toThrow(ScenarioError);
    try {
      parseScenario(s);
    } catch (e) {
      expect(String((e as Error).message)).toMatch(/vm\.ipaBits: .*48 bits/);
    }
    // With cpu.lpa2 the same file is accepted.
    expect(() => parseScenario({ ...s, cpu: { profile: 'grace', lpa2: true } })).not.toThrow();
    expect(() => parseScenario({ ...s, cpu: { profile: 'grace', lpa2: 'yes' } })).toThrow(/cpu\.lpa2/);
  });

  it('with LPA2, a 52-bit IPA above 2^48 maps RAM above 2^50: OA[51:50] in bits [9:8], no SH', () => {
    const kvm = vm({ ...GRACE, lpa2: true }, { paBits: 52, ipaBits: 52, ramBase: 0x4_0000_8000_0000 });
    expect(kvm.lpa2).toBe(true);
    expect(kvm.pgt.geo.startLevel).toBe(0);
    expect(kvm.pgt.geo.pgdPages).toBe(16);
    const ipa = 2 ** 49 + 0x1000; // gfn above 2^36
    expect(kvm.createMemslot({ id: 0, baseGfn: 2 ** 37, npages: 0x4000, userspaceAddr: HVA, flags: 0 })).toBe(
      0,
    );
    const vcpu = new Vcpu(kvm);
    const r = new AccessResult();
    vcpu.access(ACC_WRITE, ipa, r);
    expect(r.outcomeName).toBe('done');
    // PA 0x4_0000_8000_1000: bit 50 → descriptor bit 8; OA[49:12] in place.
    expect(r.leafHi >>> 0).toBe(0);
    // 0x8000_1000 | bit 8 0x100 | AF 0x400 | W 0x80 | R 0x40 | MemAttr 0x18 | page 0b11
    expect(r.leafLo >>> 0).toBe(0x8000_15db);
  });

  it('with LPA2 even a 40-bit VM has no SH field (DS is set for every VM)', () => {
    const kvm = vm({ ...GRACE, lpa2: true }, { paBits: 52 });
    kvm.createMemslot({ id: 0, baseGfn: 0x40000, npages: 0x4000, userspaceAddr: HVA, flags: 0 });
    const r = new AccessResult();
    new Vcpu(kvm).access(ACC_WRITE, 0x4000_1000, r);
    // 0x8000_1000 | AF 0x400 | W 0x80 | R 0x40 | MemAttr 0x18 | page 0b11, no SH
    expect(r.leafLo >>> 0).toBe(0x8000_14db);
    // Without LPA2 the same page carries SH = Inner (0x300).
    const k2 = vm(GRACE, { paBits: 52 });
    k2.createMemslot({ id: 0, baseGfn: 0x40000, npages: 0x4000, userspaceAddr: HVA, flags: 0 });
    new Vcpu(k2).access(ACC_WRITE, 0x4000_1000, r);
    expect(r.leafLo >>> 0).toBe(0x8000_17db);
  });

  it('64K pages never use LPA2: cpu.lpa2 changes nothing, and 52 bits come from FEAT_LPA', () => {
    const kvm = new Kvm({
      cpu: { ...GRACE, lpa2: true },
      granule: 65536,
      paBits: 52,
      ipaBits: 52,
      physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' }],
    });
    expect(kvm.lpa2).toBe(false);
    expect(kvm.ipaLimitBits).toBe(52);
  });
});
