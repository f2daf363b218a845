import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_RW,
  KVM_PGTABLE_PROT_RWX,
  KVM_PGTABLE_PROT_X,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
} from '../src/pgtable/descriptor.js';
import type { GranuleSize } from '../src/pgtable/geometry.js';
import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_EXTERNAL_ABORT,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  HwWalkResult,
  HwWalker,
  S2AP_READ,
  S2AP_WRITE,
  archMinBlockLevel,
} from '../src/pgtable/hwwalk.js';
import {
  MAIR_DEVICE_nGnRnE,
  MAIR_NORMAL_NC,
  MAIR_NORMAL_WB,
  MT_S2_FWB_NORMAL,
  MT_S2_NORMAL,
  SH_ISH,
  SH_OSH,
} from '../src/pgtable/memattr.js';
import { CountingEvents, MemCache } from '../src/pgtable/pool.js';
import { Stage2PageTable } from '../src/pgtable/stage2.js';

const K4 = 0x1000;
const M2 = 0x200000;
const G1 = 0x40000000;

function table(
  granule: GranuleSize = 4096,
  ipaBits = 40,
  extra: Partial<ConstructorParameters<typeof Stage2PageTable>[0]> = {},
) {
  const pgt = new Stage2PageTable({ granule, ipaBits, fwb: false, ...extra });
  return { pgt, mc: MemCache.unlimited(pgt.pool) };
}

/** The words and index of the entry for `ipa` at `level` (the tables above must exist). */
function entryRef(pgt: Stage2PageTable, ipa: number, level: number): { words: Int32Array; i: number } {
  const geo = pgt.geo;
  let page = pgt.pgd + geo.pgdPageIndex(ipa);
  for (let l = geo.startLevel; l < level; l++) {
    const w = pgt.pool.pages[page]!;
    const i = 2 * geo.index(ipa, l);
    page = pgt.pool.pageOf(pgt.layout.toPhys(w[i]!, w[i + 1]!));
    if (page < 0) throw new Error(`no table at level ${l + 1} for ${ipa.toString(16)}`);
  }
  return { words: pgt.pool.pages[page]!, i: 2 * geo.index(ipa, level) };
}

function walk(w: HwWalker, ipa: number, access: 0 | 1 | 2 = ACCESS_READ): HwWalkResult {
  const r = new HwWalkResult();
  const ok = w.walk(ipa, access, r);
  expect(ok).toBe(r.fault === FAULT_NONE);
  return r;
}

describe('HwWalker: successful translations', () => {
  it('a 4K page gives its PA plus the offset, with the leaf fields', () => {
    const { pgt, mc } = table();
    expect(pgt.map(0x40000000, K4, 0x80000000, KVM_PGTABLE_PROT_RWX, mc)).toBe(0);
    const r = walk(new HwWalker(pgt), 0x40000123);
    expect(r.fault).toBe(FAULT_NONE);
    expect(r.fsc).toBe(0);
    expect(r.pa).toBe(0x80000123);
    expect(r.level).toBe(3);
    expect([r.lo, r.hi]).toEqual([0x800007ff, 0]);
    expect(r.memattr).toBe(MT_S2_NORMAL);
    expect(r.s2ap).toBe(S2AP_READ | S2AP_WRITE);
    expect(r.sh).toBe(SH_ISH);
    expect(r.xn).toBe(false);
    expect(r.afWouldBeSet).toBe(false);
  });

  it('2M and 1G blocks translate at levels 2 and 1 with the in-block offset', () => {
    const { pgt, mc } = table();
    expect(pgt.map(0x40200000, M2, 0x80200000, KVM_PGTABLE_PROT_RW, mc)).toBe(0);
    expect(pgt.map(0x80000000, G1, 0xc0000000, KVM_PGTABLE_PROT_R, mc)).toBe(0);
    const w = new HwWalker(pgt);
    let r = walk(w, 0x40212345, ACCESS_WRITE);
    expect([r.fault, r.level, r.pa, r.xn]).toEqual([FAULT_NONE, 2, 0x80212345, true]);
    r = walk(w, 0x80000000 + 0x3fedcba9);
    expect([r.fault, r.level, r.pa, r.s2ap]).toEqual([FAULT_NONE, 1, 0xc0000000 + 0x3fedcba9, S2AP_READ]);
  });

  it('exec needs only XN clear, not read permission (legacy XN, AArch64)', () => {
    const { pgt, mc } = table();
    pgt.map(0x1000, K4, 0x5000, KVM_PGTABLE_PROT_X, mc);
    const w = new HwWalker(pgt);
    expect(walk(w, 0x1000, ACCESS_EXEC).fault).toBe(FAULT_NONE);
    expect(walk(w, 0x1000, ACCESS_READ).fault).toBe(FAULT_PERMISSION);
  });

  it('works with 16K and 64K granules and concatenated root tables', () => {
    for (const [granule, ipaBits] of [
      [16384, 40],
      [65536, 44],
      [4096, 42],
    ] as const) {
      const { pgt, mc } = table(granule, ipaBits);
      const ipa = 2 ** ipaBits - granule;
      expect(pgt.map(ipa, granule, 0x123450000, KVM_PGTABLE_PROT_RW, mc)).toBe(0);
      const r = walk(new HwWalker(pgt), ipa + 8);
      expect([r.fault, r.level, r.pa]).toEqual([FAULT_NONE, 3, 0x123450008]);
    }
  });

  it('reads LPA2 output addresses and takes shareability from VTCR (bits 9:8 are OA[51:50])', () => {
    const { pgt, mc } = table(4096, 52, { lpa2: true });
    const pa = 2 ** 51 + 0x7000;
    expect(pgt.map(0x7000, K4, pa, KVM_PGTABLE_PROT_RW, mc)).toBe(0);
    const r = walk(new HwWalker(pgt), 0x7abc);
    expect(r.pa).toBe(pa + 0xabc);
    expect((r.lo >>> 8) & 3).toBe(2);
    expect(r.sh).toBe(SH_ISH);
  });

  it('walks from start level -1 (LPA2, 52-bit IPA)', () => {
    const { pgt } = table(4096, 52, { lpa2: true, startLevel: -1 });
    const w = new HwWalker(pgt);
    const ipa = 0x000f_0000_0000_1000;
    let r = walk(w, ipa);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, -1, 0x2b]);
    // Build the five-level path by hand (one root page, so the root index is the L-1 index).
    let words = pgt.pool.pages[pgt.pgd]!;
    for (let level = -1; level < 3; level++) {
      const child = pgt.pool.allocPage();
      const i = 2 * pgt.geo.index(ipa, level);
      words[i] = pgt.layout.physLo(pgt.pool.phys(child)) | 3;
      words[i + 1] = pgt.layout.physHi(pgt.pool.phys(child));
      words = pgt.pool.pages[child]!;
    }
    words[2 * pgt.geo.index(ipa, 3)] = 0x9000 | 0x443; // page, R, AF
    r = walk(w, ipa + 4);
    expect([r.fault, r.level, r.pa]).toEqual([FAULT_NONE, 3, 0x9004]);
  });
});

describe('HwWalker: faults', () => {
  it('an invalid entry faults at its level: L1 hole, L2 hole, L3 hole', () => {
    const { pgt, mc } = table();
    const w = new HwWalker(pgt);
    let r = walk(w, 0x40000000);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, 1, 0x05]);
    pgt.map(0x40000000, K4, 0x80000000, KVM_PGTABLE_PROT_RW, mc);
    r = walk(w, 0x40001000);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, 3, 0x07]);
    r = walk(w, 0x40200000);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, 2, 0x06]);
    expect([r.lo, r.hi, r.pa]).toEqual([0, 0, 0]);
  });

  it('a mkold-ed leaf takes an access-flag fault at the leaf level', () => {
    const { pgt, mc } = table();
    pgt.map(0x40000000, K4, 0x80000000, KVM_PGTABLE_PROT_RW, mc);
    pgt.map(0x40200000, M2, 0x80200000, KVM_PGTABLE_PROT_RW, mc);
    expect(pgt.testClearYoung(0x40000000, 2 * M2, true)).toBe(true);
    const w = new HwWalker(pgt);
    let r = walk(w, 0x40000010);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_ACCESS_FLAG, 3, 0x0b]);
    r = walk(w, 0x40300000, ACCESS_WRITE);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_ACCESS_FLAG, 2, 0x0a]);
    pgt.mkyoung(0x40000000);
    expect(walk(w, 0x40000010).fault).toBe(FAULT_NONE);
  });

  it('the access-flag fault takes priority over a permission fault', () => {
    const { pgt, mc } = table();
    pgt.map(0x1000, K4, 0x2000, KVM_PGTABLE_PROT_R, mc);
    pgt.testClearYoung(0x1000, K4, true);
    expect(walk(new HwWalker(pgt), 0x1000, ACCESS_WRITE).fault).toBe(FAULT_ACCESS_FLAG);
  });

  it('with hardware AF the walk succeeds, reports afWouldBeSet, and leaves AF clear', () => {
    const { pgt, mc } = table();
    pgt.map(0x1000, K4, 0x2000, KVM_PGTABLE_PROT_R, mc);
    pgt.testClearYoung(0x1000, K4, true);
    const w = new HwWalker(pgt, { ha: true });
    const r = walk(w, 0x1000);
    expect([r.fault, r.pa, r.afWouldBeSet]).toEqual([FAULT_NONE, 0x2000, true]);
    const e = entryRef(pgt, 0x1000, 3);
    expect(e.words[e.i]! & KVM_PTE_LEAF_ATTR_LO_S2_AF).toBe(0);
    // A faulting access would not set AF either.
    expect(walk(w, 0x1000, ACCESS_WRITE)).toMatchObject({ fault: FAULT_PERMISSION, afWouldBeSet: false });
    // A young leaf is not reported.
    pgt.mkyoung(0x1000);
    expect(walk(w, 0x1000).afWouldBeSet).toBe(false);
  });

  it('a wrprotect-ed leaf faults on write (permission, leaf level) and still reads', () => {
    const { pgt, mc } = table();
    pgt.map(0x40000000, K4, 0x80000000, KVM_PGTABLE_PROT_RW, mc);
    pgt.map(0x40200000, M2, 0x80200000, KVM_PGTABLE_PROT_RW, mc);
    const w = new HwWalker(pgt);
    expect(walk(w, 0x40000000, ACCESS_WRITE).fault).toBe(FAULT_NONE);
    pgt.wrprotect(0x40000000, 2 * M2);
    let r = walk(w, 0x40000008, ACCESS_WRITE);
    expect([r.fault, r.level, r.fsc, r.s2ap]).toEqual([FAULT_PERMISSION, 3, 0x0f, S2AP_READ]);
    r = walk(w, 0x40280000, ACCESS_WRITE);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_PERMISSION, 2, 0x0e]);
    expect(walk(w, 0x40000008, ACCESS_READ).fault).toBe(FAULT_NONE);
  });

  it('XN + exec is a permission fault; relax_perms(X) lifts it', () => {
    const { pgt, mc } = table();
    pgt.map(0x3000, K4, 0x4000, KVM_PGTABLE_PROT_RW, mc);
    pgt.map(0x40000000, G1, 0x80000000, KVM_PGTABLE_PROT_DEVICE | KVM_PGTABLE_PROT_RW, mc);
    const w = new HwWalker(pgt);
    let r = walk(w, 0x3000, ACCESS_EXEC);
    expect([r.fault, r.level, r.fsc, r.xn]).toEqual([FAULT_PERMISSION, 3, 0x0f, true]);
    r = walk(w, 0x40000000, ACCESS_EXEC);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_PERMISSION, 1, 0x0d]);
    pgt.relaxPerms(0x3000, KVM_PGTABLE_PROT_X);
    expect(walk(w, 0x3000, ACCESS_EXEC).fault).toBe(FAULT_NONE);
  });

  it('a NONE-prot leaf faults for read, write and exec with a permission fault', () => {
    const { pgt, mc } = table();
    pgt.map(0x5000, K4, 0x6000, 0, mc);
    const w = new HwWalker(pgt);
    for (const a of [ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC] as const) {
      const r = walk(w, 0x5000, a);
      expect([r.fault, r.level, r.fsc, r.pa]).toEqual([FAULT_PERMISSION, 3, 0x0f, 0x6000]);
    }
  });

  it('an IPA at or above 2^ia_bits (or negative) takes a level-0 translation fault', () => {
    const { pgt, mc } = table(); // start level 1
    pgt.map(0, K4, 0x1000, KVM_PGTABLE_PROT_RW, mc);
    const w = new HwWalker(pgt);
    for (const ipa of [2 ** 40, 2 ** 40 + 0x1000, 2 ** 48, -1]) {
      const r = walk(w, ipa);
      expect([r.fault, r.level, r.fsc, r.lo, r.hi]).toEqual([FAULT_TRANSLATION, 0, 0x04, 0, 0]);
    }
    expect(walk(w, 2 ** 40 - 1).fault).toBe(FAULT_TRANSLATION); // in range: an L1 hole
    expect(walk(w, 2 ** 40 - 1).level).toBe(1);
  });

  it('reserved level-3 type 0b01 is a translation fault at level 3', () => {
    const { pgt, mc } = table();
    pgt.map(0x40000000, K4, 0x80000000, KVM_PGTABLE_PROT_RW, mc);
    const e = entryRef(pgt, 0x40000000, 3);
    e.words[e.i] = (e.words[e.i]! & ~2) >>> 0;
    const r = walk(new HwWalker(pgt), 0x40000000);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, 3, 0x07]);
  });

  it('a block at a level the granule does not allow is a translation fault', () => {
    // 4K, 48-bit IPA: start level 0; an L0 block needs DS = 1.
    const a = table(4096, 48);
    let e = entryRef(a.pgt, 0, 0);
    e.words[e.i] = 0x000007fd;
    let r = walk(new HwWalker(a.pgt), 0x1234);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, 0, 0x04]);
    // 16K, 48-bit IPA: start level 1; an L1 (64G) block needs DS = 1.
    const b = table(16384, 48);
    e = entryRef(b.pgt, 0, 1);
    e.words[e.i] = 0x000007fd;
    r = walk(new HwWalker(b.pgt), 0x1234);
    expect([r.fault, r.level, r.fsc]).toEqual([FAULT_TRANSLATION, 1, 0x05]);
    // With LPA2 the same L1 block translates.
    const c = table(16384, 48, { lpa2: true });
    e = entryRef(c.pgt, 0, 1);
    e.words[e.i] = 0x000004fd;
    r = walk(new HwWalker(c.pgt), 0x1234);
    expect([r.fault, r.level, r.pa]).toEqual([FAULT_NONE, 1, 0x1234]);
    // 64K: level-1 blocks only with 52-bit PA.
    const d = table(65536, 48);
    e = entryRef(d.pgt, 0, 1);
    e.words[e.i] = 0x000007fd;
    expect(walk(new HwWalker(d.pgt), 0x10).fault).toBe(FAULT_TRANSLATION);
    expect(walk(new HwWalker(d.pgt, { pa52: true }), 0x10).fault).toBe(FAULT_NONE);
  });

  it('archMinBlockLevel follows the architecture (4K: level 1, 16K/64K: level 2)', () => {
    expect([12, 14, 16].map((s) => archMinBlockLevel(s, false, false))).toEqual([1, 2, 2]);
    expect([12, 14].map((s) => archMinBlockLevel(s, true, false))).toEqual([0, 1]);
    expect(archMinBlockLevel(16, false, true)).toBe(1);
  });

  it('a table descriptor pointing outside the table pool is an external abort on the walk', () => {
    const { pgt } = table();
    const e = entryRef(pgt, 0x40000000, 1);
    e.words[e.i] = 0x00005003;
    const r = walk(new HwWalker(pgt), 0x40000000);
    expect([r.fault, r.level, r.fsc, r.lo]).toEqual([FAULT_EXTERNAL_ABORT, 2, 0x16, 0x5003]);
  });

  it('refuses to walk a destroyed table', () => {
    const { pgt } = table();
    pgt.destroy();
    expect(() => new HwWalker(pgt).walk(0, ACCESS_READ, new HwWalkResult())).toThrow(/destroyed/);
  });
});

describe('HwWalker: no side effects', () => {
  it('walks of every kind leave table pages, refcounts and events untouched', () => {
    const events = new CountingEvents();
    const { pgt, mc } = table(4096, 40, { events });
    pgt.map(0x40000000, 4 * K4, 0x80000000, KVM_PGTABLE_PROT_RWX, mc);
    pgt.map(0x40200000, M2, 0x80200000, KVM_PGTABLE_PROT_R, mc);
    pgt.map(0x80000000, G1, 0xc0000000, KVM_PGTABLE_PROT_RW, mc);
    pgt.testClearYoung(0x40000000, K4, true);
    pgt.testClearYoung(0x80000000, G1, true);
    events.reset();
    const pool = pgt.pool;
    const buffers = [...new Set(pool.pages.map((p) => p.buffer))].map((b) => new Uint32Array(b));
    const snapPages = buffers.map((b) => b.slice());
    const snapCounts = pool.pages.map((_, i) => pool.pageCount(i));
    const snapStats = [pool.inUse, pool.allocs, pool.frees];
    const walkers = [new HwWalker(pgt), new HwWalker(pgt, { ha: true })];
    const r = new HwWalkResult();
    let faults = 0;
    for (const w of walkers) {
      for (let ipa = 0x3fff0000; ipa < 0x40400000; ipa += 0x800) {
        for (const a of [ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC] as const) if (!w.walk(ipa, a, r)) faults++;
      }
      for (const ipa of [0x80000000, 0xbfffffff, 2 ** 40, 0]) w.walk(ipa, ACCESS_WRITE, r);
    }
    expect(faults).toBeGreaterThan(0);
    let changed = 0;
    buffers.forEach((b, n) => b.forEach((v, i) => (changed += v === snapPages[n]![i] ? 0 : 1)));
    expect(changed).toBe(0);
    expect(pool.pages.map((_, i) => pool.pageCount(i))).toEqual(snapCounts);
    expect([pool.inUse, pool.allocs, pool.frees]).toEqual(snapStats);
    expect(events.tlbi + events.dcacheCalls + events.icacheCalls).toBe(0);
  });

  it('one result object is fully overwritten: no field survives from the previous walk', () => {
    const { pgt, mc } = table();
    pgt.map(0x1000, K4, 0x2000, KVM_PGTABLE_PROT_RWX, mc);
    pgt.testClearYoung(0x1000, K4, true);
    const w = new HwWalker(pgt, { ha: true });
    const r = new HwWalkResult();
    expect(w.walk(0x1000, ACCESS_READ, r)).toBe(true);
    expect(r.afWouldBeSet).toBe(true);
    expect(w.walk(0x40000000, ACCESS_WRITE, r)).toBe(false);
    expect(r).toMatchObject({ ipa: 0x40000000, access: ACCESS_WRITE, pa: 0, memattr: 0, s2ap: 0, sh: 0 });
    expect(r).toMatchObject({ xn: false, afWouldBeSet: false, lo: 0, hi: 0 });
  });
});

describe('HwWalker.translate: final memory type', () => {
  it('combines the leaf with the stage-1 MAIR byte, with and without FWB', () => {
    for (const fwb of [false, true]) {
      const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb });
      const mc = MemCache.unlimited(pgt.pool);
      pgt.map(0x1000, K4, 0x2000, KVM_PGTABLE_PROT_RW, mc);
      const w = new HwWalker(pgt);
      const t = w.translate(0x1010, ACCESS_READ, MAIR_NORMAL_NC);
      expect(t.ok).toBe(true);
      if (!t.ok) continue;
      expect(t.pa).toBe(0x2010);
      expect(t.s2MemAttr).toBe(fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL);
      expect(t.s2Text).toBe('Normal-WB');
      // Guest NC wins without FWB; FWB forces write-back.
      expect(t.attr).toBe(fwb ? MAIR_NORMAL_WB : MAIR_NORMAL_NC);
      expect(t.sh).toBe(fwb ? SH_ISH : SH_OSH);
      expect(t.attrText).toBe(fwb ? 'Normal-WB' : 'Normal-NC');
      const dev = w.translate(0x1000, ACCESS_READ, MAIR_DEVICE_nGnRnE);
      expect(dev.ok && dev.attr).toBe(fwb ? MAIR_NORMAL_WB : MAIR_DEVICE_nGnRnE);
    }
  });

  it('returns the fault for a failing access', () => {
    const { pgt } = table();
    expect(new HwWalker(pgt).translate(0x1000, ACCESS_WRITE, MAIR_NORMAL_WB)).toEqual({
      ok: false,
      ipa: 0x1000,
      fault: FAULT_TRANSLATION,
      fsc: 0x05,
      level: 1,
    });
  });
});

// ---- property: every mapped page walks to the PA the model expects ----------------------

interface Leaf {
  ipa: number;
  size: number;
  pa: number;
  level: number;
}

/** The leaves kernel map() installs for [ipa, ipa+size) → pa (4K granule, blocks at L1/L2). */
function leavesFor(ipa: number, size: number, pa: number): Leaf[] {
  const out: Leaf[] = [];
  for (let a = ipa; a < ipa + size;) {
    const p = pa + (a - ipa);
    let leaf: Leaf = { ipa: a, size: K4, pa: p, level: 3 };
    for (const [s, level] of [
      [G1, 1],
      [M2, 2],
    ] as const) {
      if (a % s === 0 && p % s === 0 && ipa + size - a >= s) {
        leaf = { ipa: a, size: s, pa: p, level };
        break;
      }
    }
    out.push(leaf);
    a += leaf.size;
  }
  return out;
}

const overlaps = (l: Leaf, a: number, size: number): boolean => l.ipa < a + size && a < l.ipa + l.size;

const opArb = fc.oneof(
  fc.record({
    kind: fc.constant<'map'>('map'),
    unit: fc.constantFrom(K4, M2, G1),
    region: fc.integer({ min: 0, max: 3 }),
    idx: fc.integer({ min: 0, max: 7 }),
    count: fc.integer({ min: 1, max: 3 }),
    paUnit: fc.constantFrom(K4, M2, G1),
    paIdx: fc.integer({ min: 1, max: 200 }),
  }),
  fc.record({
    kind: fc.constant<'unmap'>('unmap'),
    unit: fc.constantFrom(K4, M2),
    region: fc.integer({ min: 0, max: 3 }),
    idx: fc.integer({ min: 0, max: 7 }),
    count: fc.integer({ min: 1, max: 3 }),
    paUnit: fc.constant(K4),
    paIdx: fc.constant(0),
  }),
);

describe('HwWalker: property', () => {
  it('after random map/unmap sequences every probe walks as the leaf model predicts', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (ops, seeds) => {
          const { pgt, mc } = table();
          let model: Leaf[] = [];
          const probes: number[] = [];
          for (const op of ops) {
            const ipa = op.region * G1 + op.idx * op.unit;
            const size = op.count * op.unit;
            // Keep 1G ranges from degenerating into 786k pages: a 1G op needs a 2M-aligned PA.
            const paUnit = op.unit === G1 ? Math.max(op.paUnit, M2) : Math.min(op.paUnit, op.unit);
            const pa = op.paIdx * paUnit;
            if (op.kind === 'map') {
              expect(pgt.map(ipa, size, pa, KVM_PGTABLE_PROT_RWX, mc)).toBe(0);
              for (const leaf of leavesFor(ipa, size, pa)) {
                // The kernel drops a whole block it breaks and a whole table it replaces.
                model = model.filter((l) => !overlaps(l, leaf.ipa, leaf.size));
                model.push(leaf);
              }
            } else {
              expect(pgt.unmap(ipa, size)).toBe(0);
              model = model.filter((l) => !overlaps(l, ipa, size));
            }
            probes.push(ipa, ipa + size - 1, ipa + size, ipa + size / 2 + 0x18);
          }
          const stride = Math.max(1, Math.floor(model.length / 64));
          for (let n = 0; n < model.length; n += stride) {
            const l = model[n]!;
            probes.push(l.ipa, l.ipa + l.size - 8, l.ipa + l.size);
          }
          for (const s of seeds) probes.push(s % (4 * G1));
          const w = new HwWalker(pgt);
          const r = new HwWalkResult();
          for (const ipa of probes) {
            const leaf = model.find((l) => ipa >= l.ipa && ipa < l.ipa + l.size);
            const ok = w.walk(ipa, ACCESS_WRITE, r);
            if (leaf) {
              expect(ok).toBe(true);
              expect([r.pa, r.level]).toEqual([leaf.pa + (ipa - leaf.ipa), leaf.level]);
            } else {
              expect(ok).toBe(false);
              expect(r.fault).toBe(FAULT_TRANSLATION);
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
