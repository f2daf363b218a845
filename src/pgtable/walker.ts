/**
 * The one generic walker (kvm_pgtable_walk(), arch/arm64/kvm/hyp/pgtable.c). It owns address stepping, index
 * computation, recursion by level, the re-read of an entry after a callback (so a walk
 * descends into a table a LEAF visitor just installed) and the EAGAIN policy. Operations are
 * small visitors (stage2.ts) that receive one borrowed context object.
 *
 * Walks nest (a map's TABLE_PRE frees a detached subtree with a walk of its own; split
 * builds one with create_unlinked), so each nesting depth has its own preallocated
 * WalkData and context: nothing is allocated per walk.
 */

import { pteIsTable } from './descriptor.js';
import { EINVAL, ERANGE, EAGAIN } from './errno.js';
import type { AddrLayout } from './descriptor.js';
import type { Geometry } from './geometry.js';
import type { TablePool } from './pool.js';
import { DOUBLE_FIELD, S2Op } from './op.js';

/** KVM_PGTABLE_WALK_LEAF: visit leaves (and invalid entries). */
export const KVM_PGTABLE_WALK_LEAF = 1 << 0;
/** KVM_PGTABLE_WALK_TABLE_PRE: visit tables before their children. */
export const KVM_PGTABLE_WALK_TABLE_PRE = 1 << 1;
/** KVM_PGTABLE_WALK_TABLE_POST: visit tables after their children. */
export const KVM_PGTABLE_WALK_TABLE_POST = 1 << 2;
/** KVM_PGTABLE_WALK_SHARED: concurrent walk (read mmu_lock); updates use compare-and-swap. */
export const KVM_PGTABLE_WALK_SHARED = 1 << 3;
/** KVM_PGTABLE_WALK_HANDLE_FAULT: −EAGAIN stops the walk and is returned (fault path). */
export const KVM_PGTABLE_WALK_HANDLE_FAULT = 1 << 4;
/** KVM_PGTABLE_WALK_SKIP_BBM_TLBI: break-before-make without TLB invalidation. */
export const KVM_PGTABLE_WALK_SKIP_BBM_TLBI = 1 << 5;
/** KVM_PGTABLE_WALK_SKIP_CMO: no cache maintenance. */
export const KVM_PGTABLE_WALK_SKIP_CMO = 1 << 6;

/**
 * WALK_UPPER_NOOP (s2emu, not a kernel flag): the operation promises that its TABLE_PRE and
 * TABLE_POST visits on the table levels above a single page do nothing (map: no block fits
 * in one page; unmap: a table that keeps an entry is not freed). With it, a single-page walk
 * may start at a cached last-level table (see Walker) and give exactly the same result.
 */
export const WALK_UPPER_NOOP = 1 << 16;

/** Entries of the walk cache per cached level (direct-mapped, by the table's region). */
const WALK_CACHE_SIZE = 1024;

/** The visit kinds a callback receives (same bits as the walk flags that request them). */
export const VISIT_LEAF = KVM_PGTABLE_WALK_LEAF;
export const VISIT_TABLE_PRE = KVM_PGTABLE_WALK_TABLE_PRE;
export const VISIT_TABLE_POST = KVM_PGTABLE_WALK_TABLE_POST;

/**
 * struct kvm_pgtable_visit_ctx. Borrowed: the walker refills it for every visit, so a
 * visitor copies what it keeps.
 */
export class WalkCtx {
  /** The words of the table page holding the entry (ptep = words[2·idx], words[2·idx+1]). */
  words: Int32Array = new Int32Array(0);
  /** Pool index of that table page. */
  page = 0;
  /** Entry index within the page. */
  idx = 0;
  /** The entry as read at visit time (reloaded after a callback, for TABLE_POST). */
  oldLo = 0;
  oldHi = 0;
  /** Walk start (page-aligned). */
  start = 0;
  /** Current address: not aligned to the entry. */
  addr = 0;
  /** Walk end. */
  end = 0;
  level = 0;
  /** The walker's flags. */
  flags = 0;
  /** The walker's argument (operation data). */
  arg: unknown = null;
}

/** A visitor: returns 0 to go on, or a negative errno. */
export type Visitor = (ctx: WalkCtx, visit: number) => number;

/** struct kvm_pgtable_walk_data plus the walker {cb, arg, flags}. */
export class WalkData {
  start = 0;
  addr = 0;
  end = 0;
  flags = 0;
  cb: Visitor = () => 0;
  arg: unknown = null;
  /** Walks from the root may fill the walk cache; detached (unlinked) walks may not. */
  fromRoot = false;
  readonly ctx = new WalkCtx();
}

/**
 * kvm_pgtable_walk_continue(): whether a walk goes on after a visit returned `r`: −EAGAIN
 * goes on unless HANDLE_FAULT, other errors stop it. Returns the test.
 */
export function walkContinue(flags: number, r: number): boolean {
  return r === EAGAIN ? (flags & KVM_PGTABLE_WALK_HANDLE_FAULT) === 0 : r === 0;
}

/** Deepest nesting of walks (map → free_unlinked; split → create_unlinked → free_unlinked). */
const MAX_DEPTH = 6;

/** The walker over one pool's table pages. */
export class Walker {
  readonly geo: Geometry;
  readonly layout: AddrLayout;
  readonly pool: TablePool;
  private readonly stack: WalkData[] = [];
  private depth = 0;
  /**
   * The walk cache: like a hardware walk cache, it remembers which level-3 table maps a
   * region (one level-2 entry's span) and which level-2 table maps a region (one level-1
   * entry's span), so that a single-leaf walk skips the levels above (slot L − 2 of each
   * array block holds level L). An entry is valid while its generation equals `gen`, which
   * bumps whenever a table descriptor is removed or replaced (bumpGen()); installing a table
   * never makes an existing entry wrong, as entries only ever name reachable tables.
   */
  private readonly cacheTag = new Float64Array(2 * WALK_CACHE_SIZE).fill(-1);
  private readonly cachePage = new Int32Array(2 * WALK_CACHE_SIZE);
  private readonly cacheGen = new Float64Array(2 * WALK_CACHE_SIZE).fill(-1);
  private gen = 0;
  /** Whether single-leaf walks may use the walk cache (on by default; tests compare both). */
  useCache = true;
  /**
   * The aligned range of the walk being started, consumed by startWalk() before any visit
   * (so a nested walk may reuse them). Private scratch, not an interface.
   */
  private spanStart = DOUBLE_FIELD;
  private spanEnd = DOUBLE_FIELD;
  /** walkRoot()'s operands, handed to walkOp(). */
  private readonly args = new S2Op();

  constructor(geo: Geometry, layout: AddrLayout, pool: TablePool) {
    this.geo = geo;
    this.layout = layout;
    this.pool = pool;
    for (let i = 0; i < MAX_DEPTH; i++) this.stack.push(new WalkData());
  }

  /** Takes the WalkData for a new (possibly nested) walk. Pair with endWalk(). */
  beginWalk(cb: Visitor, arg: unknown, flags: number): WalkData {
    if (this.depth >= MAX_DEPTH) throw new Error('page-table walks nested too deeply');
    const d = this.stack[this.depth++]!;
    d.cb = cb;
    d.arg = arg;
    d.flags = flags;
    return d;
  }

  /** Invalidates the walk cache: a table descriptor was removed or replaced. */
  bumpGen(): void {
    this.gen++;
  }

  /**
   * The level-`level` table (2 or 3) the walk cache knows for `region` (the IPA divided by
   * geo.sizes[level], the span of the entry above), for the page table's fast paths.
   * Returns its pool index, or −1 (unknown, or the cache is off).
   */
  cachedTable(level: number, region: number): number {
    if (!this.useCache) return -1;
    const slot = (region & (WALK_CACHE_SIZE - 1)) + (level - 2) * WALK_CACHE_SIZE;
    if (this.cacheTag[slot] !== region || this.cacheGen[slot] !== this.gen) return -1;
    return this.cachePage[slot]!;
  }

  /** Remembers that the level-`level` table (2 or 3) for `region` is pool page `page`. */
  rememberTable(level: number, region: number, page: number): void {
    const slot = (region & (WALK_CACHE_SIZE - 1)) + (level - 2) * WALK_CACHE_SIZE;
    this.cacheTag[slot] = region;
    this.cachePage[slot] = page;
    this.cacheGen[slot] = this.gen;
  }

  /**
   * Starts walk `d` over [spanStart, spanEnd) (fields: arguments would be boxed wherever V8
   * does not inline the call). `fromRoot`: the walk starts at the root (the walk cache may
   * remember its tables).
   */
  private startWalk(d: WalkData, fromRoot: boolean): void {
    const start = this.spanStart;
    const end = this.spanEnd;
    d.start = start;
    d.addr = start;
    d.end = end;
    d.fromRoot = fromRoot;
    const c = d.ctx;
    c.start = start;
    c.end = end;
    c.flags = d.flags;
    c.arg = d.arg;
  }

  /** Releases the WalkData of the innermost walk. */
  endWalk(): void {
    this.depth--;
  }

  /**
   * _kvm_pgtable_walk(): walks [ALIGN_DOWN(addr), PAGE_ALIGN(ALIGN_DOWN(addr) + size)) from
   * the root pages. Returns 0, −ERANGE outside the IPA space, or the stopping visitor's error.
   */
  walkRoot(pgd: number, addr: number, size: number, cb: Visitor, arg: unknown, flags: number): number {
    // A small wrapper that the JIT inlines into callers: the addresses go into an operand
    // object (stored in place as doubles) rather than as arguments to the large body, which
    // V8 would box as heap numbers on every call once they exceed the small-integer range.
    const o = this.args;
    o.addr = addr;
    o.size = size;
    return this.walkOp(pgd, o, cb, arg, flags);
  }

  /** walkRoot() of [op.addr, op.addr + op.size); `op` is only read, during the call. */
  walkOp(pgd: number, op: S2Op, cb: Visitor, arg: unknown, flags: number): number {
    const geo = this.geo;
    const ps = geo.pageSize;
    const inv = geo.invPageSize;
    const start = Math.floor(op.addr * inv) * ps;
    const end = Math.ceil((start + op.size) * inv) * ps;
    const limit = geo.ipaLimit;
    if (start > limit || end > limit) return ERANGE;
    if (pgd < 0) return EINVAL;
    this.spanStart = start;
    this.spanEnd = end;
    if (end - start === ps && this.useCache) {
      const ret = this.walkCached(cb, arg, flags);
      if (ret !== 1) return ret;
    }
    const d = this.beginWalk(cb, arg, flags);
    this.startWalk(d, true);
    let ret = 0;
    // kvm_pgd_page_idx(start), inline (start is below the IPA limit): pgdPageIndex() would
    // take the address as an argument.
    const first = geo.pgdPages === 1 ? 0 : Math.floor(start * geo.invSizes[geo.startLevel]!);
    for (let i = first; d.addr < d.end; i++) {
      ret = this.walkTable(d, pgd + i, geo.startLevel);
      if (ret) break;
    }
    this.endWalk();
    return ret;
  }

  /**
   * A single-page walk that starts at the cached last-level table, when the cache knows the
   * region and skipping the levels above cannot change the result: they hold only table
   * entries, which LEAF visits ignore, and TABLE_PRE/TABLE_POST visits there are no-ops by
   * the operation's WALK_UPPER_NOOP promise (TABLE_POST only while the table keeps another
   * entry). Returns the walk's result, or 1 when the full walk must run.
   */
  private walkCached(cb: Visitor, arg: unknown, flags: number): number {
    const geo = this.geo;
    const start = this.spanStart;
    if (flags & (KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_TABLE_POST) && !(flags & WALK_UPPER_NOOP))
      return 1;
    const region = Math.floor(start * geo.invSizes[3]!);
    const page = this.cachedTable(3, region);
    if (page < 0) return 1;
    const words = this.pool.pages[page]!;
    const idx = (start - region * geo.sizes[3]!) * geo.invPageSize;
    if (flags & KVM_PGTABLE_WALK_TABLE_POST) {
      const counted = words[2 * idx] !== 0 || words[2 * idx + 1] !== 0 ? 1 : 0;
      if (this.pool.pageCount(page) - counted <= 1) return 1;
    }
    const d = this.beginWalk(cb, arg, flags);
    this.startWalk(d, true);
    const ret = this.visit(d, words, page, idx, 3);
    this.endWalk();
    return ret;
  }

  /**
   * __kvm_pgtable_walk() on a detached table at `level` over [0, end): the walk that
   * create_unlinked and free_unlinked run. Returns 0 or the stopping visitor's error.
   */
  walkDetached(page: number, level: number, end: number, cb: Visitor, arg: unknown, flags: number): number {
    const d = this.beginWalk(cb, arg, flags);
    this.spanStart = 0;
    this.spanEnd = end;
    this.startWalk(d, false);
    const ret = this.walkTable(d, page, level);
    this.endWalk();
    return ret;
  }

  /** __kvm_pgtable_walk(): the entries of one table page from the current address. */
  private walkTable(d: WalkData, page: number, level: number): number {
    if (level < -1 || level > 3) return EINVAL;
    const words = this.pool.pages[page]!;
    const ptrs = this.geo.ptrsPerPte;
    let ret = 0;
    for (let idx = this.geo.index(d.addr, level); idx < ptrs; idx++) {
      if (d.addr >= d.end) break;
      ret = this.visit(d, words, page, idx, level);
      if (ret) break;
    }
    return ret;
  }

  private static cont(flags: number, r: number): boolean {
    return walkContinue(flags, r);
  }

  /** __kvm_pgtable_visit(): one entry. Returns 0 to go on, or the error that stops the walk. */
  private visit(d: WalkData, words: Int32Array, page: number, idx: number, level: number): number {
    const flags = d.flags;
    const addr = d.addr;
    let oldLo = words[2 * idx]!;
    let oldHi = words[2 * idx + 1]!;
    let table = pteIsTable(oldLo, level);
    let ret = 0;
    let reload = false;
    if (table && flags & KVM_PGTABLE_WALK_TABLE_PRE) {
      d.ctx.addr = addr;
      ret = d.cb(this.fill(d, words, page, idx, oldLo, oldHi, level), VISIT_TABLE_PRE);
      reload = true;
    }
    if (!table && flags & KVM_PGTABLE_WALK_LEAF) {
      d.ctx.addr = addr;
      ret = d.cb(this.fill(d, words, page, idx, oldLo, oldHi, level), VISIT_LEAF);
      reload = true;
    }
    if (reload) {
      oldLo = words[2 * idx]!;
      oldHi = words[2 * idx + 1]!;
      table = pteIsTable(oldLo, level);
    }
    if (!Walker.cont(flags, ret)) return ret;
    if (!table) {
      const size = this.geo.sizes[level + 1]!;
      d.addr = (Math.floor(d.addr * this.geo.invSizes[level + 1]!) + 1) * size;
      return 0;
    }
    const child = this.pool.pageOfTable(this.layout, oldLo, oldHi);
    if ((level === 2 || level === 1) && d.fromRoot)
      this.rememberTable(level + 1, Math.floor(d.addr * this.geo.invSizes[level + 1]!), child);
    ret = this.walkTable(d, child, level + 1);
    if (!Walker.cont(flags, ret)) return ret;
    if (flags & KVM_PGTABLE_WALK_TABLE_POST) {
      d.ctx.addr = addr;
      ret = d.cb(this.fill(d, words, page, idx, oldLo, oldHi, level), VISIT_TABLE_POST);
    }
    return Walker.cont(flags, ret) ? 0 : ret;
  }

  private fill(
    d: WalkData,
    words: Int32Array,
    page: number,
    idx: number,
    oldLo: number,
    oldHi: number,
    level: number,
  ): WalkCtx {
    // start, end, flags and arg are the walk's own: set once by startWalk(); addr is stored
    // by the caller (a double: as an argument V8 would box it).
    const c = d.ctx;
    c.words = words;
    c.page = page;
    c.idx = idx;
    c.oldLo = oldLo;
    c.oldHi = oldHi;
    c.level = level;
    return c;
  }
}
