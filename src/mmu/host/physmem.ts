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
import { alignDown, shl, shr, type HostGranule, pow2 } from './granule.js';

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

  /** The pfn argument of pfnIsMapMemory(), passed on in a field (see pfnIsMapMemoryAt). */
  private readonly at = { pfn: 0.5 };
  private readonly chunks = new Map<number, Uint16Array>();
  private lastChunkKey = -1;
  private lastChunk: Uint16Array | undefined = undefined;
  // RAM regions as pfn ranges, sorted: [start, end) pairs.
  private readonly ramStart: Float64Array;
  private readonly ramEnd: Float64Array;
  // Bump pointer per RAM region (pfn), and free lists per order.
  private readonly bump: Float64Array;
  private readonly freeLists: number[][] = [];
  private zeroPfnValue = -1;
  private hugeZeroPfnValue = -1;

  /** system_supports_mte(): tag state is initialised by host mappings (see PhysMemOptions.mte). */
  readonly mte: boolean;

  constructor(granule: HostGranule, regions: readonly PhysRegion[], options: PhysMemOptions = {}) {
    this.granule = granule;
    this.mte = options.mte ?? false;
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
    for (let o = 0; o <= PS_ORDER_MASK; o++) this.freeLists.push([]);
    // The shared zero page (empty_zero_page) lives in the kernel image, in RAM.
    const z = this.allocFolio(0, false);
    if (z >= 0) {
      this.orState(z, PS_RESERVED | (this.mte ? PS_MTE_LOCK | PS_MTE_TAGGED : 0));
      this.zeroPfnValue = z;
    }
  }

  /**
   * Models pfn_is_map_memory(): true iff the pfn is RAM in the kernel's linear
   * map (memblock memory not marked NOMAP). Binary search; allocates nothing.
   */
  pfnIsMapMemory(pfn: number): boolean {
    this.at.pfn = pfn;
    return this.pfnIsMapMemoryAt(this.at);
  }

  /**
   * pfnIsMapMemory() of `at.pfn`, for the fault path: device pfns (a GPU's memory at 64 TiB
   * is pfn 2^34) are past the small-integer range, and V8 boxes a double argument at every
   * call it does not inline.
   */
  pfnIsMapMemoryAt(at: { readonly pfn: number }): boolean {
    const pfn = at.pfn;
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

  /** Returns the pfn of the shared zero page (ZERO_PAGE(0)), or -1 if there is no RAM. */
  get zeroPfn(): number {
    return this.zeroPfnValue;
  }

  /**
   * Models mm_get_huge_zero_folio(): the PMD-sized huge zero folio, allocated on
   * first use and never freed. Its MTE tag state is left uninitialised
   * (UNCONFIRMED what the kernel does for it). Returns its head pfn, or -1 if
   * RAM is exhausted.
   */
  hugeZeroPfn(): number {
    if (this.hugeZeroPfnValue < 0) {
      const p = this.allocFolio(this.granule.pmdShift - this.granule.pageShift, false);
      if (p >= 0) {
        this.orState(p, PS_RESERVED);
        this.hugeZeroPfnValue = p;
      }
    }
    return this.hugeZeroPfnValue;
  }

  /** Returns true if pfn is the zero page or inside the huge zero folio (is_zero_pfn / is_huge_zero_folio). */
  isZeroPfn(pfn: number): boolean {
    if (pfn === this.zeroPfnValue) return true;
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
    const pfn = this.takeBlock(order);
    if (pfn < 0) return -1;
    const n = pow2(order);
    const word = PS_ALLOCATED | (hugetlb ? PS_HUGETLB : 0) | (order << PS_ORDER_SHIFT);
    this.fillState(pfn, n, word, PS_HWPOISON);
    this.orState(pfn, PS_HEAD);
    this.stats.allocatedPages += n;
    this.stats.zeroedPages += n;
    return pfn;
  }

  /**
   * Frees the folio whose head is `pfn` (folio_put dropping the last
   * reference). Clears all page state except hardware poison, as the page
   * allocator does when a page is freed. Reserved pages are never freed.
   * Returns false (and records a warning) if pfn is not an allocated head.
   */
  freeFolio(pfn: number): boolean {
    const s = this.state(pfn);
    if ((s & PS_ALLOCATED) === 0 || (s & PS_HEAD) === 0) {
      this.warnings.push(`freeFolio: pfn 0x${pfn.toString(16)} is not an allocated folio head`);
      return false;
    }
    if ((s & PS_RESERVED) !== 0) return false;
    const order = (s >> PS_ORDER_SHIFT) & PS_ORDER_MASK;
    const n = pow2(order);
    this.fillState(pfn, n, 0, PS_HWPOISON);
    this.stats.allocatedPages -= n;
    this.freeLists[order].push(pfn);
    return true;
  }

  /** Returns the raw 16-bit state word of a pfn (0 if never touched). */
  state(pfn: number): number {
    const c = this.chunk(shr(pfn, CHUNK_BITS), false);
    return c === undefined ? 0 : c[pfn & (CHUNK_PAGES - 1)];
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
    return alignDown(pfn, pow2(this.folioOrder(pfn)));
  }

  /** Models folio_test_hugetlb(page_folio(pfn)). */
  folioTestHugetlb(pfn: number): boolean {
    return (this.state(pfn) & PS_HUGETLB) !== 0;
  }

  /** Models PageHWPoison(): true if the page is marked hardware-poisoned. */
  pageHwPoison(pfn: number): boolean {
    return (this.state(pfn) & PS_HWPOISON) !== 0;
  }

  /**
   * Test/scenario hook standing in for memory_failure(): marks (or clears) a
   * page as hardware-poisoned. Poison survives freeing.
   */
  setHwPoison(pfn: number, poisoned: boolean): void {
    if (poisoned) this.orState(pfn, PS_HWPOISON);
    else this.andState(pfn, ~PS_HWPOISON);
  }

  /** Marks a page dirty (the effect of kvm_release_page_dirty / folio_mark_dirty). */
  setPageDirty(pfn: number): void {
    this.orState(pfn, PS_DIRTY);
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
    const s = this.state(pfn);
    if ((s & PS_HUGETLB) !== 0) this.warnings.push('try_page_mte_tagging on a hugetlb page');
    return this.tryLatch(pfn, s);
  }

  /** Models set_page_mte_tagged(): sets PG_mte_tagged (after the smp_wmb). */
  setPageMteTagged(pfn: number): void {
    if ((this.state(pfn) & PS_HUGETLB) !== 0) this.warnings.push('set_page_mte_tagged on a hugetlb page');
    this.orState(pfn, PS_MTE_TAGGED);
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
    const head = this.folioHead(pfn);
    const s = this.state(head);
    if ((s & PS_HUGETLB) === 0) this.warnings.push('folio_try_hugetlb_mte_tagging on a non-hugetlb folio');
    return this.tryLatch(head, s);
  }

  /** Models folio_set_hugetlb_mte_tagged(): sets PG_mte_tagged on the folio head. */
  folioSetHugetlbMteTagged(pfn: number): void {
    const head = this.folioHead(pfn);
    if ((this.state(head) & PS_HUGETLB) === 0) {
      this.warnings.push('folio_set_hugetlb_mte_tagged on a non-hugetlb folio');
    }
    this.orState(head, PS_MTE_TAGGED);
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
    if (!this.mte) return;
    if (this.folioTestHugetlb(pfn)) {
      if (this.folioTryHugetlbMteTagging(pfn)) {
        for (let i = 0; i < nPages; i++) this.mteClearPageTags(pfn + i);
        this.folioSetHugetlbMteTagged(pfn);
      }
      return;
    }
    for (let i = 0; i < nPages; i++) {
      if (this.tryPageMteTagging(pfn + i)) {
        this.mteClearPageTags(pfn + i);
        this.setPageMteTagged(pfn + i);
      }
    }
  }

  /** Models mte_clear_page_tags(page_address(pfn)): counts one page of tags cleared. */
  mteClearPageTags(_pfn: number): void {
    this.stats.mteTagClears++;
  }

  // ---- internals -------------------------------------------------------------

  private tryLatch(pfn: number, s: number): boolean {
    if ((s & PS_MTE_LOCK) === 0) {
      this.orState(pfn, PS_MTE_LOCK);
      return true;
    }
    if ((s & PS_MTE_TAGGED) === 0) {
      this.warnings.push(
        `MTE lock held without PG_mte_tagged on pfn 0x${pfn.toString(16)}: would spin forever`,
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

  private orState(pfn: number, bits: number): void {
    const c = this.chunk(shr(pfn, CHUNK_BITS), true) as Uint16Array;
    c[pfn & (CHUNK_PAGES - 1)] |= bits;
  }

  private andState(pfn: number, mask: number): void {
    const c = this.chunk(shr(pfn, CHUNK_BITS), false);
    if (c !== undefined) c[pfn & (CHUNK_PAGES - 1)] &= mask;
  }

  /** Sets n words starting at pfn to `word`, preserving the `keep` bits. */
  private fillState(pfn: number, n: number, word: number, keep: number): void {
    let p = pfn;
    const end = pfn + n;
    while (p < end) {
      const key = shr(p, CHUNK_BITS);
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

  private takeBlock(order: number): number {
    if (order > PS_ORDER_MASK) return -1;
    const list = this.freeLists[order];
    if (list.length > 0) return list.pop() as number;
    for (let k = order + 1; k <= PS_ORDER_MASK; k++) {
      const big = this.freeLists[k];
      if (big.length === 0) continue;
      const pfn = big.pop() as number;
      // Keep the first 2^order pages; return the rest as aligned buddies.
      for (let j = k - 1; j >= order; j--) this.freeLists[j].push(pfn + pow2(j));
      return pfn;
    }
    const n = pow2(order);
    for (let r = 0; r < this.bump.length; r++) {
      const cur = this.bump[r];
      const start = Math.ceil(cur / n) * n;
      if (start + n <= this.ramEnd[r]) {
        this.releaseGap(cur, start);
        this.bump[r] = start + n;
        return start;
      }
    }
    return -1;
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
