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
  /**
   * The pfn of the page-state operation being run. The fault path sets it and calls the
   * `…Req` forms: RAM above 8 TiB (with 4K pages) has pfns past 2^31, and V8 boxes such a pfn
   * into a new heap number at every call it does not inline, as an argument or a result. The
   * pfn-taking methods are wrappers that set it. Some `…Req` forms move it (to the folio head,
   * or to a new folio), as each says.
   */
  reqPfn = 0.5;
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
    if (this.allocFolioReq(0, false)) {
      this.orStateReq(PS_RESERVED | (this.mte ? PS_MTE_LOCK | PS_MTE_TAGGED : 0));
      this.zeroPfn = this.reqPfn;
    }
  }

  /**
   * Models pfn_is_map_memory(): true iff the pfn is RAM in the kernel's linear
   * map (memblock memory not marked NOMAP). Binary search; allocates nothing.
   */
  pfnIsMapMemory(pfn: number): boolean {
    this.reqPfn = pfn;
    return this.pfnIsMapMemoryReq();
  }

  /**
   * pfnIsMapMemory() of `at.pfn`, for the fault path: device pfns (a GPU's memory at 64 TiB
   * is pfn 2^34) are past the small-integer range, and V8 boxes a double argument at every
   * call it does not inline.
   */
  pfnIsMapMemoryAt(at: { readonly pfn: number }): boolean {
    this.reqPfn = at.pfn;
    return this.pfnIsMapMemoryReq();
  }

  /** pfnIsMapMemory() of reqPfn. */
  private pfnIsMapMemoryReq(): boolean {
    const pfn = this.reqPfn;
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
    return this.hugeZeroPfnReq() ? this.reqPfn : -1;
  }

  /** hugeZeroPfn() into reqPfn. Returns false if RAM is exhausted. */
  hugeZeroPfnReq(): boolean {
    if (this.hugeZeroPfnValue < 0) {
      if (!this.allocFolioReq(this.granule.pmdShift - this.granule.pageShift, false)) return false;
      this.orStateReq(PS_RESERVED);
      this.hugeZeroPfnValue = this.reqPfn;
    }
    this.reqPfn = this.hugeZeroPfnValue;
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
    return this.allocFolioReq(order, hugetlb) ? this.reqPfn : -1;
  }

  /** allocFolio() with the head pfn left in reqPfn. Returns false when no RAM is left. */
  allocFolioReq(order: number, hugetlb: boolean): boolean {
    if (!this.takeBlockReq(order)) return false;
    const n = POW2[order]!;
    const word = PS_ALLOCATED | (hugetlb ? PS_HUGETLB : 0) | (order << PS_ORDER_SHIFT);
    this.fillStateReq(n, word, PS_HWPOISON);
    this.orStateReq(PS_HEAD);
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
    this.reqPfn = pfn;
    const s = this.stateReq();
    if ((s & PS_ALLOCATED) === 0 || (s & PS_HEAD) === 0) {
      this.warnings.push(`freeFolio: pfn 0x${pfn.toString(16)} is not an allocated folio head`);
      return false;
    }
    if ((s & PS_RESERVED) !== 0) return false;
    const order = (s >> PS_ORDER_SHIFT) & PS_ORDER_MASK;
    const n = pow2(order);
    this.fillStateReq(n, 0, PS_HWPOISON);
    this.stats.allocatedPages -= n;
    // The page allocator hands the pages out zeroed next time: their bytes die with the folio.
    if (this.contents.pagesStored !== 0) this.contents.drop(pfn, n);
    this.freeLists[order].push(pfn);
    return true;
  }

  /** Returns the raw 16-bit state word of a pfn (0 if never touched). */
  state(pfn: number): number {
    this.reqPfn = pfn;
    return this.stateReq();
  }

  /** state() of reqPfn. */
  private stateReq(): number {
    const pfn = this.reqPfn;
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
    this.reqPfn = pfn;
    this.folioHeadReq();
    return this.reqPfn;
  }

  /** folioHead(): moves reqPfn to the head of its folio. */
  folioHeadReq(): void {
    const n = POW2[(this.stateReq() >> PS_ORDER_SHIFT) & PS_ORDER_MASK]!;
    this.reqPfn = Math.floor(this.reqPfn / n) * n;
  }

  /** Models folio_test_hugetlb(page_folio(pfn)). */
  folioTestHugetlb(pfn: number): boolean {
    this.reqPfn = pfn;
    return this.folioTestHugetlbReq();
  }

  /** folioTestHugetlb() of reqPfn. */
  folioTestHugetlbReq(): boolean {
    return (this.stateReq() & PS_HUGETLB) !== 0;
  }

  /** Models PageHWPoison(): true if the page is marked hardware-poisoned. */
  pageHwPoison(pfn: number): boolean {
    this.reqPfn = pfn;
    return this.pageHwPoisonReq();
  }

  /** pageHwPoison() of reqPfn. */
  pageHwPoisonReq(): boolean {
    return (this.stateReq() & PS_HWPOISON) !== 0;
  }

  /**
   * Test/scenario hook standing in for memory_failure(): marks (or clears) a
   * page as hardware-poisoned. Poison survives freeing.
   */
  setHwPoison(pfn: number, poisoned: boolean): void {
    this.reqPfn = pfn;
    if (poisoned) this.orStateReq(PS_HWPOISON);
    else this.andStateReq(~PS_HWPOISON);
  }

  /** Marks a page dirty (the effect of kvm_release_page_dirty / folio_mark_dirty). */
  setPageDirty(pfn: number): void {
    this.reqPfn = pfn;
    this.setPageDirtyReq();
  }

  /** setPageDirty() of reqPfn. */
  setPageDirtyReq(): void {
    this.orStateReq(PS_DIRTY);
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
    this.reqPfn = pfn;
    return this.tryPageMteTaggingReq();
  }

  /** tryPageMteTagging() of reqPfn. */
  tryPageMteTaggingReq(): boolean {
    const s = this.stateReq();
    if ((s & PS_HUGETLB) !== 0) this.warnings.push('try_page_mte_tagging on a hugetlb page');
    return this.tryLatchReq(s);
  }

  /** Models set_page_mte_tagged(): sets PG_mte_tagged (after the smp_wmb). */
  setPageMteTagged(pfn: number): void {
    this.reqPfn = pfn;
    this.setPageMteTaggedReq();
  }

  /** setPageMteTagged() of reqPfn. */
  setPageMteTaggedReq(): void {
    if ((this.stateReq() & PS_HUGETLB) !== 0) this.warnings.push('set_page_mte_tagged on a hugetlb page');
    this.orStateReq(PS_MTE_TAGGED);
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
    this.reqPfn = pfn;
    return this.folioTryHugetlbMteTaggingReq();
  }

  /** folioTryHugetlbMteTagging() of reqPfn's folio (reqPfn moves to the head). */
  folioTryHugetlbMteTaggingReq(): boolean {
    this.folioHeadReq();
    const s = this.stateReq();
    if ((s & PS_HUGETLB) === 0) this.warnings.push('folio_try_hugetlb_mte_tagging on a non-hugetlb folio');
    return this.tryLatchReq(s);
  }

  /** Models folio_set_hugetlb_mte_tagged(): sets PG_mte_tagged on the folio head. */
  folioSetHugetlbMteTagged(pfn: number): void {
    this.reqPfn = pfn;
    this.folioSetHugetlbMteTaggedReq();
  }

  /** folioSetHugetlbMteTagged() of reqPfn's folio (reqPfn moves to the head). */
  folioSetHugetlbMteTaggedReq(): void {
    this.folioHeadReq();
    if ((this.stateReq() & PS_HUGETLB) === 0) {
      this.warnings.push('folio_set_hugetlb_mte_tagged on a non-hugetlb folio');
    }
    this.orStateReq(PS_MTE_TAGGED);
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
    this.reqPfn = pfn;
    this.mteSyncTagsReq(nPages);
  }

  /** mteSyncTags() of the nPages from reqPfn (which moves). */
  mteSyncTagsReq(nPages: number): void {
    if (!this.mte) return;
    const pfn = this.reqPfn;
    if (this.folioTestHugetlbReq()) {
      if (this.folioTryHugetlbMteTaggingReq()) {
        for (let i = 0; i < nPages; i++) this.mteClearPageTagsReq();
        this.reqPfn = pfn;
        this.folioSetHugetlbMteTaggedReq();
      }
      return;
    }
    for (let i = 0; i < nPages; i++) {
      this.reqPfn = pfn + i;
      if (this.tryPageMteTaggingReq()) {
        this.mteClearPageTagsReq();
        this.setPageMteTaggedReq();
      }
    }
  }

  /** Models mte_clear_page_tags(page_address(pfn)): counts one page of tags cleared. */
  mteClearPageTags(pfn: number): void {
    this.reqPfn = pfn;
    this.mteClearPageTagsReq();
  }

  /** mteClearPageTags() of reqPfn. */
  mteClearPageTagsReq(): void {
    this.stats.mteTagClears++;
  }

  // ---- internals -------------------------------------------------------------

  /** The try-tagging latch of reqPfn, whose state word is `s`. */
  private tryLatchReq(s: number): boolean {
    if ((s & PS_MTE_LOCK) === 0) {
      this.orStateReq(PS_MTE_LOCK);
      return true;
    }
    if ((s & PS_MTE_TAGGED) === 0) {
      this.warnings.push(
        `MTE lock held without PG_mte_tagged on pfn 0x${this.reqPfn.toString(16)}: would spin forever`,
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

  private orStateReq(bits: number): void {
    const pfn = this.reqPfn;
    const c = this.chunk(Math.floor(pfn / CHUNK_PAGES), true) as Uint16Array;
    c[pfn & (CHUNK_PAGES - 1)] |= bits;
  }

  private andStateReq(mask: number): void {
    const pfn = this.reqPfn;
    const c = this.chunk(Math.floor(pfn / CHUNK_PAGES), false);
    if (c !== undefined) c[pfn & (CHUNK_PAGES - 1)] &= mask;
  }

  /** Sets n words starting at reqPfn to `word`, preserving the `keep` bits. */
  private fillStateReq(n: number, word: number, keep: number): void {
    let p = this.reqPfn;
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

  /** Takes a free block of 2^order pages into reqPfn. Returns false when there is none. */
  private takeBlockReq(order: number): boolean {
    if (order > PS_ORDER_MASK) return false;
    const list = this.freeLists[order];
    if (list.length > 0) {
      list.popInto(this);
      return true;
    }
    for (let k = order + 1; k <= PS_ORDER_MASK; k++) {
      const big = this.freeLists[k];
      if (big.length === 0) continue;
      big.popInto(this);
      const pfn = this.reqPfn;
      // Keep the first 2^order pages; return the rest as aligned buddies.
      for (let j = k - 1; j >= order; j--) this.freeLists[j].push(pfn + POW2[j]!);
      this.reqPfn = pfn;
      return true;
    }
    const n = POW2[order]!;
    for (let r = 0; r < this.bump.length; r++) {
      const cur = this.bump[r];
      const start = Math.ceil(cur / n) * n;
      if (start + n <= this.ramEnd[r]) {
        this.releaseGap(cur, start);
        this.bump[r] = start + n;
        this.reqPfn = start;
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

  /** Pops the top pfn into `to.reqPfn` (the stack must not be empty): no double is returned. */
  popInto(to: { reqPfn: number }): void {
    to.reqPfn = this.items[--this.length]!;
  }
}
