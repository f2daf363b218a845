/**
 * user_mem_abort() (arch/arm64/kvm/mmu.c, v6.17 with 5f9466b50c1b; fault-path.md §3) and
 * its helpers, step by step, with the modelled kernels' differences (kernel.ts). Step labels
 * (S1..S12, L1..L5) follow the specification so the code can be read beside it and beside
 * the kernel source.
 *
 * Nothing here allocates: scratch lives on the vCPU; failures are negative errno values.
 */

import { POW2 } from './host/granule.js';
import {
  EAGAIN,
  EFAULT,
  EINVAL,
  ENOEXEC,
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
} from '../pgtable/descriptor.js';
import { KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED } from '../pgtable/walker.js';
import { S2Op } from '../pgtable/op.js';
import { kvmSupportsCacheablePfnmap } from './cpu.js';
import { markSlotPageDirty } from './dirty.js';
import { esrFaultLevel, kvmIsExecFault, kvmIsWriteFault } from './esr.js';
import { hostAuditFaultinEnd, hostAuditFaultinStart, hostAuditMapped } from './hostaudit.js';
import { KVM_PFN_ERR_HWPOISON, FAULTIN_OK, type FaultinResult } from './host/mm.js';
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

/** user_mem_abort()'s operands for the page table: ipa, size, phys (reused: see S2Op). */
const installOp = new S2Op();

/**
 * get_vma_page_shift(vma, hva): the host page size backing the VMA at hva. hugetlb: the
 * hstate's shift; VM_PFNMAP: PUD or PMD when hva and the physical address are congruent
 * at that size and the aligned window fits in the VMA; otherwise PAGE_SHIFT.
 */
export function getVmaPageShift(kvm: Kvm, vma: Vma, at: { readonly hva: number }): number {
  if (vma.backing === 'hugetlb' && (vma.vmFlags & VM_PFNMAP) === 0) return vma.hugeShift;
  if ((vma.vmFlags & VM_PFNMAP) === 0) return kvm.pageShift;
  const g = kvm.granule;
  if (pfnmapBlockFits(vma, at, g.pageSize, g.pudShift)) return g.pudShift;
  if (pfnmapBlockFits(vma, at, g.pageSize, g.pmdShift)) return g.pmdShift;
  return kvm.pageShift;
}

/**
 * hva ≡ pa (mod 2^shift), and the aligned window around hva lies inside the VMA. The hva comes
 * in a field and the size as a shift: no double crosses the call (see FaultinResult).
 */
function pfnmapBlockFits(vma: Vma, at: { readonly hva: number }, pageSize: number, shift: number): boolean {
  const hva = at.hva;
  const size = POW2[shift]!;
  const pa = vma.pgoff * pageSize + (hva - vma.start);
  const hvaOff = hva - Math.floor(hva / size) * size;
  const paOff = pa - Math.floor(pa / size) * size;
  const lo = hva - hvaOff;
  return hvaOff === paOff && lo >= vma.start && lo + size <= vma.end;
}

/**
 * transparent_hugepage_adjust(): when the host maps hva with a PMD or larger leaf and a PMD
 * block fits the memslot, promote the mapping to PMD_SIZE, aligning the vCPU's fault IPA
 * and pfn (not the gfn). The hva is vcpu.hva. Returns the new size, or −EAGAIN when the host
 * entry vanished.
 */
function transparentHugepageAdjust(kvm: Kvm, vcpu: Vcpu, memslot: Memslot): number {
  const g = kvm.granule;
  const pmdSize = POW2[g.pmdShift]!;
  if (!faultSupportsStage2HugeMapping(memslot, vcpu, g.pmdShift, g.pageShift, g.pmdShift))
    return kvm.pageSize;
  // get_user_mapping_size(): the host's own leaf; an invalid one makes the fault replay.
  const faultin = vcpu.faultin;
  faultin.hva = vcpu.hva;
  if (kvm.races.armed !== 0) kvm.races.beforeUserMappingSize(vcpu); // races.ts: zap-host-pte
  const shift = kvm.mm.hostLeafShiftReq(faultin);
  if (shift === 0) return EAGAIN;
  if (shift < g.pmdShift) return kvm.pageSize;
  vcpu.ufFaultIpa = Math.floor(vcpu.ufFaultIpa / pmdSize) * pmdSize;
  const ptrsPerPmd = pmdSize / kvm.pageSize;
  vcpu.faultin.pfn = Math.floor(vcpu.faultin.pfn / ptrsPerPmd) * ptrsPerPmd;
  return pmdSize;
}

/**
 * sanitise_mte_tags(kvm, pfn, size) (§4), with the pfn in `f.pfn` and the size as `nrPages`:
 * the first stage-2 mapping of a page clears its tags. A hugetlb folio keeps the latch on its
 * head (and only `size` worth of pages is cleared, though the whole folio is marked); other
 * pages latch one by one.
 */
function sanitiseMteTags(kvm: Kvm, f: FaultinResult, nrPages: number): void {
  if (!kvm.mte) return;
  const phys = kvm.phys;
  const pfn = f.pfn;
  if (!phys.pfnIsMapMemoryAt(f)) {
    // pfn_to_page() of memory outside the linear map: there is no struct page to latch and
    // no tag storage to clear. Linux never gets here (it sets VM_MTE_ALLOWED only on anon,
    // shmem and hugetlbfs VMAs); a scenario that forces the flag on device memory does.
    kvm.diagnose(`sanitise_mte_tags on pfn 0x${pfn.toString(16)} outside the linear map (no struct page)`);
    return;
  }
  const before = phys.stats.mteTagClears;
  // The pfns go to the host's page state through phys.reqPfn (see PhysMem.reqPfn).
  phys.reqPfn = pfn;
  if (phys.folioTestHugetlbReq()) {
    if (phys.folioTryHugetlbMteTaggingReq()) {
      for (let i = 0; i < nrPages; i++) {
        phys.reqPfn = pfn + i;
        phys.mteClearPageTagsReq();
      }
      phys.reqPfn = pfn;
      phys.folioSetHugetlbMteTaggedReq();
    }
  } else {
    for (let i = 0; i < nrPages; i++) {
      phys.reqPfn = pfn + i;
      if (phys.tryPageMteTaggingReq()) {
        phys.mteClearPageTagsReq();
        phys.setPageMteTaggedReq();
      }
    }
  }
  kvm.stats.mtePagesCleared += phys.stats.mteTagClears - before;
}

/**
 * The early returns before mmu_lock (S12, and the 6.16/seed direct returns): with the
 * page-leak fix the page is released; without it a held page stays held (a leak the run
 * reports).
 */
function earlyReturn(kvm: Kvm, vcpu: Vcpu, ret: number): number {
  if (kvm.kernel.releaseOnEarlyError) kvm.mm.releaseFaultinPage(vcpu.faultin, true, false);
  else if (vcpu.faultin.page) {
    kvm.diagnose(
      `kernel ${kvm.kernel.name}: user_mem_abort returned ${ret} without releasing the page (leaked)`,
    );
    kvm.mm.releaseFaultinPage(vcpu.faultin, true, false);
  }
  return ret;
}

/**
 * user_mem_abort(vcpu, fault_ipa, nested = NULL, memslot, hva, fault_is_perm), with fault_ipa
 * and hva in vcpu.faultIpa and vcpu.hva: resolves a
 * stage-2 translation or permission fault on memory backed by a memslot. Returns 0 (mapped,
 * relaxed, or nothing to do: the guest retries) or a negative errno (−EFAULT, −ENOMEM,
 * −EINVAL; −ENOEXEC for an exec fault on non-cacheable memory, which the caller turns into
 * an injected instruction abort).
 */
export function userMemAbort(vcpu: Vcpu, memslot: Memslot, faultIsPerm: boolean): number {
  // fault_ipa and hva arrive in vcpu.faultIpa and vcpu.hva rather than as arguments: V8
  // would box them as heap numbers on every call.
  const faultIpa = vcpu.faultIpa;
  const kvm = vcpu.kvm;
  const kernel = kvm.kernel;
  const g = kvm.granule;
  const pageSize = kvm.pageSize;
  const esr = vcpu.esr;
  const locks = kvm.locks;
  let ret = 0;
  let prot = KVM_PGTABLE_PROT_R;
  let forcePte = false;
  let s2ForceNoncacheable = false;
  const loggingActive = memslotIsLogging(memslot);
  let ipa = faultIpa;
  vcpu.ufFaultIpa = faultIpa;

  // S1. Classify the fault.
  let faultGranule = 0;
  if (faultIsPerm) faultGranule = POW2[(g.pageShift - 3) * (4 - esrFaultLevel(esr)) + 3]!;
  const writeFault = kvmIsWriteFault(esr);
  const execFault = kvmIsExecFault(esr);
  if (faultIsPerm && !writeFault && !execFault) {
    kvm.diagnose('Unexpected L2 read permission error');
    return EFAULT;
  }

  // S2. Top up the memcache unless this is a permission fault that needs no new table.
  const memcache = vcpu.memcache;
  if (!faultIsPerm || (loggingActive && writeFault)) {
    const r = memcache.topup(kvm.pgt.geo.minCachePages);
    if (r) return r;
  }

  // S3. Find the VMA under mmap_lock.
  locks.mmapReadLock();
  const faultin = vcpu.faultin;
  faultin.hva = vcpu.hva;
  const vma = kvm.mm.vmaLookupReq(faultin);
  if (vma === undefined) {
    locks.mmapReadUnlock();
    return EFAULT;
  }

  // S4. Page-size choice, then the clamps (each falls through to the next).
  let vmaShift: number;
  if (loggingActive) {
    forcePte = true;
    vmaShift = g.pageShift;
  } else {
    vmaShift = getVmaPageShift(kvm, vma, vcpu);
  }
  if (vmaShift === g.pudShift) {
    if (!faultSupportsStage2HugeMapping(memslot, vcpu, g.pudShift, g.pageShift, g.pmdShift))
      vmaShift = g.contPmdShift;
  }
  if (vmaShift === g.contPmdShift) vmaShift = g.pmdShift;
  if (vmaShift === g.pmdShift) {
    if (!faultSupportsStage2HugeMapping(memslot, vcpu, g.pmdShift, g.pageShift, g.pmdShift))
      vmaShift = g.contPteShift;
  }
  if (vmaShift === g.contPteShift) {
    vmaShift = g.pageShift;
    forcePte = true;
  }
  if (vmaShift !== g.pageShift && vmaShift !== g.pmdShift && vmaShift !== g.pudShift) {
    kvm.diagnose(`Unknown vma_shift ${vmaShift}`);
  }
  let vmaPagesize = POW2[vmaShift]!;

  // S6. In 6.17 only PMD/PUD mappings round the IPA down.
  if (vmaShift === g.pmdShift || vmaShift === g.pudShift) {
    ipa = Math.floor(ipa / vmaPagesize) * vmaPagesize;
    vcpu.ufFaultIpa = Math.floor(vcpu.ufFaultIpa / vmaPagesize) * vmaPagesize;
  }
  const gfn = Math.floor(ipa / pageSize);

  // S7. Snapshot what the rest needs from the VMA; the pointer is not used after the unlock.
  const vmFlags = vma.vmFlags;
  const mteAllowed = (vmFlags & VM_MTE_ALLOWED) !== 0;
  const vfioAllowAnyUc = (vmFlags & VM_ALLOW_ANY_UNCACHED) !== 0;
  const isVmaCacheable = kvmVmaIsCacheable(vma);

  // The seed's (and v7's) VM_PFNMAP checks, under mmap_lock (fault-path.md §1.2 step 1): a
  // COW PFNMAP is refused as written, returning with mmap_lock still held (the leak the lock
  // check reports); a cacheable PFNMAP is the seed's `cacheable_pfnmap`.
  let cacheablePfnmap = false;
  if (kernel.cowPfnmapEinval && vmFlags & VM_PFNMAP) {
    if (isCowMapping(vmFlags)) return EINVAL;
    cacheablePfnmap = isVmaCacheable;
  }

  // S8. Sample the invalidation sequence, then drop mmap_lock.
  const mmuSeq = kvm.notifier.seq;
  locks.mmapReadUnlock();

  // S9. Look up the pfn (GUP, or the PFNMAP walk), faulting the host page in.
  // __kvm_faultin_pfn(memslot, gfn, ...) looks up the canonical gfn from S6: for a PMD/PUD
  // mapping that is the first page of the block, not the faulting page.
  faultin.hva = memslot.userspaceAddr + (gfn - memslot.baseGfn) * pageSize;
  hostAuditFaultinStart(vcpu, vmFlags); // the PFNMAP entry before and after (hostaudit.ts)
  kvm.mm.faultinPfnReq(faultin, writeFault);
  hostAuditFaultinEnd(vcpu, vmFlags);
  let writable = faultin.writable && (memslot.flags & KVM_MEM_READONLY) === 0;
  if (faultin.err === KVM_PFN_ERR_HWPOISON) {
    // kvm_send_hwpoison_signal(hva, vma_shift): SIGBUS, BUS_MCEERR_AR, with the vma_shift
    // left by S4 (logging and the clamps may have lowered the hstate's shift).
    vcpu.sigbus = true;
    vcpu.sigbusLsb = vmaShift;
    return 0;
  }
  if (faultin.err !== FAULTIN_OK) return EFAULT;
  // The window between the pfn lookup and mmu_lock, where a racing invalidation lands.
  kvm.notifier.raceWindow();
  if (kvm.races.armed !== 0) kvm.races.afterFaultin(vcpu); // races.ts: invalidate

  // S10. Memory-type classification: can the host maintain this pfn's caches?
  const outsideLinearMap = !kvm.phys.pfnIsMapMemoryAt(faultin);
  const noCmo =
    kernel.deviceTest === 'pfn'
      ? outsideLinearMap
      : (vmFlags & (VM_PFNMAP | VM_MIXEDMAP)) !== 0 && outsideLinearMap;
  if (noCmo) {
    // Which VMAs keep a cacheable stage 2 here: none (6.16), a cacheable VMA (v7, 6.17), or
    // only the seed's cacheable_pfnmap.
    const cacheable =
      kernel.cacheableOver === 'cacheable-vma'
        ? isVmaCacheable
        : kernel.cacheableOver === 'cacheable-pfnmap' && cacheablePfnmap;
    if (cacheable) {
      if (kernel.cacheableCheck === 'early-efault' && !kvmSupportsCacheablePfnmap(kvm.cpu)) ret = EFAULT;
    } else {
      s2ForceNoncacheable = true;
    }
  } else if (loggingActive && !writeFault) {
    writable = false;
  }

  // The seed's step 3, "mismatched mapping": a cacheable VMA that would get a
  // non-cacheable stage 2 (a cacheable MIXEDMAP outside the linear map) is refused. The
  // seed returns its -EFAULT above first; both are plain returns.
  if (kernel.mismatchEinval && ret === 0 && isVmaCacheable && s2ForceNoncacheable) ret = EINVAL;

  // S11. Executing from device or non-cacheable memory is refused.
  if (ret === 0 && execFault && s2ForceNoncacheable) ret = ENOEXEC;

  // S12. Early failure.
  if (ret) return earlyReturn(kvm, vcpu, ret);

  // L. Under the mmu_lock read side: faults run concurrently; the walker uses cmpxchg.
  locks.mmuReadLock();
  const pgt = kvm.pgt;
  out: {
    // L1. Retry if an invalidation ran or is running since mmu_seq was sampled.
    if (kvm.notifier.mmuInvalidateRetry(mmuSeq)) {
      ret = EAGAIN;
      break out;
    }

    // L2. Block promotion (permission faults reuse the existing block; else THP).
    if (vmaPagesize === pageSize && !(forcePte || s2ForceNoncacheable)) {
      if (faultIsPerm && faultGranule > pageSize) vmaPagesize = faultGranule;
      else vmaPagesize = transparentHugepageAdjust(kvm, vcpu, memslot);
      if (vmaPagesize < 0) {
        ret = vmaPagesize;
        break out;
      }
    }

    // L3. MTE: first mappings of a page clear its tags; a VMA that cannot hold tags fails.
    if (!faultIsPerm && !s2ForceNoncacheable && kvm.mte) {
      if (mteAllowed) sanitiseMteTags(kvm, faultin, vmaPagesize / pageSize);
      else {
        ret = EFAULT;
        break out;
      }
    }

    // v7's late refusal of any cacheable VMA on a CPU without FWB+DIC (ordinary RAM too).
    if (kernel.cacheableCheck === 'late-einval' && isVmaCacheable && !kvmSupportsCacheablePfnmap(kvm.cpu)) {
      ret = EINVAL;
      break out;
    }

    // L4. Protection bits.
    if (writable) prot |= KVM_PGTABLE_PROT_W;
    if (execFault) prot |= KVM_PGTABLE_PROT_X;
    if (s2ForceNoncacheable) prot |= vfioAllowAnyUc ? KVM_PGTABLE_PROT_NORMAL_NC : KVM_PGTABLE_PROT_DEVICE;
    else if (kvm.cpu.dic) prot |= KVM_PGTABLE_PROT_X;

    // L5. Relax an existing leaf of the right size, or map.
    if (kvm.races.armed !== 0)
      kvm.races.beforeInstall(vcpu, faultIsPerm && vmaPagesize === faultGranule, prot, vmaPagesize); // races.ts: other-vcpu
    const heldBefore = memcache.nobjs;
    if (faultIsPerm && vmaPagesize === faultGranule) {
      kvm.stats.relaxes++;
      installOp.addr = vcpu.ufFaultIpa;
      ret = pgt.relaxPermsOp(installOp, prot, FAULT_WALK_FLAGS);
    } else {
      kvm.stats.maps++;
      installOp.addr = vcpu.ufFaultIpa;
      installOp.size = vmaPagesize;
      installOp.phys = faultin.pfn * pageSize;
      ret = pgt.mapOp(installOp, prot, memcache, FAULT_WALK_FLAGS);
      // The host inconsistencies the kernel itself creates here, reported (hostaudit.ts);
      // -EAGAIN: the same leaf was there already (another vCPU's identical fault).
      if (ret === 0 || ret === EAGAIN)
        hostAuditMapped(vcpu, installOp, vmFlags, isVmaCacheable, s2ForceNoncacheable);
    }
    kvm.stats.tablePagesAllocated += heldBefore - memcache.nobjs;
  }

  // Exit: release the page under the lock, then mark it dirty after the unlock.
  kvm.mm.releaseFaultinPage(faultin, ret !== 0, writable);
  locks.mmuReadUnlock();
  if (kvm.races.pendingEnd !== 0) kvm.races.afterUnlock(); // races.ts: the zap's invalidation
  if (writable && ret === 0) markSlotPageDirty(memslot, gfn - memslot.baseGfn);
  return ret === EAGAIN ? 0 : ret;
}
