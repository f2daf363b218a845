// stage2_map_walker_try_leaf()'s software-bits-only path (arch/arm64/kvm/hyp/pgtable.c): when
// the walk is exclusive and the old and new entries differ only in KVM_PTE_LEAF_ATTR_HI_SW,
// the kernel compares stage2_pte_is_counted() of the two, drops or takes a reference on the
// table page when they differ, and stores the new entry with no break-before-make, TLBI or
// CMO. A shared walk takes break-before-make instead. Read against gregkh/linux at 735d394779c9
// (docs/decisions.md, issue 9). Each case runs with the fast paths on and off: the map fast
// path declines an occupied entry, so both must end in tryLeaf with the same result.
import { describe, it, expect } from 'vitest';
import {
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW1,
  KVM_PGTABLE_PROT_SW2,
  KVM_PGTABLE_PROT_W,
  KVM_PTE_LEAF_ATTR_HI_SW,
  hex64,
  hexAddr,
} from '../src/pgtable/descriptor.js';
import { MemCache } from '../src/pgtable/pool.js';
import type { Stage2Events } from '../src/pgtable/pool.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';
import { KVM_PGTABLE_WALK_SHARED } from '../src/pgtable/walker.js';
import { auditStage2 } from '../src/pgtable/audit.js';

const RW = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
const PA = 0x80000000;
const IPA = 0x1000;

interface Setup {
  pgt: Stage2PageTable;
  log: string[];
  mc: MemCache;
  /** The pool index of the level-3 table holding the entry for IPA. */
  l3: number;
  /** The raw words of IPA's entry: [lo, hi] as the table holds them. */
  entry(): [number, number];
  /** The descriptor covering IPA, as hex. */
  desc(): string;
}

/** A 4K-granule table with one RW page mapped at IPA (so the level-3 table exists). */
function setup(fastPaths: boolean): Setup {
  const log: string[] = [];
  const events: Stage2Events = {
    tlbiVmidIpa: (op) => log.push(`tlbi ipa ${hexAddr(op.addr)} ${op.level}`),
    tlbiVmidIpaNsh: (op) => log.push(`tlbi nsh ${hexAddr(op.addr)} ${op.level}`),
    tlbiVmidRange: (op) => log.push(`tlbi range ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    tlbiVmid: () => log.push('tlbi vmid'),
    dcacheCleanInvalPoc: (op) => log.push(`dcache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
    icacheInvalPou: (op) => log.push(`icache ${hexAddr(op.addr)} ${hexAddr(op.size)}`),
  };
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, events, fastPaths });
  const mc = MemCache.unlimited(pgt.pool);
  expect(pgt.map(IPA, 0x1000, PA, RW, mc)).toBe(0);
  let page = pgt.pgd + pgt.geo.pgdPageIndex(IPA);
  for (let l = pgt.geo.startLevel; l < 3; l++) {
    const w = pgt.pool.pages[page]!;
    const i = pgt.geo.index(IPA, l);
    page = pgt.pool.pageOf(pgt.layout.toPhys(w[2 * i]!, w[2 * i + 1]!));
  }
  const l3 = page;
  const i = 2 * pgt.geo.index(IPA, 3);
  const r = new LeafResult();
  log.length = 0;
  return {
    pgt,
    log,
    mc,
    l3,
    entry: () => [pgt.pool.pages[l3]![i]!, pgt.pool.pages[l3]![i + 1]!],
    desc: () => {
      expect(pgt.getLeaf(IPA, r)).toBe(0);
      return hex64(r.lo, r.hi);
    },
  };
}

describe.each([true, false])('stage2_map_walker_try_leaf, software bits only (fast paths %s)', (fast) => {
  it('exclusive: a valid leaf gains software bits in place, refcount unchanged, no TLBI or CMO', () => {
    const t = setup(fast);
    const count = t.pgt.pool.pageCount(t.l3);
    expect(t.pgt.map(IPA, 0x1000, PA, RW | KVM_PGTABLE_PROT_SW1, t.mc)).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.desc()).toBe('0x01400000800007ff');
    expect(t.pgt.pool.pageCount(t.l3)).toBe(count);
    // And back again: software bits changed once more, still in place.
    expect(t.pgt.map(IPA, 0x1000, PA, RW | KVM_PGTABLE_PROT_SW2, t.mc)).toBe(0);
    expect(t.log).toEqual([]);
    expect(t.desc()).toBe('0x02400000800007ff');
    expect(t.pgt.pool.pageCount(t.l3)).toBe(count);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('shared: the same change takes break-before-make (TLBI, then CMO), refcount unchanged', () => {
    const t = setup(fast);
    const count = t.pgt.pool.pageCount(t.l3);
    expect(t.pgt.map(IPA, 0x1000, PA, RW | KVM_PGTABLE_PROT_SW1, t.mc, KVM_PGTABLE_WALK_SHARED)).toBe(0);
    expect(t.log).toEqual(['tlbi ipa 0x0000000000001000 3', 'dcache 0x0000000080000000 0x0000000000001000']);
    expect(t.desc()).toBe('0x01400000800007ff');
    expect(t.pgt.pool.pageCount(t.l3)).toBe(count);
    expect(auditStage2(t.pgt)).toEqual([]);
  });

  it('exclusive: a counted entry of software bits only, replaced by an uncounted one, drops its reference', () => {
    const t = setup(fast);
    // Next to the mapped page, an invalid entry holding only a software bit (hi bit 23, i.e.
    // bit 55): counted, as every non-zero entry is, so the table page holds a reference for it.
    // No operation builds one (a map leaf is valid, an annotation has no software bits); a raw
    // edit does, and the kernel's function handles it all the same.
    const next = IPA + 0x1000;
    const i = 2 * t.pgt.geo.index(next, 3);
    const w = t.pgt.pool.pages[t.l3]!;
    w[i] = 0;
    w[i + 1] = 1 << 23;
    expect(w[i + 1]! & ~KVM_PTE_LEAF_ATTR_HI_SW).toBe(0);
    t.pgt.pool.getPage(t.l3);
    expect(auditStage2(t.pgt)).toEqual([]);
    const count = t.pgt.pool.pageCount(t.l3);
    // kvm_pgtable_stage2_set_owner() with owner 0 builds the entry 0: it differs from the old
    // one in the software bits only, and is not counted, so the reference goes.
    expect(t.pgt.setOwner(next, 0x1000, t.mc, 0)).toBe(0);
    expect(t.log).toEqual([]);
    expect([w[i], w[i + 1]]).toEqual([0, 0]);
    expect(t.pgt.pool.pageCount(t.l3)).toBe(count - 1);
    expect(auditStage2(t.pgt)).toEqual([]);
    // The mapped page beside it is untouched.
    expect(t.entry()[0]).toBe(0x800007ff | 0);
  });
});
