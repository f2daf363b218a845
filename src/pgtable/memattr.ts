/**
 * Stage-2 memory attributes and their combination with stage 1 (Arm ARM: stage 2
 * memory type attributes, and combining the stage 1 and stage 2 attributes; the values KVM
 * writes are in arch/arm64/include/asm/memory.h).
 *
 * Pure integer code: no imports, no allocation on the cheap paths (`s2MemAttrCode`,
 * `combineS1S2Attrs`), so the hardware walk model can call it per access.
 *
 * Layout 1, stage-2 MemAttr, descriptor bits [5:2], HCR_EL2.FWB = 0:
 *
 *   [3:2] outer   00 = Device; else 01 NC, 10 WT, 11 WB
 *   [1:0] inner   if outer = 00: Device type 00 nGnRnE, 01 nGnRE, 10 nGRE, 11 GRE
 *                 else 01 NC, 10 WT, 11 WB; 00 is reserved, except that FEAT_MTE_PERM
 *                 gives 0b0100 the meaning "NoTagAccess"
 *
 * Layout 2, stage-2 MemAttr, HCR_EL2.FWB = 1 (FEAT_S2FWB):
 *
 *   [3]   0; 0b1110 is NoTagAccess (FEAT_MTE_PERM); any other value with bit 3 set is reserved
 *   [2:0] 0b0xx Device type xx, 0b100 reserved, 0b101 Normal NC, 0b110 force Normal WB,
 *         0b111 use the stage-1 attributes
 *
 * Layout 3, stage-1 MAIR_ELx attribute byte (Attr<n>):
 *
 *   [7:4] outer nibble, [3:0] inner nibble; outer = 0000 means Device:
 *   0b0000dd00   Device, dd as in layout 1 (0b0000dd01 = same with XS = 0, FEAT_XS)
 *   nibble       0b00RW (RW != 00) WT transient, 0b0100 NC, 0b01RW (RW != 00) WB transient,
 *                0b10RW WT non-transient, 0b11RW WB non-transient; R = read-, W = write-allocate
 *   0xF0         Tagged Normal WB (FEAT_MTE2)
 *   0x40, 0xA0   NC, WT (read-allocate) with XS = 0 (FEAT_XS)
 *   The FEAT_XS encodings are from memory (UNCONFIRMED); everything else with a 0000 nibble is reserved.
 *
 * Layout 4, packed stage-2 decode returned by `s2MemAttrCode` (7 bits):
 *
 *   [6:4] kind (S2_KIND_*)
 *   [3:2] outer cacheability (CACHE_*), 0 when not applicable
 *   [1:0] inner cacheability (CACHE_*), or the Device type (DEVICE_*) when kind = S2_KIND_DEVICE
 *   So a Device code equals its type, and a FWB = 0 Normal code is S2_KIND_NORMAL << 4 | MemAttr.
 *
 * Layout 5, packed combine result returned by `combineS1S2Attrs` (10 bits):
 *
 *   [9:8] shareability (SH_*)
 *   [7:0] final attributes as a MAIR-form byte (layout 3)
 */

// ---------------------------------------------------------------------------------------------
// KVM's MemAttr values (MT_S2_* and MT_S2_FWB_*, arch/arm64/include/asm/memory.h)
// ---------------------------------------------------------------------------------------------

/** MT_S2_NORMAL: Outer WB + Inner WB, no FWB. */
export const MT_S2_NORMAL = 0xf;
/** MT_S2_NORMAL_NC: Outer NC + Inner NC, no FWB. */
export const MT_S2_NORMAL_NC = 0x5;
/** MT_S2_DEVICE_nGnRE, no FWB. */
export const MT_S2_DEVICE_nGnRE = 0x1;
/** MT_S2_NORMAL_NOTAGACCESS (FEAT_MTE_PERM), no FWB. Not used by stage2_set_prot_attr. */
export const MT_S2_NORMAL_NOTAGACCESS = 0x4;
/** MT_S2_FWB_NORMAL: force write-back. */
export const MT_S2_FWB_NORMAL = 0x6;
/** MT_S2_FWB_NORMAL_NC. */
export const MT_S2_FWB_NORMAL_NC = 0x5;
/** MT_S2_FWB_DEVICE_nGnRE. */
export const MT_S2_FWB_DEVICE_nGnRE = 0x1;
/** MT_S2_FWB_NORMAL_NOTAGACCESS (FEAT_MTE_PERM). */
export const MT_S2_FWB_NORMAL_NOTAGACCESS = 0xe;

// ---------------------------------------------------------------------------------------------
// Field constants
// ---------------------------------------------------------------------------------------------

/** Mask of the 4-bit MemAttr field once shifted down: `memattr = (desc >> 2) & S2_MEMATTR_MASK`. */
export const S2_MEMATTR_MASK = 0xf;
/** FWB = 1 MemAttr 0b111: the stage-1 attributes are used unchanged (never written by KVM). */
export const S2_FWB_USE_S1 = 0x7;
/** FWB = 1 MemAttr bit 2: clear means Device (`(memattr & S2_FWB_NORMAL_BIT) === 0`). */
export const S2_FWB_NORMAL_BIT = 0x4;

/** Device type nGnRnE, the most restrictive (architectural 2-bit code; smaller is stronger). */
export const DEVICE_nGnRnE = 0;
/** Device type nGnRE: what KVM maps device memory as. */
export const DEVICE_nGnRE = 1;
/** Device type nGRE. */
export const DEVICE_nGRE = 2;
/** Device type GRE, the least restrictive. */
export const DEVICE_GRE = 3;

/** Cacheability Non-cacheable (the FWB = 0 stage-2 2-bit code). */
export const CACHE_NC = 1;
/** Cacheability Write-Through. */
export const CACHE_WT = 2;
/** Cacheability Write-Back. */
export const CACHE_WB = 3;

/** Shareability Non-shareable (architectural SH[1:0]). */
export const SH_NSH = 0;
/** Shareability Outer Shareable. SH = 1 is reserved and is read as Non-shareable here. */
export const SH_OSH = 2;
/** Shareability Inner Shareable (what KVM writes in stage-2 leaves, `KVM_PTE_LEAF_ATTR_LO_S2_SH_IS`). */
export const SH_ISH = 3;

/** MAIR byte Device-nGnRnE. Device bytes are `type << 2`. */
export const MAIR_DEVICE_nGnRnE = 0x00;
/** MAIR byte Device-nGnRE. */
export const MAIR_DEVICE_nGnRE = 0x04;
/** MAIR byte Device-nGRE. */
export const MAIR_DEVICE_nGRE = 0x08;
/** MAIR byte Device-GRE. */
export const MAIR_DEVICE_GRE = 0x0c;
/** MAIR byte Normal Inner/Outer Non-cacheable. */
export const MAIR_NORMAL_NC = 0x44;
/** MAIR byte Normal Inner/Outer Write-Through, non-transient, read/write-allocate. */
export const MAIR_NORMAL_WT = 0xbb;
/** MAIR byte Normal Inner/Outer Write-Back, non-transient, read/write-allocate. */
export const MAIR_NORMAL_WB = 0xff;
/** MAIR byte Tagged Normal (FEAT_MTE2): Write-Back with allocation tags. */
export const MAIR_NORMAL_TAGGED = 0xf0;

/** MAIR nibble Non-cacheable. */
export const MAIR_NIBBLE_NC = 0x4;
/** MAIR nibble write-allocate bit: `(nibble & MAIR_NIBBLE_WA) !== 0`. */
export const MAIR_NIBBLE_WA = 0x1;
/** MAIR nibble read-allocate bit: `(nibble & MAIR_NIBBLE_RA) !== 0`. */
export const MAIR_NIBBLE_RA = 0x2;
/** MAIR nibble allocation-hint bits (RA | WA). */
export const MAIR_NIBBLE_ALLOC_MASK = 0x3;
/** MAIR nibble policy bits [3:2]: 00 WT transient, 01 WB transient (or NC), 10 WT, 11 WB. */
export const MAIR_NIBBLE_POLICY_MASK = 0xc;
/** MAIR nibble policy 0b01xx: Write-Back (when RW != 00), used to force WB as `nibble | MAIR_NIBBLE_WB_BIT`. */
export const MAIR_NIBBLE_WB_BIT = 0x4;
/** MAIR nibble policy 0b10xx: Write-Through non-transient. */
export const MAIR_NIBBLE_WT = 0x8;
/** MAIR nibble Write-Through non-transient with read/write-allocate: stage-2 WT converted to MAIR form. */
export const MAIR_NIBBLE_WT_RWA = 0xb;
/** MAIR nibble Write-Back non-transient with read/write-allocate: stage-2 WB converted to MAIR form. */
export const MAIR_NIBBLE_WB_RWA = 0xf;

/** Packed stage-2 code: shift of the kind field (layout 4). */
export const S2_CODE_KIND_SHIFT = 4;
/** Packed stage-2 code: shift of the outer-cacheability field. */
export const S2_CODE_OUTER_SHIFT = 2;
/** Packed stage-2 code: mask of a 2-bit field once shifted down (inner, outer or device type). */
export const S2_CODE_FIELD_MASK = 0x3;
/** Kind: Device; the code is the Device type. */
export const S2_KIND_DEVICE = 0;
/** Kind: Normal with explicit inner/outer cacheability (FWB = 0, or FWB = 1 NC). */
export const S2_KIND_NORMAL = 1;
/** Kind: FWB = 1 force Write-Back (KVM's NORMAL with FWB). */
export const S2_KIND_FORCE_WB = 2;
/** Kind: FWB = 1 use the stage-1 attributes. */
export const S2_KIND_USE_S1 = 3;
/** Kind: NoTagAccess (FEAT_MTE_PERM): Normal WB as for KVM's NORMAL, with tag accesses denied. */
export const S2_KIND_NOTAGACCESS = 4;
/** Kind: reserved encoding. */
export const S2_KIND_RESERVED = 5;

/** Packed combine result: shift of the shareability field (layout 5). */
export const COMBINED_SH_SHIFT = 8;
/** Packed combine result: mask of the MAIR-form attribute byte. */
export const COMBINED_ATTR_MASK = 0xff;

// ---------------------------------------------------------------------------------------------
// Stage-2 decoding
// ---------------------------------------------------------------------------------------------

function computeS2Code(memattr: number, fwb: boolean): number {
  if (!fwb) {
    const outer = (memattr >> 2) & 3;
    const inner = memattr & 3;
    if (outer === 0) return (S2_KIND_DEVICE << S2_CODE_KIND_SHIFT) | inner;
    if (inner !== 0) return (S2_KIND_NORMAL << S2_CODE_KIND_SHIFT) | memattr;
    if (memattr === MT_S2_NORMAL_NOTAGACCESS) return (S2_KIND_NOTAGACCESS << S2_CODE_KIND_SHIFT) | 0xf;
    return S2_KIND_RESERVED << S2_CODE_KIND_SHIFT;
  }
  if (memattr === MT_S2_FWB_NORMAL_NOTAGACCESS) return (S2_KIND_NOTAGACCESS << S2_CODE_KIND_SHIFT) | 0xf;
  if (memattr > S2_FWB_USE_S1) return S2_KIND_RESERVED << S2_CODE_KIND_SHIFT;
  if ((memattr & S2_FWB_NORMAL_BIT) === 0) return (S2_KIND_DEVICE << S2_CODE_KIND_SHIFT) | (memattr & 3);
  switch (memattr & 3) {
    case 1:
      return (S2_KIND_NORMAL << S2_CODE_KIND_SHIFT) | (CACHE_NC << S2_CODE_OUTER_SHIFT) | CACHE_NC;
    case 2:
      return (S2_KIND_FORCE_WB << S2_CODE_KIND_SHIFT) | (CACHE_WB << S2_CODE_OUTER_SHIFT) | CACHE_WB;
    case 3:
      return S2_KIND_USE_S1 << S2_CODE_KIND_SHIFT;
    default:
      return S2_KIND_RESERVED << S2_CODE_KIND_SHIFT;
  }
}

// Index: (fwb ? 16 : 0) | memattr. Built once; a lookup keeps the hot path branch-free.
const S2_CODES = new Uint8Array(32);
for (let i = 0; i < 32; i++) S2_CODES[i] = computeS2Code(i & S2_MEMATTR_MASK, i >= 16);

/**
 * Decodes a stage-2 MemAttr nibble into the packed form of layout 4 (layouts 1 and 2).
 * NoTagAccess is recognised (0b0100 without FWB, 0b1110 with FWB); other unassigned values are reserved.
 * Only the low four bits of `memattr` are used.
 *
 * @returns the packed code: kind in bits [6:4] (S2_KIND_*), outer/inner cacheability or Device type below.
 */
export function s2MemAttrCode(memattr: number, fwb: boolean): number {
  return S2_CODES[(fwb ? 16 : 0) | (memattr & S2_MEMATTR_MASK)]!;
}

/**
 * Extracts the kind from a packed stage-2 code.
 *
 * @returns one of the S2_KIND_* values.
 */
export function s2CodeKind(code: number): number {
  return code >> S2_CODE_KIND_SHIFT;
}

/** Cacheability of a Normal nibble, as a name. */
export type CacheName = 'nc' | 'wt' | 'wb';
/** Device memory type, as a name. */
export type DeviceTypeName = 'nGnRnE' | 'nGnRE' | 'nGRE' | 'GRE';

const DEVICE_NAMES: readonly DeviceTypeName[] = ['nGnRnE', 'nGnRE', 'nGRE', 'GRE'];
// Indexed by CACHE_*; index 0 is never used for a valid nibble.
const CACHE_NAMES: readonly CacheName[] = ['nc', 'nc', 'wt', 'wb'];

/** Fields common to every decoded stage-2 MemAttr. */
export interface S2MemAttrBase {
  /** The 4-bit MemAttr that was decoded. */
  memattr: number;
  /** The HCR_EL2.FWB state it was decoded under. */
  fwb: boolean;
  /** Short text for dumps, e.g. "Normal-WB", "Normal-NC", "Device-nGnRE". */
  text: string;
}

/** A decoded stage-2 MemAttr (friendly view of `s2MemAttrCode`). */
export type S2MemAttrInfo =
  | (S2MemAttrBase & { kind: 'device'; device: DeviceTypeName })
  | (S2MemAttrBase & { kind: 'normal'; inner: CacheName; outer: CacheName })
  | (S2MemAttrBase & { kind: 'forceWB' })
  | (S2MemAttrBase & { kind: 'useS1' })
  | (S2MemAttrBase & { kind: 'noTagAccess' })
  | (S2MemAttrBase & { kind: 'reserved' });

function normalText(inner: string, outer: string): string {
  return inner === outer ? `Normal-${inner}` : `Normal-i${inner}-o${outer}`;
}

/**
 * Describes a stage-2 MemAttr nibble for humans and tests (layouts 1 and 2). KVM's NORMAL reads "Normal-WB"
 * with and without FWB (the `kind` says whether it is forced); "use stage 1" reads "Stage1".
 *
 * @returns a fresh `S2MemAttrInfo` with `kind`, the kind's details and a short `text`.
 */
export function describeS2MemAttr(memattr: number, fwb: boolean): S2MemAttrInfo {
  const m = memattr & S2_MEMATTR_MASK;
  const code = s2MemAttrCode(m, fwb);
  const low = code & S2_CODE_FIELD_MASK;
  switch (s2CodeKind(code)) {
    case S2_KIND_DEVICE: {
      const device = DEVICE_NAMES[low]!;
      return { kind: 'device', memattr: m, fwb, device, text: `Device-${device}` };
    }
    case S2_KIND_NORMAL: {
      const inner = CACHE_NAMES[low]!;
      const outer = CACHE_NAMES[(code >> S2_CODE_OUTER_SHIFT) & S2_CODE_FIELD_MASK]!;
      const text = normalText(inner.toUpperCase(), outer.toUpperCase());
      return { kind: 'normal', memattr: m, fwb, inner, outer, text };
    }
    case S2_KIND_FORCE_WB:
      return { kind: 'forceWB', memattr: m, fwb, text: 'Normal-WB' };
    case S2_KIND_USE_S1:
      return { kind: 'useS1', memattr: m, fwb, text: 'Stage1' };
    case S2_KIND_NOTAGACCESS:
      return { kind: 'noTagAccess', memattr: m, fwb, text: 'Normal-WB-NoTagAccess' };
    default:
      return { kind: 'reserved', memattr: m, fwb, text: `Reserved-0x${m.toString(16)}` };
  }
}

/**
 * Chooses the MemAttr KVM writes for a memory type (`KVM_S2_MEMATTR` / `PAGE_S2_MEMATTR`;
 * stage2_set_prot_attr() in arch/arm64/kvm/hyp/pgtable.c).
 *
 * @returns MT_S2_FWB_* when `fwb`, else MT_S2_*: the NORMAL, NORMAL_NC or DEVICE_nGnRE value.
 */
export function s2MemAttrFor(type: 'normal' | 'normal-nc' | 'device', fwb: boolean): number {
  switch (type) {
    case 'normal':
      return fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
    case 'normal-nc':
      return fwb ? MT_S2_FWB_NORMAL_NC : MT_S2_NORMAL_NC;
    case 'device':
      return fwb ? MT_S2_FWB_DEVICE_nGnRE : MT_S2_DEVICE_nGnRE;
  }
}

/**
 * KVM's notion of a cacheable stage-2 mapping (`stage2_pte_cacheable`): the MemAttr equals
 * KVM's NORMAL for the FWB state. NORMAL_NC, Device and NoTagAccess are not "cacheable" here.
 * The caller checks that the descriptor is valid.
 *
 * @returns true iff `memattr` is 0xF without FWB or 6 with FWB.
 */
export function isS2Cacheable(memattr: number, fwb: boolean): boolean {
  return (memattr & S2_MEMATTR_MASK) === (fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL);
}

// ---------------------------------------------------------------------------------------------
// Stage-1 MAIR byte decoding
// ---------------------------------------------------------------------------------------------

/** One decoded Normal MAIR nibble. */
export interface MairNibbleInfo {
  /** Cacheability. */
  cache: CacheName;
  /** Transient hint (only meaningful for WT/WB). */
  transient: boolean;
  /** Read-allocate hint. */
  readAlloc: boolean;
  /** Write-allocate hint. */
  writeAlloc: boolean;
}

/** Fields common to every decoded MAIR byte. */
export interface MairBase {
  /** The attribute byte that was decoded. */
  attr: number;
  /** Short text, e.g. "Normal-WB", "Normal-iWB-oNC", "Normal-WT-RA", "Device-nGnRE". */
  text: string;
}

/** A decoded stage-1 MAIR attribute byte. */
export type MairInfo =
  | (MairBase & { kind: 'device'; device: DeviceTypeName })
  | (MairBase & { kind: 'normal'; inner: MairNibbleInfo; outer: MairNibbleInfo; tagged: boolean })
  | (MairBase & { kind: 'reserved' });

// Caller guarantees nibble != 0.
function decodeNibble(n: number): MairNibbleInfo {
  if (n === MAIR_NIBBLE_NC) return { cache: 'nc', transient: false, readAlloc: false, writeAlloc: false };
  const policy = n & MAIR_NIBBLE_POLICY_MASK;
  return {
    cache: policy === 0 || policy === MAIR_NIBBLE_WT ? 'wt' : 'wb',
    transient: policy < MAIR_NIBBLE_WT,
    readAlloc: (n & MAIR_NIBBLE_RA) !== 0,
    writeAlloc: (n & MAIR_NIBBLE_WA) !== 0,
  };
}

function nibbleText(n: MairNibbleInfo): string {
  if (n.cache === 'nc') return 'NC';
  const alloc = n.readAlloc ? (n.writeAlloc ? '' : '-RA') : n.writeAlloc ? '-WA' : '-NA';
  return `${n.cache.toUpperCase()}${n.transient ? 't' : ''}${alloc}`;
}

/**
 * Returns the byte the combiner works on: FEAT_XS forms mapped to their XS = 1 twins (0x40 → 0x44,
 * 0xA0 → 0xAA, 0b0000dd01 → 0b0000dd00), other Device bytes keep type bits [3:2], and any other
 * reserved byte becomes Device-nGnRnE. 0xF0 is left to the caller.
 */
function canonicalMair(attr: number): number {
  if ((attr & 0xf0) === 0) return attr & MAIR_NIBBLE_POLICY_MASK;
  if (attr === 0x40) return MAIR_NORMAL_NC;
  if (attr === 0xa0) return 0xaa;
  if ((attr & 0x0f) === 0) return MAIR_DEVICE_nGnRnE;
  return attr;
}

/**
 * Decodes a stage-1 MAIR attribute byte (layout 3). Device bytes with bits [1:0] != 0 other than
 * the FEAT_XS form, and Normal bytes with a zero nibble other than 0xF0 / 0x40 / 0xA0, are reserved.
 *
 * @returns a fresh `MairInfo` with `kind`, Device type or per-nibble details, and a short `text`.
 */
export function describeMair(mairAttr: number): MairInfo {
  const attr = mairAttr & 0xff;
  if ((attr & 0xf0) === 0) {
    const low = attr & MAIR_NIBBLE_ALLOC_MASK;
    if (low === 0 || low === 1) {
      const device = DEVICE_NAMES[attr >> 2]!;
      return { kind: 'device', attr, device, text: `Device-${device}${low ? '-XS0' : ''}` };
    }
    return { kind: 'reserved', attr, text: `Reserved-0x${attr.toString(16).padStart(2, '0')}` };
  }
  const tagged = attr === MAIR_NORMAL_TAGGED;
  const xs0 = attr === 0x40 || attr === 0xa0;
  const canon = tagged ? MAIR_NORMAL_WB : canonicalMair(attr);
  if (!tagged && !xs0 && canon !== attr) {
    return { kind: 'reserved', attr, text: `Reserved-0x${attr.toString(16)}` };
  }
  const inner = decodeNibble(canon & 0xf);
  const outer = decodeNibble(canon >> 4);
  let text = normalText(nibbleText(inner), nibbleText(outer));
  if (tagged) text += '-Tagged';
  if (xs0) text += '-XS0';
  return { kind: 'normal', attr, inner, outer, tagged, text };
}

/**
 * Short text for a MAIR-form attribute byte, e.g. a `combineS1S2Attrs` result.
 *
 * @returns the `text` of `describeMair(mairAttr)`.
 */
export function mairText(mairAttr: number): string {
  return describeMair(mairAttr).text;
}

// ---------------------------------------------------------------------------------------------
// Combining stage 1 with stage 2
// ---------------------------------------------------------------------------------------------

/** Options for `combineS1S2Attrs`. */
export interface CombineOptions {
  /**
   * FWB = 1, stage-1 Device + stage-2 Device (UNCONFIRMED; docs/decisions.md): 'armarm' (default) keeps the more
   * restrictive of the two types, as the ARM ARM's FWB pseudocode does; 'qemu' takes the stage-2 type.
   */
  fwbDeviceCombine?: 'armarm' | 'qemu';
}

// Stage-2 cacheability code (CACHE_*) → MAIR nibble, with the RW-allocate non-transient hint.
const S2_CACHE_TO_NIBBLE = [0, MAIR_NIBBLE_NC, MAIR_NIBBLE_WT_RWA, MAIR_NIBBLE_WB_RWA];

// FWB = 0 per-nibble rule (Normal with Normal): NC wins, then stage-1 WT, then stage-2 WT, else stage 1.
function combineNibble(s1: number, s2: number): number {
  if (s1 === MAIR_NIBBLE_NC || s2 === MAIR_NIBBLE_NC) return MAIR_NIBBLE_NC;
  const p1 = s1 & MAIR_NIBBLE_POLICY_MASK;
  if (p1 === 0 || p1 === MAIR_NIBBLE_WT) return s1;
  if (s2 === MAIR_NIBBLE_WT_RWA) return MAIR_NIBBLE_WT | (s1 & MAIR_NIBBLE_ALLOC_MASK);
  return s1;
}

// FWB force-WB per-nibble rule: NC or 0 become WB RWA, anything else gains the WB bit.
function forceWbNibble(n: number): number {
  return n === MAIR_NIBBLE_NC || n === 0 ? MAIR_NIBBLE_WB_RWA : n | MAIR_NIBBLE_WB_BIT;
}

/**
 * Combines a stage-1 MAIR byte and shareability with a stage-2 MemAttr and shareability into the
 * attributes of the final access (the Arm ARM's combining rules; for FWB = 0 after QEMU's
 * `combined_attrs_nofwb`, for FWB = 1 after `combined_attrs_fwb`; shareability and MTE handling as in `combine_cacheattrs`).
 *
 * - Device on either side gives the more restrictive Device type (nGnRnE > nGnRE > nGRE > GRE);
 *   with FWB only a stage-2 Device decides, see `CombineOptions.fwbDeviceCombine`.
 * - Normal + Normal without FWB combines inner and outer nibbles separately (NC wins, then WT).
 * - FWB: force-WB (6) gives WB (0xFF for a stage-1 Device), NC (5) gives 0x44 unless stage 1 is
 *   Device, use-stage-1 (7) gives the stage-1 byte.
 * - Shareability: Outer if either side is Outer, else Inner if either is Inner, else Non-shareable;
 *   forced to Outer when the result is Device or 0x44.
 * - MTE: stage-1 0xF0 is treated as 0xFF and restored when the result is 0xFF, except under
 *   stage-2 NoTagAccess, which combines as KVM's NORMAL for the FWB state but never yields tags.
 * - Reserved encodings (either side) combine as Device-nGnRnE; FEAT_XS MAIR forms as their XS = 1 twins.
 *
 * @returns `(sh << COMBINED_SH_SHIFT) | attr`: read with `combinedAttr` and `combinedSh`.
 */
export function combineS1S2Attrs(
  mairAttr: number,
  s1Sh: number,
  s2MemAttr: number,
  s2Sh: number,
  fwb: boolean,
  opts?: CombineOptions,
): number {
  const raw = mairAttr & 0xff;
  const tagged = raw === MAIR_NORMAL_TAGGED;
  const s1 = tagged ? MAIR_NORMAL_WB : canonicalMair(raw);
  const s1Device = (s1 & 0xf0) === 0;
  const code = s2MemAttrCode(s2MemAttr, fwb);
  const kind = code >> S2_CODE_KIND_SHIFT;

  let attr: number;
  if (kind === S2_KIND_DEVICE) {
    const s2Type = code & S2_CODE_FIELD_MASK;
    const useS1Type = s1Device && !(fwb && opts?.fwbDeviceCombine === 'qemu');
    attr = (useS1Type ? Math.min(s1 >> 2, s2Type) : s2Type) << 2;
  } else if (kind === S2_KIND_RESERVED) {
    attr = MAIR_DEVICE_nGnRnE;
  } else if (kind === S2_KIND_USE_S1) {
    attr = s1;
  } else if (s1Device) {
    // Stage-1 Device survives every Normal stage 2 except FWB force-WB.
    attr = fwb && kind !== S2_KIND_NORMAL ? MAIR_NORMAL_WB : s1;
  } else if (fwb && kind !== S2_KIND_NORMAL) {
    attr = (forceWbNibble(s1 >> 4) << 4) | forceWbNibble(s1 & 0xf);
  } else {
    // FWB = 0 Normal or NoTagAccess, or FWB = 1 NC (whose nibbles are NC, so the result is 0x44).
    const outer = S2_CACHE_TO_NIBBLE[(code >> S2_CODE_OUTER_SHIFT) & S2_CODE_FIELD_MASK]!;
    const inner = S2_CACHE_TO_NIBBLE[code & S2_CODE_FIELD_MASK]!;
    attr = (combineNibble(s1 >> 4, outer) << 4) | combineNibble(s1 & 0xf, inner);
  }
  if (tagged && attr === MAIR_NORMAL_WB && kind !== S2_KIND_NOTAGACCESS) attr = MAIR_NORMAL_TAGGED;

  let sh = s1Sh === SH_OSH || s2Sh === SH_OSH ? SH_OSH : s1Sh === SH_ISH || s2Sh === SH_ISH ? SH_ISH : SH_NSH;
  if ((attr & 0xf0) === 0 || attr === MAIR_NORMAL_NC) sh = SH_OSH;
  return (sh << COMBINED_SH_SHIFT) | attr;
}

/**
 * Extracts the attributes from a `combineS1S2Attrs` result.
 *
 * @returns the final MAIR-form attribute byte.
 */
export function combinedAttr(combined: number): number {
  return combined & COMBINED_ATTR_MASK;
}

/**
 * Extracts the shareability from a `combineS1S2Attrs` result.
 *
 * @returns SH_NSH, SH_OSH or SH_ISH.
 */
export function combinedSh(combined: number): number {
  return combined >> COMBINED_SH_SHIFT;
}
