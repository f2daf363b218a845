/**
 * Stage-2 geometry: granules, levels, start level, concatenated PGD pages and VTCR_EL2
 * (arch/arm64/kvm/hyp/pgtable.c, kvm_get_vtcr(); arch/arm64/include/asm/stage2_pgtable.h).
 *
 * Addresses (IPA, PA, sizes) are plain JavaScript numbers: every address the architecture
 * can produce is below 2^52, and doubles are exact below 2^53, so `a - (a % size)` and
 * `a / size` are exact for the power-of-two sizes used here. Bitwise operators are never
 * applied to a whole address (they truncate to 32 bits).
 */

/** The three translation granules, as the host PAGE_SIZE (which is also the stage-2 granule). */
export type GranuleSize = 4096 | 16384 | 65536;

/** Lowest level of any walk (KVM_PGTABLE_FIRST_LEVEL): level −1 exists only with LPA2. */
export const KVM_PGTABLE_FIRST_LEVEL = -1;
/** Last level (KVM_PGTABLE_LAST_LEVEL): level 3 always holds pages. */
export const KVM_PGTABLE_LAST_LEVEL = 3;
/** The smallest IPA size KVM accepts (ARM64_MIN_PARANGE_BITS). */
export const ARM64_MIN_PARANGE_BITS = 32;
/** The default IPA size of a VM created with IPA size 0 (KVM_PHYS_SHIFT). */
export const KVM_PHYS_SHIFT = 40;

/** 2^n for 0 <= n <= 63 as a double (exact: powers of two are representable). */
export function pow2(n: number): number {
  return n < 31 ? 1 << n : 2 ** n;
}

// Address arithmetic avoids `%` on doubles (a libm fmod call in V8): for a power-of-two
// size, a / size and a * (1 / size) are exact, so Math.floor of either aligns exactly.

/** True if `a` is a multiple of the power of two `size`. Exact for any address below 2^53. */
export function isAligned(a: number, size: number): boolean {
  return Math.floor(a / size) * size === a;
}

/** ALIGN_DOWN(a, size) for a power-of-two size. Returns the aligned address. */
export function alignDown(a: number, size: number): number {
  return Math.floor(a / size) * size;
}

/** ALIGN(a, size) for a power-of-two size. Returns the aligned-up address. */
export function alignUp(a: number, size: number): number {
  return Math.ceil(a / size) * size;
}

/** Returns log2 of a granule size: PAGE_SHIFT (12, 14 or 16). */
export function pageShiftOf(granule: GranuleSize): number {
  return granule === 4096 ? 12 : granule === 16384 ? 14 : 16;
}

/**
 * kvm_granule_shift(level) / ARM64_HW_PGTABLE_LEVEL_SHIFT: log2 of the bytes one entry at
 * `level` maps, for a granule with PAGE_SHIFT `pageShift`. Returns the shift.
 */
export function levelShift(pageShift: number, level: number): number {
  return (pageShift - 3) * (4 - level) + 3;
}

/**
 * stage2_pgtable_levels(ipa) raised to at least 2 as kvm_get_vtcr() does: the number of
 * levels KVM uses for an IPA size. Up to 16 start-level tables can be concatenated, hence
 * the "- 4" folded into "- 8". Returns the level count.
 */
export function stage2Levels(pageShift: number, ipaBits: number): number {
  return Math.max(2, Math.floor((ipaBits - 8) / (pageShift - 3)));
}

/**
 * kvm_pgd_pages(ia_bits, start_level): the number of concatenated start-level tables.
 * Returns ((2^ia_bits − 1) >> shift(start_level − 1)) + 1.
 */
export function kvmPgdPages(pageShift: number, iaBits: number, startLevel: number): number {
  const s = levelShift(pageShift, startLevel - 1);
  return iaBits <= s ? 1 : pow2(iaBits - s);
}

/**
 * The lowest level that may hold a block (KVM_PGTABLE_MIN_BLOCK_LEVEL): 1 for 4K pages,
 * 2 for 16K and 64K (KVM never makes L0 blocks, nor L1 blocks with 16K/64K).
 * Returns the level.
 */
export function minBlockLevel(pageShift: number): number {
  return pageShift === 12 ? 1 : 2;
}

/**
 * The immutable shape of one stage-2 table: granule, IPA size, start level and PGD pages.
 * Precomputes the per-level shifts and sizes the walker needs, so the hot path reads
 * numbers from arrays instead of recomputing them.
 */
export class Geometry {
  /** PAGE_SIZE in bytes. */
  readonly pageSize: GranuleSize;
  /** PAGE_SHIFT. */
  readonly pageShift: number;
  /** Bits resolved per level: PAGE_SHIFT − 3. */
  readonly stride: number;
  /** Entries per table page (PTRS_PER_PTE). */
  readonly ptrsPerPte: number;
  /** Input (IPA) size in bits. */
  readonly iaBits: number;
  /** The level of the root tables. */
  readonly startLevel: number;
  /** Number of concatenated root table pages. */
  readonly pgdPages: number;
  /** KVM_PGTABLE_MIN_BLOCK_LEVEL for this granule. */
  readonly minBlockLevel: number;
  /** 2^iaBits: the end of the IPA space. */
  readonly ipaLimit: number;
  /** shift(level) indexed by level + 1 (levels −1..3). */
  readonly shifts: Int32Array;
  /** 2^shift(level) indexed by level + 1. */
  readonly sizes: Float64Array;
  /** 2^−shift(level) indexed by level + 1 (exact reciprocals, for division-free indexing). */
  readonly invSizes: Float64Array;
  /** 1 / PAGE_SIZE. */
  readonly invPageSize: number;

  constructor(pageSize: GranuleSize, iaBits: number, startLevel?: number) {
    if (pageSize !== 4096 && pageSize !== 16384 && pageSize !== 65536) {
      throw new RangeError(`granule: expected 4K, 16K or 64K, got ${String(pageSize)}`);
    }
    if (!Number.isInteger(iaBits) || iaBits < ARM64_MIN_PARANGE_BITS || iaBits > 52) {
      throw new RangeError(`ipa_bits: expected an integer from 32 to 52, got ${String(iaBits)}`);
    }
    this.pageSize = pageSize;
    this.pageShift = pageShiftOf(pageSize);
    this.stride = this.pageShift - 3;
    this.ptrsPerPte = pow2(this.stride);
    this.iaBits = iaBits;
    const sl = startLevel ?? 4 - stage2Levels(this.pageShift, iaBits);
    if (!Number.isInteger(sl) || sl < KVM_PGTABLE_FIRST_LEVEL || sl > KVM_PGTABLE_LAST_LEVEL) {
      throw new RangeError(`start_level: expected an integer from -1 to 3, got ${String(startLevel)}`);
    }
    this.startLevel = sl;
    this.pgdPages = kvmPgdPages(this.pageShift, iaBits, sl);
    if (this.pgdPages > 16) {
      throw new RangeError(
        `start_level ${sl} needs ${this.pgdPages} concatenated tables for a ${iaBits}-bit IPA; at most 16 are allowed`,
      );
    }
    this.minBlockLevel = minBlockLevel(this.pageShift);
    this.ipaLimit = pow2(iaBits);
    this.shifts = new Int32Array(5);
    this.sizes = new Float64Array(5);
    this.invSizes = new Float64Array(5);
    this.invPageSize = 1 / pageSize;
    for (let l = -1; l <= 3; l++) {
      const s = levelShift(this.pageShift, l);
      this.shifts[l + 1] = s;
      this.sizes[l + 1] = pow2(s);
      this.invSizes[l + 1] = 2 ** -s;
    }
  }

  /** kvm_granule_shift(level). Returns the shift. */
  shift(level: number): number {
    return this.shifts[level + 1]!;
  }

  /** kvm_granule_size(level): bytes mapped by one entry at `level`. Returns the size. */
  granuleSize(level: number): number {
    return this.sizes[level + 1]!;
  }

  /** kvm_level_supports_block_mapping(level). Returns true if a leaf may sit at `level`. */
  levelSupportsBlock(level: number): boolean {
    return level >= this.minBlockLevel;
  }

  /**
   * kvm_pgtable_idx(addr, level): the index of `addr` within one table page at `level`.
   * Returns the index.
   */
  index(addr: number, level: number): number {
    return Math.floor(addr * this.invSizes[level + 1]!) & (this.ptrsPerPte - 1);
  }

  /** kvm_pgd_page_idx(addr): which concatenated root page holds `addr`. Returns the page. */
  pgdPageIndex(addr: number): number {
    if (this.pgdPages === 1) return 0;
    const masked = addr - Math.floor(addr / this.ipaLimit) * this.ipaLimit;
    return Math.floor(masked / this.granuleSize(this.startLevel - 1));
  }

  /** kvm_mmu_cache_min_pages(): table pages a single map may need (levels − 1). */
  get minCachePages(): number {
    return KVM_PGTABLE_LAST_LEVEL - this.startLevel;
  }

  /** kvm_supported_block_sizes(): the sizes a leaf may map, smallest first. */
  blockSizes(): number[] {
    const out: number[] = [];
    for (let l = 3; l >= this.minBlockLevel; l--) out.push(this.granuleSize(l));
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// VTCR_EL2 (Arm ARM, VTCR_EL2; the fields KVM sets in kvm_get_vtcr()). Layout:
//
//   33   32  31    22 21 19  18:16  15:14 13:12  11:10  9:8   7:6   5:0
//   SL2  DS  RES1   HD HA VS  PS     TG0   SH0    ORGN0  IRGN0 SL0   T0SZ
//
// VTCR is a 34-bit value, kept in a double (exact below 2^53).
// ---------------------------------------------------------------------------------------

/** VTCR_EL2.T0SZ, bits [5:0]: 64 − IPA size. */
export const VTCR_T0SZ_MASK = 0x3f;
/** VTCR_EL2.SL0 shift, bits [7:6]. */
export const VTCR_SL0_SHIFT = 6;
/** VTCR_EL2.IRGN0 shift, bits [9:8]. */
export const VTCR_IRGN0_SHIFT = 8;
/** VTCR_EL2.ORGN0 shift, bits [11:10]. */
export const VTCR_ORGN0_SHIFT = 10;
/** VTCR_EL2.SH0 shift, bits [13:12]. */
export const VTCR_SH0_SHIFT = 12;
/** VTCR_EL2.TG0 shift, bits [15:14]: 00 = 4K, 01 = 64K, 10 = 16K. */
export const VTCR_TG0_SHIFT = 14;
/** VTCR_EL2.PS shift, bits [18:16]. */
export const VTCR_PS_SHIFT = 16;
/** VTCR_EL2.VS, bit 19: 16-bit VMIDs. */
export const VTCR_VS = 1 << 19;
/** VTCR_EL2.HA, bit 21: hardware access flag. */
export const VTCR_HA = 1 << 21;
/** VTCR_EL2.HD, bit 22: hardware dirty state (never set by KVM). */
export const VTCR_HD = 1 << 22;
/** VTCR_EL2 bit 31 is RES1. */
export const VTCR_RES1 = 2 ** 31;
/** VTCR_EL2.DS, bit 32 (FEAT_LPA2). */
export const VTCR_DS = 2 ** 32;
/** VTCR_EL2.SL2, bit 33. */
export const VTCR_SL2 = 2 ** 33;

/** PARange codes (ID_AA64MMFR0_EL1.PARange) to physical address bits. */
export const PARANGE_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];

/** TGRAN_SL0_BASE: 2 for 4K, 3 for 16K and 64K. Returns the base. */
export function tgranSl0Base(pageShift: number): number {
  return pageShift === 12 ? 2 : 3;
}

/** Inputs of kvm_get_vtcr(): the host's features and the VM's IPA size. */
export interface VtcrParams {
  /** Host PAGE_SIZE. */
  granule: GranuleSize;
  /** The VM's IPA size (phys_shift). */
  ipaBits: number;
  /** Host physical address size in bits (PARange); default 48. */
  paBits?: number;
  /** FEAT_LPA2 in use (VTCR.DS); default false. */
  lpa2?: boolean;
  /** CONFIG_ARM64_PA_BITS_52 with 64K pages; default false. */
  pa52With64k?: boolean;
  /** 16-bit VMIDs (VTCR.VS); default true. */
  vmid16?: boolean;
  /** Hardware AF management (VTCR.HA); default true. */
  hafdbs?: boolean;
}

/**
 * kvm_get_vtcr(mmfr0, mmfr1, phys_shift): the VTCR_EL2 value KVM programs for a VM.
 * Returns the 34-bit register value as a number.
 */
export function kvmGetVtcr(p: VtcrParams): number {
  const pageShift = pageShiftOf(p.granule);
  const lpa2 = p.lpa2 ?? false;
  const parangeMax = lpa2 || ((p.pa52With64k ?? false) && pageShift === 16) ? 6 : 5;
  const paBits = p.paBits ?? 48;
  const code = PARANGE_BITS.indexOf(paBits);
  if (code < 0) throw new RangeError(`paBits: expected one of ${PARANGE_BITS.join(', ')}, got ${paBits}`);
  const ps = Math.min(code, parangeMax);
  const tg0 = pageShift === 12 ? 0 : pageShift === 16 ? 1 : 2;
  const lvls = stage2Levels(pageShift, p.ipaBits);
  const sl0 = tgranSl0Base(pageShift) - (4 - lvls);
  let v =
    (3 << VTCR_SH0_SHIFT) |
    (1 << VTCR_ORGN0_SHIFT) |
    (1 << VTCR_IRGN0_SHIFT) |
    (tg0 << VTCR_TG0_SHIFT) |
    (ps << VTCR_PS_SHIFT) |
    (sl0 << VTCR_SL0_SHIFT) |
    ((64 - p.ipaBits) & VTCR_T0SZ_MASK);
  if (p.vmid16 ?? true) v |= VTCR_VS;
  if (p.hafdbs ?? true) v |= VTCR_HA;
  let out = (v >>> 0) + VTCR_RES1;
  if (lpa2) out += VTCR_DS;
  return out;
}

/** The fields of a decoded VTCR_EL2 value. */
export interface VtcrFields {
  t0sz: number;
  ipaBits: number;
  sl0: number;
  irgn0: number;
  orgn0: number;
  sh0: number;
  granule: GranuleSize | null;
  ps: number;
  paBits: number | null;
  vs: boolean;
  ha: boolean;
  hd: boolean;
  ds: boolean;
  sl2: boolean;
  /** The start level KVM recovers from SL0 (TGRAN_SL0_BASE − SL0); null for a reserved TG0. */
  startLevel: number | null;
}

/** Decodes a VTCR_EL2 value into its fields. Returns the fields. */
export function decodeVtcr(vtcr: number): VtcrFields {
  const lo = vtcr >>> 0;
  const hi = Math.floor(vtcr / 2 ** 32);
  const tg0 = (lo >>> VTCR_TG0_SHIFT) & 3;
  const granule: GranuleSize | null = tg0 === 0 ? 4096 : tg0 === 1 ? 65536 : tg0 === 2 ? 16384 : null;
  const sl0 = (lo >>> VTCR_SL0_SHIFT) & 3;
  const ps = (lo >>> VTCR_PS_SHIFT) & 7;
  const t0sz = lo & VTCR_T0SZ_MASK;
  return {
    t0sz,
    ipaBits: 64 - t0sz,
    sl0,
    irgn0: (lo >>> VTCR_IRGN0_SHIFT) & 3,
    orgn0: (lo >>> VTCR_ORGN0_SHIFT) & 3,
    sh0: (lo >>> VTCR_SH0_SHIFT) & 3,
    granule,
    ps,
    paBits: PARANGE_BITS[ps] ?? null,
    vs: (lo & VTCR_VS) !== 0,
    ha: (lo & VTCR_HA) !== 0,
    hd: (lo & VTCR_HD) !== 0,
    ds: (hi & 1) !== 0,
    sl2: (hi & 2) !== 0,
    startLevel: granule === null ? null : tgranSl0Base(pageShiftOf(granule)) - sl0,
  };
}
