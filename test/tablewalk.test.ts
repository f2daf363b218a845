/**
 * The cold whole-tree visits (src/pgtable/tablewalk.ts), on random tables: the ranged visit
 * is the full visit cut to what overlaps the range, the order is the dump's (ascending IPA,
 * a table before what it holds), every leaf reported is what getLeaf() finds there, and the
 * table pages counted are the root pages plus one per table descriptor.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W } from '../src/pgtable/descriptor.js';
import type { GranuleSize } from '../src/pgtable/geometry.js';
import { MemCache } from '../src/pgtable/pool.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';

type Visit = [kind: 'table' | 'leaf', level: number, ipa: number, lo: number, hi: number];

const IPA_BITS = 36;
const PA_BASE = 0x80_0000_0000;

/** A table with `maps` applied: [IPA index, 0 page / 1 block] each, at granule `g`. */
function build(g: GranuleSize, maps: [number, number][], unmaps: number[]): Stage2PageTable {
  const pgt = new Stage2PageTable({ granule: g, ipaBits: IPA_BITS, fwb: true });
  const mc = MemCache.unlimited(pgt.pool);
  const block = pgt.geo.granuleSize(2);
  for (const [i, isBlock] of maps) {
    const size = isBlock ? block : g;
    const ipa = (i * size) % 2 ** IPA_BITS;
    expect(pgt.map(ipa, size, PA_BASE + ipa, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W, mc)).toBe(0);
  }
  for (const i of unmaps) expect(pgt.unmap((i * g) % 2 ** IPA_BITS, g)).toBe(0);
  return pgt;
}

function visits(pgt: Stage2PageTable, start?: number, end?: number): Visit[] {
  const out: Visit[] = [];
  pgt.forEachValid((kind, level, ipa, lo, hi) => void out.push([kind, level, ipa, lo, hi]), start, end);
  return out;
}

const tableArb = fc.record({
  g: fc.constantFrom<GranuleSize>(4096, 16384, 65536),
  maps: fc.array(fc.tuple(fc.nat(2 ** 20), fc.constantFrom(0, 0, 0, 1)), { maxLength: 40 }),
  unmaps: fc.array(fc.nat(2 ** 20), { maxLength: 10 }),
});

describe('whole-tree visits (tablewalk.ts)', () => {
  it('visit a range as the full visit cut to the entries that overlap it', () => {
    fc.assert(
      fc.property(
        tableArb,
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        ({ g, maps, unmaps }, a, b) => {
          const pgt = build(g, maps, unmaps);
          const all = visits(pgt);
          const start = Math.floor(Math.min(a, b) * 2 ** IPA_BITS);
          const end = Math.floor(Math.max(a, b) * 2 ** IPA_BITS);
          const sizeAt = (level: number): number => pgt.geo.granuleSize(level);
          const expected = all.filter(([, level, ipa]) => ipa < end && ipa + sizeAt(level) > start);
          expect(visits(pgt, start, end)).toEqual(expected);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('report in the dump order, leaves as getLeaf() finds them, and count the table pages', () => {
    fc.assert(
      fc.property(tableArb, ({ g, maps, unmaps }) => {
        const pgt = build(g, maps, unmaps);
        const all = visits(pgt);
        // Ascending IPA; at one IPA, a table before the entries of the table it points to.
        for (let i = 1; i < all.length; i++) {
          const [, l0, a0] = all[i - 1]!;
          const [, l1, a1] = all[i]!;
          expect(a1 > a0 || (a1 === a0 && l1 === l0 + 1)).toBe(true);
        }
        for (const [kind, level, ipa, lo, hi] of all) {
          if (kind !== 'leaf') continue;
          const l = new LeafResult();
          expect(pgt.getLeaf(ipa, l)).toBe(0);
          expect([l.level, l.lo >>> 0, l.hi >>> 0]).toEqual([level, lo, hi]);
        }
        const tables = all.filter(([kind]) => kind === 'table').length;
        expect(pgt.countTables()).toBe(pgt.geo.pgdPages + tables);
        // Leaves are aligned and do not overlap; an address getLeaf() finds mapped is inside
        // one of them, and one it finds unmapped is inside none.
        const leaves = all.filter(([kind]) => kind === 'leaf');
        let endOfLast = 0;
        for (const [, level, ipa] of leaves) {
          const size = pgt.geo.granuleSize(level);
          expect(ipa % size).toBe(0);
          expect(ipa).toBeGreaterThanOrEqual(endOfLast);
          endOfLast = ipa + size;
        }
        const block = pgt.geo.granuleSize(2);
        const probes = [...maps.map(([i, isBlock]) => (i * (isBlock ? block : g)) % 2 ** IPA_BITS)];
        for (const i of unmaps) probes.push((i * g) % 2 ** IPA_BITS);
        const l = new LeafResult();
        for (const ipa of probes) {
          pgt.getLeaf(ipa, l);
          const inside = leaves.some(([, level, at]) => ipa >= at && ipa < at + pgt.geo.granuleSize(level));
          expect(inside).toBe((l.lo & 1) !== 0);
        }
      }),
      { numRuns: 60 },
    );
  });
});
