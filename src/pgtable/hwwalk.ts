/**
 * The hardware view of a stage-2 table: the walk the MMU performs when a guest access misses
 * in the TLB (Arm ARM, VMSAv8-64 stage 2 translation). Unlike the KVM walker (walker.ts) it has no visitors and no
 * side effects: it never sets AF, never touches refcounts and never emits events, so it can
 * run once per guest access and from a debugger alike.
 *
 * The hot entry point, `HwWalker.walk`, allocates nothing: it fills a caller-supplied
 * `HwWalkResult`. `HwWalker.translate` is the cold convenience that also combines the
 * stage-2 attributes with a stage-1 MAIR byte.
 *
 * Fault syndrome (ESR_ELx.ISS DFSC/IFSC, the FSC field), bits [5:0]:
 *
 *   0b0001LL  translation fault, level LL (0..3)     0b101011  translation fault, level −1
 *   0b0010LL  access flag fault, level LL            0b0011LL  permission fault, level LL
 *   0b0101LL  synchronous external abort on a translation table walk, level LL
 *
 * Order of checks at each step, as QEMU's get_phys_addr_lpae makes them: IPA range, then
 * per level: valid bit, table or leaf; for a leaf: type and level allowed, AF, permissions.
 * Hence an access-flag fault takes priority over a permission fault.
 */

import {
  KVM_PTE_LEAF_ATTR_HI_S2_XN,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_TYPE,
  KVM_PTE_VALID,
  S2_MEMATTR_SHIFT,
} from './descriptor.js';
import {
  SH_ISH,
  combineS1S2Attrs,
  combinedAttr,
  combinedSh,
  describeS2MemAttr,
  mairText,
} from './memattr.js';
import type { CombineOptions } from './memattr.js';
import type { Stage2PageTable } from './stage2.js';
import { JOURNAL_SITE_HW_AF } from './journal.js';

/** A data read (or any access needing read permission). */
export const ACCESS_READ = 0;
/** A data write. */
export const ACCESS_WRITE = 1;
/** An instruction fetch. */
export const ACCESS_EXEC = 2;
/** The kind of a guest access: ACCESS_READ, ACCESS_WRITE or ACCESS_EXEC. */
export type AccessKind = 0 | 1 | 2;

/** The walk succeeded. */
export const FAULT_NONE = 0;
/** Translation fault: an invalid or reserved entry, a block where none is allowed, or an IPA out of range. */
export const FAULT_TRANSLATION = 1;
/** Access flag fault: the leaf has AF = 0 and hardware AF management (VTCR.HA) is off. */
export const FAULT_ACCESS_FLAG = 2;
/** Permission fault: S2AP or XN forbids the access. */
export const FAULT_PERMISSION = 3;
/**
 * Synchronous external abort on a translation table walk: a table descriptor points outside
 * the table pool, so the next-level read has no memory behind it. KVM never builds such a
 * table; only raw edits can.
 */
export const FAULT_EXTERNAL_ABORT = 4;
/**
 * The class of a fault the walk reports (HwWalkResult.fault when it missed, FaultRecord.fsc):
 * FAULT_TRANSLATION, FAULT_ACCESS_FLAG, FAULT_PERMISSION or FAULT_EXTERNAL_ABORT. The
 * architectural FSC, which adds the level, is in the ESR (fscFor(), mmu/esr.ts).
 */
export type HwFaultClass =
  typeof FAULT_TRANSLATION | typeof FAULT_ACCESS_FLAG | typeof FAULT_PERMISSION | typeof FAULT_EXTERNAL_ABORT;

/** FSC of a translation fault at level 0; add the level for levels 0..3. */
export const FSC_TRANSLATION = 0x04;
/** FSC of a translation fault at level −1 (FEAT_LPA2). */
export const FSC_TRANSLATION_LM1 = 0x2b;
/** FSC of an access flag fault at level 0; add the level. */
export const FSC_ACCESS_FLAG = 0x08;
/** FSC of a permission fault at level 0; add the level. */
export const FSC_PERMISSION = 0x0c;
/** FSC of a synchronous external abort on a table walk at level 0; add the level. */
export const FSC_EXTERNAL_ABORT_WALK = 0x14;

/** The S2AP field (descriptor bits [7:6]) once shifted down: bit 0 grants reads. */
export const S2AP_READ = 1;
/** The S2AP field once shifted down: bit 1 grants writes. */
export const S2AP_WRITE = 2;

/** Descriptor bit position of S2AP[0]: `(lo >>> S2AP_SHIFT) & 3`. */
const S2AP_SHIFT = 6;
/** Descriptor bit position of SH[1:0]. */
const SH_SHIFT = 8;

/**
 * The outcome of one hardware walk. Reuse one instance per vCPU: `walk` overwrites every
 * field. On a fault the leaf fields (`pa`, `memattr`, `s2ap`, `sh`, `xn`) are filled too when
 * the walk reached a leaf (access-flag and permission faults); otherwise they are 0/false.
 */
export class HwWalkResult {
  /** The IPA that was walked. */
  ipa = 0;
  /** The access kind that was checked. */
  access: AccessKind = ACCESS_READ;
  /** FAULT_NONE on success, else the fault class. */
  fault = FAULT_NONE;
  /** The ESR FSC code of the fault; 0 on success. */
  fsc = 0;
  /** The leaf's level on success; the reported level on a fault. */
  level = 0;
  /** The output address: leaf OA plus the offset of the IPA within the leaf. */
  pa = 0;
  /** The descriptor the walk stopped at (the leaf, or the faulting entry; 0 when out of range). */
  lo = 0;
  hi = 0;
  /** The leaf's stage-2 MemAttr[3:0]. */
  memattr = 0;
  /** The leaf's S2AP[1:0] (S2AP_READ | S2AP_WRITE). */
  s2ap = 0;
  /** The leaf's shareability (SH_*): SH[1:0], or VTCR_EL2.SH0 (Inner) with LPA2. */
  sh = 0;
  /** The leaf's XN[1] (bit 54): true means not executable. */
  xn = false;
  /** With hardware AF (option `ha`): the access succeeded on a leaf with AF = 0, which the MMU would set. */
  afWouldBeSet = false;
  /** Where the leaf (or the faulting entry) is: its table page in the pool, and the entry's index. */
  leafPage = -1;
  leafIndex = 0;
}

/** Options of the hardware walk. */
export interface HwWalkerOptions {
  /**
   * VTCR_EL2.HA, hardware access-flag update. kvm_get_vtcr() sets HA unless the AmpereOne
   * AC03_CPU_38 workaround applies; it takes effect on a CPU with FEAT_HAFDBS (the vCPU passes
   * Kvm.hwAf). The default here (false) reports access-flag faults as a CPU without HAFDBS
   * takes them. When true the walk still does not write the descriptor (a debugger's walk has
   * no side effects): it reports `afWouldBeSet`, and setAccessFlag() does the update.
   */
  ha?: boolean;
  /**
   * 52-bit output addresses with 64K pages (FEAT_LPA, PS = 52), which architecturally allow
   * level-1 blocks with the 64K granule. Default false.
   */
  pa52?: boolean;
  /** How `translate` combines a stage-1 Device with a stage-2 Device under FWB. */
  combine?: CombineOptions;
}

/** The result of `HwWalker.translate`: the final memory type, or the fault. */
export type Translation =
  | {
      ok: true;
      ipa: number;
      pa: number;
      level: number;
      /** The leaf's stage-2 MemAttr[3:0] and its decoded text. */
      s2MemAttr: number;
      s2Text: string;
      /** The stage-1 MAIR byte it was combined with. */
      s1Attr: number;
      /** The final attributes as a MAIR-form byte, its text, and the final shareability. */
      attr: number;
      attrText: string;
      sh: number;
      afWouldBeSet: boolean;
    }
  | { ok: false; ipa: number; fault: number; fsc: number; level: number };

/**
 * The lowest level at which the architecture accepts a block descriptor: 4K level 1
 * (level 0 with DS = 1), 16K level 2 (level 1 with DS = 1), 64K level 2 (level 1 with 52-bit
 * PA). Returns the level.
 */
export function archMinBlockLevel(pageShift: number, lpa2: boolean, pa52: boolean): number {
  if (pageShift === 12) return lpa2 ? 0 : 1;
  if (pageShift === 14) return lpa2 ? 1 : 2;
  return pa52 ? 1 : 2;
}

/**
 * Fills `out` with a fault and its FSC. Levels: translation −1..3, others 0..3.
 * Returns false, for `return fault(...)`.
 */
function setFault(out: HwWalkResult, fault: number, level: number): boolean {
  out.fault = fault;
  out.level = level;
  switch (fault) {
    case FAULT_TRANSLATION:
      out.fsc = level < 0 ? FSC_TRANSLATION_LM1 : FSC_TRANSLATION + level;
      break;
    case FAULT_ACCESS_FLAG:
      out.fsc = FSC_ACCESS_FLAG + level;
      break;
    case FAULT_PERMISSION:
      out.fsc = FSC_PERMISSION + level;
      break;
    default:
      out.fsc = FSC_EXTERNAL_ABORT_WALK + level;
  }
  return false;
}

/**
 * The MMU's stage-2 walk over one `Stage2PageTable`. Reads the table pages directly; holds no
 * per-walk state, so one walker can serve any number of vCPUs, each with its own result.
 */
export class HwWalker {
  readonly pgt: Stage2PageTable;
  /** VTCR_EL2.HA as modelled (see HwWalkerOptions.ha). */
  readonly ha: boolean;
  /** The lowest level at which a block descriptor translates (architectural, not KVM's). */
  readonly minBlockLevel: number;
  private readonly combineOpts: CombineOptions | undefined;

  constructor(pgt: Stage2PageTable, opts: HwWalkerOptions = {}) {
    this.pgt = pgt;
    this.ha = opts.ha ?? false;
    this.minBlockLevel = archMinBlockLevel(pgt.geo.pageShift, pgt.lpa2, opts.pa52 ?? false);
    this.combineOpts = opts.combine;
  }

  /**
   * Translates `ipa` for one access as the MMU would, without side effects or allocation.
   * An IPA at or above 2^ia_bits (or negative) takes a level-0 translation fault, whatever
   * the start level (the architecture's rule for an out-of-range input address). Exec needs
   * only XN[1] = 0 (legacy XN, AArch64): it does not need S2AP read permission.
   * Returns true on success; `out` holds the output address and leaf, or the fault.
   */
  walk(ipa: number, access: AccessKind, out: HwWalkResult): boolean {
    // A wrapper the JIT inlines: the IPA reaches the body through `out` (a double field
    // written in place), not as an argument V8 would box on every call.
    out.ipa = ipa;
    return this.walkAt(access, out);
  }

  /**
   * walk() for the IPA already in `out.ipa`: what hot callers use, so no address is passed
   * as an argument at all. Returns true on success.
   */
  walkAt(access: AccessKind, out: HwWalkResult): boolean {
    const pgt = this.pgt;
    const geo = pgt.geo;
    const ipa = out.ipa;
    out.access = access;
    out.fault = FAULT_NONE;
    out.fsc = 0;
    out.pa = 0;
    out.lo = 0;
    out.hi = 0;
    out.memattr = 0;
    out.s2ap = 0;
    out.sh = 0;
    out.xn = false;
    out.afWouldBeSet = false;
    out.leafPage = -1;
    if (!(ipa >= 0 && ipa < geo.ipaLimit)) return setFault(out, FAULT_TRANSLATION, 0);
    if (pgt.pgd < 0) throw new Error('HwWalker: the stage-2 table has been destroyed');
    const pool = pgt.pool;
    const pages = pool.pages;
    const layout = pgt.layout;
    // kvm_pgd_page_idx(ipa), inline (ipa is below the limit): pgdPageIndex() would take the
    // address as an argument, boxed wherever V8 does not inline the call.
    // The walk cache (walker.ts), as a hardware walk cache: the level-3 or level-2 table that
    // maps this IPA's region, if known and no table descriptor has been removed or replaced
    // since. It changes which descriptors are read, never what they say.
    const walker = pgt.walker;
    let level = geo.startLevel;
    let page = -1;
    if (level < 3) {
      page = walker.cachedTable(3, Math.floor(ipa * geo.invSizes[3]!));
      if (page >= 0) level = 3;
      else if (level < 2) {
        page = walker.cachedTable(2, Math.floor(ipa * geo.invSizes[2]!));
        if (page >= 0) level = 2;
      }
    }
    if (page < 0)
      page = geo.pgdPages === 1 ? pgt.pgd : pgt.pgd + Math.floor(ipa * geo.invSizes[geo.startLevel]!);
    for (; ; level++) {
      const words = pages[page]!;
      const i = 2 * geo.index(ipa, level);
      out.leafPage = page;
      out.leafIndex = i;
      const lo = words[i]!;
      const hi = words[i + 1]!;
      out.lo = lo >>> 0;
      out.hi = hi >>> 0;
      if ((lo & KVM_PTE_VALID) === 0) return setFault(out, FAULT_TRANSLATION, level);
      if (level < 3 && (lo & KVM_PTE_TYPE) !== 0) {
        // Table: tables carry no hierarchical attributes at stage 2, just descend.
        const next = pool.pageOfTable(layout, lo, hi);
        if (next < 0) return setFault(out, FAULT_EXTERNAL_ABORT, level + 1);
        page = next;
        if (level >= 1) walker.rememberTable(level + 1, Math.floor(ipa * geo.invSizes[level + 1]!), next);
        continue;
      }
      // A leaf. Level 3 type 0b01 is reserved; a block below the architectural minimum level
      // is treated as invalid.
      if (level === 3 ? (lo & KVM_PTE_TYPE) === 0 : level < this.minBlockLevel) {
        return setFault(out, FAULT_TRANSLATION, level);
      }
      // OA bits below a block's size are RES0 and ignored; the IPA supplies the offset.
      // (Multiplying by the inverse of a power of two is exact, and cheaper than dividing.)
      const size = geo.sizes[level + 1]!;
      const inv = geo.invSizes[level + 1]!;
      layout.toPhysInto(lo, hi, out);
      out.pa = Math.floor(out.pa * inv) * size + (ipa - Math.floor(ipa * inv) * size);
      out.level = level;
      out.memattr = (lo >>> S2_MEMATTR_SHIFT) & 0xf;
      out.s2ap = (lo >>> S2AP_SHIFT) & 3;
      out.sh = layout.lpa2 ? SH_ISH : (lo >>> SH_SHIFT) & 3;
      out.xn = (hi & KVM_PTE_LEAF_ATTR_HI_S2_XN) !== 0;
      const af = (lo & KVM_PTE_LEAF_ATTR_LO_S2_AF) !== 0;
      if (!af && !this.ha) return setFault(out, FAULT_ACCESS_FLAG, level);
      const allowed =
        access === ACCESS_EXEC
          ? !out.xn
          : (out.s2ap & (access === ACCESS_WRITE ? S2AP_WRITE : S2AP_READ)) !== 0;
      if (!allowed) return setFault(out, FAULT_PERMISSION, level);
      // With HA the MMU sets AF only for an access that does not fault.
      out.afWouldBeSet = !af;
      return true;
    }
  }

  /**
   * The MMU's hardware access-flag update (VTCR_EL2.HA) for a successful walk that reported
   * `afWouldBeSet`: an atomic set of AF in the leaf, with no fault, no TLBI and no change of
   * refcount (the entry stays counted). `out` is updated to the new descriptor. Returns true
   * when AF was set.
   */
  setAccessFlag(out: HwWalkResult): boolean {
    if (!out.afWouldBeSet || out.leafPage < 0) return false;
    const words = this.pgt.pool.pages[out.leafPage]!;
    const j = this.pgt.journal;
    if (j !== null)
      j.record(
        words,
        out.leafPage,
        out.leafIndex >> 1,
        out.level,
        words[out.leafIndex]! | KVM_PTE_LEAF_ATTR_LO_S2_AF,
        words[out.leafIndex + 1]!,
        JOURNAL_SITE_HW_AF,
      );
    words[out.leafIndex] = words[out.leafIndex]! | KVM_PTE_LEAF_ATTR_LO_S2_AF;
    out.lo = words[out.leafIndex]! >>> 0;
    out.afWouldBeSet = false;
    return true;
  }

  /**
   * Walks `ipa` and, on success, combines the leaf's stage-2 attributes with the stage-1
   * MAIR byte `mairAttr` and shareability `s1Sh` (default Inner) using the table's FWB state
   * (combineS1S2Attrs). Cold path: allocates the result. Returns the final memory
   * type, or the fault.
   */
  translate(ipa: number, access: AccessKind, mairAttr: number, s1Sh: number = SH_ISH): Translation {
    const r = new HwWalkResult();
    if (!this.walk(ipa, access, r)) return { ok: false, ipa, fault: r.fault, fsc: r.fsc, level: r.level };
    const fwb = this.pgt.fwb;
    const combined = combineS1S2Attrs(mairAttr, s1Sh, r.memattr, r.sh, fwb, this.combineOpts);
    const attr = combinedAttr(combined);
    return {
      ok: true,
      ipa,
      pa: r.pa,
      level: r.level,
      s2MemAttr: r.memattr,
      s2Text: describeS2MemAttr(r.memattr, fwb).text,
      s1Attr: mairAttr & 0xff,
      attr,
      attrText: mairText(attr),
      sh: combinedSh(combined),
      afWouldBeSet: r.afWouldBeSet,
    };
  }
}
