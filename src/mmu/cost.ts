/**
 * The hardware cost model: what the modelled host would spend, in nanoseconds, on the work
 * an access (or a whole run) did, priced from the counters the fault path records
 * (AccessStats) with per-CPU parameters (CostParams, one set per CPU preset in cpu.ts).
 *
 * The model is deliberately simple and linear: every counter times a unit cost, summed by
 * cause. It prices the work the emulator counts, not contention, cache misses on the data
 * the guest touches afterwards, or the TLB refills an invalidation causes later.
 *
 * Causes (CostBreakdown fields):
 *
 *   exit     faults × exitNs: trap to EL2, world switch out, back in, ERET
 *   handler  faults × handlerNs + (maps + relaxes) × faultinNs: kvm_handle_guest_abort()'s
 *            decode and memslot lookup; user_mem_abort()'s mmap lock, VMA lookup,
 *            __kvm_faultin_pfn() (GUP), mmu_lock, retry check and page release
 *   walk     (faults + maps + relaxes + mkyoungs) × levels × walkLevelNs: the hardware walk
 *            that faulted, and KVM's software walk for each map, relax or mkyoung; plus
 *            hwAfUpdates × 2 × walkLevelNs: the MMU's atomic update of an aged leaf's AF
 *            (VTCR_EL2.HA), a read-modify-write of one descriptor instead of a fault
 *   alloc    tablePagesAllocated × (tablePageNs + zeroing one granule)
 *   zero     hostPagesZeroed × granule KiB × zeroNsPerKiB (new anon/THP/hugetlb folios)
 *   dcache   dcacheBytes × dcacheNsPerByte (clean+invalidate to PoC; zero bytes with FWB)
 *   icache   icacheBytes × icacheNsPerByte + icacheInvalAll × icacheInvalAllNs (zero with DIC)
 *   tlbi     TLBI by IPA (IS and local), by range, whole VMID, each its own unit cost
 *   mte      mtePagesCleared × (granule / 4K) × mteNsPer4K
 *   mmio     exits × mmioExitNs: the round trip to the VMM beyond the in-kernel abort
 *   uffd     uffdEvents × uffdNs: a userfaultfd missing-page event answered by the VMM
 *
 * Pure: no Node imports, and modelledCost() allocates nothing.
 */

import type { AccessStats } from './stats.js';

/**
 * Unit costs of one CPU, in nanoseconds. Every preset's values say where they come from
 * (the `source` text, and comments next to each number); most are estimates, marked as such.
 */
export interface CostParams {
  /** The preset these values belong to. */
  readonly name: string;
  /** Where the numbers come from, in one paragraph (reports print it). */
  readonly source: string;
  /** Per stage-2 abort: exception entry to EL2, world switch out and back, ERET. */
  readonly exitNs: number;
  /** Per abort: kvm_handle_guest_abort()'s syndrome decode and memslot lookup. */
  readonly handlerNs: number;
  /** Per map or relax from user_mem_abort(): mmap lock, VMA lookup, faultin (GUP), mmu_lock. */
  readonly faultinNs: number;
  /** Per stage-2 table level a walk visits (hardware or KVM's software walker). */
  readonly walkLevelNs: number;
  /** Per stage-2 table page allocated, excluding zeroing it (page allocator, memcache). */
  readonly tablePageNs: number;
  /** Zeroing memory (clear_page, DC ZVA), per KiB. */
  readonly zeroNsPerKiB: number;
  /** D-cache clean+invalidate to PoC (DC CIVAC by VA), per byte. Paid only without FWB. */
  readonly dcacheNsPerByte: number;
  /** I-cache invalidate to PoU by range (IC IVAU), per byte. Paid only without DIC. */
  readonly icacheNsPerByte: number;
  /** A whole-I-cache invalidation (IC IALLUIS; DSB ISH; ISB), for ranges too large to walk. */
  readonly icacheInvalAllNs: number;
  /** TLBI IPAS2E1IS + DSB ISH + TLBI VMALLE1IS + DSB ISH + ISB (__kvm_tlb_flush_vmid_ipa). */
  readonly tlbiIpaNs: number;
  /** The same, non-shareable (local CPU only, no broadcast). */
  readonly tlbiIpaNshNs: number;
  /** A range TLBI by IPA (FEAT_TLBIRANGE) and its barriers. */
  readonly tlbiRangeNs: number;
  /** TLBI VMALLS12E1IS + DSB ISH: the whole VMID (the refills afterwards are not priced). */
  readonly tlbiVmidNs: number;
  /** MTE tag clearing (mte_clear_page_tags), per 4 KiB of memory. */
  readonly mteNsPer4K: number;
  /** An exit to the VMM and back (KVM_EXIT_MMIO / NISV), beyond exit, handler and walk. */
  readonly mmioExitNs: number;
  /** A userfaultfd missing-page event: VMM thread wake-up, UFFDIO_COPY, wake of the vCPU. */
  readonly uffdNs: number;
}

/** The shape of the VM that prices per-page and per-level work. */
export interface CostShape {
  /** The host PAGE_SIZE and stage-2 granule, bytes (units of hostPagesZeroed, mtePagesCleared). */
  readonly pageSize: number;
  /** Levels of the stage-2 table (4 − start level). */
  readonly levels: number;
}

/** 4K granule, 40-bit IPA: stage 2 starts at level 1 (three levels, concatenated PGD). */
export const DEFAULT_COST_SHAPE: CostShape = { pageSize: 4096, levels: 3 };

/** The shape of a VM (anything with Kvm's pageSize and pgt.geo.startLevel). */
export function costShapeOf(kvm: {
  readonly pageSize: number;
  readonly pgt: { readonly geo: { readonly startLevel: number } };
}): CostShape {
  return { pageSize: kvm.pageSize, levels: 4 - kvm.pgt.geo.startLevel };
}

/** The causes, in report order. */
export const COST_CAUSES = [
  'exit',
  'handler',
  'walk',
  'alloc',
  'zero',
  'dcache',
  'icache',
  'tlbi',
  'mte',
  'mmio',
  'uffd',
] as const;

/** One cause of modelled time. */
export type CostCause = (typeof COST_CAUSES)[number];

/** Modelled nanoseconds by cause, reused between calls. `total` is their sum. */
export class CostBreakdown {
  exit = 0;
  handler = 0;
  walk = 0;
  alloc = 0;
  zero = 0;
  dcache = 0;
  icache = 0;
  tlbi = 0;
  mte = 0;
  mmio = 0;
  uffd = 0;
  total = 0;

  /** Zeroes every cause. */
  reset(): void {
    this.exit = this.handler = this.walk = this.alloc = this.zero = this.dcache = 0;
    this.icache = this.tlbi = this.mte = this.mmio = this.uffd = this.total = 0;
  }

  /** Adds another breakdown into this one. */
  add(o: CostBreakdown): void {
    this.exit += o.exit;
    this.handler += o.handler;
    this.walk += o.walk;
    this.alloc += o.alloc;
    this.zero += o.zero;
    this.dcache += o.dcache;
    this.icache += o.icache;
    this.tlbi += o.tlbi;
    this.mte += o.mte;
    this.mmio += o.mmio;
    this.uffd += o.uffd;
    this.total += o.total;
  }

  /** The causes as a fresh object in report order, each rounded to whole nanoseconds. */
  toRecord(): Record<CostCause, number> {
    const r = {} as Record<CostCause, number>;
    for (const c of COST_CAUSES) r[c] = Math.round(this[c]);
    return r;
  }
}

/**
 * Prices `stats` with `p` for a VM of shape `shape`. Fills `out` (overwriting it) with the
 * nanoseconds by cause and returns the total. Allocates nothing.
 */
export function modelledCost(
  stats: AccessStats,
  p: CostParams,
  out: CostBreakdown,
  shape: CostShape = DEFAULT_COST_SHAPE,
): number {
  const pageKiB = shape.pageSize / 1024;
  out.exit = stats.faults * p.exitNs;
  out.handler = stats.faults * p.handlerNs + (stats.maps + stats.relaxes) * p.faultinNs;
  out.walk =
    (stats.faults + stats.maps + stats.relaxes + stats.mkyoungs) * shape.levels * p.walkLevelNs +
    stats.hwAfUpdates * 2 * p.walkLevelNs;
  out.alloc = stats.tablePagesAllocated * (p.tablePageNs + pageKiB * p.zeroNsPerKiB);
  out.zero = stats.hostPagesZeroed * pageKiB * p.zeroNsPerKiB;
  out.dcache = stats.dcacheBytes * p.dcacheNsPerByte;
  out.icache = stats.icacheBytes * p.icacheNsPerByte + stats.icacheInvalAll * p.icacheInvalAllNs;
  out.tlbi =
    stats.tlbiIpa * p.tlbiIpaNs +
    stats.tlbiIpaNsh * p.tlbiIpaNshNs +
    stats.tlbiRange * p.tlbiRangeNs +
    stats.tlbiVmid * p.tlbiVmidNs;
  out.mte = stats.mtePagesCleared * (shape.pageSize / 4096) * p.mteNsPer4K;
  out.mmio = stats.exits * p.mmioExitNs;
  out.uffd = stats.uffdEvents * p.uffdNs;
  out.total =
    out.exit +
    out.handler +
    out.walk +
    out.alloc +
    out.zero +
    out.dcache +
    out.icache +
    out.tlbi +
    out.mte +
    out.mmio +
    out.uffd;
  return out.total;
}

/** Nanoseconds as "850 ns", "1.52 µs", "3.20 ms" or "1.20 s". */
export function formatNs(ns: number): string {
  const a = Math.abs(ns);
  if (a < 1e3) return `${a < 10 && a !== Math.round(a) ? ns.toFixed(1) : Math.round(ns)} ns`;
  if (a < 1e6) return `${(ns / 1e3).toFixed(a < 1e4 ? 2 : a < 1e5 ? 1 : 0)} µs`;
  if (a < 1e9) return `${(ns / 1e6).toFixed(a < 1e7 ? 2 : a < 1e8 ? 1 : 0)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

/**
 * The non-zero causes of `b`, largest first, as "dcache 129 ms, zero 55.8 ms" (at most
 * `max` of them). Returns '' when nothing was spent.
 */
export function formatBreakdown(b: CostBreakdown, max: number = COST_CAUSES.length): string {
  const parts: [CostCause, number][] = [];
  for (const c of COST_CAUSES) if (b[c] > 0) parts.push([c, b[c]]);
  parts.sort((x, y) => y[1] - x[1]);
  return parts
    .slice(0, max)
    .map(([c, v]) => `${c} ${formatNs(v)}`)
    .join(', ');
}

// ---- The calibration --------------------------------------------------------------------
//
// Published figures (issue 4):
//   [A] Ampere Altra, kvm-unit-tests arm/micro-bench: hypercall round trip ≈ 0.3 µs;
//       MMIO read exiting to userspace (mmio_read_user) ≈ 1.7 µs.
//   [P] Pixel 6 class core (Cortex-X1/A76): cleaning a 2 MiB block to PoC ≈ 100 µs,
//       i.e. ≈ 50 µs per MiB = 0.0477 ns per byte.
//   [K] Kunpeng 920 without FWB: creating 20 GiB of 1G hugetlbfs mappings with 40 vCPUs took
//       104.5 s before cache maintenance moved into the map walker and 3.7 s after (only the
//       vCPU that installs a mapping cleans it). Reading the two runs as Z + 40·C = 104.5 s
//       and Z + C = 3.7 s (Z: zeroing the 20 GiB once; C: cleaning it to PoC once; the
//       vCPUs that raced on one block serialised on its cache lines) gives C = 2.585 s and
//       Z = 1.115 s for 20 GiB: 0.1204 ns per byte cleaned (126 µs per MiB) and 53.2 ns per
//       KiB zeroed (≈ 19 GB/s). This decomposition is our reading, not a published split.
// Everything else is an estimate (marked "est."): the order of magnitude of the operation on
// a core of that class, not a measurement.

/** Bytes in the [K] experiment. */
const K_BYTES = 20 * 2 ** 30;
/** [K]: C per byte and Z per KiB from the two runs (see above). */
const K_CLEAN_NS_PER_BYTE = (((104.5 - 3.7) / 39) * 1e9) / K_BYTES;
const K_ZERO_NS_PER_KIB = ((3.7 - (104.5 - 3.7) / 39) * 1e9) / (K_BYTES / 1024);
/** [P]: 100 µs per 2 MiB. */
const P_CLEAN_NS_PER_BYTE = 100e3 / 2 ** 21;

/** Ampere Altra / Neoverse N1 (3.0 GHz, 80-128 cores on a CMN-600 mesh). */
export const COST_ALTRA: CostParams = {
  name: 'ampere-altra',
  source:
    'Exit and MMIO exit: kvm-unit-tests micro-bench on Ampere Altra (hypercall ≈ 0.3 µs, MMIO to ' +
    'userspace ≈ 1.7 µs). D-cache clean: the Pixel 6 figure (≈ 50 µs/MiB; the N1 is an A76 ' +
    'derivative), UNCONFIRMED for Altra. Zeroing: ≈ 19 GB/s (the Kunpeng 920 reading). The ' +
    'rest are estimates.',
  exitNs: 300, // [A] hypercall round trip ≈ 0.3 µs; an abort's trap and return taken as equal
  handlerNs: 150, // est.: ESR decode, gfn_to_memslot (memslot cache hit), SRCU
  faultinNs: 800, // est.: mmap_read_lock, vma_lookup, GUP-fast hit, mmu_lock, release
  walkLevelNs: 10, // est.: one descriptor load hitting L1/L2 per level
  tablePageNs: 250, // est.: page allocator fast path and memcache bookkeeping
  zeroNsPerKiB: 50, // est. from [K]: ≈ 20 GB/s DC ZVA on one core
  dcacheNsPerByte: P_CLEAN_NS_PER_BYTE, // [P] 50 µs/MiB, carried over from the A76 class
  icacheNsPerByte: 0.02, // est.: IC IVAU per 64-byte line ≈ 1.3 ns (Altra has DIC: unused)
  icacheInvalAllNs: 1000, // est.: IC IALLUIS broadcast to every core, DSB ISH
  tlbiIpaNs: 500, // est.: two broadcast TLBIs with DSB ISH across the mesh
  tlbiIpaNshNs: 100, // est.: local TLBIs, no DVM broadcast
  tlbiRangeNs: 700, // est. (the N1 has no FEAT_TLBIRANGE: KVM flushes the VMID instead)
  tlbiVmidNs: 800, // est.: TLBI VMALLS12E1IS + DSB ISH
  mteNsPer4K: 60, // est. (no MTE on Altra: unused): STGM over 4 KiB
  mmioExitNs: 1700 - 300 - 150 - 3 * 10, // [A] 1.7 µs round trip minus exit, handler, 3-level walk
  uffdNs: 15000, // est.: userfaultfd round trip (wake the VMM thread, UFFDIO_COPY, wake)
};

/** Arm Neoverse N1: the Altra values (the Altra's core is an N1). */
export const COST_NEOVERSE_N1: CostParams = {
  ...COST_ALTRA,
  name: 'neoverse-n1',
  source: 'The ampere-altra values (the Altra is built from N1 cores). ' + COST_ALTRA.source,
};

/** HiSilicon Kunpeng 920 (TaiShan v110, 2.6 GHz, no FWB). */
export const COST_KUNPENG_920: CostParams = {
  name: 'kunpeng-920',
  source:
    'D-cache clean (0.120 ns/byte, 126 µs/MiB) and zeroing (53 ns/KiB) derived from the ' +
    '20 GiB / 40 vCPU 1G-hugetlbfs figures (104.5 s before, 3.7 s after moving CMOs into the map ' +
    'walker; see cost.ts). Exit, handler and MMIO: the Altra values scaled by clock (3.0/2.6 GHz), ' +
    'UNCONFIRMED. The rest are estimates.',
  exitNs: 350, // [A] × 3.0/2.6, UNCONFIRMED
  handlerNs: 175, // est. (Altra × 1.15)
  faultinNs: 925, // est. (Altra × 1.15)
  walkLevelNs: 12, // est.
  tablePageNs: 290, // est.
  zeroNsPerKiB: K_ZERO_NS_PER_KIB, // [K] derived: 53.2 ns/KiB
  dcacheNsPerByte: K_CLEAN_NS_PER_BYTE, // [K] derived: 0.1204 ns/byte
  icacheNsPerByte: 0.025, // est.
  icacheInvalAllNs: 1200, // est.
  tlbiIpaNs: 550, // est.
  tlbiIpaNshNs: 115, // est.
  tlbiRangeNs: 800, // est. (no FEAT_TLBIRANGE: unused unless overridden)
  tlbiVmidNs: 900, // est.
  mteNsPer4K: 70, // est. (no MTE: unused)
  mmioExitNs: Math.round((1700 * 3.0) / 2.6) - 350 - 175 - 3 * 12, // [A] × 3.0/2.6 minus exit, handler, walk; UNCONFIRMED
  uffdNs: 17000, // est.
};

/** Cortex-A76 class (Pixel 6: X1 at 2.8 GHz, A76 at 2.25 GHz). */
export const COST_CORTEX_A76: CostParams = {
  name: 'cortex-a76',
  source:
    'D-cache clean: ≈ 100 µs per 2 MiB block on a Pixel 6 class core (≈ 50 µs/MiB). Exit, handler ' +
    'and MMIO: the Altra values scaled by clock (3.0/2.25 GHz), UNCONFIRMED. The rest are estimates.',
  exitNs: 400, // [A] × 3.0/2.25, UNCONFIRMED
  handlerNs: 200, // est.
  faultinNs: 1050, // est.
  walkLevelNs: 12, // est.
  tablePageNs: 330, // est.
  zeroNsPerKiB: 70, // est.: ≈ 14 GB/s on LPDDR5
  dcacheNsPerByte: P_CLEAN_NS_PER_BYTE, // [P] 100 µs / 2 MiB
  icacheNsPerByte: 0.025, // est.
  icacheInvalAllNs: 800, // est. (fewer cores to broadcast to)
  tlbiIpaNs: 400, // est.
  tlbiIpaNshNs: 120, // est.
  tlbiRangeNs: 600, // est. (no FEAT_TLBIRANGE: unused unless overridden)
  tlbiVmidNs: 700, // est.
  mteNsPer4K: 80, // est. (no MTE on A76: unused)
  mmioExitNs: Math.round((1700 * 3.0) / 2.25) - 400 - 200 - 3 * 12, // [A] × 3.0/2.25 minus exit, handler, walk; UNCONFIRMED
  uffdNs: 20000, // est.
};

/** NVIDIA Grace (Neoverse V2, 3.1-3.4 GHz, FWB and DIC). */
export const COST_GRACE: CostParams = {
  name: 'grace',
  source:
    'No published KVM micro-benchmark known: exit, handler and MMIO are the Altra values scaled ' +
    'by ≈ 1.2 (clock and IPC), UNCONFIRMED. With FWB and DIC the D-cache and I-cache costs are ' +
    'never paid (they apply only if a scenario overrides fwb/dic). The rest are estimates.',
  exitNs: 250, // [A] / 1.2, UNCONFIRMED
  handlerNs: 120, // est.
  faultinNs: 650, // est.
  walkLevelNs: 8, // est.
  tablePageNs: 200, // est.
  zeroNsPerKiB: 35, // est.: ≈ 30 GB/s DC ZVA on one V2 core with LPDDR5X
  dcacheNsPerByte: 0.04, // est. (FWB: unused unless overridden)
  icacheNsPerByte: 0.015, // est. (DIC: unused unless overridden)
  icacheInvalAllNs: 800, // est.
  tlbiIpaNs: 400, // est.
  tlbiIpaNshNs: 80, // est.
  tlbiRangeNs: 500, // est.: one TLBI RIPAS2E1IS + barriers covers the range
  tlbiVmidNs: 600, // est.
  mteNsPer4K: 50, // est. (Grace does not expose MTE: applies only with an mte override)
  mmioExitNs: Math.round(1700 / 1.2) - 250 - 120 - 3 * 8, // [A] / 1.2 minus exit, handler, walk; UNCONFIRMED
  uffdNs: 12000, // est.
};

/** A generic Armv8.0 core: no calibration at all; the Altra values × 1.5. */
export const COST_GENERIC_V8: CostParams = {
  name: 'generic-v8',
  source: 'No calibration: the Altra values × 1.5 (a slower, unspecified core). Use for shape only.',
  exitNs: 450,
  handlerNs: 225,
  faultinNs: 1200,
  walkLevelNs: 15,
  tablePageNs: 375,
  zeroNsPerKiB: 75,
  dcacheNsPerByte: P_CLEAN_NS_PER_BYTE * 1.5,
  icacheNsPerByte: 0.03,
  icacheInvalAllNs: 1500,
  tlbiIpaNs: 750,
  tlbiIpaNshNs: 150,
  tlbiRangeNs: 1050,
  tlbiVmidNs: 1200,
  mteNsPer4K: 90,
  mmioExitNs: 1830, // so that exit + handler + 3-level walk + mmio = 1.5 × 1.7 µs
  uffdNs: 22500,
};
