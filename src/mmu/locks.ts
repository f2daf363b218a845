/**
 * Lock tracking for the fault path: mmap_lock (read side), kvm->mmu_lock
 * (read and write) and the kvm->srcu read side. The model is single-threaded,
 * so a "lock" is a counter; what matters is that every path releases what it
 * took. An unbalanced exit becomes a diagnostic string, never an exception.
 * No allocation per acquire or release.
 */

/** Lock kind index: mmap_read_lock(mm). */
export const LOCK_MMAP_READ = 0;
/** Lock kind index: read_lock(&kvm->mmu_lock). */
export const LOCK_MMU_READ = 1;
/** Lock kind index: write_lock(&kvm->mmu_lock). */
export const LOCK_MMU_WRITE = 2;
/** Lock kind index: srcu_read_lock(&kvm->srcu). */
export const LOCK_SRCU_READ = 3;

const NAMES = ['mmap_lock (read)', 'mmu_lock (read)', 'mmu_lock (write)', 'kvm->srcu (read)'];
const NKINDS = 4;

/** Per-lock acquire/release counters and violation counts. */
export class LockTracker {
  /** Currently held count per kind. */
  readonly held = new Int32Array(NKINDS);
  /** Total acquisitions per kind. */
  readonly acquires = new Float64Array(NKINDS);
  /** Releases of a lock that was not held, per kind. */
  readonly underflows = new Int32Array(NKINDS);
  /** Acquisitions that would self-deadlock (mmu_lock write with any mmu_lock held, or read under write). */
  deadlocks = 0;
  /**
   * Locks held now, all kinds together, and violations since the last reset (underflows and
   * deadlocks): what isBalanced() reads, so that the check after every access is two loads,
   * not a pass over the per-kind arrays.
   */
  private outstanding = 0;
  private violations = 0;

  /** Models mmap_read_lock(). */
  mmapReadLock(): void {
    this.acquire(LOCK_MMAP_READ);
  }
  /** Models mmap_read_unlock(). */
  mmapReadUnlock(): void {
    this.release(LOCK_MMAP_READ);
  }
  /** Models read_lock(&kvm->mmu_lock) (kvm_fault_lock outside pKVM). */
  mmuReadLock(): void {
    if (this.held[LOCK_MMU_WRITE] > 0) this.deadlock();
    this.acquire(LOCK_MMU_READ);
  }
  /** Models read_unlock(&kvm->mmu_lock). */
  mmuReadUnlock(): void {
    this.release(LOCK_MMU_READ);
  }
  /** Models write_lock(&kvm->mmu_lock) (kvm_fault_lock under pKVM; notifier invalidation). */
  mmuWriteLock(): void {
    if (this.held[LOCK_MMU_WRITE] > 0 || this.held[LOCK_MMU_READ] > 0) this.deadlock();
    this.acquire(LOCK_MMU_WRITE);
  }
  /** Models write_unlock(&kvm->mmu_lock). */
  mmuWriteUnlock(): void {
    this.release(LOCK_MMU_WRITE);
  }
  /** Models srcu_read_lock(&kvm->srcu). Returns the index to pass back (always 0 here). */
  srcuReadLock(): number {
    this.acquire(LOCK_SRCU_READ);
    return 0;
  }
  /** Models srcu_read_unlock(&kvm->srcu, idx). */
  srcuReadUnlock(_idx: number): void {
    this.release(LOCK_SRCU_READ);
  }

  /** True if nothing is held (a cheap check for the hot path's exit). */
  isBalanced(): boolean {
    return this.outstanding === 0 && this.violations === 0;
  }

  /**
   * Returns one diagnostic per problem: a lock still held, a release without
   * an acquire, a self-deadlocking acquisition. Empty when balanced. `context`
   * prefixes each message (e.g. "step 3"). Does not reset; see reset().
   */
  assertBalanced(context = ''): readonly string[] {
    if (this.isBalanced()) return NONE;
    const p = context === '' ? '' : `${context}: `;
    const out: string[] = [];
    for (let i = 0; i < NKINDS; i++) {
      if (this.held[i] > 0) out.push(`${p}${NAMES[i]} still held (${this.held[i]}) at exit`);
      if (this.underflows[i] > 0)
        out.push(`${p}${NAMES[i]} released ${this.underflows[i]} time(s) without being held`);
    }
    if (this.deadlocks > 0) out.push(`${p}${this.deadlocks} mmu_lock acquisition(s) would self-deadlock`);
    return out;
  }

  /** Forgets held counts and violations (after they have been reported). Keeps the acquire totals. */
  reset(): void {
    this.held.fill(0);
    this.underflows.fill(0);
    this.deadlocks = 0;
    this.outstanding = 0;
    this.violations = 0;
  }

  private acquire(k: number): void {
    this.held[k]++;
    this.acquires[k]++;
    this.outstanding++;
  }

  private release(k: number): void {
    if (this.held[k] > 0) {
      this.held[k]--;
      this.outstanding--;
    } else {
      this.underflows[k]++;
      this.violations++;
    }
  }

  private deadlock(): void {
    this.deadlocks++;
    this.violations++;
  }
}

const NONE: readonly string[] = Object.freeze([]);
