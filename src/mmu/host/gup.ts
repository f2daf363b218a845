/**
 * The GUP side: how KVM gets a pfn for a host virtual address. hva_to_pfn() with its three
 * ways in (virt/kvm/kvm_main.c: GUP-fast, GUP proper of mm/gup.c, hva_to_pfn_remapped() for
 * VM_IO|VM_PFNMAP), the walk inside get_user_mapping_size() (arch/arm64/kvm/mmu.c) and
 * kvm_release_faultin_page(). GUP proper faults pages in through the host's own fault
 * handlers (hostfault.ts).
 *
 * Each function takes the Mm it works on, as the kernel's take the mm; addresses arrive in a
 * carrier (`FollowPfn`, `HvaOp`), never as a double argument (docs/performance.md, "calling
 * convention"), so a fault allocates nothing here.
 */
import { DOUBLE_FIELD } from '../../pgtable/op.js';
import { HPTE_PRESENT, HPTE_SPECIAL, HPTE_WRITE } from './hostpt.js';
import { hostWalk, populate, wpFault } from './hostfault.js';
import type { Mm } from './mm.js';
import type { HvaOp } from './op.js';
import { VM_IO, VM_PFNMAP, VM_READ, VM_WRITE, vmaLookupOp } from './vma.js';

/** FollowPfn.err: none. */
export const FAULTIN_OK = 0;
/** FollowPfn.err: KVM_PFN_ERR_FAULT (no VMA, protection denies, out of memory, no driver fault). */
export const KVM_PFN_ERR_FAULT = 1;
/** FollowPfn.err: KVM_PFN_ERR_HWPOISON (GUP returned -EHWPOISON). */
export const KVM_PFN_ERR_HWPOISON = 2;
/**
 * FollowPfn.err: KVM_PFN_ERR_RO_FAULT (hva_to_pfn_remapped(): a write fault found a
 * present, read-only entry in a VM_IO/VM_PFNMAP VMA).
 */
export const KVM_PFN_ERR_RO_FAULT = 3;

/**
 * struct kvm_follow_pfn: what hva_to_pfn() takes and fills. In: the host address `hva` and
 * `write` (FOLL_WRITE); out: the pfn and what came with it. The caller owns and reuses it (the
 * fault object embeds one, S2Fault.follow); addresses travel in its fields because a double
 * argument or return value past 2^31 becomes a new heap number at every call V8 does not
 * inline.
 */
export class FollowPfn {
  /** In: the host virtual address to look up. */
  hva = DOUBLE_FIELD;
  /** In: FOLL_WRITE (a write fault: the host entry must become writable). */
  write = false;
  /** The host pfn, or -1 on error. */
  pfn = DOUBLE_FIELD;
  /** The host mapping is writable (so KVM may map stage 2 writable): map_writable. */
  writable = false;
  /** A refcounted struct page is held (refcounted_page; KVM must release it: releaseFaultinPage). */
  page = false;
  /** FAULTIN_OK, KVM_PFN_ERR_FAULT, KVM_PFN_ERR_HWPOISON or KVM_PFN_ERR_RO_FAULT. */
  err = FAULTIN_OK;
  /** log2 of the backing's page size (hstate shift for hugetlb, else PAGE_SHIFT); the SIGBUS lsb source. */
  vmaShift = 0;
}

/**
 * The walk inside get_user_mapping_size() for `op.hva`, as a shift: the host leaf's log2 size
 * (PAGE, PMD or PUD; a contiguous-hint entry reports its level's), or 0 when there is no VMA
 * or no valid leaf (KVM then returns -EAGAIN). pfnmap/mixedmap entries count as present unless
 * zapped. A shift, not a size: a size could exceed 2^31 and be boxed on return.
 */
export function hostLeafShiftOp(mm: Mm, op: HvaOp): number {
  const vma = vmaLookupOp(mm.vmas, op);
  if (vma === undefined) return 0;
  const l = hostWalk(mm, vma, op);
  return (l.flags & HPTE_PRESENT) !== 0 ? l.shift : 0;
}

/**
 * hva_to_pfn(kfp): the pfn behind `kfp.hva` (for write when `kfp.write`), into `kfp`. The
 * order is hva_to_pfn()'s (virt/kvm/kvm_main.c, v6.17):
 * 1. hva_to_pfn_fast(): lockless GUP with FOLL_WRITE (tried for a read too, since arm64
 *    always asks for map_writable); it takes a present, writable, non-special entry.
 * 2. hva_to_pfn_slow(): GUP proper, which faults the page in (the host fault handlers,
 *    copy-on-write for a write) but refuses a VM_IO|VM_PFNMAP VMA (check_vma_flags()) and
 *    any special entry (vm_normal_page() gives no page: follow_page_pte() fails) — every
 *    entry vmf_insert_mixed() installs on arm64, which has pte_special.
 * 3. Only for VM_IO|VM_PFNMAP: hva_to_pfn_remapped(). follow_pfnmap_start() reads the entry
 *    as it is; fixup_user_fault() runs only when there is none. A write fault on a present
 *    read-only entry is KVM_PFN_ERR_RO_FAULT: the COW of a private PFNMAP is never broken
 *    here. No page reference is taken.
 * 4. Anything else (a VM_MIXEDMAP VMA without VM_IO whose entries are special):
 *    KVM_PFN_ERR_FAULT.
 * A page reference taken (`kfp.page`) counts in `mm.pagesHeld` until releaseFaultinPage().
 */
export function hvaToPfn(mm: Mm, kfp: FollowPfn): void {
  const hva = kfp.hva;
  const at = kfp;
  const writeFault = kfp.write;
  kfp.pfn = -1;
  kfp.writable = false;
  kfp.page = false;
  kfp.err = KVM_PFN_ERR_FAULT;
  kfp.vmaShift = mm.granule.pageShift;
  const vma = vmaLookupOp(mm.vmas, kfp);
  if (vma === undefined) return;
  if (vma.backing === 'hugetlb') kfp.vmaShift = vma.hugeShift;
  const need = writeFault ? VM_WRITE : VM_READ;
  if ((vma.vmFlags & need) === 0) return;
  const remapped = (vma.vmFlags & (VM_IO | VM_PFNMAP)) !== 0;

  let l = hostWalk(mm, vma, at);
  const fastOk = (l.flags & (HPTE_PRESENT | HPTE_WRITE | HPTE_SPECIAL)) === (HPTE_PRESENT | HPTE_WRITE);
  if (!fastOk) {
    if (!remapped) {
      // GUP slow: the host fault handlers, then copy-on-write for a write.
      if ((l.flags & HPTE_PRESENT) === 0) {
        if (!populate(mm, vma, at, writeFault)) return;
        l = hostWalk(mm, vma, at);
      }
      if (writeFault && (l.flags & HPTE_WRITE) === 0) {
        if (!wpFault(mm, vma, at)) return;
        l = hostWalk(mm, vma, at);
      }
      if ((l.flags & (HPTE_PRESENT | HPTE_SPECIAL)) !== HPTE_PRESENT) return;
    } else {
      // hva_to_pfn_remapped(): fixup_user_fault() only when follow_pfnmap_start() finds no
      // entry; the handler it runs installs what the driver (or do_anonymous_page) does.
      if ((l.flags & HPTE_PRESENT) === 0) {
        if (!populate(mm, vma, at, writeFault)) return;
        l = hostWalk(mm, vma, at);
        if ((l.flags & HPTE_PRESENT) === 0) return;
      }
      if (writeFault && (l.flags & HPTE_WRITE) === 0) {
        kfp.err = KVM_PFN_ERR_RO_FAULT;
        return;
      }
      kfp.pfn = l.pfn + Math.floor((hva - l.base) / mm.granule.pageSize);
      kfp.writable = (l.flags & HPTE_WRITE) !== 0;
      kfp.err = FAULTIN_OK;
      return;
    }
  }
  const pfn = l.pfn + Math.floor((hva - l.base) / mm.granule.pageSize);
  // GUP took a reference on a normal page. A poisoned hugetlb folio is unusable as a whole
  // (folio_test_hwpoison on the head; hugetlb_fault returns VM_FAULT_HWPOISON_LARGE for any
  // subpage).
  const phys = mm.phys;
  const p = mm.ins;
  p.pfn = pfn;
  let poisoned = phys.pageHwPoisonOp(p);
  if (!poisoned && phys.folioTestHugetlbOp(p)) {
    phys.folioHeadOp(p, p);
    poisoned = phys.pageHwPoisonOp(p);
  }
  if (poisoned) {
    kfp.err = KVM_PFN_ERR_HWPOISON;
    return;
  }
  kfp.pfn = pfn;
  kfp.writable = (l.flags & HPTE_WRITE) !== 0;
  kfp.page = true;
  kfp.err = FAULTIN_OK;
  mm.pagesHeld++;
}

/**
 * kvm_release_faultin_page(kvm, page, unused, dirty): drops the reference hvaToPfn() took
 * (when `kfp.page`), marking the page dirty if `dirty && !unused`. Does nothing for a result
 * without a page.
 */
export function releaseFaultinPage(mm: Mm, kfp: FollowPfn, unused: boolean, dirty: boolean): void {
  if (!kfp.page) return;
  kfp.page = false;
  mm.pagesHeld--;
  if (dirty && !unused) mm.phys.setPageDirtyOp(kfp);
}
