/**
 * The VMM's address space (one mm): VMAs, the host page table, and the
 * host-side operations KVM's fault path depends on: __kvm_faultin_pfn() (GUP
 * and the host page-fault handlers behind it), get_user_mapping_size(),
 * and the changes that fire MMU notifiers (copy-on-write, THP split, unmap,
 * mprotect, aging).
 *
 * Steady state allocates nothing: lookups reuse scratch objects, and results
 * go into a caller-supplied FollowPfn.
 */
import { checkVmaSpec } from '../apicheck.js';
import { alignDown, shr, type HostGranule, POW2, pow2 } from './granule.js';
import {
  HOST_LEVEL_PMD,
  HOST_LEVEL_PTE,
  HOST_LEVEL_PUD,
  HPTE_CONT,
  HPTE_FILE,
  HPTE_OWNED,
  HPTE_PRESENT,
  HPTE_SPECIAL,
  HPTE_WRITE,
  HPTE_ZAPPED,
  HPTE_ZERO,
  HostPageTable,
  newHostLeaf,
  type HostLeaf,
} from './hostpt.js';
import { MmuNotifier, type MmuNotifierRange } from './notifier.js';
import { HostOp, type HvaOp, type PfnOp } from './op.js';
import { DOUBLE_FIELD } from '../../pgtable/op.js';
import type { PhysMem } from './physmem.js';
import {
  EMPTY_VMA_SET,
  VM_HUGETLB,
  VM_IO,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_READ,
  VM_SHARED,
  VM_UFFD_MISSING,
  VM_WRITE,
  VM_EXEC,
  VM_MTE,
  MT_NORMAL,
  MT_NORMAL_TAGGED,
  vmaLookup,
  vmaSetInsert,
  vmaSetUpdateFlags,
  type BackingKind,
  type HostMappingSize,
  type Vma,
  type VmaSet,
  vmaLookupOp,
  vmaNameStart,
} from './vma.js';
import { UffdLog } from './uffd.js';

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

/** What mmap() takes. Addresses are host virtual; sizes page-aligned. */
export interface VmaSpec {
  readonly name: string;
  readonly start: number;
  readonly size: number;
  /** vm_flags the VMM asked for (VM_READ/WRITE/EXEC, VM_SHARED, VM_MAYWRITE, VM_MTE_ALLOWED, ...). */
  readonly vmFlags: number;
  /** AttrIndx of vm_page_prot (MT_*); default MT_NORMAL. */
  readonly memType?: number;
  readonly backing: BackingKind;
  /** hugetlb: the hstate size in bytes. */
  readonly hugePage?: number;
  /** pfnmap/mixedmap: first physical address. */
  readonly pa?: number;
  /** pfnmap/mixedmap: the host entry size the driver installs (default 'page'). */
  readonly hostMapping?: HostMappingSize;
  /** Register the range with userfaultfd for missing-page events. */
  readonly uffdMissing?: boolean;
}

/**
 * What a write to the huge zero page does. 'pmd-folio' (default) is the v6.17 host:
 * do_huge_zero_wp_pmd() (since v6.13) allocates a PMD-sized folio for the whole range and
 * maps it in place of the huge zero PMD. 'split' is its fallback when no PMD folio can be
 * had (and older kernels): the huge zero PMD is split into PTEs of the 4K zero page and the
 * write copies one base page.
 */
export type HugeZeroWritePolicy = 'split' | 'pmd-folio';

/** Counters for tests and the summary output. */
export interface MmStats {
  /** userfaultfd missing-page events raised (each answered by populating the page). */
  uffdEvents: number;
  /** Copy-on-write breaks (zero page, private file page or COW pfnmap replaced by a new page). */
  cowBreaks: number;
  /** Huge leaves split into smaller ones. */
  splits: number;
  /** Pages (or folios) allocated by faults. */
  faultAllocs: number;
}

/** Options for Mm. */
export interface MmOptions {
  readonly hugeZeroWrite?: HugeZeroWritePolicy;
}

/**
 * One host mm: the VMM's address space, its page table and its notifier.
 * `vmas` is the current immutable generation; the fault path reads it.
 */
export class Mm {
  /** Page geometry. */
  readonly granule: HostGranule;
  /** Physical memory the mm allocates from. */
  readonly phys: PhysMem;
  /** The mm's notifier chain and KVM's invalidation counters. */
  readonly notifier: MmuNotifier;
  /** The host page table. */
  readonly pt: HostPageTable;
  /** Counters. */
  readonly stats: MmStats = { uffdEvents: 0, cowBreaks: 0, splits: 0, faultAllocs: 0 };
  /** Refcounted pages handed out by faultinPfn() and not yet released (should return to 0). */
  pagesHeld = 0;
  /** The current VMA generation. */
  vmas: VmaSet = EMPTY_VMA_SET;

  private readonly hugeZeroWrite: HugeZeroWritePolicy;
  private readonly leaf: HostLeaf = newHostLeaf();
  /** The carrier the argument-taking forms fill (hostLeafSize, hostRead, a userfault range's pages). */
  private readonly arg = new HostOp();
  /** The carrier of what a host fault installs: an entry's hva and pfn (pt.setOp), a new folio (phys). */
  private readonly ins = new HostOp();
  /** A second pfn carrier (a folio head) and the range of the notifier events a host fault sends. */
  private readonly head = new HostOp();
  private readonly range: MmuNotifierRange = { start: DOUBLE_FIELD, end: DOUBLE_FIELD };
  /** @internal The next VMA id (events.ts gives split-off VMAs new ones). */
  nextVmaId = 1;
  /** userfaultfd missing-page events raised, in order (the runner reads and resets it). */
  readonly uffdLog = new UffdLog();
  /**
   * What a VMM registered with copyFrom "registration" copies back: page hva → the bytes the
   * page held at UFFDIO_REGISTER (events.ts, uffdSnapshot). Pages not here copy as zeroes.
   */
  readonly uffdSource = new Map<number, Uint8Array>();

  constructor(phys: PhysMem, notifier: MmuNotifier = new MmuNotifier(), options: MmOptions = {}) {
    this.granule = phys.granule;
    this.phys = phys;
    this.notifier = notifier;
    this.pt = new HostPageTable(phys.granule);
    this.hugeZeroWrite = options.hugeZeroWrite ?? 'pmd-folio';
  }

  /**
   * Models mmap() of one VMA (plus remap_pfn_range / hugetlbfs / memfd setup
   * and UFFDIO_REGISTER, as a scenario's `vmas` ask). Adds VM_HUGETLB for hugetlb,
   * VM_MTE for a MT_NORMAL_TAGGED memory type (PROT_MTE),
   * VM_PFNMAP|VM_IO for pfnmap (as remap_pfn_range does), VM_MIXEDMAP for
   * mixedmap and VM_UFFD_MISSING for userfaultfd. pfnmap/mixedmap entries are
   * present from the start (synthesised on first walk).
   * Returns the new Vma, or a message naming what mmap() refused (documented: check it).
   * Throws a TypeError or RangeError naming the field for a spec of the wrong type or range
   * (apicheck.ts; docs/decisions.md, "API boundary").
   */
  mmap(spec: VmaSpec): Vma | string {
    checkVmaSpec(spec); // the API boundary: TypeError or RangeError naming the field
    const g = this.granule;
    if (spec.start % g.pageSize !== 0 || spec.size % g.pageSize !== 0 || spec.size <= 0) {
      return `start and size must be multiples of the page size (0x${g.pageSize.toString(16)})`;
    }
    const end = spec.start + spec.size;
    for (const v of this.vmas.vmas) {
      if (v.name === spec.name) return `duplicate VMA name "${spec.name}"`;
      if (spec.start < v.end && v.start < end) return `overlaps VMA "${v.name}"`;
    }
    let flags = spec.vmFlags;
    let hugeShift = 0;
    let pgoff = 0;
    const isPfn = spec.backing === 'pfnmap' || spec.backing === 'mixedmap';
    if (spec.backing === 'hugetlb') {
      const hp = spec.hugePage ?? 0;
      hugeShift = Math.log2(hp);
      if (!Number.isInteger(hugeShift) || !g.hugetlbShifts.includes(hugeShift)) {
        const sizes = g.hugetlbShifts.map((s) => `0x${pow2(s).toString(16)}`).join(', ');
        return `hugePage must be one of ${sizes} for this granule`;
      }
      if (spec.start % hp !== 0 || spec.size % hp !== 0)
        return 'hugetlb VMA must be aligned to its huge page size';
      flags |= VM_HUGETLB;
    } else if (spec.hugePage !== undefined) {
      return 'hugePage is only valid for hugetlb';
    }
    if (isPfn) {
      if (spec.pa === undefined || spec.pa % g.pageSize !== 0) return 'pa must be given and page-aligned';
      pgoff = shr(spec.pa, g.pageShift);
      flags |= spec.backing === 'pfnmap' ? VM_PFNMAP | VM_IO : VM_MIXEDMAP;
      if (spec.uffdMissing === true) return 'userfaultfd cannot register a pfnmap/mixedmap VMA';
    } else {
      if (spec.pa !== undefined) return 'pa is only valid for pfnmap and mixedmap';
      if (spec.hostMapping !== undefined) return 'hostMapping is only valid for pfnmap and mixedmap';
    }
    if (spec.uffdMissing === true) flags |= VM_UFFD_MISSING;
    // PROT_MTE: VM_MTE and a tagged vm_page_prot go together.
    if (spec.memType === MT_NORMAL_TAGGED) flags |= VM_MTE;
    const vma: Vma = {
      id: this.nextVmaId++,
      name: spec.name,
      start: spec.start,
      end,
      vmFlags: flags,
      memType: spec.memType ?? MT_NORMAL,
      pgoff,
      backing: spec.backing,
      hugeShift,
      hostMapping: spec.hostMapping ?? 'page',
    };
    this.vmas = vmaSetInsert(this.vmas, vma);
    return vma;
  }

  /** Models vma_lookup(mm, hva) on the current generation. */
  vmaLookup(hva: number): Vma | undefined {
    return vmaLookup(this.vmas, hva);
  }

  /** vmaLookup() of `op.hva`, for the fault path (no address argument to box). */
  vmaLookupOp(op: HvaOp): Vma | undefined {
    return vmaLookupOp(this.vmas, op);
  }

  /**
   * The walk inside get_user_mapping_size(): the size of the host leaf that
   * maps hva (PAGE, PMD or PUD size; a contiguous-hint entry reports its
   * level's size), or 0 when there is no valid leaf (KVM then returns
   * -EAGAIN). pfnmap/mixedmap entries count as present unless zapped.
   */
  hostLeafSize(hva: number): number {
    this.arg.hva = hva;
    return this.hostLeafShiftOp(this.arg) === 0 ? 0 : pow2(this.leaf.shift);
  }

  /**
   * hostLeafSize() of `op.hva` for the fault path, as a shift: the host leaf's log2 size, or
   * 0 when there is no valid leaf (a size could exceed 2^31 and be boxed on return).
   */
  hostLeafShiftOp(op: HvaOp): number {
    const vma = vmaLookupOp(this.vmas, op);
    if (vma === undefined) return 0;
    const l = this.walk(vma, op);
    return (l.flags & HPTE_PRESENT) !== 0 ? l.shift : 0;
  }

  /**
   * Models __kvm_faultin_pfn() → hva_to_pfn(): GUP (fast, then slow with the
   * host fault handlers) or, for VM_PFNMAP/VM_IO, follow_pfnmap with
   * fixup_user_fault(). Fills `out`:
   * - the pfn backing hva, `writable` if the host entry is writable (a read
   *   fault gets writable opportunistically), `page` if a refcounted page is held;
   * - an anon read of a never-touched page maps the zero page read-only (THP:
   *   the huge zero page); a write allocates, and replacing a zero-page or
   *   private-file mapping first runs the MMU-notifier invalidation;
   * - userfaultfd missing: one event, answered by populating the page (UFFDIO_COPY);
   * - hwpoison: err KVM_PFN_ERR_HWPOISON (vmaShift set for the SIGBUS lsb);
   * - no VMA, protection denies, or no memory: err KVM_PFN_ERR_FAULT.
   * A read-only memslot is the caller's business (it passes writeFault=false
   * and ignores `writable`).
   */
  faultinPfn(hva: number, writeFault: boolean, out: FollowPfn): void {
    out.hva = hva;
    out.write = writeFault;
    this.hvaToPfn(out);
  }

  /**
   * hva_to_pfn(kfp): faultinPfn() of `kfp.hva` (for write when `kfp.write`), for the fault
   * path (no address argument to box). The order is hva_to_pfn()'s (virt/kvm/kvm_main.c, v6.17):
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
   */
  hvaToPfn(out: FollowPfn): void {
    const hva = out.hva;
    const at = out;
    const writeFault = out.write;
    out.pfn = -1;
    out.writable = false;
    out.page = false;
    out.err = KVM_PFN_ERR_FAULT;
    out.vmaShift = this.granule.pageShift;
    const vma = vmaLookupOp(this.vmas, out);
    if (vma === undefined) return;
    if (vma.backing === 'hugetlb') out.vmaShift = vma.hugeShift;
    const need = writeFault ? VM_WRITE : VM_READ;
    if ((vma.vmFlags & need) === 0) return;
    const remapped = (vma.vmFlags & (VM_IO | VM_PFNMAP)) !== 0;

    let l = this.walk(vma, at);
    const fastOk = (l.flags & (HPTE_PRESENT | HPTE_WRITE | HPTE_SPECIAL)) === (HPTE_PRESENT | HPTE_WRITE);
    if (!fastOk) {
      if (!remapped) {
        // GUP slow: the host fault handlers, then copy-on-write for a write.
        if ((l.flags & HPTE_PRESENT) === 0) {
          if (!this.populate(vma, at, writeFault)) return;
          l = this.walk(vma, at);
        }
        if (writeFault && (l.flags & HPTE_WRITE) === 0) {
          if (!this.wpFault(vma, at)) return;
          l = this.walk(vma, at);
        }
        if ((l.flags & (HPTE_PRESENT | HPTE_SPECIAL)) !== HPTE_PRESENT) return;
      } else {
        // hva_to_pfn_remapped(): fixup_user_fault() only when follow_pfnmap_start() finds no
        // entry; the handler it runs installs what the driver (or do_anonymous_page) does.
        if ((l.flags & HPTE_PRESENT) === 0) {
          if (!this.populate(vma, at, writeFault)) return;
          l = this.walk(vma, at);
          if ((l.flags & HPTE_PRESENT) === 0) return;
        }
        if (writeFault && (l.flags & HPTE_WRITE) === 0) {
          out.err = KVM_PFN_ERR_RO_FAULT;
          return;
        }
        out.pfn = l.pfn + Math.floor((hva - l.base) / this.granule.pageSize);
        out.writable = (l.flags & HPTE_WRITE) !== 0;
        out.err = FAULTIN_OK;
        return;
      }
    }
    const pfn = l.pfn + Math.floor((hva - l.base) / this.granule.pageSize);
    // GUP took a reference on a normal page. A poisoned hugetlb folio is unusable as a whole
    // (folio_test_hwpoison on the head; hugetlb_fault returns VM_FAULT_HWPOISON_LARGE for any
    // subpage).
    const phys = this.phys;
    const p = this.ins;
    p.pfn = pfn;
    let poisoned = phys.pageHwPoisonOp(p);
    if (!poisoned && phys.folioTestHugetlbOp(p)) {
      phys.folioHeadOp(p, p);
      poisoned = phys.pageHwPoisonOp(p);
    }
    if (poisoned) {
      out.err = KVM_PFN_ERR_HWPOISON;
      return;
    }
    out.pfn = pfn;
    out.writable = (l.flags & HPTE_WRITE) !== 0;
    out.page = true;
    out.err = FAULTIN_OK;
    this.pagesHeld++;
  }

  /**
   * Models kvm_release_faultin_page(kvm, page, unused, dirty): drops the
   * reference faultinPfn() took (when `out.page`), marking the page dirty if
   * `dirty && !unused`. Does nothing for a result without a page.
   */
  releaseFaultinPage(out: FollowPfn, unused: boolean, dirty: boolean): void {
    if (!out.page) return;
    out.page = false;
    this.pagesHeld--;
    if (dirty && !unused) this.phys.setPageDirtyOp(out);
  }

  /**
   * Models MADV_DONTNEED / a hole punch over [vma.start+offset, +size) (clipped
   * to the VMA; hugetlb rounded out to the hstate size): MMU-notifier
   * invalidation around zapping the host entries. Folios fully covered are
   * freed (no longer populated); pfnmap/mixedmap entries become zapped and
   * come back only through a fault. Returns the hva range actually zapped as
   * [start, end] in `outRange` (optional).
   */
  hostUnmap(vma: Vma, offset: number, size: number, outRange?: { start: number; end: number }): void {
    let start = vma.start + offset;
    let end = Math.min(start + size, vma.end);
    if (vma.backing === 'hugetlb') {
      const hp = pow2(vma.hugeShift);
      start = alignDown(start, hp);
      end = Math.ceil(end / hp) * hp;
    } else {
      start = alignDown(start, this.granule.pageSize);
      end = Math.ceil(end / this.granule.pageSize) * this.granule.pageSize;
    }
    if (outRange !== undefined) {
      outRange.start = start;
      outRange.end = end;
    }
    if (start >= end) return;
    this.notifier.invalidateRangeStart(start, end);
    this.zapRange(vma, start, end);
    this.notifier.invalidateRangeEnd(start, end);
  }

  /**
   * Models mprotect() of the whole VMA to `prot` (VM_READ|VM_WRITE|VM_EXEC bits):
   * a new VMA generation with the new flags, and change_protection()'s
   * MMU-notifier invalidation over the VMA. Removing write makes every host
   * entry read-only; adding it makes exclusively owned pages and shared
   * mappings writable (zero pages and private file pages stay read-only).
   * Returns the updated Vma.
   */
  hostProtect(vmaArg: Vma, prot: number): Vma {
    // Work from the current generation even if the caller holds an older one.
    const vma = vmaLookup(this.vmas, vmaArg.start) ?? vmaArg;
    const mask = VM_READ | VM_WRITE | VM_EXEC;
    const flags = (vma.vmFlags & ~mask) | (prot & mask);
    this.notifier.invalidateRangeStart(vma.start, vma.end);
    const shared = (flags & VM_SHARED) !== 0;
    const writable = (flags & VM_WRITE) !== 0;
    this.pt.forEach(vma.start, vma.end, (level, base, _pfn, f) => {
      if ((f & HPTE_PRESENT) === 0) return;
      if (!writable) {
        this.pt.updateFlags(level, base, 0, ~HPTE_WRITE);
      } else if ((f & (HPTE_ZERO | HPTE_FILE)) === 0 && ((f & HPTE_SPECIAL) === 0 || shared)) {
        // Raw-pfn entries follow the driver rule (shared and writable); owned pages are exclusive.
        this.pt.updateFlags(level, base, HPTE_WRITE, 0xffff);
      }
    });
    this.vmas = vmaSetUpdateFlags(this.vmas, vma.id, flags);
    this.notifier.invalidateRangeEnd(vma.start, vma.end);
    return vmaLookup(this.vmas, vma.start) as Vma;
  }

  /**
   * Models the aging path (folio_referenced → mmu_notifier_clear_young) over
   * hvas [start, end). Host young bits are not modelled; this forwards to the
   * notifier. Returns true if the subscriber saw a young stage-2 entry.
   */
  clearYoung(start: number, end: number): boolean {
    return this.notifier.clearYoung(start, end);
  }

  /**
   * Test hook: fault in the page at hva (as a write if the VMA is
   * writable, else a read), then mark its pfn hardware-poisoned, leaving the
   * mappings alone. memory_failure() as a whole (THP split, unmapping with
   * the MMU-notifier invalidation) is memoryFailure() in events.ts, which the
   * scenario's `poison` step runs. Returns the pfn, or -1 if it could not be
   * populated.
   */
  poisonHva(hva: number): number {
    const vma = vmaLookup(this.vmas, hva);
    if (vma === undefined) return -1;
    const r = new FollowPfn();
    this.faultinPfn(hva, (vma.vmFlags & VM_WRITE) !== 0, r);
    if (r.err !== FAULTIN_OK) return -1;
    this.releaseFaultinPage(r, true, false);
    this.phys.setHwPoison(r.pfn, true);
    // memory_failure() on a hugetlb subpage also flags the folio (its head).
    if (this.phys.folioTestHugetlb(r.pfn)) this.phys.setHwPoison(this.phys.folioHead(r.pfn), true);
    return r.pfn;
  }

  /**
   * The VMM writes `bytes` at `hva` through its own mapping (a store by the VMM process): each
   * page is faulted in for write as the CPU's store would fault it (populating a private
   * writable page, breaking copy-on-write with its MMU-notifier invalidation, a userfaultfd
   * missing-page event in a registered range), then the bytes land in that page. KVM is not
   * involved: no dirty-log mark, and the page is not marked dirty by KVM.
   * Returns 0, -EFAULT (no VMA, or the VMA is not writable: the VMM would take SIGSEGV) or
   * -EHWPOISON (a poisoned page: SIGBUS).
   */
  hostWrite(hva: number, bytes: Uint8Array): number {
    const ps = this.granule.pageSize;
    const r = hostWriteScratch;
    let done = 0;
    while (done < bytes.length) {
      const at = hva + done;
      const off = at % ps;
      const n = Math.min(ps - off, bytes.length - done);
      r.hva = at;
      this.handleMmFault(r, true);
      if (r.err === KVM_PFN_ERR_HWPOISON) return -133;
      if (r.err !== FAULTIN_OK) return -14;
      this.phys.contents.writeBytes(r.pfn, off, bytes.subarray(done, done + n));
      done += n;
    }
    return 0;
  }

  /**
   * Reads `n` bytes at `hva` as the VMM would see them, without faulting anything in: a page
   * the host has not populated reads as zeroes (what a read fault would map). Cold path.
   * Returns a fresh array.
   */
  hostRead(hva: number, n: number): Uint8Array {
    const ps = this.granule.pageSize;
    const out = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const at = hva + done;
      const off = at % ps;
      const len = Math.min(ps - off, n - done);
      const vma = vmaLookup(this.vmas, at);
      if (vma !== undefined) {
        this.arg.hva = at;
        const leaf = this.walk(vma, this.arg);
        if ((leaf.flags & HPTE_PRESENT) !== 0) {
          const pfn = leaf.pfn + Math.floor((at - leaf.base) / ps);
          out.set(this.phys.contents.readBytes(pfn, off, len), done);
        }
      }
      done += len;
    }
    return out;
  }

  /**
   * MAP_POPULATE (populate_vma_page_range): every page of the VMA faulted in at creation, for
   * write when the VMA is writable (so a private mapping gets its own pages), else for read.
   * Returns 0 or -EFAULT / -EHWPOISON as hostWrite().
   */
  populateVma(vma: Vma): number {
    // __mm_populate() skips VM_IO | VM_PFNMAP VMAs: their driver maps them.
    if ((vma.vmFlags & (VM_IO | VM_PFNMAP)) !== 0) return 0;
    const step = vma.backing === 'hugetlb' ? pow2(vma.hugeShift) : this.granule.pageSize;
    const write = (vma.vmFlags & VM_WRITE) !== 0;
    const r = hostWriteScratch;
    for (let a = vma.start; a < vma.end; a += step) {
      r.hva = a;
      this.handleMmFault(r, write);
      if (r.err === KVM_PFN_ERR_HWPOISON) return -133;
      if (r.err !== FAULTIN_OK) return -14;
    }
    return 0;
  }

  /**
   * The VMM's own access to `f.hva` (handle_mm_fault() from its page fault, not GUP): the VMA
   * must allow it; a missing entry is populated (the driver's fault for a pfnmap/mixedmap);
   * a write to a read-only entry breaks copy-on-write (do_wp_page(): a private PFNMAP's device
   * page is copied into anonymous memory, as the kernel does for the VMM's own store). Fills
   * `f.pfn` and `f.writable`; takes no page reference (`f.page` false). Cold path.
   */
  handleMmFault(f: FollowPfn, write: boolean): void {
    const hva = f.hva;
    const at = f;
    f.pfn = -1;
    f.writable = false;
    f.page = false;
    f.err = KVM_PFN_ERR_FAULT;
    const vma = vmaLookup(this.vmas, hva);
    if (vma === undefined || (vma.vmFlags & (write ? VM_WRITE : VM_READ)) === 0) return;
    let l = this.walk(vma, at);
    if ((l.flags & HPTE_PRESENT) === 0) {
      if (!this.populate(vma, at, write)) return;
      l = this.walk(vma, at);
    }
    if (write && (l.flags & HPTE_WRITE) === 0) {
      if (!this.wpFault(vma, at)) return;
      l = this.walk(vma, at);
    }
    if ((l.flags & HPTE_PRESENT) === 0) return;
    const pfn = l.pfn + Math.floor((hva - l.base) / this.granule.pageSize);
    if ((l.flags & HPTE_SPECIAL) === 0) {
      const p = this.ins;
      p.pfn = pfn;
      if (this.phys.pageHwPoisonOp(p)) {
        f.err = KVM_PFN_ERR_HWPOISON;
        return;
      }
    }
    f.pfn = pfn;
    f.writable = (l.flags & HPTE_WRITE) !== 0;
    f.err = FAULTIN_OK;
  }

  // ---- internals -------------------------------------------------------------

  // The steps of a host fault below work on the fault's address carrier `at` and hand
  // addresses and pfns to the host page table in this.ins (pt.setOp), computing with Math.floor
  // and the POW2 table rather than helpers: any call that takes or returns a double past 2^31
  // would box it into a new heap number wherever V8 does not inline the call.

  /** Walks the host table; synthesises the driver's entry for an untouched pfnmap/mixedmap. */
  private walk(vma: Vma, at: HvaOp): HostLeaf {
    const pt = this.pt;
    const l = this.leaf;
    pt.lookupOp(at, l);
    if (l.flags === 0 && (vma.backing === 'pfnmap' || vma.backing === 'mixedmap')) {
      this.installPfnEntry(vma, at, l.level);
      pt.lookupOp(at, l);
    }
    return l;
  }

  /**
   * A pfnmap/mixedmap driver's (huge_)fault: install the largest entry the
   * hostMapping allows at hva, no larger than `maxLevel` (where the walk met
   * an empty entry), congruent with the physical address and inside the VMA.
   * Writable exactly when the VMA is shared and writable.
   */
  private installPfnEntry(vma: Vma, at: HvaOp, maxLevel: number): void {
    const hva = at.hva;
    const g = this.granule;
    const pt = this.pt;
    const level = this.choosePfnLevel(vma, at, maxLevel);
    const size = POW2[pt.shifts[level]]!;
    const base = Math.floor(hva / size) * size;
    const ins = this.ins;
    ins.pfn = vma.pgoff + (base - vma.start) / g.pageSize;
    let flags = HPTE_PRESENT;
    if ((vma.vmFlags & (VM_SHARED | VM_WRITE)) === (VM_SHARED | VM_WRITE)) flags |= HPTE_WRITE;
    // remap_pfn_range() and vmf_insert_mixed() both install special entries on arm64
    // (CONFIG_ARCH_HAS_PTE_SPECIAL: insert_pfn() marks every entry special, RAM or not).
    flags |= HPTE_SPECIAL;
    ins.hva = base;
    pt.setOp(ins, level, flags);
  }

  /** The largest pfnmap entry level allowed at hva: hostMapping, maxLevel, congruence and VMA bounds. */
  private choosePfnLevel(vma: Vma, at: HvaOp, maxLevel: number): number {
    const hva = at.hva;
    const want = vma.hostMapping === 'pud' ? HOST_LEVEL_PUD : vma.hostMapping === 'pmd' ? HOST_LEVEL_PMD : 0;
    // The physical address at hva: the VMA's first pfn, plus the offset into the VMA.
    const pa = vma.pgoff * this.granule.pageSize + (hva - vma.start);
    let level = Math.min(want, maxLevel);
    for (; level > HOST_LEVEL_PTE; level--) {
      const size = POW2[this.pt.shifts[level]]!;
      const base = Math.floor(hva / size) * size;
      if (hva - base === pa - Math.floor(pa / size) * size && base >= vma.start && base + size <= vma.end)
        break;
    }
    return level;
  }

  /** Handles a not-present entry (do_anonymous_page, do_huge_pmd_anonymous_page, hugetlb_no_page, shmem_fault, driver faults). */
  private populate(vma: Vma, at: HvaOp, write: boolean): boolean {
    const hva = at.hva;
    const g = this.granule;
    const pt = this.pt;
    const l = this.leaf;
    const canWrite = (vma.vmFlags & VM_WRITE) !== 0;
    const shared = (vma.vmFlags & VM_SHARED) !== 0;
    switch (vma.backing) {
      case 'pfnmap':
      case 'mixedmap': {
        // Zapped: the driver's fault handler refills it (vfio-style). Narrow
        // a large zapped marker first so the rest of its range stays zapped.
        const level = this.choosePfnLevel(vma, at, l.level);
        const ins = this.ins;
        while (l.level > level) {
          const base = l.base;
          const from = l.level;
          const sub = POW2[pt.shifts[from - 1]]!;
          ins.hva = base;
          pt.clearOp(ins, from);
          ins.pfn = 0;
          for (let i = 0; i < POW2[g.tableBits]!; i++) {
            ins.hva = base + i * sub;
            pt.setOp(ins, from - 1, HPTE_ZAPPED);
          }
          pt.lookupOp(at, l);
        }
        ins.hva = l.base;
        pt.clearOp(ins, l.level);
        this.installPfnEntry(vma, at, level);
        return true;
      }
      case 'hugetlb':
        return this.populateHugetlb(vma, at, write);
      default:
        break;
    }
    // handle_userfault(): the VMM resolves it with UFFDIO_COPY (uffd.ts, handleUserfault).
    if ((vma.vmFlags & VM_UFFD_MISSING) !== 0) return this.handleUserfault(vma, at, write);
    if (vma.backing === 'shmem') {
      if (shared) return this.installNewPage(vma, at, canWrite ? HPTE_WRITE : 0);
      // Private file mapping: a read maps the file page read-only; a write
      // (do_cow_fault) maps a private copy.
      return this.installNewPage(vma, at, write ? HPTE_WRITE : HPTE_FILE);
    }
    if (vma.backing === 'thp' && l.level >= HOST_LEVEL_PMD) {
      const size = POW2[g.pmdShift]!;
      const base = Math.floor(hva / size) * size;
      if (base >= vma.start && base + size <= vma.end) {
        const phys = this.phys;
        const ins = this.ins;
        if (write) {
          if (phys.allocFolioInto(g.pmdShift - g.pageShift, false, ins)) {
            this.stats.faultAllocs++;
            ins.hva = base;
            if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, POW2[g.pmdShift - g.pageShift]!);
            pt.setOp(ins, HOST_LEVEL_PMD, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
            return true;
          }
        } else if (phys.hugeZeroPfnInto(ins)) {
          ins.hva = base;
          pt.setOp(ins, HOST_LEVEL_PMD, HPTE_PRESENT | HPTE_ZERO);
          return true;
        }
        // Allocation failed: fall back to base pages, as the kernel does.
      }
    }
    if (write) return this.installNewPage(vma, at, HPTE_WRITE);
    const z = this.phys.zeroPfn;
    if (z < 0) return false;
    const ins = this.ins;
    ins.hva = Math.floor(hva / g.pageSize) * g.pageSize;
    ins.pfn = z;
    pt.setOp(ins, HOST_LEVEL_PTE, HPTE_PRESENT | HPTE_ZERO);
    return true;
  }

  /**
   * handle_userfault() on a missing page of a registered VMA, at `at.hva`: the event goes to
   * the VMM (uffdLog), which answers with UFFDIO_COPY of that page (resolve "page") or of every
   * page of the registered range still missing (resolve "range"; one event fills them all). A
   * hugetlb VMA's unit is its huge page, as hugetlb_mfill_atomic_pte() copies.
   */
  private handleUserfault(vma: Vma, at: HvaOp, write: boolean): boolean {
    const hva = at.hva;
    const unit = vma.backing === 'hugetlb' ? POW2[vma.hugeShift]! : this.granule.pageSize;
    const page = Math.floor(hva / unit) * unit;
    this.stats.uffdEvents++;
    this.uffdLog.push(vma.name, page - vmaNameStart(vma), write);
    const reg = vma.uffd;
    if (reg !== undefined && reg.resolve === 'range') {
      for (let a = reg.start; a < reg.end; a += unit) {
        if (a === page) continue;
        const v = vmaLookup(this.vmas, a);
        if (v === undefined || (v.vmFlags & VM_UFFD_MISSING) === 0) continue;
        const other = this.arg;
        other.hva = a;
        if ((this.walk(v, other).flags & HPTE_PRESENT) === 0 && !this.uffdCopy(v, other)) break;
      }
    }
    return this.uffdCopy(vma, at);
  }

  /**
   * UFFDIO_COPY of the page (hugetlb: huge page) at `at.hva`: a new page, writable when the
   * VMA is, holding what the registration says (copyFrom; the contents store fills it).
   */
  private uffdCopy(vma: Vma, at: HvaOp): boolean {
    const ok =
      vma.backing === 'hugetlb'
        ? this.populateHugetlb(vma, at, false, true)
        : this.installNewPage(vma, at, (vma.vmFlags & VM_WRITE) !== 0 ? HPTE_WRITE : 0);
    if (ok && this.uffdSource.size !== 0 && vma.uffd !== undefined && vma.uffd.copyFrom === 'registration')
      this.uffdFill(vma, at);
    return ok;
  }

  /** The bytes UFFDIO_COPY puts in the page (or huge page) just installed at `at.hva`. */
  private uffdFill(vma: Vma, at: HvaOp): void {
    const ps = this.granule.pageSize;
    const unit = vma.backing === 'hugetlb' ? POW2[vma.hugeShift]! : ps;
    const base = Math.floor(at.hva / unit) * unit;
    const l = newHostLeafScratch;
    if (!this.pt.lookup(base, l)) return;
    for (let a = base; a < base + unit; a += ps) {
      const bytes = this.uffdSource.get(a);
      if (bytes !== undefined) this.phys.contents.writeBytes(l.pfn + (a - l.base) / ps, 0, bytes);
    }
  }

  private installNewPage(vma: Vma, at: HvaOp, extra: number): boolean {
    const phys = this.phys;
    const ins = this.ins;
    if (!phys.allocFolioInto(0, false, ins)) return false;
    this.stats.faultAllocs++;
    const ps = this.granule.pageSize;
    ins.hva = Math.floor(at.hva / ps) * ps;
    if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, 1);
    this.pt.setOp(ins, HOST_LEVEL_PTE, HPTE_PRESENT | HPTE_OWNED | extra);
    return true;
  }

  /** hugetlb_no_page(): allocate a folio of the hstate size and map it at its level (cont entries for cont sizes). */
  private populateHugetlb(vma: Vma, at: HvaOp, write: boolean, uffdCopy = false): boolean {
    const g = this.granule;
    if (!uffdCopy && (vma.vmFlags & VM_UFFD_MISSING) !== 0) return this.handleUserfault(vma, at, write);
    const phys = this.phys;
    const folio = this.head;
    if (!phys.allocFolioInto(vma.hugeShift - g.pageShift, true, folio)) return false;
    this.stats.faultAllocs++;
    if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(folio, POW2[vma.hugeShift - g.pageShift]!);
    const canWrite = (vma.vmFlags & VM_WRITE) !== 0;
    const shared = (vma.vmFlags & VM_SHARED) !== 0;
    const uffd = (vma.vmFlags & VM_UFFD_MISSING) !== 0;
    const flags = HPTE_PRESENT | HPTE_OWNED | (canWrite && (shared || write || uffd) ? HPTE_WRITE : 0);
    this.setHugetlbEntries(at, folio, vma.hugeShift, flags);
    return true;
  }

  /**
   * The entries of the hugetlb folio whose head is `folio.pfn` covering `at.hva` (one leaf, or
   * the contiguous run of a CONT size), with `flags`.
   */
  private setHugetlbEntries(at: HvaOp, folio: PfnOp, hugeShift: number, flags: number): void {
    const pfn = folio.pfn;
    const g = this.granule;
    const pt = this.pt;
    const size = POW2[hugeShift]!;
    const base = Math.floor(at.hva / size) * size;
    const level =
      hugeShift >= g.pudShift ? HOST_LEVEL_PUD : hugeShift >= g.pmdShift ? HOST_LEVEL_PMD : HOST_LEVEL_PTE;
    const entryShift = pt.shifts[level];
    const n = POW2[hugeShift - entryShift]!;
    const cont = n > 1 ? HPTE_CONT : 0;
    const entrySize = POW2[entryShift]!;
    const entryPages = POW2[entryShift - g.pageShift]!;
    const ins = this.ins;
    for (let i = 0; i < n; i++) {
      ins.hva = base + i * entrySize;
      ins.pfn = pfn + i * entryPages;
      pt.setOp(ins, level, flags | cont);
    }
  }

  /**
   * A write to a present read-only entry (do_wp_page / do_huge_pmd_wp_page /
   * hugetlb_wp): copy-on-write with MMU-notifier invalidation when the page
   * must be replaced, or reuse (just make it writable) when it is exclusively
   * owned. The caller has checked VM_WRITE.
   */
  private wpFault(vma: Vma, at: HvaOp): boolean {
    const hva = at.hva;
    const g = this.granule;
    const l = this.leaf;
    const f = l.flags;
    if ((f & HPTE_ZERO) !== 0 && l.level === HOST_LEVEL_PMD) {
      const base = l.base;
      const size = pow2(g.pmdShift);
      if (this.hugeZeroWrite === 'pmd-folio') {
        const n = this.notifier;
        this.range.start = base;
        this.range.end = base + size;
        n.invalidateRangeStartOp(this.range);
        const phys = this.phys;
        const ins = this.ins;
        const ok = phys.allocFolioInto(g.pmdShift - g.pageShift, false, ins);
        if (ok) {
          this.stats.faultAllocs++;
          this.stats.cowBreaks++;
          ins.hva = base;
          if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, POW2[g.pmdShift - g.pageShift]!);
          this.pt.setOp(ins, HOST_LEVEL_PMD, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
        }
        n.invalidateRangeEnd();
        if (ok) return true;
      }
      // do_huge_pmd_wp_page(): huge zero → __split_huge_pmd() into 4K zero PTEs, then a PTE fault.
      this.splitLeaf(HOST_LEVEL_PMD, base);
      this.pt.lookup(hva, l);
    }
    if ((l.flags & HPTE_SPECIAL) !== 0 && l.level > HOST_LEVEL_PTE) {
      // COW of a huge raw-pfn entry: split it down to pages first.
      while (l.level > HOST_LEVEL_PTE) {
        this.splitLeaf(l.level, l.base);
        this.pt.lookup(hva, l);
      }
    }
    const lf = l.flags;
    const needsCopy =
      (lf & (HPTE_ZERO | HPTE_FILE)) !== 0 || ((lf & HPTE_SPECIAL) !== 0 && (vma.vmFlags & VM_SHARED) === 0);
    if (needsCopy) {
      // wp_page_copy(): invalidate, allocate a private copy, install it writable.
      const base = l.base;
      const n = this.notifier;
      this.range.start = base;
      this.range.end = base + g.pageSize;
      n.invalidateRangeStartOp(this.range);
      const phys = this.phys;
      const ins = this.ins;
      const ok = phys.allocFolioInto(0, false, ins);
      if (ok) {
        this.stats.faultAllocs++;
        this.stats.cowBreaks++;
        // copy_user_highpage(): the private copy starts with the old page's bytes (the zero
        // page has none; a private file page or a COW pfnmap page may).
        if (phys.contents.pagesStored !== 0) phys.contents.copy(l.pfn, ins.pfn, 1);
        ins.hva = base;
        if (vma.memType === MT_NORMAL_TAGGED) phys.mteSyncTagsOp(ins, 1);
        this.pt.setOp(ins, HOST_LEVEL_PTE, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
      }
      n.invalidateRangeEnd();
      return ok;
    }
    if ((lf & HPTE_SPECIAL) !== 0) return false; // shared raw pfn that the driver mapped read-only
    // Exclusively owned page (anon, hugetlb, shmem): reuse, make writable.
    if ((lf & HPTE_CONT) !== 0 && vma.backing === 'hugetlb') {
      const folio = this.head;
      folio.pfn = l.pfn;
      this.phys.folioHeadOp(folio, folio);
      this.setHugetlbEntries(at, folio, vma.hugeShift, (lf | HPTE_WRITE) & ~HPTE_CONT);
    } else {
      const ins = this.ins;
      ins.hva = l.base;
      this.pt.updateFlagsOp(ins, l.level, HPTE_WRITE, 0xffff);
    }
    return true;
  }

  /**
   * Splits the leaf at (level, base) into a table of next-level leaves mapping
   * the same pfns (__split_huge_pmd/pud), with the notifier invalidation over
   * the leaf's range that the kernel issues. @internal (events.ts: memory_failure's THP split).
   */
  splitLeaf(level: number, base: number): void {
    const g = this.granule;
    const l = newHostLeafScratch;
    this.pt.lookup(base, l);
    if (l.level !== level || (l.flags & HPTE_PRESENT) === 0) return;
    const size = pow2(this.pt.shifts[level]);
    this.notifier.invalidateRangeStart(base, base + size);
    const sub = this.pt.shifts[level - 1];
    const n = pow2(g.tableBits);
    const pfn0 = l.pfn;
    const flags = l.flags & ~HPTE_CONT;
    this.pt.clear(level, base);
    // A split huge zero PMD maps the 4K zero page in every PTE (__split_huge_zero_page_pmd).
    const zero = (flags & HPTE_ZERO) !== 0 && level - 1 === HOST_LEVEL_PTE;
    const step = zero ? 0 : pow2(sub - g.pageShift);
    const first = zero ? this.phys.zeroPfn : pfn0;
    for (let i = 0; i < n; i++) this.pt.set(level - 1, base + i * pow2(sub), first + i * step, flags);
    this.stats.splits++;
    this.notifier.invalidateRangeEnd(base, base + size);
  }

  /**
   * Zaps [start, end) of a VMA (zap_page_range_single / hugetlb hole punch), without the
   * notifier calls (the caller brackets them). @internal (events.ts uses it for munmap).
   */
  zapRange(vma: Vma, start: number, end: number): void {
    const isPfn = vma.backing === 'pfnmap' || vma.backing === 'mixedmap';
    // Split huge leaves that straddle the boundaries (partial THP or huge pfnmap unmap).
    for (const edge of [start, end]) {
      for (;;) {
        const l = newHostLeafScratch;
        if (edge >= vma.end || edge <= vma.start) break;
        this.pt.lookup(edge, l);
        if ((l.flags & HPTE_PRESENT) === 0 || l.level === HOST_LEVEL_PTE || l.base === edge) break;
        if ((l.flags & HPTE_CONT) !== 0) break; // hugetlb: range already rounded to the hstate
        this.splitLeaf(l.level, l.base);
      }
    }
    this.pt.forEach(start, end, (level, base, pfn, f) => {
      // An entry whose page went with its folio earlier in this walk (the later entries of a
      // contiguous hugetlb run) has nothing left to free.
      if ((f & HPTE_OWNED) !== 0 && this.phys.pageIsAllocated(pfn)) {
        const head = this.phys.folioHead(pfn);
        const folioSize = pow2(this.phys.folioOrder(pfn) + this.granule.pageShift);
        const headHva = base - (pfn - head) * this.granule.pageSize;
        if (head === pfn && headHva >= start && headHva + folioSize <= end) this.phys.freeFolio(head);
      }
      this.pt.clear(level, base);
    });
    if (isPfn) {
      // Mark the whole range zapped, with the largest aligned markers.
      let a = start;
      while (a < end) {
        let level = HOST_LEVEL_PUD;
        while (level > HOST_LEVEL_PTE) {
          const size = pow2(this.pt.shifts[level]);
          if (a % size === 0 && a + size <= end) break;
          level--;
        }
        this.pt.set(level, a, 0, HPTE_ZAPPED);
        a += pow2(this.pt.shifts[level]);
      }
    }
  }
}

const newHostLeafScratch: HostLeaf = newHostLeaf();
/** The carrier hostWrite() and populateVma() reuse (the VMM's own faults, not KVM's). */
const hostWriteScratch = new FollowPfn();
