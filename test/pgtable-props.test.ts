/**
 * Property tests: random sequences of map / unmap / relax / wrprotect / mkold / mkyoung /
 * split over a small IPA window, checked after every step against a reference model of the
 * rules of arch/arm64/kvm/hyp/pgtable.c's stage-2 operations and against the table's own invariants (auditStage2).
 *
 * The model keeps the leaves themselves (keyed by their page-aligned base IPA), because
 * which leaf a page belongs to decides what unmap and a later map remove.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  formatProt,
  hexAddr,
} from '../src/pgtable/descriptor.js';
import { EAGAIN, EINVAL } from '../src/pgtable/errno.js';
import type { GranuleSize } from '../src/pgtable/geometry.js';
import { MemCache } from '../src/pgtable/pool.js';
import type { Stage2Events } from '../src/pgtable/pool.js';
import { S2Op } from '../src/pgtable/op.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';
import { KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED } from '../src/pgtable/walker.js';
import { auditStage2, collectLeaves } from '../src/pgtable/audit.js';
import type { LeafInfo } from '../src/pgtable/audit.js';

const R = KVM_PGTABLE_PROT_R;
const W = KVM_PGTABLE_PROT_W;
const X = KVM_PGTABLE_PROT_X;
const FAULT = KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED;

type Mem = 'normal' | 'nc' | 'device';

/** One leaf of the model. */
interface MLeaf {
  ipa: number;
  size: number;
  level: number;
  pa: number;
  r: boolean;
  w: boolean;
  x: boolean;
  mem: Mem;
  young: boolean;
  sw: number;
}

type Op =
  | { op: 'map'; ipa: number; size: number; pa: number; prot: number }
  | { op: 'unmap' | 'wrprotect' | 'mkold' | 'split'; ipa: number; size: number }
  | { op: 'relax'; ipa: number; prot: number }
  | { op: 'mkyoung'; ipa: number };

/** A table configuration and the IPA window the commands stay in. */
interface Config {
  name: string;
  granule: GranuleSize;
  ipaBits: number;
  /** Window start, and how many level-2 blocks (2M, 32M, 512M) the window spans. */
  base: number;
  blocks: number;
  runs: number;
}

const CONFIGS: Config[] = [
  // Straddles a 1 GiB boundary (two L2 tables under two PGD entries).
  { name: '4K/40', granule: 4096, ipaBits: 40, base: 2 ** 30 - 2 * 0x200000, blocks: 4, runs: 160 },
  // 16 concatenated PGD pages of 64 GiB: the window straddles PGD pages 0 and 1.
  { name: '16K/40', granule: 16384, ipaBits: 40, base: 2 ** 36 - 2 * 0x2000000, blocks: 4, runs: 80 },
  // 4 concatenated PGD pages of 4 TiB: straddles PGD pages 0 and 1.
  { name: '64K/44', granule: 65536, ipaBits: 44, base: 2 ** 42 - 0x20000000, blocks: 2, runs: 45 },
];

/** The reference model: the page-table code's rules at leaf granularity. */
class Model {
  readonly leaves = new Map<number, MLeaf>();
  readonly ps: number;
  readonly sizes: number[];
  readonly minLevel: number;
  readonly fwb: boolean;

  constructor(pgt: Stage2PageTable) {
    this.ps = pgt.geo.pageSize;
    this.sizes = [-1, 0, 1, 2, 3].map((l) => pgt.geo.granuleSize(l));
    this.minLevel = Math.max(pgt.geo.minBlockLevel, pgt.geo.startLevel);
    this.fwb = pgt.fwb;
  }

  size(level: number): number {
    return this.sizes[level + 1]!;
  }

  /** The leaf covering `addr`, if any. */
  find(addr: number): MLeaf | undefined {
    for (let l = this.minLevel; l <= 3; l++) {
      const s = this.size(l);
      const leaf = this.leaves.get(addr - (addr % s));
      if (leaf && leaf.size === s) return leaf;
    }
    return undefined;
  }

  /** Leaves that intersect [start, end), in IPA order. */
  touching(start: number, end: number): MLeaf[] {
    return [...this.leaves.values()]
      .filter((l) => l.ipa < end && l.ipa + l.size > start)
      .sort((a, b) => a.ipa - b.ipa);
  }

  /** The walk range: [ALIGN_DOWN(ipa), PAGE_ALIGN(ALIGN_DOWN(ipa) + size)). */
  range(ipa: number, size: number): [number, number] {
    const start = ipa - (ipa % this.ps);
    const e = start + size;
    return [start, e % this.ps === 0 ? e : e - (e % this.ps) + this.ps];
  }

  map(ipa: number, size: number, paIn: number, prot: number): number {
    const device = (prot & KVM_PGTABLE_PROT_DEVICE) !== 0;
    const nc = (prot & KVM_PGTABLE_PROT_NORMAL_NC) !== 0;
    if ((device && nc) || ((device || nc) && prot & X)) return EINVAL;
    const mem: Mem = device ? 'device' : nc ? 'nc' : 'normal';
    const [start, end] = this.range(ipa, size);
    const pa0 = paIn - (paIn % this.ps);
    let addr = start;
    while (addr < end) {
      const pa = pa0 + (addr - start);
      // The walker installs a leaf at the first level, top down, where one fits.
      let level = 3;
      for (let l = this.minLevel; l < 3; l++) {
        const s = this.size(l);
        if (addr % s === 0 && pa % s === 0 && s <= end - addr) {
          level = l;
          break;
        }
      }
      const s = this.size(level);
      const next: MLeaf = {
        ipa: addr,
        size: s,
        level,
        pa,
        r: (prot & R) !== 0,
        w: (prot & W) !== 0,
        x: (prot & X) !== 0,
        mem,
        young: true,
        sw: (prot >> 5) & 0xf,
      };
      const old = this.find(addr);
      if (old && old.size > s) {
        // A bigger block is broken: the whole block goes, only the new leaves are mapped.
        this.leaves.delete(old.ipa);
      }
      if (old && old.size === s) {
        // stage2_pte_needs_update(): a change of permissions alone is not an update.
        const needsUpdate = old.pa !== pa || old.mem !== mem || !old.young || old.sw !== next.sw;
        if (needsUpdate) this.leaves.set(addr, next);
      } else {
        // A table at this level is replaced by the block (its whole subtree goes).
        if (level < 3) for (const l of this.touching(addr, addr + s)) this.leaves.delete(l.ipa);
        this.leaves.set(addr, next);
      }
      addr += s;
    }
    return 0;
  }

  unmap(ipa: number, size: number): number {
    const [start, end] = this.range(ipa, size);
    for (const l of this.touching(start, end)) this.leaves.delete(l.ipa);
    return 0;
  }

  wrprotect(ipa: number, size: number): number {
    const [start, end] = this.range(ipa, size);
    for (const l of this.touching(start, end)) l.w = false;
    return 0;
  }

  mkold(ipa: number, size: number): void {
    const [start, end] = this.range(ipa, size);
    for (const l of this.touching(start, end)) l.young = false;
  }

  mkyoung(ipa: number): void {
    const l = this.find(ipa - (ipa % this.ps));
    if (l) l.young = true;
  }

  relax(ipa: number, prot: number): number {
    const l = this.find(ipa - (ipa % this.ps));
    if (!l) return EAGAIN;
    if (prot & R) l.r = true;
    if (prot & W) l.w = true;
    if (prot & X) l.x = true;
    return 0;
  }

  split(ipa: number, size: number): number {
    const [start, end] = this.range(ipa, size);
    for (const b of this.touching(start, end)) {
      if (b.level === 3) continue;
      // Rebuilt from R/W/X and the SW bits: Normal WB, young.
      this.leaves.delete(b.ipa);
      for (let off = 0; off < b.size; off += this.ps) {
        this.leaves.set(b.ipa + off, {
          ...b,
          ipa: b.ipa + off,
          pa: b.pa + off,
          size: this.ps,
          level: 3,
          mem: 'normal',
          young: true,
        });
      }
    }
    return 0;
  }

  memAttr(mem: Mem): number {
    return mem === 'device' ? 1 : mem === 'nc' ? 5 : this.fwb ? 6 : 0xf;
  }

  /** The leaves as collectLeaves() should report them, one line each. */
  expected(): string[] {
    return [...this.leaves.values()].sort((a, b) => a.ipa - b.ipa).map((l) => this.view(l));
  }

  view(l: MLeaf): string {
    const perms = (l.r ? 'R' : '-') + (l.w ? 'W' : '-') + (l.x ? 'X' : '-');
    const attr = `mt=${this.memAttr(l.mem)} ${l.young ? 'AF' : 'old'} sw=${l.sw}`;
    return `${hx(l.ipa)} L${l.level} -> ${hx(l.pa)} ${perms} ${attr}`;
  }
}

/** Cheap hex for the per-step views (thousands of leaves per step). */
const hx = (n: number): string => '0x' + n.toString(16);

/** Decodes a real leaf into the model's one-line view (type and SH are checked separately). */
function decoded(l: LeafInfo): string {
  const perms = (l.lo & 0x40 ? 'R' : '-') + (l.lo & 0x80 ? 'W' : '-') + (l.hi & 0x00400000 ? '-' : 'X');
  const attr = `mt=${(l.lo >>> 2) & 0xf} ${l.lo & 0x400 ? 'AF' : 'old'} sw=${(l.hi >>> 23) & 0xf}`;
  return `${hx(l.ipa)} L${l.level} -> ${hx(l.pa)} ${perms} ${attr}`;
}

function opArb(cfg: Config, ps: number, block: number): fc.Arbitrary<Op> {
  const span = cfg.blocks * block;
  const pages = span / ps;
  // Biased towards block-aligned addresses, sizes and PAs, so that blocks are common.
  const addr = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: cfg.blocks - 1 }).map((b) => cfg.base + b * block) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: pages - 1 }).map((p) => cfg.base + p * ps) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 0, max: pages - 1 }), fc.integer({ min: 1, max: ps - 1 }))
        .map(([p, o]) => cfg.base + p * ps + o),
    },
  );
  const size = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: cfg.blocks }).map((n) => n * block) },
    { weight: 2, arbitrary: fc.constant(ps) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 24 }).map((n) => n * ps) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 * ps }) },
  );
  // Keep every walk inside the window.
  const range = fc.tuple(addr, size).map(([a, s]) => ({ ipa: a, size: Math.min(s, cfg.base + span - a) }));
  // −1 stands for "linear": PA = 0x80000000 + (IPA − base), so that remaps of the same range
  // with other permissions (the "permission-only change" rule) are common.
  const pa = fc.oneof(
    { weight: 3, arbitrary: fc.constant(-1) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 7 }).map((j) => 0x80000000 + j * block) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 4096 }).map((k) => 0x80000000 + k * ps) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 4096 * ps }).map((k) => 0x80000000 + k) },
  );
  const perms = fc
    .integer({ min: 0, max: 7 })
    .map((m) => (m & 1 ? R : 0) | (m & 2 ? W : 0) | (m & 4 ? X : 0));
  const prot = fc
    .tuple(
      perms,
      fc.constantFrom(0, 0, 0, 0, KVM_PGTABLE_PROT_DEVICE, KVM_PGTABLE_PROT_NORMAL_NC),
      fc.constantFrom(0, 0, 0, KVM_PGTABLE_PROT_SW0),
    )
    .map(([p, m, s]) => p | m | s);
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc.tuple(range, pa, prot).map(([r, p, pr]) => ({
        op: 'map' as const,
        ...r,
        pa: p < 0 ? 0x80000000 + (r.ipa - cfg.base) : p,
        prot: pr,
      })),
    },
    { weight: 2, arbitrary: range.map((r) => ({ op: 'unmap' as const, ...r })) },
    { weight: 1, arbitrary: range.map((r) => ({ op: 'wrprotect' as const, ...r })) },
    { weight: 1, arbitrary: range.map((r) => ({ op: 'mkold' as const, ...r })) },
    { weight: 1, arbitrary: range.map((r) => ({ op: 'split' as const, ...r })) },
    {
      weight: 1,
      arbitrary: fc.tuple(addr, perms).map(([a, p]) => ({ op: 'relax' as const, ipa: a, prot: p })),
    },
    { weight: 1, arbitrary: addr.map((a) => ({ op: 'mkyoung' as const, ipa: a })) },
  );
}

function describeOp(o: Op): string {
  const f = (n: number): string => '0x' + n.toString(16);
  switch (o.op) {
    case 'map':
      return `map ${f(o.ipa)} ${f(o.size)} ${f(o.pa)} ${formatProt(o.prot)}`;
    case 'relax':
      return `relax ${f(o.ipa)} ${formatProt(o.prot)}`;
    case 'mkyoung':
      return `mkyoung ${f(o.ipa)}`;
    default:
      return `${o.op} ${f(o.ipa)} ${f(o.size)}`;
  }
}

/** The operands of step()'s commands. */
const stepOp = new S2Op();

/**
 * Runs one command on both the table and the model; returns the two results. The unchecked
 * `...Op` forms: the commands probe the kernel's edges (a zero size, an address past 2^52),
 * which the argument-taking wrappers refuse.
 */
function step(pgt: Stage2PageTable, model: Model, mc: MemCache, o: Op): [number, number] {
  const op = stepOp;
  op.addr = o.ipa;
  op.size = 'size' in o ? o.size : 1;
  op.phys = o.op === 'map' ? o.pa : 0;
  switch (o.op) {
    case 'map':
      return [pgt.mapOp(op, o.prot, mc), model.map(o.ipa, o.size, o.pa, o.prot)];
    case 'unmap':
      return [pgt.unmapOp(op), model.unmap(o.ipa, o.size)];
    case 'wrprotect':
      return [pgt.wrprotectOp(op), model.wrprotect(o.ipa, o.size)];
    case 'mkold':
      pgt.testClearYoungOp(op, true);
      model.mkold(o.ipa, o.size);
      return [0, 0];
    case 'mkyoung':
      pgt.mkyoungOp(op, FAULT);
      model.mkyoung(o.ipa);
      return [0, 0];
    case 'relax':
      return [pgt.relaxPermsOp(op, o.prot, FAULT), model.relax(o.ipa, o.prot)];
    case 'split':
      return [pgt.splitOp(op, mc), model.split(o.ipa, o.size)];
  }
}

/** Every invariant that must hold after each command. */
function check(pgt: Stage2PageTable, model: Model, cfg: Config, o: Op, at: string): void {
  expect(auditStage2(pgt), at).toEqual([]);
  const leaves = collectLeaves(pgt);
  const geo = pgt.geo;
  // Plain checks, one expect at the end: thousands of leaves per step.
  const bad: string[] = [];
  for (let i = 0; i < leaves.length; i++) {
    const l = leaves[i]!;
    // Aligned, at a level that may hold a leaf, inside the IPA space, with the right type.
    if (l.ipa % l.size !== 0 || l.pa % l.size !== 0) bad.push(`leaf ${hx(l.ipa)} L${l.level}: misaligned`);
    if (l.level < geo.minBlockLevel) bad.push(`leaf ${hx(l.ipa)} L${l.level}: below the lowest block level`);
    if (l.ipa + l.size > geo.ipaLimit) bad.push(`leaf ${hx(l.ipa)} L${l.level}: outside the IPA space`);
    if ((l.lo & 3) !== (l.level === 3 ? 3 : 1)) bad.push(`leaf ${hx(l.ipa)} L${l.level}: wrong type bits`);
    if ((l.lo & 0x300) !== 0x300) bad.push(`leaf ${hx(l.ipa)} L${l.level}: SH is not inner shareable`);
    // Sorted and disjoint.
    if (i > 0 && leaves[i - 1]!.ipa + leaves[i - 1]!.size > l.ipa)
      bad.push(`leaf ${hx(l.ipa)} L${l.level}: overlaps the previous leaf`);
  }
  expect(bad, at).toEqual([]);
  // Compared as one string first: a deep diff of thousands of leaves is slow.
  const got = leaves.map(decoded);
  const want = model.expected();
  if (got.join('\n') !== want.join('\n')) expect(got, at).toEqual(want);

  // get_leaf agrees with the model at sampled addresses.
  const ps = geo.pageSize;
  const span = cfg.blocks * geo.granuleSize(2);
  const samples = [cfg.base, cfg.base + span - 1, cfg.base + span / 2 + 3 * ps + 5];
  if ('size' in o) samples.push(o.ipa, Math.max(o.ipa, o.ipa + o.size - 1));
  else samples.push(o.ipa);
  for (let k = 1; k <= 6; k++) samples.push(cfg.base + Math.floor((span * k) / 7 / ps) * ps + 17 * k);
  const r = new LeafResult();
  for (const a of samples) {
    expect(pgt.getLeaf(a, r), at).toBe(0);
    const page = a - (a % ps);
    const m = model.find(page);
    if (!m) {
      expect([r.lo, r.hi], `${at}: get_leaf ${hexAddr(a)} should be a hole`).toEqual([0, 0]);
      continue;
    }
    const where = `${at}: get_leaf ${hexAddr(a)}`;
    expect(r.level, where).toBe(m.level);
    expect(pgt.layout.toPhys(r.lo, r.hi) + (page - m.ipa), where).toBe(m.pa + (page - m.ipa));
    expect((r.lo & 0x40) !== 0, where).toBe(m.r);
    expect((r.lo & 0x80) !== 0, where).toBe(m.w);
  }
}

describe.each(CONFIGS)('$name: random command sequences against a reference model', (cfg) => {
  it('keeps the table sound and equal to the model, and leaks nothing', () => {
    const probe = new Stage2PageTable({ granule: cfg.granule, ipaBits: cfg.ipaBits, fwb: false });
    // The window is made of level-2 blocks (2M, 32M, 512M).
    const block = probe.geo.granuleSize(2);
    const span = cfg.blocks * block;
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.boolean(),
        fc.array(opArb(cfg, cfg.granule, block), { minLength: 1, maxLength: 20 }),
        (fwb, walkCache, ops) => {
          const pgt = new Stage2PageTable({ granule: cfg.granule, ipaBits: cfg.ipaBits, fwb });
          pgt.walker.useCache = walkCache;
          const mc = MemCache.unlimited(pgt.pool);
          const model = new Model(pgt);
          const trace: string[] = [];
          for (const o of ops) {
            trace.push(describeOp(o));
            const at = `${cfg.name} fwb=${fwb} walkCache=${walkCache}: ${trace.join('; ')}`;
            const [got, want] = step(pgt, model, mc, o);
            expect(got, at).toBe(want);
            check(pgt, model, cfg, o, at);
          }
          // Unmapping the whole window leaves only the PGD pages: no table leaked.
          expect(pgt.unmap(cfg.base, span)).toBe(0);
          expect(collectLeaves(pgt)).toEqual([]);
          expect(pgt.pool.inUse).toBe(pgt.geo.pgdPages);
          expect(auditStage2(pgt)).toEqual([]);
          pgt.destroy();
          expect(pgt.pool.inUse).toBe(0);
        },
      ),
      { numRuns: cfg.runs },
    );
  });
});

describe('the walk cache changes nothing', () => {
  /** Records every TLBI and CMO as a line. */
  function recorder(log: string[]): Stage2Events {
    return {
      tlbiVmidIpa: (op) => log.push(`tlbi ipa ${hexAddr(op.addr)} ${op.level}`),
      tlbiVmidIpaNsh: (op) => log.push(`tlbi nsh ${hexAddr(op.addr)} ${op.level}`),
      tlbiVmidRange: (op) => log.push(`tlbi range ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
      tlbiVmid: () => log.push('tlbi vmid'),
      dcacheCleanInvalPoc: (op) => log.push(`dcache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
      icacheInvalPou: (op) => log.push(`icache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    };
  }

  it.each(CONFIGS)('$name: same results, events and leaves with the cache on and off', (cfg) => {
    const block = new Stage2PageTable({
      granule: cfg.granule,
      ipaBits: cfg.ipaBits,
      fwb: false,
    }).geo.granuleSize(2);
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(opArb(cfg, cfg.granule, block), { minLength: 1, maxLength: 25 }),
        (fwb, ops) => {
          const logs: [string[], string[]] = [[], []];
          const tables = logs.map((log, i) => {
            const pgt = new Stage2PageTable({
              granule: cfg.granule,
              ipaBits: cfg.ipaBits,
              fwb,
              events: recorder(log),
            });
            pgt.walker.useCache = i === 0;
            return { pgt, mc: MemCache.unlimited(pgt.pool), model: new Model(pgt) };
          });
          const trace: string[] = [];
          for (const o of ops) {
            trace.push(describeOp(o));
            const at = `${cfg.name} fwb=${fwb}: ${trace.join('; ')}`;
            const [a, b] = tables.map((t) => step(t.pgt, t.model, t.mc, o)[0]);
            expect(a, at).toBe(b);
            expect(logs[0], at).toEqual(logs[1]);
            const la = collectLeaves(tables[0]!.pgt).map(decoded).join('\n');
            const lb = collectLeaves(tables[1]!.pgt).map(decoded).join('\n');
            expect(la === lb, at).toBe(true);
            expect(tables[0]!.pgt.pool.inUse, at).toBe(tables[1]!.pgt.pool.inUse);
          }
        },
      ),
      { numRuns: Math.ceil(cfg.runs / 3) },
    );
  });
});

describe('the model itself', () => {
  it('agrees with hand-worked cases (so the property does not test the model against itself)', () => {
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
    const m = new Model(pgt);
    m.map(0x200000, 0x200000, 0x40200000, R);
    expect([...m.leaves.values()].map((l) => [l.ipa, l.level])).toEqual([[0x200000, 2]]);
    // Remap with more permissions: kept as R.
    m.map(0x200000, 0x200000, 0x40200000, R | W);
    expect(m.find(0x300000)!.w).toBe(false);
    // A page inside the block: the block goes.
    m.map(0x201000, 0x1000, 0x50000000, R | W);
    expect([...m.leaves.keys()]).toEqual([0x201000]);
    // A block over the pages' table.
    m.map(0x200000, 0x200000, 0x40200000, R | W);
    expect([...m.leaves.keys()]).toEqual([0x200000]);
    m.split(0x200000, 1);
    expect(m.leaves.size).toBe(512);
    // The walk is [ALIGN_DOWN(ipa), PAGE_ALIGN(ALIGN_DOWN(ipa) + size)): one page, not two.
    m.unmap(0x200fff, 2);
    expect(m.leaves.size).toBe(511);
    expect(m.relax(0x200000, W)).toBe(EAGAIN);
    expect(m.relax(0x201000, W)).toBe(0);
  });
});
