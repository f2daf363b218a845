import { describe, it, expect } from 'vitest';
import { GRANULE_4K, GRANULE_64K, shr, shl, alignDown } from '../src/mmu/host/granule.js';
import { PhysMem, PS_MTE_LOCK, PS_MTE_TAGGED } from '../src/mmu/host/physmem.js';

const G = 2 ** 30;
const T = 2 ** 40;

function mem(): PhysMem {
  return new PhysMem(GRANULE_4K, [
    { base: 0x8000_0000, size: 2 * G, type: 'ram' },
    { base: 0x1_0000_0000, size: 1 * G, type: 'nomap' },
    { base: 0x2_0000_0000, size: 1 * G, type: 'ram' },
  ]);
}

describe('64-bit-safe arithmetic', () => {
  it('shifts and aligns above 2^32 exactly', () => {
    expect(shr(0x40_0000_1000, 12)).toBe(0x400_0001);
    expect(shl(0x400_0001, 12)).toBe(0x40_0000_1000);
    expect(alignDown(0x40_0012_3456, 0x20_0000)).toBe(0x40_0000_0000);
  });
});

describe('memory map', () => {
  it('pfnIsMapMemory is true for RAM only, false for nomap and holes', () => {
    const p = mem();
    expect(p.pfnIsMapMemory(0x8000_0000 / 4096)).toBe(true);
    expect(p.pfnIsMapMemory((0x8000_0000 + 2 * G) / 4096 - 1)).toBe(true);
    expect(p.pfnIsMapMemory((0x8000_0000 + 2 * G) / 4096)).toBe(false); // nomap starts at 4G... hole at exactly 4G? no: ram ends at 4G
    expect(p.pfnIsMapMemory(0x1_0000_0000 / 4096 + 5)).toBe(false); // nomap
    expect(p.pfnIsMapMemory(0x1_8000_0000 / 4096)).toBe(false); // hole
    expect(p.pfnIsMapMemory(0x2_0000_0000 / 4096 + 7)).toBe(true);
    expect(p.pfnIsMapMemory(0)).toBe(false);
  });

  it('rejects overlapping or unaligned regions', () => {
    expect(
      () =>
        new PhysMem(GRANULE_4K, [
          { base: 0, size: 2 * G, type: 'ram' },
          { base: 1 * G, size: 1 * G, type: 'nomap' },
        ]),
    ).toThrow(/overlap/);
    expect(() => new PhysMem(GRANULE_64K, [{ base: 4096, size: 65536, type: 'ram' }])).toThrow(/aligned/);
  });
});

describe('folio allocator', () => {
  it('allocates naturally aligned folios from RAM with head, order and hugetlb state', () => {
    const p = mem();
    const small = p.allocFolio(0, false);
    const pmd = p.allocFolio(9, false);
    const giga = p.allocFolio(18, true);
    for (const [pfn, order] of [
      [small, 0],
      [pmd, 9],
      [giga, 18],
    ]) {
      expect(pfn % 2 ** order).toBe(0);
      expect(p.pfnIsMapMemory(pfn)).toBe(true);
      expect(p.folioOrder(pfn + 2 ** order - 1)).toBe(order);
      expect(p.folioHead(pfn + 2 ** order - 1)).toBe(pfn);
    }
    expect(p.folioTestHugetlb(giga + 100)).toBe(true);
    expect(p.folioTestHugetlb(pmd)).toBe(false);
    // No overlap between folios.
    expect(pmd >= small + 1 || pmd + 512 <= small).toBe(true);
  });

  it('reuses freed folios and reuses the alignment gap', () => {
    const p = mem();
    const a = p.allocFolio(0, false);
    const b = p.allocFolio(9, false); // skips a gap after a (and the zero page)
    expect(p.freeFolio(b)).toBe(true);
    expect(p.pageIsAllocated(b)).toBe(false);
    expect(p.allocFolio(9, false)).toBe(b);
    const c = p.allocFolio(0, false);
    expect(c).toBeGreaterThan(a);
    expect(c).toBeLessThan(b); // came from the gap
  });

  it('returns -1 when RAM is exhausted and never hands out nomap memory', () => {
    const p = new PhysMem(GRANULE_4K, [
      { base: 0, size: 4 * 2 ** 20, type: 'ram' },
      { base: 4 * 2 ** 20, size: 4 * 2 ** 20, type: 'nomap' },
    ]);
    expect(p.allocFolio(9, false)).toBeGreaterThanOrEqual(0); // the first 2M holds the zero page
    expect(p.allocFolio(9, false)).toBe(-1);
    let n = 0;
    for (;;) {
      const pfn = p.allocFolio(0, false);
      if (pfn < 0) break;
      expect(p.pfnIsMapMemory(pfn)).toBe(true);
      n++;
    }
    expect(n).toBe(511); // 1024 pages, minus the zero page and the 2M folio
  });

  it('scales to 1 TiB of RAM: construction is lazy and a 1 GiB folio at the top works', () => {
    const p = new PhysMem(GRANULE_4K, [{ base: 0, size: 1 * T, type: 'ram' }]);
    expect(p.stats.allocatedPages).toBe(1); // the zero page only
    const pfns: number[] = [];
    for (let i = 0; i < 8; i++) pfns.push(p.allocFolio(18, true));
    expect(new Set(pfns).size).toBe(8);
    expect(p.state(2 ** 28 - 1)).toBe(0); // untouched top page
  });

  it('freeing clears the page state but keeps hardware poison', () => {
    const p = mem();
    const pfn = p.allocFolio(0, false);
    p.setHwPoison(pfn, true);
    expect(p.tryPageMteTagging(pfn)).toBe(true);
    p.setPageMteTagged(pfn);
    p.freeFolio(pfn);
    expect(p.pageHwPoison(pfn)).toBe(true);
    expect(p.pageMteTagged(pfn)).toBe(false);
    expect(p.state(pfn) & (PS_MTE_LOCK | PS_MTE_TAGGED)).toBe(0);
    expect(p.freeFolio(pfn)).toBe(false);
    expect(p.warnings.length).toBe(1);
  });

  it('the zero pages are reserved and never freed', () => {
    const p = mem();
    const z = p.zeroPfn;
    const hz = p.hugeZeroPfn();
    expect(p.hugeZeroPfn()).toBe(hz);
    expect(hz % 512).toBe(0);
    expect(p.isZeroPfn(z)).toBe(true);
    expect(p.isZeroPfn(hz + 511)).toBe(true);
    expect(p.isZeroPfn(hz + 512)).toBe(false);
    expect(p.freeFolio(z)).toBe(false);
    expect(p.pageIsAllocated(z)).toBe(true);
  });
});

describe('MTE tag state', () => {
  it('try_page_mte_tagging is a one-shot latch per page', () => {
    const p = mem();
    const pfn = p.allocFolio(1, false);
    expect(p.pageMteTagged(pfn)).toBe(false);
    expect(p.tryPageMteTagging(pfn)).toBe(true);
    p.mteClearPageTags(pfn);
    p.setPageMteTagged(pfn);
    expect(p.tryPageMteTagging(pfn)).toBe(false);
    expect(p.pageMteTagged(pfn)).toBe(true);
    // The other page of the folio has its own latch.
    expect(p.tryPageMteTagging(pfn + 1)).toBe(true);
    expect(p.stats.mteTagClears).toBe(1);
    expect(p.warnings).toEqual([]);
  });

  it('losing the latch before the winner set PG_mte_tagged is reported (the kernel would spin)', () => {
    const p = mem();
    const pfn = p.allocFolio(0, false);
    expect(p.tryPageMteTagging(pfn)).toBe(true);
    expect(p.tryPageMteTagging(pfn)).toBe(false);
    expect(p.warnings.join()).toMatch(/spin/);
  });

  it('hugetlb folios keep the flags on the head: any page of the folio sees one latch', () => {
    const p = mem();
    const head = p.allocFolio(9, true);
    expect(p.folioTryHugetlbMteTagging(head + 17)).toBe(true);
    p.folioSetHugetlbMteTagged(head + 17);
    expect(p.folioTestHugetlbMteTagged(head + 300)).toBe(true);
    expect(p.folioTryHugetlbMteTagging(head + 300)).toBe(false);
    expect(p.pageMteTagged(head)).toBe(true);
    expect(p.pageMteTagged(head + 17)).toBe(false);
    expect(p.warnings).toEqual([]);
  });

  it('warns when the folio variants meet a non-hugetlb folio, or the page variants a hugetlb one', () => {
    const p = mem();
    const thp = p.allocFolio(9, false);
    p.folioTryHugetlbMteTagging(thp);
    const h = p.allocFolio(9, true);
    p.tryPageMteTagging(h + 1);
    expect(p.warnings).toHaveLength(2);
  });
});
