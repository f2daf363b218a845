/**
 * The counters of what the modelled hardware and host did (AccessStats): the fault path and
 * the page-table callbacks in vm.ts count into them, scenarios report them, and the cost model
 * (cost.ts) prices them. They sit below all three so that pricing does not depend on the VM.
 */

/**
 * What the modelled hardware and host did during one access (or any span the caller
 * chooses): the figures a scenario reports and the cost model prices. Reset per access.
 */
export class AccessStats {
  /** Stage-2 faults taken. */
  faults = 0;
  /** kvm_pgtable_stage2_map calls from the fault path. */
  maps = 0;
  /** kvm_pgtable_stage2_relax_perms calls. */
  relaxes = 0;
  /** Access-flag faults handled (mkyoung). */
  mkyoungs = 0;
  /** TLBI requests: by IPA (inner shareable), by IPA local, by range, whole VMID. */
  tlbiIpa = 0;
  tlbiIpaNsh = 0;
  tlbiRange = 0;
  tlbiVmid = 0;
  /** Bytes the host really cleaned to PoC (zero with FWB: the callback does nothing). */
  dcacheBytes = 0;
  /** dcache_clean_inval_poc calls the page-table code made (with FWB too). */
  dcacheCalls = 0;
  /** Bytes of I-cache invalidation by range (zero with DIC). */
  icacheBytes = 0;
  /** icache_inval_pou calls the page-table code made. */
  icacheCalls = 0;
  /** Ranges large enough that the host invalidated the whole I-cache instead. */
  icacheInvalAll = 0;
  /** Stage-2 table pages allocated (taken from the memcache). */
  tablePagesAllocated = 0;
  /** Host pages (in 4K/16K/64K units) newly allocated and zeroed by host faults. */
  hostPagesZeroed = 0;
  /** Pages whose MTE tags were cleared. */
  mtePagesCleared = 0;
  /** userfaultfd missing-page events. */
  uffdEvents = 0;
  /** Exits to userspace (MMIO, NISV). */
  exits = 0;
  /**
   * Stage-2 access flags the MMU set itself (VTCR_EL2.HA with FEAT_HAFDBS): accesses to an
   * aged leaf that took no access-flag fault.
   */
  hwAfUpdates = 0;

  /** TLBI requests of every kind. */
  get tlbi(): number {
    return this.tlbiIpa + this.tlbiIpaNsh + this.tlbiRange + this.tlbiVmid;
  }

  /** Zeroes every counter. */
  reset(): void {
    this.faults = this.maps = this.relaxes = this.mkyoungs = 0;
    this.tlbiIpa = this.tlbiIpaNsh = this.tlbiRange = this.tlbiVmid = 0;
    this.dcacheBytes = this.dcacheCalls = this.icacheBytes = this.icacheCalls = this.icacheInvalAll = 0;
    this.tablePagesAllocated = this.hostPagesZeroed = this.mtePagesCleared = this.uffdEvents = this.exits = 0;
    this.hwAfUpdates = 0;
  }

  /** Adds another span's counters into this one. */
  add(o: AccessStats): void {
    this.faults += o.faults;
    this.maps += o.maps;
    this.relaxes += o.relaxes;
    this.mkyoungs += o.mkyoungs;
    this.tlbiIpa += o.tlbiIpa;
    this.tlbiIpaNsh += o.tlbiIpaNsh;
    this.tlbiRange += o.tlbiRange;
    this.tlbiVmid += o.tlbiVmid;
    this.dcacheBytes += o.dcacheBytes;
    this.dcacheCalls += o.dcacheCalls;
    this.icacheBytes += o.icacheBytes;
    this.icacheCalls += o.icacheCalls;
    this.icacheInvalAll += o.icacheInvalAll;
    this.tablePagesAllocated += o.tablePagesAllocated;
    this.hostPagesZeroed += o.hostPagesZeroed;
    this.mtePagesCleared += o.mtePagesCleared;
    this.uffdEvents += o.uffdEvents;
    this.exits += o.exits;
    this.hwAfUpdates += o.hwAfUpdates;
  }
}
