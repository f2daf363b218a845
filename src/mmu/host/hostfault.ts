/**
 * The host's own page-fault handling, behind both GUP and the VMM's own accesses: what
 * handle_mm_fault() runs for a missing entry (do_anonymous_page(), the THP and huge-zero
 * variants of mm/huge_memory.c, hugetlb_no_page() of mm/hugetlb.c, shmem and private file
 * faults, a pfnmap/mixedmap driver's (huge_)fault, handle_userfault() with the VMM's
 * UFFDIO_COPY answer) and for a write to a read-only one (do_wp_page(), do_huge_pmd_wp_page(),
 * hugetlb_wp()), and __split_huge_pmd()/pud.
 *
 * Each function takes the Mm it works on, as the kernel's take the vma or the vm_fault. The
 * steps work on the fault's address carrier `at` and hand addresses and pfns to the host page
 * table in `mm.ins` (pt.setOp), computing with Math.floor and the POW2 table rather than
 * helpers: any call that takes or returns a double past 2^31 would box it into a new heap
 * number wherever V8 does not inline the call (docs/performance.md, "calling convention").
 */
import { POW2, pow2 } from './granule.js';
import {
  HOST_LEVEL_PMD,
  HOST_LEVEL_PTE,
  HOST_LEVEL_PUD,
  HPTE_CONT,
  HPTE_FILE,
  HPTE_OWNED,
  HPTE_PRESENT,
  HPTE_SPECIAL,
  HPTE_WRITE,
  HPTE_ZAPPED,
  HPTE_ZERO,
  newHostLeaf,
  type HostLeaf,
} from './hostpt.js';
import type { Mm } from './mm.js';
import type { HvaOp, PfnOp } from './op.js';
import {
  MT_NORMAL_TAGGED,
  VM_SHARED,
  VM_UFFD_MISSING,
  VM_WRITE,
  vmaLookup,
  vmaNameStart,
  type Vma,
} from './vma.js';

/**
 * Walks the host table for `at.hva` into `mm.leaf`, first synthesising the driver's entry for
 * an untouched pfnmap/mixedmap (its entries are present from mmap() on; the model installs
 * them on first walk). Returns `mm.leaf` (borrowed: the next walk overwrites it).
 */
export function hostWalk(mm: Mm, vma: Vma, at: HvaOp): HostLeaf {
  const pt = mm.pt;
  const l = mm.leaf;
  pt.lookupOp(at, l);
  if (l.flags === 0 && (vma.backing === 'pfnmap' || vma.backing === 'mixedmap')) {
    installPfnEntry(mm, vma, at, l.level);
    pt.lookupOp(at, l);
  }
  return l;
}

/**
 * A pfnmap/mixedmap driver's (huge_)fault: install the largest entry the
 * hostMapping allows at hva, no larger than `maxLevel` (where the walk met
 * an empty entry), congruent with the physical address and inside the VMA.
 * Writable exactly when the VMA is shared and writable.
 */
function installPfnEntry(mm: Mm, vma: Vma, at: HvaOp, maxLevel: number): void {
  const hva = at.hva;
  const g = mm.granule;
  const pt = mm.pt;
  const level = choosePfnLevel(mm, vma, at, maxLevel);
  const size = POW2[pt.shifts[level]]!;
  const base = Math.floor(hva / size) * size;
  const ins = mm.ins;
  ins.pfn = vma.pgoff + (base - vma.start) / g.pageSize;
  let flags = HPTE_PRESENT;
  if ((vma.vmFlags & (VM_SHARED | VM_WRITE)) === (VM_SHARED | VM_WRITE)) flags |= HPTE_WRITE;
  // remap_pfn_range() and vmf_insert_mixed() both install special entries on arm64
  // (CONFIG_ARCH_HAS_PTE_SPECIAL: insert_pfn() marks every entry special, RAM or not).
  flags |= HPTE_SPECIAL;
  ins.hva = base;
  pt.setOp(ins, level, flags);
}

/** The largest pfnmap entry level allowed at hva: hostMapping, maxLevel, congruence and VMA bounds. */
function choosePfnLevel(mm: Mm, vma: Vma, at: HvaOp, maxLevel: number): number {
  const hva = at.hva;
  const want = vma.hostMapping === 'pud' ? HOST_LEVEL_PUD : vma.hostMapping === 'pmd' ? HOST_LEVEL_PMD : 0;
  // The physical address at hva: the VMA's first pfn, plus the offset into the VMA.
  const pa = vma.pgoff * mm.granule.pageSize + (hva - vma.start);
  let level = Math.min(want, maxLevel);
  for (; level > HOST_LEVEL_PTE; level--) {
    const size = POW2[mm.pt.shifts[level]]!;
    const base = Math.floor(hva / size) * size;
    if (hva - base === pa - Math.floor(pa / size) * size && base >= vma.start && base + size <= vma.end)
      break;
  }
  return level;
}

/**
 * Handles a not-present entry at `at.hva` (do_anonymous_page, do_huge_pmd_anonymous_page,
 * hugetlb_no_page, shmem_fault, driver faults, handle_userfault). Reads the walk the caller
 * just made (`mm.leaf`, from hostWalk()). Returns false when nothing could be installed (no
 * memory, or no zero page).
 */
export function populate(mm: Mm, vma: Vma, at: HvaOp, write: boolean): boolean {
  const hva = at.hva;
  const g = mm.granule;
  const pt = mm.pt;
  const l = mm.leaf;
  const canWrite = (vma.vmFlags & VM_WRITE) !== 0;
  const shared = (vma.vmFlags & VM_SHARED) !== 0;
  switch (vma.backing) {
    case 'pfnmap':
    case 'mixedmap': {
      // Zapped: the driver's fault handler refills it (vfio-style). Narrow
      // a large zapped marker first so the rest of its range stays zapped.
      const level = choosePfnLevel(mm, vma, at, l.level);
      const ins = mm.ins;
      while (l.level > level) {
        const base = l.base;
        const from = l.level;
        const sub = POW2[pt.shifts[from - 1]]!;
        ins.hva = base;
        pt.clearOp(ins, from);
        ins.pfn = 0;
        for (let i = 0; i < POW2[g.tableBits]!; i++) {
          ins.hva = base + i * sub;
          pt.setOp(ins, from - 1, HPTE_ZAPPED);
        }
        pt.lookupOp(at, l);
      }
      ins.hva = l.base;
      pt.clearOp(ins, l.level);
      installPfnEntry(mm, vma, at, level);
      return true;
    }
    case 'hugetlb':
      return populateHugetlb(mm, vma, at, write);
    default:
      break;
  }
  // handle_userfault(): the VMM resolves it with UFFDIO_COPY (uffd.ts, handleUserfault).
  if ((vma.vmFlags & VM_UFFD_MISSING) !== 0) return handleUserfault(mm, vma, at, write);
  if (vma.backing === 'shmem') {
    if (shared) return installNewPage(mm, vma, at, canWrite ? HPTE_WRITE : 0);
    // Private file mapping: a read maps the file page read-only; a write
    // (do_cow_fault) maps a private copy.
    return installNewPage(mm, vma, at, write ? HPTE_WRITE : HPTE_FILE);
  }
  if (vma.backing === 'thp' && l.level >= HOST_LEVEL_PMD) {
    const size = POW2[g.pmdShift]!;
    const base = Math.floor(hva / size) * size;
    if (base >= vma.start && base + size <= vma.end) {
      const phys = mm.phys;
      const ins = mm.ins;
      if (write) {
        if (phys.allocFolioInto(g.pmdShift - g.pageShift, false, ins)) {
          mm.stats.faultAllocs++;
          ins.hva = base;
          if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, POW2[g.pmdShift - g.pageShift]!);
          pt.setOp(ins, HOST_LEVEL_PMD, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
          return true;
        }
      } else if (phys.hugeZeroPfnInto(ins)) {
        ins.hva = base;
        pt.setOp(ins, HOST_LEVEL_PMD, HPTE_PRESENT | HPTE_ZERO);
        return true;
      }
      // Allocation failed: fall back to base pages, as the kernel does.
    }
  }
  if (write) return installNewPage(mm, vma, at, HPTE_WRITE);
  const z = mm.phys.zeroPfn;
  if (z < 0) return false;
  const ins = mm.ins;
  ins.hva = Math.floor(hva / g.pageSize) * g.pageSize;
  ins.pfn = z;
  pt.setOp(ins, HOST_LEVEL_PTE, HPTE_PRESENT | HPTE_ZERO);
  return true;
}

/**
 * handle_userfault() on a missing page of a registered VMA, at `at.hva`: the event goes to
 * the VMM (uffdLog), which answers with UFFDIO_COPY of that page (resolve "page") or of every
 * page of the registered range still missing (resolve "range"; one event fills them all). A
 * hugetlb VMA's unit is its huge page, as hugetlb_mfill_atomic_pte() copies.
 */
function handleUserfault(mm: Mm, vma: Vma, at: HvaOp, write: boolean): boolean {
  const hva = at.hva;
  const unit = vma.backing === 'hugetlb' ? POW2[vma.hugeShift]! : mm.granule.pageSize;
  const page = Math.floor(hva / unit) * unit;
  mm.stats.uffdEvents++;
  mm.uffdLog.push(vma.name, page - vmaNameStart(vma), write);
  const reg = vma.uffd;
  if (reg !== undefined && reg.resolve === 'range') {
    for (let a = reg.start; a < reg.end; a += unit) {
      if (a === page) continue;
      const v = vmaLookup(mm.vmas, a);
      if (v === undefined || (v.vmFlags & VM_UFFD_MISSING) === 0) continue;
      const other = mm.arg;
      other.hva = a;
      if ((hostWalk(mm, v, other).flags & HPTE_PRESENT) === 0 && !uffdCopy(mm, v, other)) break;
    }
  }
  return uffdCopy(mm, vma, at);
}

/**
 * UFFDIO_COPY of the page (hugetlb: huge page) at `at.hva`: a new page, writable when the
 * VMA is, holding what the registration says (copyFrom; the contents store fills it).
 */
function uffdCopy(mm: Mm, vma: Vma, at: HvaOp): boolean {
  const ok =
    vma.backing === 'hugetlb'
      ? populateHugetlb(mm, vma, at, false, true)
      : installNewPage(mm, vma, at, (vma.vmFlags & VM_WRITE) !== 0 ? HPTE_WRITE : 0);
  if (ok && mm.uffdSource.size !== 0 && vma.uffd !== undefined && vma.uffd.copyFrom === 'registration')
    uffdFill(mm, vma, at);
  return ok;
}

/** The bytes UFFDIO_COPY puts in the page (or huge page) just installed at `at.hva`. */
function uffdFill(mm: Mm, vma: Vma, at: HvaOp): void {
  const ps = mm.granule.pageSize;
  const unit = vma.backing === 'hugetlb' ? POW2[vma.hugeShift]! : ps;
  const base = Math.floor(at.hva / unit) * unit;
  const l = leafScratch;
  if (!mm.pt.lookup(base, l)) return;
  for (let a = base; a < base + unit; a += ps) {
    const bytes = mm.uffdSource.get(a);
    if (bytes !== undefined) mm.phys.contents.writeBytes(l.pfn + (a - l.base) / ps, 0, bytes);
  }
}

/** A new base page at `at.hva`, present and owned, plus `extra` (HPTE_WRITE, HPTE_FILE). */
function installNewPage(mm: Mm, vma: Vma, at: HvaOp, extra: number): boolean {
  const phys = mm.phys;
  const ins = mm.ins;
  if (!phys.allocFolioInto(0, false, ins)) return false;
  mm.stats.faultAllocs++;
  const ps = mm.granule.pageSize;
  ins.hva = Math.floor(at.hva / ps) * ps;
  if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, 1);
  mm.pt.setOp(ins, HOST_LEVEL_PTE, HPTE_PRESENT | HPTE_OWNED | extra);
  return true;
}

/** hugetlb_no_page(): allocate a folio of the hstate size and map it at its level (cont entries for cont sizes). */
function populateHugetlb(mm: Mm, vma: Vma, at: HvaOp, write: boolean, uffdCopy = false): boolean {
  const g = mm.granule;
  if (!uffdCopy && (vma.vmFlags & VM_UFFD_MISSING) !== 0) return handleUserfault(mm, vma, at, write);
  const phys = mm.phys;
  const folio = mm.head;
  if (!phys.allocFolioInto(vma.hugeShift - g.pageShift, true, folio)) return false;
  mm.stats.faultAllocs++;
  if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(folio, POW2[vma.hugeShift - g.pageShift]!);
  const canWrite = (vma.vmFlags & VM_WRITE) !== 0;
  const shared = (vma.vmFlags & VM_SHARED) !== 0;
  const uffd = (vma.vmFlags & VM_UFFD_MISSING) !== 0;
  const flags = HPTE_PRESENT | HPTE_OWNED | (canWrite && (shared || write || uffd) ? HPTE_WRITE : 0);
  setHugetlbEntries(mm, at, folio, vma.hugeShift, flags);
  return true;
}

/**
 * The entries of the hugetlb folio whose head is `folio.pfn` covering `at.hva` (one leaf, or
 * the contiguous run of a CONT size), with `flags`.
 */
function setHugetlbEntries(mm: Mm, at: HvaOp, folio: PfnOp, hugeShift: number, flags: number): void {
  const pfn = folio.pfn;
  const g = mm.granule;
  const pt = mm.pt;
  const size = POW2[hugeShift]!;
  const base = Math.floor(at.hva / size) * size;
  const level =
    hugeShift >= g.pudShift ? HOST_LEVEL_PUD : hugeShift >= g.pmdShift ? HOST_LEVEL_PMD : HOST_LEVEL_PTE;
  const entryShift = pt.shifts[level];
  const n = POW2[hugeShift - entryShift]!;
  const cont = n > 1 ? HPTE_CONT : 0;
  const entrySize = POW2[entryShift]!;
  const entryPages = POW2[entryShift - g.pageShift]!;
  const ins = mm.ins;
  for (let i = 0; i < n; i++) {
    ins.hva = base + i * entrySize;
    ins.pfn = pfn + i * entryPages;
    pt.setOp(ins, level, flags | cont);
  }
}

/**
 * A write to a present read-only entry at `at.hva` (do_wp_page / do_huge_pmd_wp_page /
 * hugetlb_wp): copy-on-write with MMU-notifier invalidation when the page must be replaced,
 * or reuse (just make it writable) when it is exclusively owned. Reads the walk the caller
 * just made (`mm.leaf`). The caller has checked VM_WRITE. Returns false when no page could be
 * had, or for a shared raw-pfn entry the driver mapped read-only.
 */
export function wpFault(mm: Mm, vma: Vma, at: HvaOp): boolean {
  const hva = at.hva;
  const g = mm.granule;
  const l = mm.leaf;
  const f = l.flags;
  if ((f & HPTE_ZERO) !== 0 && l.level === HOST_LEVEL_PMD) {
    const base = l.base;
    const size = pow2(g.pmdShift);
    if (mm.hugeZeroWrite === 'pmd-folio') {
      const n = mm.notifier;
      mm.range.start = base;
      mm.range.end = base + size;
      n.invalidateRangeStartOp(mm.range);
      const phys = mm.phys;
      const ins = mm.ins;
      const ok = phys.allocFolioInto(g.pmdShift - g.pageShift, false, ins);
      if (ok) {
        mm.stats.faultAllocs++;
        mm.stats.cowBreaks++;
        ins.hva = base;
        if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, POW2[g.pmdShift - g.pageShift]!);
        mm.pt.setOp(ins, HOST_LEVEL_PMD, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
      }
      n.invalidateRangeEnd();
      if (ok) return true;
    }
    // do_huge_pmd_wp_page(): huge zero → __split_huge_pmd() into 4K zero PTEs, then a PTE fault.
    splitLeaf(mm, HOST_LEVEL_PMD, base);
    mm.pt.lookup(hva, l);
  }
  if ((l.flags & HPTE_SPECIAL) !== 0 && l.level > HOST_LEVEL_PTE) {
    // COW of a huge raw-pfn entry: split it down to pages first.
    while (l.level > HOST_LEVEL_PTE) {
      splitLeaf(mm, l.level, l.base);
      mm.pt.lookup(hva, l);
    }
  }
  const lf = l.flags;
  const needsCopy =
    (lf & (HPTE_ZERO | HPTE_FILE)) !== 0 || ((lf & HPTE_SPECIAL) !== 0 && (vma.vmFlags & VM_SHARED) === 0);
  if (needsCopy) {
    // wp_page_copy(): invalidate, allocate a private copy, install it writable.
    const base = l.base;
    const n = mm.notifier;
    mm.range.start = base;
    mm.range.end = base + g.pageSize;
    n.invalidateRangeStartOp(mm.range);
    const phys = mm.phys;
    const ins = mm.ins;
    const ok = phys.allocFolioInto(0, false, ins);
    if (ok) {
      mm.stats.faultAllocs++;
      mm.stats.cowBreaks++;
      // copy_user_highpage(): the private copy starts with the old page's bytes (the zero
      // page has none; a private file page or a COW pfnmap page may).
      if (phys.contents.pagesStored !== 0) phys.contents.copy(l.pfn, ins.pfn, 1);
      ins.hva = base;
      if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, 1);
      mm.pt.setOp(ins, HOST_LEVEL_PTE, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
    }
    n.invalidateRangeEnd();
    return ok;
  }
  if ((lf & HPTE_SPECIAL) !== 0) return false; // shared raw pfn that the driver mapped read-only
  // Exclusively owned page (anon, hugetlb, shmem): reuse, make writable.
  if ((lf & HPTE_CONT) !== 0 && vma.backing === 'hugetlb') {
    const folio = mm.head;
    folio.pfn = l.pfn;
    mm.phys.folioHeadOp(folio, folio);
    setHugetlbEntries(mm, at, folio, vma.hugeShift, (lf | HPTE_WRITE) & ~HPTE_CONT);
  } else {
    const ins = mm.ins;
    ins.hva = l.base;
    mm.pt.updateFlagsOp(ins, l.level, HPTE_WRITE, 0xffff);
  }
  return true;
}

/**
 * Splits the leaf at (level, base) into a table of next-level leaves mapping the same pfns
 * (__split_huge_pmd/pud, mm/huge_memory.c), with the notifier invalidation over the leaf's
 * range that the kernel issues. Does nothing when no present leaf of that level is there.
 * Cold path (the huge zero page's write fault, partial unmaps, memory_failure).
 */
export function splitLeaf(mm: Mm, level: number, base: number): void {
  const g = mm.granule;
  const pt = mm.pt;
  const l = leafScratch;
  pt.lookup(base, l);
  if (l.level !== level || (l.flags & HPTE_PRESENT) === 0) return;
  const size = pow2(pt.shifts[level]);
  mm.notifier.invalidateRangeStart(base, base + size);
  const sub = pt.shifts[level - 1];
  const n = pow2(g.tableBits);
  const pfn0 = l.pfn;
  const flags = l.flags & ~HPTE_CONT;
  pt.clear(level, base);
  // A split huge zero PMD maps the 4K zero page in every PTE (__split_huge_zero_page_pmd).
  const zero = (flags & HPTE_ZERO) !== 0 && level - 1 === HOST_LEVEL_PTE;
  const step = zero ? 0 : pow2(sub - g.pageShift);
  const first = zero ? mm.phys.zeroPfn : pfn0;
  for (let i = 0; i < n; i++) pt.set(level - 1, base + i * pow2(sub), first + i * step, flags);
  mm.stats.splits++;
  mm.notifier.invalidateRangeEnd(base, base + size);
}

/** The leaf the cold paths (uffdFill, splitLeaf) look up into; each reads it right after its own lookup. */
const leafScratch: HostLeaf = newHostLeaf();
