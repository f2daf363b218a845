/**
 * Consistency checks over a whole stage-2 table, for tests and debuggers (not the hot path).
 *
 * auditStage2() walks every table page reachable from the root and reports, in words, each
 * place where the table breaks an invariant the KVM code relies on (arch/arm64/kvm/hyp/pgtable.c):
 * the refcount rule (1 + counted entries), no break-before-make lock left behind, leaves
 * aligned to their size and only at levels that may hold them, nothing mapped outside the
 * IPA space, table pointers that name live pool pages exactly once, and no leaked pages.
 * collectLeaves() lists the valid leaves in IPA order.
 *
 * Both read the table only: no refcount, TLBI or cache event is touched.
 */

import {
  KVM_PTE_LEAF_ATTR_HI,
  KVM_PTE_LEAF_ATTR_LO,
  KVM_PTE_TYPE_BLOCK,
  KVM_PTE_TYPE_TABLE,
  KVM_PTE_VALID,
  hex64,
  hexAddr,
  pteIsLocked,
  pteIsTable,
} from './descriptor.js';
import type { Stage2PageTable } from './stage2.js';

/** One valid leaf (block or page) of a stage-2 table, as collectLeaves() reports it. */
export interface LeafInfo {
  /** First IPA the leaf maps. */
  ipa: number;
  /** Bytes it maps: 2^shift(level). */
  size: number;
  /** Its level. */
  level: number;
  /** Descriptor bits [31:0]. */
  lo: number;
  /** Descriptor bits [63:32]. */
  hi: number;
  /** Its output address (kvm_pte_to_phys). */
  pa: number;
}

/** Options of auditStage2(). */
export interface AuditOptions {
  /**
   * Pages legitimately held outside the table (a limited memcache's `nobjs`), counted as in
   * use by the pool but not reachable from the root. Default 0.
   */
  memcacheHeld?: number;
}

/**
 * The table-descriptor bits KVM may set (kvm_init_table_pte): the type bits and the
 * output-address field. Anything else in a table descriptor is a corruption.
 */
function tableExtraBits(pgt: Stage2PageTable, lo: number, hi: number): boolean {
  const layout = pgt.layout;
  const pa = layout.toPhys(lo, hi);
  const expectLo = (layout.physLo(pa) | KVM_PTE_TYPE_TABLE) >>> 0;
  const expectHi = layout.physHi(pa) >>> 0;
  return expectLo !== lo >>> 0 || expectHi !== hi >>> 0;
}

/**
 * Walks every table reachable from the root, depth first in IPA order, calling `onEntry`
 * for each non-zero entry. A table pointer is followed only to a live pool page not seen
 * before, so a corrupted table cannot make the walk loop. `onTable` sees each page once,
 * `onBadPointer` each pointer that is not followed.
 */
function walkAll(
  pgt: Stage2PageTable,
  onTable: (page: number, level: number, base: number) => void,
  onEntry: (page: number, idx: number, level: number, ipa: number, lo: number, hi: number) => void,
  onBadPointer: (why: string, page: number, idx: number, level: number, ipa: number, target: number) => void,
): void {
  if (pgt.pgd < 0) return;
  const geo = pgt.geo;
  const pool = pgt.pool;
  const seen = new Set<number>();
  const visit = (page: number, level: number, base: number): void => {
    seen.add(page);
    onTable(page, level, base);
    const w = pool.pages[page]!;
    const size = geo.granuleSize(level);
    for (let i = 0; i < geo.ptrsPerPte; i++) {
      const lo = w[2 * i]!;
      const hi = w[2 * i + 1]!;
      if (lo === 0 && hi === 0) continue;
      const ipa = base + i * size;
      onEntry(page, i, level, ipa, lo >>> 0, hi >>> 0);
      if (!pteIsTable(lo, level)) continue;
      const target = pgt.layout.toPhys(lo, hi);
      const child = pool.pageOf(target);
      if (child < 0) onBadPointer('outside the table pool', page, i, level, ipa, target);
      else if (pool.pageCount(child) <= 0) onBadPointer('to a free page', page, i, level, ipa, target);
      else if (seen.has(child)) onBadPointer('to a table page reachable twice', page, i, level, ipa, target);
      else visit(child, level + 1, ipa);
    }
  };
  // Each concatenated root page covers PTRS_PER_PTE entries of the start level.
  const span = geo.granuleSize(geo.startLevel) * geo.ptrsPerPte;
  for (let p = 0; p < geo.pgdPages; p++) seen.add(pgt.pgd + p);
  for (let p = 0; p < geo.pgdPages; p++) visit(pgt.pgd + p, geo.startLevel, p * span);
}

/**
 * Checks a stage-2 table's invariants. Pure: reads the table and the pool's counts only.
 * Returns one human-readable line per violation; an empty array means the table is sound.
 */
export function auditStage2(pgt: Stage2PageTable, opts?: AuditOptions): string[] {
  const out: string[] = [];
  const geo = pgt.geo;
  const pool = pgt.pool;
  const held = opts?.memcacheHeld ?? 0;
  let reachable = 0;
  // Counted entries found in each reachable page, checked against its refcount afterwards.
  const counted = new Map<number, { level: number; base: number; n: number }>();
  const where = (level: number, ipa: number): string => `L${level} entry at IPA ${hexAddr(ipa)}`;

  walkAll(
    pgt,
    (page, level, base) => {
      reachable++;
      counted.set(page, { level, base, n: 0 });
    },
    (page, _idx, level, ipa, lo, hi) => {
      // stage2_pte_is_counted(): every non-zero entry holds one reference on its page.
      counted.get(page)!.n++;
      const at = where(level, ipa);
      if ((lo & KVM_PTE_VALID) === 0) {
        if (pteIsLocked(lo))
          out.push(`${at}: LOCKED entry ${hex64(lo, hi)} left behind (break without make)`);
        return;
      }
      if (pteIsTable(lo, level)) {
        if (tableExtraBits(pgt, lo, hi)) {
          out.push(`${at}: table descriptor ${hex64(lo, hi)} has bits other than its address and type`);
        }
        return;
      }
      if (level === 3 && (lo & KVM_PTE_TYPE_TABLE) === KVM_PTE_TYPE_BLOCK) {
        out.push(`${at}: reserved block encoding ${hex64(lo, hi)} at level 3`);
      }
      const size = geo.granuleSize(level);
      if (level < geo.minBlockLevel) {
        out.push(
          `${at}: block ${hex64(lo, hi)} at level ${level}, below the lowest block level ${geo.minBlockLevel}`,
        );
      }
      const pa = pgt.layout.toPhys(lo, hi);
      if (pa % size !== 0) {
        out.push(`${at}: output address ${hexAddr(pa)} is not aligned to the leaf size ${hexAddr(size)}`);
      }
      if (ipa + size > geo.ipaLimit) {
        out.push(
          `${at}: leaf [${hexAddr(ipa)}, +${hexAddr(size)}) lies outside the IPA space [0, 2^${geo.iaBits})`,
        );
      }
      // Bits KVM never sets in a leaf: the OA field and attributes cover everything else.
      const known = pgt.layout.physLo(pa) | KVM_PTE_LEAF_ATTR_LO | KVM_PTE_TYPE_TABLE;
      if ((lo & ~known) >>> 0 !== 0 || (hi & ~(pgt.layout.physHi(pa) | KVM_PTE_LEAF_ATTR_HI)) >>> 0 !== 0) {
        out.push(`${at}: leaf ${hex64(lo, hi)} has bits set outside its address and attribute fields`);
      }
    },
    (why, _page, _idx, level, ipa, target) => {
      out.push(`${where(level, ipa)}: table pointer ${hexAddr(target)} ${why}`);
    },
  );

  for (const [page, { level, base, n }] of counted) {
    const rc = pool.pageCount(page);
    if (rc !== 1 + n) {
      out.push(
        `table page ${page} (L${level} at IPA ${hexAddr(base)}): refcount ${rc}, expected 1 + ${n} counted entries = ${1 + n}`,
      );
    }
  }
  if (pool.inUse !== reachable + held) {
    out.push(
      `pool has ${pool.inUse} pages in use, expected ${reachable} reachable table pages + ${held} held by the memcache = ${reachable + held}` +
        (pool.inUse > reachable + held ? ` (${pool.inUse - reachable - held} leaked)` : ''),
    );
  }
  return out;
}

/**
 * Lists every valid leaf (block or page) reachable from the root, in ascending IPA order.
 * Invalid entries (holes, owner annotations, LOCKED) are not leaves. Returns the list.
 */
export function collectLeaves(pgt: Stage2PageTable): LeafInfo[] {
  const leaves: LeafInfo[] = [];
  walkAll(
    pgt,
    () => {},
    (_page, _idx, level, ipa, lo, hi) => {
      if ((lo & KVM_PTE_VALID) === 0 || pteIsTable(lo, level)) return;
      leaves.push({ ipa, size: pgt.geo.granuleSize(level), level, lo, hi, pa: pgt.layout.toPhys(lo, hi) });
    },
    () => {},
  );
  return leaves;
}
