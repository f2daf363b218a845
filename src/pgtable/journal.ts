/**
 * The stage-2 write journal ("time travel"): a compact log of every store into the table's
 * descriptor words, from which the table can be rebuilt as it was after any unit of work
 * (an access, a scenario step, a replay operation: see timetravel.ts).
 *
 * Layout: one row of eight Int32 words per write in one growable typed array (nothing is
 * allocated per write; the array doubles when full; one array, so a write touches one cache
 * line):
 *
 *   [8i + 0]  page    pool index of the table page written
 *   [8i + 1]  slot    entry index << 8 | (level + 1) << 4 | site
 *   [8i + 2..5]       old lo, old hi, new lo, new hi (signed halves)
 *   [8i + 6]  unit    the unit of work (beginUnit()) the write belongs to, −1 before the first
 *   [8i + 7]  unused
 *
 * and one row per unit: its operation code (opCode(): an interned name such as "access",
 * "munmap", "map"), its step (scenario step or replay line index), its access index (−1 for
 * none) and its first write.
 *
 * Why pages and entry indices rather than IPAs: writes into an unlinked table (split's
 * create_unlinked, free_unlinked) have no IPA until the table is linked (or none at all), and
 * the position is what a rebuild needs. The IPA of a write is resolved from the rebuilt table
 * (timetravel.ts, `ipaOf`). The pool zeroes a page when it frees it (put_page); that store is
 * journaled too, by the free walker (site FREE), so every store the table words see is here.
 *
 * Cost: off (the page table's `journal` is null) one null test per store; on, one call of a
 * few typed-array stores per descriptor write.
 */

import { visitTablePages } from './tablewalk.js';
import type { Stage2PageTable } from './stage2.js';
import { DESCRIPTION_HOOK, INSPECT_HOOK } from './debughooks.js';

/** stage2_try_set_pte(): the attribute, age and map walkers' stores, break's LOCKED store. */
export const JOURNAL_SITE_SET = 0;
/** stage2_make_pte(): the "make" of break-before-make. */
export const JOURNAL_SITE_MAKE = 1;
/** map()'s fast path installing a leaf into an empty entry. */
export const JOURNAL_SITE_INSTALL = 2;
/** stage2_unmap_walker(): stage2_unmap_put_pte() or dropping an annotation's reference. */
export const JOURNAL_SITE_UNMAP = 3;
/** stage2_free_walker(): the entry's page is freed, and put_page zeroes it. */
export const JOURNAL_SITE_FREE = 4;
/** The MMU's hardware access-flag update (VTCR_EL2.HA): no fault, no software. */
export const JOURNAL_SITE_HW_AF = 5;

/** Site names, by JOURNAL_SITE_* value. */
export const JOURNAL_SITE_NAMES: readonly string[] = ['set', 'make', 'install', 'unmap', 'free', 'hw-af'];

/** One journal row, decoded into a caller-owned object by Journal.entry(). */
export class JournalEntry {
  page = 0;
  /** The entry's index within its page. */
  idx = 0;
  level = 0;
  /** JOURNAL_SITE_*. */
  site = 0;
  /** The descriptor before and after, as unsigned halves. */
  oldLo = 0;
  oldHi = 0;
  newLo = 0;
  newHi = 0;
  /** The unit of work (−1: before the first unit). */
  unit = -1;
}

/** The table as the journal started: its geometry and the words of its non-empty pages. */
export interface JournalBase {
  readonly pgd: number;
  /** Pool index → a copy of the page's words, for every table page reachable from the root. */
  readonly pages: ReadonlyMap<number, Int32Array>;
}

const INITIAL_ROWS = 1024;
/** Int32 words per row. */
const ROW = 8;

/**
 * The write journal of one Stage2PageTable. Attach with `pgt.journal = new Journal(pgt)`
 * (Kvm's and ScenarioRunner's `journal` option do it); the journal snapshots the table's
 * current words as its base. Units are marked by whoever drives the table (beginUnit()).
 */
export class Journal {
  /** Writes recorded. */
  length = 0;
  /** Units begun. */
  units = 0;
  /** The table's pool page size in bytes (the rebuild's granule). */
  readonly pageSize: number;
  private base: JournalBase;
  private rows = new Int32Array(INITIAL_ROWS * ROW);
  /** Rows the array holds. */
  private capacity = INITIAL_ROWS;
  private unitOp = new Int32Array(64);
  private unitStep = new Int32Array(64);
  private unitAccess = new Float64Array(64);
  private unitFirst = new Int32Array(64);
  private readonly opNames: string[] = [];
  private readonly opIndex = new Map<string, number>();
  private current = -1;
  private readonly pgt: Stage2PageTable;

  /** Snapshots `pgt`'s words as the base; attach the result as `pgt.journal`. */
  constructor(pgt: Stage2PageTable) {
    this.pgt = pgt;
    this.pageSize = pgt.pool.pageSize;
    this.base = snapshot(pgt);
  }

  /** The table as it was when the journal started (or was last reset). */
  get start(): JournalBase {
    return this.base;
  }

  /** Forgets every write and unit and snapshots the table again as the new base. */
  reset(): void {
    this.length = 0;
    this.units = 0;
    this.current = -1;
    this.base = snapshot(this.pgt);
  }

  /** The code of operation name `name` (interned: call once, keep the code). Returns it. */
  opCode(name: string): number {
    let c = this.opIndex.get(name);
    if (c === undefined) {
      c = this.opNames.length;
      this.opNames.push(name);
      this.opIndex.set(name, c);
    }
    return c;
  }

  /** The name of operation code `code`. */
  opName(code: number): string {
    return this.opNames[code] ?? `op${code}`;
  }

  /**
   * Starts a unit of work: the writes until the next beginUnit() belong to it. `step` is the
   * scenario step or replay line index, `access` the run's access index (−1: not an access).
   */
  beginUnit(op: number, step: number, access: number): void {
    const u = this.units;
    if (u === this.unitOp.length) this.growUnits();
    this.unitOp[u] = op;
    this.unitStep[u] = step;
    this.unitAccess[u] = access;
    this.unitFirst[u] = this.length;
    this.current = u;
    this.units = u + 1;
  }

  /** The unit the writes go to now (−1 before the first). */
  get currentUnit(): number {
    return this.current;
  }

  /** Unit `u`'s operation code, step, access index and first write. */
  unitOpCode(u: number): number {
    return this.unitOp[u]!;
  }
  unitStepIndex(u: number): number {
    return this.unitStep[u]!;
  }
  unitAccessIndex(u: number): number {
    return this.unitAccess[u]!;
  }
  /** The first write of unit `u` (−1: before the first unit); its end is the next unit's first. */
  unitStart(u: number): number {
    return u < 0 ? 0 : this.unitFirst[u]!;
  }
  unitEnd(u: number): number {
    return u + 1 < this.units ? this.unitFirst[u + 1]! : this.length;
  }

  /**
   * Records a store of (newLo, newHi) into entry `idx` of table page `page` (its words
   * `words`, read here for the old value: call before the store) at `level`, from `site`
   * (JOURNAL_SITE_*). Every argument is a small integer: nothing is boxed or allocated.
   */
  record(
    words: Int32Array,
    page: number,
    idx: number,
    level: number,
    newLo: number,
    newHi: number,
    site: number,
  ): void {
    const n = this.length;
    if (n === this.capacity) this.grow();
    const r = this.rows;
    const o = n * ROW;
    r[o] = page;
    r[o + 1] = (idx << 8) | ((level + 1) << 4) | site;
    r[o + 2] = words[2 * idx]!;
    r[o + 3] = words[2 * idx + 1]!;
    r[o + 4] = newLo;
    r[o + 5] = newHi;
    r[o + 6] = this.current;
    this.length = n + 1;
  }

  /** Decodes write `i` into `out`. Returns `out`. */
  entry(i: number, out: JournalEntry = new JournalEntry()): JournalEntry {
    const r = this.rows;
    const o = i * ROW;
    const s = r[o + 1]!;
    out.page = r[o]!;
    out.idx = s >>> 8;
    out.level = ((s >>> 4) & 0xf) - 1;
    out.site = s & 0xf;
    out.oldLo = r[o + 2]! >>> 0;
    out.oldHi = r[o + 3]! >>> 0;
    out.newLo = r[o + 4]! >>> 0;
    out.newHi = r[o + 5]! >>> 0;
    out.unit = r[o + 6]!;
    return out;
  }

  /** Applies write `i` (forwards) or undoes it (backwards) on `words`, the page's copy. */
  applyTo(i: number, words: Int32Array, forwards: boolean): void {
    const r = this.rows;
    const o = i * ROW;
    const w = 2 * (r[o + 1]! >>> 8);
    words[w] = forwards ? r[o + 4]! : r[o + 2]!;
    words[w + 1] = forwards ? r[o + 5]! : r[o + 3]!;
  }

  /** The table page write `i` stored into. */
  pageOf(i: number): number {
    return this.rows[i * ROW]!;
  }

  /** A one-line summary for console.log and debuggers (never the typed arrays). */
  [INSPECT_HOOK](): string {
    return `Journal { ${this.length} writes in ${this.units} units, ${this.bytes} bytes }`;
  }
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }

  /** Bytes the journal's arrays hold now (its memory cost). */
  get bytes(): number {
    return this.rows.length * 4 + this.unitOp.length * 24;
  }

  private grow(): void {
    this.capacity *= 2;
    this.rows = widen(this.rows, this.capacity * ROW);
  }

  private growUnits(): void {
    const n = this.unitOp.length * 2;
    this.unitOp = widen(this.unitOp, n);
    this.unitStep = widen(this.unitStep, n);
    this.unitFirst = widen(this.unitFirst, n);
    const a = new Float64Array(n);
    a.set(this.unitAccess);
    this.unitAccess = a;
  }
}

function widen(a: Int32Array<ArrayBuffer>, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

/**
 * A copy of every table page reachable from `pgt`'s root (cold: at attach and reset). The
 * pages outside the tree are all zero: a page is zeroed when freed and handed out zeroed, and
 * the only pages in use outside the tree (memcache pages) are untouched.
 */
function snapshot(pgt: Stage2PageTable): JournalBase {
  const pages = new Map<number, Int32Array>();
  const pgd = pgt.pgd;
  if (pgd < 0) return { pgd, pages };
  const all = pgt.pool.pages;
  visitTablePages(pgt.tableSource(), (page) => void pages.set(page, all[page]!.slice()));
  return { pgd, pages };
}
