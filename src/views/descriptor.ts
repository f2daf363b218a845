/**
 * DescriptorView: one stage-2 descriptor decoded for people (console, JSON, debuggers).
 * Built on demand from the packed halves; never used on the hot path.
 *
 * Text forms (the IPA prefix appears only when the view knows it):
 *
 *   L3 page 0x80000000 RW- Normal-WB AF        valid leaf: OA, R/W/X, memory type, flags
 *   L2 block 0x40200000 RWX Normal-WB AF
 *   L1 table 0x100000001000                     next-level table address
 *   L2 invalid | L3 locked | L3 owner 1         KVM's invalid encodings (locked, owner)
 *   L3 reserved 0x0000000080000401              level-3 type 0b01
 *   ipa 0x40000000: L3 page 0x80000000 ...
 *
 * After the memory type come, when present: the shareability if not Inner, AF, FnXS, DBM,
 * CONT, XN0 (bit 53, RES0 without FEAT_XNX) and the software bits SW0..SW3.
 */

import {
  KVM_INVALID_PTE_OWNER_MASK,
  KVM_PTE_LEAF_ATTR_HI_CONT,
  KVM_PTE_LEAF_ATTR_HI_DBM,
  KVM_PTE_LEAF_ATTR_HI_S2_XN,
  KVM_PTE_LEAF_ATTR_HI_S2_XN0,
  KVM_PTE_LEAF_ATTR_HI_SW,
  KVM_PTE_LEAF_ATTR_HI_SW_SHIFT,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_FNXS,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  KVM_PTE_TYPE,
  KVM_PTE_VALID,
  hex64,
  pteIsLocked,
  pteMemAttr,
  toBigInt,
} from '../pgtable/descriptor.js';
import type { AddrLayout } from '../pgtable/descriptor.js';
import type { Geometry } from '../pgtable/geometry.js';
import { describeS2MemAttr } from '../pgtable/memattr.js';
import { TextView, hexShort, levelName } from './hooks.js';

/** What a view needs to decode a descriptor. A `Stage2PageTable` satisfies it. */
export interface DescriptorContext {
  readonly geo: Geometry;
  readonly layout: AddrLayout;
  /** stage2_has_fwb(): how MemAttr is read. */
  readonly fwb: boolean;
}

/** The kinds of descriptor a view distinguishes. */
export type DescriptorKind = 'table' | 'block' | 'page' | 'invalid' | 'locked' | 'owner' | 'reserved';

/** Shareability names, indexed by SH[1:0] (0b01 is reserved). */
export type ShareName = 'NSH' | 'RES' | 'OSH' | 'ISH';
const SH_NAMES: readonly ShareName[] = ['NSH', 'RES', 'OSH', 'ISH'];

/** Stage-2 access permissions of a leaf (legacy XN: X iff bit 54 is clear). */
export interface Perms {
  r: boolean;
  w: boolean;
  x: boolean;
}

/** The JSON form of a DescriptorView. */
export interface DescriptorJson {
  kind: DescriptorKind;
  level: number;
  ipa: string | null;
  raw: string;
  oa: string | null;
  size: number;
  perms: Perms | null;
  memattr: string | null;
  memattrValue: number | null;
  sh: ShareName | null;
  af: boolean | null;
  sw: number | null;
  flags: string[];
  owner: number | null;
  text: string;
}

const SW_NAMES = ['SW0', 'SW1', 'SW2', 'SW3'];

/**
 * A decoded descriptor. Fields that do not apply to the kind are null (perms, memattr, sh,
 * af and sw apply to blocks and pages; oa to those and tables; owner to owner annotations).
 */
export class DescriptorView extends TextView {
  readonly kind: DescriptorKind;
  readonly level: number;
  /** The IPA the entry maps (its start), when the caller knows it. */
  readonly ipa: number | null;
  /** The descriptor halves. */
  readonly lo: number;
  readonly hi: number;
  /** The descriptor as `0x` and 16 hex digits. */
  readonly raw: string;
  /** The output address (leaf) or next-level table address, as hex text. */
  readonly oa: string | null;
  /** The same address as a BigInt. */
  readonly oaBigInt: bigint | null;
  /** Bytes the entry spans (2^shift(level)). */
  readonly size: number;
  readonly perms: Perms | null;
  /** Decoded memory type, e.g. "Normal-WB", "Normal-NC", "Device-nGnRE". */
  readonly memattr: string | null;
  /** MemAttr[3:0] as stored. */
  readonly memattrValue: number | null;
  /** Shareability: SH[1:0], or Inner (VTCR_EL2.SH0) with LPA2, where bits [9:8] are OA. */
  readonly sh: ShareName | null;
  readonly af: boolean | null;
  /** Software bits [58:55] as a 4-bit number. */
  readonly sw: number | null;
  /** Other set attribute bits by name: FnXS, DBM, CONT, XN0. */
  readonly flags: readonly string[];
  /** The owner id of an owner annotation. */
  readonly owner: number | null;
  /** The one-line text. */
  readonly text: string;

  constructor(lo: number, hi: number, level: number, ctx: DescriptorContext, ipa: number | null = null) {
    super();
    lo >>>= 0;
    hi >>>= 0;
    this.lo = lo;
    this.hi = hi;
    this.level = level;
    this.ipa = ipa;
    this.raw = hex64(lo, hi);
    this.size = ctx.geo.granuleSize(level);
    let kind: DescriptorKind;
    let oa: number | null = null;
    let perms: Perms | null = null;
    let memattr: string | null = null;
    let memattrValue: number | null = null;
    let sh: ShareName | null = null;
    let af: boolean | null = null;
    let sw: number | null = null;
    let owner: number | null = null;
    const flags: string[] = [];
    if ((lo & KVM_PTE_VALID) === 0) {
      if (lo === 0 && hi === 0) kind = 'invalid';
      else if (pteIsLocked(lo)) kind = 'locked';
      else if (hi === 0 && (lo & ~KVM_INVALID_PTE_OWNER_MASK) === 0) {
        kind = 'owner';
        owner = lo >>> 2;
      } else kind = 'invalid';
    } else if (level < 3 && (lo & KVM_PTE_TYPE) !== 0) {
      kind = 'table';
      oa = ctx.layout.toPhys(lo, hi);
    } else if (level === 3 && (lo & KVM_PTE_TYPE) === 0) {
      kind = 'reserved';
    } else {
      kind = level === 3 ? 'page' : 'block';
      oa = ctx.layout.toPhys(lo, hi);
      perms = {
        r: (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R) !== 0,
        w: (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W) !== 0,
        x: (hi & KVM_PTE_LEAF_ATTR_HI_S2_XN) === 0,
      };
      memattrValue = pteMemAttr(lo);
      memattr = describeS2MemAttr(memattrValue, ctx.fwb).text;
      sh = ctx.layout.lpa2 ? 'ISH' : SH_NAMES[(lo >>> 8) & 3]!;
      af = (lo & KVM_PTE_LEAF_ATTR_LO_S2_AF) !== 0;
      sw = (hi & KVM_PTE_LEAF_ATTR_HI_SW) >>> KVM_PTE_LEAF_ATTR_HI_SW_SHIFT;
      if (lo & KVM_PTE_LEAF_ATTR_LO_S2_FNXS) flags.push('FnXS');
      if (hi & KVM_PTE_LEAF_ATTR_HI_DBM) flags.push('DBM');
      if (hi & KVM_PTE_LEAF_ATTR_HI_CONT) flags.push('CONT');
      if (hi & KVM_PTE_LEAF_ATTR_HI_S2_XN0) flags.push('XN0');
    }
    this.kind = kind;
    this.oa = oa === null ? null : hexShort(oa);
    this.oaBigInt = oa === null ? null : BigInt(oa);
    this.perms = perms;
    this.memattr = memattr;
    this.memattrValue = memattrValue;
    this.sh = sh;
    this.af = af;
    this.sw = sw;
    this.flags = flags;
    this.owner = owner;

    const parts: string[] = [levelName(level), kind];
    if (kind === 'table') parts.push(this.oa!);
    else if (kind === 'owner') parts.push(String(owner));
    else if (kind === 'reserved' || (kind === 'invalid' && (lo !== 0 || hi !== 0))) parts.push(this.raw);
    else if (perms !== null) {
      parts.push(this.oa!, (perms.r ? 'R' : '-') + (perms.w ? 'W' : '-') + (perms.x ? 'X' : '-'), memattr!);
      if (sh !== 'ISH') parts.push(sh!);
      if (af) parts.push('AF');
      parts.push(...flags);
      for (let b = 0; b < 4; b++) if (sw! & (1 << b)) parts.push(SW_NAMES[b]!);
    }
    const body = parts.join(' ');
    this.text = ipa === null ? body : `ipa ${hexShort(ipa)}: ${body}`;
  }

  /** The descriptor as a BigInt. Returns the 64-bit value. */
  get rawBigInt(): bigint {
    return toBigInt(this.lo, this.hi);
  }

  /** Returns the plain-data form (addresses as hex text, no BigInt). */
  toJSON(): DescriptorJson {
    return {
      kind: this.kind,
      level: this.level,
      ipa: this.ipa === null ? null : hexShort(this.ipa),
      raw: this.raw,
      oa: this.oa,
      size: this.size,
      perms: this.perms === null ? null : { ...this.perms },
      memattr: this.memattr,
      memattrValue: this.memattrValue,
      sh: this.sh,
      af: this.af,
      sw: this.sw,
      flags: [...this.flags],
      owner: this.owner,
      text: this.text,
    };
  }
}
