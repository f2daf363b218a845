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

/**
 * Per-lock acquire/release counters and violation counts. Each kind's counts are plain fields
 * that its own methods update: the fault path takes and drops six locks a fault, and a field
 * increment is cheaper than a typed array's (no bounds check, no backing-store load). The
 * per-kind arrays (`held`, `acquires`, `underflows`) are built when read, for reports and
 * tests.
 */
export class LockTracker {
  private heldMmapRead = 0;
  private heldMmuRead = 0;
  private heldMmuWrite = 0;
  private heldSrcuRead = 0;
  private acqMmapRead = 0;
  private acqMmuRead = 0;
  private acqMmuWrite = 0;
  private acqSrcuRead = 0;
  private underMmapRead = 0;
  private underMmuRead = 0;
  private underMmuWrite = 0;
  private underSrcuRead = 0;
  /** Acquisitions that would self-deadlock (mmu_lock write with any mmu_lock held, or read under write). */
  deadlocks = 0;
  /**
   * Locks held now, all kinds together, and violations since the last reset (underflows and
   * deadlocks): what isBalanced() reads, so that the check after every access is two loads.
   */
  private outstanding = 0;
  private violations = 0;

  /** Currently held count per kind (indexed by LOCK_*). Returns a new array. */
  get held(): Int32Array {
    return Int32Array.of(this.heldMmapRead, this.heldMmuRead, this.heldMmuWrite, this.heldSrcuRead);
  }
  /** Total acquisitions per kind (indexed by LOCK_*). Returns a new array. */
  get acquires(): Float64Array {
    return Float64Array.of(this.acqMmapRead, this.acqMmuRead, this.acqMmuWrite, this.acqSrcuRead);
  }
  /** Releases of a lock that was not held, per kind (indexed by LOCK_*). Returns a new array. */
  get underflows(): Int32Array {
    return Int32Array.of(this.underMmapRead, this.underMmuRead, this.underMmuWrite, this.underSrcuRead);
  }

  /** Models mmap_read_lock(). */
  mmapReadLock(): void {
    this.heldMmapRead++;
    this.acqMmapRead++;
    this.outstanding++;
  }
  /** Models mmap_read_unlock(). */
  mmapReadUnlock(): void {
    if (this.heldMmapRead > 0) {
      this.heldMmapRead--;
      this.outstanding--;
    } else this.underflow(LOCK_MMAP_READ);
  }
  /** Models read_lock(&kvm->mmu_lock) (kvm_fault_lock outside pKVM). */
  mmuReadLock(): void {
    if (this.heldMmuWrite > 0) this.deadlock();
    this.heldMmuRead++;
    this.acqMmuRead++;
    this.outstanding++;
  }
  /** Models read_unlock(&kvm->mmu_lock). */
  mmuReadUnlock(): void {
    if (this.heldMmuRead > 0) {
      this.heldMmuRead--;
      this.outstanding--;
    } else this.underflow(LOCK_MMU_READ);
  }
  /** Models write_lock(&kvm->mmu_lock) (kvm_fault_lock under pKVM; notifier invalidation). */
  mmuWriteLock(): void {
    if (this.heldMmuWrite > 0 || this.heldMmuRead > 0) this.deadlock();
    this.heldMmuWrite++;
    this.acqMmuWrite++;
    this.outstanding++;
  }
  /** Models write_unlock(&kvm->mmu_lock). */
  mmuWriteUnlock(): void {
    if (this.heldMmuWrite > 0) {
      this.heldMmuWrite--;
      this.outstanding--;
    } else this.underflow(LOCK_MMU_WRITE);
  }
  /** Models srcu_read_lock(&kvm->srcu). Returns the index to pass back (always 0 here). */
  srcuReadLock(): number {
    this.heldSrcuRead++;
    this.acqSrcuRead++;
    this.outstanding++;
    return 0;
  }
  /** Models srcu_read_unlock(&kvm->srcu, idx). */
  srcuReadUnlock(_idx: number): void {
    if (this.heldSrcuRead > 0) {
      this.heldSrcuRead--;
      this.outstanding--;
    } else this.underflow(LOCK_SRCU_READ);
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
    const held = this.held;
    const underflows = this.underflows;
    for (let i = 0; i < NKINDS; i++) {
      if (held[i]! > 0) out.push(`${p}${NAMES[i]} still held (${held[i]}) at exit`);
      if (underflows[i]! > 0)
        out.push(`${p}${NAMES[i]} released ${underflows[i]} time(s) without being held`);
    }
    if (this.deadlocks > 0) out.push(`${p}${this.deadlocks} mmu_lock acquisition(s) would self-deadlock`);
    return out;
  }

  /** Forgets held counts and violations (after they have been reported). Keeps the acquire totals. */
  reset(): void {
    this.heldMmapRead = this.heldMmuRead = this.heldMmuWrite = this.heldSrcuRead = 0;
    this.underMmapRead = this.underMmuRead = this.underMmuWrite = this.underSrcuRead = 0;
    this.deadlocks = 0;
    this.outstanding = 0;
    this.violations = 0;
  }

  /** A release of lock kind `k` that was not held (cold). */
  private underflow(k: number): void {
    if (k === LOCK_MMAP_READ) this.underMmapRead++;
    else if (k === LOCK_MMU_READ) this.underMmuRead++;
    else if (k === LOCK_MMU_WRITE) this.underMmuWrite++;
    else this.underSrcuRead++;
    this.violations++;
  }

  private deadlock(): void {
    this.deadlocks++;
    this.violations++;
  }
}

const NONE: readonly string[] = Object.freeze([]);
