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
 * allocates nothing, and neither do lookups. PTE-level chunks keep entries that fault-in
 * order leaves in arithmetic progression as a bitmap (one bit an entry: see Chunk), which is
 * what keeps a 1 TiB guest's host side small. An entry is a leaf, a table pointer (HPTE_TABLE:
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
import { DOUBLE_FIELD } from '../../pgtable/op.js';

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

/** The pfn carrier of an empty entry or a table pointer (pfn 0). */
const ZERO_PFN: { readonly pfn: number } = { pfn: 0 };

/**
 * One table page of entries. A PTE-level chunk starts in *linear* form: a bitmap of the
 * entries in use, which all have the same flags and map pfns in arithmetic progression (pfn
 * of entry i = anchorPfn + step × (i − anchorIdx), step ±1): what faults in address order
 * leave behind, whether the allocator hands pages out ascending (a bump pointer) or
 * descending (a free list refilled by a zap). It costs one bit per entry instead of ten bytes,
 * which is what lets a 1 TiB guest's host side fit in memory. The first store that breaks the
 * pattern turns the chunk *explicit* (a pfn and a flags array) for good, until the table is
 * freed. PMD- and PUD-level chunks are always explicit. The form is invisible from outside:
 * every read goes through flagsAt() / pfnAt().
 */
class Chunk {
  /** Explicit form: the pfn and flags of each entry (null while linear). */
  pfn: Float64Array | null;
  flags: Uint16Array | null;
  /** Linear form: bit i set = entry i in use (null once explicit). */
  bits: Int32Array | null;
  /** Linear form: entries in use, the flags they share, and the progression of their pfns. */
  count = 0;
  lflags = 0;
  anchorIdx = 0;
  anchorPfn = DOUBLE_FIELD;
  /** +1 or −1; 0 while a single entry leaves it undecided. */
  step = 0;
  /** A table page in use (counted in `tables`); a freed one is all zeros. */
  live = true;

  constructor(entries: number, linear: boolean) {
    this.pfn = linear ? null : new Float64Array(entries);
    this.flags = linear ? null : new Uint16Array(entries);
    this.bits = linear ? new Int32Array(entries >>> 5) : null;
  }

  /** The flags of entry i (0: empty). */
  flagsAt(i: number): number {
    const f = this.flags;
    if (f !== null) return f[i]!;
    return (this.bits![i >>> 5]! & (1 << (i & 31))) !== 0 ? this.lflags : 0;
  }

  /**
   * The pfn of entry i (0 for an empty entry) into `out.pfn`: a pfn past 2^31 returned from a
   * call V8 does not inline would be boxed into a new heap number.
   */
  pfnInto(i: number, out: { pfn: number }): void {
    const p = this.pfn;
    if (p !== null) out.pfn = p[i]!;
    else if ((this.bits![i >>> 5]! & (1 << (i & 31))) !== 0)
      out.pfn = this.anchorPfn + this.step * (i - this.anchorIdx);
    else out.pfn = 0;
  }

  /** Sets entry i to (`op.pfn`, flags), staying linear when the entry fits the progression. */
  setOp(i: number, op: { readonly pfn: number }, flags: number): void {
    if (this.flags === null && !this.setLinear(i, op, flags)) this.materialize();
    const f = this.flags;
    if (f !== null) {
      f[i] = flags;
      this.pfn![i] = op.pfn;
    }
  }

  /** setOp() in linear form; false when the store does not fit it (the caller materializes). */
  private setLinear(i: number, op: { readonly pfn: number }, flags: number): boolean {
    const pfn = op.pfn;
    const bits = this.bits!;
    const w = i >>> 5;
    const b = 1 << (i & 31);
    const used = (bits[w]! & b) !== 0;
    if (flags === 0) {
      if (pfn !== 0) return false;
      if (used) {
        bits[w] = bits[w]! & ~b;
        if (--this.count === 0) this.step = 0;
      }
      return true;
    }
    if (this.count === 0) {
      this.anchorIdx = i;
      this.anchorPfn = pfn;
      this.step = 0;
      this.lflags = flags;
    } else {
      if (flags !== this.lflags) return false;
      const d = i - this.anchorIdx;
      if (used || this.step !== 0) {
        if (pfn !== this.anchorPfn + this.step * d) return false;
      } else if (pfn === this.anchorPfn + d) this.step = 1;
      else if (pfn === this.anchorPfn - d) this.step = -1;
      else return false;
    }
    if (!used) {
      bits[w] = bits[w]! | b;
      this.count++;
    }
    return true;
  }

  /** Turns a linear chunk explicit, entry for entry. */
  materialize(): void {
    const n = this.bits!.length << 5;
    const pfn = new Float64Array(n);
    const flags = new Uint16Array(n);
    const tmp = { pfn: DOUBLE_FIELD };
    for (let i = 0; i < n; i++) {
      flags[i] = this.flagsAt(i);
      this.pfnInto(i, tmp);
      pfn[i] = tmp.pfn;
    }
    this.pfn = pfn;
    this.flags = flags;
    this.bits = null;
  }

  /** Empties every entry (a freed table), keeping the chunk's form (so nothing is allocated). */
  clearAll(): void {
    if (this.bits !== null) {
      this.bits.fill(0);
      this.count = 0;
      this.step = 0;
    } else {
      this.pfn!.fill(0);
      this.flags!.fill(0);
    }
  }
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
  /**
   * 1 / sizes[level], and 1 / (sizes[level] × entries) (a chunk's span): the sizes are powers
   * of two, so multiplying by the inverse is exact, and much cheaper than a division.
   */
  private readonly invSizes: Float64Array;
  private readonly invSpans: Float64Array;
  // One-entry lookup cache per level (chunk key → chunk or undefined); reset on any structural change.
  private readonly cacheKey = [-1, -1, -1];
  private readonly cacheChunk: (Chunk | undefined)[] = [undefined, undefined, undefined];
  /** The carrier the argument-taking forms fill (lookup, set, clear, updateFlags). */
  private readonly arg = new HostOp();
  /** The pfn of the entry forEach() hands its callback. */
  private readonly walkPfn = { pfn: DOUBLE_FIELD };

  /** Whether PTE-level chunks start in the linear form (see Chunk); tests compare both. */
  private readonly linearChunks: boolean;
  /**
   * The PTE cache: the PTE table of the last region (one PMD entry's span) whose PMD and PUD
   * entries were seen to be table pointers, so that a lookup or an install there reads one
   * level instead of three, as a hardware walk cache would. Valid while `tableGen`, bumped by
   * every store at the PMD or PUD level and every freed table, is unchanged.
   */
  private readonly pteCache: boolean;
  private tableGen = 0;
  private pteKey = -1;
  private pteGen = -1;
  private pteChunk: Chunk | undefined = undefined;
  /**
   * The PTE level's entry size and shift and the inverses of its entry and table spans, as
   * plain fields for the PTE cache's paths (one field load each, not a typed array's).
   */
  private readonly pteSize: number;
  private readonly pteShift: number;
  private readonly pteInvSize: number;
  private readonly pteInvSpan: number;

  constructor(granule: HostGranule, opts: { linearChunks?: boolean; pteCache?: boolean } = {}) {
    this.granule = granule;
    this.linearChunks = opts.linearChunks ?? true;
    this.pteCache = opts.pteCache ?? true;
    this.shifts = [granule.pageShift, granule.pmdShift, granule.pudShift];
    this.sizes = this.shifts.map((s) => pow2(s));
    this.entries = pow2(granule.tableBits);
    this.invSizes = Float64Array.from(this.sizes, (x) => 1 / x);
    this.invSpans = Float64Array.from(this.sizes, (x) => 1 / (x * this.entries));
    this.pteSize = this.sizes[HOST_LEVEL_PTE]!;
    this.pteShift = this.shifts[HOST_LEVEL_PTE]!;
    this.pteInvSize = this.invSizes[HOST_LEVEL_PTE]!;
    this.pteInvSpan = this.invSpans[HOST_LEVEL_PTE]!;
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
    const pteKey = Math.floor(hva * this.pteInvSpan);
    if (pteKey === this.pteKey && this.pteGen === this.tableGen) {
      const c = this.pteChunk!;
      const idx = Math.floor(hva * this.pteInvSize);
      const i = idx - pteKey * this.entries;
      const f = c.flagsAt(i);
      out.level = HOST_LEVEL_PTE;
      out.shift = this.pteShift;
      out.base = idx * this.pteSize;
      c.pfnInto(i, out);
      out.flags = f;
      return (f & HPTE_PRESENT) !== 0;
    }
    for (let level = HOST_LEVEL_PUD; level >= HOST_LEVEL_PTE; level--) {
      const idx = Math.floor(hva * this.invSizes[level]!);
      const key = Math.floor(hva * this.invSpans[level]!);
      let c: Chunk | undefined;
      if (this.cacheKey[level] === key) {
        c = this.cacheChunk[level];
      } else {
        c = this.levels[level].get(key);
        this.cacheKey[level] = key;
        this.cacheChunk[level] = c;
      }
      const i = idx - key * this.entries;
      const f = c === undefined ? 0 : c.flagsAt(i);
      if ((f & HPTE_TABLE) !== 0) continue;
      // Reached through two table pointers: the PTE cache may remember this table.
      if (level === HOST_LEVEL_PTE && c !== undefined) this.rememberPte(key, c);
      out.level = level;
      out.shift = this.shifts[level];
      out.base = idx * this.sizes[level]!;
      if (c === undefined) out.pfn = 0;
      else c.pfnInto(i, out);
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
    if (level === HOST_LEVEL_PTE) {
      const pteKey = Math.floor(hva * this.pteInvSpan);
      if (pteKey === this.pteKey && this.pteGen === this.tableGen) {
        // The parents are table pointers already, and a PTE is never one.
        this.pteChunk!.setOp(Math.floor(hva * this.pteInvSize) & (this.entries - 1), op, flags);
        return;
      }
    }
    for (let l = HOST_LEVEL_PUD; l > level; l--) {
      const c = this.chunkFor(op, l, true) as Chunk;
      const i = Math.floor(hva * this.invSizes[l]!) & (this.entries - 1);
      if ((c.flagsAt(i) & HPTE_TABLE) === 0) {
        c.setOp(i, ZERO_PFN, HPTE_TABLE);
        this.tableGen++;
      }
    }
    const c = this.chunkFor(op, level, true) as Chunk;
    const idx = Math.floor(hva * this.invSizes[level]!);
    const i = idx & (this.entries - 1);
    const wasTable = (c.flagsAt(i) & HPTE_TABLE) !== 0;
    c.setOp(i, op, flags);
    if (level !== HOST_LEVEL_PTE) this.tableGen++;
    else this.rememberPte(Math.floor(hva * this.pteInvSpan), c);
    if (wasTable) this.dropBelow(level, idx * this.sizes[level]!);
  }

  /**
   * PTE-level table pages held in the explicit form (ten bytes an entry; a linear one costs a
   * bit an entry): what the host model's memory depends on. Cold: walks the PTE level.
   */
  explicitPteTables(): number {
    let n = 0;
    for (const c of this.levels[HOST_LEVEL_PTE].values()) if (c.live && c.flags !== null) n++;
    return n;
  }

  /** Remembers that PTE table `c` (key `key`) is reached through two table pointers now. */
  private rememberPte(key: number, c: Chunk): void {
    if (!this.pteCache) return;
    this.pteKey = key;
    this.pteChunk = c;
    this.pteGen = this.tableGen;
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
    const i = Math.floor(hva * this.invSizes[level]!) & (this.entries - 1);
    c.setOp(i, ZERO_PFN, 0);
    if (level !== HOST_LEVEL_PTE) this.tableGen++;
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
    const i = Math.floor(hva * this.invSizes[level]!) & (this.entries - 1);
    const f = c.flagsAt(i);
    const nf = (f | orBits) & andMask;
    if (nf === f) return;
    const tmp = this.arg;
    c.pfnInto(i, tmp);
    c.setOp(i, tmp, nf);
    if (level !== HOST_LEVEL_PTE) this.tableGen++;
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
        const f = c.flagsAt(i);
        if (f === 0) continue;
        const base = idx * pow2(shift);
        if ((f & HPTE_TABLE) !== 0) {
          if (level > HOST_LEVEL_PTE) {
            this.walk(level - 1, Math.max(start, base), Math.min(end, base + pow2(shift)), fn);
          }
        } else {
          c.pfnInto(i, this.walkPfn);
          fn(level, base, this.walkPfn.pfn, f);
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
    const key = Math.floor(op.hva * this.invSpans[level]!);
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
        c = new Chunk(this.entries, this.linearChunks && level === HOST_LEVEL_PTE);
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
    this.tableGen++;
    const size = pow2(this.shifts[level]);
    for (let l = level - 1; l >= HOST_LEVEL_PTE; l--) {
      const span = pow2(this.shifts[l] + this.granule.tableBits);
      for (let a = base; a < base + size; a += span) {
        const c = this.levels[l].get(shr(a, this.shifts[l] + this.granule.tableBits));
        if (c === undefined || !c.live) continue;
        c.clearAll();
        c.live = false;
        this.tables--;
      }
    }
  }
}
