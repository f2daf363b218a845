import { describe, it, expect } from 'vitest';
import {
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW1,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  hex64,
  hexAddr,
  pteIsLocked,
} from '../src/pgtable/descriptor.js';
import { EAGAIN, EINVAL, ENOMEM, ERANGE } from '../src/pgtable/errno.js';
import { MemCache, TLBI_TTL_UNKNOWN, TablePool } from '../src/pgtable/pool.js';
import type { Stage2Events } from '../src/pgtable/pool.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';
import type { Stage2Options } from '../src/pgtable/stage2.js';
import { KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED } from '../src/pgtable/walker.js';
import { auditStage2, collectLeaves } from '../src/pgtable/audit.js';

const R = KVM_PGTABLE_PROT_R;
const W = KVM_PGTABLE_PROT_W;
const X = KVM_PGTABLE_PROT_X;
const RW = R | W;
const RWX = R | W | X;
const DEVICE = KVM_PGTABLE_PROT_DEVICE;
const NC = KVM_PGTABLE_PROT_NORMAL_NC;
const FAULT = KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED;
const M2 = 0x200000;
const G1 = 0x40000000;

const lvl = (l: number): string => (l === TLBI_TTL_UNKNOWN ? 'unknown' : String(l));

/** A Stage2Events that records one string per call, in order. */
function recorder(log: string[], probe?: (what: string) => void): Stage2Events {
  const push = (s: string): void => {
    log.push(s);
    probe?.(s);
  };
  return {
    tlbiVmidIpa: (op) => push(`tlbi ipa ${hexAddr(op.addr)} ${lvl(op.level)}`),
    tlbiVmidIpaNsh: (op) => push(`tlbi nsh ${hexAddr(op.addr)} ${lvl(op.level)}`),
    tlbiVmidRange: (op) => push(`tlbi range ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    tlbiVmid: () => push('tlbi vmid'),
    dcacheCleanInvalPoc: (op) => push(`dcache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    icacheInvalPou: (op) => push(`icache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
  };
}

interface Setup {
  pgt: Stage2PageTable;
  log: string[];
  mc: MemCache;
  /** The descriptor covering `ipa`, as hex, and its level. */
  at(ipa: number): { desc: string; level: number };
}

function setup(opts: Partial<Stage2Options> = {}, probe?: (s: string, t: Setup) => void): Setup {
  const log: string[] = [];
  const t = {} as Setup;
  const pgt = new Stage2PageTable({
    granule: 4096,
    ipaBits: 40,
    fwb: false,
    events: recorder(log, probe ? (s) => probe(s, t) : undefined),
    ...opts,
  });
  const r = new LeafResult();
  Object.assign(t, {
    pgt,
    log,
    mc: MemCache.unlimited(pgt.pool),
    at(ipa: number) {
      expect(pgt.getLeaf(ipa, r)).toBe(0);
      return { desc: hex64(r.lo, r.hi), level: r.level };
    },
  });
  return t;
}

const ZERO = '0x0000000000000000';

describe('map: break-before-make', () => {
  it('replacing a valid page: TLBI, then the CMOs, then the new entry', () => {
    const seen: string[] = [];
    const t = setup({}, (s, t) => seen.push(`${s} | entry ${t.at(0x1000).desc}`));
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc)).toBe(0);
    // Filling an invalid entry: no TLBI, only the clean of the new (cacheable) page.
    expect(t.log).toEqual(['dcache 0x0000000080000000 0x0000000000001000']);
    t.log.length = 0;
    seen.length = 0;
    expect(t.pgt.map(0x1000, 0x1000, 0x90000000, RWX, t.mc)).toBe(0);
    expect(t.log).toEqual([
      'tlbi ipa 0x0000000000001000 3',
      'dcache 0x0000000090000000 0x0000000000001000',
      'icache 0x0000000090000000 0x0000000000001000',
    ]);
    // During every event the entry is LOCKED (0x400): the new value is not yet visible.
    for (const s of seen) expect(s).toMatch(/entry 0x0000000000000400$/);
    expect(seen).toHaveLength(3);
    expect(t.at(0x1000).desc).toBe('0x00000000900007ff');
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('a remap that changes only permissions does nothing; memory type or PA changes go through BBM', () => {
    const t = setup();
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, R, t.mc)).toBe(0);
    t.log.length = 0;
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RWX, t.mc)).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.at(0x1000).desc).toBe('0x004000008000077f');
    // Same with the fault-path flags: the −EAGAIN is returned.
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RWX, t.mc, FAULT)).toBe(EAGAIN);
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, R, t.mc, FAULT)).toBe(EAGAIN);
    expect(t.log).toEqual([]);
    // A memory-type change is not permission-only.
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, R | DEVICE, t.mc, FAULT)).toBe(0);
    expect(t.log).toEqual(['tlbi ipa 0x0000000000001000 3']);
    expect(t.at(0x1000).desc).toBe('0x0040000080000747');
  });

  it('a remap over an old (AF clear) leaf is not permission-only: it installs the new permissions', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, R, t.mc);
    expect(t.pgt.testClearYoung(0x1000, 0x1000, true)).toBe(true);
    t.log.length = 0;
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc, FAULT)).toBe(0);
    expect(t.log).toEqual(['tlbi ipa 0x0000000000001000 3', 'dcache 0x0000000080000000 0x0000000000001000']);
    expect(t.at(0x1000).desc).toBe('0x00400000800007ff');
  });

  it('a software-bit-only change is stored without BBM (exclusive walk)', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    t.log.length = 0;
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW | KVM_PGTABLE_PROT_SW1, t.mc)).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.at(0x1000).desc).toBe('0x01400000800007ff');
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('pages inside a block: the whole block goes (TLBI at the map address, block level)', () => {
    const t = setup();
    expect(t.pgt.map(M2, M2, 0x40200000, RW, t.mc)).toBe(0);
    expect(t.at(M2 + 0x5000).level).toBe(2);
    t.log.length = 0;
    expect(t.pgt.map(M2 + 0x3000, 0x2000, 0x50000000, R, t.mc)).toBe(0);
    expect(t.log).toEqual([
      'tlbi ipa 0x0000000000203000 2',
      'dcache 0x0000000050000000 0x0000000000001000',
      'dcache 0x0000000050001000 0x0000000000001000',
    ]);
    // Only the new pages are mapped; the rest of the old block is gone.
    expect(collectLeaves(t.pgt).map((l) => [l.ipa, l.level, l.pa])).toEqual([
      [M2 + 0x3000, 3, 0x50000000],
      [M2 + 0x4000, 3, 0x50001000],
    ]);
    expect(t.at(M2).desc).toBe(ZERO);
    expect(t.at(M2).level).toBe(3);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('a block over a table: one range TLBI, the block CMOs, then the old subtree is freed', () => {
    const seen: number[] = [];
    const t = setup({}, (_s, t) => seen.push(t.pgt.pool.inUse));
    for (let i = 0; i < 4; i++) t.pgt.map(M2 + i * 0x1000, 0x1000, 0x80000000 + i * 0x1000, RW, t.mc);
    // PGD (2) + L2 table + L3 table.
    expect(t.pgt.pool.inUse).toBe(4);
    t.log.length = 0;
    seen.length = 0;
    expect(t.pgt.map(M2, M2, 0x40200000, RWX, t.mc)).toBe(0);
    expect(t.log).toEqual([
      'tlbi range 0x0000000000200000 0x0000000000200000',
      'dcache 0x0000000040200000 0x0000000000200000',
      'icache 0x0000000040200000 0x0000000000200000',
    ]);
    // The L3 table is still allocated while the TLBI and CMOs run; freed afterwards.
    expect(seen).toEqual([4, 4, 4]);
    expect(t.pgt.pool.inUse).toBe(3);
    expect(t.at(M2 + 0x1000)).toEqual({ desc: '0x00000000402007fd', level: 2 });
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('without FEAT_TLBIRANGE the table-to-block break is a whole-VMID TLBI', () => {
    const t = setup({ tlbiRange: false });
    t.pgt.map(M2, 0x1000, 0x80000000, RW, t.mc);
    t.log.length = 0;
    t.pgt.map(M2, M2, 0x40200000, RW, t.mc);
    expect(t.log[0]).toBe('tlbi vmid');
    expect(t.log.filter((s) => s.startsWith('tlbi'))).toEqual(['tlbi vmid']);
  });

  it('DEVICE and NORMAL_NC maps have no dcache; FWB still calls the (no-op) host callback', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW | DEVICE, t.mc);
    t.pgt.map(0x2000, 0x1000, 0x80000000, RW | NC, t.mc);
    expect(t.log).toEqual([]);
    const f = setup({ fwb: true });
    f.pgt.map(0x1000, 0x1000, 0x80000000, RW, f.mc);
    expect(f.log).toEqual(['dcache 0x0000000080000000 0x0000000000001000']);
  });

  it('blocks only where IPA and PA are aligned and a whole block remains', () => {
    const t = setup();
    // IPA aligned, PA not: pages.
    t.pgt.map(M2, M2, 0x40201000, RW, t.mc);
    expect(t.at(M2).level).toBe(3);
    // A 2M + 4K range at an aligned address: one block, one page.
    t.pgt.map(0x600000, M2 + 0x1000, 0x40600000, RW, t.mc);
    expect(
      collectLeaves(t.pgt)
        .filter((l) => l.ipa >= 0x600000)
        .map((l) => [l.ipa, l.level]),
    ).toEqual([
      [0x600000, 2],
      [0x800000, 3],
    ]);
    // 1 GiB aligned: a level-1 block.
    t.pgt.map(G1, G1, 0x80000000, RW, t.mc);
    expect(t.at(G1 + 0x1234).level).toBe(1);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('a walk covers [ALIGN_DOWN(ipa), PAGE_ALIGN(ALIGN_DOWN(ipa) + size))', () => {
    const t = setup();
    // 0x1800 + 0x1000 would end at 0x2800 (two pages), but the walk ends at 0x2000.
    t.pgt.map(0x1800, 0x1000, 0x80000000, RW, t.mc);
    expect(collectLeaves(t.pgt).map((l) => l.ipa)).toEqual([0x1000]);
    t.pgt.map(0x5800, 0x1001, 0x90000000, RW, t.mc);
    expect(collectLeaves(t.pgt).map((l) => [l.ipa, l.pa])).toEqual([
      [0x1000, 0x80000000],
      [0x5000, 0x90000000],
      [0x6000, 0x90001000],
    ]);
  });

  it('out of the IPA space: −ERANGE', () => {
    const t = setup();
    expect(t.pgt.map(2 ** 40 - 0x1000, 0x2000, 0x80000000, RW, t.mc)).toBe(ERANGE);
    expect(t.pgt.unmap(2 ** 40, 0x1000)).toBe(ERANGE);
    expect(t.pgt.getLeaf(2 ** 40)).toBe(ERANGE);
    expect(t.pgt.pool.inUse).toBe(2);
  });
});

describe('unmap', () => {
  function mapSome(t: Setup): void {
    for (let i = 1; i <= 3; i++) t.pgt.map(i * 0x1000, 0x1000, 0x80000000 + i * 0x1000, RW, t.mc);
    t.pgt.map(0x10000, 0x1000, 0x90000000, RW | DEVICE, t.mc);
    t.log.length = 0;
  }

  it('without FWB: a TLBI per leaf, a dcache per cacheable leaf, then empty tables are pruned', () => {
    const t = setup();
    mapSome(t);
    expect(t.pgt.unmap(0x1000, 0x10000)).toBe(0);
    expect(t.log).toEqual([
      'tlbi ipa 0x0000000000001000 3',
      'dcache 0x0000000080001000 0x0000000000001000',
      'tlbi ipa 0x0000000000002000 3',
      'dcache 0x0000000080002000 0x0000000000001000',
      'tlbi ipa 0x0000000000003000 3',
      'dcache 0x0000000080003000 0x0000000000001000',
      'tlbi ipa 0x0000000000010000 3',
      // The L3 table (L2 entry) and the L2 table (PGD entry), at the address where the
      // walk entered each entry, with no level hint.
      'tlbi ipa 0x0000000000001000 unknown',
      'tlbi ipa 0x0000000000001000 unknown',
    ]);
    expect(t.pgt.pool.inUse).toBe(2);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('with FWB and TLBIRANGE: leaf TLBIs deferred to one range TLBI over the raw range', () => {
    const t = setup({ fwb: true });
    mapSome(t);
    // The walk covers [0x1000, 0x11000); the deferred TLBI uses the raw 0x1800 + 0x10000.
    expect(t.pgt.unmap(0x1800, 0x10000)).toBe(0);
    expect(t.log).toEqual([
      'tlbi ipa 0x0000000000001000 unknown',
      'tlbi ipa 0x0000000000001000 unknown',
      'tlbi range 0x0000000000001800 0x0000000000010000',
    ]);
    expect(collectLeaves(t.pgt)).toEqual([]);
  });

  it('with FWB the deferred TLBI is issued even when the walk fails with −ERANGE', () => {
    const t = setup({ fwb: true });
    expect(t.pgt.unmap(2 ** 40 - 0x1000, 0x2000)).toBe(ERANGE);
    expect(t.log).toEqual(['tlbi range 0x000000fffffff000 0x0000000000002000']);
  });

  it('with FWB but no TLBIRANGE: per-leaf TLBIs (no deferral)', () => {
    const t = setup({ fwb: true, tlbiRange: false });
    mapSome(t);
    t.pgt.unmap(0x1000, 0x2000);
    expect(t.log).toEqual(['tlbi ipa 0x0000000000001000 3', 'tlbi ipa 0x0000000000002000 3']);
  });

  it('a partial range removes whole blocks, and keeps tables that still hold entries', () => {
    const t = setup();
    t.pgt.map(M2, M2, 0x40200000, RW, t.mc);
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    t.log.length = 0;
    expect(t.pgt.unmap(M2 + 0x1000, 0x1000)).toBe(0);
    expect(t.log).toEqual(['tlbi ipa 0x0000000000201000 2', 'dcache 0x0000000040200000 0x0000000000200000']);
    expect(collectLeaves(t.pgt).map((l) => l.ipa)).toEqual([0x1000]);
    expect(t.pgt.pool.inUse).toBe(4);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('clears owner annotations and drops their references', () => {
    const t = setup();
    expect(t.pgt.setOwner(0x4000, 0x2000, t.mc, 1)).toBe(0);
    expect(t.at(0x4000).desc).toBe('0x0000000000000004');
    expect(auditStage2(t.pgt)).toEqual([]);
    expect(t.pgt.unmap(0, M2)).toBe(0);
    expect(t.pgt.pool.inUse).toBe(2);
    expect(auditStage2(t.pgt)).toEqual([]);
    expect(t.pgt.setOwner(0x4000, 0x1000, t.mc, 2)).toBe(EINVAL);
  });
});

describe('attribute updates', () => {
  it('relax on a hole returns −EAGAIN (HANDLE_FAULT) and still issues the nsh TLBI with level 0', () => {
    const t = setup();
    expect(t.pgt.relaxPerms(0x5123, RW, FAULT)).toBe(EAGAIN);
    expect(t.log).toEqual(['tlbi nsh 0x0000000000005123 0']);
  });

  it('relax adds permissions, TLBIs at the raw IPA and the leaf level, icache when X is added', () => {
    const t = setup();
    t.pgt.map(M2, M2, 0x40200000, R, t.mc);
    t.log.length = 0;
    expect(t.pgt.relaxPerms(M2 + 0x1234, W, FAULT)).toBe(0);
    expect(t.log).toEqual(['tlbi nsh 0x0000000000201234 2']);
    expect(t.at(M2).desc).toBe('0x00400000402007fd');
    t.log.length = 0;
    expect(t.pgt.relaxPerms(M2, X, FAULT)).toBe(0);
    expect(t.log).toEqual(['icache 0x0000000040200000 0x0000000000200000', 'tlbi nsh 0x0000000000200000 2']);
    expect(t.at(M2).desc).toBe('0x00000000402007fd');
    // Nothing to change: still a TLBI. R/W are never removed.
    t.log.length = 0;
    expect(t.pgt.relaxPerms(M2, R, FAULT)).toBe(0);
    expect(t.log).toEqual(['tlbi nsh 0x0000000000200000 2']);
    expect(t.at(M2).desc).toBe('0x00000000402007fd');
    // Software bits: −EINVAL before anything.
    t.log.length = 0;
    expect(t.pgt.relaxPerms(M2, R | KVM_PGTABLE_PROT_SW1, FAULT)).toBe(EINVAL);
    expect(t.log).toEqual([]);
  });

  it('relax does not look at the memory type: a DEVICE leaf can be made executable', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW | DEVICE, t.mc);
    expect(t.pgt.relaxPerms(0x1000, X, FAULT)).toBe(0);
    expect(t.at(0x1000).desc).toBe('0x00000000800007c7');
  });

  it('wrprotect clears W on every leaf in range with no TLBI; holes are skipped', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    t.pgt.map(M2, M2, 0x40200000, RWX, t.mc);
    t.log.length = 0;
    expect(t.pgt.wrprotect(0, 2 * M2)).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.at(0x1000).desc).toBe('0x004000008000077f');
    expect(t.at(M2).desc).toBe('0x000000004020077d');
  });

  it('mkold / mkyoung toggle AF without TLBI; test_clear_young reports youth', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    t.log.length = 0;
    expect(t.pgt.testClearYoung(0, M2, false)).toBe(true);
    expect(t.at(0x1000).desc).toBe('0x00400000800007ff');
    expect(t.pgt.testClearYoung(0, M2, true)).toBe(true);
    expect(t.at(0x1000).desc).toBe('0x00400000800003ff');
    expect(t.pgt.testClearYoung(0, M2, true)).toBe(false);
    t.pgt.mkyoung(0x1fff, FAULT);
    expect(t.at(0x1000).desc).toBe('0x00400000800007ff');
    expect(t.log).toEqual([]);
  });

  it('flush: dcache per cacheable leaf without FWB; nothing at all with FWB', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    t.pgt.map(0x2000, 0x1000, 0x80001000, RW | NC, t.mc);
    t.pgt.map(M2, M2, 0x40200000, RW, t.mc);
    t.log.length = 0;
    expect(t.pgt.flush(0, 2 * M2)).toBe(0);
    expect(t.log).toEqual([
      'dcache 0x0000000080000000 0x0000000000001000',
      'dcache 0x0000000040200000 0x0000000000200000',
    ]);
    expect(t.pgt.flush(2 ** 40, 0x1000)).toBe(ERANGE);
    const f = setup({ fwb: true });
    f.pgt.map(0x1000, 0x1000, 0x80000000, RW, f.mc);
    f.log.length = 0;
    expect(f.pgt.flush(0, M2)).toBe(0);
    expect(f.pgt.flush(2 ** 41, 0x1000)).toBe(0);
    expect(f.log).toEqual([]);
  });
});

describe('split', () => {
  it('rebuilds a block as Normal WB pages with AF set, keeping R/W/X (W stays cleared)', () => {
    for (const fwb of [false, true]) {
      const t = setup({ fwb });
      t.pgt.map(M2, M2, 0x40200000, RW | DEVICE, t.mc);
      t.pgt.wrprotect(M2, M2);
      t.pgt.testClearYoung(M2, M2, true);
      expect(t.at(M2).desc).toBe('0x0040000040200345');
      t.log.length = 0;
      expect(t.pgt.split(M2 + 0x3000, 0x1000, t.mc)).toBe(0);
      // One TLBI at the page-aligned split start and the block level; no CMOs.
      expect(t.log).toEqual(['tlbi ipa 0x0000000000203000 2']);
      const leaves = collectLeaves(t.pgt);
      expect(leaves).toHaveLength(512);
      const normal = fwb ? 0x6 : 0xf;
      leaves.forEach((l, i) => {
        expect(l.ipa).toBe(M2 + i * 0x1000);
        expect(l.pa).toBe(0x40200000 + i * 0x1000);
        expect(l.level).toBe(3);
        // R, no W, AF, SH inner, MemAttr normal, page type; XN kept.
        expect(l.lo >>> 0).toBe((0x40200000 + i * 0x1000 + 0x400 + 0x300 + 0x40 + (normal << 2) + 3) >>> 0);
        expect(l.hi).toBe(0x00400000);
      });
      expect(auditStage2(t.pgt)).toEqual([]);
    }
  });

  it('an executable RW 1 GiB block becomes 513 tables of pages with an unlimited cache', () => {
    const t = setup();
    t.pgt.map(G1, G1, 0x80000000, RWX | KVM_PGTABLE_PROT_SW1, t.mc);
    t.log.length = 0;
    const before = t.pgt.pool.inUse;
    expect(t.pgt.split(G1, G1, t.mc)).toBe(0);
    expect(t.log).toEqual(['tlbi ipa 0x0000000040000000 1']);
    expect(t.pgt.pool.inUse - before).toBe(513);
    const leaves = collectLeaves(t.pgt);
    expect(leaves).toHaveLength(512 * 512);
    expect(hex64(leaves[0]!.lo, leaves[0]!.hi)).toBe('0x01000000800007ff');
    expect(leaves[512 * 512 - 1]!.pa).toBe(0x80000000 + G1 - 0x1000);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('a small memcache splits one level at a time, then −ENOMEM stops the walk', () => {
    const t = setup();
    t.pgt.map(G1, G1, 0x80000000, RW, t.mc);
    const mc = new MemCache(t.pgt.pool, 5);
    expect(mc.topup(5)).toBe(0);
    t.log.length = 0;
    expect(t.pgt.split(G1, G1, mc)).toBe(ENOMEM);
    // The L1 block became a table of L2 blocks (one page); four of them became pages.
    expect(t.log).toEqual([
      'tlbi ipa 0x0000000040000000 1',
      'tlbi ipa 0x0000000040000000 2',
      'tlbi ipa 0x0000000040200000 2',
      'tlbi ipa 0x0000000040400000 2',
      'tlbi ipa 0x0000000040600000 2',
    ]);
    expect(mc.nobjs).toBe(0);
    const leaves = collectLeaves(t.pgt);
    expect(leaves.filter((l) => l.level === 3)).toHaveLength(4 * 512);
    expect(leaves.filter((l) => l.level === 2)).toHaveLength(508);
    // The mapping is unchanged: every leaf maps IPA − 1G + 0x80000000.
    for (const l of leaves) expect(l.pa - l.ipa).toBe(0x80000000 - G1);
    expect(auditStage2(t.pgt, { memcacheHeld: mc.nobjs })).toEqual([]);
  });

  it('an empty memcache: −ENOMEM, nothing changed, no events', () => {
    const t = setup();
    t.pgt.map(M2, M2, 0x40200000, RW, t.mc);
    t.log.length = 0;
    const mc = new MemCache(t.pgt.pool, 4);
    expect(t.pgt.split(M2, M2, mc)).toBe(ENOMEM);
    expect(t.log).toEqual([]);
    expect(t.at(M2)).toEqual({ desc: '0x00400000402007fd', level: 2 });
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('pages and holes are left alone', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    t.log.length = 0;
    const inUse = t.pgt.pool.inUse;
    expect(t.pgt.split(0, 4 * M2, t.mc)).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.pgt.pool.inUse).toBe(inUse);
  });

  it('a pool failure inside create_unlinked frees the partial subtree and keeps the block', () => {
    const t = setup();
    t.pgt.map(G1, G1, 0x80000000, RW, t.mc);
    const inUse = t.pgt.pool.inUse;
    t.pgt.pool.limit = inUse + 10;
    t.log.length = 0;
    expect(t.pgt.split(G1, G1, t.mc)).toBe(ENOMEM);
    expect(t.log).toEqual([]);
    expect(t.pgt.pool.inUse).toBe(inUse);
    expect(t.at(G1)).toEqual({ desc: '0x00400000800007fd', level: 1 });
    expect(auditStage2(t.pgt)).toEqual([]);
  });
});

describe('memcache and pool exhaustion', () => {
  it('no memcache: −ENOMEM before any table exists', () => {
    const t = setup();
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, null)).toBe(ENOMEM);
    expect(t.pgt.pool.inUse).toBe(2);
    expect(t.log).toEqual([]);
    // A block at the start level needs no table.
    expect(t.pgt.map(G1, G1, 0x80000000, RW, null)).toBe(0);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('a memcache that runs dry: −ENOMEM, no leaf, no half-built entry, no leaked page', () => {
    const t = setup();
    const mc = new MemCache(t.pgt.pool, 1);
    expect(mc.topup(1)).toBe(0);
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, mc)).toBe(ENOMEM);
    expect(collectLeaves(t.pgt)).toEqual([]);
    expect(auditStage2(t.pgt, { memcacheHeld: mc.nobjs })).toEqual([]);
    // The empty L2 table KVM leaves behind is pruned by the next unmap.
    expect(t.pgt.pool.inUse).toBe(3);
    t.pgt.unmap(0, M2);
    expect(t.pgt.pool.inUse).toBe(2);
    // Refilled, the same map succeeds.
    expect(mc.topup(1)).toBe(0);
    const mc2 = new MemCache(t.pgt.pool, 2);
    expect(mc2.topup(2)).toBe(0);
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, mc2)).toBe(0);
    expect(auditStage2(t.pgt, { memcacheHeld: mc.nobjs + mc2.nobjs })).toEqual([]);
    mc.free();
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('the pool limit models allocation failure', () => {
    const t = setup();
    t.pgt.pool.limit = 3;
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc)).toBe(ENOMEM);
    expect(t.pgt.pool.inUse).toBe(3);
    expect(collectLeaves(t.pgt)).toEqual([]);
    expect(auditStage2(t.pgt)).toEqual([]);
    // A topup cannot fill a cache past the limit.
    const mc = new MemCache(t.pgt.pool, 4);
    expect(mc.topup(1)).toBe(ENOMEM);
    t.pgt.pool.limit = Infinity;
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc)).toBe(0);
    expect(t.pgt.pool.inUse).toBe(4);
  });
});

describe('create_unlinked / free_unlinked', () => {
  it('a level-1 subtree of 512 blocks: root refcount 513, one page; no TLBI, no CMO', () => {
    const t = setup();
    const before = t.pgt.pool.inUse;
    const root = t.pgt.createUnlinked(0x80000000, 1, RWX, t.mc, false);
    expect(root).toBeGreaterThanOrEqual(0);
    expect(t.pgt.pool.pageCount(root)).toBe(513);
    expect(t.pgt.pool.inUse).toBe(before + 1);
    const w = t.pgt.pool.pages[root]!;
    expect(hex64(w[0]!, w[1]!)).toBe('0x00000000800007fd');
    expect(hex64(w[2 * 511]!, w[2 * 511 + 1]!)).toBe('0x00000000bfe007fd');
    expect(t.log).toEqual([]);
    t.pgt.freeUnlinked(root, 1);
    expect(t.pgt.pool.inUse).toBe(before);
  });

  it('force_pte: 1 + 512 tables, each with refcount 513; free_unlinked frees them all', () => {
    const t = setup();
    const before = t.pgt.pool.inUse;
    const root = t.pgt.createUnlinked(0x80000000, 1, RW, t.mc, true);
    expect(t.pgt.pool.inUse).toBe(before + 513);
    expect(t.pgt.pool.pageCount(root)).toBe(513);
    const w = t.pgt.pool.pages[root]!;
    const child = t.pgt.pool.pageOf(t.pgt.layout.toPhys(w[2]!, w[3]!));
    expect(t.pgt.pool.pageCount(child)).toBe(513);
    const cw = t.pgt.pool.pages[child]!;
    // Entry 1 of the root covers [2M, 4M); its last page maps PA 0x80000000 + 4M − 4K.
    expect(hex64(cw[2 * 511]!, cw[2 * 511 + 1]!)).toBe('0x00400000803ff7ff');
    expect(t.log).toEqual([]);
    t.pgt.freeUnlinked(root, 1);
    expect(t.pgt.pool.inUse).toBe(before);
  });

  it('errors: misaligned PA, no memcache, bad prot', () => {
    const t = setup();
    const allocs = t.pgt.pool.allocs;
    expect(t.pgt.createUnlinked(0x80001000, 2, RW, t.mc, false)).toBe(EINVAL);
    expect(t.pgt.createUnlinked(0x80000000, 2, RW, null, false)).toBe(ENOMEM);
    expect(t.pgt.createUnlinked(0x80000000, 2, RW | NC | X, t.mc, false)).toBe(EINVAL);
    expect(t.pgt.pool.allocs).toBe(allocs);
  });
});

describe('destroy', () => {
  it('frees every table and the PGD (pool.inUse back to 0), with no TLBI', () => {
    for (const granule of [4096, 16384, 65536] as const) {
      const t = setup({ granule, ipaBits: granule === 65536 ? 44 : 40 });
      const ps = granule;
      const block = t.pgt.geo.granuleSize(2);
      t.pgt.map(0, 5 * ps, 0x80000000, RW, t.mc);
      t.pgt.map(block, block, 0x80000000 + block * 4, RWX, t.mc);
      t.pgt.map(2 ** 35 + 7 * ps, 3 * ps, 0x90000000, R | DEVICE, t.mc);
      t.pgt.setOwner(2 ** 36, ps, t.mc, 1);
      expect(t.pgt.pool.inUse).toBeGreaterThan(t.pgt.geo.pgdPages);
      expect(auditStage2(t.pgt)).toEqual([]);
      t.log.length = 0;
      t.pgt.destroy();
      expect(t.pgt.pool.inUse).toBe(0);
      expect(t.pgt.pgd).toBe(-1);
      expect(t.log).toEqual([]);
      expect(t.pgt.getLeaf(0)).toBe(EINVAL);
      expect(auditStage2(t.pgt)).toEqual([]);
      t.pgt.destroy();
      expect(t.pgt.pool.inUse).toBe(0);
    }
  });
});

describe('HANDLE_FAULT | SHARED', () => {
  it('an identical fault map returns −EAGAIN; flags 0 swallow it', () => {
    const t = setup();
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc, FAULT)).toBe(0);
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc, FAULT)).toBe(EAGAIN);
    expect(t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc, 0)).toBe(0);
  });

  it('a LOCKED entry makes a fault map return −EAGAIN (someone else is mid-BBM)', () => {
    const t = setup();
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    const l3 = tablePage(t.pgt, 0x1000);
    const w = t.pgt.pool.pages[l3]!;
    w[2 * 2] = 0x400; // entry for 0x2000
    t.pgt.pool.getPage(l3);
    expect(pteIsLocked(w[4]!)).toBe(true);
    t.log.length = 0;
    expect(t.pgt.map(0x2000, 0x1000, 0x90000000, RW, t.mc, FAULT)).toBe(EAGAIN);
    expect(t.log).toEqual([]);
    expect(w[4]).toBe(0x400);
  });
});

/** The pool index of the table at `level` holding the entry for `ipa` (following table pointers). */
function tablePage(pgt: Stage2PageTable, ipa: number, level = 3): number {
  let page = pgt.pgd + pgt.geo.pgdPageIndex(ipa);
  for (let l = pgt.geo.startLevel; l < level; l++) {
    const w = pgt.pool.pages[page]!;
    const i = pgt.geo.index(ipa, l);
    page = pgt.pool.pageOf(pgt.layout.toPhys(w[2 * i]!, w[2 * i + 1]!));
  }
  return page;
}

describe('auditStage2 finds each kind of corruption', () => {
  function built(): Setup {
    const t = setup();
    t.pgt.map(0x1000, 0x2000, 0x80000000, RW, t.mc);
    t.pgt.map(M2, M2, 0x40200000, RW, t.mc);
    expect(auditStage2(t.pgt)).toEqual([]);
    return t;
  }

  it('a refcount that does not match the counted entries', () => {
    const t = built();
    const l3 = tablePage(t.pgt, 0x1000);
    t.pgt.pool.getPage(l3);
    expect(auditStage2(t.pgt)).toEqual([
      `table page ${l3} (L3 at IPA 0x0000000000000000): refcount 4, expected 1 + 2 counted entries = 3`,
    ]);
  });

  it('a LOCKED entry left behind', () => {
    const t = built();
    const l3 = tablePage(t.pgt, 0x1000);
    t.pgt.pool.pages[l3]![2 * 5] = 0x400;
    t.pgt.pool.getPage(l3);
    expect(auditStage2(t.pgt)).toEqual([
      'L3 entry at IPA 0x0000000000005000: LOCKED entry 0x0000000000000400 left behind (break without make)',
    ]);
  });

  it('a block whose output address is not aligned to its size', () => {
    const t = built();
    const l2 = tablePage(t.pgt, 0x1000, 2);
    const w = t.pgt.pool.pages[l2]!;
    expect(w[2] & 3).toBe(1);
    w[2] = (w[2]! + 0x1000) >>> 0;
    const r = auditStage2(t.pgt);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatch(
      /L2 entry at IPA 0x0000000000200000: output address 0x0000000040201000 is not aligned/,
    );
  });

  it('a block below the lowest block level, and a level-3 block encoding', () => {
    const t = setup({ ipaBits: 48 });
    t.pgt.map(0x1000, 0x1000, 0x80000000, RW, t.mc);
    // A level-0 block (512 GiB at PA 0) in PGD entry 1.
    const pgd = t.pgt.pool.pages[t.pgt.pgd]!;
    pgd[2] = 0x7fd;
    t.pgt.pool.getPage(t.pgt.pgd);
    const l3 = tablePage(t.pgt, 0x1000);
    t.pgt.pool.pages[l3]![2]! &= ~2;
    // Reported in IPA order.
    expect(auditStage2(t.pgt)).toEqual([
      'L3 entry at IPA 0x0000000000001000: reserved block encoding 0x00400000800007fd at level 3',
      'L0 entry at IPA 0x0000008000000000: block 0x00000000000007fd at level 0, below the lowest block level 1',
    ]);
  });

  it('a leaf outside the IPA space (4K/36: the PGD page spans 512 GiB)', () => {
    const t = setup({ ipaBits: 36 });
    const pgd = t.pgt.pool.pages[t.pgt.pgd]!;
    pgd[2 * 64] = 0x7fd; // L1 entry 64 = IPA 64 GiB = 2^36
    t.pgt.pool.getPage(t.pgt.pgd);
    expect(auditStage2(t.pgt)).toEqual([
      'L1 entry at IPA 0x0000001000000000: leaf [0x0000001000000000, +0x0000000040000000) lies outside the IPA space [0, 2^36)',
    ]);
  });

  it('a table pointer outside the pool, to a free page, or to a page reachable twice', () => {
    const t = built();
    const pgd = t.pgt.pool.pages[t.pgt.pgd]!;
    const l2 = t.pgt.pool.pageOf(t.pgt.layout.toPhys(pgd[0]!, pgd[1]!));
    // PGD entries 1, 2, 3: outside the arena, a free page, the same L2 table again.
    pgd[2] = 0x80000003;
    pgd[4] = ((t.pgt.pool.phys(t.pgt.pool.capacity - 1) % 2 ** 32) + 3) >>> 0;
    pgd[5] = 0x1000;
    pgd[6] = pgd[0]!;
    pgd[7] = pgd[1]!;
    for (let i = 0; i < 3; i++) t.pgt.pool.getPage(t.pgt.pgd);
    expect(l2).toBeGreaterThan(0);
    const r = auditStage2(t.pgt);
    expect(r).toEqual([
      'L1 entry at IPA 0x0000000040000000: table pointer 0x0000000080000000 outside the table pool',
      `L1 entry at IPA 0x0000000080000000: table pointer ${hexAddr(t.pgt.pool.phys(t.pgt.pool.capacity - 1))} to a free page`,
      `L1 entry at IPA 0x00000000c0000000: table pointer ${hexAddr(t.pgt.pool.phys(l2))} to a table page reachable twice`,
    ]);
    expect(collectLeaves(t.pgt)).toHaveLength(3);
  });

  it('a table descriptor with extra bits', () => {
    const t = built();
    t.pgt.pool.pages[t.pgt.pgd]![0]! |= 0x400;
    expect(auditStage2(t.pgt)).toEqual([
      'L1 entry at IPA 0x0000000000000000: table descriptor 0x0000100000002403 has bits other than its address and type',
    ]);
  });

  it('leaked pages, and pages the memcache accounts for', () => {
    const t = built();
    t.pgt.pool.allocPage();
    expect(auditStage2(t.pgt)).toEqual([
      'pool has 5 pages in use, expected 4 reachable table pages + 0 held by the memcache = 4 (1 leaked)',
    ]);
    expect(auditStage2(t.pgt, { memcacheHeld: 1 })).toEqual([]);
    expect(auditStage2(t.pgt, { memcacheHeld: 2 })).toHaveLength(1);
  });

  it('pages of another table in the same pool are unaccounted unless passed as held', () => {
    const pool = new TablePool(4096);
    const a = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, pool });
    const b = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, pool });
    expect(auditStage2(a, { memcacheHeld: b.geo.pgdPages })).toEqual([]);
    expect(auditStage2(a)).toHaveLength(1);
  });
});
