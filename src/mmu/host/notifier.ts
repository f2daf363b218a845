/**
 * MMU notifiers between the host mm and KVM, with the invalidation counters
 * KVM keeps (kvm->mmu_invalidate_seq and kvm->mmu_invalidate_in_progress).
 *
 * The host calls invalidateRangeStart()/invalidateRangeEnd() around every
 * change that removes or replaces a host mapping (copy-on-write, unmap,
 * mprotect, THP split) and clearYoung() when aging. The single subscriber (KVM)
 * converts hva ranges to gfn ranges through the memslots and unmaps or ages
 * stage 2.
 *
 * A race hook lets tests and scenarios hold or complete an invalidation inside
 * the fault path's real race window (after mmu_seq is sampled, before
 * mmu_lock), so mmu_invalidate_retry() is exercised.
 */

import { DOUBLE_FIELD } from '../../pgtable/op.js';

/**
 * struct mmu_notifier_range: the hvas [start, end) an event covers. The notifier reuses one
 * for every event, so a subscriber reads it during the call and keeps no reference. (As in
 * the kernel, the range travels by reference: two addresses as arguments would be boxed into
 * heap numbers at every call V8 does not inline, and a copy-on-write fault sends one.)
 */
export interface MmuNotifierRange {
  start: number;
  end: number;
}

/** What KVM implements to receive host MMU notifications (its mmu_notifier_ops). */
export interface MmuNotifierSubscriber {
  /**
   * Called from invalidateRangeStart() after in_progress has been raised. Models
   * kvm_mmu_notifier_invalidate_range_start()'s unmap of the corresponding stage-2 range.
   */
  invalidateRange(range: Readonly<MmuNotifierRange>): void;
  /**
   * Models kvm_mmu_notifier_clear_young(): age (mkold) stage 2 over the range. Returns true
   * if any entry was young.
   */
  clearYoung(range: Readonly<MmuNotifierRange>): boolean;
}

/** Race-injection mode: run a whole invalidation (start and end) in the window, bumping the sequence. */
export const RACE_COMPLETE = 1;
/** Race-injection mode: run invalidate_range_start only, and hold it until releaseHeld(). */
export const RACE_HOLD = 2;

/** Counters for the summary output. */
export interface NotifierStats {
  /** invalidate_range_start calls. */
  invalidations: number;
  /** clear_young calls. */
  clearYoungs: number;
  /** Races fired by raceWindow(). */
  racesFired: number;
}

/**
 * The host mm's notifier chain plus KVM's invalidation counters.
 * Allocates nothing per call.
 */
export class MmuNotifier {
  /** kvm->mmu_invalidate_seq: bumped by every completed invalidation. */
  seq = 0;
  /** kvm->mmu_invalidate_in_progress: invalidations started and not yet ended. */
  inProgress = 0;
  /** Counters. */
  readonly stats: NotifierStats = { invalidations: 0, clearYoungs: 0, racesFired: 0 };
  /** The range carrier invalidateRangeStart() and clearYoung() fill from their arguments. */
  private readonly arg: MmuNotifierRange = { start: DOUBLE_FIELD, end: DOUBLE_FIELD };

  private subscriber: MmuNotifierSubscriber | null = null;
  private raceMode = 0;
  private raceStart = 0;
  private raceEnd = 0;
  private heldCount = 0;
  private heldStart = 0;
  private heldEnd = 0;

  /** Registers KVM (mmu_notifier_register). Replaces any previous subscriber. */
  subscribe(s: MmuNotifierSubscriber | null): void {
    this.subscriber = s;
  }

  /**
   * Models mmu_notifier_invalidate_range_start() and KVM's
   * kvm_mmu_invalidate_begin(): raise in_progress, then let the subscriber
   * unmap [hvaStart, hvaEnd).
   */
  invalidateRangeStart(hvaStart: number, hvaEnd: number): void {
    this.arg.start = hvaStart;
    this.arg.end = hvaEnd;
    this.invalidateRangeStartOp(this.arg);
  }

  /**
   * invalidateRangeStart() of a caller-owned range carrier (the host's hot callers: the
   * bounds are hvas past 2^31, which V8 would box as arguments). The subscriber receives it
   * by reference, as struct mmu_notifier_range.
   */
  invalidateRangeStartOp(range: MmuNotifierRange): void {
    this.inProgress++;
    this.stats.invalidations++;
    if (this.subscriber !== null) this.subscriber.invalidateRange(range);
  }

  /**
   * Models mmu_notifier_invalidate_range_end() and kvm_mmu_invalidate_end():
   * bump the sequence (smp_wmb), then drop in_progress. KVM's end hook needs no range
   * (the arguments are optional, and the fault path passes none).
   */
  invalidateRangeEnd(_hvaStart?: number, _hvaEnd?: number): void {
    this.seq++;
    this.inProgress--;
  }

  /**
   * Models mmu_notifier_clear_young(): asks the subscriber to age the range.
   * Returns true if it reported any young entry.
   */
  clearYoung(hvaStart: number, hvaEnd: number): boolean {
    this.stats.clearYoungs++;
    this.arg.start = hvaStart;
    this.arg.end = hvaEnd;
    return this.subscriber !== null && this.subscriber.clearYoung(this.arg);
  }

  /**
   * Models mmu_invalidate_retry(kvm, mmu_seq): true if an invalidation is in
   * progress or the sequence moved since `mmuSeq` was sampled.
   */
  mmuInvalidateRetry(mmuSeq: number): boolean {
    return this.inProgress !== 0 || this.seq !== mmuSeq;
  }

  /**
   * Test hook: arm a one-shot race over hvas [hvaStart, hvaEnd). The next
   * raceWindow() call runs it: RACE_COMPLETE does start+end (the sequence
   * moves), RACE_HOLD does start only and keeps it in progress until
   * releaseHeld().
   */
  armRace(mode: typeof RACE_COMPLETE | typeof RACE_HOLD, hvaStart: number, hvaEnd: number): void {
    this.raceMode = mode;
    this.raceStart = hvaStart;
    this.raceEnd = hvaEnd;
  }

  /**
   * The fault path calls this at the point the kernel's race window exists:
   * after mmu_seq was sampled and mmap_lock dropped, between
   * __kvm_faultin_pfn() and kvm_fault_lock(). Fires an armed race, if any.
   * Returns true if a race fired.
   */
  raceWindow(): boolean {
    const mode = this.raceMode;
    if (mode === 0) return false;
    this.raceMode = 0;
    this.stats.racesFired++;
    this.invalidateRangeStart(this.raceStart, this.raceEnd);
    if (mode === RACE_COMPLETE) {
      this.invalidateRangeEnd(this.raceStart, this.raceEnd);
    } else {
      this.heldCount++;
      this.heldStart = this.raceStart;
      this.heldEnd = this.raceEnd;
    }
    return true;
  }

  /** True while a race is armed and has not fired yet. */
  get raceArmed(): boolean {
    return this.raceMode !== 0;
  }

  /** Ends every invalidation held by RACE_HOLD. Returns how many were ended. */
  releaseHeld(): number {
    const n = this.heldCount;
    for (let i = 0; i < n; i++) this.invalidateRangeEnd(this.heldStart, this.heldEnd);
    this.heldCount = 0;
    return n;
  }
}
