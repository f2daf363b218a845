/**
 * A KVM VM on the modelled host: its stage-2 table, memslots, the MMU-notifier side of KVM
 * (invalidate and age stage 2 when the host changes its mappings), dirty logging, and the
 * accounting every access reports. The abort handler and user_mem_abort() are in abort.ts
 * and fault.ts; the vCPU loop in vcpu.ts.
 */

import { checkKvmOptions, checkMemslotSpec } from './apicheck.js';
import { EFAULT, EINVAL } from '../pgtable/errno.js';
import type { GranuleSize } from '../pgtable/geometry.js';
import { MemCache, newMaintenanceOp } from '../pgtable/pool.js';
import type { MaintenanceOp, Stage2Events } from '../pgtable/pool.js';
import { Stage2PageTable } from '../pgtable/stage2.js';
import { DESCRIPTION_HOOK, INSPECT_HOOK, debugText } from '../pgtable/debughooks.js';
import { S2Op } from '../pgtable/op.js';
import type { CpuFeatures } from './cpu.js';
import { kvmIpaLimitBits, kvmLpa2IsEnabled, kvmSupportsCacheablePfnmap } from './cpu.js';
import { getAndClearDirty } from './dirty.js';
import { GRANULE_16K, GRANULE_4K, GRANULE_64K } from './host/granule.js';
import type { HostGranule } from './host/granule.js';
import { Mm } from './host/mm.js';
import { MmuNotifier, type MmuNotifierRange } from './host/notifier.js';
import { PhysMem } from './host/physmem.js';
import type { PhysRegion } from './host/physmem.js';
import { forEachVmaInRange, kvmVmaIsCacheable, VM_MTE_ALLOWED, VM_PFNMAP } from './host/vma.js';
import { KERNELS } from './kernel.js';
import type { KernelModel, KernelName } from './kernel.js';
import { LockTracker } from './locks.js';
import { FaultRaces } from './races.js';
import { Journal } from '../pgtable/journal.js';
import { Provenance } from './provenance.js';
import { AccessStats } from './stats.js';
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  MemslotGenerations,
  hvaRangeToGfns,
  gfnToMemslot,
  gfnToMemslotOp,
} from './memslots.js';
import type { GfnRange, Memslot, MemslotSpec } from './memslots.js';

/** The notifier's operands for the page table's unmap (reused: see S2Op). */
const unmapOp = new S2Op();

/**
 * MAX_DVM_OPS (= PTRS_PER_PTE) << (CTR_EL0.IminLine + 2): above this many bytes,
 * __invalidate_icache_guest_page() invalidates the whole I-cache (icache_inval_all_pou)
 * rather than walking the range. IminLine is taken as 4 (64-byte lines).
 */
export function icacheRangeLimit(pageSize: number): number {
  return (pageSize / 8) * 2 ** (4 + 2);
}

/**
 * kvm_s2_mm_ops' TLBI and cache-maintenance callbacks as the host runs them, feeding the
 * current AccessStats: clean_dcache_guest_page does nothing with FWB,
 * invalidate_icache_guest_page nothing with DIC and the whole I-cache for large ranges.
 */
class KvmMmOps implements Stage2Events {
  stats: AccessStats;
  private readonly fwb: boolean;
  private readonly dic: boolean;
  private readonly icacheLimit: number;
  constructor(stats: AccessStats, fwb: boolean, dic: boolean, pageSize: number) {
    this.stats = stats;
    this.fwb = fwb;
    this.dic = dic;
    this.icacheLimit = icacheRangeLimit(pageSize);
  }
  tlbiVmidIpa(): void {
    this.stats.tlbiIpa++;
  }
  tlbiVmidIpaNsh(): void {
    this.stats.tlbiIpaNsh++;
  }
  tlbiVmidRange(): void {
    this.stats.tlbiRange++;
  }
  tlbiVmid(): void {
    this.stats.tlbiVmid++;
  }
  dcacheCleanInvalPoc(op: Readonly<MaintenanceOp>): void {
    this.stats.dcacheCalls++;
    if (!this.fwb) this.stats.dcacheBytes += op.size;
  }
  icacheInvalPou(op: Readonly<MaintenanceOp>): void {
    this.stats.icacheCalls++;
    if (this.dic) return;
    if (op.size > this.icacheLimit) this.stats.icacheInvalAll++;
    else this.stats.icacheBytes += op.size;
  }
}

/** A Stage2Events that forwards to two sinks (the VM's accounting and a user's recorder). */
class TeeEvents implements Stage2Events {
  readonly a: Stage2Events;
  readonly b: Stage2Events;
  constructor(a: Stage2Events, b: Stage2Events) {
    this.a = a;
    this.b = b;
  }
  tlbiVmidIpa(op: Readonly<MaintenanceOp>): void {
    this.a.tlbiVmidIpa(op);
    this.b.tlbiVmidIpa(op);
  }
  tlbiVmidIpaNsh(op: Readonly<MaintenanceOp>): void {
    this.a.tlbiVmidIpaNsh(op);
    this.b.tlbiVmidIpaNsh(op);
  }
  tlbiVmidRange(op: Readonly<MaintenanceOp>): void {
    this.a.tlbiVmidRange(op);
    this.b.tlbiVmidRange(op);
  }
  tlbiVmid(): void {
    this.a.tlbiVmid();
    this.b.tlbiVmid();
  }
  dcacheCleanInvalPoc(op: Readonly<MaintenanceOp>): void {
    this.a.dcacheCleanInvalPoc(op);
    this.b.dcacheCleanInvalPoc(op);
  }
  icacheInvalPou(op: Readonly<MaintenanceOp>): void {
    this.a.icacheInvalPou(op);
    this.b.icacheInvalPou(op);
  }
}

/** How a VM is built: the host and the VM's own settings. */
export interface KvmOptions {
  cpu: CpuFeatures;
  granule: GranuleSize;
  /** Host physical address size (PARange), default 48: get_kvm_ipa_limit(). */
  paBits?: number;
  physical: readonly PhysRegion[];
  ipaBits?: number;
  /** KVM_CAP_ARM_MTE. */
  mte?: boolean;
  /** KVM_CAP_ARM_NISV_TO_USER. */
  nisvToUser?: boolean;
  kernel?: KernelName;
  /** An extra sink for the page-table code's TLBI and CMO calls (debugging, tests). */
  events?: Stage2Events;
  /** Memcache capacity; default KVM's 40 pages. */
  memcacheCapacity?: number;
  /**
   * The most stage-2 table pages the host will allocate for the VM: the PGD, the tables and
   * the pages waiting in memcaches. Past it kvm_mmu_topup_memory_cache() fails (−ENOMEM).
   */
  tablePagesMax?: number;
  /** Journal every stage-2 descriptor write (pgt.journal, src/pgtable/journal.ts); default false. */
  journal?: boolean;
  /** Record why each leaf the fault path changes is what it is (src/mmu/provenance.ts); default false. */
  provenance?: boolean;
}

/** One line of the run's diagnostics, with the step it happened in when known. */
export type Diagnostic = string;

/** The host granule description for a PAGE_SIZE. */
function hostGranule(g: GranuleSize): HostGranule {
  return g === 4096 ? GRANULE_4K : g === 16384 ? GRANULE_16K : GRANULE_64K;
}

/**
 * struct kvm for arm64, with the host it runs on: physical memory, the VMM's mm, the
 * stage-2 table, memslots and the MMU-notifier hooks.
 */
export class Kvm {
  readonly cpu: CpuFeatures;
  readonly kernel: KernelModel;
  readonly granule: HostGranule;
  readonly pageSize: GranuleSize;
  readonly pageShift: number;
  /** kvm_lpa2_is_enabled(): VTCR_EL2.DS = 1 and LPA2 descriptors (no SH field) for this VM. */
  readonly lpa2: boolean;
  /**
   * VTCR_EL2.HA as the hardware honours it: kvm_get_vtcr() sets HA unless the AmpereOne
   * AC03_CPU_38 workaround applies, and the bit is RES0 on a CPU without FEAT_HAFDBS. With it
   * the stage-2 walk sets a leaf's AF itself instead of taking an access-flag fault.
   */
  readonly hwAf: boolean;
  /** get_kvm_ipa_limit(): the largest IPA size the host supports (kvm_set_ipa_limit()). */
  readonly ipaLimitBits: number;
  readonly ipaBits: number;
  /** kvm_phys_size(): 2^ipaBits. */
  readonly physSize: number;
  /** 2^get_kvm_ipa_limit(). */
  readonly ipaLimit: number;
  /** kvm_has_mte(). */
  readonly mte: boolean;
  readonly nisvToUser: boolean;
  readonly phys: PhysMem;
  readonly notifier: MmuNotifier;
  readonly mm: Mm;
  readonly pgt: Stage2PageTable;
  readonly memslots = new MemslotGenerations();
  readonly locks = new LockTracker();
  /** The accounting the page-table callbacks and the fault path feed (swap per access). */
  stats = new AccessStats();
  /** Whole-run totals (the runner adds each access's stats). */
  readonly totals = new AccessStats();
  /** Diagnostics: lock-balance violations, leaked pages, warnings. */
  readonly diagnostics: Diagnostic[] = [];
  readonly memcacheCapacity: number;
  /** Races armed for the next access (races.ts), and their fault-path hooks. */
  readonly races: FaultRaces = new FaultRaces(this);
  /** The fault path's provenance records (KvmOptions.provenance), or null. */
  provenance: Provenance | null = null;
  private readonly mmOps: KvmMmOps;
  /** The operands of kvm_flush_remote_tlbs_range()'s TLBI (scratch). */
  private readonly flushOp: MaintenanceOp = newMaintenanceOp();
  /** The gfn range of one slot in an MMU-notifier event (scratch). */
  private readonly notifierGfns: GfnRange = { start: 0, end: 0 };

  constructor(opts: KvmOptions) {
    checkKvmOptions(opts); // the API boundary: TypeError or RangeError naming the option
    this.cpu = opts.cpu;
    this.kernel = KERNELS[opts.kernel ?? '6.17'];
    this.pageSize = opts.granule;
    this.granule = hostGranule(opts.granule);
    this.pageShift = this.granule.pageShift;
    this.lpa2 = kvmLpa2IsEnabled(opts.cpu, opts.granule);
    this.ipaLimitBits = kvmIpaLimitBits(opts.paBits ?? 48, opts.granule, this.lpa2);
    this.ipaBits = opts.ipaBits ?? 40;
    this.physSize = 2 ** this.ipaBits;
    this.ipaLimit = 2 ** this.ipaLimitBits;
    if (this.ipaBits > this.ipaLimitBits) {
      throw new RangeError(
        `ipaBits ${this.ipaBits} exceeds the host's IPA limit (${this.ipaLimitBits} bits` +
          (this.ipaLimitBits < (opts.paBits ?? 48) ? ': 48 without LPA2 on a 4K/16K granule)' : ')'),
      );
    }
    this.mte = (opts.mte ?? false) && opts.cpu.mte;
    if ((opts.mte ?? false) && !opts.cpu.mte) throw new RangeError('vm.mte needs a CPU with MTE');
    this.nisvToUser = opts.nisvToUser ?? false;
    this.hwAf = opts.cpu.hafdbs;
    this.phys = new PhysMem(this.granule, opts.physical, { mte: opts.cpu.mte });
    this.notifier = new MmuNotifier();
    this.mm = new Mm(this.phys, this.notifier);
    this.mmOps = new KvmMmOps(this.stats, opts.cpu.fwb, opts.cpu.dic, opts.granule);
    this.pgt = new Stage2PageTable({
      granule: opts.granule,
      ipaBits: this.ipaBits,
      fwb: opts.cpu.fwb,
      lpa2: this.lpa2,
      tlbiRange: opts.cpu.tlbiRange,
      events: opts.events ? new TeeEvents(this.mmOps, opts.events) : this.mmOps,
    });
    this.memcacheCapacity = opts.memcacheCapacity ?? 40;
    if (opts.tablePagesMax !== undefined) {
      // The PGD is allocated when the VM is created (kvm_init_stage2_mmu); the limit counts it.
      if (this.pgt.pool.inUse > opts.tablePagesMax)
        throw new RangeError(
          `tablePagesMax ${opts.tablePagesMax} is less than the ${this.pgt.pool.inUse} page(s) of the stage-2 PGD`,
        );
      this.pgt.pool.limit = opts.tablePagesMax;
    }
    if (opts.journal === true) this.pgt.journal = new Journal(this.pgt);
    if (opts.provenance === true) this.provenance = new Provenance(this);
    this.notifier.subscribe({
      invalidateRange: (range) => this.mmuNotifierInvalidateRange(range),
      clearYoung: (range) => this.mmuNotifierClearYoung(range),
    });
  }

  /**
   * Called with each stage-2 IPA range an MMU-notifier invalidation unmaps (debugging and the
   * scenario runner's incremental host-consistency audit; null: none). Cold path.
   */
  invalidateHook: ((ipa: number, size: number) => void) | null = null;

  /** Points the accounting at `stats` (the current access's). */
  setStats(stats: AccessStats): void {
    this.stats = stats;
    this.mmOps.stats = stats;
  }

  /** A new vCPU memcache over this VM's table pool. */
  newMemcache(): MemCache {
    return new MemCache(this.pgt.pool, this.memcacheCapacity);
  }

  /** Table pages the stage-2 tree holds now (the PGD included). */
  get tablePages(): number {
    return this.pgt.countTables();
  }

  // ---- MMU notifiers (virt/kvm/kvm_main.c → arch/arm64/kvm/mmu.c) -------------------

  /**
   * kvm_mmu_notifier_invalidate_range_start() → kvm_unmap_gfn_range(): unmaps the stage-2
   * range of every memslot the hva range touches, under the mmu_lock write side.
   * (The notifier itself counts mmu_invalidate_in_progress and the sequence.)
   */
  private mmuNotifierInvalidateRange(range: Readonly<MmuNotifierRange>): void {
    this.locks.mmuWriteLock();
    const slots = this.memslots.current.slots;
    const gfns = this.notifierGfns;
    const pgt = this.pgt;
    for (let i = 0; i < slots.length; i++) {
      if (!hvaRangeToGfns(slots[i], range, this.pageShift, gfns)) continue;
      unmapOp.addr = gfns.start * this.pageSize;
      unmapOp.size = (gfns.end - gfns.start) * this.pageSize;
      pgt.unmapOp(unmapOp);
      if (this.invalidateHook !== null) this.invalidateHook(unmapOp.addr, unmapOp.size);
    }
    this.locks.mmuWriteUnlock();
  }

  /** kvm_mmu_notifier_clear_young() → kvm_age_gfn(): stage-2 mkold over the range. */
  private mmuNotifierClearYoung(range: Readonly<MmuNotifierRange>): boolean {
    let young = false;
    this.locks.mmuWriteLock();
    const slots = this.memslots.current.slots;
    const gfns = this.notifierGfns;
    for (let i = 0; i < slots.length; i++) {
      if (!hvaRangeToGfns(slots[i], range, this.pageShift, gfns)) continue;
      if (this.pgt.testClearYoung(gfns.start * this.pageSize, (gfns.end - gfns.start) * this.pageSize, true))
        young = true;
    }
    this.locks.mmuWriteUnlock();
    return young;
  }

  /**
   * The MMU notifier's clear_young over the host range that backs [ipa, ipa + size):
   * what the host's page aging does to a guest. Returns whether any leaf was young.
   */
  ageIpaRange(ipa: number, size: number): boolean {
    let young = false;
    const ps = this.pageSize;
    const first = Math.floor(ipa / ps);
    const last = Math.ceil((ipa + size) / ps);
    for (const slot of this.memslots.current.slots) {
      const a = Math.max(first, slot.baseGfn);
      const b = Math.min(last, slot.baseGfn + slot.npages);
      if (a >= b) continue;
      const hva = slot.userspaceAddr + (a - slot.baseGfn) * ps;
      if (this.notifier.clearYoung(hva, hva + (b - a) * ps)) young = true;
    }
    return young;
  }

  // ---- memslots (arch/arm64/kvm/mmu.c) ------------------------------------------------

  /**
   * kvm_arch_prepare_memory_region() (arch/arm64/kvm/mmu.c) for a create, move or
   * flags-only change:
   * the slot must lie in the IPA space; an MTE VM needs VM_MTE_ALLOWED on every VMA; a
   * VM_PFNMAP VMA refuses dirty logging and (from the series on) a cacheable mapping the
   * CPU cannot support. Returns 0 or a negative errno.
   */
  kvmArchPrepareMemoryRegion(spec: MemslotSpec): number {
    if (spec.baseGfn + spec.npages > this.physSize / this.pageSize) return EFAULT;
    const start = spec.userspaceAddr;
    const end = start + spec.npages * this.pageSize;
    let ret = 0;
    this.locks.mmapReadLock();
    forEachVmaInRange(this.mm.vmas, start, end, (vma) => {
      if (ret) return;
      if (this.mte && (vma.vmFlags & VM_MTE_ALLOWED) === 0) {
        ret = EINVAL;
        return;
      }
      if (vma.vmFlags & VM_PFNMAP) {
        if (spec.flags & KVM_MEM_LOG_DIRTY_PAGES) ret = EINVAL;
        else if (
          this.kernel.memslotCacheableCheck &&
          kvmVmaIsCacheable(vma) &&
          !kvmSupportsCacheablePfnmap(this.cpu)
        ) {
          ret = EINVAL;
        }
      }
    });
    this.locks.mmapReadUnlock();
    return ret;
  }

  /**
   * KVM_SET_USER_MEMORY_REGION creating a slot: the arch check, then the new memslot
   * generation; with dirty logging, the commit write-protects the slot. Returns 0 or a
   * negative errno (the slot then does not exist). Throws a TypeError or RangeError naming
   * the field for a spec the ioctl could not carry (apicheck.ts).
   */
  createMemslot(spec: MemslotSpec): number {
    checkMemslotSpec(spec, this.pageSize); // the API boundary: TypeError or RangeError naming the field
    const r = this.kvmArchPrepareMemoryRegion(spec);
    if (r) return r;
    const ret = this.memslots.install(spec);
    if (ret) return ret;
    if (spec.flags & KVM_MEM_LOG_DIRTY_PAGES) this.kvmMmuWpMemoryRegion(spec.id);
    return 0;
  }

  /**
   * Deleting a slot: kvm_arch_flush_shadow_memslot() unmaps its stage-2 range, then the
   * new generation drops it. Returns 0 or −EINVAL for an unknown slot.
   */
  deleteMemslot(id: number): number {
    const slot = this.memslots.byId(id);
    if (!slot) return EINVAL;
    this.locks.mmuWriteLock();
    this.pgt.unmap(slot.baseGfn * this.pageSize, slot.npages * this.pageSize);
    this.locks.mmuWriteUnlock();
    return this.memslots.delete(id);
  }

  /**
   * A flags-only update turning dirty logging on or off. Enabling runs the arch check, then
   * kvm_mmu_wp_memory_region(): write-protect the whole slot and flush its TLB range
   * (KVM_DIRTY_LOG_INITIALLY_SET and eager splitting are off, as by default). Disabling
   * leaves stage 2 alone. Returns 0 or a negative errno.
   */
  setDirtyLogging(id: number, enable: boolean): number {
    const slot = this.memslots.byId(id);
    if (!slot) return EINVAL;
    const flags = enable ? slot.flags | KVM_MEM_LOG_DIRTY_PAGES : slot.flags & ~KVM_MEM_LOG_DIRTY_PAGES;
    if (flags === slot.flags) return 0;
    if (enable) {
      const r = this.kvmArchPrepareMemoryRegion({ ...slot, flags });
      if (r) return r;
    }
    const ret = this.memslots.updateFlags(id, flags);
    if (ret) return ret;
    if (enable && (flags & KVM_MEM_READONLY) === 0) this.kvmMmuWpMemoryRegion(id);
    return 0;
  }

  /**
   * kvm_mmu_wp_memory_region(): write-protects a slot's stage-2 range under the mmu_lock
   * write side, then kvm_flush_remote_tlbs_memslot().
   */
  private kvmMmuWpMemoryRegion(id: number): void {
    const slot = this.memslots.byId(id);
    if (!slot) return;
    const start = slot.baseGfn * this.pageSize;
    const size = slot.npages * this.pageSize;
    this.locks.mmuWriteLock();
    this.pgt.wrprotect(start, size);
    this.locks.mmuWriteUnlock();
    this.flushRemoteTlbsRange(start, size);
  }

  /** kvm_flush_remote_tlbs_range() → kvm_tlb_flush_vmid_range(). */
  private flushRemoteTlbsRange(start: number, size: number): void {
    if (this.cpu.tlbiRange) {
      const op = this.flushOp;
      op.addr = start;
      op.size = size;
      this.pgt.events.tlbiVmidRange(op);
    } else {
      this.pgt.events.tlbiVmid();
    }
  }

  /**
   * KVM_GET_DIRTY_LOG without manual protection: collects and clears the slot's dirty
   * bitmap, write-protects each dirty page again (kvm_arch_mmu_enable_log_dirty_pt_masked)
   * and flushes the slot's TLB range. Returns the dirty gfns, ascending, or a negative errno.
   */
  getAndClearDirtyLog(id: number): number[] | number {
    const slot = this.memslots.byId(id);
    if (!slot || slot.dirtyBitmap === null) return EINVAL;
    const gfns: number[] = [];
    getAndClearDirty(slot, gfns);
    if (gfns.length) {
      this.locks.mmuWriteLock();
      for (const gfn of gfns) this.pgt.wrprotect(gfn * this.pageSize, this.pageSize);
      this.locks.mmuWriteUnlock();
      this.flushRemoteTlbsRange(slot.baseGfn * this.pageSize, slot.npages * this.pageSize);
    }
    return gfns;
  }

  /** gfn_to_memslot() in the current generation. */
  gfnToMemslot(gfn: number): Memslot | undefined {
    return gfnToMemslot(this.memslots.current, gfn);
  }

  /** gfnToMemslot() of `at.gfn` (the fault path's form: the gfn in a carrier). */
  gfnToMemslotOp(at: { readonly gfn: number }): Memslot | undefined {
    return gfnToMemslotOp(this.memslots.current, at);
  }

  /**
   * The host address behind guest physical `ipa` in the current memslots (gfn_to_hva), or −1
   * when no memslot covers it.
   */
  ipaToHva(ipa: number): number {
    const ps = this.pageSize;
    const gfn = Math.floor(ipa / ps);
    const slot = this.gfnToMemslot(gfn);
    if (slot === undefined) return -1;
    return slot.userspaceAddr + (gfn - slot.baseGfn) * ps + (ipa % ps);
  }

  /**
   * The VMM writes `bytes` into guest memory at `ipa` through its own mapping of the memslot
   * (Mm.hostWrite: a host write fault where needed, never a dirty-log mark). The range must stay
   * inside one memslot. Returns 0, or −EFAULT when no memslot covers it (or the host refuses).
   */
  writeGuestPhys(ipa: number, bytes: Uint8Array): number {
    const hva = this.ipaToHva(ipa);
    if (hva < 0 || this.ipaToHva(ipa + bytes.length - 1) !== hva + bytes.length - 1) return EFAULT;
    return this.mm.hostWrite(hva, bytes);
  }

  /**
   * Reads `n` bytes of guest memory at `ipa` as the VMM sees them, without faulting anything in
   * (a debugger's read: unpopulated or unslotted memory reads as zeroes). Returns a fresh array.
   */
  readGuestPhys(ipa: number, n: number): Uint8Array {
    const hva = this.ipaToHva(ipa);
    return hva < 0 ? new Uint8Array(n) : this.mm.hostRead(hva, n);
  }

  /** Records a diagnostic line. */
  diagnose(msg: string): void {
    this.diagnostics.push(msg);
  }

  /** A one-line description of the VM for reports. */
  describe(): string {
    return `${this.ipaBits}-bit IPA, ${this.pageSize / 1024}K granule, kernel ${this.kernel.name}, ${this.pgt.geo.pgdPages} PGD page(s) at level ${this.pgt.geo.startLevel}`;
  }

  /** Node's inspect hook (console.log): a short decoded summary, never the host's arrays. Returns the text. */
  [INSPECT_HOOK](): string {
    return debugText('kvm', this, `Kvm { ${this.describe()} }`);
  }

  /** The debugger's description hook (VS Code's variables pane): the same summary. */
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }

  /** JSON.stringify: the summary, not the host model. Returns { summary }. */
  toJSON(): { summary: string } {
    return { summary: this[INSPECT_HOOK]() };
  }
}
