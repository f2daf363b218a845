import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  MemslotGenerations,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_HVA_ERR_BAD,
  gfnToMemslot,
  gfnToHvaMemslotProt,
  kvmIsErrorHva,
  memslotIsLogging,
  forEachHvaRangeGfns,
  faultSupportsStage2HugeMapping,
} from '../src/mmu/memslots.js';
import { markPageDirtyInSlot, getAndClearDirty, dirtyCount, testPageDirty } from '../src/mmu/dirty.js';

function threeSlots(): MemslotGenerations {
  const g = new MemslotGenerations();
  expect(
    g.install({ id: 2, baseGfn: 0x80000, npages: 0x1000, userspaceAddr: 0x7f00_0000_0000, flags: 0 }),
  ).toBe(0);
  expect(
    g.install({ id: 0, baseGfn: 0x40000, npages: 0x100, userspaceAddr: 0x7e00_0000_0000, flags: 0 }),
  ).toBe(0);
  expect(
    g.install({
      id: 1,
      baseGfn: 0x50000,
      npages: 0x10,
      userspaceAddr: 0x7d00_0000_0000,
      flags: KVM_MEM_READONLY,
    }),
  ).toBe(0);
  return g;
}

describe('memslot generations', () => {
  it('each change makes a new generation and leaves old ones untouched (and frozen)', () => {
    const g = new MemslotGenerations();
    const g0 = g.current;
    g.install({ id: 0, baseGfn: 0x40000, npages: 0x100, userspaceAddr: 0x10000000, flags: 0 });
    const g1 = g.current;
    expect(g0.slots).toHaveLength(0);
    expect(g1.slots).toHaveLength(1);
    expect(g1.generation).toBe(g0.generation + 1);
    expect(Object.isFrozen(g1)).toBe(true);
    expect(Object.isFrozen(g1.slots[0])).toBe(true);

    expect(g.updateFlags(0, KVM_MEM_LOG_DIRTY_PAGES)).toBe(0);
    const g2 = g.current;
    expect(g1.slots[0].flags).toBe(0);
    expect(g1.slots[0].dirtyBitmap).toBeNull();
    expect(g2.slots[0].dirtyBitmap).toBeInstanceOf(Uint32Array);
    expect(g2.slots[0].dirtyBitmap?.length).toBe(8);
    expect(g2.slots[0]).not.toBe(g1.slots[0]);

    expect(g.delete(0)).toBe(0);
    expect(g.current.slots).toHaveLength(0);
    expect(g2.slots).toHaveLength(1);
    expect(g.current.generation).toBe(3);
  });

  it('refuses overlaps, duplicate ids, bad flags and toggling READONLY', () => {
    const g = threeSlots();
    const gen = g.current.generation;
    expect(g.install({ id: 9, baseGfn: 0x400ff, npages: 2, userspaceAddr: 0, flags: 0 })).toBe(-17);
    expect(g.install({ id: 0, baseGfn: 0x90000, npages: 2, userspaceAddr: 0, flags: 0 })).toBe(-17);
    expect(g.install({ id: 9, baseGfn: 0x90000, npages: 2, userspaceAddr: 0, flags: 8 })).toBe(-22);
    expect(g.updateFlags(1, 0)).toBe(-22);
    expect(g.delete(42)).toBe(-22);
    expect(g.current.generation).toBe(gen);
  });

  it('gfnToMemslot finds the containing slot by binary search and misses in gaps', () => {
    const g = threeSlots();
    const set = g.current;
    expect(set.slots.map((s) => s.id)).toEqual([0, 1, 2]);
    expect(gfnToMemslot(set, 0x40000)?.id).toBe(0);
    expect(gfnToMemslot(set, 0x400ff)?.id).toBe(0);
    expect(gfnToMemslot(set, 0x40100)).toBeUndefined();
    expect(gfnToMemslot(set, 0x5000f)?.id).toBe(1);
    expect(gfnToMemslot(set, 0x80fff)?.id).toBe(2);
    expect(gfnToMemslot(set, 0x81000)).toBeUndefined();
    expect(gfnToMemslot(set, 0)).toBeUndefined();
  });

  it('gfnToHvaMemslotProt gives the hva and the slot writability', () => {
    const g = threeSlots();
    const out = { gfn: 0, writable: true, hva: 0 };
    const s0 = g.byId(0);
    expect(gfnToHvaMemslotProt(s0, 0x40003, 12, out)).toBe(0x7e00_0000_3000);
    expect(out.writable).toBe(true);
    expect(gfnToHvaMemslotProt(g.byId(1), 0x50001, 12, out)).toBe(0x7d00_0000_1000);
    expect(out.writable).toBe(false);
    const bad = gfnToHvaMemslotProt(undefined, 0x1234, 12, out);
    expect(bad).toBe(KVM_HVA_ERR_BAD);
    expect(kvmIsErrorHva(bad)).toBe(true);
    expect(kvmIsErrorHva(gfnToHvaMemslotProt(s0, 0x40100, 12, out))).toBe(true);
  });

  it('memslotIsLogging needs a bitmap and a writable slot', () => {
    const g = new MemslotGenerations();
    g.install({ id: 0, baseGfn: 0, npages: 64, userspaceAddr: 0, flags: KVM_MEM_LOG_DIRTY_PAGES });
    g.install({
      id: 1,
      baseGfn: 64,
      npages: 64,
      userspaceAddr: 0,
      flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY,
    });
    g.install({ id: 2, baseGfn: 128, npages: 64, userspaceAddr: 0, flags: 0 });
    expect([0, 1, 2].map((id) => memslotIsLogging(g.byId(id)!))).toEqual([true, false, false]);
  });

  it('maps an hva range onto the gfn ranges of every slot it touches', () => {
    const g = new MemslotGenerations();
    g.install({ id: 0, baseGfn: 0x100, npages: 0x10, userspaceAddr: 0x10_0000, flags: 0 });
    g.install({ id: 1, baseGfn: 0x200, npages: 0x10, userspaceAddr: 0x10_0000, flags: 0 }); // alias
    g.install({ id: 2, baseGfn: 0x300, npages: 0x10, userspaceAddr: 0x20_0000, flags: 0 });
    const seen: [number, number, number][] = [];
    const n = forEachHvaRangeGfns(g.current, 0x10_3800, 0x10_5001, 12, (s, a, b) => seen.push([s.id, a, b]));
    expect(n).toBe(2);
    expect(seen).toEqual([
      [0, 0x103, 0x106],
      [1, 0x203, 0x206],
    ]);
  });

  it('faultSupportsStage2HugeMapping: alignment of IPA vs hva, and the block inside the slot', () => {
    const g = new MemslotGenerations();
    g.install({ id: 0, baseGfn: 0x40000, npages: 4 * 512, userspaceAddr: 0x1_0000_0000, flags: 0 });
    g.install({ id: 1, baseGfn: 0x80000, npages: 4 * 512, userspaceAddr: 0x2_0000_1000, flags: 0 });
    g.install({ id: 2, baseGfn: 0xc0000, npages: 1024 + 1, userspaceAddr: 0x3_0010_0000, flags: 0 });
    const s0 = g.byId(0)!;
    const s1 = g.byId(1)!;
    const s2 = g.byId(2)!;
    expect(faultSupportsStage2HugeMapping(s0, { hva: 0x1_0030_0000 }, 21, 12, 21)).toBe(true);
    expect(faultSupportsStage2HugeMapping(s1, { hva: 0x2_0030_0000 }, 21, 12, 21)).toBe(false);
    expect(faultSupportsStage2HugeMapping(s1, { hva: 0x2_0030_0000 }, 12, 12, 21)).toBe(true);
    // s2: gpa 0xc0000000 vs hva 0x300100000: offsets differ within 2M? 0 vs 0x100000 → false
    expect(faultSupportsStage2HugeMapping(s2, { hva: 0x3_0020_0000 }, 21, 12, 21)).toBe(false);
    expect(faultSupportsStage2HugeMapping(s0, { hva: 0x1_0000_0000 }, 30, 12, 21)).toBe(false);
    expect(faultSupportsStage2HugeMapping(s0, { hva: 0x1_0000_0000 }, 30, 12, 21, true)).toBe(false);
  });
});

describe('dirty bitmaps', () => {
  it('marks, counts, and get-and-clear returns ascending gfns then leaves the bitmap empty', () => {
    const g = new MemslotGenerations();
    g.install({ id: 0, baseGfn: 0x40000, npages: 100, userspaceAddr: 0, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const s = g.byId(0)!;
    expect(markPageDirtyInSlot(s, 0x40000 + 64)).toBe(true);
    expect(markPageDirtyInSlot(s, 0x40000 + 31)).toBe(true);
    expect(markPageDirtyInSlot(s, 0x40000 + 32)).toBe(true);
    expect(markPageDirtyInSlot(s, 0x40000 + 31)).toBe(false);
    expect(markPageDirtyInSlot(s, 0x40000 + 100)).toBe(false); // outside
    expect(testPageDirty(s, 0x40000 + 32)).toBe(true);
    expect(dirtyCount(s)).toBe(3);
    const out: number[] = [];
    expect(getAndClearDirty(s, out)).toBe(3);
    expect(out).toEqual([0x4001f, 0x40020, 0x40040]);
    expect(dirtyCount(s)).toBe(0);
    expect(getAndClearDirty(s, out)).toBe(0);
  });

  it('a slot without logging ignores marks', () => {
    const g = new MemslotGenerations();
    g.install({ id: 0, baseGfn: 0, npages: 10, userspaceAddr: 0, flags: 0 });
    expect(markPageDirtyInSlot(g.byId(0), 3)).toBe(false);
    expect(markPageDirtyInSlot(undefined, 3)).toBe(false);
  });

  it('get-and-clear returns exactly the set of marked gfns, sorted (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.array(fc.nat(299)), (npages, rels) => {
        const g = new MemslotGenerations();
        g.install({ id: 0, baseGfn: 0x1000, npages, userspaceAddr: 0, flags: KVM_MEM_LOG_DIRTY_PAGES });
        const s = g.byId(0)!;
        for (const r of rels) markPageDirtyInSlot(s, 0x1000 + r);
        const expected = [...new Set(rels.filter((r) => r < npages))]
          .sort((a, b) => a - b)
          .map((r) => 0x1000 + r);
        const out: number[] = [];
        getAndClearDirty(s, out);
        expect(out).toEqual(expected);
        expect(dirtyCount(s)).toBe(0);
      }),
    );
  });
});
