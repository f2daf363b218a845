import { describe, it, expect } from 'vitest';
import {
  ARM64_MIN_PARANGE_BITS,
  Geometry,
  KVM_PHYS_SHIFT,
  VTCR_DS,
  VTCR_HA,
  VTCR_VS,
  alignDown,
  alignUp,
  decodeVtcr,
  isAligned,
  kvmGetVtcr,
  kvmPgdPages,
  levelShift,
  minBlockLevel,
  pageShiftOf,
  stage2Levels,
} from '../src/pgtable/geometry.js';
import type { GranuleSize } from '../src/pgtable/geometry.js';
import { Stage2PageTable } from '../src/pgtable/stage2.js';
import { MemCache, TablePool } from '../src/pgtable/pool.js';

const K4 = 4096;
const K16 = 16384;
const K64 = 65536;

/** One row of the geometry table: granule, IPA bits, levels, start level, SL0, PGD pages. */
interface Row {
  granule: GranuleSize;
  ipa: number;
  levels: number;
  start: number;
  sl0: number;
  pgd: number;
  lpa2?: boolean;
}

// Every granule and IPA size, from kvm_get_vtcr() and stage2_pgtable.h (VTCR_EL2.SL0 and
// concatenation as the Arm ARM allows them).
const TABLE: Row[] = [
  { granule: K4, ipa: 32, levels: 2, start: 2, sl0: 0, pgd: 4 },
  { granule: K4, ipa: 36, levels: 3, start: 1, sl0: 1, pgd: 1 },
  { granule: K4, ipa: 40, levels: 3, start: 1, sl0: 1, pgd: 2 },
  { granule: K4, ipa: 42, levels: 3, start: 1, sl0: 1, pgd: 8 },
  { granule: K4, ipa: 44, levels: 4, start: 0, sl0: 2, pgd: 1 },
  { granule: K4, ipa: 48, levels: 4, start: 0, sl0: 2, pgd: 1 },
  { granule: K4, ipa: 52, levels: 4, start: 0, sl0: 2, pgd: 16, lpa2: true },
  { granule: K16, ipa: 32, levels: 2, start: 2, sl0: 1, pgd: 1 },
  { granule: K16, ipa: 36, levels: 2, start: 2, sl0: 1, pgd: 1 },
  { granule: K16, ipa: 40, levels: 2, start: 2, sl0: 1, pgd: 16 },
  { granule: K16, ipa: 42, levels: 3, start: 1, sl0: 2, pgd: 1 },
  { granule: K16, ipa: 44, levels: 3, start: 1, sl0: 2, pgd: 1 },
  { granule: K16, ipa: 48, levels: 3, start: 1, sl0: 2, pgd: 2 },
  { granule: K16, ipa: 52, levels: 4, start: 0, sl0: 3, pgd: 1, lpa2: true },
  { granule: K64, ipa: 32, levels: 2, start: 2, sl0: 1, pgd: 1 },
  { granule: K64, ipa: 36, levels: 2, start: 2, sl0: 1, pgd: 1 },
  { granule: K64, ipa: 40, levels: 2, start: 2, sl0: 1, pgd: 1 },
  { granule: K64, ipa: 42, levels: 2, start: 2, sl0: 1, pgd: 1 },
  { granule: K64, ipa: 44, levels: 2, start: 2, sl0: 1, pgd: 4 },
  { granule: K64, ipa: 48, levels: 3, start: 1, sl0: 2, pgd: 1 },
  { granule: K64, ipa: 52, levels: 3, start: 1, sl0: 2, pgd: 1 },
];

describe('levels, start level, SL0 and PGD pages', () => {
  it.each(TABLE)('$granule/$ipa', (row) => {
    const ps = pageShiftOf(row.granule);
    expect(stage2Levels(ps, row.ipa)).toBe(row.levels);
    expect(kvmPgdPages(ps, row.ipa, row.start)).toBe(row.pgd);

    // SL0 as kvm_get_vtcr() writes it, and the start level __kvm_pgtable_stage2_init() reads back.
    const vtcr = kvmGetVtcr({
      granule: row.granule,
      ipaBits: row.ipa,
      paBits: row.lpa2 || (row.granule === K64 && row.ipa === 52) ? 52 : 48,
      lpa2: row.lpa2 ?? false,
      pa52With64k: row.granule === K64,
    });
    const f = decodeVtcr(vtcr);
    expect(f.sl0).toBe(row.sl0);
    expect(f.startLevel).toBe(row.start);
    expect(f.ipaBits).toBe(row.ipa);
    expect(f.t0sz).toBe(64 - row.ipa);
    expect(f.granule).toBe(row.granule);
    expect(f.ds).toBe(row.lpa2 ?? false);

    const geo = new Geometry(row.granule, row.ipa);
    expect(geo.startLevel).toBe(row.start);
    expect(geo.pgdPages).toBe(row.pgd);
    expect(geo.minCachePages).toBe(row.levels - 1);
    expect(geo.ipaLimit).toBe(2 ** row.ipa);

    // __kvm_pgtable_stage2_init allocates exactly the concatenated PGD, naturally aligned.
    const pgt = new Stage2PageTable({ granule: row.granule, ipaBits: row.ipa, fwb: false, lpa2: row.lpa2 });
    expect(pgt.pool.inUse).toBe(row.pgd);
    expect(pgt.countTables()).toBe(row.pgd);
    expect(pgt.pgd % row.pgd).toBe(0);
    for (let i = 0; i < row.pgd; i++) expect(pgt.pool.pageCount(pgt.pgd + i)).toBe(1);
  });

  it('KVM_PHYS_SHIFT and the smallest IPA are the documented constants', () => {
    expect(KVM_PHYS_SHIFT).toBe(40);
    expect(ARM64_MIN_PARANGE_BITS).toBe(32);
  });
});

describe('level shifts, block levels and block sizes', () => {
  it('shift(level) per granule matches the table (L-1/L0/L1/L2/L3)', () => {
    expect([-1, 0, 1, 2, 3].map((l) => levelShift(12, l))).toEqual([48, 39, 30, 21, 12]);
    expect([-1, 0, 1, 2, 3].map((l) => levelShift(14, l))).toEqual([58, 47, 36, 25, 14]);
    expect([0, 1, 2, 3].map((l) => levelShift(16, l))).toEqual([55, 42, 29, 16]);
  });

  it('entries per table and stride', () => {
    expect(new Geometry(K4, 40).ptrsPerPte).toBe(512);
    expect(new Geometry(K16, 40).ptrsPerPte).toBe(2048);
    expect(new Geometry(K64, 40).ptrsPerPte).toBe(8192);
    expect(new Geometry(K4, 40).stride).toBe(9);
    expect(new Geometry(K16, 40).stride).toBe(11);
    expect(new Geometry(K64, 40).stride).toBe(13);
  });

  it('KVM_PGTABLE_MIN_BLOCK_LEVEL is 1 for 4K, 2 otherwise', () => {
    expect(minBlockLevel(12)).toBe(1);
    expect(minBlockLevel(14)).toBe(2);
    expect(minBlockLevel(16)).toBe(2);
    const g4 = new Geometry(K4, 48);
    expect([0, 1, 2, 3].map((l) => g4.levelSupportsBlock(l))).toEqual([false, true, true, true]);
    const g16 = new Geometry(K16, 48);
    expect([0, 1, 2, 3].map((l) => g16.levelSupportsBlock(l))).toEqual([false, false, true, true]);
    const g64 = new Geometry(K64, 48);
    expect([1, 2, 3].map((l) => g64.levelSupportsBlock(l))).toEqual([false, true, true]);
  });

  it('kvm_supported_block_sizes(): 4K/2M/1G, 16K/32M, 64K/512M (no L1 blocks with 16K/64K)', () => {
    expect(new Geometry(K4, 40).blockSizes()).toEqual([0x1000, 0x200000, 0x40000000]);
    expect(new Geometry(K16, 40).blockSizes()).toEqual([0x4000, 0x2000000]);
    expect(new Geometry(K64, 44).blockSizes()).toEqual([0x10000, 0x20000000]);
  });

  it('granuleSize(level) is 2^shift(level)', () => {
    const g = new Geometry(K4, 48);
    expect(g.granuleSize(3)).toBe(0x1000);
    expect(g.granuleSize(2)).toBe(0x200000);
    expect(g.granuleSize(1)).toBe(0x40000000);
    expect(g.granuleSize(0)).toBe(0x8000000000);
    expect(g.shift(0)).toBe(39);
    const g64 = new Geometry(K64, 48);
    expect(g64.granuleSize(1)).toBe(2 ** 42);
    expect(g64.granuleSize(0)).toBe(2 ** 55);
  });
});

describe('VTCR_EL2 worked values (16-bit VMID, HA on)', () => {
  it('4K / 40-bit / PARange 48 → 0x802D3558', () => {
    const v = kvmGetVtcr({ granule: K4, ipaBits: 40, paBits: 48, vmid16: true, hafdbs: true });
    expect(v).toBe(0x802d3558);
    // Field by field: T0SZ 24, SL0 1, IRGN0/ORGN0 WBWA, SH0 inner, TG0 4K, PS 48-bit, VS, HA, RES1.
    expect(decodeVtcr(v)).toEqual({
      t0sz: 24,
      ipaBits: 40,
      sl0: 1,
      irgn0: 1,
      orgn0: 1,
      sh0: 3,
      granule: K4,
      ps: 5,
      paBits: 48,
      vs: true,
      ha: true,
      hd: false,
      ds: false,
      sl2: false,
      startLevel: 1,
    });
  });

  it('4K / 48 → 0x802D3590', () => {
    expect(kvmGetVtcr({ granule: K4, ipaBits: 48, paBits: 48 })).toBe(0x802d3590);
  });

  it('16K / 40 → 0x802DB558', () => {
    expect(kvmGetVtcr({ granule: K16, ipaBits: 40, paBits: 48 })).toBe(0x802db558);
  });

  it('64K / 44 / PARange 52 → 0x802E7554 (needs CONFIG_ARM64_PA_BITS_52 with 64K)', () => {
    expect(kvmGetVtcr({ granule: K64, ipaBits: 44, paBits: 52, pa52With64k: true })).toBe(0x802e7554);
    // Without it the PS cap is PARANGE_48.
    expect(kvmGetVtcr({ granule: K64, ipaBits: 44, paBits: 52 })).toBe(0x802d7554);
    // pa52With64k only raises the cap for 64K pages.
    expect(kvmGetVtcr({ granule: K4, ipaBits: 40, paBits: 52, pa52With64k: true })).toBe(0x802d3558);
  });

  it('4K / 52 with LPA2 → 0x1802E358C (DS, bit 32)', () => {
    const v = kvmGetVtcr({ granule: K4, ipaBits: 52, paBits: 52, lpa2: true });
    expect(v).toBe(0x1802e358c);
    expect(v - 0x802e358c).toBe(VTCR_DS);
    expect(decodeVtcr(v).ds).toBe(true);
    expect(decodeVtcr(v).paBits).toBe(52);
  });

  it('VS and HA follow the host options; HD is never set', () => {
    const base = kvmGetVtcr({ granule: K4, ipaBits: 40 });
    expect(kvmGetVtcr({ granule: K4, ipaBits: 40, vmid16: false })).toBe(base - VTCR_VS);
    expect(kvmGetVtcr({ granule: K4, ipaBits: 40, hafdbs: false })).toBe(base - VTCR_HA);
    expect(decodeVtcr(base).hd).toBe(false);
  });

  it('PS follows the host PARange (capped), not the VM IPA size', () => {
    expect(decodeVtcr(kvmGetVtcr({ granule: K4, ipaBits: 40, paBits: 40 })).ps).toBe(2);
    expect(decodeVtcr(kvmGetVtcr({ granule: K4, ipaBits: 32, paBits: 44 })).ps).toBe(4);
    expect(decodeVtcr(kvmGetVtcr({ granule: K4, ipaBits: 40, paBits: 52 })).ps).toBe(5);
  });

  it('decodes a reserved TG0 as no granule and no start level', () => {
    const f = decodeVtcr(0x80000000 + (3 << 14) + 24);
    expect(f.granule).toBeNull();
    expect(f.startLevel).toBeNull();
  });
});

describe('index computation', () => {
  /** The kernel's kvm_pgtable_idx / kvm_pgd_page_idx, in BigInt, as a reference. */
  function refIdx(geo: Geometry, addr: number, level: number): number {
    const shift = BigInt(levelShift(geo.pageShift, level));
    return Number((BigInt(addr) >> shift) & BigInt(geo.ptrsPerPte - 1));
  }
  function refPgdIdx(geo: Geometry, addr: number): number {
    const shift = BigInt(levelShift(geo.pageShift, geo.startLevel - 1));
    const mask = (1n << BigInt(geo.iaBits)) - 1n;
    return Number((BigInt(addr) & mask) >> shift);
  }

  it('4K/40: concatenated PGD page, then L1, L2, L3 indices', () => {
    const g = new Geometry(K4, 40);
    const a = 2 ** 39 + 3 * 2 ** 30 + 5 * 2 ** 21 + 7 * 2 ** 12 + 0x123;
    expect(g.pgdPageIndex(a)).toBe(1);
    expect(g.index(a, 1)).toBe(3);
    expect(g.index(a, 2)).toBe(5);
    expect(g.index(a, 3)).toBe(7);
    // The IPA mask: bits above ia_bits do not pick a page.
    expect(g.pgdPageIndex(a + 2 ** 40)).toBe(1);
  });

  it('16K/40: 16 root pages at level 2', () => {
    const g = new Geometry(K16, 40);
    const a = 9 * 2 ** 36 + 100 * 2 ** 25 + 33 * 2 ** 14;
    expect(g.pgdPageIndex(a)).toBe(9);
    expect(g.index(a, 2)).toBe(100);
    expect(g.index(a, 3)).toBe(33);
  });

  it('64K/44: 4 root pages at level 2; 64K/52 uses 1024 L1 entries', () => {
    const g = new Geometry(K64, 44);
    const a = 3 * 2 ** 42 + 8000 * 2 ** 29 + 8191 * 2 ** 16;
    expect(g.pgdPageIndex(a)).toBe(3);
    expect(g.index(a, 2)).toBe(8000);
    expect(g.index(a, 3)).toBe(8191);
    const g52 = new Geometry(K64, 52);
    expect(g52.pgdPages).toBe(1);
    expect(g52.index(2 ** 52 - 1, 1)).toBe(1023);
  });

  it.each(TABLE)('$granule/$ipa: the start level is indexed with stride + log2(pages) bits', (row) => {
    const g = new Geometry(row.granule, row.ipa);
    const startShift = levelShift(g.pageShift, g.startLevel);
    const samples = [0, 1, g.pageSize, 2 ** row.ipa - 1, 2 ** (row.ipa - 1), 0x123456789 % 2 ** row.ipa];
    for (let k = 1; k < 40; k++)
      samples.push(Math.floor((((k * 0x9e3779b1) % 1000003) / 1000003) * 2 ** row.ipa));
    for (const a of samples) {
      expect(g.pgdPageIndex(a)).toBe(refPgdIdx(g, a));
      expect(g.pgdPageIndex(a)).toBeLessThan(row.pgd);
      for (let l = g.startLevel; l <= 3; l++) expect(g.index(a, l)).toBe(refIdx(g, a, l));
      expect(g.pgdPageIndex(a) * g.ptrsPerPte + g.index(a, g.startLevel)).toBe(
        Math.floor(a / 2 ** startShift),
      );
    }
  });

  // With start_level −1 (4K + LPA2, which the replay's start_level= accepts) kvm_pgd_page_idx()
  // shifts by shift(−2) = 57 and always gives 0; an early Geometry read sizes[−1] and got NaN.
  it('start_level -1: the PGD page index is 0 (shift(-2) = 57) and walks work', () => {
    const g = new Geometry(K4, 52, -1);
    expect(g.pgdPages).toBe(1);
    expect(g.pgdPageIndex(0x1000)).toBe(0);
    expect(g.pgdPageIndex(2 ** 52 - 1)).toBe(0);
    expect(g.index(2 ** 51 + 2 ** 48, -1)).toBe(9);
    const pgt = new Stage2PageTable({ granule: K4, ipaBits: 52, fwb: false, startLevel: -1, lpa2: true });
    expect(pgt.map(2 ** 51 + 0x1000, 0x1000, 0x80000000, 4, MemCache.unlimited(pgt.pool))).toBe(0);
    // PGD (L−1) → L0 → L1 → L2 → L3 tables.
    expect(pgt.countTables()).toBe(5);
    expect(pgt.getLeaf(2 ** 51 + 0x1000)).toBe(0);
  });

  it('alignment helpers are exact above 2^32', () => {
    expect(alignDown(2 ** 40 + 0x1234, 0x1000)).toBe(2 ** 40 + 0x1000);
    expect(alignUp(2 ** 40 + 0x1234, 0x1000)).toBe(2 ** 40 + 0x2000);
    expect(alignUp(2 ** 40, 0x1000)).toBe(2 ** 40);
    expect(isAligned(2 ** 45 + 2 ** 21, 2 ** 21)).toBe(true);
    expect(isAligned(2 ** 45 + 2 ** 12, 2 ** 21)).toBe(false);
  });
});

describe('bad geometry inputs throw RangeError with a clear message', () => {
  it('granule', () => {
    expect(() => new Geometry(8192 as GranuleSize, 40)).toThrow(RangeError);
    expect(() => new Geometry(8192 as GranuleSize, 40)).toThrow(/granule: expected 4K, 16K or 64K, got 8192/);
  });

  it('IPA size', () => {
    expect(() => new Geometry(K4, 31)).toThrow(/ipa_bits: expected an integer from 32 to 52, got 31/);
    expect(() => new Geometry(K4, 53)).toThrow(RangeError);
    expect(() => new Geometry(K4, 40.5)).toThrow(RangeError);
  });

  it('start level', () => {
    expect(() => new Geometry(K4, 40, 4)).toThrow(/start_level: expected an integer from -1 to 3, got 4/);
    expect(() => new Geometry(K4, 40, -2)).toThrow(RangeError);
    // Level 2 for a 40-bit IPA would need 1024 concatenated tables.
    expect(() => new Geometry(K4, 40, 2)).toThrow(/needs 1024 concatenated tables.*at most 16/);
  });

  it('PARange, LPA2 with 64K, pool page size', () => {
    expect(() => kvmGetVtcr({ granule: K4, ipaBits: 40, paBits: 50 })).toThrow(RangeError);
    expect(() => kvmGetVtcr({ granule: K4, ipaBits: 40, paBits: 50 })).toThrow(/paBits: expected one of/);
    expect(() => new Stage2PageTable({ granule: K64, ipaBits: 48, fwb: false, lpa2: true })).toThrow(
      /lpa2: not available with 64K pages/,
    );
    expect(
      () => new Stage2PageTable({ granule: K16, ipaBits: 40, fwb: false, pool: new TablePool(K4) }),
    ).toThrow(/pool: page size differs/);
  });

  it('an exhausted pool refuses the PGD with ENOMEM', () => {
    const pool = new TablePool(K4);
    pool.limit = 1;
    expect(() => new Stage2PageTable({ granule: K4, ipaBits: 40, fwb: false, pool })).toThrow(/ENOMEM/);
    expect(pool.inUse).toBe(0);
  });
});
