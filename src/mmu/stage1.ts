/**
 * The guest's own stage-1 translation (TTBR0_EL1), as bytes in guest memory.
 *
 * The builder lays the tables out deterministically (docs/scenario.md, "Guest stage 1"): the
 * root is the granule page at `tables`; each further table is the next free granule page,
 * allocated when a mapping first needs it, mappings in file order and each
 * mapping's pages in VA order. The runner writes those pages into guest memory through the
 * VMM's mapping before the first step; from then on the tables are only guest memory, and the
 * walk reads (and, for a hardware AF update, writes) them through stage 2 like any access.
 *
 * Descriptor layout (VMSAv8-64 stage 1, 48-bit OA), as two 32-bit halves:
 *
 *   lo bit 0       valid
 *   lo bit 1       1: table (levels < 3) or page (level 3); 0: block (levels < 3)
 *   lo bits [4:2]  AttrIndx (MAIR_EL1 index)
 *   lo bit 5       NS (0)
 *   lo bits [7:6]  AP[2:1]: AP[2] (bit 7) read-only, AP[1] (bit 6) EL0 access
 *   lo bits [9:8]  SH (the builder writes 0b11, Inner Shareable)
 *   lo bit 10      AF
 *   lo bit 11      nG (0)
 *   [47:12]        output address (table: next-level table; leaf: block/page); bits [47:32] in hi [15:0]
 *   hi bit 21      PXN (bit 53)
 *   hi bit 22      UXN (bit 54)
 *
 * Table descriptors carry no attribute bits (APTable, XNTable, PXNTable all 0).
 *
 * The walk itself does no memory access: the vCPU reads each descriptor (a stage-2 access to
 * `descIpa`), puts it in `descLo`/`descHi` and calls step(); when step() sets `writeBack`, the
 * vCPU stores the updated descriptor back (TCR_EL1.HA). Nothing is allocated per walk.
 */

import { MAIR_DEVICE_nGnRnE } from '../pgtable/memattr.js';

/** Descriptor bit: valid. */
export const S1D_VALID = 1 << 0;
/** Descriptor bit: table (levels < 3) / page (level 3); clear with VALID set: block. */
export const S1D_TABLE = 1 << 1;
/** Shift of AttrIndx[2:0]: `(lo >> S1D_ATTRINDX_SHIFT) & 7`. */
export const S1D_ATTRINDX_SHIFT = 2;
/** AP[1] (bit 6): EL0 may access. */
export const S1D_AP1 = 1 << 6;
/** AP[2] (bit 7): read-only. */
export const S1D_AP2 = 1 << 7;
/** Shift of SH[1:0] (bits [9:8]). */
export const S1D_SH_SHIFT = 8;
/** AF (bit 10). */
export const S1D_AF = 1 << 10;
/** PXN (bit 53) in the high half. */
export const S1D_HI_PXN = 1 << 21;
/** UXN (bit 54) in the high half. */
export const S1D_HI_UXN = 1 << 22;

/** One guest mapping of `[va, va + size)` onto `[ipa, ipa + size)`. */
export interface Stage1Mapping {
  va: number;
  ipa: number;
  size: number;
  attrIndx: number;
  ap: 'rw' | 'ro';
  af: boolean;
  xn: boolean;
}

/**
 * One granule page at `va` mapped onto the table page that holds the leaf descriptor of
 * `leafTableOf` (a guest reaching its own PTE, as page_fault_test's PTE alias does).
 */
export interface Stage1LeafAlias {
  va: number;
  leafTableOf: number;
  attrIndx: number;
  ap: 'rw' | 'ro';
  af: boolean;
  xn: boolean;
}

/** Configuration of a guest stage 1. */
export interface Stage1Config {
  /** The guest's granule in bytes. */
  granule: 4096 | 16384 | 65536;
  /** IPA of the first table page (the root). */
  tables: number;
  /** MAIR_EL1's eight attribute bytes, Attr0 first. */
  mair: readonly number[];
  /** TCR_EL1.HA: the hardware sets AF (a write to the descriptor) instead of faulting. */
  ha: boolean;
  /** TCR_EL1.HD (recorded; dirty-state updates are not modelled). */
  hd: boolean;
  /** VA size: TCR_EL1.T0SZ = 64 − vaBits, which fixes the start level. Default 48. */
  vaBits?: number;
  /** TCR_EL1.IPS as a size in bits: output addresses at or above 2^ips are an address size fault. Default 48. */
  ips?: number;
  /** Use blocks wherever size and alignment allow (default false: pages only). */
  blocks?: boolean;
  mappings: readonly (Stage1Mapping | Stage1LeafAlias)[];
}

/** One table page the builder made: its IPA and its descriptors (word 2i = lo, 2i + 1 = hi of entry i). */
export interface Stage1TablePage {
  readonly ipa: number;
  readonly words: Uint32Array;
}

/** Stage-1 outcomes of one walk step. */
export const S1_DESC = 0;
export const S1_DONE = 1;
export const S1_FAULT_TRANSLATION = 2;
export const S1_FAULT_ACCESS = 3;
export const S1_FAULT_PERMISSION = 4;
export const S1_FAULT_ADDRSIZE = 5;

/** The output name of each S1_FAULT_* (index S1_* − 2). */
export const S1_FAULT_NAMES = ['translation', 'access-flag', 'permission', 'address-size'] as const;

/** The fault status code (long-descriptor FSC, as PAR_EL1.FST and ESR report it) of a stage-1 fault at `level`. */
export function s1FaultFsc(fault: number, level: number): number {
  const base =
    fault === S1_FAULT_TRANSLATION
      ? 0x04
      : fault === S1_FAULT_ACCESS
        ? 0x08
        : fault === S1_FAULT_PERMISSION
          ? 0x0c
          : 0;
  return base | (level & 3);
}

/**
 * State of an in-progress stage-1 walk: the vCPU drives it one descriptor at a time, doing
 * the stage-2 access for each descriptor's IPA in between.
 */
export class Stage1Walk {
  va = 0;
  level = 0;
  /** The IPA of the table the walk is in (after S1_DONE: the table holding the leaf). */
  tableIpa = 0;
  /** The IPA of the descriptor the walk reads next. */
  descIpa = 0;
  /** In: the descriptor at descIpa, as read by the caller. Out (S1_DONE): the leaf as it is now. */
  descLo = 0;
  descHi = 0;
  /** The descriptor read needs a write (a hardware AF update with HA). */
  descWrite = false;
  /** step() updated descLo/descHi (AF set): the caller stores them back at the descriptor. */
  writeBack = false;
  /** Result: the output IPA, and the leaf's attributes. */
  ipa = 0;
  attrIndx = 0;
  /** The leaf's SH[1:0]. */
  sh = 0;
  /** The level a stage-1 fault was found at. */
  faultLevel = 0;
}

/** The guest's stage-1 tables and walk. */
export class GuestStage1 {
  readonly cfg: Stage1Config;
  readonly pageShift: number;
  readonly granule: number;
  readonly ptrs: number;
  readonly vaBits: number;
  readonly ips: number;
  readonly startLevel: number;
  /** The table pages the builder made, in allocation order (the root first). */
  readonly tablePages: readonly Stage1TablePage[];
  /** 2^vaBits and 2^ips. */
  private readonly vaLimit: number;
  private readonly ipsLimit: number;
  /** Bytes one entry maps, by level; read inline on the walk (a call would return a boxed double). */
  private readonly sizes = new Float64Array(4);
  /** The builder's tables by IPA (set-up only). */
  private readonly byIpa = new Map<number, Uint32Array>();
  private readonly pages: Stage1TablePage[] = [];
  private nextTable: number;

  /** Builds the tables (in this object; the caller writes tablePages into guest memory). */
  constructor(cfg: Stage1Config) {
    this.cfg = cfg;
    this.granule = cfg.granule;
    this.pageShift = cfg.granule === 4096 ? 12 : cfg.granule === 16384 ? 14 : 16;
    this.ptrs = cfg.granule / 8;
    this.vaBits = cfg.vaBits ?? 48;
    this.ips = cfg.ips ?? 48;
    this.vaLimit = 2 ** this.vaBits;
    this.ipsLimit = 2 ** this.ips;
    this.startLevel = stage1StartLevel(cfg.granule, this.vaBits);
    for (let l = 0; l < 4; l++) this.sizes[l] = this.levelSize(l);
    this.nextTable = cfg.tables;
    this.newTable();
    for (const m of cfg.mappings) {
      if ('leafTableOf' in m) {
        const t = this.leafTableIpa(m.leafTableOf);
        if (t < 0) throw new RangeError(`leafTableOf 0x${m.leafTableOf.toString(16)}: that VA has no leaf`);
        this.addMapping({
          va: m.va,
          ipa: t,
          size: cfg.granule,
          attrIndx: m.attrIndx,
          ap: m.ap,
          af: m.af,
          xn: m.xn,
        });
      } else this.addMapping(m);
    }
    this.tablePages = this.pages;
  }

  /** Bytes one entry maps at `level`. */
  levelSize(level: number): number {
    return 2 ** ((this.pageShift - 3) * (3 - level) + this.pageShift);
  }

  /** Blocks the architecture allows with this granule and a 48-bit OA: 4K at levels 1-2, 16K and 64K at level 2. */
  private blockAllowed(level: number): boolean {
    return this.pageShift === 12 ? level === 1 || level === 2 : level === 2;
  }

  /** The IPA range the tables occupy: [tables, tablesEnd). */
  get tablesEnd(): number {
    return this.nextTable;
  }

  private newTable(): number {
    const ipa = this.nextTable;
    this.nextTable += this.cfg.granule;
    const words = new Uint32Array(this.ptrs * 2);
    this.byIpa.set(ipa, words);
    this.pages.push({ ipa, words });
    return ipa;
  }

  private index(va: number, level: number): number {
    // VAs are below 2^48, so the quotient's low bits survive the int32 conversion of `&`.
    return Math.floor(va / this.sizes[level]!) & (this.ptrs - 1);
  }

  /** The output address of a descriptor, bits [47:pageShift] (a block's low bits are the caller's to clear). */
  private oa(lo: number, hi: number): number {
    return (hi & 0xffff) * 2 ** 32 + (lo >>> this.pageShift) * 2 ** this.pageShift;
  }

  private addMapping(m: Stage1Mapping): void {
    let va = m.va;
    let ipa = m.ipa;
    const end = m.va + m.size;
    const attrs =
      (m.attrIndx << S1D_ATTRINDX_SHIFT) |
      (m.ap === 'ro' ? S1D_AP2 : 0) |
      (3 << S1D_SH_SHIFT) |
      (m.af ? S1D_AF : 0);
    const hiAttrs = m.xn ? S1D_HI_PXN | S1D_HI_UXN : 0;
    while (va < end) {
      let words = this.byIpa.get(this.cfg.tables)!;
      for (let level = this.startLevel; level <= 3; level++) {
        const idx = this.index(va, level);
        const size = this.sizes[level]!;
        const leaf =
          level === 3 ||
          (this.cfg.blocks === true &&
            this.blockAllowed(level) &&
            va % size === 0 &&
            ipa % size === 0 &&
            end - va >= size);
        if (leaf) {
          words[2 * idx] = ((ipa % 2 ** 32) | attrs | S1D_VALID | (level === 3 ? S1D_TABLE : 0)) >>> 0;
          words[2 * idx + 1] = (Math.floor(ipa / 2 ** 32) | hiAttrs) >>> 0;
          va += size;
          ipa += size;
          break;
        }
        let lo = words[2 * idx]!;
        if ((lo & (S1D_VALID | S1D_TABLE)) !== (S1D_VALID | S1D_TABLE)) {
          const t = this.newTable();
          lo = ((t % 2 ** 32) | S1D_VALID | S1D_TABLE) >>> 0;
          words[2 * idx] = lo;
          words[2 * idx + 1] = Math.floor(t / 2 ** 32);
        }
        words = this.byIpa.get(this.oa(lo, words[2 * idx + 1]!))!;
      }
    }
  }

  /**
   * The IPA of the table page that holds the builder's leaf descriptor for `va` (as built, before
   * the run), or −1 if the builder mapped no leaf there.
   */
  leafTableIpa(va: number): number {
    let tableIpa = this.cfg.tables;
    for (let level = this.startLevel; level <= 3; level++) {
      const words = this.byIpa.get(tableIpa);
      if (words === undefined) return -1;
      const idx = this.index(va, level);
      const lo = words[2 * idx]!;
      if ((lo & S1D_VALID) === 0) return -1;
      if (level === 3 || (lo & S1D_TABLE) === 0) return tableIpa;
      tableIpa = this.oa(lo, words[2 * idx + 1]!);
    }
    return -1;
  }

  /**
   * Starts a walk of `w.va` (set by the caller: an argument would be boxed): the first
   * descriptor to read is at w.descIpa. Returns S1_DESC, or S1_FAULT_TRANSLATION (level 0) for a
   * VA outside the 2^vaBits the TTBR0 region covers.
   */
  begin(w: Stage1Walk): number {
    w.level = this.startLevel;
    w.tableIpa = this.cfg.tables;
    w.descWrite = false;
    w.writeBack = false;
    if (w.va >= this.vaLimit) {
      w.faultLevel = 0;
      return S1_FAULT_TRANSLATION;
    }
    w.descIpa = w.tableIpa + this.walkIndex(w) * 8;
    return S1_DESC;
  }

  /** index() of the walk's VA at its level. */
  private walkIndex(w: Stage1Walk): number {
    return Math.floor(w.va / this.sizes[w.level]!) & (this.ptrs - 1);
  }

  /**
   * Consumes the descriptor in w.descLo/w.descHi, read at w.descIpa. Returns S1_DESC (read the
   * next w.descIpa: a lower table, or the same descriptor again as a write when w.descWrite),
   * S1_DONE (w.ipa, attributes and the leaf set) or a stage-1 fault (w.faultLevel). `write` and
   * `exec` are the access's permission needs; `updateAf` false makes a walk with HA leave AF
   * alone (AT where the implementation does not update it).
   */
  step(w: Stage1Walk, write: boolean, exec: boolean, updateAf: boolean): number {
    let lo = w.descLo;
    const hi = w.descHi;
    const level = w.level;
    if ((lo & S1D_VALID) === 0) return this.fault(w, S1_FAULT_TRANSLATION);
    const table = (lo & S1D_TABLE) !== 0;
    if (level < 3 && table) {
      const next = this.oa(lo, hi);
      if (next >= this.ipsLimit) return this.fault(w, S1_FAULT_ADDRSIZE);
      w.level = level + 1;
      w.tableIpa = next;
      w.descIpa = next + this.walkIndex(w) * 8;
      w.descWrite = false;
      return S1_DESC;
    }
    // Level 3 with bit 1 clear is reserved, and so is a block where the granule allows none.
    if (level === 3 ? !table : !this.blockAllowed(level)) return this.fault(w, S1_FAULT_TRANSLATION);
    const size = this.sizes[level]!;
    const out = this.oa(lo, hi);
    const base = Math.floor(out / size) * size;
    if (base >= this.ipsLimit) return this.fault(w, S1_FAULT_ADDRSIZE);
    if ((lo & S1D_AF) === 0) {
      if (!this.cfg.ha) return this.fault(w, S1_FAULT_ACCESS);
      if (updateAf) {
        if (!w.descWrite) {
          // The hardware writes AF back (an atomic update of the descriptor): the same
          // descriptor, now as a stage-2 write access.
          w.descWrite = true;
          return S1_DESC;
        }
        lo = (lo | S1D_AF) >>> 0;
        w.descLo = lo;
        w.writeBack = true;
      }
    }
    // EL1 permissions: AP[2] makes it read-only; PXN, or a location EL0 may write
    // (AP[2:1] = 0b01), is not executable at EL1.
    if (write && (lo & S1D_AP2) !== 0) return this.fault(w, S1_FAULT_PERMISSION);
    if (exec && ((hi & S1D_HI_PXN) !== 0 || (lo & (S1D_AP2 | S1D_AP1)) === S1D_AP1))
      return this.fault(w, S1_FAULT_PERMISSION);
    w.ipa = base + (w.va - Math.floor(w.va / size) * size);
    w.attrIndx = (lo >> S1D_ATTRINDX_SHIFT) & 7;
    w.sh = (lo >> S1D_SH_SHIFT) & 3;
    return S1_DONE;
  }

  private fault(w: Stage1Walk, kind: number): number {
    w.faultLevel = w.level;
    return kind;
  }

  /** MAIR_EL1.Attr<n> for an attrIndx (Device-nGnRnE if absent). */
  mairAttr(attrIndx: number): number {
    return this.cfg.mair[attrIndx] ?? MAIR_DEVICE_nGnRnE;
  }
}

/**
 * The stage-1 start level for a granule and a VA size (TCR_EL1.T0SZ = 64 − vaBits): as many
 * levels as the VA bits above the page offset need, at (pageShift − 3) bits per level.
 */
export function stage1StartLevel(granule: number, vaBits: number): number {
  const pageShift = granule === 4096 ? 12 : granule === 16384 ? 14 : 16;
  return 4 - Math.ceil((vaBits - pageShift) / (pageShift - 3));
}
