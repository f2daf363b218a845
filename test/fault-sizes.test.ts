/**
 * The mapping size user_mem_abort() picks (the S4 clamps, S6 rounding and L2 THP promotion of
 * docs/decisions.md, "Step labels"): VM_PFNMAP PUD/PMD windows, hugetlb hstates including the contiguous sizes, THP,
 * and fault_supports_stage2_huge_mapping() succeeding and failing. Descriptors are derived by
 * hand from stage2_set_prot_attr() (arch/arm64/kvm/hyp/pgtable.c): with FWB, Normal-WB is MemAttr 6 (0x18), SH=IS 0x300, AF
 * 0x400, R 0x40, W 0x80; a block has bits[1:0]=01, a page 11; XN is bit 54.
 */
import { describe, expect, it } from 'vitest';
import { accesses, faults, leaf, oneVma, run } from './helpers/scenarios.js';

const HVA = '0x7e00_0000_0000';
const GPA = 0x80_0000_0000;

function pfnmap(over: Record<string, unknown> = {}) {
  return {
    start: HVA,
    size: '2G',
    backing: 'pfnmap',
    pa: '0x40_0000_0000',
    prot: 'rw',
    flags: ['shared'],
    hostMapping: 'pud',
    ...over,
  };
}

function hugetlb(hugePage: string, size: string) {
  return { start: HVA, size, backing: 'hugetlb', hugePage, prot: 'rw' };
}

describe('S4: VM_PFNMAP windows (4K granule)', () => {
  it('PUD: kept when the 1G window fits the VMA and the memslot → L1 block', () => {
    const r = run(oneVma(pfnmap(), GPA, { steps: accesses(['write', GPA + 0x12_3000]) }));
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort 0']);
    // 0x40_0000_0000 | RWX Normal-WB(FWB) block 0x7d9
    expect(leaf(r.lines[0]!)).toBe('L1 0x8000000000 0x40000000 0x00000040000007d9');
  });

  it('PUD failing (IPA and hva at different offsets within 1G) falls through CONT_PMD to PMD', () => {
    const gpa = GPA + 0x20_0000; // 2M- but not 1G-aligned
    const r = run(oneVma(pfnmap(), gpa, { steps: accesses(['write', gpa + 0x12_3000]) }));
    // hva offset 0x123000 lies in the VMA's first 2M → pa 0x40_0000_0000
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000200000 0x200000 0x00000040000007d9');
  });

  it('PUD failing (1G block not inside the memslot) maps at PMD', () => {
    const r = run(oneVma(pfnmap(), GPA, { steps: accesses(['write', GPA + 0x12_3000]) }, { size: '1022M' }));
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00000040000007d9');
  });

  it('PMD failing too (4K-only congruence) ends at PAGE with force_pte → L3 page', () => {
    const gpa = GPA + 0x20_1000;
    const r = run(oneVma(pfnmap(), gpa, { steps: accesses(['write', gpa + 0x12_3000]) }));
    expect(leaf(r.lines[0]!)).toBe('L3 0x8000324000 0x1000 0x00000040001237db');
  });

  it('PMD failing because the 2M block leaves the memslot, succeeding where it fits', () => {
    const r = run(
      oneVma(
        pfnmap({ size: '4M', hostMapping: 'pmd' }),
        GPA,
        { steps: accesses(['write', GPA + 0x1000], ['write', GPA + 0x20_1000]) },
        { size: '3M' },
      ),
    );
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00000040000007d9');
    expect(leaf(r.lines[1]!)).toBe('L3 0x8000201000 0x1000 0x00000040002017db');
  });

  it('a read of a shared writable PFNMAP block maps it writable (W from the host entry)', () => {
    const r = run(oneVma(pfnmap(), GPA, { steps: accesses(['read', GPA + 0x4000_0000]) }));
    expect(leaf(r.lines[0]!)).toBe('L1 0x8040000000 0x40000000 0x00000040400007d9');
  });
});

describe('S4: hugetlb hstates on 4K', () => {
  it('1G (PUD) → L1 block over the whole folio', () => {
    const r = run(
      oneVma(hugetlb('1G', '1G'), GPA, {
        steps: accesses(['write', GPA + 0x12_3000], ['read', GPA + 0x3fff_f000]),
      }),
    );
    expect(faults(r.lines[0]!)).toEqual(['translation L1 user_mem_abort 0']);
    expect(leaf(r.lines[0]!)).toBe('L1 0x8000000000 0x40000000 0x00000000c00007d9');
    expect(r.lines[1]!.faults).toEqual([]);
    expect(r.summary.maps).toBe(1);
  });

  it('1G with the slot at a 2M-but-not-1G offset: PUD fails → PMD block', () => {
    const gpa = GPA + 0x20_0000;
    const r = run(oneVma(hugetlb('1G', '1G'), gpa, { steps: accesses(['write', gpa + 0x12_3000]) }));
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000200000 0x200000 0x00000000c00007d9');
  });

  it('32M (CONT_PMD) is demoted to PMD: 2M blocks, one per fault', () => {
    const r = run(
      oneVma(hugetlb('32M', '32M'), GPA, {
        steps: accesses(['write', GPA + 0x12_3000], ['write', GPA + 0x20_0000]),
      }),
    );
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00000000820007d9');
    expect(faults(r.lines[1]!)).toEqual(['translation L2 user_mem_abort 0']);
    expect(leaf(r.lines[1]!)).toBe('L2 0x8000200000 0x200000 0x00000000822007d9');
  });

  it('2M (PMD) → L2 block; the faulting page inside it needs no new fault', () => {
    const r = run(
      oneVma(hugetlb('2M', '4M'), GPA, {
        steps: accesses(['write', GPA + 0x12_3000], ['read', GPA + 0x13_4000]),
      }),
    );
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00000000802007d9');
    expect(r.lines[1]!.faults).toEqual([]);
  });

  it('2M with the PMD check failing → PAGE with force_pte', () => {
    const gpa = GPA + 0x1000;
    const r = run(oneVma(hugetlb('2M', '4M'), gpa, { steps: accesses(['write', gpa + 0x12_3000]) }));
    expect(leaf(r.lines[0]!)).toBe('L3 0x8000124000 0x1000 0x00000000803237db');
  });

  it('64K (CONT_PTE) is demoted to PAGE with force_pte: one 4K page per fault', () => {
    const r = run(
      oneVma(hugetlb('64K', '2M'), GPA, {
        steps: accesses(['write', GPA + 0x12_3000], ['write', GPA + 0x12_4000]),
      }),
    );
    // the 64K folio holding hva+0x120000 is at 0x80010000
    expect(leaf(r.lines[0]!)).toBe('L3 0x8000123000 0x1000 0x00000000800137db');
    expect(faults(r.lines[1]!)).toEqual(['translation L3 user_mem_abort 0']);
    expect(leaf(r.lines[1]!)).toBe('L3 0x8000124000 0x1000 0x00000000800147db');
  });
});

describe('S4: 16K and 64K granules', () => {
  it('16K: 32M hugetlb is a PMD → one L2 32M block', () => {
    const r = run(
      oneVma(hugetlb('32M', '64M'), GPA, { granule: '16K', steps: accesses(['write', GPA + 0x12_4000]) }),
    );
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x2000000 0x00000000820007d9');
  });

  it('16K: 1G hugetlb is CONT_PMD → demoted to a 32M PMD block', () => {
    const r = run(
      oneVma(hugetlb('1G', '1G'), GPA, { granule: '16K', steps: accesses(['write', GPA + 0x212_4000]) }),
    );
    // folio at 0xc0000000; the 32M block holding offset 0x2124000 starts at +0x2000000
    expect(leaf(r.lines[0]!)).toBe('L2 0x8002000000 0x2000000 0x00000000c20007d9');
  });

  it('16K: 2M hugetlb is CONT_PTE → a 16K page', () => {
    const r = run(
      oneVma(hugetlb('2M', '64M'), GPA, { granule: '16K', steps: accesses(['write', GPA + 0x12_4000]) }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x8000124000 0x4000 0x00000000803247db');
  });

  it('64K: 512M hugetlb is a PMD → one L2 512M block', () => {
    const r = run(
      oneVma(hugetlb('512M', '512M'), GPA, { granule: '64K', steps: accesses(['write', GPA + 0x12_0000]) }),
    );
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x20000000 0x00000000a00007d9');
  });

  it('64K: 2M hugetlb is CONT_PTE → a 64K page', () => {
    const r = run(
      oneVma(hugetlb('2M', '64M'), GPA, { granule: '64K', steps: accesses(['write', GPA + 0x12_0000]) }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x8000120000 0x10000 0x00000000803207db');
  });
});

describe('L2: transparent_hugepage_adjust', () => {
  const thp = { start: HVA, size: '8M', backing: 'thp', prot: 'rw' };

  it('a THP-backed page is promoted to PMD: fault_ipa and pfn aligned down to the block', () => {
    const r = run(oneVma(thp, GPA, { steps: accesses(['write', GPA + 0x12_3000]) }));
    // the folio is at 0x80200000 (0x80000000 holds the zero page)
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000000000 0x200000 0x00000000802007d9');
    expect(r.summary.maps).toBe(1);
  });

  it('a read of untouched THP memory maps the huge zero page as a block, read-only', () => {
    const r = run(oneVma(thp, GPA, { steps: accesses(['read', GPA + 0x20_0000]) }));
    expect(leaf(r.lines[0]!)).toBe('L2 0x8000200000 0x200000 0x0000000080200759');
  });

  it('no promotion when the memslot breaks PMD congruence: PAGE', () => {
    const gpa = GPA + 0x1000;
    const r = run(oneVma(thp, gpa, { steps: accesses(['write', gpa + 0x12_3000]) }));
    expect(leaf(r.lines[0]!)?.startsWith('L3 0x8000124000 0x1000 ')).toBe(true);
    expect(r.lines[0]!.leaf!.desc.endsWith('7db')).toBe(true);
  });

  it('no promotion for plain anonymous (4K host pages)', () => {
    const r = run(
      oneVma({ start: HVA, size: '8M', backing: 'anon', prot: 'rw' }, GPA, {
        steps: accesses(['write', GPA + 0x12_3000]),
      }),
    );
    expect(r.lines[0]!.leaf!.level).toBe(3);
  });
});
