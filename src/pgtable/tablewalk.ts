/**
 * Whole-tree visits of a stage-2 table for the cold paths (dump, ptdump, the journal's
 * snapshot, time travel, counting): from the root pages down through table descriptors, in
 * ascending IPA order, a table before what it points to. One recursive visit over any source
 * of page words, so the live table and a time-travel shadow of it are read the same way.
 * Not the walker (walker.ts): no visitor context, no flags, no changes; allocates freely.
 */

import { KVM_PTE_VALID, pteIsTable } from './descriptor.js';
import type { Geometry } from './geometry.js';

/** A visited descriptor: its kind, level, the IPA it maps from, and its unsigned halves. */
export type DescriptorVisit = (
  kind: 'table' | 'leaf',
  level: number,
  ipa: number,
  lo: number,
  hi: number,
) => void;

/** Where a tree's pages come from: the live pool, or a shadow copy of it. */
export interface TableSource {
  readonly geo: Geometry;
  /** The first root page's pool index (the concatenated roots follow it); < 0: no table. */
  readonly pgd: number;
  /** The words of pool page `page`, or undefined where the source holds none. */
  words(page: number): Int32Array | undefined;
  /** The pool index of the table a table descriptor points to. */
  child(lo: number, hi: number): number;
}

/** The IPA span of one root page: what its ptrsPerPte entries at the start level cover. */
function rootSpan(geo: Geometry): number {
  return geo.granuleSize(geo.startLevel) * geo.ptrsPerPte;
}

/**
 * Visits every table page reachable from the root, the roots included: its pool index, level
 * and the first IPA it maps.
 */
export function visitTablePages(
  src: TableSource,
  fn: (page: number, level: number, base: number) => void,
): void {
  const geo = src.geo;
  const visit = (page: number, level: number, base: number): void => {
    fn(page, level, base);
    const w = src.words(page);
    if (w === undefined || level >= 3) return;
    const size = geo.granuleSize(level);
    for (let i = 0; i < geo.ptrsPerPte; i++) {
      const lo = w[2 * i]!;
      if (pteIsTable(lo, level)) visit(src.child(lo, w[2 * i + 1]!), level + 1, base + i * size);
    }
  };
  if (src.pgd < 0) return;
  const span = rootSpan(geo);
  for (let p = 0; p < geo.pgdPages; p++) visit(src.pgd + p, geo.startLevel, p * span);
}

/**
 * Visits every valid descriptor reachable from the root (tables and leaves), or only those
 * that overlap [start, end): a table is reported, then what it holds.
 */
export function visitValidDescriptors(
  src: TableSource,
  fn: DescriptorVisit,
  start = 0,
  end = Infinity,
): void {
  const geo = src.geo;
  const visit = (page: number, level: number, base: number): void => {
    const w = src.words(page);
    if (w === undefined) return;
    const size = geo.granuleSize(level);
    for (let i = 0; i < geo.ptrsPerPte; i++) {
      const lo = w[2 * i]!;
      if ((lo & KVM_PTE_VALID) === 0) continue;
      const ipa = base + i * size;
      if (ipa + size <= start || ipa >= end) continue;
      const hi = w[2 * i + 1]!;
      if (pteIsTable(lo, level)) {
        fn('table', level, ipa, lo >>> 0, hi >>> 0);
        visit(src.child(lo, hi), level + 1, ipa);
      } else fn('leaf', level, ipa, lo >>> 0, hi >>> 0);
    }
  };
  if (src.pgd < 0) return;
  const span = rootSpan(geo);
  for (let p = 0; p < geo.pgdPages; p++) visit(src.pgd + p, geo.startLevel, p * span);
}
