/**
 * The guest's own stage-1 translation (TTBR0_EL1, 48-bit VA), laid out as real tables in
 * guest memory at the IPA the scenario names. What matters to KVM is where those tables
 * are: every descriptor the walk reads is a stage-2 access to its IPA, and a stage-2 fault
 * there is reported with S1PTW set. The descriptors' contents are held here (the model does
 * not keep guest memory contents), in one structure per table page.
 *
 * Blocks: the builder uses the largest leaf that is aligned and fits (4K: 1G, 2M, 4K;
 * 16K: 32M, 16K; 64K: 512M, 64K), as a guest kernel's linear map would.
 */

import { MAIR_DEVICE_nGnRnE } from '../pgtable/memattr.js';

/** One guest mapping, as the scenario gives it. */
export interface Stage1Mapping {
  va: number;
  ipa: number;
  size: number;
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
  mappings: readonly Stage1Mapping[];
}

/** Entry kinds of a stage-1 table. */
const E_INVALID = 0;
const E_TABLE = 1;
const E_LEAF = 2;

/** One stage-1 table page: per entry, its kind and value (child table IPA, or leaf output). */
interface S1Table {
  kind: Int8Array;
  /** E_TABLE: the child table's IPA. E_LEAF: the output IPA of the block or page. */
  val: Float64Array;
  /** E_LEAF: index of the mapping (attributes). */
  map: Int32Array;
  /** E_LEAF: AF as the hardware sees it now (HA sets it). */
  af: Uint8Array;
}

/** Stage-1 outcomes of one walk step. */
export const S1_DESC = 0;
export const S1_DONE = 1;
export const S1_FAULT_TRANSLATION = 2;
export const S1_FAULT_ACCESS = 3;
export const S1_FAULT_PERMISSION = 4;

/**
 * State of an in-progress stage-1 walk: the vCPU drives it one descriptor at a time, doing
 * the stage-2 access for each descriptor's IPA in between.
 */
export class Stage1Walk {
  va = 0;
  level = 0;
  tableIpa = 0;
  /** The IPA of the descriptor the walk reads next. */
  descIpa = 0;
  /** The descriptor read needs a write (a hardware AF update with HA). */
  descWrite = false;
  /** Result: the output IPA, and the mapping's attributes. */
  ipa = 0;
  attrIndx = 0;
  ap: 'rw' | 'ro' = 'rw';
  xn = false;
  /** The level a stage-1 fault was found at. */
  faultLevel = 0;
}

/** The guest's stage-1 tables. */
export class GuestStage1 {
  readonly cfg: Stage1Config;
  readonly pageShift: number;
  readonly ptrs: number;
  readonly startLevel: number;
  /**
   * The tables by their IPA in granule units: a table's IPA itself could be past the
   * small-integer range, and a double key costs a heap number on every lookup.
   */
  private readonly tables = new Map<number, S1Table>();
  private nextTable: number;
  /** levelSize() by level, read inline on the walk (a call would return a boxed double). */
  private readonly sizes = new Float64Array(4);

  constructor(cfg: Stage1Config) {
    this.cfg = cfg;
    this.pageShift = cfg.granule === 4096 ? 12 : cfg.granule === 16384 ? 14 : 16;
    this.ptrs = cfg.granule / 8;
    // 48-bit VA: 4 levels for 4K and 16K, 3 for 64K.
    this.startLevel = cfg.granule === 65536 ? 1 : 0;
    for (let l = 0; l < 4; l++) this.sizes[l] = this.levelSize(l);
    this.nextTable = cfg.tables;
    this.newTable();
    cfg.mappings.forEach((m, i) => this.addMapping(m, i));
  }

  /** Bytes one entry maps at `level`. */
  levelSize(level: number): number {
    return 2 ** ((this.pageShift - 3) * (4 - level) + 3);
  }

  private blockAllowed(level: number): boolean {
    return level === 3 || (this.pageShift === 12 ? level >= 1 : level >= 2);
  }

  /** The IPA range the tables occupy: [tables, end). */
  get tablesEnd(): number {
    return this.nextTable;
  }

  private newTable(): number {
    const ipa = this.nextTable;
    this.nextTable += this.cfg.granule;
    this.tables.set(ipa / this.cfg.granule, {
      kind: new Int8Array(this.ptrs),
      val: new Float64Array(this.ptrs),
      map: new Int32Array(this.ptrs),
      af: new Uint8Array(this.ptrs),
    });
    return ipa;
  }

  private index(va: number, level: number): number {
    // VAs are below 2^48, so the quotient's low bits survive the int32 conversion of `&`.
    return Math.floor(va / this.levelSize(level)) & (this.ptrs - 1);
  }

  private addMapping(m: Stage1Mapping, mi: number): void {
    let va = m.va;
    let ipa = m.ipa;
    const end = m.va + m.size;
    while (va < end) {
      let tableIpa = this.cfg.tables;
      for (let level = this.startLevel; level <= 3; level++) {
        const t = this.tables.get(tableIpa / this.cfg.granule)!;
        const idx = this.index(va, level);
        const size = this.levelSize(level);
        if (this.blockAllowed(level) && va % size === 0 && ipa % size === 0 && end - va >= size) {
          t.kind[idx] = E_LEAF;
          t.val[idx] = ipa;
          t.map[idx] = mi;
          t.af[idx] = m.af ? 1 : 0;
          va += size;
          ipa += size;
          break;
        }
        if (t.kind[idx] !== E_TABLE) {
          t.kind[idx] = E_TABLE;
          t.val[idx] = this.newTable();
        }
        tableIpa = t.val[idx]!;
      }
    }
  }

  /**
   * Starts a walk of `w.va` (set by the caller: an argument would be boxed): the first
   * descriptor to read.
   */
  begin(w: Stage1Walk): void {
    w.level = this.startLevel;
    w.tableIpa = this.cfg.tables;
    w.descIpa = w.tableIpa + this.walkIndex(w) * 8;
    w.descWrite = false;
  }

  /** index() of the walk's VA at its level. */
  private walkIndex(w: Stage1Walk): number {
    return Math.floor(w.va / this.sizes[w.level]!) & (this.ptrs - 1);
  }

  /**
   * Consumes the descriptor at w.descIpa (whose stage-2 access succeeded). Returns S1_DESC
   * (read the next w.descIpa), S1_DONE (w.ipa and attributes set) or a stage-1 fault.
   */
  step(w: Stage1Walk, write: boolean, exec: boolean): number {
    const t = this.tables.get(w.tableIpa / this.cfg.granule);
    const idx = this.walkIndex(w);
    if (!t || t.kind[idx] === E_INVALID) {
      w.faultLevel = w.level;
      return S1_FAULT_TRANSLATION;
    }
    if (t.kind[idx] === E_TABLE) {
      w.level++;
      w.tableIpa = t.val[idx]!;
      w.descIpa = w.tableIpa + this.walkIndex(w) * 8;
      w.descWrite = false;
      return S1_DESC;
    }
    const m = this.cfg.mappings[t.map[idx]!]!;
    if (!t.af[idx]) {
      if (!this.cfg.ha) {
        w.faultLevel = w.level;
        return S1_FAULT_ACCESS;
      }
      if (!w.descWrite) {
        // The hardware must write AF back: the same descriptor, now as a write.
        w.descWrite = true;
        return S1_DESC;
      }
      t.af[idx] = 1;
    }
    if ((write && m.ap === 'ro') || (exec && m.xn)) {
      w.faultLevel = w.level;
      return S1_FAULT_PERMISSION;
    }
    const size = this.sizes[w.level]!;
    w.ipa = t.val[idx]! + (w.va - Math.floor(w.va / size) * size);
    w.attrIndx = m.attrIndx;
    w.ap = m.ap;
    w.xn = m.xn;
    return S1_DONE;
  }

  /** MAIR_EL1.Attr<n> for a mapping's attrIndx (Device-nGnRnE if absent). */
  mairAttr(attrIndx: number): number {
    return this.cfg.mair[attrIndx] ?? MAIR_DEVICE_nGnRnE;
  }
}
