/**
 * Stage-2 descriptors (arch/arm64/include/asm/kvm_pgtable.h, arch/arm64/kvm/hyp/pgtable.c;
 * Arm ARM, VMSAv8-64 stage 2 descriptors), held as two 32-bit halves.
 *
 * A descriptor is 64 bits; the hot path never builds a BigInt. `lo` holds bits [31:0] and
 * `hi` bits [63:32]. Inside the page-table code the halves are signed 32-bit integers, as the
 * table pages (Int32Array, pool.ts) hold them and as the hot-path builders (physToPte,
 * buildValidLeafPte) produce them, so that a half with bit 31 set stays a small integer for
 * V8. Halves handed out of it are unsigned (`>>> 0`: stage2SetProtAttr, initValidLeafPte,
 * getLeaf's LeafResult, the hardware walk's result). The predicates, masks and formatters here
 * (hex64, toBigInt) take either form, since a bitwise operation reads both alike; compare a half
 * with `===` only after bringing both sides to the same form.
 *
 * Layout of a valid leaf (block or page), VMSAv8-64 stage 2:
 *
 *   hi: 63  59 58  55 54 53 52 51 50 49  48 47 ............. 32
 *       [ ign ][ SW  ][XN ][C][DBM][ 0 ][ OA[47:32] (or RES0)  ]
 *   lo: 31 ......... PAGE_SHIFT  11   10  9:8  7    6    5:2    1    0
 *       [ OA[31:PAGE_SHIFT]   ][FnXS][AF][SH][S2AP_W][S2AP_R][MemAttr][type][valid]
 *
 * With 64K pages (FEAT_LPA), OA[51:48] sits in lo bits [15:12]. With LPA2 (4K/16K, DS=1),
 * OA[49:48] is in hi bits [17:16] and OA[51:50] in lo bits [9:8] (in place of SH).
 * A table descriptor is the child's address in the OA field with type bits 0b11 and nothing
 * else. Invalid descriptors (bit 0 clear) carry KVM's software encodings: 0 (empty), an
 * owner annotation in bits [9:2], or the break-before-make lock, bit 10.
 */

import {
  MT_S2_DEVICE_nGnRE,
  MT_S2_FWB_DEVICE_nGnRE,
  MT_S2_FWB_NORMAL,
  MT_S2_FWB_NORMAL_NC,
  MT_S2_NORMAL,
  MT_S2_NORMAL_NC,
} from './memattr.js';
import { EINVAL } from './errno.js';
import { DOUBLE_FIELD } from './op.js';

/** 2^32, to join halves: `hi * TWO32 + lo`. */
export const TWO32 = 4294967296;
/** 2^−32: `Math.floor(a * INV_TWO32)` is the high half of an address. */
export const INV_TWO32 = 1 / 4294967296;

// ---- lo half (bits 31:0) ----------------------------------------------------------------

/** KVM_PTE_VALID, bit 0: `lo & KVM_PTE_VALID`. */
export const KVM_PTE_VALID = 1 << 0;
/** KVM_PTE_TYPE, bit 1: 1 = table (levels < 3) or page (level 3); 0 = block. */
export const KVM_PTE_TYPE = 1 << 1;
/** Type bits of a table or page: `lo & 3`. */
export const KVM_PTE_TYPE_TABLE = 3;
/** Type bits of a block. */
export const KVM_PTE_TYPE_BLOCK = 1;
/** KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR, bits [5:2]: `(lo >>> 2) & 0xf`. */
export const KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR = 0xf << 2;
/** MemAttr shift within lo. */
export const S2_MEMATTR_SHIFT = 2;
/** KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R, bit 6. */
export const KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R = 1 << 6;
/** KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W, bit 7. */
export const KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W = 1 << 7;
/** KVM_PTE_LEAF_ATTR_LO_S2_SH, bits [9:8]. */
export const KVM_PTE_LEAF_ATTR_LO_S2_SH = 3 << 8;
/** KVM_PTE_LEAF_ATTR_LO_S2_SH_IS: Inner shareable, 0b11 << 8. */
export const KVM_PTE_LEAF_ATTR_LO_S2_SH_IS = 3 << 8;
/** KVM_PTE_LEAF_ATTR_LO_S2_AF, bit 10. */
export const KVM_PTE_LEAF_ATTR_LO_S2_AF = 1 << 10;
/** FnXS, bit 11 (FEAT_XS). KVM never sets it. */
export const KVM_PTE_LEAF_ATTR_LO_S2_FNXS = 1 << 11;
/** KVM_PTE_LEAF_ATTR_LO = GENMASK(11, 2). */
export const KVM_PTE_LEAF_ATTR_LO = 0xffc;
/** KVM_INVALID_PTE_OWNER_MASK = GENMASK(9, 2): `(lo >>> 2) & 0xff` on an invalid entry. */
export const KVM_INVALID_PTE_OWNER_MASK = 0xff << 2;
/** KVM_INVALID_PTE_LOCKED, bit 10 of an invalid entry: break-before-make in progress. */
export const KVM_INVALID_PTE_LOCKED = 1 << 10;
/** KVM_MAX_OWNER_ID in mainline. */
export const KVM_MAX_OWNER_ID = 1;
/** KVM_PTE_ADDR_51_48 (64K pages): PA[51:48] in lo bits [15:12]. */
export const KVM_PTE_ADDR_51_48 = 0xf << 12;
/** KVM_PTE_ADDR_51_50_LPA2: PA[51:50] in lo bits [9:8]. */
export const KVM_PTE_ADDR_51_50_LPA2 = 3 << 8;

// ---- hi half (bits 63:32) ---------------------------------------------------------------

/** OA[47:32] in hi bits [15:0]. */
export const KVM_PTE_ADDR_HI_MASK = 0xffff;
/** OA[49:48] in hi bits [17:16] with LPA2. */
export const KVM_PTE_ADDR_HI_MASK_LPA2 = 0x3ffff;
/** DBM, bit 51 (hi bit 19). Never set by KVM. */
export const KVM_PTE_LEAF_ATTR_HI_DBM = 1 << 19;
/** Contiguous, bit 52 (hi bit 20). Never set by stage-2 code. */
export const KVM_PTE_LEAF_ATTR_HI_CONT = 1 << 20;
/** KVM_PTE_LEAF_ATTR_HI_S2_XN (v6.17, no FEAT_XNX): bit 54 (hi bit 22). */
export const KVM_PTE_LEAF_ATTR_HI_S2_XN = 1 << 22;
/** XN[0], bit 53 (hi bit 21): RES0 without FEAT_XNX. */
export const KVM_PTE_LEAF_ATTR_HI_S2_XN0 = 1 << 21;
/** KVM_PTE_LEAF_ATTR_HI_SW = GENMASK(58, 55) (hi bits [26:23]). */
export const KVM_PTE_LEAF_ATTR_HI_SW = 0xf << 23;
/** SW field shift within hi. */
export const KVM_PTE_LEAF_ATTR_HI_SW_SHIFT = 23;
/** KVM_PTE_LEAF_ATTR_HI = GENMASK(63, 50) (hi bits [31:18]). */
export const KVM_PTE_LEAF_ATTR_HI = 0xfffc0000 | 0;

// ---- enum kvm_pgtable_prot (v6.17 numbering) --------------------------------------------

/** KVM_PGTABLE_PROT_X = BIT(0). */
export const KVM_PGTABLE_PROT_X = 1 << 0;
/** KVM_PGTABLE_PROT_W = BIT(1). */
export const KVM_PGTABLE_PROT_W = 1 << 1;
/** KVM_PGTABLE_PROT_R = BIT(2). */
export const KVM_PGTABLE_PROT_R = 1 << 2;
/** KVM_PGTABLE_PROT_DEVICE = BIT(3). */
export const KVM_PGTABLE_PROT_DEVICE = 1 << 3;
/** KVM_PGTABLE_PROT_NORMAL_NC = BIT(4). */
export const KVM_PGTABLE_PROT_NORMAL_NC = 1 << 4;
/**
 * KVM_PGTABLE_PROT_SW0..SW3 are BIT(55)..BIT(58) in the kernel. So that a prot fits in a
 * 32-bit integer here, they are carried as bits 5..8 and moved to descriptor bits 55..58
 * (hi bits 23..26) when a descriptor is built.
 */
export const KVM_PGTABLE_PROT_SW0 = 1 << 5;
/** See KVM_PGTABLE_PROT_SW0. */
export const KVM_PGTABLE_PROT_SW1 = 1 << 6;
/** See KVM_PGTABLE_PROT_SW0. */
export const KVM_PGTABLE_PROT_SW2 = 1 << 7;
/** See KVM_PGTABLE_PROT_SW0. */
export const KVM_PGTABLE_PROT_SW3 = 1 << 8;
/** All four software bits of a prot. */
export const KVM_PGTABLE_PROT_SW_MASK = 0xf << 5;
/** Shift from a prot's software bits to the descriptor's hi-half position. */
export const PROT_SW_TO_HI_SHIFT = KVM_PTE_LEAF_ATTR_HI_SW_SHIFT - 5;
/** KVM_PGTABLE_PROT_RW. */
export const KVM_PGTABLE_PROT_RW = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
/** KVM_PGTABLE_PROT_RWX. */
export const KVM_PGTABLE_PROT_RWX = KVM_PGTABLE_PROT_RW | KVM_PGTABLE_PROT_X;

// ---- predicates on halves ---------------------------------------------------------------

/** kvm_pte_valid(). Returns true if bit 0 is set. */
export function pteValid(lo: number): boolean {
  return (lo & KVM_PTE_VALID) !== 0;
}

/** kvm_pte_table(pte, level): valid with type bit set, below level 3. Returns the test. */
export function pteIsTable(lo: number, level: number): boolean {
  return level < 3 && (lo & KVM_PTE_TYPE_TABLE) === KVM_PTE_TYPE_TABLE;
}

/** stage2_pte_is_counted(): any non-zero entry holds a reference on its table page. */
export function pteIsCounted(lo: number, hi: number): boolean {
  return lo !== 0 || hi !== 0;
}

/** stage2_pte_is_locked(): invalid with KVM_INVALID_PTE_LOCKED. Returns the test. */
export function pteIsLocked(lo: number): boolean {
  return (lo & KVM_PTE_VALID) === 0 && (lo & KVM_INVALID_PTE_LOCKED) !== 0;
}

/** The leaf's MemAttr[3:0]. Returns the nibble. */
export function pteMemAttr(lo: number): number {
  return (lo >>> S2_MEMATTR_SHIFT) & 0xf;
}

/** stage2_pte_executable() in v6.17 (legacy XN): valid and bit 54 clear. */
export function pteExecutable(lo: number, hi: number): boolean {
  return (lo & KVM_PTE_VALID) !== 0 && (hi & KVM_PTE_LEAF_ATTR_HI_S2_XN) === 0;
}

/** The MemAttr KVM writes for Normal write-back in this FWB state (KVM_S2_MEMATTR(NORMAL)). */
export function memAttrNormal(fwb: boolean): number {
  return fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
}

/** stage2_pte_cacheable(): valid and MemAttr equals KVM's Normal for this FWB state. */
export function pteCacheable(lo: number, fwb: boolean): boolean {
  return (lo & KVM_PTE_VALID) !== 0 && pteMemAttr(lo) === memAttrNormal(fwb);
}

// ---- output address ---------------------------------------------------------------------

/**
 * The layout of the output-address field for one table: which bits hold the PA.
 * `lpa2` is FEAT_LPA2 (VTCR.DS); otherwise 64K pages use the PA[51:48] field.
 */
export class AddrLayout {
  readonly pageShift: number;
  readonly lpa2: boolean;
  /** lo bits holding OA[31:PAGE_SHIFT]. */
  readonly loMask: number;
  /** hi bits holding OA above bit 31. */
  readonly hiMask: number;
  /** true for 64K pages without LPA2: PA[51:48] goes to lo bits [15:12]. */
  readonly pa5148: boolean;
  private readonly scratch = { pa: DOUBLE_FIELD };
  private readonly scratchOut: LeafBuild = { lo: 0, hi: 0, pa: DOUBLE_FIELD };

  constructor(pageShift: number, lpa2 = false) {
    this.pageShift = pageShift;
    this.lpa2 = lpa2;
    this.loMask = ~((1 << pageShift) - 1) >>> 0;
    this.hiMask = lpa2 ? KVM_PTE_ADDR_HI_MASK_LPA2 : KVM_PTE_ADDR_HI_MASK;
    this.pa5148 = pageShift === 16 && !lpa2;
  }

  /**
   * kvm_phys_to_pte(), low half: the lo bits of the OA field, as a signed 32-bit integer
   * (callers OR in the attributes and apply `>>> 0`). Signed, so that the value stays a small
   * integer: an unsigned one with bit 31 set would be boxed on return when V8 does not inline.
   */
  physLo(pa: number): number {
    const o = this.scratchOut;
    o.pa = pa;
    this.physToPte(o);
    return o.lo;
  }

  /** kvm_phys_to_pte(), high half: PA bits above 31 that the layout keeps (others dropped). */
  physHi(pa: number): number {
    return Math.floor(pa * INV_TWO32) & this.hiMask;
  }

  /**
   * kvm_phys_to_pte() of `b.pa` into `b.lo` (signed, see physLo) and `b.hi`: the hot path's
   * form, with the address in a field rather than an argument (see toPhysInto).
   */
  physToPte(b: LeafBuild): void {
    const pa = b.pa;
    const up = Math.floor(pa * INV_TWO32);
    // `>>> 0` is ToUint32: pa mod 2^32, exact for integers below 2^53.
    let lo = (pa >>> 0) & this.loMask;
    if (this.pa5148) lo |= ((up >>> 16) & 0xf) << 12;
    else if (this.lpa2) lo |= ((up >>> 18) & 3) << 8;
    b.lo = lo | 0;
    b.hi = up & this.hiMask;
  }

  /** kvm_pte_to_phys(): the output address of a descriptor. Returns the PA. */
  toPhys(lo: number, hi: number): number {
    this.toPhysInto(lo | 0, hi, this.scratch);
    return this.scratch.pa;
  }

  /**
   * toPhys() into `out.pa`, for the hot paths: a double returned from a call V8 does not
   * inline is boxed into a new heap number, one written to a field is not.
   */
  toPhysInto(lo: number, hi: number, out: { pa: number }): void {
    out.pa = ((hi & this.hiMask) + this.oaHiInLo(lo)) * TWO32 + ((lo & this.loMask) >>> 0);
  }

  /**
   * The OA bits above 31 that the low half carries, in units of 2^32 (0 for most layouts).
   * The half may be signed or unsigned.
   */
  oaHiInLo(lo: number): number {
    if (this.pa5148) return ((lo >>> 12) & 0xf) * 0x10000;
    if (this.lpa2) return ((lo >>> 8) & 3) * 0x40000;
    return 0;
  }
}

// ---- prot → attributes -------------------------------------------------------------------

/**
 * Output of stage2SetProtAttr: the attribute bits of a leaf, as halves. Reused by callers.
 */
export interface AttrOut {
  lo: number;
  hi: number;
}

/**
 * stage2_set_prot_attr() (v6.17): the leaf attribute bits for `prot`, with or without FWB.
 * Fills `out` and returns 0, or −EINVAL for DEVICE|NORMAL_NC, DEVICE|X or NORMAL_NC|X.
 */
export function stage2SetProtAttr(prot: number, fwb: boolean, lpa2: boolean, out: AttrOut): number {
  const device = (prot & KVM_PGTABLE_PROT_DEVICE) !== 0;
  const nc = (prot & KVM_PGTABLE_PROT_NORMAL_NC) !== 0;
  const x = (prot & KVM_PGTABLE_PROT_X) !== 0;
  let memattr: number;
  if (device && nc) return EINVAL;
  if (device) {
    if (x) return EINVAL;
    memattr = fwb ? MT_S2_FWB_DEVICE_nGnRE : MT_S2_DEVICE_nGnRE;
  } else if (nc) {
    if (x) return EINVAL;
    memattr = fwb ? MT_S2_FWB_NORMAL_NC : MT_S2_NORMAL_NC;
  } else {
    memattr = fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
  }
  let lo = memattr << S2_MEMATTR_SHIFT;
  let hi = x ? 0 : KVM_PTE_LEAF_ATTR_HI_S2_XN;
  if (prot & KVM_PGTABLE_PROT_R) lo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R;
  if (prot & KVM_PGTABLE_PROT_W) lo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
  if (!lpa2) lo |= KVM_PTE_LEAF_ATTR_LO_S2_SH_IS;
  lo |= KVM_PTE_LEAF_ATTR_LO_S2_AF;
  hi |= (prot & KVM_PGTABLE_PROT_SW_MASK) << PROT_SW_TO_HI_SHIFT;
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
  return 0;
}

/**
 * kvm_pgtable_stage2_pte_prot() (v6.17): the prot a descriptor grants. R/W/X and the
 * software bits only; the memory type is not recovered. Returns the prot.
 */
export function stage2PteProt(lo: number, hi: number): number {
  let prot = ((hi & KVM_PTE_LEAF_ATTR_HI_SW) >>> PROT_SW_TO_HI_SHIFT) & KVM_PGTABLE_PROT_SW_MASK;
  if ((lo & KVM_PTE_VALID) === 0) return prot;
  if (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R) prot |= KVM_PGTABLE_PROT_R;
  if (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W) prot |= KVM_PGTABLE_PROT_W;
  if ((hi & KVM_PTE_LEAF_ATTR_HI_S2_XN) === 0) prot |= KVM_PGTABLE_PROT_X;
  return prot;
}

/** Names of the prot flags in the order the replay format writes them. */
const PROT_NAMES: readonly [number, string][] = [
  [KVM_PGTABLE_PROT_R, 'R'],
  [KVM_PGTABLE_PROT_W, 'W'],
  [KVM_PGTABLE_PROT_X, 'X'],
  [KVM_PGTABLE_PROT_DEVICE, 'DEVICE'],
  [KVM_PGTABLE_PROT_NORMAL_NC, 'NORMAL_NC'],
  [KVM_PGTABLE_PROT_SW0, 'SW0'],
  [KVM_PGTABLE_PROT_SW1, 'SW1'],
  [KVM_PGTABLE_PROT_SW2, 'SW2'],
  [KVM_PGTABLE_PROT_SW3, 'SW3'],
];

/**
 * Parses a `|`-joined prot (`R|W|X`, `DEVICE`, `NORMAL_NC`, `SW0`..`SW3`, or `NONE`).
 * Returns the prot, or a string naming the bad flag.
 */
export function parseProt(text: string): number | string {
  if (text === 'NONE') return 0;
  let prot = 0;
  for (const part of text.split('|')) {
    const hit = PROT_NAMES.find(([, n]) => n === part);
    if (!hit) return `unknown prot flag '${part}' (expected R, W, X, DEVICE, NORMAL_NC, SW0..SW3 or NONE)`;
    prot |= hit[0];
  }
  return prot;
}

/** Formats a prot as `R|W|X` (or `NONE`). Returns the text. */
export function formatProt(prot: number): string {
  const parts = PROT_NAMES.filter(([b]) => (prot & b) !== 0).map(([, n]) => n);
  return parts.length ? parts.join('|') : 'NONE';
}

/** Formats halves as `0x` and 16 lower-case hex digits. Returns the text. */
export function hex64(lo: number, hi: number): string {
  return '0x' + (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

/** Formats an address below 2^53 as `0x` and 16 lower-case hex digits. Returns the text. */
export function hexAddr(a: number): string {
  return hex64(a >>> 0, Math.floor(a * INV_TWO32));
}

/** Joins halves into a BigInt (API and debugger boundary only). Returns the value. */
export function toBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** A descriptor as two halves, filled in by builders (a reused object, never per call). */
export interface LeafOut {
  lo: number;
  hi: number;
}

/**
 * kvm_init_valid_leaf_pte(pa, attr, level): a block (levels < 3) or page (level 3) leaf.
 * Fills `out` with the halves.
 */
export function initValidLeafPte(
  layout: AddrLayout,
  pa: number,
  attrLo: number,
  attrHi: number,
  level: number,
  out: LeafOut,
): void {
  const b = LEAF_SCRATCH;
  b.pa = pa;
  buildValidLeafPte(layout, attrLo, attrHi, level, b);
  out.lo = b.lo >>> 0;
  out.hi = b.hi >>> 0;
}

/** A descriptor being built: its halves, and the output address it is built from. */
export interface LeafBuild extends LeafOut {
  pa: number;
}

const LEAF_SCRATCH: LeafBuild = { lo: 0, hi: 0, pa: DOUBLE_FIELD };

/**
 * kvm_init_valid_leaf_pte() for the PA in `b.pa`, into `b.lo`/`b.hi` (signed, as the table
 * pages hold them: see pool.ts). The hot path's form:
 * the address travels in a field, so a large caller that V8 does not inline into does not
 * box it as a heap number.
 */
export function buildValidLeafPte(
  layout: AddrLayout,
  attrLo: number,
  attrHi: number,
  level: number,
  b: LeafBuild,
): void {
  const type = level === 3 ? KVM_PTE_TYPE_TABLE : KVM_PTE_TYPE_BLOCK;
  layout.physToPte(b);
  b.lo = b.lo | (attrLo & KVM_PTE_LEAF_ATTR_LO) | type;
  b.hi = b.hi | (attrHi & KVM_PTE_LEAF_ATTR_HI);
}
