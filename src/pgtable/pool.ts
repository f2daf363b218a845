/**
 * Table pages, refcounts, the memcache and the mm_ops-like environment of the page-table
 * code (struct kvm_pgtable_mm_ops, struct kvm_mmu_memory_cache; arch/arm64/kvm/mmu.c).
 *
 * Every table page is an Int32Array view of PAGE_SIZE bytes (two words per descriptor:
 * word 2i = lo, 2i + 1 = hi) carved out of large chunk buffers, with a physical address in a
 * dedicated arena starting at TABLE_ARENA_BASE. Pages are named by their index in the pool;
 * phys = TABLE_ARENA_BASE + index × PAGE_SIZE. Refcounts follow KVM's invariant: a table
 * page's count is 1 + the number of counted (non-zero) entries it holds.
 *
 * Descriptor halves are signed inside the page-table code, so that every half it handles is a
 * small integer for V8: an unsigned half with bit 31 set (PA bit 31 in a leaf's lo) would be
 * a heap number wherever it crosses a call V8 does not inline, and the fault path allocates
 * nothing. Halves leave unsigned (getLeaf, forEachValid, the hardware walk, hex64).
 *
 * All allocation, refcounting, TLB invalidation and cache maintenance go through this file
 * (TablePool for pages, Stage2Events for TLBI and CMOs), so callers can count, order and cost
 * them.
 */

import type { AddrLayout } from './descriptor.js';
import { DOUBLE_FIELD } from './op.js';

/** Physical address of the first table page (the vectors' arena). */
export const TABLE_ARENA_BASE = 0x100000000000;
/** TABLE_ARENA_BASE / 2^32: the arena starts on a 4 GiB boundary. */
const ARENA_HI = TABLE_ARENA_BASE / 2 ** 32;

/** TLBI_TTL_UNKNOWN: "no level hint" (the kernel uses INT_MAX). */
export const TLBI_TTL_UNKNOWN = 0x7fffffff;

/**
 * The operands of one TLB invalidation or cache-maintenance call. The page table fills one
 * reused object and hands it over by reference: a sink reads it during the call and keeps no
 * reference. (Addresses are doubles, mostly past 2^31; as arguments V8 would box each into a
 * new heap number at every call to a sink it does not inline, and sinks are many.)
 */
export interface MaintenanceOp {
  /** The IPA (TLBIs) or the PA (cache maintenance), below 2^53. */
  addr: number;
  /** Bytes: the range of a range TLBI or of a cache-maintenance call. */
  size: number;
  /** The level hint of a TLBI by IPA (TLBI_TTL_UNKNOWN for none). */
  level: number;
}

/**
 * Where the page-table code's TLB invalidations and cache maintenance go. Each method is one
 * call the kernel makes (one line of replay output), with its operands in `op`.
 */
export interface Stage2Events {
  /** __kvm_tlb_flush_vmid_ipa(ipa, level): TLBI IPAS2E1IS + VMALLE1IS. Reads addr, level. */
  tlbiVmidIpa(op: Readonly<MaintenanceOp>): void;
  /** __kvm_tlb_flush_vmid_ipa_nsh(ipa, level): the local, non-shareable variant. Reads addr, level. */
  tlbiVmidIpaNsh(op: Readonly<MaintenanceOp>): void;
  /** kvm_tlb_flush_vmid_range(addr, size) with FEAT_TLBIRANGE: range invalidation. Reads addr, size. */
  tlbiVmidRange(op: Readonly<MaintenanceOp>): void;
  /** __kvm_tlb_flush_vmid(): the whole VMID. */
  tlbiVmid(): void;
  /** mm_ops->dcache_clean_inval_poc(va(pa), size). Reads addr (the PA), size. */
  dcacheCleanInvalPoc(op: Readonly<MaintenanceOp>): void;
  /** mm_ops->icache_inval_pou(va(pa), size). Reads addr (the PA), size. */
  icacheInvalPou(op: Readonly<MaintenanceOp>): void;
}

/** A fresh MaintenanceOp to reuse. */
export function newMaintenanceOp(): MaintenanceOp {
  return { addr: DOUBLE_FIELD, size: DOUBLE_FIELD, level: 0 };
}

/** A Stage2Events that does nothing (for callers that only want the table). */
export const NULL_EVENTS: Stage2Events = {
  tlbiVmidIpa() {},
  tlbiVmidIpaNsh() {},
  tlbiVmidRange() {},
  tlbiVmid() {},
  dcacheCleanInvalPoc() {},
  icacheInvalPou() {},
};

/**
 * A Stage2Events that counts calls and bytes, allocation-free (for benchmarks and the fault
 * path's per-access accounting).
 */
export class CountingEvents implements Stage2Events {
  tlbiIpa = 0;
  tlbiIpaNsh = 0;
  tlbiRange = 0;
  tlbiAll = 0;
  dcacheCalls = 0;
  dcacheBytes = 0;
  icacheCalls = 0;
  icacheBytes = 0;
  tlbiVmidIpa(): void {
    this.tlbiIpa++;
  }
  tlbiVmidIpaNsh(): void {
    this.tlbiIpaNsh++;
  }
  tlbiVmidRange(): void {
    this.tlbiRange++;
  }
  tlbiVmid(): void {
    this.tlbiAll++;
  }
  dcacheCleanInvalPoc(op: Readonly<MaintenanceOp>): void {
    this.dcacheCalls++;
    this.dcacheBytes += op.size;
  }
  icacheInvalPou(op: Readonly<MaintenanceOp>): void {
    this.icacheCalls++;
    this.icacheBytes += op.size;
  }
  /** Total TLBI requests of every kind. */
  get tlbi(): number {
    return this.tlbiIpa + this.tlbiIpaNsh + this.tlbiRange + this.tlbiAll;
  }
  /** Zeroes every counter. */
  reset(): void {
    this.tlbiIpa = this.tlbiIpaNsh = this.tlbiRange = this.tlbiAll = 0;
    this.dcacheCalls = this.dcacheBytes = this.icacheCalls = this.icacheBytes = 0;
  }
}

/** Bytes per chunk buffer that table pages are carved from. */
const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * The table-page allocator: zalloc_page / zalloc_pages_exact / get_page / put_page /
 * page_count / phys_to_virt / virt_to_phys of kvm_s2_mm_ops, over typed-array memory.
 */
export class TablePool {
  /** PAGE_SIZE in bytes. */
  readonly pageSize: number;
  /** Uint32 words per page (2 per descriptor). */
  readonly wordsPerPage: number;
  /** Page index → its words. Grows by whole chunks; never per operation. */
  pages: Int32Array[] = [];
  /** Page index → refcount (0 = free). */
  private counts: Int32Array = new Int32Array(1024);
  /** Stack of free page indices (zeroed). */
  private freeList: Int32Array = new Int32Array(1024);
  private freeTop = 0;
  /** Pages handed out and not yet freed. */
  inUse = 0;
  /** The most pages in use at once. */
  peak = 0;
  /** zalloc calls that succeeded. */
  allocs = 0;
  /** Pages returned to the pool. */
  frees = 0;
  /** Optional cap on pages in use, to model allocation failure; Infinity by default. */
  limit = Infinity;

  private readonly invPageSize: number;
  private readonly pagesPer4G: number;

  constructor(pageSize: number) {
    this.pageSize = pageSize;
    this.invPageSize = 1 / pageSize;
    this.pagesPer4G = 2 ** 32 / pageSize;
    this.wordsPerPage = pageSize / 4;
  }

  /** Number of pages the pool has backing memory for. */
  get capacity(): number {
    return this.pages.length;
  }

  /** Bytes of backing memory the pool holds (in use or free). */
  get backingBytes(): number {
    return this.pages.length * this.pageSize;
  }

  private grow(): void {
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / this.pageSize));
    const chunk = new Int32Array(perChunk * this.wordsPerPage);
    const first = this.pages.length;
    for (let i = 0; i < perChunk; i++) {
      this.pages.push(chunk.subarray(i * this.wordsPerPage, (i + 1) * this.wordsPerPage));
    }
    if (this.counts.length < this.pages.length) {
      const c = new Int32Array(Math.max(this.counts.length * 2, this.pages.length));
      c.set(this.counts);
      this.counts = c;
    }
    if (this.freeList.length < this.pages.length) {
      const f = new Int32Array(Math.max(this.freeList.length * 2, this.pages.length));
      f.set(this.freeList.subarray(0, this.freeTop));
      this.freeList = f;
    }
    // Push in reverse so pages are handed out in ascending order.
    for (let i = this.pages.length - 1; i >= first; i--) this.freeList[this.freeTop++] = i;
  }

  /**
   * Takes one zeroed page with refcount 1 (mm_ops->zalloc_page without the memcache).
   * Returns the page index, or −1 when the pool's limit is reached.
   */
  allocPage(): number {
    if (this.inUse >= this.limit) return -1;
    if (this.freeTop === 0) this.grow();
    const idx = this.freeList[--this.freeTop]!;
    this.counts[idx] = 1;
    this.inUse++;
    this.allocs++;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return idx;
  }

  /**
   * zalloc_pages_exact(n pages): n physically contiguous zeroed pages, naturally aligned to
   * their total size (the architecture requires a concatenated PGD to be). Each page gets
   * refcount 1. Returns the first page index, or −1 at the limit.
   */
  allocContiguous(n: number): number {
    if (n === 1) return this.allocPage();
    if (this.inUse + n > this.limit) return -1;
    // Search the free pages for an aligned run; grow until one exists.
    for (;;) {
      for (let base = 0; base + n <= this.pages.length; base += n) {
        let ok = true;
        for (let i = 0; i < n && ok; i++) ok = this.counts[base + i] === 0;
        if (ok) {
          for (let i = 0; i < n; i++) this.takeFree(base + i);
          return base;
        }
      }
      this.grow();
    }
  }

  private takeFree(idx: number): void {
    for (let i = 0; i < this.freeTop; i++) {
      if (this.freeList[i] === idx) {
        this.freeList[i] = this.freeList[--this.freeTop]!;
        break;
      }
    }
    this.counts[idx] = 1;
    this.inUse++;
    this.allocs++;
    if (this.inUse > this.peak) this.peak = this.inUse;
  }

  /** mm_ops->get_page(): one more reference on a page. */
  getPage(idx: number): void {
    this.counts[idx]!++;
  }

  /**
   * mm_ops->put_page(): drops a reference; at zero the page is zeroed and freed.
   * Returns the new count.
   */
  putPage(idx: number): number {
    const c = --this.counts[idx]!;
    if (c === 0) this.release(idx);
    else if (c < 0) throw new Error(`table page ${idx} refcount underflow`);
    return c;
  }

  /** free_pages_exact(): frees pages regardless of their count (the PGD at teardown). */
  freeExact(first: number, n: number): void {
    for (let i = 0; i < n; i++) {
      if (this.counts[first + i]! > 0) {
        this.counts[first + i] = 0;
        this.release(first + i);
      }
    }
  }

  private release(idx: number): void {
    this.pages[idx]!.fill(0);
    this.freeList[this.freeTop++] = idx;
    this.inUse--;
    this.frees++;
  }

  /** mm_ops->page_count(). Returns the refcount. */
  pageCount(idx: number): number {
    return this.counts[idx]!;
  }

  /** virt_to_phys of a table page. Returns its physical address. */
  phys(idx: number): number {
    return TABLE_ARENA_BASE + idx * this.pageSize;
  }

  /** phys_to_virt: the page index of a table's physical address, or −1 outside the arena. */
  pageOf(pa: number): number {
    const idx = (pa - TABLE_ARENA_BASE) * this.invPageSize;
    return idx >= 0 && idx < this.pages.length && Math.floor(idx) === idx ? idx : -1;
  }

  /**
   * kvm_pte_follow() of a table descriptor: pageOf(layout.toPhys(lo, hi)) in small integers,
   * for the walkers. The PA itself is never formed: a double returned by toPhys() would be
   * boxed at every call V8 does not inline.
   */
  pageOfTable(layout: AddrLayout, lo: number, hi: number): number {
    // OA bits [51:32] less the arena's, then the page within that 4 GiB.
    const up = (hi & layout.hiMask) + layout.oaHiInLo(lo) - ARENA_HI;
    if (up < 0 || up >= this.pages.length) return -1;
    const idx = up * this.pagesPer4G + ((lo & layout.loMask) >>> layout.pageShift);
    return idx < this.pages.length ? idx : -1;
  }
}

/** Default capacity of a vCPU's memcache (KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE on arm64). */
export const KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE = 40;

/**
 * struct kvm_mmu_memory_cache: table pages set aside before any lock is taken, so that the
 * map walker only consumes pages and never sleeps. `unlimited` models the replay's
 * "unlimited page cache", which allocates straight from the pool.
 */
export class MemCache {
  readonly pool: TablePool;
  readonly capacity: number;
  readonly unlimited: boolean;
  private objs: Int32Array;
  private n = 0;

  constructor(pool: TablePool, capacity = KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE, unlimited = false) {
    this.pool = pool;
    this.capacity = capacity;
    this.unlimited = unlimited;
    this.objs = new Int32Array(unlimited ? 0 : capacity);
  }

  /** A memcache that never runs out (pages come from the pool on demand). */
  static unlimited(pool: TablePool): MemCache {
    return new MemCache(pool, Infinity, true);
  }

  /** mc->nobjs: pages held. Infinity for an unlimited cache. */
  get nobjs(): number {
    return this.unlimited ? Infinity : this.n;
  }

  /**
   * kvm_mmu_topup_memory_cache(mc, min): when fewer than `min` pages are held, refill to
   * capacity. Returns 0, or −ENOMEM (−12) if the pool could not supply `min` pages.
   */
  topup(min: number): number {
    if (this.unlimited || this.n >= min) return 0;
    if (min > this.capacity) return -12;
    while (this.n < this.capacity) {
      const p = this.pool.allocPage();
      if (p < 0) break;
      this.objs[this.n++] = p;
    }
    return this.n >= min ? 0 : -12;
  }

  /** mm_ops->zalloc_page(mc): takes one page. Returns its index, or −1 when empty. */
  take(): number {
    if (this.unlimited) return this.pool.allocPage();
    if (this.n === 0) return -1;
    return this.objs[--this.n]!;
  }

  /** kvm_mmu_free_memory_cache(): returns every held page to the pool. */
  free(): void {
    while (this.n > 0) this.pool.putPage(this.objs[--this.n]!);
  }
}
