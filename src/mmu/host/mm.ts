/**
 * The VMM's address space (one mm): its state (the VMA generation, the host page table, the
 * notifier, the counters) and the VMA side of the host: mmap(), MADV_DONTNEED / hole punch
 * and the zap behind munmap (mm/mmap.c, mm/memory.c), mprotect() (mm/mprotect.c), aging, and
 * the VMM's own loads, stores and MAP_POPULATE through handle_mm_fault().
 *
 * The rest of the host is cut as the kernel cuts it, in functions that take the Mm: the GUP
 * side KVM calls (gup.ts: hva_to_pfn(), get_user_mapping_size()'s walk, the release) and the
 * host's own fault handlers behind both (hostfault.ts). The methods here for them are thin
 * delegations, so a caller holds one object.
 *
 * Steady state allocates nothing: lookups reuse scratch objects, and results
 * go into a caller-supplied FollowPfn.
 */
import { checkVmaSpec } from '../apicheck.js';
import { alignDown, shr, type HostGranule, pow2 } from './granule.js';
import {
  FAULTIN_OK,
  FollowPfn,
  KVM_PFN_ERR_FAULT,
  KVM_PFN_ERR_HWPOISON,
  hostLeafShiftOp,
  hvaToPfn,
  releaseFaultinPage,
} from './gup.js';
import { hostWalk, populate, splitLeaf, wpFault } from './hostfault.js';
import {
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
import { HostOp, type HvaOp } from './op.js';
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
} from './vma.js';
import { UffdLog } from './uffd.js';

// struct kvm_follow_pfn and its error codes live with hva_to_pfn() (gup.ts); their callers
// have always imported them from here.
export {
  FAULTIN_OK,
  FollowPfn,
  KVM_PFN_ERR_FAULT,
  KVM_PFN_ERR_HWPOISON,
  KVM_PFN_ERR_RO_FAULT,
} from './gup.js';
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

  /** @internal The write-fault policy on the huge zero page (hostfault.ts, wpFault). */
  readonly hugeZeroWrite: HugeZeroWritePolicy;
  /** @internal The leaf every host walk fills (hostfault.ts, hostWalk); borrowed until the next walk. */
  readonly leaf: HostLeaf = newHostLeaf();
  /** @internal The carrier the argument-taking forms fill (hostLeafSize, hostRead, a userfault range's pages). */
  readonly arg = new HostOp();
  /**
   * @internal The carrier of what a host fault installs: an entry's hva and pfn (pt.setOp), a
   * new folio (phys); GUP's pfn for the poison check.
   */
  readonly ins = new HostOp();
  /** @internal A second pfn carrier: a hugetlb folio's head. */
  readonly head = new HostOp();
  /** @internal The range of the notifier events a host fault sends (copy-on-write). */
  readonly range: MmuNotifierRange = { start: DOUBLE_FIELD, end: DOUBLE_FIELD };
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
   * gup.ts, hostLeafShiftOp.
   */
  hostLeafShiftOp(op: HvaOp): number {
    return hostLeafShiftOp(this, op);
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
   * path (no address argument to box). GUP-fast, GUP proper with the host fault handlers, or
   * hva_to_pfn_remapped() for VM_IO|VM_PFNMAP, in hva_to_pfn()'s order: gup.ts, hvaToPfn.
   */
  hvaToPfn(kfp: FollowPfn): void {
    hvaToPfn(this, kfp);
  }

  /**
   * Models kvm_release_faultin_page(kvm, page, unused, dirty): drops the
   * reference faultinPfn() took (when `out.page`), marking the page dirty if
   * `dirty && !unused`. Does nothing for a result without a page (gup.ts).
   */
  releaseFaultinPage(out: FollowPfn, unused: boolean, dirty: boolean): void {
    releaseFaultinPage(this, out, unused, dirty);
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
        const leaf = hostWalk(this, vma, this.arg);
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
    let l = hostWalk(this, vma, at);
    if ((l.flags & HPTE_PRESENT) === 0) {
      if (!populate(this, vma, at, write)) return;
      l = hostWalk(this, vma, at);
    }
    if (write && (l.flags & HPTE_WRITE) === 0) {
      if (!wpFault(this, vma, at)) return;
      l = hostWalk(this, vma, at);
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

  /**
   * Splits the leaf at (level, base) into a table of next-level leaves mapping
   * the same pfns (__split_huge_pmd/pud), with the notifier invalidation over
   * the leaf's range that the kernel issues. @internal (events.ts: memory_failure's THP split;
   * hostfault.ts, splitLeaf).
   */
  splitLeaf(level: number, base: number): void {
    splitLeaf(this, level, base);
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
        splitLeaf(this, l.level, l.base);
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

/** The leaf zapRange() looks its edges up into. */
const newHostLeafScratch: HostLeaf = newHostLeaf();
/** The carrier hostWrite() and populateVma() reuse (the VMM's own faults, not KVM's). */
const hostWriteScratch = new FollowPfn();
