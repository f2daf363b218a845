/**
 * Host page-size geometry (PAGE_SHIFT and the sizes derived from it) and
 * 64-bit-safe address arithmetic on JS numbers.
 *
 * Addresses and pfns are plain numbers below 2^53; shifting uses
 * multiplication and Math.floor, never the 32-bit `>>`/`<<` operators.
 */

/**
 * The sizes the host's page tables offer for one granule, as log2 shifts.
 * `contPteShift`/`contPmdShift` are the contiguous-hint sizes
 * (ARM64_CONT_PTE_SHIFT/ARM64_CONT_PMD_SHIFT added to PAGE/PMD shift).
 */
export interface HostGranule {
  /** PAGE_SHIFT: 12, 14 or 16. */
  readonly pageShift: number;
  /** PAGE_SIZE. */
  readonly pageSize: number;
  /** Entries per table page: PTRS_PER_PTE = 2^(PAGE_SHIFT - 3). */
  readonly tableBits: number;
  /** CONT_PTE_SHIFT. */
  readonly contPteShift: number;
  /** PMD_SHIFT. */
  readonly pmdShift: number;
  /** CONT_PMD_SHIFT. */
  readonly contPmdShift: number;
  /** PUD_SHIFT. */
  readonly pudShift: number;
  /** The hstate shifts hugetlbfs offers (arm64 arch_hugetlb_valid_size), ascending. */
  readonly hugetlbShifts: readonly number[];
}

function makeGranule(pageShift: number, contPteBits: number, contPmdBits: number): HostGranule {
  const tableBits = pageShift - 3;
  const pmdShift = pageShift + tableBits;
  const pudShift = pmdShift + tableBits;
  const contPteShift = pageShift + contPteBits;
  const contPmdShift = pmdShift + contPmdBits;
  // arm64 offers a PUD hstate only where pud_sect_supported(), i.e. 4K pages.
  const hugetlbShifts =
    pageShift === 12
      ? [contPteShift, pmdShift, contPmdShift, pudShift]
      : [contPteShift, pmdShift, contPmdShift];
  return {
    pageShift,
    pageSize: 2 ** pageShift,
    tableBits,
    contPteShift,
    pmdShift,
    contPmdShift,
    pudShift,
    hugetlbShifts,
  };
}

/** 4K granule: CONT_PTE 64K, PMD 2M, CONT_PMD 32M, PUD 1G. */
export const GRANULE_4K: HostGranule = makeGranule(12, 4, 4);
/** 16K granule: CONT_PTE 2M, PMD 32M, CONT_PMD 1G, PUD 64G (no PUD hstate). */
export const GRANULE_16K: HostGranule = makeGranule(14, 7, 5);
/** 64K granule: CONT_PTE 2M, PMD 512M, CONT_PMD 16G, PUD 4T (no PUD hstate). */
export const GRANULE_64K: HostGranule = makeGranule(16, 5, 5);

/** Returns the granule for a PAGE_SHIFT of 12, 14 or 16 (undefined otherwise). */
export function granuleForShift(pageShift: number): HostGranule | undefined {
  return pageShift === 12
    ? GRANULE_4K
    : pageShift === 14
      ? GRANULE_16K
      : pageShift === 16
        ? GRANULE_64K
        : undefined;
}

/** 2^s and 2^-s for s in 0..63, so shifts are a table load and a multiply, not Math.pow. */
/**
 * 2^i for 0 <= i < 64, as a table: hot paths index it directly (`POW2[shift]`), because a call
 * returning a power of two past 2^31 would box it wherever V8 does not inline the call.
 */
export const POW2 = new Float64Array(64);
const INV_POW2 = new Float64Array(64);
for (let i = 0; i < 64; i++) {
  POW2[i] = 2 ** i;
  INV_POW2[i] = 2 ** -i;
}

/** Returns 2^n for 0 <= n < 64 (a table load, not Math.pow). */
export function pow2(n: number): number {
  return POW2[n]!;
}

/** Returns floor(x / 2^s) for 0 <= x < 2^53: a 64-bit-safe `x >> s` (exact: 2^-s is a power of two). */
export function shr(x: number, s: number): number {
  return Math.floor(x * INV_POW2[s]!);
}

/** Returns x * 2^s: a 64-bit-safe `x << s` (exact below 2^53). */
export function shl(x: number, s: number): number {
  return x * POW2[s]!;
}

/** Returns x rounded down to a multiple of `size` (a power of two). Avoids `%` (fmod) on doubles. */
export function alignDown(x: number, size: number): number {
  return Math.floor(x / size) * size;
}

/** Returns x mod `size` for a power-of-two size (no fmod). */
export function modPow2(x: number, size: number): number {
  return x - Math.floor(x / size) * size;
}

/** Returns true when x is a multiple of `size` (a power of two). */
export function isAligned(x: number, size: number): boolean {
  return Math.floor(x / size) * size === x;
}
