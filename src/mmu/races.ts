/**
 * Races user_mem_abort() must survive, injected at the points where the kernel's windows are
 * (an access's `race` option, docs/scenario.md, "Host events"). A race is armed for one
 * access and happens on that access's first fault only; user_mem_abort() (fault.ts) calls the
 * hooks below, each behind a single `armed` test, so an unarmed fault pays one field read.
 *
 * - RACE_INVALIDATE: an MMU-notifier invalidation of the faulting page's host range completes
 *   after mmu_seq was sampled and before mmu_lock is taken, so mmu_invalidate_retry() sees the
 *   sequence move: −EAGAIN, returned as 0, and the guest replays the fault.
 * - RACE_ZAP_HOST_PTE: the host's leaf for the hva disappears (MADV_DONTNEED-like: the pages go)
 *   after __kvm_faultin_pfn() and before get_user_mapping_size() walks the host table, which
 *   then finds no valid leaf: −EAGAIN from transparent_hugepage_adjust(), replayed. The zap's
 *   own MMU-notifier invalidation needs mmu_lock for write, so it completes once the fault
 *   drops the read side.
 * - RACE_OTHER_VCPU: another vCPU, faulting on the same page, installs the same leaf first (its
 *   own memcache, the same pfn, size and prot); this fault's map then finds the leaf present
 *   and stage2_map_walker_try_leaf() returns −EAGAIN (no update needed), returned as 0.
 *
 * Allocates nothing once armed (the other vCPU's memcache is made when the race is armed).
 */

import { S2Op } from '../pgtable/op.js';
import type { MemCache } from '../pgtable/pool.js';
import { KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED } from '../pgtable/walker.js';
import { newHostLeaf } from './host/hostpt.js';
import { vmaLookup } from './host/vma.js';
import type { S2Fault } from './fault.js';
import type { Kvm } from './vm.js';

/** No race armed. */
export const RACE_NONE = 0;
/** An MMU-notifier invalidation lands between the mmu_seq sample and mmu_lock. */
export const RACE_INVALIDATE = 1;
/** The host leaf vanishes before get_user_mapping_size(). */
export const RACE_ZAP_HOST_PTE = 2;
/** Another vCPU installs the same stage-2 leaf first. */
export const RACE_OTHER_VCPU = 3;

/** Race names by RACE_* (the scenario's `race` values). */
export const RACE_NAMES = ['none', 'invalidate', 'zap-host-pte', 'other-vcpu'] as const;

const WALK_FLAGS = KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED;

/** The armed race of one VM and what it left to finish. */
export class FaultRaces {
  /** RACE_* armed for the current access, RACE_NONE when none (or once it has fired). */
  armed = RACE_NONE;
  /** The race that fired during the current access, RACE_NONE if none did. */
  fired = RACE_NONE;
  /** A host range whose invalidation is waiting for mmu_lock (zap-host-pte); pendingEnd 0: none. */
  pendingStart = 0;
  pendingEnd = 0;
  private readonly kvm: Kvm;
  private other: MemCache | null = null;
  private readonly leaf = newHostLeaf();
  /** The other vCPU's page-table operands. */
  private readonly op = new S2Op();

  constructor(kvm: Kvm) {
    this.kvm = kvm;
  }

  /** Arms `race` (RACE_*) for the next access's first fault. */
  arm(race: number): void {
    this.armed = race;
    this.fired = RACE_NONE;
    if (race === RACE_OTHER_VCPU && this.other === null) this.other = this.kvm.newMemcache();
  }

  /** Disarms (after the access). Returns the race that was armed and never fired, or RACE_NONE. */
  disarm(): number {
    const missed = this.armed;
    this.armed = RACE_NONE;
    return missed;
  }

  /** True when this is the access's first fault (a race happens on no other). */
  private firstFault(): boolean {
    if (this.kvm.stats.faults <= 1) return true;
    return false;
  }

  /** Hook: after __kvm_faultin_pfn(), before kvm_fault_lock(). */
  afterFaultin(fault: S2Fault): void {
    if (this.armed !== RACE_INVALIDATE || !this.firstFault()) return;
    this.armed = RACE_NONE;
    this.fired = RACE_INVALIDATE;
    const n = this.kvm.notifier;
    n.invalidateRangeStart(fault.hva, fault.hva + this.kvm.pageSize);
    n.invalidateRangeEnd();
  }

  /** Hook: in transparent_hugepage_adjust(), before get_user_mapping_size() walks `fault.hva`. */
  beforeUserMappingSize(fault: S2Fault): void {
    if (this.armed !== RACE_ZAP_HOST_PTE || !this.firstFault()) return;
    const mm = this.kvm.mm;
    const hva = fault.hva;
    const vma = vmaLookup(mm.vmas, hva);
    const l = this.leaf;
    if (vma === undefined || !mm.pt.lookup(hva, l)) return;
    this.armed = RACE_NONE;
    this.fired = RACE_ZAP_HOST_PTE;
    const size = 2 ** l.shift;
    mm.zapRange(vma, l.base, l.base + size);
    this.pendingStart = l.base;
    this.pendingEnd = l.base + size;
  }

  /**
   * Hook: under mmu_lock, before the relax or map (`relax` says which; the fault holds the
   * IPA, prot, size and pfn): the other vCPU does the same first, with its own memcache.
   */
  beforeInstall(fault: S2Fault, relax: boolean): void {
    if (this.armed !== RACE_OTHER_VCPU || !this.firstFault()) return;
    this.armed = RACE_NONE;
    this.fired = RACE_OTHER_VCPU;
    const kvm = this.kvm;
    const pgt = kvm.pgt;
    const op = this.op;
    const prot = fault.prot;
    op.addr = fault.faultIpa;
    if (relax) {
      pgt.relaxPermsOp(op, prot, WALK_FLAGS);
      return;
    }
    const mc = this.other!;
    mc.topup(pgt.geo.minCachePages);
    const before = mc.nobjs;
    op.size = fault.vmaPagesize;
    op.phys = fault.pfn * kvm.pageSize;
    pgt.mapOp(op, prot, mc, WALK_FLAGS);
    kvm.stats.tablePagesAllocated += before - mc.nobjs;
  }

  /** Hook: after kvm_fault_unlock(): a zap's invalidation that was waiting for mmu_lock runs. */
  afterUnlock(): void {
    if (this.pendingEnd === 0) return;
    const start = this.pendingStart;
    const end = this.pendingEnd;
    this.pendingEnd = 0;
    this.kvm.notifier.invalidateRangeStart(start, end);
    this.kvm.notifier.invalidateRangeEnd();
  }
}
