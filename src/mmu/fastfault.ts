/**
 * The fused fast path of the commonest stage-2 fault: a translation fault on anonymous or THP
 * memory, outside dirty logging, MTE, userfaultfd and armed races, whose host page is either
 * mapped writable already (GUP-fast) or missing and faulted in for a write. It is
 * kvm_handle_guest_abort() → user_mem_abort() → __kvm_faultin_pfn() → hva_to_pfn() →
 * do_anonymous_page() / do_huge_pmd_anonymous_page() → transparent_hugepage_adjust() →
 * kvm_pgtable_stage2_map() for that one case, written as one function, in the way KVM keeps
 * fast paths beside its general fault handler (x86's fast_page_fault(), arm64's
 * fast-path permission relax).
 *
 * It makes exactly the general path's stores, in an order with the same outcome: the same
 * host page allocated from the same free list, the same host entry, the same stage-2 map
 * call (so the same descriptors, refcounts, TLBIs and cache maintenance), the same lock,
 * notifier, dirty and statistics updates, the same fault object. It declines (returns
 * FUSED_DECLINED) before any side effect on anything else, and the general path then runs
 * as if it had not been tried: the one store it may have made first, the memcache top-up,
 * is the general path's own first step and is idempotent. test/fastfault.props.test.ts runs
 * random scenarios both ways and requires identical results.
 *
 * Why it is faster: the general path looks the VMA up three times, walks the host table three
 * times (GUP-fast, after the host fault, and get_user_mapping_size() for THP sizing), and
 * goes through the host fault handlers' general dispatch. Here one VMA lookup, one host walk
 * (whose leaf, or the one just installed, serves THP sizing), and memslot / VMA lookups in
 * plain (unfrozen) copies of the current generations' arrays, which V8 indexes inline.
 */

import { KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W, KVM_PGTABLE_PROT_X } from '../pgtable/descriptor.js';
import { EAGAIN } from '../pgtable/errno.js';
import { kvmSupportsCacheablePfnmap } from './cpu.js';
import { markSlotPageDirty } from './dirty.js';
import { esrFscIsTranslationFault, kvmIsExecFault, kvmIsWriteFault } from './esr.js';
import { FAULT_WALK_FLAGS } from './fault.js';
import { POW2 } from './host/granule.js';
import {
  HOST_LEVEL_PMD,
  HOST_LEVEL_PTE,
  HPTE_OWNED,
  HPTE_PRESENT,
  HPTE_SPECIAL,
  HPTE_WRITE,
  newHostLeaf,
} from './host/hostpt.js';
import type { HostLeaf } from './host/hostpt.js';
import { FAULTIN_OK } from './host/mm.js';
import { HostOp } from './host/op.js';
import type { MemslotSet, Memslot } from './memslots.js';
import { KVM_MEM_READONLY, faultSupportsStage2HugeMapping } from './memslots.js';
import {
  MT_NORMAL_TAGGED,
  VM_ALLOW_ANY_UNCACHED,
  VM_MTE_ALLOWED,
  VM_IO,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_UFFD_MISSING,
  VM_WRITE,
  VM_READ,
  kvmVmaIsCacheable,
} from './host/vma.js';
import type { Vma, VmaSet } from './host/vma.js';
import type { Vcpu } from './vcpu.js';
import type { Kvm } from './vm.js';

/** What FusedFault.handle() returns when the fault is not its case: run the general path. */
export const FUSED_DECLINED = 2;

/** The VMA flags that send a fault to the general path (remapped, mixed, userfaultfd). */
const GENERAL_VMA_FLAGS = VM_IO | VM_PFNMAP | VM_MIXEDMAP | VM_UFFD_MISSING;

/**
 * One vCPU's fused fault path and its scratch state: plain copies of the current memslot and
 * VMA arrays (refreshed when a generation changes: immer freezes the control plane's arrays,
 * and V8 does not inline element loads from frozen arrays) and the host leaf of the walk.
 */
export class FusedFault {
  private slotSet: MemslotSet | null = null;
  private slots: Memslot[] = [];
  /** Per slot of the current generation: 1 when its faults may take this path (not logging, not read-only). */
  private slotOk = new Uint8Array(0);
  private vmaSet: VmaSet | null = null;
  private vmas: Vma[] = [];
  /**
   * Per VMA of the current generation: 1 when its faults may take this path (anonymous or THP,
   * no PFNMAP/IO/MIXEDMAP/userfaultfd, not PROT_MTE, a cacheable memory type), and its
   * VM_READ / VM_WRITE bits (hva_to_pfn()'s protection check is made per fault).
   */
  private vmaOk = new Uint8Array(0);
  /**
   * Per-VM choices, read once: the VM declines every fault here (MTE, or v7's late refusal of
   * cacheable VMAs on a CPU without FWB+DIC), and DIC (every cacheable mapping executable).
   */
  private readonly vmDeclines: boolean;
  private readonly dic: boolean;
  private readonly leaf: HostLeaf = newHostLeaf();
  /**
   * The host address being looked up, and the host entry being installed: the fault object's
   * carriers are written only once the path has committed, so that a decline leaves them as
   * the general path expects to find them.
   */
  private readonly at = new HostOp();
  private readonly ins = new HostOp();
  /** Faults this path handled (the differential test checks it ran). */
  handled = 0;

  constructor(kvm: Kvm) {
    this.vmDeclines =
      kvm.mte || (kvm.kernel.cacheableCheck === 'late-einval' && !kvmSupportsCacheablePfnmap(kvm.cpu));
    this.dic = kvm.cpu.dic;
  }

  /** Takes the current memslot generation: its plain copy and which slots qualify. */
  private takeSlots(set: MemslotSet): void {
    this.slotSet = set;
    this.slots = set.slots.slice();
    this.slotOk = Uint8Array.from(this.slots, (s) =>
      s.dirtyBitmap === null && (s.flags & KVM_MEM_READONLY) === 0 ? 1 : 0,
    );
  }

  /** Takes the current VMA generation: its plain copy and which VMAs qualify. */
  private takeVmas(set: VmaSet): void {
    this.vmaSet = set;
    this.vmas = set.vmas.slice();
    this.vmaOk = Uint8Array.from(this.vmas, (v) =>
      (v.backing === 'anon' || v.backing === 'thp') &&
      (v.vmFlags & GENERAL_VMA_FLAGS) === 0 &&
      v.memType !== MT_NORMAL_TAGGED &&
      kvmVmaIsCacheable(v)
        ? 1
        : 0,
    );
  }

  /**
   * Handles the stage-2 abort in vcpu.esr / vcpu.faultIpa when it is the fused case (see the
   * file comment): returns kvm_handle_guest_abort()'s result (1: resume the guest), with
   * vcpu.handler and vcpu.handlerRet set as the general path sets them. Otherwise returns
   * FUSED_DECLINED having changed nothing the general path would not change first.
   */
  handle(vcpu: Vcpu): number {
    const kvm = vcpu.kvm;
    const esr = vcpu.esr;
    // Not an abort the fused path knows, or a VM whose faults have side paths: decline.
    if (
      this.vmDeclines ||
      !esrFscIsTranslationFault(esr) ||
      kvm.races.armed !== 0 ||
      kvm.races.pendingEnd !== 0
    )
      return FUSED_DECLINED;
    const faultIpa = vcpu.faultIpa;
    if (faultIpa >= kvm.physSize || faultIpa >= kvm.ipaLimit) return FUSED_DECLINED;
    const ps: number = kvm.pageSize;
    // Sizes are powers of two: multiplying by the inverse is exact, and cheaper than dividing.
    const invPs = kvm.pgt.geo.invPageSize;
    const gfn = Math.floor(faultIpa * invPs);

    // gfn_to_memslot(), in the plain copy of the current generation.
    const set = kvm.memslots.current;
    if (set !== this.slotSet) this.takeSlots(set);
    const slots = this.slots;
    let slot: Memslot | undefined;
    for (let lo = 0, hi = slots.length - 1; lo <= hi;) {
      const mid = (lo + hi) >> 1;
      const s = slots[mid]!;
      if (gfn < s.baseGfn) hi = mid - 1;
      else if (gfn >= s.baseGfn + s.npages) lo = mid + 1;
      else {
        // No slot (MMIO), dirty logging (memslot_is_logging), or a read-only slot (MMIO for a
        // write, a read-only stage 2 for a read): the general path's.
        if (this.slotOk[mid] === 0) return FUSED_DECLINED;
        slot = s;
        break;
      }
    }
    if (slot === undefined) return FUSED_DECLINED;
    const write = kvmIsWriteFault(esr);
    const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * ps;
    const at = this.at;
    at.hva = hva;

    // vma_lookup(), in the plain copy of the current generation.
    const mm = kvm.mm;
    const vset = mm.vmas;
    if (vset !== this.vmaSet) this.takeVmas(vset);
    const vmas = this.vmas;
    let vma: Vma | undefined;
    for (let lo = 0, hi = vmas.length - 1; lo <= hi;) {
      const mid = (lo + hi) >> 1;
      const m = vmas[mid]!;
      if (hva < m.start) hi = mid - 1;
      else if (hva >= m.end) lo = mid + 1;
      else {
        // Another backing or flags, PROT_MTE's tag sync on a new page, a non-cacheable VMA's
        // attribute audit: the general path's.
        if (this.vmaOk[mid] === 0) return FUSED_DECLINED;
        vma = m;
        break;
      }
    }
    if (vma === undefined) return FUSED_DECLINED;
    const vmFlags = vma.vmFlags;
    const backing = vma.backing;
    // hva_to_pfn()'s protection check: the general path's -EFAULT.
    if ((vmFlags & (write ? VM_WRITE : VM_READ)) === 0) return FUSED_DECLINED;
    // An invalidation in progress makes the general path retry (mmu_invalidate_retry).
    const notifier = kvm.notifier;
    if (notifier.inProgress !== 0) return FUSED_DECLINED;

    // kvm_mmu_topup_memory_cache(): the general path's first step too, so a decline after it
    // leaves the general path nothing different to do.
    const memcache = vcpu.memcache;
    const g = kvm.granule;
    const pgt = kvm.pgt;
    const topup = memcache.topup(pgt.geo.minCachePages);
    if (topup !== 0) return FUSED_DECLINED;

    // hva_to_pfn(): GUP-fast takes a present, writable, normal entry; GUP proper faults a
    // missing anonymous page in for a write (do_anonymous_page, or a PMD folio for THP where
    // the PMD is empty and the aligned range fits the VMA). Anything else: the general path.
    const pt = mm.pt;
    const phys = mm.phys;
    const l = this.leaf;
    pt.lookupOp(at, l);
    let flags = l.flags;
    if ((flags & HPTE_PRESENT) === 0) {
      if (flags !== 0 || !write) return FUSED_DECLINED;
      const ins = this.ins;
      let level = HOST_LEVEL_PTE;
      if (backing === 'thp' && l.level >= HOST_LEVEL_PMD) {
        const size = POW2[g.pmdShift]!;
        const base = Math.floor(hva / size) * size;
        if (
          base >= vma.start &&
          base + size <= vma.end &&
          phys.allocFolioInto(g.pmdShift - g.pageShift, false, ins)
        ) {
          level = HOST_LEVEL_PMD;
          ins.hva = base;
        }
      }
      if (level === HOST_LEVEL_PTE) {
        if (!phys.allocFolioInto(0, false, ins)) return FUSED_DECLINED;
        ins.hva = Math.floor(hva * invPs) * ps;
      }
      mm.stats.faultAllocs++;
      flags = HPTE_PRESENT | HPTE_OWNED | HPTE_WRITE;
      pt.setOp(ins, level, flags);
      l.level = level;
      l.shift = pt.shifts[level]!;
      l.base = ins.hva;
      l.pfn = ins.pfn;
      l.flags = flags;
    } else if ((flags & (HPTE_WRITE | HPTE_SPECIAL)) !== HPTE_WRITE) {
      return FUSED_DECLINED;
    }
    const pfn = l.pfn + Math.floor((hva - l.base) * invPs);
    at.pfn = pfn;
    // A poisoned page: GUP's -EHWPOISON and the SIGBUS are the general path's (it finds the
    // entry just installed, as GUP-fast would).
    if (phys.pageHwPoisonOp(at)) return FUSED_DECLINED;
    // pfn_is_map_memory(): anonymous pages come from the linear map, so this always holds; it
    // is checked rather than assumed, since the memory type depends on it.
    if (!phys.pfnIsMapMemoryOp(at)) return FUSED_DECLINED;

    // Committed: the fault object takes what the lookups found (it carries them into
    // commit(), a function of its own so that V8 gives its helpers their own inlining budget).
    this.handled++;
    const fault = vcpu.fault;
    fault.faultIpa = faultIpa;
    fault.ipa = faultIpa;
    fault.gfn = gfn;
    fault.memslot = slot;
    fault.hva = hva;
    fault.write = write;
    fault.pfn = pfn;
    fault.vmFlags = vmFlags;
    return this.commit(vcpu, slot);
  }

  /**
   * The fused fault from the commit on, with the general path's steps in its order: the
   * fault object holds the fault's IPA, gfn, hva, pfn, write and VMA flags, and this.leaf /
   * this.at the host leaf and the host address. Returns what handle() returns.
   */
  private commit(vcpu: Vcpu, slot: Memslot): number {
    const kvm = vcpu.kvm;
    const fault = vcpu.fault;
    const faultIpa = fault.faultIpa;
    const gfn = fault.gfn;
    const hva = fault.hva;
    const pfn = fault.pfn;
    const write = fault.write;
    const vmFlags = fault.vmFlags;
    const esr = vcpu.esr;
    const g = kvm.granule;
    const ps: number = kvm.pageSize;
    const notifier = kvm.notifier;
    const memcache = vcpu.memcache;
    const pgt = kvm.pgt;
    const mm = kvm.mm;
    const phys = mm.phys;
    const l = this.leaf;
    const at = this.at;
    const locks = kvm.locks;
    const idx = locks.srcuReadLock();
    // Every other field of the fault object, as reset() and the general path leave them.
    fault.isPerm = false;
    fault.exec = kvmIsExecFault(esr);
    fault.faultGranule = 0;
    fault.loggingActive = false;
    fault.cacheablePfnmap = false;
    fault.forcePte = false;
    fault.s2ForceNoncacheable = false;
    fault.prot = KVM_PGTABLE_PROT_R;
    locks.mmapReadLock();
    fault.vmaShift = g.pageShift;
    fault.vmaPagesize = ps;
    fault.mteAllowed = (vmFlags & VM_MTE_ALLOWED) !== 0;
    fault.vfioAllowAnyUc = (vmFlags & VM_ALLOW_ANY_UNCACHED) !== 0;
    fault.isVmaCacheable = true;
    fault.mmuSeq = notifier.seq;
    locks.mmapReadUnlock();
    const follow = fault.follow;
    follow.hva = hva;
    follow.pfn = pfn;
    follow.write = write;
    follow.err = FAULTIN_OK;
    follow.vmaShift = g.pageShift;
    follow.writable = true;
    follow.page = true;
    mm.pagesHeld++;
    fault.page = true;
    fault.writable = true;
    notifier.raceWindow();

    locks.mmuReadLock();
    let ret: number;
    if (notifier.mmuInvalidateRetry(fault.mmuSeq)) {
      ret = EAGAIN;
    } else {
      // transparent_hugepage_adjust(), with the host leaf this fault found or installed
      // standing in for get_user_mapping_size()'s walk of the same entry.
      let size: number = ps;
      if (
        l.shift >= g.pmdShift &&
        faultSupportsStage2HugeMapping(slot, at, g.pmdShift, g.pageShift, g.pmdShift)
      ) {
        size = POW2[g.pmdShift]!;
        fault.faultIpa = Math.floor(faultIpa / size) * size;
        const per = size / ps;
        fault.pfn = Math.floor(pfn / per) * per;
      }
      fault.vmaPagesize = size;
      let prot = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
      if (fault.exec || this.dic) prot |= KVM_PGTABLE_PROT_X;
      fault.prot = prot;
      const heldBefore = memcache.nobjs;
      const op = fault.install;
      op.addr = fault.faultIpa;
      op.size = size;
      op.phys = fault.pfn * ps;
      kvm.stats.maps++;
      ret = pgt.mapOp(op, prot, memcache, FAULT_WALK_FLAGS);
      kvm.stats.tablePagesAllocated += heldBefore - memcache.nobjs;
      // Why the leaf is what it is (provenance.ts), when asked for: from the same fault object.
      if (kvm.provenance !== null) kvm.provenance.record(vcpu, fault, ret);
    }
    // kvm_release_faultin_page(), then mark_page_dirty_in_slot() after the unlock.
    follow.page = false;
    mm.pagesHeld--;
    if (ret === 0) phys.setPageDirtyOp(follow);
    locks.mmuReadUnlock();
    if (ret === 0) markSlotPageDirty(slot, gfn - slot.baseGfn);
    if (ret === EAGAIN) ret = 0;
    vcpu.handler = 'user_mem_abort';
    vcpu.handlerRet = ret;
    locks.srcuReadUnlock(idx);
    return ret === 0 ? 1 : ret;
  }
}
