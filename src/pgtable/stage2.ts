/**
 * The stage-2 page table and its operations (arch/arm64/kvm/hyp/pgtable.c): init, map, set_owner, unmap,
 * relax_perms, wrprotect, mkyoung, test_clear_young, flush, split, create_unlinked,
 * free_unlinked, get_leaf and destroy, with break-before-make and the exact TLBI and
 * cache-maintenance calls of Linux v6.17's arch/arm64/kvm/hyp/pgtable.c.
 *
 * Each operation is a small visitor plus a data object that lives on the instance (no
 * allocation per call); results are negative errno values.
 */

import {
  AddrLayout,
  KVM_INVALID_PTE_LOCKED,
  KVM_MAX_OWNER_ID,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW_MASK,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  KVM_PTE_LEAF_ATTR_HI,
  KVM_PTE_LEAF_ATTR_HI_S2_XN,
  KVM_PTE_LEAF_ATTR_HI_SW,
  KVM_PTE_LEAF_ATTR_LO,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  KVM_PTE_TYPE_TABLE,
  KVM_PTE_VALID,
  buildValidLeafPte,
  pteCacheable,
  pteExecutable,
  pteIsLocked,
  pteIsTable,
  stage2PteProt,
  stage2SetProtAttr,
} from './descriptor.js';
import { E2BIG, EAGAIN, EINVAL, ENOMEM } from './errno.js';
import type { AttrOut, LeafBuild } from './descriptor.js';
import { Geometry } from './geometry.js';
import type { GranuleSize } from './geometry.js';
import { MemCache, NULL_EVENTS, TLBI_TTL_UNKNOWN, TablePool, newMaintenanceOp } from './pool.js';
import type { MaintenanceOp, Stage2Events } from './pool.js';
import { DOUBLE_FIELD, S2Op } from './op.js';
import { DESCRIPTION_HOOK, INSPECT_HOOK, VIEWS_NOT_LOADED, debugHooks, debugText } from './debughooks.js';
import {
  JOURNAL_SITE_FREE,
  JOURNAL_SITE_INSTALL,
  JOURNAL_SITE_MAKE,
  JOURNAL_SITE_SET,
  JOURNAL_SITE_UNMAP,
} from './journal.js';
import type { Journal } from './journal.js';
import { badArgument, checkAddr, checkBool, checkSize, isWhole } from './argcheck.js';
import {
  KVM_PGTABLE_WALK_LEAF,
  KVM_PGTABLE_WALK_SHARED,
  KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
  KVM_PGTABLE_WALK_SKIP_CMO,
  KVM_PGTABLE_WALK_TABLE_POST,
  KVM_PGTABLE_WALK_TABLE_PRE,
  VISIT_LEAF,
  VISIT_TABLE_POST,
  VISIT_TABLE_PRE,
  WALK_UPPER_NOOP,
  WalkCtx,
  Walker,
  walkContinue,
} from './walker.js';
import type { Visitor } from './walker.js';
import { visitTablePages, visitValidDescriptors } from './tablewalk.js';
import type { DescriptorVisit, TableSource } from './tablewalk.js';

/** KVM_PGTABLE_S2_NOFWB: this table does not use FWB even if the CPU has it. */
export const KVM_PGTABLE_S2_NOFWB = 1 << 0;
/** KVM_PGTABLE_S2_IDMAP: IPA must equal PA (pKVM host). */
export const KVM_PGTABLE_S2_IDMAP = 1 << 1;

/**
 * MAX_TLBI_RANGE_PAGES = __TLBI_RANGE_PAGES(31, 3): the most pages one range TLBI covers
 * (2^21). The golden vectors show 32 GiB chunks with 16K pages, which fixes this value.
 */
export const MAX_TLBI_RANGE_PAGES = 2 ** 21;

/** KVM_PTE_LEAF_ATTR_S2_PERMS in the lo half (R, W); XN is in the hi half. */
const PERMS_LO = KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R | KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
const PERMS_HI = KVM_PTE_LEAF_ATTR_HI_S2_XN;

/**
 * A fast path's "not mine: run the generic walk" (no errno is positive). A fast path returns
 * it before changing anything, or after changes that are exactly a prefix of what the generic
 * walk does, which that walk then finds done and continues (see unmapFast).
 */
const FALLBACK = 1;
/** leafFast()'s visits: the attribute walker, or get_leaf's record. */
const FAST_ATTR = 0;
const FAST_GET_LEAF = 1;

/** Checks a prot argument: KVM_PGTABLE_PROT_* bits (R, W, X, DEVICE, NORMAL_NC, SW0-SW3). */
function checkProt(fn: string, prot: unknown): void {
  if (!isWhole(prot, 0, 0x1ff))
    badArgument(fn, 'prot', 'a whole number of KVM_PGTABLE_PROT_* bits, 0 to 0x1ff', prot);
}

/** Checks a walk-flags argument: KVM_PGTABLE_WALK_* bits. */
function checkWalkFlags(fn: string, flags: unknown): void {
  if (!isWhole(flags, 0, 0x7f))
    badArgument(fn, 'flags', 'a whole number of KVM_PGTABLE_WALK_* bits, 0 to 0x7f', flags);
}

/** Options of a stage-2 table (what kvm_init_stage2_mmu and the CPU decide). */
export interface Stage2Options {
  /** Host PAGE_SIZE and stage-2 granule. */
  granule: GranuleSize;
  /** The VM's IPA size in bits (32..52). */
  ipaBits: number;
  /** The CPU has FEAT_S2FWB (HCR_EL2.FWB = 1). */
  fwb: boolean;
  /** Overrides the start level KVM would choose. */
  startLevel?: number;
  /** FEAT_TLBIRANGE; default true. Without it range invalidations become `tlbi vmid`. */
  tlbiRange?: boolean;
  /** FEAT_LPA2 output addresses (4K/16K only); default false. */
  lpa2?: boolean;
  /** pgt->flags: KVM_PGTABLE_S2_NOFWB | KVM_PGTABLE_S2_IDMAP; default 0. */
  flags?: number;
  /** Where TLBIs and CMOs go; default: nowhere. */
  events?: Stage2Events;
  /** The table-page pool; default: a new one. */
  pool?: TablePool;
  /** force_pte_cb(addr, end, prot): forces page mappings (pKVM); default none. */
  forcePteCb?: (addr: number, end: number, prot: number) => boolean;
  /**
   * Single-leaf fast paths beside the generic walker (map, unmap, relaxPerms, mkyoung,
   * getLeaf); default true. Off, every operation goes through the generic walker: the tests
   * compare both, which must give the same tables, refcounts, events and results.
   */
  fastPaths?: boolean;
}

/** Operation data of the map walker (struct stage2_map_data). */
class MapData {
  phys = DOUBLE_FIELD;
  attrLo = 0;
  attrHi = 0;
  /** stage2_pte_cacheable() and stage2_pte_executable() of a valid leaf with these attributes. */
  cacheable = false;
  exec = false;
  mc: MemCache | null = null;
  forcePte = false;
  annotation = false;
  ownerLo = 0;
}

/** Operation data of the attribute walker (struct stage2_attr_data). */
class AttrData {
  setLo = 0;
  setHi = 0;
  clrLo = 0;
  clrHi = 0;
  pteLo = 0;
  pteHi = 0;
  level = 0;
}

/** Output of getLeaf(): the entry covering an address and its level. Reuse one instance. */
export class LeafResult {
  lo = 0;
  hi = 0;
  level = 0;

  /** Node's inspect hook (console.log): the level and descriptor in hex. Returns the text. */
  [INSPECT_HOOK](): string {
    return debugText(
      'leaf-result',
      this,
      `LeafResult { L${this.level} lo 0x${this.lo.toString(16)} hi 0x${this.hi.toString(16)} }`,
    );
  }

  /** The debugger's description hook: the same text. */
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }
}

/**
 * struct kvm_pgtable for stage 2, with the operations of pgtable.c as methods
 * (kvm_pgtable_stage2_map → map, and so on).
 *
 * The argument-taking operations (map, unmap, relaxPerms, wrprotect, mkyoung, testClearYoung,
 * flush, split, getLeaf) check their arguments first (argcheck.ts): an address must be a whole
 * number below 2^52 (map's phys too: the kernel keeps its page frame), a size from 1 to 2^52,
 * a prot KVM_PGTABLE_PROT_* bits; anything else throws a RangeError (a TypeError for a value of the
 * wrong type) naming the argument. What the kernel decides stays a return value: −ERANGE
 * past the table's IPA space, −EINVAL for a bad prot combination. The `...Op` forms are not
 * checked: they are the hot path's, and the replay's (which passes the kernel any u64).
 */
export class Stage2PageTable {
  readonly geo: Geometry;
  readonly layout: AddrLayout;
  readonly pool: TablePool;
  readonly walker: Walker;
  /** Where TLBIs and CMOs go. Replaceable (e.g. to switch between counting and recording). */
  events: Stage2Events;
  /** stage2_has_fwb(): the CPU has FWB and the table does not opt out. */
  readonly fwb: boolean;
  /** FEAT_TLBIRANGE. */
  readonly tlbiRange: boolean;
  readonly lpa2: boolean;
  /** pgt->flags. */
  readonly flags: number;
  readonly forcePteCb: ((addr: number, end: number, prot: number) => boolean) | null;
  /** Pool index of the first root page (−1 once destroyed). */
  pgd: number;
  /** Whether the single-leaf fast paths run (Stage2Options.fastPaths; tests switch it). */
  fastPaths: boolean;
  /** No forcePte callback and no IDMAP: what mapLeafFast() needs of the table's options. */
  private readonly plainMaps: boolean;
  /**
   * The geometry mapLeafFast() reads, copied flat onto the table at construction: a page and
   * a level-2 block (whether blocks may sit at level 2), their inverses and those of the spans
   * above them, the start level, the IPA limit and the index mask. Read from here, each map
   * checks one object instead of loading the geometry's arrays.
   */
  private readonly leafPs: number;
  private readonly leafInvPs: number;
  private readonly leafBlock: number;
  private readonly leafBlockOk: boolean;
  private readonly leafInvBlock: number;
  private readonly leafInvAbove: number;
  private readonly leafStartLevel: number;
  private readonly leafIpaLimit: number;
  private readonly leafIdxMask: number;
  /**
   * The write journal (journal.ts), or null: every store into the table's words is recorded
   * there first. Null (the default) costs one test per store.
   */
  journal: Journal | null = null;

  private readonly mapData = new MapData();
  private readonly unlinkedMapData = new MapData();
  private readonly attrData = new AttrData();
  private readonly attrOut: AttrOut = { lo: 0, hi: 0 };
  private readonly leaf: LeafBuild = { lo: 0, hi: 0, pa: DOUBLE_FIELD };
  /** The PA of an entry being cleaned (kvm_pte_follow), and the operands handed to events. */
  private readonly cmo = { pa: DOUBLE_FIELD };
  private readonly op: MaintenanceOp = newMaintenanceOp();
  private readonly leafResult = new LeafResult();
  /**
   * The argument-taking entry points (map, unmap, …) put their numbers here and call the
   * S2Op form: a small wrapper V8 inlines, so the numbers are stored in place rather than
   * boxed as arguments of the large body. Private scratch, not an interface.
   */
  private readonly args = new S2Op();
  /** The one-byte range that relax_perms, mkyoung and get_leaf walk (size 1, as the kernel). */
  private readonly oneByte = new S2Op();
  /** The visit context of the fast paths (filled as the generic walker fills its own). */
  private readonly fastCtx = new WalkCtx();
  /** The range of the kvm_tlb_flush_vmid_range() being issued. */
  private flushAddr = DOUBLE_FIELD;
  private flushSize = DOUBLE_FIELD;
  private lastProt = -1;
  private lastAttrLo = 0;
  private lastAttrHi = 0;
  private lastCacheable = false;
  private lastExec = false;
  /**
   * The output addresses below which a leaf's kvm_pte_follow() gives back the PA it was built
   * from (2^48, or 2^52 with LPA2 or 64K pages): the fast path's CMO operand skips the
   * round trip there.
   */
  private readonly oaLimit: number;
  private young = false;
  private mkoldFlag = false;

  private readonly mapVisitor: Visitor;
  private readonly unmapVisitor: Visitor;
  private readonly attrVisitor: Visitor;
  private readonly ageVisitor: Visitor;
  private readonly flushVisitor: Visitor;
  private readonly splitVisitor: Visitor;
  private readonly freeVisitor: Visitor;
  private readonly getLeafVisitor: Visitor;

  /**
   * __kvm_pgtable_stage2_init(): allocates the (possibly concatenated) root pages. Throws a
   * RangeError for bad options (an API-boundary error) and an Error if the pool is exhausted.
   */
  constructor(opts: Stage2Options) {
    this.geo = new Geometry(opts.granule, opts.ipaBits, opts.startLevel);
    this.lpa2 = opts.lpa2 ?? false;
    if (this.lpa2 && opts.granule === 65536) throw new RangeError('lpa2: not available with 64K pages');
    this.layout = new AddrLayout(this.geo.pageShift, this.lpa2);
    this.pool = opts.pool ?? new TablePool(opts.granule);
    if (this.pool.pageSize !== opts.granule) throw new RangeError('pool: page size differs from the granule');
    this.walker = new Walker(this.geo, this.layout, this.pool);
    this.events = opts.events ?? NULL_EVENTS;
    this.flags = opts.flags ?? 0;
    this.fwb = opts.fwb && (this.flags & KVM_PGTABLE_S2_NOFWB) === 0;
    this.tlbiRange = opts.tlbiRange ?? true;
    this.forcePteCb = opts.forcePteCb ?? null;
    this.fastPaths = opts.fastPaths ?? true;
    this.plainMaps = this.forcePteCb === null && (this.flags & KVM_PGTABLE_S2_IDMAP) === 0;
    const geo = this.geo;
    this.leafPs = geo.pageSize;
    this.leafInvPs = geo.invPageSize;
    this.leafBlock = geo.sizes[3]!;
    this.leafBlockOk = geo.minBlockLevel <= 2;
    this.leafInvBlock = geo.invSizes[3]!;
    this.leafInvAbove = geo.invSizes[2]!;
    this.leafStartLevel = geo.startLevel;
    this.leafIpaLimit = geo.ipaLimit;
    this.leafIdxMask = geo.ptrsPerPte - 1;
    let oa = 52;
    for (; oa > 32; oa--) {
      const top = 2 ** oa - this.geo.pageSize;
      if (this.layout.toPhys(this.layout.physLo(top), this.layout.physHi(top)) === top) break;
    }
    this.oaLimit = 2 ** oa;
    this.pgd = this.pool.allocContiguous(this.geo.pgdPages);
    if (this.pgd < 0) throw new Error('kvm_pgtable_stage2_init: -ENOMEM (no pages for the PGD)');
    this.mapVisitor = (c, v) => this.stage2MapWalker(c, v);
    this.unmapVisitor = (c) => this.stage2UnmapWalker(c);
    this.attrVisitor = (c) => this.stage2AttrWalker(c);
    this.ageVisitor = (c) => this.stage2AgeWalker(c);
    this.flushVisitor = (c) => this.stage2FlushWalker(c);
    this.splitVisitor = (c) => this.stage2SplitWalker(c);
    this.freeVisitor = (c) => this.stage2FreeWalker(c);
    this.getLeafVisitor = (c) => {
      const r = this.leafResult;
      r.lo = c.oldLo >>> 0;
      r.hi = c.oldHi >>> 0;
      r.level = c.level;
      return 0;
    };
  }

  // ---- common machinery (stage2_try_break_pte(), stage2_make_pte(), the mm_ops) --------

  /**
   * kvm_tlb_flush_vmid_range(): without FEAT_TLBIRANGE the whole VMID; otherwise range
   * TLBIs of whole pages (a sub-page size invalidates nothing), at most
   * MAX_TLBI_RANGE_PAGES pages per call.
   */
  private tlbFlushVmidRange(): void {
    // The range is in flushAddr/flushSize (fields, not arguments: see map()).
    if (!this.tlbiRange) {
      this.events.tlbiVmid();
      return;
    }
    const ps = this.geo.pageSize;
    let addr = this.flushAddr;
    // A multiply, not a division: exact, as the inverse of a power of two is.
    let pages = Math.floor(this.flushSize * this.geo.invPageSize);
    while (pages > 0) {
      const n = pages < MAX_TLBI_RANGE_PAGES ? pages : MAX_TLBI_RANGE_PAGES;
      const op = this.op;
      op.addr = addr;
      op.size = n * ps;
      this.events.tlbiVmidRange(op);
      addr += n * ps;
      pages -= n;
    }
  }

  /** stage2_try_set_pte(): a plain store when exclusive, compare-and-swap when shared. */
  private trySetPte(ctx: WalkCtx, lo: number, hi: number): boolean {
    const w = ctx.words;
    const i = 2 * ctx.idx;
    if (ctx.flags & KVM_PGTABLE_WALK_SHARED && (w[i] !== ctx.oldLo || w[i + 1] !== ctx.oldHi)) return false;
    if (this.journal !== null) this.journal.record(w, ctx.page, ctx.idx, ctx.level, lo, hi, JOURNAL_SITE_SET);
    w[i] = lo;
    w[i + 1] = hi;
    return true;
  }

  /**
   * stage2_try_break_pte(): the "break" of break-before-make. Locks the entry, invalidates
   * the TLB for what it mapped (a range for a table, one IPA for a valid leaf), and drops
   * the old entry's reference. Returns false if the entry is already locked or changed.
   */
  private tryBreakPte(ctx: WalkCtx): boolean {
    const oldLo = ctx.oldLo;
    const oldHi = ctx.oldHi;
    if (pteIsLocked(oldLo)) return false;
    if (!this.trySetPte(ctx, KVM_INVALID_PTE_LOCKED, 0)) return false;
    if (pteIsTable(oldLo, ctx.level)) this.walker.bumpGen();
    if ((ctx.flags & KVM_PGTABLE_WALK_SKIP_BBM_TLBI) === 0) {
      if (pteIsTable(oldLo, ctx.level)) {
        const size = this.geo.sizes[ctx.level + 1]!;
        this.flushAddr = Math.floor(ctx.addr / size) * size;
        this.flushSize = size;
        this.tlbFlushVmidRange();
      } else if (oldLo & KVM_PTE_VALID) {
        this.op.addr = ctx.addr;
        this.op.level = ctx.level;
        this.events.tlbiVmidIpa(this.op);
      }
    }
    if (oldLo !== 0 || oldHi !== 0) this.pool.putPage(ctx.page);
    return true;
  }

  /** stage2_make_pte(): the "make": publishes `new` over a locked entry. */
  private makePte(ctx: WalkCtx, lo: number, hi: number): void {
    const w = ctx.words;
    const i = 2 * ctx.idx;
    if (!pteIsLocked(w[i]!)) throw new Error('stage2_make_pte: entry is not locked');
    if (lo !== 0 || hi !== 0) this.pool.getPage(ctx.page);
    if (this.journal !== null)
      this.journal.record(w, ctx.page, ctx.idx, ctx.level, lo, hi, JOURNAL_SITE_MAKE);
    w[i] = lo;
    w[i + 1] = hi;
  }

  /** kvm_init_table_pte(): a table descriptor pointing at pool page `child`. */
  private tableLo(child: number): number {
    return this.layout.physLo(this.pool.phys(child)) | KVM_PTE_TYPE_TABLE;
  }
  private tableHi(child: number): number {
    return this.layout.physHi(this.pool.phys(child));
  }

  /** kvm_pte_follow() for a table entry: the child's pool index. */
  private childOf(lo: number, hi: number): number {
    return this.pool.pageOfTable(this.layout, lo, hi);
  }

  // ---- map (kvm_pgtable_stage2_map()) ---------------------------------------------------

  /**
   * stage2_leaf_mapping_allowed() / kvm_block_mapping_supported(): a leaf fits here when
   * the level may hold one, a whole entry remains, and IPA and PA are both aligned to it.
   */
  private leafMappingAllowed(ctx: WalkCtx, data: MapData): boolean {
    const level = ctx.level;
    if (data.forcePte && level < 3) return false;
    // A page always fits: the walk's range is whole pages and PA and IPA are page-aligned.
    if (level === 3 || data.annotation) return true;
    if (level < this.geo.minBlockLevel) return false;
    const size = this.geo.sizes[level + 1]!;
    if (size > ctx.end - ctx.addr) return false;
    const inv = this.geo.invSizes[level + 1]!;
    const phys = data.phys + (ctx.addr - ctx.start);
    return Math.floor(phys * inv) * size === phys && Math.floor(ctx.addr * inv) * size === ctx.addr;
  }

  /**
   * stage2_map_walker_try_leaf(): installs a leaf if one fits. Returns −E2BIG when it does
   * not (descend), −EAGAIN when nothing changes but permissions (map never changes
   * permissions; relax_perms does) or the entry is locked, else 0.
   */
  private tryLeaf(ctx: WalkCtx, data: MapData): number {
    if (!this.leafMappingAllowed(ctx, data)) return E2BIG;
    const level = ctx.level;
    const leaf = this.leaf;
    if (data.annotation) {
      leaf.lo = data.ownerLo;
      leaf.hi = 0;
    } else {
      leaf.pa = data.phys + (ctx.addr - ctx.start);
      buildValidLeafPte(this.layout, data.attrLo, data.attrHi, level, leaf);
    }
    const newLo = leaf.lo;
    const newHi = leaf.hi;
    const oldLo = ctx.oldLo;
    const oldHi = ctx.oldHi;
    // stage2_pte_needs_update(): between two valid leaves, only non-permission changes count.
    if (
      oldLo & KVM_PTE_VALID &&
      newLo & KVM_PTE_VALID &&
      ((oldLo ^ newLo) & ~PERMS_LO) === 0 &&
      ((oldHi ^ newHi) & ~PERMS_HI) === 0
    ) {
      return EAGAIN;
    }
    // Only software bits change (exclusive walk): store and go, no break-before-make.
    if (
      (ctx.flags & KVM_PGTABLE_WALK_SHARED) === 0 &&
      oldLo === newLo &&
      ((oldHi ^ newHi) & ~KVM_PTE_LEAF_ATTR_HI_SW) === 0
    ) {
      const oldCounted = oldLo !== 0 || oldHi !== 0;
      const newCounted = newLo !== 0 || newHi !== 0;
      if (oldCounted !== newCounted) {
        if (oldCounted) this.pool.putPage(ctx.page);
        else this.pool.getPage(ctx.page);
      }
      this.trySetPte(ctx, newLo, newHi);
      return 0;
    }
    if (!this.tryBreakPte(ctx)) return EAGAIN;
    // Cache maintenance happens before the new entry is visible, over the whole leaf.
    if ((ctx.flags & KVM_PGTABLE_WALK_SKIP_CMO) === 0) {
      const size = this.geo.sizes[level + 1]!;
      const op = this.op;
      this.layout.toPhysInto(newLo, newHi, this.cmo);
      op.addr = this.cmo.pa;
      op.size = size;
      if (pteCacheable(newLo, this.fwb)) this.events.dcacheCleanInvalPoc(op);
      if (pteExecutable(newLo, newHi)) this.events.icacheInvalPou(op);
    }
    this.makePte(ctx, newLo, newHi);
    return 0;
  }

  /** stage2_map_walker(): TABLE_PRE (block over a table) and LEAF (install or descend). */
  private stage2MapWalker(ctx: WalkCtx, visit: number): number {
    const data = ctx.arg as MapData;
    if (visit === VISIT_TABLE_PRE) {
      // stage2_map_walk_table_pre(): replace a whole table by a block where one fits.
      if (!this.leafMappingAllowed(ctx, data)) return 0;
      const child = this.childOf(ctx.oldLo, ctx.oldHi);
      const ret = this.tryLeaf(ctx, data);
      if (ret) return ret;
      // mm_ops->free_unlinked_table(): RCU-deferred in the host; freed at once here.
      this.freeUnlinked(child, ctx.level);
      return 0;
    }
    // stage2_map_walk_leaf()
    const ret = this.tryLeaf(ctx, data);
    if (ret !== E2BIG) return ret;
    if (ctx.level === 3) return EINVAL;
    if (data.mc === null) return ENOMEM;
    const child = data.mc.take();
    if (child < 0) return ENOMEM;
    if (!this.tryBreakPte(ctx)) {
      this.pool.putPage(child);
      return EAGAIN;
    }
    this.makePte(ctx, this.tableLo(child), this.tableHi(child));
    return 0;
  }

  /**
   * kvm_pgtable_stage2_map(): maps [addr, addr + size) to phys with `prot`, as blocks where
   * they fit. `mc` supplies table pages (null: none may be allocated). Returns 0, −EINVAL
   * (bad prot, IDMAP mismatch), −ENOMEM, −ERANGE, or −EAGAIN with HANDLE_FAULT.
   */
  map(addr: number, size: number, phys: number, prot: number, mc: MemCache | null, flags = 0): number {
    checkAddr('pgt.map', 'addr', addr);
    checkSize('pgt.map', 'size', size);
    // Any whole phys: the kernel takes its page frame (kvm_phys_to_pte() drops the low bits).
    checkAddr('pgt.map', 'phys', phys);
    checkProt('pgt.map', prot);
    if (mc !== null && !(mc instanceof MemCache)) badArgument('pgt.map', 'mc', 'a MemCache or null', mc);
    checkWalkFlags('pgt.map', flags);
    // The numbers go into an operand object: see Walker.walkRoot (no heap numbers per call).
    const o = this.args;
    o.addr = addr;
    o.size = size;
    o.phys = phys;
    return this.mapOp(o, prot, mc, flags);
  }

  /** map() of [op.addr, op.addr + op.size) to op.phys; `op` is only read, during the call. */
  mapOp(op: S2Op, prot: number, mc: MemCache | null, flags = 0): number {
    // The commonest map first, before any of the general set-up: see mapLeafFast().
    if (prot === this.lastProt && this.plainMaps && this.fastPaths) {
      const ret = this.mapLeafFast(op, flags);
      if (ret !== FALLBACK) return ret;
    }
    const addr = op.addr;
    const size = op.size;
    const ps = this.geo.pageSize;
    const phys = Math.floor(op.phys * this.geo.invPageSize) * ps;
    const data = this.mapData;
    data.forcePte = this.forcePteCb !== null && this.forcePteCb(addr, addr + size, prot);
    if (this.flags & KVM_PGTABLE_S2_IDMAP && addr !== phys) return EINVAL;
    // stage2_set_prot_attr(), remembered for the last prot (faults map the same few).
    if (prot !== this.lastProt) {
      const ret = stage2SetProtAttr(prot, this.fwb, this.lpa2, this.attrOut);
      if (ret) return ret;
      this.lastProt = prot;
      this.lastAttrLo = this.attrOut.lo;
      this.lastAttrHi = this.attrOut.hi;
      // The predicates read the attribute bits and the valid bit only, never the address.
      this.lastCacheable = pteCacheable(this.attrOut.lo | KVM_PTE_VALID, this.fwb);
      this.lastExec = pteExecutable(this.attrOut.lo | KVM_PTE_VALID, this.attrOut.hi);
    }
    data.phys = phys;
    data.attrLo = this.lastAttrLo;
    data.attrHi = this.lastAttrHi;
    data.cacheable = this.lastCacheable;
    data.exec = this.lastExec;
    data.mc = mc;
    data.annotation = false;
    const walkFlags = flags | KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF | WALK_UPPER_NOOP;
    if (this.fastPaths) {
      const ret = this.mapFast(op, data, walkFlags);
      if (ret !== FALLBACK) return ret;
    }
    return this.walker.walkOp(this.pgd, op, this.mapVisitor, data, walkFlags);
  }

  /**
   * map()'s fastest path: one page, or one block at level 2, with the prot of the last map
   * (whose attributes are remembered), IPA and PA aligned to it, into an empty entry of a
   * table the walk cache knows. It makes mapFast()'s stores for that case (the leaf built as
   * kvm_init_valid_leaf_pte() builds it, the CMOs, get_page and the store) without the
   * operand set-up the general paths need; anything else returns FALLBACK having changed
   * nothing, and mapOp() goes on as if it had not been tried. The table's static conditions
   * (no forcePte callback, no IDMAP) are checked by the caller (`plainMaps`).
   */
  private mapLeafFast(op: S2Op, flags: number): number {
    const size = op.size;
    // The leaf's level, the inverse of its size and that of the span of the table holding it.
    let level: number;
    let inv: number;
    let invTable: number;
    if (size === this.leafPs) {
      level = 3;
      inv = this.leafInvPs;
      invTable = this.leafInvBlock;
    } else if (size === this.leafBlock && this.leafBlockOk) {
      level = 2;
      inv = this.leafInvBlock;
      invTable = this.leafInvAbove;
    } else return FALLBACK;
    // The walk cache knows tables of levels 2 and 3 below the root only.
    if (level <= this.leafStartLevel || this.pgd < 0) return FALLBACK;
    const addr = op.addr;
    const phys = op.phys;
    // The general path rounds an unaligned PA down to its page (kvm_phys_to_pte()); this one
    // leaves anything unaligned to it.
    if (Math.floor(addr * inv) * size !== addr || Math.floor(phys * inv) * size !== phys) return FALLBACK;
    if (!(addr >= 0 && addr + size <= this.leafIpaLimit)) return FALLBACK;
    const page = this.walker.cachedTable(level, Math.floor(addr * invTable));
    if (page < 0) return FALLBACK;
    const words = this.pool.pages[page]!;
    const idx = Math.floor(addr * inv) & this.leafIdxMask;
    if (words[2 * idx] !== 0 || words[2 * idx + 1] !== 0) return FALLBACK;
    const leaf = this.leaf;
    leaf.pa = phys;
    buildValidLeafPte(this.layout, this.lastAttrLo, this.lastAttrHi, level, leaf);
    this.storeLeaf(words, page, idx, level, flags, leaf, this.lastCacheable, this.lastExec);
    return 0;
  }

  /**
   * map()'s fast path, for one whole leaf (a page, or a block that fits at its level): finds
   * the entry at the leaf's level from the walk cache's deepest known table (or the root),
   * creating tables on the way with the generic LEAF visit, and installs into an empty entry
   * with the generic path's effects in its order (CMOs, then get_page and the store; the
   * LOCKED store of break-before-make is never visible). A non-empty entry at the leaf's level
   * gets the generic LEAF visit; a table there (a block over a table) goes to the generic
   * walk. Skipping the table levels above is exact: their TABLE_PRE visits do nothing, as no
   * block of the leaf's size fits there. Returns the walk's result, or FALLBACK.
   */
  private mapFast(op: S2Op, data: MapData, flags: number): number {
    const geo = this.geo;
    const addr = op.addr;
    const size = op.size;
    let level: number;
    if (size === geo.pageSize) level = 3;
    else if (size === geo.sizes[3]) level = 2;
    else if (size === geo.sizes[2]) level = 1;
    else return FALLBACK;
    if (level < geo.startLevel || (level < 3 && (level < geo.minBlockLevel || data.forcePte)))
      return FALLBACK;
    const inv = geo.invSizes[level + 1]!;
    if (Math.floor(addr * inv) * size !== addr || Math.floor(data.phys * inv) * size !== data.phys)
      return FALLBACK;
    if (addr < 0 || addr + size > geo.ipaLimit || this.pgd < 0) return FALLBACK;
    // The commonest case first, without descend(): the table at the leaf's level is a root
    // page, or one the walk cache knows, and the entry is empty.
    let page = -1;
    if (level === geo.startLevel)
      page = this.pgd + (geo.pgdPages === 1 ? 0 : Math.floor(addr * geo.invSizes[level]!));
    else if (level >= 2) page = this.walker.cachedTable(level, Math.floor(addr * geo.invSizes[level]!));
    if (page >= 0) {
      const words = this.pool.pages[page]!;
      const idx = Math.floor(addr * inv) & (geo.ptrsPerPte - 1);
      if (words[2 * idx] === 0 && words[2 * idx + 1] === 0) {
        this.installLeaf(words, page, idx, data, level, flags);
        return 0;
      }
    }
    const c = this.fastCtx;
    c.start = addr;
    c.addr = addr;
    c.end = addr + size;
    c.flags = flags;
    c.arg = data;
    for (;;) {
      this.descend(level);
      if (c.level === level) {
        if (c.oldLo === 0 && c.oldHi === 0) {
          this.installLeaf(c.words, c.page, c.idx, data, level, flags);
          return 0;
        }
        if (pteIsTable(c.oldLo, level)) return FALLBACK;
        const ret = this.stage2MapWalker(c, VISIT_LEAF);
        return walkContinue(flags, ret) ? 0 : ret;
      }
      // Above the leaf's level and not a table: the generic LEAF visit (a new table from the
      // memcache, or a block or annotation broken and replaced by one), then on down from
      // the top (rare: once per new table).
      const ret = this.stage2MapWalker(c, VISIT_LEAF);
      if (!walkContinue(flags, ret)) return ret;
      if (!pteIsTable(c.words[2 * c.idx]!, c.level)) return 0;
    }
  }

  /**
   * stage2_map_walker_try_leaf() into an empty entry (entry `idx` of table page `page`, at
   * `level`) of the leaf `data` describes: builds it, then storeLeaf().
   */
  private installLeaf(
    w: Int32Array,
    page: number,
    idx: number,
    data: MapData,
    level: number,
    flags: number,
  ): void {
    const leaf = this.leaf;
    leaf.pa = data.phys;
    buildValidLeafPte(this.layout, data.attrLo, data.attrHi, level, leaf);
    this.storeLeaf(w, page, idx, level, flags, leaf, data.cacheable, data.exec);
  }

  /**
   * The install into an empty entry, of the leaf built in `b` (its halves, and the PA it was
   * built from): no TLBI (nothing was valid) and no put_page (nothing was counted); the CMOs
   * before the entry is visible, then stage2_make_pte(): get_page and the store.
   */
  private storeLeaf(
    w: Int32Array,
    page: number,
    idx: number,
    level: number,
    flags: number,
    b: LeafBuild,
    cacheable: boolean,
    exec: boolean,
  ): void {
    const newLo = b.lo;
    const newHi = b.hi;
    if ((flags & KVM_PGTABLE_WALK_SKIP_CMO) === 0 && (cacheable || exec)) {
      const op = this.op;
      // kvm_pte_follow(new): the PA itself below oaLimit, where the descriptor keeps every bit.
      if (b.pa < this.oaLimit) op.addr = b.pa;
      else {
        this.layout.toPhysInto(newLo, newHi, this.cmo);
        op.addr = this.cmo.pa;
      }
      op.size = this.geo.sizes[level + 1]!;
      if (cacheable) this.events.dcacheCleanInvalPoc(op);
      if (exec) this.events.icacheInvalPou(op);
    }
    this.pool.getPage(page);
    if (this.journal !== null) this.journal.record(w, page, idx, level, newLo, newHi, JOURNAL_SITE_INSTALL);
    const i = 2 * idx;
    w[i] = newLo;
    w[i + 1] = newHi;
  }

  /**
   * The fast paths' descent to fastCtx.addr (set by the caller with start, end, flags, arg):
   * from the walk cache's deepest known table, or the root, through table entries down to
   * the first entry that is not a table or is at level `stop`, which it leaves in fastCtx
   * (words, page, idx, oldLo/oldHi, level). Remembers the tables it passes; changes nothing.
   * The caller has checked that the address is inside the IPA space and the table exists.
   */
  private descend(stop: number): void {
    const geo = this.geo;
    const pool = this.pool;
    const walker = this.walker;
    const c = this.fastCtx;
    const addr = c.addr;
    let level = 3;
    let page = -1;
    if (stop === 3 && geo.startLevel < 3) page = walker.cachedTable(3, Math.floor(addr * geo.invSizes[3]!));
    if (page < 0 && stop >= 2 && geo.startLevel < 2) {
      level = 2;
      page = walker.cachedTable(2, Math.floor(addr * geo.invSizes[2]!));
    }
    if (page < 0) {
      level = geo.startLevel;
      page = this.pgd + (geo.pgdPages === 1 ? 0 : Math.floor(addr * geo.invSizes[level]!));
    }
    const mask = geo.ptrsPerPte - 1;
    for (;;) {
      const words = pool.pages[page]!;
      const idx = Math.floor(addr * geo.invSizes[level + 1]!) & mask;
      const lo = words[2 * idx]!;
      const hi = words[2 * idx + 1]!;
      if (level === stop || !pteIsTable(lo, level)) {
        c.words = words;
        c.page = page;
        c.idx = idx;
        c.oldLo = lo;
        c.oldHi = hi;
        c.level = level;
        return;
      }
      page = pool.pageOfTable(this.layout, lo, hi);
      level++;
      if (level === 2 || level === 3)
        walker.rememberTable(level, Math.floor(addr * geo.invSizes[level]!), page);
    }
  }

  /**
   * kvm_pgtable_stage2_set_owner(): annotates [addr, addr + size) as owned by `ownerId`,
   * at level 3 only. Returns 0, −EINVAL (id > KVM_MAX_OWNER_ID) or −ENOMEM.
   */
  setOwner(addr: number, size: number, mc: MemCache | null, ownerId: number): number {
    if (ownerId > KVM_MAX_OWNER_ID || ownerId < 0) return EINVAL;
    const data = this.mapData;
    data.phys = 0;
    data.mc = mc;
    data.forcePte = true;
    data.annotation = true;
    data.ownerLo = ownerId << 2;
    return this.walker.walkRoot(
      this.pgd,
      addr,
      size,
      this.mapVisitor,
      data,
      KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF,
    );
  }

  // ---- unmap (kvm_pgtable_stage2_unmap()) -----------------------------------------------

  /** stage2_unmap_defer_tlb_flush(): one range TLBI at the end with TLBIRANGE and FWB. */
  private unmapDeferTlbFlush(): boolean {
    return this.tlbiRange && this.fwb;
  }

  /** stage2_unmap_walker(): LEAF and TABLE_POST. */
  private stage2UnmapWalker(ctx: WalkCtx): number {
    const oldLo = ctx.oldLo;
    const oldHi = ctx.oldHi;
    const w = ctx.words;
    const i = 2 * ctx.idx;
    if ((oldLo & KVM_PTE_VALID) === 0) {
      // Annotations and LOCKED entries hold a reference: drop it.
      if (oldLo !== 0 || oldHi !== 0) {
        if (this.journal !== null)
          this.journal.record(w, ctx.page, ctx.idx, ctx.level, 0, 0, JOURNAL_SITE_UNMAP);
        w[i] = 0;
        w[i + 1] = 0;
        this.pool.putPage(ctx.page);
      }
      return 0;
    }
    if (!pteIsTable(oldLo, ctx.level)) {
      this.unmapLeaf(w, ctx.page, ctx.idx, ctx.level, ctx, oldLo, oldHi);
      return 0;
    }
    const child = this.childOf(oldLo, oldHi);
    if (this.pool.pageCount(child) !== 1) return 0;
    this.walker.bumpGen();
    // stage2_unmap_put_pte() of a table left empty: a TLBI without a level hint.
    if (this.journal !== null) this.journal.record(w, ctx.page, ctx.idx, ctx.level, 0, 0, JOURNAL_SITE_UNMAP);
    w[i] = 0;
    w[i + 1] = 0;
    const op = this.op;
    op.addr = ctx.addr;
    op.level = TLBI_TTL_UNKNOWN;
    this.events.tlbiVmidIpa(op);
    this.pool.putPage(ctx.page);
    this.pool.putPage(child);
    return 0;
  }

  /**
   * stage2_unmap_walker() of a valid leaf (entry `idx` of table page `page`, at `level`,
   * mapping `at.addr`): stage2_unmap_put_pte() (the store, the TLBI by IPA unless deferred
   * to the range flush, put_page), then the clean to PoC of a cacheable leaf without FWB.
   * The address comes in the caller's carrier (the walk's context, or the unmap's operand),
   * not as an argument: a double argument is boxed wherever V8 does not inline the call.
   */
  private unmapLeaf(
    w: Int32Array,
    page: number,
    idx: number,
    level: number,
    at: { readonly addr: number },
    oldLo: number,
    oldHi: number,
  ): void {
    const needFlush = !this.fwb && pteCacheable(oldLo, false);
    if (this.journal !== null) this.journal.record(w, page, idx, level, 0, 0, JOURNAL_SITE_UNMAP);
    const i = 2 * idx;
    w[i] = 0;
    w[i + 1] = 0;
    const op = this.op;
    if (!this.unmapDeferTlbFlush()) {
      op.addr = at.addr;
      op.level = level;
      this.events.tlbiVmidIpa(op);
    }
    this.pool.putPage(page);
    if (needFlush) {
      this.layout.toPhysInto(oldLo, oldHi, this.cmo);
      op.addr = this.cmo.pa;
      op.size = this.geo.sizes[level + 1]!;
      this.events.dcacheCleanInvalPoc(op);
    }
  }

  /**
   * The argument-taking forms' check of [addr, addr + size), filled into this table's own
   * operand object for the `…Op` form. Returns the operand.
   */
  private rangeArgs(fn: string, addr: number, size: number): S2Op {
    checkAddr(fn, 'addr', addr);
    checkSize(fn, 'size', size);
    const o = this.args;
    o.addr = addr;
    o.size = size;
    return o;
  }

  /**
   * kvm_pgtable_stage2_unmap(): removes every leaf the range touches (whole blocks, no
   * split) and frees tables left empty. Returns 0 or a walk error (−ERANGE).
   */
  unmap(addr: number, size: number): number {
    const o = this.rangeArgs('pgt.unmap', addr, size);
    return this.unmapOp(o);
  }

  /** unmap() of [op.addr, op.addr + op.size); `op` is only read, during the call. */
  unmapOp(op: S2Op): number {
    const flags = KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST | WALK_UPPER_NOOP;
    let ret = FALLBACK;
    if (this.fastPaths) ret = this.unmapFast(op, flags);
    if (ret === FALLBACK) ret = this.walker.walkOp(this.pgd, op, this.unmapVisitor, null, flags);
    // The deferred flush uses the caller's raw range and is issued even if the walk failed.
    if (this.unmapDeferTlbFlush()) {
      this.flushAddr = op.addr;
      this.flushSize = op.size;
      this.tlbFlushVmidRange();
    }
    return ret;
  }

  /**
   * unmap()'s fast path, for one page-aligned page mapped by a last-level table: the generic
   * LEAF visit of its entry, without the walker. The TABLE_POST visits above do nothing while
   * that table keeps an entry; when it has none left, it returns FALLBACK and the generic walk
   * frees the emptied tables (its LEAF visit of the now-empty entry changes nothing, so the
   * two together are the one generic walk, in its order). Returns 0 or FALLBACK.
   */
  private unmapFast(op: S2Op, flags: number): number {
    const geo = this.geo;
    const ps = geo.pageSize;
    const addr = op.addr;
    if (op.size !== ps || Math.floor(addr * geo.invPageSize) * ps !== addr) return FALLBACK;
    if (addr < 0 || addr + ps > geo.ipaLimit || this.pgd < 0) return FALLBACK;
    // The commonest case first, without descend(): the last-level table is one the walk
    // cache knows, the entry a valid page, and the table keeps other entries after it.
    if (geo.startLevel < 3) {
      const page = this.walker.cachedTable(3, Math.floor(addr * geo.invSizes[3]!));
      if (page >= 0) {
        const w = this.pool.pages[page]!;
        const idx = Math.floor(addr * geo.invPageSize) & (geo.ptrsPerPte - 1);
        const lo = w[2 * idx]!;
        if ((lo & KVM_PTE_VALID) !== 0 && this.pool.pageCount(page) > 2) {
          this.unmapLeaf(w, page, idx, 3, op, lo, w[2 * idx + 1]!);
          return 0;
        }
      }
    }
    const c = this.fastCtx;
    c.start = addr;
    c.addr = addr;
    c.end = addr + ps;
    c.flags = flags;
    c.arg = null;
    this.descend(3);
    if (c.level !== 3) return FALLBACK;
    this.stage2UnmapWalker(c);
    return this.pool.pageCount(c.page) > 1 ? 0 : FALLBACK;
  }

  /**
   * The single-address walks' fast path (relax_perms and mkyoung through the attribute
   * walker, get_leaf): the one LEAF visit the generic walk of [op.addr, + 1) makes, at the
   * first entry on the path that is not a table, made directly. Returns the walk's result
   * (kvm_pgtable_walk_continue() applied), or FALLBACK outside the IPA space.
   */
  private leafFast(op: S2Op, visitor: number, flags: number): number {
    const geo = this.geo;
    const ps = geo.pageSize;
    const start = Math.floor(op.addr * geo.invPageSize) * ps;
    if (start < 0 || start + ps > geo.ipaLimit || this.pgd < 0) return FALLBACK;
    const c = this.fastCtx;
    c.start = start;
    c.addr = start;
    c.end = start + ps;
    c.flags = flags;
    c.arg = null;
    this.descend(3);
    if (visitor === FAST_GET_LEAF) {
      const r = this.leafResult;
      r.lo = c.oldLo >>> 0;
      r.hi = c.oldHi >>> 0;
      r.level = c.level;
      return 0;
    }
    const ret = this.stage2AttrWalker(c);
    return walkContinue(flags, ret) ? 0 : ret;
  }

  // ---- attribute updates (stage2_update_leaf_attrs()) -----------------------------------

  /** stage2_attr_walker(): new = (old & ~clr) | set on each valid leaf. */
  private stage2AttrWalker(ctx: WalkCtx): number {
    const d = this.attrData;
    const oldLo = ctx.oldLo;
    const oldHi = ctx.oldHi;
    if ((oldLo & KVM_PTE_VALID) === 0) return EAGAIN;
    d.level = ctx.level;
    d.pteLo = oldLo;
    d.pteHi = oldHi;
    const newLo = (oldLo & ~d.clrLo) | d.setLo;
    const newHi = (oldHi & ~d.clrHi) | d.setHi;
    if (newLo !== oldLo || newHi !== oldHi) {
      // Gaining execute permission needs the I-cache clean for the whole leaf.
      if (pteExecutable(newLo, newHi) && !pteExecutable(oldLo, oldHi)) {
        this.layout.toPhysInto(newLo, newHi, this.cmo);
        this.op.addr = this.cmo.pa;
        this.op.size = this.geo.sizes[ctx.level + 1]!;
        this.events.icacheInvalPou(this.op);
      }
      if (!this.trySetPte(ctx, newLo, newHi)) return EAGAIN;
    }
    return 0;
  }

  /**
   * stage2_update_leaf_attrs(). On success the last leaf seen is left in attrData
   * (pteLo/pteHi/level); on error those are not updated. Returns the walk result.
   */
  private updateLeafAttrs(
    op: S2Op,
    oneByte: boolean,
    setLo: number,
    setHi: number,
    clrLo: number,
    clrHi: number,
    flags: number,
  ): number {
    const d = this.attrData;
    d.setLo = setLo & KVM_PTE_LEAF_ATTR_LO;
    d.setHi = setHi & KVM_PTE_LEAF_ATTR_HI;
    d.clrLo = clrLo & KVM_PTE_LEAF_ATTR_LO;
    d.clrHi = clrHi & KVM_PTE_LEAF_ATTR_HI;
    const savedLo = d.pteLo;
    const savedHi = d.pteHi;
    const savedLevel = d.level;
    let ret = FALLBACK;
    if (oneByte && this.fastPaths) ret = this.leafFast(op, FAST_ATTR, flags | KVM_PGTABLE_WALK_LEAF);
    if (ret === FALLBACK) {
      let range = op;
      if (oneByte) {
        range = this.oneByte;
        range.addr = op.addr;
        range.size = 1;
      }
      ret = this.walker.walkOp(this.pgd, range, this.attrVisitor, d, flags | KVM_PGTABLE_WALK_LEAF);
    }
    if (ret) {
      d.pteLo = savedLo;
      d.pteHi = savedHi;
      d.level = savedLevel;
    }
    return ret;
  }

  /**
   * kvm_pgtable_stage2_wrprotect(): clears S2AP_W on every leaf in the range. No TLBI (the
   * caller flushes). Returns 0 or a walk error.
   */
  wrprotect(addr: number, size: number): number {
    const o = this.rangeArgs('pgt.wrprotect', addr, size);
    return this.wrprotectOp(o);
  }

  /** wrprotect() of [op.addr, op.addr + op.size); `op` is only read, during the call. */
  wrprotectOp(op: S2Op): number {
    return this.updateLeafAttrs(op, false, 0, 0, KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W, 0, 0);
  }

  /**
   * kvm_pgtable_stage2_mkyoung(): sets AF on the leaf covering addr (the access-flag fault
   * path). Void in v6.17; the walk result is returned here for callers that want it.
   */
  mkyoung(addr: number, flags = 0): number {
    checkAddr('pgt.mkyoung', 'addr', addr);
    checkWalkFlags('pgt.mkyoung', flags);
    const o = this.args;
    o.addr = addr;
    return this.mkyoungOp(o, flags);
  }

  /** mkyoung() at op.addr (op.size is not read: the kernel walks one byte). */
  mkyoungOp(op: S2Op, flags = 0): number {
    return this.updateLeafAttrs(op, true, KVM_PTE_LEAF_ATTR_LO_S2_AF, 0, 0, 0, flags);
  }

  /**
   * kvm_pgtable_stage2_relax_perms(): adds R, W and/or X to the leaf at addr, then a local
   * TLBI at addr and the leaf's level, also when the walk returned −EAGAIN (the level is
   * then the uninitialised local: 0). Returns 0, −EINVAL (software bits) or −EAGAIN.
   */
  relaxPerms(addr: number, prot: number, flags = 0): number {
    checkAddr('pgt.relaxPerms', 'addr', addr);
    checkProt('pgt.relaxPerms', prot);
    checkWalkFlags('pgt.relaxPerms', flags);
    const o = this.args;
    o.addr = addr;
    return this.relaxPermsOp(o, prot, flags);
  }

  /** relaxPerms() at op.addr (op.size is not read: the kernel walks one byte). */
  relaxPermsOp(op: S2Op, prot: number, flags = 0): number {
    if (prot & KVM_PGTABLE_PROT_SW_MASK) return EINVAL;
    let setLo = 0;
    let clrHi = 0;
    if (prot & KVM_PGTABLE_PROT_R) setLo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R;
    if (prot & KVM_PGTABLE_PROT_W) setLo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
    if (prot & KVM_PGTABLE_PROT_X) clrHi |= KVM_PTE_LEAF_ATTR_HI_S2_XN;
    const d = this.attrData;
    d.level = 0;
    const ret = this.updateLeafAttrs(op, true, setLo, 0, 0, clrHi, flags);
    if (ret === 0 || ret === EAGAIN) {
      this.op.addr = op.addr;
      this.op.level = d.level;
      this.events.tlbiVmidIpaNsh(this.op);
    }
    return ret;
  }

  /** The level of the leaf the last attribute update changed (for the fault path's stats). */
  get lastAttrLevel(): number {
    return this.attrData.level;
  }

  // ---- young (kvm_pgtable_stage2_test_clear_young()) ------------------------------------

  /** stage2_age_walker(): reports (and with mkold clears) AF on valid leaves. */
  private stage2AgeWalker(ctx: WalkCtx): number {
    const oldLo = ctx.oldLo;
    if ((oldLo & KVM_PTE_VALID) === 0 || (oldLo & KVM_PTE_LEAF_ATTR_LO_S2_AF) === 0) return 0;
    this.young = true;
    if (this.mkoldFlag && !this.trySetPte(ctx, oldLo & ~KVM_PTE_LEAF_ATTR_LO_S2_AF, ctx.oldHi)) {
      return EAGAIN;
    }
    return 0;
  }

  /**
   * kvm_pgtable_stage2_test_clear_young(): whether any leaf in the range has AF set;
   * with `mkold`, clears it. No TLBI (the MMU notifier's caller flushes). Returns the test.
   */
  testClearYoung(addr: number, size: number, mkold: boolean): boolean {
    checkBool('pgt.testClearYoung', 'mkold', mkold);
    const o = this.rangeArgs('pgt.testClearYoung', addr, size);
    return this.testClearYoungOp(o, mkold);
  }

  /** testClearYoung() of [op.addr, op.addr + op.size); `op` is only read, during the call. */
  testClearYoungOp(op: S2Op, mkold: boolean): boolean {
    this.young = false;
    this.mkoldFlag = mkold;
    this.walker.walkRoot(this.pgd, op.addr, op.size, this.ageVisitor, null, KVM_PGTABLE_WALK_LEAF);
    return this.young;
  }

  // ---- flush (kvm_pgtable_stage2_flush()) -----------------------------------------------

  /** stage2_flush_walker(): D-cache clean to PoC of each cacheable leaf. */
  private stage2FlushWalker(ctx: WalkCtx): number {
    if (!pteCacheable(ctx.oldLo, this.fwb)) return 0;
    this.layout.toPhysInto(ctx.oldLo, ctx.oldHi, this.cmo);
    this.op.addr = this.cmo.pa;
    this.op.size = this.geo.sizes[ctx.level + 1]!;
    this.events.dcacheCleanInvalPoc(this.op);
    return 0;
  }

  /**
   * kvm_pgtable_stage2_flush(): cleans cacheable leaves to the PoC. With FWB it returns 0
   * at once (the guest cannot make its memory non-cacheable). Returns 0 or a walk error.
   */
  flush(addr: number, size: number): number {
    const o = this.rangeArgs('pgt.flush', addr, size);
    return this.flushOp(o);
  }

  /** flush() of [op.addr, op.addr + op.size); `op` is only read, during the call. */
  flushOp(op: S2Op): number {
    if (this.fwb) return 0;
    return this.walker.walkRoot(this.pgd, op.addr, op.size, this.flushVisitor, null, KVM_PGTABLE_WALK_LEAF);
  }

  // ---- unlinked tables and split (kvm_pgtable_stage2_create_unlinked(), ..._split()) ----

  /** stage2_free_walker() (v6.17): drops every counted entry's reference, freeing children. */
  private stage2FreeWalker(ctx: WalkCtx): number {
    if (ctx.oldLo === 0 && ctx.oldHi === 0) return 0;
    // put_page() zeroes a freed page: that store is journaled here, entry by entry.
    if (this.journal !== null)
      this.journal.record(ctx.words, ctx.page, ctx.idx, ctx.level, 0, 0, JOURNAL_SITE_FREE);
    this.walker.bumpGen();
    this.pool.putPage(ctx.page);
    if (pteIsTable(ctx.oldLo, ctx.level)) this.pool.putPage(this.childOf(ctx.oldLo, ctx.oldHi));
    return 0;
  }

  /**
   * kvm_pgtable_stage2_free_unlinked(): frees a detached subtree whose root maps one entry
   * at `level`.
   */
  freeUnlinked(root: number, level: number): void {
    this.walker.walkDetached(
      root,
      level + 1,
      this.geo.sizes[level + 1]!,
      this.freeVisitor,
      null,
      KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST,
    );
    this.pool.putPage(root);
  }

  /**
   * kvm_pgtable_stage2_create_unlinked(): builds a detached table mapping one `level`
   * entry's worth of memory from `phys` with `prot` (largest blocks, or pages with
   * forcePte). No TLBI and no CMOs. Returns the root's pool index, or a negative errno.
   */
  createUnlinked(phys: number, level: number, prot: number, mc: MemCache | null, forcePte: boolean): number {
    const size = this.geo.sizes[level + 1]!;
    if (Math.floor(phys / size) * size !== phys) return EINVAL;
    const ret = stage2SetProtAttr(prot, this.fwb, this.lpa2, this.attrOut);
    if (ret) return ret;
    const data = this.unlinkedMapData;
    data.phys = phys;
    data.attrLo = this.attrOut.lo;
    data.attrHi = this.attrOut.hi;
    data.mc = mc;
    data.forcePte = forcePte;
    data.annotation = false;
    const root = mc === null ? -1 : mc.take();
    if (root < 0) return ENOMEM;
    const r = this.walker.walkDetached(
      root,
      level + 1,
      size,
      this.mapVisitor,
      data,
      KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_SKIP_BBM_TLBI | KVM_PGTABLE_WALK_SKIP_CMO,
    );
    if (r) {
      this.freeUnlinked(root, level);
      return r;
    }
    return root;
  }

  /** stage2_block_get_nr_page_tables(): tables a full split of a block at `level` needs. */
  private blockNrPageTables(level: number): number {
    if (level === 3) return 0;
    if (level === 2) return 1;
    if (level === 1 && this.geo.minBlockLevel <= 1) return this.geo.ptrsPerPte + 1;
    return EINVAL;
  }

  /** stage2_split_walker(): replaces one block by a table of smaller leaves. */
  private stage2SplitWalker(ctx: WalkCtx): number {
    const mc = ctx.arg as MemCache;
    const level = ctx.level;
    if (level === 3) return 0;
    if ((ctx.oldLo & KVM_PTE_VALID) === 0) return 0;
    let nr = this.blockNrPageTables(level);
    if (nr < 0) return nr;
    let forcePte: boolean;
    if (mc.nobjs >= nr) forcePte = true;
    else {
      nr = 1;
      forcePte = false;
    }
    if (mc.nobjs < nr) return ENOMEM;
    const phys = this.layout.toPhys(ctx.oldLo, ctx.oldHi);
    const prot = stage2PteProt(ctx.oldLo, ctx.oldHi);
    const child = this.createUnlinked(phys, level, prot, mc, forcePte);
    if (child < 0) return child;
    if (!this.tryBreakPte(ctx)) {
      this.freeUnlinked(child, level);
      return EAGAIN;
    }
    this.makePte(ctx, this.tableLo(child), this.tableHi(child));
    return 0;
  }

  /**
   * kvm_pgtable_stage2_split(): eagerly splits every block in the range down to pages (or,
   * when `mc` runs short, one level at a time). New leaves are Normal write-back with the
   * block's R/W/X and software bits. Returns 0, −ENOMEM (cache too small) or −EINVAL.
   */
  split(addr: number, size: number, mc: MemCache): number {
    if (!(mc instanceof MemCache)) badArgument('pgt.split', 'mc', 'a MemCache', mc);
    const o = this.rangeArgs('pgt.split', addr, size);
    return this.splitOp(o, mc);
  }

  /** split() of [op.addr, op.addr + op.size); `op` is only read, during the call. */
  splitOp(op: S2Op, mc: MemCache): number {
    return this.walker.walkRoot(this.pgd, op.addr, op.size, this.splitVisitor, mc, KVM_PGTABLE_WALK_LEAF);
  }

  // ---- lookup and teardown (kvm_pgtable_get_leaf(), kvm_pgtable_stage2_destroy()) -------

  /**
   * kvm_pgtable_get_leaf(): the entry covering `addr` and its level, into `out` (a reused
   * object; defaults to one owned by the table). Returns 0 or a walk error; an unmapped
   * address gives lo = hi = 0 at the level where the hole was found.
   */
  getLeaf(addr: number, out: LeafResult = this.leafResult): number {
    checkAddr('pgt.getLeaf', 'addr', addr);
    if (!(out instanceof LeafResult)) badArgument('pgt.getLeaf', 'out', 'a LeafResult', out);
    const o = this.args;
    o.addr = addr;
    return this.getLeafOp(o, out);
  }

  /** getLeaf() of op.addr (op.size is not read: the kernel walks one byte). */
  getLeafOp(op: S2Op, out: LeafResult = this.leafResult): number {
    const r = this.leafResult;
    r.lo = 0;
    r.hi = 0;
    r.level = 0;
    let ret = FALLBACK;
    if (this.fastPaths) ret = this.leafFast(op, FAST_GET_LEAF, KVM_PGTABLE_WALK_LEAF);
    if (ret === FALLBACK) {
      const one = this.oneByte;
      one.addr = op.addr;
      one.size = 1;
      ret = this.walker.walkOp(this.pgd, one, this.getLeafVisitor, null, KVM_PGTABLE_WALK_LEAF);
    }
    if (out !== r) {
      out.lo = r.lo;
      out.hi = r.hi;
      out.level = r.level;
    }
    return ret;
  }

  /**
   * kvm_pgtable_stage2_destroy(): frees every table and the PGD. No TLBI: the table must
   * already be unreachable by the hardware.
   */
  destroy(): void {
    if (this.pgd < 0) return;
    this.walker.walkRoot(
      this.pgd,
      0,
      this.geo.ipaLimit,
      this.freeVisitor,
      null,
      KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST,
    );
    this.pool.freeExact(this.pgd, this.geo.pgdPages);
    this.pgd = -1;
  }

  /**
   * Table pages reachable from the root, the PGD pages included (what `end tables=` counts).
   * Returns the count.
   */
  countTables(): number {
    let n = 0;
    visitTablePages(this.tableSource(), () => n++);
    return n;
  }

  /**
   * Visits every valid descriptor reachable from the root in ascending IPA order, tables
   * before what they point to (the `dump` order); with `start`/`end`, only the descriptors
   * that overlap [start, end). Not for the hot path.
   */
  forEachValid(fn: DescriptorVisit, start = 0, end = Infinity): void {
    visitValidDescriptors(this.tableSource(), fn, start, end);
  }

  /** @internal The live tree as tablewalk.ts reads it (cold: built per call). */
  tableSource(): TableSource {
    return {
      geo: this.geo,
      pgd: this.pgd,
      words: (page) => this.pool.pages[page],
      child: (lo, hi) => this.childOf(lo, hi),
    };
  }

  // ---- debugger helpers: cold; the text comes from src/views through pgtable/debughooks.ts ----

  /** The debugfs `stage2_page_tables` text of this table (views/ptdump.ts). Returns it. */
  ptdump(): string {
    return debugHooks.ptdump?.(this) ?? VIEWS_NOT_LOADED;
  }

  /** `ipa` walked level by level, with what a read, a write and an exec would do (views/explain.ts). Returns the text. */
  explain(ipa: number): string {
    return debugHooks.explain?.(this, ipa) ?? VIEWS_NOT_LOADED;
  }

  /** The leaf mapping `ipa`, decoded (a DescriptorView: prints as one line). Returns it, or null where none. */
  leafView(ipa: number): object | null {
    const f = debugHooks.leafView;
    return f === undefined ? { toString: () => VIEWS_NOT_LOADED } : f(this, ipa);
  }

  /** Node's inspect hook (console.log): a short decoded summary, never the table pages. Returns the text. */
  [INSPECT_HOOK](): string {
    const g = this.geo;
    return debugText(
      'pgt',
      this,
      `Stage2PageTable { ${g.pageSize / 1024}K granule, ${g.iaBits}-bit IPA, start level ${g.startLevel} }`,
    );
  }

  /** The debugger's description hook (VS Code's variables pane): the same summary. */
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }

  /** JSON.stringify: the summary, not the table pages. Returns { summary }. */
  toJSON(): { summary: string } {
    return { summary: this[INSPECT_HOOK]() };
  }
}

export { VISIT_TABLE_POST };
