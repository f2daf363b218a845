/**
 * Host events that change what backs a live memslot, as the VMM and the kernel make them:
 * munmap() and MAP_FIXED mmap() over existing VMAs (with the VMA splits __split_vma() makes),
 * memory_failure() on a page (mm/memory-failure.c), and UFFDIO_REGISTER. Each sends the
 * MMU-notifier invalidation the kernel sends, so KVM unmaps stage 2 before the host mapping
 * changes. These are control-plane operations: they may allocate (new VMA generations).
 */

import { HOST_LEVEL_PMD, HPTE_PRESENT, HPTE_ZERO, newHostLeaf } from './hostpt.js';
import { FAULTIN_OK, FollowPfn, type Mm, type VmaSpec } from './mm.js';
import {
  VM_UFFD_MISSING,
  VM_WRITE,
  vmaLookup,
  vmaSetRemoveRange,
  vmaSetUpdate,
  type UffdRegistration,
  type Vma,
} from './vma.js';

/** errno values (negated) these operations return. */
const EINVAL = -22;

/**
 * munmap(start, end - start) (mm/vma.c do_vmi_munmap()): the MMU-notifier invalidation of the
 * whole range around zapping every VMA's part of it (unmap_region()), then the VMAs leave the
 * address space, split where the range ends inside one. A hugetlb VMA can only be split at a
 * multiple of its huge page (hugetlb_vm_op_split() refuses with −EINVAL, and nothing is
 * unmapped). Returns 0 or −EINVAL.
 */
export function munmapRange(mm: Mm, start: number, end: number): number {
  const ps = mm.granule.pageSize;
  if (start % ps !== 0 || end <= start) return EINVAL;
  end = Math.ceil(end / ps) * ps;
  const hit: Vma[] = [];
  for (const v of mm.vmas.vmas) if (v.start < end && v.end > start) hit.push(v);
  if (hit.length === 0) return 0;
  for (const v of hit) {
    if (v.backing !== 'hugetlb') continue;
    const hp = 2 ** v.hugeShift;
    if ((start > v.start && start % hp !== 0) || (end < v.end && end % hp !== 0)) return EINVAL;
  }
  mm.notifier.invalidateRangeStart(start, end);
  for (const v of hit) {
    const a = Math.max(v.start, start);
    const b = Math.min(v.end, end);
    mm.zapRange(v, a, b);
    // The page-table entries go with the VMA: no zapped pfnmap marker is left for whatever
    // is mapped here next.
    mm.pt.forEach(a, b, (level, base) => mm.pt.clear(level, base));
  }
  mm.vmas = vmaSetRemoveRange(mm.vmas, start, end, ps, () => mm.nextVmaId++);
  mm.notifier.invalidateRangeEnd(start, end);
  return 0;
}

/**
 * mmap(MAP_FIXED) of `spec`: whatever the range held is unmapped first (munmapRange(), with its
 * invalidation), then the new VMA is inserted. Returns the new Vma, or a message saying why not.
 */
export function mmapFixed(mm: Mm, spec: VmaSpec): Vma | string {
  const r = munmapRange(mm, spec.start, spec.start + spec.size);
  if (r)
    return 'munmap of the replaced range failed with EINVAL (a hugetlb VMA split off its huge page size)';
  return mm.mmap(spec);
}

/**
 * UFFDIO_REGISTER (UFFDIO_REGISTER_MODE_MISSING) of the whole VMA: VM_UFFD_MISSING and how the
 * VMM answers. Returns the updated Vma.
 */
export function uffdRegister(
  mm: Mm,
  vma: Vma,
  resolve: 'page' | 'range',
  copyFrom: 'registration' | 'zero',
): Vma {
  const uffd: UffdRegistration = { resolve, copyFrom, start: vma.start, end: vma.end };
  mm.vmas = vmaSetUpdate(mm.vmas, vma.id, { vmFlags: vma.vmFlags | VM_UFFD_MISSING, uffd });
  return vmaLookup(mm.vmas, vma.start) as Vma;
}

/**
 * What the VMM keeps at UFFDIO_REGISTER for copyFrom "registration": the bytes of every page of
 * [start, end) that holds any (contents.ts), by page hva, in `mm.uffdSource`. Pages with
 * nothing stored read as zeroes and need no copy.
 */
export function uffdSnapshot(mm: Mm, start: number, end: number): void {
  const ps = mm.granule.pageSize;
  const contents = mm.phys.contents;
  mm.pt.forEach(start, end, (_level, base, pfn, flags) => {
    if ((flags & HPTE_PRESENT) === 0 || (flags & HPTE_ZERO) !== 0) return;
    const size = 2 ** mm.pt.shifts[_level]!;
    for (let a = Math.max(base, start); a < Math.min(base + size, end); a += ps) {
      const p = pfn + (a - base) / ps;
      if (contents.has(p)) mm.uffdSource.set(a, contents.readBytes(p, 0, ps));
    }
  });
}

/** What memoryFailure() did. */
export interface MemoryFailureResult {
  /** The poisoned pfn, or −1 when nothing was poisoned. */
  pfn: number;
  /** The host range whose mapping was removed (with its MMU-notifier invalidation). */
  start: number;
  end: number;
  /** Why nothing was poisoned, when pfn is −1. */
  reason?: string;
}

const leaf = newHostLeaf();

/**
 * memory_failure() on the page backing hva (mm/memory-failure.c), as the VMM's mapping sees it:
 * - the page is first faulted in if nothing backs the address (a write where the VMA is
 *   writable), so that there is a page to fail;
 * - a shared zero page is reserved: memory_failure() ignores it (MF_IGNORED);
 * - a THP is split first (try_to_split_thp_page(), with the split's own invalidation of the
 *   whole PMD), then only the failed base page is unmapped;
 * - a hugetlb page is unmapped whole, and its head flagged (folio_set_hwpoison);
 * - hwpoison_user_mappings() unmaps the page with the MMU-notifier invalidation of its range.
 *   The model keeps the host entry pointing at the poisoned pfn, standing for the hwpoison
 *   swap entry try_to_unmap() leaves: a later GUP of it fails with −EHWPOISON either way.
 */
export function memoryFailure(mm: Mm, hva: number): MemoryFailureResult {
  const ps = mm.granule.pageSize;
  const vma = vmaLookup(mm.vmas, hva);
  if (vma === undefined) return { pfn: -1, start: 0, end: 0, reason: 'no VMA maps the address' };
  if (!(mm.pt.lookup(hva, leaf) && (leaf.flags & HPTE_PRESENT) !== 0)) {
    const r = new FollowPfn();
    mm.faultinPfn(hva, (vma.vmFlags & VM_WRITE) !== 0, r);
    if (r.err !== FAULTIN_OK)
      return { pfn: -1, start: 0, end: 0, reason: 'the page could not be faulted in' };
    mm.releaseFaultinPage(r, true, false);
    mm.pt.lookup(hva, leaf);
  }
  if ((leaf.flags & HPTE_ZERO) !== 0)
    return { pfn: -1, start: 0, end: 0, reason: 'the zero page is reserved (MF_IGNORED)' };
  const phys = mm.phys;
  if (vma.backing === 'hugetlb') {
    const size = 2 ** vma.hugeShift;
    const start = Math.floor(hva / size) * size;
    const pfn = leaf.pfn + Math.floor((hva - leaf.base) / ps);
    phys.setHwPoison(pfn, true);
    phys.setHwPoison(phys.folioHead(pfn), true);
    mm.notifier.invalidateRangeStart(start, start + size);
    mm.notifier.invalidateRangeEnd(start, start + size);
    return { pfn, start, end: start + size };
  }
  if (leaf.level >= HOST_LEVEL_PMD) {
    // try_to_split_thp_page(): split_huge_page() first, so only the failed page goes.
    mm.splitLeaf(leaf.level, leaf.base);
    mm.pt.lookup(hva, leaf);
  }
  const start = Math.floor(hva / ps) * ps;
  const pfn = leaf.pfn + Math.floor((hva - leaf.base) / ps);
  phys.setHwPoison(pfn, true);
  mm.notifier.invalidateRangeStart(start, start + ps);
  mm.notifier.invalidateRangeEnd(start, start + ps);
  return { pfn, start, end: start + ps };
}
