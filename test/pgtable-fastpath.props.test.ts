/**
 * Differential property test of the page table's single-leaf fast paths (issue 9): random
 * operation sequences run on two tables, one with the fast paths (Stage2Options.fastPaths)
 * and one through the generic walker only, and after every step the two must hold the same
 * table pages word for word at the same pool indices, the same refcounts, the same memcache,
 * the same events in the same order, and return the same values. The sequences mix what the
 * fast paths take (single pages and blocks into empty entries, tables created from a
 * small memcache, single-page unmaps, relax/mkyoung/get_leaf of one address) with what they
 * must hand to the generic walk (unaligned and multi-leaf ranges, blocks over tables, pages
 * inside blocks, annotations, IPAs past the limit, an empty memcache).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_SW2,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  hexAddr,
} from '../src/pgtable/descriptor.js';
import type { GranuleSize } from '../src/pgtable/geometry.js';
import { MemCache } from '../src/pgtable/pool.js';
import type { Stage2Events } from '../src/pgtable/pool.js';
import { S2Op } from '../src/pgtable/op.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';
import {
  KVM_PGTABLE_WALK_HANDLE_FAULT,
  KVM_PGTABLE_WALK_SHARED,
  KVM_PGTABLE_WALK_SKIP_CMO,
} from '../src/pgtable/walker.js';

const R = KVM_PGTABLE_PROT_R;
const W = KVM_PGTABLE_PROT_W;
const X = KVM_PGTABLE_PROT_X;
const FAULT = KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED;

/** A table configuration, and the IPAs and PAs the operations aim at. */
interface Config {
  name: string;
  granule: GranuleSize;
  ipaBits: number;
  lpa2: boolean;
  /**
   * Anchors: IPAs aligned to the largest block, where table boundaries meet; 0 among them (the
   * bottom of the IPA space, where an offset test cannot tell a multiple of any size apart).
   */
  anchors: number[];
  /** The PA that anchor-relative offsets map to. */
  paBase: number;
  runs: number;
}

const CONFIGS: Config[] = [
  // 1 GiB boundaries (two L2 tables, two PGD entries), and the top of the IPA space.
  {
    name: '4K/40',
    granule: 4096,
    ipaBits: 40,
    lpa2: false,
    anchors: [0, 2 ** 30, 2 ** 31, 2 ** 40],
    paBase: 0x80_0000_0000,
    runs: 120,
  },
  // PGD pages of 64 GiB: anchors on a PGD-page boundary.
  {
    name: '16K/40',
    granule: 16384,
    ipaBits: 40,
    lpa2: false,
    anchors: [0, 2 ** 36, 2 ** 37, 2 ** 40],
    paBase: 0x80_0000_0000,
    runs: 80,
  },
  // 512 MiB blocks; PGD pages of 4 TiB.
  {
    name: '64K/44',
    granule: 65536,
    ipaBits: 44,
    lpa2: false,
    anchors: [0, 2 ** 42, 2 ** 43, 2 ** 44],
    paBase: 0x8_0000_0000_0000,
    runs: 60,
  },
  // LPA2: level 0 with 16 concatenated PGD pages, OA[51:50] in bits [9:8].
  {
    name: '4K/52 LPA2',
    granule: 4096,
    ipaBits: 52,
    lpa2: true,
    anchors: [0, 2 ** 48, 2 ** 51, 2 ** 52],
    paBase: 0xc_0000_0000_0000,
    runs: 80,
  },
];

type Op =
  | { op: 'map'; ipa: number; size: number; pa: number; prot: number; flags: number }
  | { op: 'unmap' | 'wrprotect' | 'flush' | 'split'; ipa: number; size: number }
  | { op: 'mkold'; ipa: number; size: number; mkold: boolean }
  | { op: 'relax'; ipa: number; prot: number; flags: number }
  | { op: 'mkyoung' | 'getLeaf'; ipa: number; flags: number }
  | { op: 'owner'; ipa: number; size: number; id: number }
  | { op: 'topup'; min: number };

/** The leaf sizes of a configuration: a page, then each block level's size. */
function leafSizes(cfg: Config): number[] {
  const g = new Stage2PageTable({ granule: cfg.granule, ipaBits: cfg.ipaBits, fwb: false, lpa2: cfg.lpa2 })
    .geo;
  const out: number[] = [g.pageSize];
  for (let l = 2; l >= g.minBlockLevel && l >= g.startLevel; l--) out.push(g.granuleSize(l));
  return out;
}

function opArb(cfg: Config): fc.Arbitrary<Op> {
  const sizes = leafSizes(cfg);
  const ps = cfg.granule;
  const anchor = fc.constantFrom(...cfg.anchors);
  const sizeIdx = fc.integer({ min: 0, max: sizes.length - 1 });
  // Mostly one whole leaf, aligned; sometimes off by a page, or two leaves (generic only).
  const shape = fc.constantFrom('leaf', 'leaf', 'leaf', 'leaf', 'off', 'two', 'byte');
  const where = fc.record({
    anchor,
    sizeIdx,
    slot: fc.integer({ min: -3, max: 2 }),
    shape,
    sub: fc.integer({ min: 1, max: 3 }),
  });
  const range = where.map(({ anchor: a, sizeIdx: si, slot, shape: sh, sub }) => {
    const size = sizes[si]!;
    // Small slots near the anchor; within a block, a few of its pages.
    let ipa = a + slot * size;
    let sz = size;
    if (sh === 'off') ipa += sub * ps;
    else if (sh === 'two') sz = 2 * size;
    else if (sh === 'byte') {
      ipa += sub * 7;
      sz = 1;
    }
    // Addresses are unsigned (u64 in the kernel): none below 0.
    ipa = Math.max(0, ipa);
    return { ipa, size: sz, rel: ipa - a };
  });
  // Runs of one prot (as the fault path maps), so that maps often find it remembered and take
  // mapLeafFast(); and every other prot, including invalid ones.
  const protArb = fc.oneof(
    { weight: 4, arbitrary: fc.constant(R | W) },
    {
      weight: 5,
      arbitrary: fc.constantFrom(
        R,
        R | W,
        R | W | X,
        R | X,
        R | W | KVM_PGTABLE_PROT_SW0,
        R | W | KVM_PGTABLE_PROT_SW2,
        R | W | KVM_PGTABLE_PROT_DEVICE,
        R | W | KVM_PGTABLE_PROT_NORMAL_NC,
        0,
      ),
    },
  );
  const flagsArb = fc.constantFrom(0, FAULT, KVM_PGTABLE_WALK_SKIP_CMO, FAULT | KVM_PGTABLE_WALK_SKIP_CMO);
  const single = fc
    .record({ anchor, slot: fc.integer({ min: -4, max: 4 }), page: fc.integer({ min: 0, max: 3 }) })
    .map(({ anchor: a, slot, page }) =>
      Math.max(0, a + slot * sizes[sizes.length > 1 ? 1 : 0]! + page * ps + (page === 3 ? 5 : 0)),
    );
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .record({
          r: range,
          prot: protArb,
          flags: flagsArb,
          paOff: fc.constantFrom(0, 0, 0, ps),
          // Sometimes PA 0: with IPA 0, an address that is a multiple of every size.
          paBase: fc.constantFrom(cfg.paBase, cfg.paBase, cfg.paBase, 0),
        })
        .map(({ r, prot, flags, paOff, paBase }) => ({
          op: 'map' as const,
          ipa: r.ipa,
          size: r.size,
          pa: paBase + Math.max(0, r.rel) + paOff,
          prot,
          flags,
        })),
    },
    { weight: 3, arbitrary: range.map((r) => ({ op: 'unmap' as const, ipa: r.ipa, size: r.size })) },
    // Single-page unmaps of the pages the single-address operations aim at: the fast path's
    // own case, including the unmap that empties a last-level table (which it must hand on).
    { weight: 2, arbitrary: single.map((ipa) => ({ op: 'unmap' as const, ipa, size: ps })) },
    {
      weight: 2,
      arbitrary: fc
        .record({ ipa: single, prot: protArb, flags: flagsArb })
        .map((o) => ({ op: 'relax' as const, ...o })),
    },
    {
      weight: 2,
      arbitrary: fc.record({ ipa: single, flags: flagsArb }).map((o) => ({ op: 'mkyoung' as const, ...o })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ ipa: single, flags: fc.constant(0) })
        .map((o) => ({ op: 'getLeaf' as const, ...o })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ r: range, mkold: fc.boolean() })
        .map(({ r, mkold }) => ({ op: 'mkold' as const, ipa: r.ipa, size: r.size, mkold })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ r: range, op: fc.constantFrom('wrprotect' as const, 'flush' as const, 'split' as const) })
        .map(({ r, op }) => ({ op, ipa: r.ipa, size: r.size })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ r: range, id: fc.integer({ min: 0, max: 3 }) })
        .map(({ r, id }) => ({ op: 'owner' as const, ipa: r.ipa, size: Math.min(r.size, 4 * ps), id })),
    },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 }).map((min) => ({ op: 'topup' as const, min })) },
  );
}

/** Records every event with its operands, in order. */
function recorder(log: string[]): Stage2Events {
  return {
    tlbiVmidIpa: (op) => log.push(`tlbi ipa ${hexAddr(op.addr)} l${op.level}`),
    tlbiVmidIpaNsh: (op) => log.push(`tlbi ipa nsh ${hexAddr(op.addr)} l${op.level}`),
    tlbiVmidRange: (op) => log.push(`tlbi range ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    tlbiVmid: () => log.push('tlbi vmid'),
    dcacheCleanInvalPoc: (op) => log.push(`dcache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    icacheInvalPou: (op) => log.push(`icache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
  };
}

interface Side {
  pgt: Stage2PageTable;
  mc: MemCache;
  log: string[];
  op: S2Op;
  leaf: LeafResult;
}

/** One step on one table; returns what the operation returned, as a string. */
function step(s: Side, o: Op): string {
  const { pgt, mc, op, leaf } = s;
  switch (o.op) {
    case 'map':
      op.addr = o.ipa;
      op.size = o.size;
      op.phys = o.pa;
      return String(pgt.mapOp(op, o.prot, mc, o.flags));
    case 'unmap':
      op.addr = o.ipa;
      op.size = o.size;
      return String(pgt.unmapOp(op));
    case 'relax':
      op.addr = o.ipa;
      return `${pgt.relaxPermsOp(op, o.prot, o.flags)} level=${pgt.lastAttrLevel}`;
    case 'mkyoung':
      op.addr = o.ipa;
      return `${pgt.mkyoungOp(op, o.flags)} level=${pgt.lastAttrLevel}`;
    case 'getLeaf': {
      op.addr = o.ipa;
      const r = pgt.getLeafOp(op, leaf);
      return `${r} ${leaf.lo} ${leaf.hi} ${leaf.level}`;
    }
    // The unchecked forms: the commands probe the kernel's edges (a zero size, 2^52).
    case 'mkold':
      op.addr = o.ipa;
      op.size = o.size;
      return String(pgt.testClearYoungOp(op, o.mkold));
    case 'wrprotect':
      op.addr = o.ipa;
      op.size = o.size;
      return String(pgt.wrprotectOp(op));
    case 'flush':
      op.addr = o.ipa;
      op.size = o.size;
      return String(pgt.flushOp(op));
    case 'split':
      op.addr = o.ipa;
      op.size = o.size;
      return String(pgt.splitOp(op, mc));
    case 'owner':
      return String(pgt.setOwner(o.ipa, o.size, mc, o.id));
    case 'topup':
      return String(mc.topup(o.min));
  }
}

function describeOp(o: Op): string {
  const parts = Object.entries(o).map(([k, v]) =>
    typeof v === 'number' && k !== 'flags' && k !== 'prot' ? `${k}=${hexAddr(v)}` : `${k}=${String(v)}`,
  );
  return parts.join(' ');
}

/** The two tables agree: every page in use, word for word and refcount, at the same index. */
function expectSameTables(a: Side, b: Side, at: string): void {
  const pa = a.pgt.pool;
  const pb = b.pgt.pool;
  expect(pa.inUse, at).toBe(pb.inUse);
  expect(pa.capacity, at).toBe(pb.capacity);
  expect(a.mc.nobjs, at).toBe(b.mc.nobjs);
  expect(a.pgt.pgd, at).toBe(b.pgt.pgd);
  for (let p = 0; p < pa.capacity; p++) {
    const ca = pa.pageCount(p);
    if (ca !== pb.pageCount(p))
      expect(`page ${p} count ${ca}`, at).toBe(`page ${p} count ${pb.pageCount(p)}`);
    if (ca === 0) continue;
    const wa = pa.pages[p]!;
    const wb = pb.pages[p]!;
    for (let i = 0; i < wa.length; i++) {
      if (wa[i] !== wb[i]) expect(`page ${p} word ${i}: ${wa[i]}`, at).toBe(`page ${p} word ${i}: ${wb[i]}`);
    }
  }
}

/**
 * Runs `ops` on two tables, one with the fast paths and one without (with or without the walk
 * cache), with a memcache of `mcCap` pages, and requires the same result, events and tables
 * after every step.
 */
function runBoth(cfg: Config, fwb: boolean, slowCache: boolean, mcCap: number, ops: Op[]): void {
  const sides = [true, false].map((fast): Side => {
    const log: string[] = [];
    const pgt = new Stage2PageTable({
      granule: cfg.granule,
      ipaBits: cfg.ipaBits,
      lpa2: cfg.lpa2,
      fwb,
      events: recorder(log),
      fastPaths: fast,
    });
    // The generic side runs with or without the walk cache (both are the reference).
    if (!fast) pgt.walker.useCache = slowCache;
    // A small memcache, so that table creation runs dry in the middle of a descent.
    const mc = new MemCache(pgt.pool, mcCap);
    mc.topup(mcCap);
    return { pgt, mc, log, op: new S2Op(), leaf: new LeafResult() };
  });
  const [a, b] = sides as [Side, Side];
  const trace: string[] = [];
  for (const o of ops) {
    trace.push(describeOp(o));
    const at = `${cfg.name} fwb=${fwb} cache=${slowCache} mc=${mcCap}:\n  ${trace.join('\n  ')}`;
    const ra = step(a, o);
    const rb = step(b, o);
    expect(ra, at).toBe(rb);
    expect(a.log, at).toEqual(b.log);
    expectSameTables(a, b, at);
  }
  for (const s of sides) s.pgt.destroy();
  expect(a.pgt.pool.inUse).toBe(b.pgt.pool.inUse);
}

describe('page-table fast paths against the generic walker', () => {
  it.each(CONFIGS)('$name: same tables, refcounts, events and results', (cfg) => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 8 }),
        fc.array(opArb(cfg), { minLength: 1, maxLength: 30 }),
        (fwb, slowCache, mcCap, ops) => runBoth(cfg, fwb, slowCache, mcCap, ops),
      ),
      { numRuns: cfg.runs },
    );
  });

  /** A map of R|W, as the fault path makes them (so the prot is remembered between maps). */
  const rwMap = (ipa: number, size: number, pa: number): Op => ({
    op: 'map',
    ipa,
    size,
    pa,
    prot: R | W,
    flags: 0,
  });
  /** `ops` on the 4K/40 table both ways, with FWB and without. */
  const bothWays = (ops: Op[]): void => {
    for (const fwb of [true, false]) runBoth(CONFIGS[0]!, fwb, true, 8, ops);
  };

  it('hands a block whose PA is not aligned to it to the general path, with the prot remembered', () => {
    // mapLeafFast()'s case but for the PA: a 2M block at a PA one page past a 2M boundary,
    // with the prot of the map before it, into an empty entry of a level-2 table the walk
    // cache knows. The kernel maps it as pages (stage2_leaf_mapping_allowed() fails).
    const g = 2 ** 30;
    bothWays([
      rwMap(g, 4096, 0x8000_0000),
      rwMap(g + 2 ** 21, 2 ** 21, 0x8020_1000),
      rwMap(g + 2 ** 22, 2 ** 21, 0x8040_0000),
      { op: 'getLeaf', ipa: g + 2 ** 21, flags: 0 },
      { op: 'getLeaf', ipa: g + 2 ** 22, flags: 0 },
    ]);
  });

  it('hands a map of two pages at IPA 0 and PA 0 to the general path, with the prot remembered', () => {
    // mapLeafFast()'s alignment test multiplies by the inverse of its leaf's size, and at
    // address 0 every size passes it: only the size itself may say page or block. Two pages
    // at IPA 0 into the empty entry 0 of a known level-2 table are two pages, not a block.
    bothWays([
      rwMap(2 ** 21, 4096, 0x8000_0000),
      rwMap(0, 2 * 4096, 0),
      rwMap(2 ** 22, 4 * 2 ** 21, 2 ** 23),
      { op: 'getLeaf', ipa: 0, flags: 0 },
      { op: 'getLeaf', ipa: 2 ** 22, flags: 0 },
    ]);
  });

  it('takes the fast paths on the common operations (so the property compares something)', () => {
    // A page, a block, an unmap, a relax and an mkyoung on a warm table: the walker's own
    // walk is not entered (its nesting stack is never taken) for any of them.
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: true });
    const mc = MemCache.unlimited(pgt.pool);
    const op = new S2Op();
    op.addr = 0x4000_0000;
    op.size = 0x1000;
    op.phys = 0x8000_0000;
    expect(pgt.mapOp(op, R | W, mc)).toBe(0); // cold: builds the tables
    let walks = 0;
    const w = pgt.walker as unknown as { beginWalk: (...a: unknown[]) => unknown };
    const begin = w.beginWalk.bind(pgt.walker);
    w.beginWalk = (...args: unknown[]) => {
      walks++;
      return begin(...args);
    };
    op.addr = 0x4000_1000;
    op.phys = 0x8000_1000;
    expect(pgt.mapOp(op, R | W, mc)).toBe(0);
    op.addr = 0x4020_0000;
    op.size = 0x20_0000;
    op.phys = 0x8020_0000;
    expect(pgt.mapOp(op, R | W | X, mc)).toBe(0);
    op.addr = 0x4000_1000;
    op.size = 0x1000;
    expect(pgt.relaxPermsOp(op, R | W | X)).toBe(0);
    expect(pgt.mkyoungOp(op)).toBe(0);
    expect(pgt.unmapOp(op)).toBe(0);
    const leaf = new LeafResult();
    expect(pgt.getLeafOp(op, leaf)).toBe(0);
    expect(walks).toBe(0);
  });
});
