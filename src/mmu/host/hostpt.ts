/**
 * The host's own (stage-1, userspace) page table for one mm: what
 * get_user_mapping_size() walks and what GUP finds.
 *
 * Three levels (PUD, PMD, PTE). Each level is stored sparsely in chunks of
 * one table page (2^(PAGE_SHIFT-3) entries), created when first needed and
 * kept afterwards (the kernel does not free emptied tables on zap either).
 * A table that a huge leaf replaces is freed for the accounting, but its
 * chunk stays, zeroed, to be reused when a table is needed there again: a
 * fault that rebuilds tables (a driver refilling a zapped PFNMAP range)
 * allocates nothing, and neither do lookups. An entry is a leaf, a table pointer (HPTE_TABLE:
 * look one level down), a zapped marker, or empty. The walk is top-down, so a
 * huge leaf can be installed only where the entry above the tables is empty
 * (pmd_none), exactly as in the kernel.
 *
 * Entry flags (16 bits per entry):
 *
 *   bit 0  HPTE_PRESENT  valid leaf
 *   bit 1  HPTE_WRITE    writable
 *   bit 2  HPTE_ZERO     maps the shared (huge) zero page
 *   bit 3  HPTE_SPECIAL  pte_special / raw pfn: no refcounted struct page (pfnmap)
 *   bit 4  HPTE_CONT     part of a contiguous-hint range (cont-PTE/cont-PMD hugetlb)
 *   bit 5  HPTE_OWNED    maps a folio this mapping owns (freed when zapped)
 *   bit 6  HPTE_FILE     a file (shmem) page mapped privately: a write must copy it
 *   bit 7  HPTE_ZAPPED   not present; pfnmap/mixedmap refill must come from a fault
 *   bit 8  HPTE_TABLE    points to a table at the next level
 *
 * Read idiom: `(flags & HPTE_X) !== 0`. A leaf stores the pfn of its first page.
 */
import { shr, type HostGranule, pow2 } from './granule.js';
import { HostOp, type HvaOp, type HvaPfnOp } from './op.js';

/** Valid leaf. */
export const HPTE_PRESENT = 1 << 0;
/** Writable. */
export const HPTE_WRITE = 1 << 1;
/** Maps the shared zero page or the huge zero folio. */
export const HPTE_ZERO = 1 << 2;
/** No refcounted struct page behind it (pte_special: pfnmap). */
export const HPTE_SPECIAL = 1 << 3;
/** Contiguous-hint entry. */
export const HPTE_CONT = 1 << 4;
/** The mapping owns the folio (anon, hugetlb or shmem): freed when a zap covers it. */
export const HPTE_OWNED = 1 << 5;
/** A file page mapped privately: a write copies it. */
export const HPTE_FILE = 1 << 6;
/** Zapped marker (pfnmap/mixedmap): not present and not to be synthesised. */
export const HPTE_ZAPPED = 1 << 7;
/** Table pointer: the walk continues one level down. */
export const HPTE_TABLE = 1 << 8;

/** Level index of PTE entries. */
export const HOST_LEVEL_PTE = 0;
/** Level index of PMD entries. */
export const HOST_LEVEL_PMD = 1;
/** Level index of PUD entries. */
export const HOST_LEVEL_PUD = 2;

/** A reusable result of HostPageTable.lookup(). */
export interface HostLeaf {
  /** Level of the entry found (HOST_LEVEL_*), or where the walk met an empty entry. */
  level: number;
  /** log2 of the entry size at `level` (PAGE/PMD/PUD shift). */
  shift: number;
  /** Start hva of the entry. */
  base: number;
  /** pfn of the leaf's first page (0 if none). */
  pfn: number;
  /** HPTE_* flags; 0 means the walk ended at an empty entry. */
  flags: number;
}

/** Returns a fresh HostLeaf to reuse across lookups. */
export function newHostLeaf(): HostLeaf {
  return { level: -1, shift: 0, base: 0, pfn: 0, flags: 0 };
}

interface Chunk {
  readonly pfn: Float64Array;
  readonly flags: Uint16Array;
  /** A table page in use (counted in `tables`); a freed one is all zeros. */
  live: boolean;
}

/** The sparse three-level host page table. */
export class HostPageTable {
  /** The page geometry. */
  readonly granule: HostGranule;
  /** Entry shifts per level: PAGE, PMD, PUD. */
  readonly shifts: readonly number[];
  /** Table pages allocated so far (chunks), for accounting. */
  tables = 0;
  private readonly levels: Map<number, Chunk>[] = [new Map(), new Map(), new Map()];
  private readonly entries: number;
  private readonly sizes: readonly number[];
  // One-entry lookup cache per level (chunk key → chunk or undefined); reset on any structural change.
  private readonly cacheKey = [-1, -1, -1];
  private readonly cacheChunk: (Chunk | undefined)[] = [undefined, undefined, undefined];
  /** The carrier the argument-taking forms fill (lookup, set, clear, updateFlags). */
  private readonly arg = new HostOp();

  constructor(granule: HostGranule) {
    this.granule = granule;
    this.shifts = [granule.pageShift, granule.pmdShift, granule.pudShift];
    this.sizes = this.shifts.map((s) => pow2(s));
    this.entries = pow2(granule.tableBits);
  }

  /**
   * Walks top-down for hva, filling `out` with the first entry that is not a
   * table pointer: a leaf, a zapped marker, or an empty entry (flags 0, with
   * `level` saying where the walk stopped). Returns true if a present leaf was
   * found. Allocates nothing.
   */
  lookup(hva: number, out: HostLeaf): boolean {
    this.arg.hva = hva;
    return this.lookupOp(this.arg, out);
  }

  /**
   * lookup() of `op.hva`. The host fault path's forms of lookup(), set(), clear() and
   * updateFlags() take the address (and the pfn) in a caller-owned carrier (op.ts): V8 boxes a
   * double argument into a new heap number at every call it does not inline, and an hva
   * (0x7f.. in a VMM) is always past the small-integer range. The bodies compute with
   * Math.floor on doubles, never through a helper that would return one.
   */
  lookupOp(op: HvaOp, out: HostLeaf): boolean {
    const hva = op.hva;
    for (let level = HOST_LEVEL_PUD; level >= HOST_LEVEL_PTE; level--) {
      const size = this.sizes[level];
      const idx = Math.floor(hva / size);
      const key = Math.floor(idx / this.entries);
      let c: Chunk | undefined;
      if (this.cacheKey[level] === key) {
        c = this.cacheChunk[level];
      } else {
        c = this.levels[level].get(key);
        this.cacheKey[level] = key;
        this.cacheChunk[level] = c;
      }
      const i = idx - key * this.entries;
      const f = c === undefined ? 0 : c.flags[i];
      if ((f & HPTE_TABLE) !== 0) continue;
      out.level = level;
      out.shift = this.shifts[level];
      out.base = idx * size;
      out.pfn = c === undefined ? 0 : c.pfn[i];
      out.flags = f;
      return (f & HPTE_PRESENT) !== 0;
    }
    // Unreachable: a PTE entry is never a table.
    out.flags = 0;
    return false;
  }

  /**
   * Installs a leaf or zapped marker at `level` for the entry containing hva.
   * Parents become table pointers; tables below the entry are dropped (as a
   * huge leaf replacing a table does).
   */
  set(level: number, hva: number, pfn: number, flags: number): void {
    this.arg.hva = hva;
    this.arg.pfn = pfn;
    this.setOp(this.arg, level, flags);
  }

  /** set() of the entry containing `op.hva`, to `op.pfn`. */
  setOp(op: HvaPfnOp, level: number, flags: number): void {
    const hva = op.hva;
    for (let l = HOST_LEVEL_PUD; l > level; l--) {
      const c = this.chunkFor(op, l, true) as Chunk;
      const i = Math.floor(hva / this.sizes[l]) & (this.entries - 1);
      if ((c.flags[i] & HPTE_TABLE) === 0) {
        c.flags[i] = HPTE_TABLE;
        c.pfn[i] = 0;
      }
    }
    const c = this.chunkFor(op, level, true) as Chunk;
    const size = this.sizes[level];
    const idx = Math.floor(hva / size);
    const i = idx & (this.entries - 1);
    const wasTable = (c.flags[i] & HPTE_TABLE) !== 0;
    c.pfn[i] = op.pfn;
    c.flags[i] = flags;
    if (wasTable) this.dropBelow(level, idx * size);
  }

  /** Clears the entry at `level` containing hva (pte_clear); tables stay. */
  clear(level: number, hva: number): void {
    this.arg.hva = hva;
    this.clearOp(this.arg, level);
  }

  /** clear() of the entry containing `op.hva`. */
  clearOp(op: HvaOp, level: number): void {
    const hva = op.hva;
    const c = this.chunkFor(op, level, false);
    if (c === undefined) return;
    const i = Math.floor(hva / this.sizes[level]) & (this.entries - 1);
    c.flags[i] = 0;
    c.pfn[i] = 0;
  }

  /** ORs and then ANDs the flags of the entry at `level` containing hva. */
  updateFlags(level: number, hva: number, orBits: number, andMask: number): void {
    this.arg.hva = hva;
    this.updateFlagsOp(this.arg, level, orBits, andMask);
  }

  /** updateFlags() of the entry containing `op.hva`. */
  updateFlagsOp(op: HvaOp, level: number, orBits: number, andMask: number): void {
    const hva = op.hva;
    const c = this.chunkFor(op, level, false);
    if (c === undefined) return;
    const i = Math.floor(hva / this.sizes[level]) & (this.entries - 1);
    c.flags[i] = (c.flags[i] | orBits) & andMask;
  }

  /**
   * Calls `fn(level, base, pfn, flags)` for every leaf or zapped marker
   * overlapping [start, end), walking top-down in ascending address order.
   * The callback may clear or update the entry it is given.
   */
  forEach(
    start: number,
    end: number,
    fn: (level: number, base: number, pfn: number, flags: number) => void,
  ): void {
    this.walk(HOST_LEVEL_PUD, start, end, fn);
  }

  private walk(
    level: number,
    start: number,
    end: number,
    fn: (level: number, base: number, pfn: number, flags: number) => void,
  ): void {
    const shift = this.shifts[level];
    const map = this.levels[level];
    const firstIdx = shr(start, shift);
    const lastIdx = shr(end - 1, shift);
    const firstKey = shr(firstIdx, this.granule.tableBits);
    const lastKey = shr(lastIdx, this.granule.tableBits);
    const sparse = lastKey - firstKey + 1 > map.size;
    const keys = sparse
      ? [...map.keys()].filter((k) => k >= firstKey && k <= lastKey).sort((a, b) => a - b)
      : null;
    const visit = (key: number): void => {
      const c = map.get(key);
      if (c === undefined) return;
      const lo = Math.max(firstIdx, key * this.entries);
      const hi = Math.min(lastIdx, key * this.entries + this.entries - 1);
      for (let idx = lo; idx <= hi; idx++) {
        const i = idx & (this.entries - 1);
        const f = c.flags[i];
        if (f === 0) continue;
        const base = idx * pow2(shift);
        if ((f & HPTE_TABLE) !== 0) {
          if (level > HOST_LEVEL_PTE) {
            this.walk(level - 1, Math.max(start, base), Math.min(end, base + pow2(shift)), fn);
          }
        } else {
          fn(level, base, c.pfn[i], f);
        }
      }
    };
    if (keys === null) for (let k = firstKey; k <= lastKey; k++) visit(k);
    else for (const k of keys) visit(k);
  }

  /**
   * The chunk holding the entry at `level` for `op.hva` (the carrier, not the address: see
   * lookupOp), through the same one-entry cache per level as lookupOp(): chunks are never
   * removed from the map (a freed table stays, zeroed), so a cached key stays right, and a
   * chunk created here becomes the cached one. An install in the same region as the last one
   * (every fault of a sequential workload) does no Map lookup.
   */
  private chunkFor(op: HvaOp, level: number, create: boolean): Chunk | undefined {
    const key = Math.floor(op.hva / (this.sizes[level] * this.entries));
    let c: Chunk | undefined;
    if (this.cacheKey[level] === key) {
      c = this.cacheChunk[level];
    } else {
      c = this.levels[level].get(key);
      this.cacheKey[level] = key;
      this.cacheChunk[level] = c;
    }
    if (create) {
      if (c === undefined) {
        c = { pfn: new Float64Array(this.entries), flags: new Uint16Array(this.entries), live: true };
        this.levels[level].set(key, c);
        this.tables++;
        this.cacheChunk[level] = c;
      } else if (!c.live) {
        c.live = true;
        this.tables++;
      }
    }
    return c;
  }

  /** Frees every table below the entry at `level` starting at `base` (zeroed, kept for reuse). */
  private dropBelow(level: number, base: number): void {
    const size = pow2(this.shifts[level]);
    for (let l = level - 1; l >= HOST_LEVEL_PTE; l--) {
      const span = pow2(this.shifts[l] + this.granule.tableBits);
      for (let a = base; a < base + size; a += span) {
        const c = this.levels[l].get(shr(a, this.shifts[l] + this.granule.tableBits));
        if (c === undefined || !c.live) continue;
        c.pfn.fill(0);
        c.flags.fill(0);
        c.live = false;
        this.tables--;
      }
    }
  }
}
