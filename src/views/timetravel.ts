/**
 * Time travel over a write journal (src/pgtable/journal.ts): the stage-2 table as it was
 * after any unit of work, rebuilt from the journal.
 *
 * How: a cursor over a shadow copy of the table's pages. It starts at the journal's base
 * (the table when the journal was attached) and moves by applying writes forwards (each
 * sets its new value) or undoing them backwards (each restores its old value), unit by
 * unit. Because every store into the table words is journaled (the pool's zeroing of a freed
 * page included), the shadow page of any pool index always holds exactly what the real page
 * held at that moment; table descriptors name their child by physical address, which maps
 * to the same pool index, so the shadow is walked as the real table would be.
 *
 * Cold path: for debuggers, the CLI and tests; allocates freely.
 */

import { pteIsTable } from '../pgtable/descriptor.js';
import type { AddrLayout } from '../pgtable/descriptor.js';
import type { Geometry } from '../pgtable/geometry.js';
import { Journal, JournalEntry } from '../pgtable/journal.js';
import { visitTablePages, visitValidDescriptors } from '../pgtable/tablewalk.js';
import type { DescriptorVisit, TableSource } from '../pgtable/tablewalk.js';
import { NULL_EVENTS, TablePool } from '../pgtable/pool.js';
import { Stage2PageTable } from '../pgtable/stage2.js';
import type { GranuleSize } from '../pgtable/geometry.js';
import { DEBUG_DESCRIPTION, INSPECT_CUSTOM } from './hooks.js';

/** One descriptor a unit changed: where, and its value before and after (unsigned halves). */
export interface DescriptorChange {
  /** The IPA the entry maps, or null for an entry of a table not linked before or after. */
  ipa: number | null;
  level: number;
  page: number;
  idx: number;
  oldLo: number;
  oldHi: number;
  newLo: number;
  newHi: number;
  /** Writes the unit made to this entry (break-before-make makes two: LOCKED, then new). */
  writes: number;
}

export type { DescriptorVisit } from '../pgtable/tablewalk.js';

/**
 * The table rebuilt from `pgt`'s journal, positioned after a unit (seek()). Implements the
 * DescriptorContext of the views (geo, layout, fwb), so DescriptorView decodes its entries.
 */
export class TimeTravel {
  readonly journal: Journal;
  readonly geo: Geometry;
  readonly layout: AddrLayout;
  readonly fwb: boolean;
  private readonly pgt: Stage2PageTable;
  /** Shadow pages by pool index (created on first write). */
  private readonly pages = new Map<number, Int32Array>();
  /** Writes applied: the shadow holds the table after journal rows [0, applied). */
  private applied = 0;
  private readonly scratch = new JournalEntry();

  /** Starts at the journal's base (before its first write). Throws if `pgt` has no journal. */
  constructor(pgt: Stage2PageTable) {
    if (pgt.journal === null) throw new Error('time travel: the table has no journal (pgt.journal is null)');
    this.pgt = pgt;
    this.journal = pgt.journal;
    this.geo = pgt.geo;
    this.layout = pgt.layout;
    this.fwb = pgt.fwb;
    for (const [p, w] of this.journal.start.pages) this.pages.set(p, w.slice());
  }

  /** A one-line summary for console.log and debuggers (never the shadow pages). */
  [INSPECT_CUSTOM](): string {
    return `TimeTravel { after unit ${this.pos} of ${this.journal.units}, write ${this.applied} of ${this.journal.length} }`;
  }
  [DEBUG_DESCRIPTION](): string {
    return this[INSPECT_CUSTOM]();
  }

  /** The number of units (seek() takes −1, before the first, to units − 1). */
  get units(): number {
    return this.journal.units;
  }

  /** The unit the state is after (−1: the base, or before the first unit's writes). */
  get position(): number {
    return this.pos;
  }
  private pos = -1;

  private shadow(page: number): Int32Array {
    let w = this.pages.get(page);
    if (w === undefined) {
      w = new Int32Array(this.journal.pageSize / 4);
      this.pages.set(page, w);
    }
    return w;
  }

  /** Moves to the journal row count `n` (the table after writes [0, n)). */
  seekWrite(n: number): void {
    const j = this.journal;
    if (n < 0 || n > j.length) throw new RangeError(`time travel: write ${n} is outside 0..${j.length}`);
    while (this.applied < n) {
      const i = this.applied++;
      j.applyTo(i, this.shadow(j.pageOf(i)), true);
    }
    while (this.applied > n) {
      const i = --this.applied;
      j.applyTo(i, this.shadow(j.pageOf(i)), false);
    }
  }

  /**
   * Moves to the table as it was after unit `u` (−1: before the first unit, with any writes
   * made before it). Returns this.
   */
  seek(u: number): this {
    const j = this.journal;
    if (!Number.isInteger(u) || u < -1 || u >= j.units)
      throw new RangeError(`time travel: unit ${u} is outside -1..${j.units - 1}`);
    this.seekWrite(u < 0 ? (j.units > 0 ? j.unitStart(0) : j.length) : j.unitEnd(u));
    this.pos = u;
    return this;
  }

  /**
   * Moves to the table as it was after the units whose step is below `step` (the first
   * `step` scenario steps or replay lines). Returns this.
   */
  seekStep(step: number): this {
    const j = this.journal;
    let u = -1;
    while (u + 1 < j.units && j.unitStepIndex(u + 1) < step) u++;
    return this.seek(u);
  }

  /** The pool index → [IPA, level] of every table page reachable from the root now. */
  tablePages(): Map<number, [number, number]> {
    const out = new Map<number, [number, number]>();
    visitTablePages(this.source(), (page, level, base) => out.set(page, [base, level]));
    return out;
  }

  /** The shadow tree as tablewalk.ts reads it. */
  private source(): TableSource {
    return {
      geo: this.geo,
      pgd: this.journal.start.pgd,
      words: (page) => this.pages.get(page),
      child: (lo, hi) => this.childOf(lo, hi),
    };
  }

  private childOf(lo: number, hi: number): number {
    return this.pgt.pool.pageOfTable(this.layout, lo, hi);
  }

  /**
   * What unit `u` changed: one record per entry it wrote (net: first old value, last new
   * value), in the order of first write, with IPAs from the table before or after the unit.
   * Leaves the state after unit `u`.
   */
  changes(u: number): DescriptorChange[] {
    const j = this.journal;
    this.seek(u - 1 < -1 ? -1 : u - 1);
    if (u < 0) return [];
    const before = this.tablePages();
    this.seek(u);
    const after = this.tablePages();
    const byKey = new Map<number, DescriptorChange>();
    const e = this.scratch;
    for (let i = j.unitStart(u); i < j.unitEnd(u); i++) {
      j.entry(i, e);
      const key = e.page * 65536 + e.idx;
      const c = byKey.get(key);
      if (c !== undefined) {
        c.newLo = e.newLo;
        c.newHi = e.newHi;
        c.writes++;
        continue;
      }
      const where = after.get(e.page) ?? before.get(e.page);
      byKey.set(key, {
        ipa: where === undefined ? null : where[0] + e.idx * this.geo.granuleSize(e.level),
        level: e.level,
        page: e.page,
        idx: e.idx,
        oldLo: e.oldLo,
        oldHi: e.oldHi,
        newLo: e.newLo,
        newHi: e.newHi,
        writes: 1,
      });
    }
    return [...byKey.values()];
  }

  /**
   * Visits every valid descriptor reachable from the root, in ascending IPA order, tables
   * before their children (as Stage2PageTable.forEachValid()).
   */
  forEachValid(fn: DescriptorVisit): void {
    visitValidDescriptors(this.source(), fn);
  }

  /**
   * The entry covering `ipa` and its level now (as getLeaf(): lo = hi = 0 at the level of
   * the hole for an unmapped address).
   */
  leafAt(ipa: number): { lo: number; hi: number; level: number } {
    const geo = this.geo;
    let level = geo.startLevel;
    let page =
      this.journal.start.pgd +
      (geo.pgdPages === 1 ? 0 : Math.floor(ipa / geo.granuleSize(level) / geo.ptrsPerPte));
    for (;;) {
      const w = this.pages.get(page);
      const i = 2 * geo.index(ipa, level);
      const lo = w === undefined ? 0 : w[i]!;
      const hi = w === undefined ? 0 : w[i + 1]!;
      if (level === 3 || !pteIsTable(lo, level)) return { lo: lo >>> 0, hi: hi >>> 0, level };
      page = this.childOf(lo, hi);
      level++;
    }
  }

  /**
   * A new Stage2PageTable (its own pool, no events) holding exactly this state: the same
   * pool indices, so the same table descriptors, and KVM's refcounts (1 + counted entries).
   * The original's PGD must be its pool's first allocation (a Kvm's and a replay's is).
   * Returns the table.
   */
  toPageTable(): Stage2PageTable {
    const src = this.pgt;
    const pool = new TablePool(src.pool.pageSize);
    const pgt = new Stage2PageTable({
      granule: src.geo.pageSize as GranuleSize,
      ipaBits: src.geo.iaBits,
      startLevel: src.geo.startLevel,
      fwb: src.fwb,
      lpa2: src.lpa2,
      tlbiRange: src.tlbiRange,
      flags: src.flags,
      pool,
      events: NULL_EVENTS,
    });
    const pgd = this.journal.start.pgd;
    if (pgt.pgd !== pgd)
      throw new Error(`time travel: the original PGD is pool page ${pgd}, a fresh table's is ${pgt.pgd}`);
    const reachable = this.tablePages();
    let max = -1;
    for (const p of reachable.keys()) max = Math.max(max, p);
    const held: number[] = [];
    for (;;) {
      const p = pool.allocPage();
      if (p < 0 || p > max) {
        if (p >= 0) pool.putPage(p);
        break;
      }
      held.push(p);
    }
    for (const [p] of reachable) {
      const w = this.pages.get(p);
      if (w === undefined) continue;
      pool.pages[p]!.set(w);
      for (let i = 0; i < w.length; i += 2) if (w[i] !== 0 || w[i + 1] !== 0) pool.getPage(p);
    }
    for (const p of held) if (!reachable.has(p)) pool.putPage(p);
    return pgt;
  }
}
