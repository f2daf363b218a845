/**
 * The host's physical memory: the memory map (RAM in the linear map, NOMAP
 * regions outside it), a folio allocator over RAM, and per-page state
 * (struct page flags the fault path cares about).
 *
 * Per-page state is one 16-bit word per pfn, in lazily allocated chunks of
 * PAGE_CHUNK pages, so a 1 TiB host costs nothing until pages are touched and
 * then 2 bytes per page of each touched chunk. Reads of an untouched chunk
 * return 0 and allocate nothing.
 *
 *   bit  0     PS_ALLOCATED   page belongs to an allocated folio (or a reserved page)
 *   bit  1     PS_HEAD        first page of its folio
 *   bit  2     PS_HUGETLB     folio is a hugetlb folio
 *   bit  3     PS_MTE_TAGGED  PG_mte_tagged (PG_arch_2); hugetlb: meaningful on the head only
 *   bit  4     PS_MTE_LOCK    PG_mte_lock (PG_arch_3);  hugetlb: meaningful on the head only
 *   bit  5     PS_HWPOISON    PageHWPoison (survives free)
 *   bit  6     PS_RESERVED    never freed (the zero pages)
 *   bit  7     PS_DIRTY       set when KVM releases the page dirty
 *   bits 8-13  folio order    stored on every page of the folio (head = pfn aligned down)
 *
 * Read idiom: `(state & PS_X) !== 0`; order: `(state >> PS_ORDER_SHIFT) & PS_ORDER_MASK`.
 */
import { POW2, shl, shr, type HostGranule, pow2 } from './granule.js';
import { PageContents } from './contents.js';
import { HostOp, type PfnOp, type PfnResult } from './op.js';

/** Page is part of an allocated folio (populated). */
export const PS_ALLOCATED = 1 << 0;
/** Page is the head of its folio. */
export const PS_HEAD = 1 << 1;
/** Folio is a hugetlb folio. */
export const PS_HUGETLB = 1 << 2;
/** PG_mte_tagged: tags initialised. Never cleared while allocated. */
export const PS_MTE_TAGGED = 1 << 3;
/** PG_mte_lock: the try-tagging latch. */
export const PS_MTE_LOCK = 1 << 4;
/** Hardware poison (memory_failure() has marked the page). */
export const PS_HWPOISON = 1 << 5;
/** Reserved page (the shared zero pages): never freed. */
export const PS_RESERVED = 1 << 6;
/** The page was released dirty by KVM (kvm_release_page_dirty). */
export const PS_DIRTY = 1 << 7;
/** Shift of the folio order field. */
export const PS_ORDER_SHIFT = 8;
/** Mask of the folio order field (after shifting). */
export const PS_ORDER_MASK = 0x3f;

/** log2 of the pages per state chunk. */
const CHUNK_BITS = 16;
const CHUNK_PAGES = 1 << CHUNK_BITS;

/** A region of the physical memory map. `ram` is in the linear map; `nomap` is not. */
export interface PhysRegion {
  readonly base: number;
  readonly size: number;
  readonly type: 'ram' | 'nomap';
}

/** Options for PhysMem. */
export interface PhysMemOptions {
  /**
   * The host runs with MTE enabled (system_supports_mte()): the zero page's
   * tags are cleared and it is marked PG_mte_tagged at boot (cpu_enable_mte),
   * and host mappings with a tagged memory type initialise tags (mte_sync_tags).
   */
  readonly mte?: boolean;
}

/** Counters for the test and summary output. */
export interface PhysStats {
  /** Pages currently allocated from RAM (reserved zero pages included). */
  allocatedPages: number;
  /** Calls to mteClearPageTags(): pages whose tags were zeroed. */
  mteTagClears: number;
  /** Pages ever handed out by allocFolio (each is zeroed for its user). Never decreases. */
  zeroedPages: number;
}

/**
 * The modelled physical memory of one host.
 *
 * Construct with the memory map; regions must not overlap and must be
 * page-aligned (checked: the constructor throws, since this is a programming
 * error the scenario validator should have caught).
 */
export class PhysMem {
  /** The page geometry. */
  readonly granule: HostGranule;
  /** The memory map, sorted by base. */
  readonly regions: readonly PhysRegion[];
  /** Allocation and MTE counters. */
  readonly stats: PhysStats = { allocatedPages: 0, mteTagClears: 0, zeroedPages: 0 };
  /** Kernel warnings (VM_WARN_ON equivalents) hit so far; appended rarely, never on a hot path. */
  readonly warnings: string[] = [];

  private readonly chunks = new Map<number, Uint16Array>();
  private lastChunkKey = -1;
  private lastChunk: Uint16Array | undefined = undefined;
  // RAM regions as pfn ranges, sorted: [start, end) pairs.
  private readonly ramStart: Float64Array;
  private readonly ramEnd: Float64Array;
  // Bump pointer per RAM region (pfn), and free lists per order.
  private readonly bump: Float64Array;
  private readonly freeLists: PfnStack[] = [];
  private hugeZeroPfnValue = -1;
  /** The carrier the pfn-taking forms fill (see the `…Op` forms). */
  private readonly arg = new HostOp();
  /** Scratch carriers of the internal steps: a folio head, a page of a run, a new block. */
  private readonly head = new HostOp();
  private readonly cur = new HostOp();
  /** Returns the pfn of the shared zero page (ZERO_PAGE(0)), or -1 if there is no RAM. */
  readonly zeroPfn: number = -1;

  /** system_supports_mte(): tag state is initialised by host mappings (see PhysMemOptions.mte). */
  readonly mte: boolean;

  /**
   * The bytes of the pages that were written (contents.ts): dropped when their folio is freed,
   * so a page reads as zeroes whenever it is handed out again.
   */
  readonly contents: PageContents;

  constructor(granule: HostGranule, regions: readonly PhysRegion[], options: PhysMemOptions = {}) {
    this.granule = granule;
    this.mte = options.mte ?? false;
    this.contents = new PageContents(granule.pageSize);
    const sorted = [...regions].sort((a, b) => a.base - b.base);
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i];
      if (r.base % granule.pageSize !== 0 || r.size % granule.pageSize !== 0 || r.size <= 0) {
        throw new Error(`physical region ${i} is not page-aligned`);
      }
      if (i > 0 && sorted[i - 1].base + sorted[i - 1].size > r.base) {
        throw new Error(`physical regions overlap at 0x${r.base.toString(16)}`);
      }
    }
    this.regions = sorted;
    const ram = sorted.filter((r) => r.type === 'ram');
    this.ramStart = new Float64Array(ram.map((r) => shr(r.base, granule.pageShift)));
    this.ramEnd = new Float64Array(ram.map((r) => shr(r.base + r.size, granule.pageShift)));
    this.bump = new Float64Array(this.ramStart);
    for (let o = 0; o <= PS_ORDER_MASK; o++) this.freeLists.push(new PfnStack());
    // The shared zero page (empty_zero_page) lives in the kernel image, in RAM.
    const z = this.cur;
    if (this.allocFolioInto(0, false, z)) {
      this.orStateOp(z, PS_RESERVED | (this.mte ? PS_MTE_LOCK | PS_MTE_TAGGED : 0));
      this.zeroPfn = z.pfn;
    }
  }

  /**
   * Models pfn_is_map_memory(): true iff the pfn is RAM in the kernel's linear
   * map (memblock memory not marked NOMAP). Binary search; allocates nothing.
   */
  pfnIsMapMemory(pfn: number): boolean {
    this.arg.pfn = pfn;
    return this.pfnIsMapMemoryOp(this.arg);
  }

  /**
   * pfnIsMapMemory() of `op.pfn`. The page-state methods all have this form for the fault
   * path: device pfns (a GPU's memory at 64 TiB is pfn 2^34) and RAM above 8 TiB are past the
   * small-integer range, and V8 boxes a double argument at every call it does not inline. The
   * pfn-taking forms fill a private carrier and call these.
   */
  pfnIsMapMemoryOp(op: PfnOp): boolean {
    const pfn = op.pfn;
    let lo = 0;
    let hi = this.ramStart.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (pfn < this.ramStart[mid]) hi = mid - 1;
      else if (pfn >= this.ramEnd[mid]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /**
   * Models mm_get_huge_zero_folio(): the PMD-sized huge zero folio, allocated on
   * first use and never freed. Its MTE tag state is left uninitialised
   * (UNCONFIRMED what the kernel does for it). Returns its head pfn, or -1 if
   * RAM is exhausted.
   */
  hugeZeroPfn(): number {
    return this.hugeZeroPfnInto(this.arg) ? this.arg.pfn : -1;
  }

  /** hugeZeroPfn() into `out.pfn`. Returns false if RAM is exhausted. */
  hugeZeroPfnInto(out: PfnResult): boolean {
    if (this.hugeZeroPfnValue < 0) {
      const b = this.cur;
      if (!this.allocFolioInto(this.granule.pmdShift - this.granule.pageShift, false, b)) return false;
      this.orStateOp(b, PS_RESERVED);
      this.hugeZeroPfnValue = b.pfn;
    }
    out.pfn = this.hugeZeroPfnValue;
    return true;
  }

  /** Returns true if pfn is the zero page or inside the huge zero folio (is_zero_pfn / is_huge_zero_folio). */
  isZeroPfn(pfn: number): boolean {
    if (pfn === this.zeroPfn) return true;
    const h = this.hugeZeroPfnValue;
    return h >= 0 && pfn >= h && pfn < h + pow2(this.granule.pmdShift - this.granule.pageShift);
  }

  /**
   * Allocates a naturally aligned folio of 2^order pages from RAM (models
   * folio_alloc / alloc_hugetlb_folio carving a hugetlb page from RAM). Marks
   * every page allocated with the order, the head, and the hugetlb flag.
   * Returns the head pfn, or -1 when no suitable RAM is left.
   *
   * Policy: exact-order free list, then splitting the smallest larger free
   * block, then a bump pointer per RAM region (the skipped alignment gap goes
   * onto the free lists). Freed blocks are not coalesced.
   */
  allocFolio(order: number, hugetlb: boolean): number {
    return this.allocFolioInto(order, hugetlb, this.arg) ? this.arg.pfn : -1;
  }

  /** allocFolio() with the head pfn left in `out.pfn`. Returns false when no RAM is left. */
  allocFolioInto(order: number, hugetlb: boolean, out: PfnResult): boolean {
    if (!this.takeBlockInto(order, out)) return false;
    if (order === 0 && !hugetlb) {
      // One page (every 4K anonymous fault): one state word, the same bits as below.
      const pfn = out.pfn;
      const c = this.chunk(Math.floor(pfn / CHUNK_PAGES), true) as Uint16Array;
      const i = pfn & (CHUNK_PAGES - 1);
      c[i] = (c[i]! & PS_HWPOISON) | PS_ALLOCATED | PS_HEAD;
      this.stats.allocatedPages++;
      this.stats.zeroedPages++;
      return true;
    }
    const n = POW2[order]!;
    const word = PS_ALLOCATED | (hugetlb ? PS_HUGETLB : 0) | (order << PS_ORDER_SHIFT);
    this.fillStateOp(out, n, word, PS_HWPOISON);
    this.orStateOp(out, PS_HEAD);
    this.stats.allocatedPages += n;
    this.stats.zeroedPages += n;
    return true;
  }

  /**
   * Frees the folio whose head is `pfn` (folio_put dropping the last
   * reference). Clears all page state except hardware poison, as the page
   * allocator does when a page is freed. Reserved pages are never freed.
   * Returns false (and records a warning) if pfn is not an allocated head.
   */
  freeFolio(pfn: number): boolean {
    const op = this.arg;
    op.pfn = pfn;
    const s = this.stateOp(op);
    if ((s & PS_ALLOCATED) === 0 || (s & PS_HEAD) === 0) {
      this.warnings.push(`freeFolio: pfn 0x${pfn.toString(16)} is not an allocated folio head`);
      return false;
    }
    if ((s & PS_RESERVED) !== 0) return false;
    const order = (s >> PS_ORDER_SHIFT) & PS_ORDER_MASK;
    const n = pow2(order);
    this.fillStateOp(op, n, 0, PS_HWPOISON);
    this.stats.allocatedPages -= n;
    // The page allocator hands the pages out zeroed next time: their bytes die with the folio.
    if (this.contents.pagesStored !== 0) this.contents.drop(pfn, n);
    this.freeLists[order].push(pfn);
    return true;
  }

  /** Returns the raw 16-bit state word of a pfn (0 if never touched). */
  state(pfn: number): number {
    this.arg.pfn = pfn;
    return this.stateOp(this.arg);
  }

  /** state() of `op.pfn`. */
  private stateOp(op: PfnOp): number {
    const pfn = op.pfn;
    const c = this.chunk(Math.floor(pfn / CHUNK_PAGES), false);
    return c === undefined ? 0 : c[pfn & (CHUNK_PAGES - 1)]!;
  }

  /** Returns true if the page is allocated (populated: part of a live folio). */
  pageIsAllocated(pfn: number): boolean {
    return (this.state(pfn) & PS_ALLOCATED) !== 0;
  }

  /** Models folio_order(page_folio(pfn)): the folio order (0 for an unallocated page). */
  folioOrder(pfn: number): number {
    return (this.state(pfn) >> PS_ORDER_SHIFT) & PS_ORDER_MASK;
  }

  /** Models folio_pfn(page_folio(pfn)): the head pfn of the folio containing pfn. */
  folioHead(pfn: number): number {
    this.arg.pfn = pfn;
    this.folioHeadOp(this.arg, this.arg);
    return this.arg.pfn;
  }

  /** folioHead() of `op.pfn` into `out.pfn` (`out` may be `op`). */
  folioHeadOp(op: PfnOp, out: PfnResult): void {
    const n = POW2[(this.stateOp(op) >> PS_ORDER_SHIFT) & PS_ORDER_MASK]!;
    out.pfn = Math.floor(op.pfn / n) * n;
  }

  /** Models folio_test_hugetlb(page_folio(pfn)). */
  folioTestHugetlb(pfn: number): boolean {
    this.arg.pfn = pfn;
    return this.folioTestHugetlbOp(this.arg);
  }

  /** folioTestHugetlb() of `op.pfn`. */
  folioTestHugetlbOp(op: PfnOp): boolean {
    return (this.stateOp(op) & PS_HUGETLB) !== 0;
  }

  /** Models PageHWPoison(): true if the page is marked hardware-poisoned. */
  pageHwPoison(pfn: number): boolean {
    this.arg.pfn = pfn;
    return this.pageHwPoisonOp(this.arg);
  }

  /** pageHwPoison() of `op.pfn`. */
  pageHwPoisonOp(op: PfnOp): boolean {
    return (this.stateOp(op) & PS_HWPOISON) !== 0;
  }

  /**
   * Test/scenario hook standing in for memory_failure(): marks (or clears) a
   * page as hardware-poisoned. Poison survives freeing.
   */
  setHwPoison(pfn: number, poisoned: boolean): void {
    this.arg.pfn = pfn;
    if (poisoned) this.orStateOp(this.arg, PS_HWPOISON);
    else this.andStateOp(this.arg, ~PS_HWPOISON);
  }

  /** Marks a page dirty (the effect of kvm_release_page_dirty / folio_mark_dirty). */
  setPageDirty(pfn: number): void {
    this.arg.pfn = pfn;
    this.setPageDirtyOp(this.arg);
  }

  /** setPageDirty() of `op.pfn`. */
  setPageDirtyOp(op: PfnOp): void {
    this.orStateOp(op, PS_DIRTY);
  }

  /**
   * Models try_page_mte_tagging(): atomically test-and-set PG_mte_lock.
   * Returns true if the caller won and must clear the tags and then call
   * setPageMteTagged(). Returns false if the lock was already set; the kernel
   * then spins until PG_mte_tagged is set, which in this single-threaded model
   * has already happened (a lock set without tagged is recorded as a warning,
   * since the kernel would spin forever). Warns for a hugetlb page, as the
   * kernel's VM_WARN_ON_ONCE does.
   */
  tryPageMteTagging(pfn: number): boolean {
    this.arg.pfn = pfn;
    return this.tryPageMteTaggingOp(this.arg);
  }

  /** tryPageMteTagging() of `op.pfn`. */
  tryPageMteTaggingOp(op: PfnOp): boolean {
    const s = this.stateOp(op);
    if ((s & PS_HUGETLB) !== 0) this.warnings.push('try_page_mte_tagging on a hugetlb page');
    return this.tryLatchOp(op, s);
  }

  /** Models set_page_mte_tagged(): sets PG_mte_tagged (after the smp_wmb). */
  setPageMteTagged(pfn: number): void {
    this.arg.pfn = pfn;
    this.setPageMteTaggedOp(this.arg);
  }

  /** setPageMteTagged() of `op.pfn`. */
  setPageMteTaggedOp(op: PfnOp): void {
    if ((this.stateOp(op) & PS_HUGETLB) !== 0) this.warnings.push('set_page_mte_tagged on a hugetlb page');
    this.orStateOp(op, PS_MTE_TAGGED);
  }

  /** Models page_mte_tagged(): true once the page's tags are initialised. */
  pageMteTagged(pfn: number): boolean {
    return (this.state(pfn) & PS_MTE_TAGGED) !== 0;
  }

  /**
   * Models folio_try_hugetlb_mte_tagging(): the try-tagging latch on the
   * folio (the head page's flags). Returns true if the caller must clear the
   * tags and call folioSetHugetlbMteTagged(). Warns if the folio is not hugetlb.
   */
  folioTryHugetlbMteTagging(pfn: number): boolean {
    this.arg.pfn = pfn;
    return this.folioTryHugetlbMteTaggingOp(this.arg);
  }

  /** folioTryHugetlbMteTagging() of the folio of `op.pfn`. */
  folioTryHugetlbMteTaggingOp(op: PfnOp): boolean {
    const h = this.head;
    this.folioHeadOp(op, h);
    const s = this.stateOp(h);
    if ((s & PS_HUGETLB) === 0) this.warnings.push('folio_try_hugetlb_mte_tagging on a non-hugetlb folio');
    return this.tryLatchOp(h, s);
  }

  /** Models folio_set_hugetlb_mte_tagged(): sets PG_mte_tagged on the folio head. */
  folioSetHugetlbMteTagged(pfn: number): void {
    this.arg.pfn = pfn;
    this.folioSetHugetlbMteTaggedOp(this.arg);
  }

  /** folioSetHugetlbMteTagged() of the folio of `op.pfn`. */
  folioSetHugetlbMteTaggedOp(op: PfnOp): void {
    const h = this.head;
    this.folioHeadOp(op, h);
    if ((this.stateOp(h) & PS_HUGETLB) === 0) {
      this.warnings.push('folio_set_hugetlb_mte_tagged on a non-hugetlb folio');
    }
    this.orStateOp(h, PS_MTE_TAGGED);
  }

  /** Models folio_test_hugetlb_mte_tagged(): PG_mte_tagged of the folio head. */
  folioTestHugetlbMteTagged(pfn: number): boolean {
    return (this.state(this.folioHead(pfn)) & PS_MTE_TAGGED) !== 0;
  }

  /**
   * Models mte_sync_tags() for a newly mapped folio in a PROT_MTE (tagged)
   * host mapping: for a hugetlb folio the folio latch, otherwise each page's
   * latch; the winner clears the tags and sets PG_mte_tagged. Does nothing
   * unless the host has MTE.
   */
  mteSyncTags(pfn: number, nPages: number): void {
    this.arg.pfn = pfn;
    this.mteSyncTagsOp(this.arg, nPages);
  }

  /** mteSyncTags() of the nPages from `op.pfn`. */
  mteSyncTagsOp(op: PfnOp, nPages: number): void {
    if (!this.mte) return;
    const pfn = op.pfn;
    if (this.folioTestHugetlbOp(op)) {
      if (this.folioTryHugetlbMteTaggingOp(op)) {
        for (let i = 0; i < nPages; i++) this.mteClearPageTagsOp(op);
        this.folioSetHugetlbMteTaggedOp(op);
      }
      return;
    }
    const p = this.cur;
    for (let i = 0; i < nPages; i++) {
      p.pfn = pfn + i;
      if (this.tryPageMteTaggingOp(p)) {
        this.mteClearPageTagsOp(p);
        this.setPageMteTaggedOp(p);
      }
    }
  }

  /** Models mte_clear_page_tags(page_address(pfn)): counts one page of tags cleared. */
  mteClearPageTags(pfn: number): void {
    this.arg.pfn = pfn;
    this.mteClearPageTagsOp(this.arg);
  }

  /** mteClearPageTags() of `op.pfn`. */
  mteClearPageTagsOp(_op: PfnOp): void {
    this.stats.mteTagClears++;
  }

  // ---- internals -------------------------------------------------------------

  /** The try-tagging latch of `op.pfn`, whose state word is `s`. */
  private tryLatchOp(op: PfnOp, s: number): boolean {
    if ((s & PS_MTE_LOCK) === 0) {
      this.orStateOp(op, PS_MTE_LOCK);
      return true;
    }
    if ((s & PS_MTE_TAGGED) === 0) {
      this.warnings.push(
        `MTE lock held without PG_mte_tagged on pfn 0x${op.pfn.toString(16)}: would spin forever`,
      );
    }
    return false;
  }

  private chunk(key: number, create: boolean): Uint16Array | undefined {
    if (key === this.lastChunkKey) return this.lastChunk;
    let c = this.chunks.get(key);
    if (c === undefined) {
      if (!create) return undefined;
      c = new Uint16Array(CHUNK_PAGES);
      this.chunks.set(key, c);
    }
    this.lastChunkKey = key;
    this.lastChunk = c;
    return c;
  }

  private orStateOp(op: PfnOp, bits: number): void {
    const pfn = op.pfn;
    const c = this.chunk(Math.floor(pfn / CHUNK_PAGES), true) as Uint16Array;
    c[pfn & (CHUNK_PAGES - 1)] |= bits;
  }

  private andStateOp(op: PfnOp, mask: number): void {
    const pfn = op.pfn;
    const c = this.chunk(Math.floor(pfn / CHUNK_PAGES), false);
    if (c !== undefined) c[pfn & (CHUNK_PAGES - 1)] &= mask;
  }

  /** Sets n words starting at `op.pfn` to `word`, preserving the `keep` bits. */
  private fillStateOp(op: PfnOp, n: number, word: number, keep: number): void {
    let p = op.pfn;
    const end = p + n;
    while (p < end) {
      const key = Math.floor(p / CHUNK_PAGES);
      const off = p & (CHUNK_PAGES - 1);
      const len = Math.min(CHUNK_PAGES - off, end - p);
      const c = this.chunk(key, word !== 0);
      if (c !== undefined) {
        if (keep === 0) c.fill(word, off, off + len);
        else for (let i = off; i < off + len; i++) c[i] = (c[i] & keep) | word;
      }
      p += len;
    }
  }

  /** Takes a free block of 2^order pages into `out.pfn`. Returns false when there is none. */
  private takeBlockInto(order: number, out: PfnResult): boolean {
    if (order > PS_ORDER_MASK) return false;
    const list = this.freeLists[order];
    if (list.length > 0) {
      list.popInto(out);
      return true;
    }
    for (let k = order + 1; k <= PS_ORDER_MASK; k++) {
      const big = this.freeLists[k];
      if (big.length === 0) continue;
      big.popInto(out);
      const pfn = out.pfn;
      // Keep the first 2^order pages; return the rest as aligned buddies.
      for (let j = k - 1; j >= order; j--) this.freeLists[j].push(pfn + POW2[j]!);
      return true;
    }
    const n = POW2[order]!;
    for (let r = 0; r < this.bump.length; r++) {
      const cur = this.bump[r];
      const start = Math.ceil(cur / n) * n;
      if (start + n <= this.ramEnd[r]) {
        this.releaseGap(cur, start);
        this.bump[r] = start + n;
        out.pfn = start;
        return true;
      }
    }
    return false;
  }

  /** Puts the unaligned gap [from, to) onto the free lists as maximal aligned blocks. */
  private releaseGap(from: number, to: number): void {
    let p = from;
    while (p < to) {
      let o = 0;
      while (o < PS_ORDER_MASK && p % pow2(o + 1) === 0 && p + pow2(o + 1) <= to) o++;
      this.freeLists[o].push(p);
      p += pow2(o);
    }
  }
}

/** Returns the physical address of a pfn for a page shift (pfn << PAGE_SHIFT). */
export function pfnToPhys(pfn: number, pageShift: number): number {
  return shl(pfn, pageShift);
}

/**
 * A stack of free pfns in a Float64Array. A JavaScript array would do, except that popping a
 * pfn past 2^31 from it can go through the builtin, which boxes the value it returns; here
 * the top is written straight into the caller's field. Grows by doubling (on frees, not on the
 * fault path in a steady state).
 */
class PfnStack {
  private items = new Float64Array(16);
  length = 0;

  push(pfn: number): void {
    if (this.length === this.items.length) {
      const bigger = new Float64Array(this.items.length * 2);
      bigger.set(this.items);
      this.items = bigger;
    }
    this.items[this.length++] = pfn;
  }

  /** Pops the top pfn into `to.pfn` (the stack must not be empty): no double is returned. */
  popInto(to: PfnResult): void {
    to.pfn = this.items[--this.length]!;
  }
}
