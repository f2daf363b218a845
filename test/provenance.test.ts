/**
 * Provenance (src/mmu/provenance.ts, src/views/provenance.ts): each leaf the fault path maps,
 * relaxes or ages records why, read back by leaf. The expectations follow user_mem_abort()
 * and handle_access_fault() in arch/arm64/kvm/mmu.c (v6.17; 6.16 for the PFNMAP case, where
 * kvm_is_device_pfn() makes any pfn outside the linear map Device).
 */

import { describe, expect, it } from 'vitest';
import { CPU_BARE, RAM_HVA, RAM_IPA, oneVma, run, scenario } from './helpers/scenarios.js';
import type { Json } from './helpers/scenarios.js';
import { formatProvenance, provenanceLines } from '../src/views/provenance.js';
import type { ProvenanceRecord } from '../src/mmu/provenance.js';

const MIB = 2 ** 20;
const DEV_IPA = 0x80_0000_0000;

function provOf(
  s: Json,
  ipa: number,
  kernel?: '6.16' | '6.17',
): { rec: ProvenanceRecord; all: ProvenanceRecord[] } {
  const out = run(s, undefined, { provenance: true, ...(kernel ? { kernel } : {}) });
  const prov = out.runner.kvm.provenance!;
  const all = prov.history(ipa);
  expect(all.length).toBeGreaterThan(0);
  return { rec: all[all.length - 1]!, all };
}

describe.each(['6.16', '6.17'] as const)('provenance under %s', (kernel) => {
  it('a THP fault: a 2M block, promoted by transparent_hugepage_adjust()', () => {
    const s = scenario({
      vmas: [{ name: 'ram', start: RAM_HVA, size: '64M', backing: 'thp', prot: 'rw' }],
      steps: [{ access: 'write', ipa: RAM_IPA + 0x3000 }],
    });
    const { rec } = provOf(s, RAM_IPA + 0x3000, kernel);
    expect(rec.action).toBe('map');
    expect(rec.kernel).toBe(kernel);
    expect(rec.ipa).toBe(RAM_IPA);
    expect(rec.size).toBe(2 * MIB);
    expect(rec.level).toBe(2);
    expect(rec.fault).toMatchObject({ class: 'translation', write: true, exec: false, s1ptw: false });
    expect(rec.vmaShift).toBe(12);
    expect(rec.finalShift).toBe(12);
    expect(rec.clamps).toEqual(['THP promoted to PMD']);
    expect(rec.memType).toBe('normal');
    expect(rec.memTypeRule).toBe('pfn in the linear map');
    expect(rec.backing).toBe('thp');
    expect(rec.folioSize).toBe(2 * MIB);
    expect(rec.hostLeafSize).toBe(2 * MIB);
    expect(rec.access).toBe(0);
    expect(rec.step).toBe(0);
    const line = formatProvenance(rec);
    expect(line).toContain('map by access 0 (step 0): translation fault');
    expect(line).toContain(`kernel ${kernel}`);
    expect(line).toContain('size 2M: VMA page shift 12 (4K), THP promoted to PMD');
    expect(line).toContain('Normal (pfn in the linear map)');
    expect(line).toContain('host thp');
  });

  it('a hugetlb fault clamped to 4K by the memslot alignment', () => {
    // hva 2M-aligned, gpa 4K past a 2M boundary: no PMD block can map both.
    const s = oneVma(
      { start: RAM_HVA, size: '16M', backing: 'hugetlb', hugePage: '2M', prot: 'rw', flags: ['shared'] },
      RAM_IPA + 0x1000,
      { steps: [{ access: 'write', ipa: RAM_IPA + 0x1000 + 0x5000 }] },
    );
    const { rec } = provOf(s, RAM_IPA + 0x6000, kernel);
    expect(rec.action).toBe('map');
    expect(rec.size).toBe(4096);
    expect(rec.level).toBe(3);
    expect(rec.vmaShift).toBe(21);
    expect(rec.finalShift).toBe(12);
    expect(rec.clamps).toContain('PMD does not fit the memslot');
    expect(rec.clamps).toContain('force_pte');
    expect(rec.clamps).not.toContain('THP promoted to PMD');
    expect(rec.backing).toBe('hugetlb');
    expect(rec.folioSize).toBe(2 * MIB);
    expect(formatProvenance(rec)).toContain(
      'size 4K: VMA page shift 21 (2M), PMD does not fit the memslot, force_pte',
    );
  });

  it('a device PFNMAP: Device, a 2M block because get_vma_page_shift() found hva and PA congruent', () => {
    const s = oneVma(
      {
        start: 0x7e00_0000_0000,
        size: '2M',
        backing: 'pfnmap',
        pa: '0x40_0000_0000',
        memType: 'device-nGnRE',
        prot: 'rw',
        flags: ['shared', 'io'],
      },
      DEV_IPA,
      { steps: [{ access: 'read', ipa: DEV_IPA + 0x2000 }] },
    );
    const { rec } = provOf(s, DEV_IPA + 0x2000, kernel);
    expect(rec.action).toBe('map');
    expect(rec.memType).toBe('device');
    expect(rec.memTypeRule).toBe('not cacheable: Device');
    expect(rec.backing).toBe('pfnmap');
    // The block's first pfn: user_mem_abort() faults in the canonical gfn of the block.
    expect(rec.pfn).toBe(0x40_0000_0000 / 4096);
    expect(rec.vmaShift).toBe(21);
    expect(rec.size).toBe(2 * MIB);
    expect(rec.clamps).toEqual([]);
    expect(formatProvenance(rec)).toContain('Device (not cacheable: Device)');
  });

  it('a relax: an exec after a read on a CPU without DIC adds X to the leaf', () => {
    const s = scenario({
      cpu: CPU_BARE,
      steps: [
        { access: 'read', ipa: RAM_IPA },
        { access: 'exec', ipa: RAM_IPA },
      ],
    });
    const { rec, all } = provOf(s, RAM_IPA, kernel);
    expect(all.map((r) => r.action)).toEqual(['map', 'relax']);
    expect(rec.fault).toMatchObject({ class: 'permission', exec: true, level: 3 });
    expect(rec.memTypeRule).toBe('unchanged');
    expect(rec.access).toBe(1);
    expect(rec.previous).toBe(all[0]!.index);
    expect(formatProvenance(rec)).toMatch(/^relax by access 1 \(step 1\): permission fault L3, exec/);
  });

  it('a mkyoung: an access-flag fault after the host aged the page (no FEAT_HAFDBS)', () => {
    const s = scenario({
      cpu: CPU_BARE,
      steps: [
        { access: 'write', ipa: RAM_IPA },
        { age: { ipa: RAM_IPA, size: '4K' } },
        { access: 'read', ipa: RAM_IPA },
      ],
    });
    const { rec, all } = provOf(s, RAM_IPA, kernel);
    expect(all.map((r) => r.action)).toEqual(['map', 'mkyoung']);
    expect(rec.fault.class).toBe('access-flag');
    expect(rec.step).toBe(2);
    expect(formatProvenance(rec)).toContain('mkyoung by access 1 (step 2): access-flag fault');
    expect(formatProvenance(rec)).toContain('AF set on the 4K leaf');
  });
});

describe('provenance: the kernels differ on a cacheable PFNMAP', () => {
  const s = oneVma(
    {
      start: 0x7e00_0000_0000,
      size: '2M',
      backing: 'pfnmap',
      pa: '0x40_0000_0000',
      prot: 'rw',
      flags: ['shared'],
    },
    DEV_IPA,
    { steps: [{ access: 'read', ipa: DEV_IPA }] },
  );
  it('6.16: Device, whatever the VMA says', () => {
    expect(provOf(s, DEV_IPA, '6.16').rec).toMatchObject({
      memType: 'device',
      memTypeRule: 'not cacheable: Device',
    });
  });
  it('6.17: Normal, kept cacheable by the VMA', () => {
    expect(provOf(s, DEV_IPA, '6.17').rec).toMatchObject({
      memType: 'normal',
      memTypeRule: 'cacheable VMA outside the linear map',
    });
  });
});

describe('provenance: off', () => {
  it('is null unless asked, and the view says nothing', () => {
    const out = run(scenario({ steps: [{ access: 'write', ipa: RAM_IPA }] }));
    expect(out.runner.kvm.provenance).toBe(null);
    expect(provenanceLines(null, RAM_IPA)).toEqual([]);
  });
});
