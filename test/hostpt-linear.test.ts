/**
 * The host page table's linear PTE chunks and its PTE cache (src/mmu/host/hostpt.ts,
 * docs/decisions.md "The host page table keeps fault-in order as a bitmap") against explicit
 * chunks walked from the top every time: random sequences of
 * set / clear / updateFlags at every level, with pfns in ascending and descending runs (what
 * fault-in order leaves) and at random (what breaks the pattern), must give the same lookups,
 * the same forEach() and the same table count after every operation.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GRANULE_4K } from '../src/mmu/host/granule.js';
import {
  HOST_LEVEL_PMD,
  HOST_LEVEL_PTE,
  HOST_LEVEL_PUD,
  HPTE_CONT,
  HPTE_OWNED,
  HPTE_PRESENT,
  HPTE_WRITE,
  HPTE_ZAPPED,
  HostPageTable,
  newHostLeaf,
} from '../src/mmu/host/hostpt.js';

const BASE = 0x7f00_0000_0000;
const PMD = 2 ** 21;
/** Four PMD regions: enough for chunks to fill, break, empty and be freed by a huge leaf. */
const SPAN = 4 * PMD;

const FLAGS = [
  HPTE_PRESENT | HPTE_OWNED | HPTE_WRITE,
  HPTE_PRESENT | HPTE_OWNED,
  HPTE_PRESENT | HPTE_CONT,
  HPTE_ZAPPED,
];

type Op =
  | { k: 'run'; page: number; n: number; pfn: number; step: 1 | -1; flags: number }
  | { k: 'set'; level: number; page: number; pfn: number; flags: number }
  | { k: 'clear'; level: number; page: number; n: number }
  | { k: 'update'; page: number; or: number; and: number };

const page = fc.nat(SPAN / 4096 - 1);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('run' as const),
      page,
      n: fc.integer({ min: 1, max: 700 }),
      pfn: fc.integer({ min: 1000, max: 2 ** 40 }),
      step: fc.constantFrom(1 as const, -1 as const),
      flags: fc.constantFrom(...FLAGS),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('set' as const),
      level: fc.constantFrom(HOST_LEVEL_PTE, HOST_LEVEL_PTE, HOST_LEVEL_PMD, HOST_LEVEL_PUD),
      page,
      pfn: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 40 })),
      flags: fc.constantFrom(0, ...FLAGS),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('clear' as const),
      level: fc.constantFrom(HOST_LEVEL_PTE, HOST_LEVEL_PTE, HOST_LEVEL_PMD),
      page,
      n: fc.integer({ min: 1, max: 700 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('update' as const),
      page,
      or: fc.constantFrom(0, HPTE_WRITE, HPTE_CONT),
      and: fc.constantFrom(0xffff, ~HPTE_WRITE & 0xffff, ~HPTE_PRESENT & 0xffff),
    }),
  },
);

function apply(pt: HostPageTable, o: Op): void {
  const hva = BASE + o.page * 4096;
  switch (o.k) {
    case 'run':
      for (let i = 0; i < o.n && o.page + i < SPAN / 4096; i++)
        pt.set(HOST_LEVEL_PTE, hva + i * 4096, o.pfn + o.step * i, o.flags);
      return;
    case 'set':
      pt.set(o.level, hva, o.pfn, o.flags);
      return;
    case 'clear':
      for (let i = 0; i < o.n && o.page + i < SPAN / 4096; i++) pt.clear(o.level, hva + i * 4096);
      return;
    case 'update':
      pt.updateFlags(HOST_LEVEL_PTE, hva, o.or, o.and);
      return;
  }
}

/** Everything observable: every page's lookup, the leaf walk, and the table count. */
function state(pt: HostPageTable): unknown {
  const l = newHostLeaf();
  const lookups: string[] = [];
  for (let p = 0; p < SPAN / 4096; p++) {
    const present = pt.lookup(BASE + p * 4096, l);
    lookups.push(`${present} ${l.level} ${l.base} ${l.pfn} ${l.flags}`);
  }
  const leaves: string[] = [];
  pt.forEach(BASE, BASE + SPAN, (level, base, pfn, flags) => leaves.push(`${level} ${base} ${pfn} ${flags}`));
  return { lookups, leaves, tables: pt.tables };
}

describe('host page table: linear PTE chunks and the PTE cache', () => {
  it('behave exactly as explicit chunks walked from the top, under random operations', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
        const linear = new HostPageTable(GRANULE_4K);
        // The reference: explicit chunks, every lookup and install walking all three levels.
        const explicit = new HostPageTable(GRANULE_4K, { linearChunks: false, pteCache: false });
        for (const o of ops) {
          apply(linear, o);
          apply(explicit, o);
        }
        expect(state(linear)).toEqual(state(explicit));
      }),
      { numRuns: 150, seed: 0x11ea },
    );
  }, 120_000);

  it('keeps a fault-in-order run in the linear form, and turns explicit when the pattern breaks', () => {
    const pt = new HostPageTable(GRANULE_4K);
    const l = newHostLeaf();
    // 512 ascending pfns, then the same range refilled descending (a zap, then the free list).
    for (let i = 0; i < 512; i++) pt.set(HOST_LEVEL_PTE, BASE + i * 4096, 5000 + i, FLAGS[0]!);
    expect(pt.lookup(BASE + 511 * 4096, l)).toBe(true);
    expect(l.pfn).toBe(5511);
    expect(pt.explicitPteTables()).toBe(0);
    // Emptied, the table takes a new progression from its next store.
    for (let i = 0; i < 512; i++) pt.clear(HOST_LEVEL_PTE, BASE + i * 4096);
    for (let i = 0; i < 512; i++) pt.set(HOST_LEVEL_PTE, BASE + i * 4096, 9000 - i, FLAGS[0]!);
    pt.lookup(BASE + 100 * 4096, l);
    expect(l.pfn).toBe(8900);
    expect(pt.explicitPteTables()).toBe(0);
    // A pfn off the progression: the table turns explicit, and reads back exactly.
    pt.set(HOST_LEVEL_PTE, BASE + 7 * 4096, 123, FLAGS[1]!);
    expect(pt.explicitPteTables()).toBe(1);
    pt.lookup(BASE + 7 * 4096, l);
    expect([l.pfn, l.flags]).toEqual([123, FLAGS[1]]);
    pt.lookup(BASE + 8 * 4096, l);
    expect(l.pfn).toBe(8992);
  });
});
