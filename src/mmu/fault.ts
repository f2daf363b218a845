/**
 * user_mem_abort() (arch/arm64/kvm/mmu.c, v6.17 with 5f9466b50c1b) and its helpers, over one
 * fault object (S2Fault: struct kvm_page_fault on x86, struct kvm_s2_fault in the arm64
 * refactor), with the modelled kernels' differences (kernel.ts). The comments name the
 * kernel's steps in its order, so the code reads beside mmu.c.
 *
 * Nothing here allocates: the fault object is the vCPU's, reset per fault; failures are
 * negative errno values.
 */

import { POW2 } from './host/granule.js';
import {
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
} from '../pgtable/descriptor.js';
import { EAGAIN, EFAULT, EINVAL, ENOEXEC } from '../pgtable/errno.js';
import { KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED } from '../pgtable/walker.js';
import { DOUBLE_FIELD, S2Op } from '../pgtable/op.js';
import { faultBreak } from '../pgtable/debughooks.js';
import { kvmSupportsCacheablePfnmap } from './cpu.js';
import { markSlotPageDirty } from './dirty.js';
import { esrFaultLevel, kvmIsExecFault, kvmIsWriteFault } from './esr.js';
import { hostAuditFaultinEnd, hostAuditFaultinStart, hostAuditMapped } from './hostaudit.js';
import { FAULTIN_OK, FollowPfn, KVM_PFN_ERR_HWPOISON } from './host/mm.js';
import { HostOp } from './host/op.js';
import {
  VM_ALLOW_ANY_UNCACHED,
  VM_MIXEDMAP,
  VM_MTE_ALLOWED,
  VM_PFNMAP,
  isCowMapping,
  kvmVmaIsCacheable,
} from './host/vma.js';
import type { Vma } from './host/vma.js';
import { KVM_MEM_READONLY, faultSupportsStage2HugeMapping, memslotIsLogging } from './memslots.js';
import type { Memslot } from './memslots.js';
import type { Kvm } from './vm.js';
import type { Vcpu } from './vcpu.js';

/** The walk flags of the fault path: concurrent walks that report −EAGAIN. */
export const FAULT_WALK_FLAGS = KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED;

/**
 * One stage-2 fault's state (struct kvm_page_fault on x86, struct kvm_s2_fault in the arm64
 * refactor of 2026): one per vCPU, reset by kvm_handle_guest_abort() for every fault and filled
 * in as user_mem_abort() goes. The vCPU keeps the architectural registers (ESR, FAR, HPFAR)
 * and the exit state; this object keeps what the handler works out from them.
 *
 * Double fields (addresses, gfns, pfns, sizes) start at DOUBLE_FIELD so that V8 stores them
 * in place; the helpers take the object itself, never an address argument that would be boxed.
 * It is also the `{ hva }` carrier of the host lookups (vma_lookup, get_user_mapping_size) and
 * the `{ gfn, hva, writable }` of the memslot lookup.
 */
export class S2Fault {
  /** fault_ipa: the IPA being mapped (the faulting page's; S6 and THP align it down). */
  faultIpa = DOUBLE_FIELD;
  /** ipa: the canonical IPA (fault_ipa rounded as S6 says; THP leaves it). */
  ipa = DOUBLE_FIELD;
  /** gfn: ipa >> PAGE_SHIFT (in kvm_handle_guest_abort: the faulting page's, for the memslot lookup). */
  gfn = DOUBLE_FIELD;
  /** hva: the host address of the faulting page (kvm_handle_guest_abort's gfn_to_hva_memslot_prot). */
  hva = DOUBLE_FIELD;
  /** The memslot covering the fault (undefined before the lookup finds one). */
  memslot: Memslot | undefined = undefined;
  /** fault_is_perm, write_fault, exec_fault. */
  isPerm = false;
  write = false;
  exec = false;
  /** fault_granule: the size of the leaf a permission fault hit (0 otherwise). */
  faultGranule = DOUBLE_FIELD;
  /** memslot_is_logging(). */
  loggingActive = false;
  /** vma_shift and vma_pagesize (the mapping size as the clamps and THP leave it). */
  vmaShift = 0;
  vmaPagesize = DOUBLE_FIELD;
  /** The VMA snapshot taken under mmap_lock: vm_flags and what user_mem_abort derives from it. */
  vmFlags = 0;
  mteAllowed = false;
  vfioAllowAnyUc = false;
  isVmaCacheable = false;
  /** The seed's cacheable_pfnmap (a cacheable VM_PFNMAP VMA). */
  cacheablePfnmap = false;
  /** mmu_seq: kvm->mmu_invalidate_seq sampled before the pfn lookup. */
  mmuSeq = 0;
  /** force_pte, s2_force_noncacheable. */
  forcePte = false;
  s2ForceNoncacheable = false;
  /** pfn: the host page frame (THP aligns it down to the block). */
  pfn = DOUBLE_FIELD;
  /** page: a refcounted page is held (kvm_release_faultin_page drops it). */
  page = false;
  /** writable: stage 2 may map it writable (kvm_handle_guest_abort: the slot is writable). */
  writable = false;
  /** prot: the stage-2 permissions and memory type. */
  prot = 0;
  /** __kvm_faultin_pfn()'s struct kvm_follow_pfn: the canonical gfn's hva in, the pfn out. */
  readonly follow = new FollowPfn();
  /** The page-table operands of the install: ipa, size, phys (an S2Op the fault owns). */
  readonly install = new S2Op();
  /** The pfn carrier of sanitise_mte_tags()'s page-state calls. */
  readonly tagPage = new HostOp();

  /** Starts a new fault: every field back to its initial value (prot = R, as user_mem_abort). */
  reset(): void {
    this.memslot = undefined;
    this.isPerm = false;
    this.write = false;
    this.exec = false;
    this.faultGranule = 0;
    this.loggingActive = false;
    this.vmaShift = 0;
    this.vmaPagesize = 0;
    this.vmFlags = 0;
    this.mteAllowed = false;
    this.vfioAllowAnyUc = false;
    this.isVmaCacheable = false;
    this.cacheablePfnmap = false;
    this.mmuSeq = 0;
    this.forcePte = false;
    this.s2ForceNoncacheable = false;
    this.pfn = -1;
    this.page = false;
    this.writable = false;
    this.prot = KVM_PGTABLE_PROT_R;
  }
}

/**
 * get_vma_page_shift(vma, hva), with hva in `fault.hva`: the host page size backing the VMA at
 * hva. hugetlb: the hstate's shift; VM_PFNMAP: PUD or PMD when hva and the physical address
 * are congruent at that size and the aligned window fits in the VMA; otherwise PAGE_SHIFT.
 */
export function getVmaPageShift(kvm: Kvm, fault: S2Fault, vma: Vma): number {
  if (vma.backing === 'hugetlb' && (vma.vmFlags & VM_PFNMAP) === 0) return vma.hugeShift;
  if ((vma.vmFlags & VM_PFNMAP) === 0) return kvm.pageShift;
  const g = kvm.granule;
  if (pfnmapBlockFits(vma, fault, g.pageSize, g.pudShift)) return g.pudShift;
  if (pfnmapBlockFits(vma, fault, g.pageSize, g.pmdShift)) return g.pmdShift;
  return kvm.pageShift;
}

/**
 * hva ≡ pa (mod 2^shift), and the aligned window around hva lies inside the VMA. The hva comes
 * in the fault and the size as a shift: no double crosses the call.
 */
function pfnmapBlockFits(vma: Vma, fault: S2Fault, pageSize: number, shift: number): boolean {
  const hva = fault.hva;
  const size = POW2[shift]!;
  const pa = vma.pgoff * pageSize + (hva - vma.start);
  const hvaOff = hva - Math.floor(hva / size) * size;
  const paOff = pa - Math.floor(pa / size) * size;
  const lo = hva - hvaOff;
  return hvaOff === paOff && lo >= vma.start && lo + size <= vma.end;
}

/**
 * transparent_hugepage_adjust(kvm, memslot, hva, &pfn, &fault_ipa): when the host maps
 * `fault.hva` with a PMD or larger leaf and a PMD block fits the memslot, promote the mapping
 * to PMD_SIZE, aligning `fault.faultIpa` and `fault.pfn` (not the gfn). Returns the new size,
 * or −EAGAIN when the host entry vanished.
 */
export function transparentHugepageAdjust(kvm: Kvm, fault: S2Fault): number {
  const g = kvm.granule;
  const pmdSize = POW2[g.pmdShift]!;
  if (!faultSupportsStage2HugeMapping(fault.memslot!, fault, g.pmdShift, g.pageShift, g.pmdShift))
    return kvm.pageSize;
  // get_user_mapping_size(kvm, hva): the host's own leaf; an invalid one makes the fault replay.
  if (kvm.races.armed !== 0) kvm.races.beforeUserMappingSize(fault); // races.ts: zap-host-pte
  const shift = kvm.mm.hostLeafShiftOp(fault);
  if (shift === 0) return EAGAIN;
  if (shift < g.pmdShift) return kvm.pageSize;
  fault.faultIpa = Math.floor(fault.faultIpa / pmdSize) * pmdSize;
  const ptrsPerPmd = pmdSize / kvm.pageSize;
  fault.pfn = Math.floor(fault.pfn / ptrsPerPmd) * ptrsPerPmd;
  return pmdSize;
}

/**
 * sanitise_mte_tags(kvm, pfn, size), with pfn and size in `fault.pfn` and `fault.vmaPagesize`:
 * the first stage-2 mapping of a page clears its tags. A hugetlb folio keeps the latch on its
 * head (and only `size` worth of pages is cleared, though the whole folio is marked); other
 * pages latch one by one.
 */
export function sanitiseMteTags(kvm: Kvm, fault: S2Fault): void {
  if (!kvm.mte) return;
  const phys = kvm.phys;
  const pfn = fault.pfn;
  const nrPages = fault.vmaPagesize / kvm.pageSize;
  const page = fault.tagPage;
  page.pfn = pfn;
  if (!phys.pfnIsMapMemoryOp(page)) {
    // pfn_to_page() of memory outside the linear map: there is no struct page to latch and
    // no tag storage to clear. Linux never gets here (it sets VM_MTE_ALLOWED only on anon,
    // shmem and hugetlbfs VMAs); a scenario that forces the flag on device memory does.
    kvm.diagnose(`sanitise_mte_tags on pfn 0x${pfn.toString(16)} outside the linear map (no struct page)`);
    return;
  }
  const before = phys.stats.mteTagClears;
  if (phys.folioTestHugetlbOp(page)) {
    if (phys.folioTryHugetlbMteTaggingOp(page)) {
      for (let i = 0; i < nrPages; i++) {
        page.pfn = pfn + i;
        phys.mteClearPageTagsOp(page);
      }
      page.pfn = pfn;
      phys.folioSetHugetlbMteTaggedOp(page);
    }
  } else {
    for (let i = 0; i < nrPages; i++) {
      page.pfn = pfn + i;
      if (phys.tryPageMteTaggingOp(page)) {
        phys.mteClearPageTagsOp(page);
        phys.setPageMteTaggedOp(page);
      }
    }
  }
  kvm.stats.mtePagesCleared += phys.stats.mteTagClears - before;
}

/**
 * __kvm_faultin_pfn(memslot, gfn, write_fault ? FOLL_WRITE : 0, &writable, &page) of the
 * fault's canonical gfn: the gfn's hva into the follow carrier, then hva_to_pfn() (the host
 * model). Fills `fault.pfn`, `fault.page` and `fault.writable` (false for a read-only slot);
 * the error, if any, is `fault.follow.err`.
 */
export function kvmFaultinPfn(kvm: Kvm, fault: S2Fault): void {
  const slot = fault.memslot!;
  const follow = fault.follow;
  follow.hva = slot.userspaceAddr + (fault.gfn - slot.baseGfn) * kvm.pageSize;
  follow.write = fault.write;
  hostAuditFaultinStart(kvm, fault); // the PFNMAP entry before and after (hostaudit.ts)
  kvm.mm.hvaToPfn(follow);
  hostAuditFaultinEnd(kvm, fault);
  fault.pfn = follow.pfn;
  fault.page = follow.page;
  fault.writable = follow.writable && (slot.flags & KVM_MEM_READONLY) === 0;
}

/**
 * The early returns before mmu_lock (kvm_release_page_unused() since 5f9466b50c1b, direct
 * returns in 6.16 and the seed): with the fix the page is released; without it a held page
 * stays held (a leak the run reports).
 */
function earlyReturn(kvm: Kvm, fault: S2Fault, ret: number): number {
  if (kvm.kernel.releaseOnEarlyError) kvm.mm.releaseFaultinPage(fault.follow, true, false);
  else if (fault.follow.page) {
    kvm.diagnose(
      `kernel ${kvm.kernel.name}: user_mem_abort returned ${ret} without releasing the page (leaked)`,
    );
    kvm.mm.releaseFaultinPage(fault.follow, true, false);
  }
  return ret;
}

/**
 * user_mem_abort(vcpu, fault_ipa, nested = NULL, memslot, hva, fault_is_perm), with fault_ipa,
 * memslot, hva and fault_is_perm in `fault` (kvm_handle_guest_abort() fills them): resolves a
 * stage-2 translation or permission fault on memory backed by a memslot. Returns 0 (mapped,
 * relaxed, or nothing to do: the guest retries) or a negative errno (−EFAULT, −ENOMEM,
 * −EINVAL; −ENOEXEC for an exec fault on non-cacheable memory, which the caller turns into
 * an injected instruction abort).
 */
export function userMemAbort(vcpu: Vcpu, fault: S2Fault): number {
  const kvm = vcpu.kvm;
  const kernel = kvm.kernel;
  const g = kvm.granule;
  const pageSize = kvm.pageSize;
  const esr = vcpu.esr;
  const locks = kvm.locks;
  const memslot = fault.memslot!;
  let ret = 0;
  fault.prot = KVM_PGTABLE_PROT_R;
  fault.forcePte = false;
  fault.s2ForceNoncacheable = false;
  fault.loggingActive = memslotIsLogging(memslot);
  fault.ipa = fault.faultIpa;
  // `s2emu run --break` (cli/break.ts, docs/debugging.md): one test when unarmed. Armed, a
  // matching fault stops here, with `fault`, `vcpu` and `kvm` in scope (try kvm.pgt.ptdump()).
  if (faultBreak.armed && faultBreak.match(fault)) debugger; // eslint-disable-line no-debugger

  // Classify the fault: fault_granule from the ESR level, write_fault, exec_fault.
  fault.faultGranule = fault.isPerm ? POW2[(g.pageShift - 3) * (4 - esrFaultLevel(esr)) + 3]! : 0;
  fault.write = kvmIsWriteFault(esr);
  fault.exec = kvmIsExecFault(esr);
  if (fault.isPerm && !fault.write && !fault.exec) {
    kvm.diagnose('Unexpected L2 read permission error');
    return EFAULT;
  }

  // kvm_mmu_topup_memory_cache(), unless this is a permission fault that needs no new table.
  const memcache = vcpu.memcache;
  if (!fault.isPerm || (fault.loggingActive && fault.write)) {
    const r = memcache.topup(kvm.pgt.geo.minCachePages);
    if (r) return r;
  }

  // vma_lookup() under mmap_read_lock.
  locks.mmapReadLock();
  const vma = kvm.mm.vmaLookupOp(fault);
  if (vma === undefined) {
    locks.mmapReadUnlock();
    return EFAULT;
  }

  // The mapping size: logging forces PTEs; else get_vma_page_shift(), then the clamps (each
  // falls through to the next).
  let vmaShift: number;
  if (fault.loggingActive) {
    fault.forcePte = true;
    vmaShift = g.pageShift;
  } else {
    vmaShift = getVmaPageShift(kvm, fault, vma);
  }
  if (vmaShift === g.pudShift) {
    if (!faultSupportsStage2HugeMapping(memslot, fault, g.pudShift, g.pageShift, g.pmdShift))
      vmaShift = g.contPmdShift;
  }
  if (vmaShift === g.contPmdShift) vmaShift = g.pmdShift;
  if (vmaShift === g.pmdShift) {
    if (!faultSupportsStage2HugeMapping(memslot, fault, g.pmdShift, g.pageShift, g.pmdShift))
      vmaShift = g.contPteShift;
  }
  if (vmaShift === g.contPteShift) {
    vmaShift = g.pageShift;
    fault.forcePte = true;
  }
  if (vmaShift !== g.pageShift && vmaShift !== g.pmdShift && vmaShift !== g.pudShift) {
    kvm.diagnose(`Unknown vma_shift ${vmaShift}`);
  }
  fault.vmaShift = vmaShift;
  fault.vmaPagesize = POW2[vmaShift]!;

  // In 6.17 only PMD/PUD mappings round fault_ipa and ipa down.
  if (vmaShift === g.pmdShift || vmaShift === g.pudShift) {
    const size = fault.vmaPagesize;
    fault.ipa = Math.floor(fault.ipa / size) * size;
    fault.faultIpa = Math.floor(fault.faultIpa / size) * size;
  }
  fault.gfn = Math.floor(fault.ipa / pageSize);

  // Snapshot what the rest needs from the VMA; the pointer is not used after the unlock.
  const vmFlags = vma.vmFlags;
  fault.vmFlags = vmFlags;
  fault.mteAllowed = (vmFlags & VM_MTE_ALLOWED) !== 0;
  fault.vfioAllowAnyUc = (vmFlags & VM_ALLOW_ANY_UNCACHED) !== 0;
  fault.isVmaCacheable = kvmVmaIsCacheable(vma);

  // The seed's (and v7's) VM_PFNMAP checks, under mmap_lock: a COW PFNMAP is refused as
  // written, returning with mmap_lock still held (the leak the lock check reports); a
  // cacheable PFNMAP is the seed's `cacheable_pfnmap`.
  fault.cacheablePfnmap = false;
  if (kernel.cowPfnmapEinval && vmFlags & VM_PFNMAP) {
    if (isCowMapping(vmFlags)) return EINVAL;
    fault.cacheablePfnmap = fault.isVmaCacheable;
  }

  // mmu_seq = kvm->mmu_invalidate_seq, then mmap_read_unlock().
  fault.mmuSeq = kvm.notifier.seq;
  locks.mmapReadUnlock();

  // __kvm_faultin_pfn() of the canonical gfn: for a PMD/PUD mapping that is the first page
  // of the block, not the faulting page.
  kvmFaultinPfn(kvm, fault);
  if (fault.follow.err === KVM_PFN_ERR_HWPOISON) {
    // kvm_send_hwpoison_signal(hva, vma_shift): SIGBUS, BUS_MCEERR_AR, with the vma_shift
    // the clamps left (logging and the clamps may have lowered the hstate's shift).
    vcpu.sigbus = true;
    vcpu.sigbusLsb = vmaShift;
    return 0;
  }
  if (fault.follow.err !== FAULTIN_OK) return EFAULT;
  // The window between the pfn lookup and mmu_lock, where a racing invalidation lands.
  kvm.notifier.raceWindow();
  if (kvm.races.armed !== 0) kvm.races.afterFaultin(fault); // races.ts: invalidate

  // The memory type: can the host maintain this pfn's caches (pfn_is_map_memory)?
  const outsideLinearMap = !kvm.phys.pfnIsMapMemoryOp(fault);
  const noCmo =
    kernel.deviceTest === 'pfn'
      ? outsideLinearMap
      : (vmFlags & (VM_PFNMAP | VM_MIXEDMAP)) !== 0 && outsideLinearMap;
  if (noCmo) {
    // Which VMAs keep a cacheable stage 2 here: none (6.16), a cacheable VMA (v7, 6.17), or
    // only the seed's cacheable_pfnmap.
    const cacheable =
      kernel.cacheableOver === 'cacheable-vma'
        ? fault.isVmaCacheable
        : kernel.cacheableOver === 'cacheable-pfnmap' && fault.cacheablePfnmap;
    if (cacheable) {
      if (kernel.cacheableCheck === 'early-efault' && !kvmSupportsCacheablePfnmap(kvm.cpu)) ret = EFAULT;
    } else {
      fault.s2ForceNoncacheable = true;
    }
  } else if (fault.loggingActive && !fault.write) {
    fault.writable = false;
  }

  // The seed's "mismatched mapping": a cacheable VMA that would get a non-cacheable stage 2
  // (a cacheable MIXEDMAP outside the linear map) is refused. The seed returns its -EFAULT
  // above first; both are plain returns.
  if (kernel.mismatchEinval && ret === 0 && fault.isVmaCacheable && fault.s2ForceNoncacheable) ret = EINVAL;

  // Executing from device or non-cacheable memory is refused.
  if (ret === 0 && fault.exec && fault.s2ForceNoncacheable) ret = ENOEXEC;

  if (ret) return earlyReturn(kvm, fault, ret);

  // kvm_fault_lock(): the mmu_lock read side; faults run concurrently, the walker uses cmpxchg.
  locks.mmuReadLock();
  const pgt = kvm.pgt;
  out: {
    // mmu_invalidate_retry(): an invalidation ran or is running since mmu_seq was sampled.
    if (kvm.notifier.mmuInvalidateRetry(fault.mmuSeq)) {
      ret = EAGAIN;
      break out;
    }

    // Block promotion: a permission fault reuses the existing block; else THP.
    if (fault.vmaPagesize === pageSize && !(fault.forcePte || fault.s2ForceNoncacheable)) {
      if (fault.isPerm && fault.faultGranule > pageSize) fault.vmaPagesize = fault.faultGranule;
      else fault.vmaPagesize = transparentHugepageAdjust(kvm, fault);
      if (fault.vmaPagesize < 0) {
        ret = fault.vmaPagesize;
        break out;
      }
    }

    // MTE: first mappings of a page clear its tags; a VMA that cannot hold tags fails.
    if (!fault.isPerm && !fault.s2ForceNoncacheable && kvm.mte) {
      if (fault.mteAllowed) sanitiseMteTags(kvm, fault);
      else {
        ret = EFAULT;
        break out;
      }
    }

    // v7's late refusal of any cacheable VMA on a CPU without FWB+DIC (ordinary RAM too).
    if (
      kernel.cacheableCheck === 'late-einval' &&
      fault.isVmaCacheable &&
      !kvmSupportsCacheablePfnmap(kvm.cpu)
    ) {
      ret = EINVAL;
      break out;
    }

    // The protection bits.
    let prot = fault.prot;
    if (fault.writable) prot |= KVM_PGTABLE_PROT_W;
    if (fault.exec) prot |= KVM_PGTABLE_PROT_X;
    if (fault.s2ForceNoncacheable)
      prot |= fault.vfioAllowAnyUc ? KVM_PGTABLE_PROT_NORMAL_NC : KVM_PGTABLE_PROT_DEVICE;
    else if (kvm.cpu.dic) prot |= KVM_PGTABLE_PROT_X;
    fault.prot = prot;

    // Relax an existing leaf of the right size (kvm_pgtable_stage2_relax_perms), or map
    // (kvm_pgtable_stage2_map(pgt, fault_ipa, vma_pagesize, pfn << PAGE_SHIFT, prot, memcache, flags)).
    const relax = fault.isPerm && fault.vmaPagesize === fault.faultGranule;
    if (kvm.races.armed !== 0) kvm.races.beforeInstall(fault, relax); // races.ts: other-vcpu
    const heldBefore = memcache.nobjs;
    const op = fault.install;
    op.addr = fault.faultIpa;
    if (relax) {
      kvm.stats.relaxes++;
      ret = pgt.relaxPermsOp(op, prot, FAULT_WALK_FLAGS);
    } else {
      kvm.stats.maps++;
      op.size = fault.vmaPagesize;
      op.phys = fault.pfn * pageSize;
      ret = pgt.mapOp(op, prot, memcache, FAULT_WALK_FLAGS);
      // The host inconsistencies the kernel itself creates here, reported (hostaudit.ts);
      // -EAGAIN: the same leaf was there already (another vCPU's identical fault).
      if (ret === 0 || ret === EAGAIN) hostAuditMapped(kvm, fault);
    }
    kvm.stats.tablePagesAllocated += heldBefore - memcache.nobjs;
    // Why the leaf is what it is (provenance.ts), when asked for.
    if (kvm.provenance !== null) kvm.provenance.record(vcpu, fault, ret);
  }

  // kvm_release_faultin_page() under the lock, then mark_page_dirty_in_slot() after the unlock.
  kvm.mm.releaseFaultinPage(fault.follow, ret !== 0, fault.writable);
  locks.mmuReadUnlock();
  if (kvm.races.pendingEnd !== 0) kvm.races.afterUnlock(); // races.ts: the zap's invalidation
  if (fault.writable && ret === 0) markSlotPageDirty(memslot, fault.gfn - memslot.baseGfn);
  return ret === EAGAIN ? 0 : ret;
}
