/**
 * VMAs of the VMM's address space: vm_flags, the page protection's memory
 * type, the backing, and an immutable, immer-versioned set of them.
 *
 * vm_flags keep the kernel's values (include/linux/mm.h) for the generic
 * flags. The arm64 high-arch flags (VM_MTE, VM_MTE_ALLOWED,
 * VM_ALLOW_ANY_UNCACHED) live above bit 31 in the kernel; here they are moved
 * into bits 24-26 (VM_ARCH_1, VM_WIPEONFORK and VM_DONTDUMP, which the model
 * does not use) so every flag works with 32-bit bitwise operators.
 */
import { produce } from 'immer';
import { HostOp, type HvaOp } from './op.js';

/** VM_READ. */
export const VM_READ = 0x1;
/** VM_WRITE. */
export const VM_WRITE = 0x2;
/** VM_EXEC. */
export const VM_EXEC = 0x4;
/** VM_SHARED: a shared mapping (writes reach the object, no copy-on-write). */
export const VM_SHARED = 0x8;
/** VM_MAYREAD. */
export const VM_MAYREAD = 0x10;
/** VM_MAYWRITE: may become writable; with !VM_SHARED this is a CoW mapping (is_cow_mapping). */
export const VM_MAYWRITE = 0x20;
/** VM_MAYEXEC. */
export const VM_MAYEXEC = 0x40;
/** VM_MAYSHARE. */
export const VM_MAYSHARE = 0x80;
/** VM_UFFD_MISSING: userfaultfd missing-page tracking. */
export const VM_UFFD_MISSING = 0x200;
/** VM_PFNMAP: raw pfns, no struct page refcounting (remap_pfn_range). */
export const VM_PFNMAP = 0x400;
/** VM_IO: memory-mapped I/O. */
export const VM_IO = 0x4000;
/** VM_HUGETLB: hugetlbfs mapping. */
export const VM_HUGETLB = 0x400000;
/** VM_MIXEDMAP: may contain both struct-page and raw-pfn entries (vmf_insert_mixed). */
export const VM_MIXEDMAP = 0x10000000;
/** VM_HUGEPAGE: MADV_HUGEPAGE (THP enabled for the range). */
export const VM_HUGEPAGE = 0x20000000;
/** VM_MTE (arm64 VM_HIGH_ARCH_0; remapped here to bit 24): PROT_MTE is set. */
export const VM_MTE = 1 << 24;
/** VM_MTE_ALLOWED (arm64 VM_HIGH_ARCH_1; remapped here to bit 25): MTE may be enabled. */
export const VM_MTE_ALLOWED = 1 << 25;
/** VM_ALLOW_ANY_UNCACHED (arm64 high-arch bit; remapped here to bit 26): KVM may use Normal-NC. */
export const VM_ALLOW_ANY_UNCACHED = 1 << 26;

/** AttrIndx of MT_NORMAL in vm_page_prot (PTE bits [4:2]). */
export const MT_NORMAL = 0;
/** AttrIndx of MT_NORMAL_TAGGED. */
export const MT_NORMAL_TAGGED = 1;
/** AttrIndx of MT_NORMAL_NC (pgprot_writecombine). */
export const MT_NORMAL_NC = 2;
/** AttrIndx of MT_DEVICE_nGnRnE (pgprot_noncached). */
export const MT_DEVICE_nGnRnE = 3;
/** AttrIndx of MT_DEVICE_nGnRE (pgprot_device). */
export const MT_DEVICE_nGnRE = 4;

/** Backing kinds (what faults in the VMA's pages). */
export type BackingKind = 'anon' | 'thp' | 'hugetlb' | 'shmem' | 'pfnmap' | 'mixedmap';

/** Host page-table entry size a pfnmap/mixedmap driver installs: page, PMD or PUD. */
export type HostMappingSize = 'page' | 'pmd' | 'pud';

/** One VMA. Immutable: changes produce a new VmaSet generation. */
export interface Vma {
  /** Stable identity across generations (assigned at mmap). */
  readonly id: number;
  /** Unique name (memslots refer to it). */
  readonly name: string;
  /** vm_start. */
  readonly start: number;
  /** vm_end (exclusive). */
  readonly end: number;
  /** vm_flags. */
  readonly vmFlags: number;
  /** AttrIndx of vm_page_prot (MT_*). */
  readonly memType: number;
  /** vm_pgoff: for pfnmap/mixedmap the first pfn; otherwise the page offset into the object (0). */
  readonly pgoff: number;
  /** The backing. */
  readonly backing: BackingKind;
  /** hugetlb: log2 of the hstate size (huge_page_shift). 0 otherwise. */
  readonly hugeShift: number;
  /** pfnmap/mixedmap: host entry size the driver installs. 'page' otherwise. */
  readonly hostMapping: HostMappingSize;
  /**
   * Where this VMA starts within the mapping its name was created for: 0, or, for the later
   * pieces of a VMA that munmap or a MAP_FIXED mmap split, their offset from the original start
   * (so `name + offset` keeps naming the same address).
   */
  readonly nameOffset?: number;
  /** The userfaultfd registration (VM_UFFD_MISSING is set with it), or absent. */
  readonly uffd?: UffdRegistration;
}

/**
 * A userfaultfd registration for missing-page events (UFFDIO_REGISTER_MODE_MISSING): how the
 * VMM answers each event.
 */
export interface UffdRegistration {
  /** `'page'`: one UFFDIO_COPY of the faulting page; `'range'`: of every missing page of the range. */
  readonly resolve: 'page' | 'range';
  /** What UFFDIO_COPY copies: the range's contents at registration, or zeroes. */
  readonly copyFrom: 'registration' | 'zero';
  /** The registered host range [start, end) (the VMA as it was registered). */
  readonly start: number;
  readonly end: number;
}

/** An immutable generation of the address space's VMAs, sorted by start. */
export interface VmaSet {
  /** Incremented by every change. */
  readonly generation: number;
  /** VMAs sorted by start, non-overlapping. */
  readonly vmas: readonly Vma[];
}

/** The empty address space. */
export const EMPTY_VMA_SET: VmaSet = { generation: 0, vmas: [] };

/**
 * Models vma_lookup(mm, addr): the VMA containing addr, or undefined.
 * Binary search; allocates nothing.
 */
export function vmaLookup(set: VmaSet, hva: number): Vma | undefined {
  lookupScratch.hva = hva;
  return vmaLookupOp(set, lookupScratch);
}

const lookupScratch = new HostOp();

/**
 * vmaLookup() of `op.hva`: the fault path's form, which takes the address in a carrier (a
 * double argument would be boxed into a new heap number at every call V8 does not inline).
 */
export function vmaLookupOp(set: VmaSet, op: HvaOp): Vma | undefined {
  const hva = op.hva;
  const v = set.vmas;
  let lo = 0;
  let hi = v.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = v[mid];
    if (hva < m.start) hi = mid - 1;
    else if (hva >= m.end) lo = mid + 1;
    else return m;
  }
  return undefined;
}

/**
 * Calls fn(vma) for every VMA intersecting [start, end), in address order
 * (the VMA iteration kvm_arch_prepare_memory_region() does under mmap_lock;
 * holes are skipped). Returns the number of VMAs visited.
 */
export function forEachVmaInRange(set: VmaSet, start: number, end: number, fn: (vma: Vma) => void): number {
  let n = 0;
  for (const v of set.vmas) {
    if (v.start >= end) break;
    if (v.end <= start) continue;
    fn(v);
    n++;
  }
  return n;
}

/** Returns the VMA with this name, or undefined. */
export function vmaByName(set: VmaSet, name: string): Vma | undefined {
  for (const v of set.vmas) if (v.name === name) return v;
  return undefined;
}

/**
 * Returns a new generation with `vma` inserted (sorted). The caller has
 * checked for overlap. The old generation is unchanged.
 */
export function vmaSetInsert(set: VmaSet, vma: Vma): VmaSet {
  return produce(set, (d) => {
    let i = 0;
    while (i < d.vmas.length && d.vmas[i].start < vma.start) i++;
    d.vmas.splice(i, 0, vma);
    d.generation++;
  });
}

/** Returns a new generation in which VMA `id` has the given vm_flags. */
export function vmaSetUpdateFlags(set: VmaSet, id: number, vmFlags: number): VmaSet {
  return produce(set, (d) => {
    const v = d.vmas.find((x) => x.id === id);
    if (v !== undefined) v.vmFlags = vmFlags;
    d.generation++;
  });
}

/** Returns a new generation in which VMA `id` has `patch` applied (flags, registration). */
export function vmaSetUpdate(set: VmaSet, id: number, patch: Partial<Pick<Vma, 'vmFlags' | 'uffd'>>): VmaSet {
  return produce(set, (d) => {
    const v = d.vmas.find((x) => x.id === id);
    if (v !== undefined) Object.assign(v, patch);
    d.generation++;
  });
}

/**
 * Removes hvas [start, end) from the address space, splitting the VMAs that straddle either
 * edge as __split_vma() does: the part below `start` keeps the VMA's identity, the part above
 * `end` is a new VMA (id from `newId()`) whose vm_pgoff moves on for raw-pfn mappings and
 * whose name offset records where it starts. Returns the new generation (the old one is
 * unchanged).
 */
export function vmaSetRemoveRange(
  set: VmaSet,
  start: number,
  end: number,
  pageSize: number,
  newId: () => number,
): VmaSet {
  return produce(set, (d) => {
    const out: Vma[] = [];
    for (const v of d.vmas) {
      if (v.end <= start || v.start >= end) {
        out.push(v);
        continue;
      }
      if (v.start < start) out.push({ ...v, end: start });
      if (v.end > end) {
        const shift = end - v.start;
        const raw = v.backing === 'pfnmap' || v.backing === 'mixedmap';
        out.push({
          ...v,
          id: newId(),
          start: end,
          pgoff: raw ? v.pgoff + shift / pageSize : v.pgoff,
          nameOffset: (v.nameOffset ?? 0) + shift,
        });
      }
    }
    d.vmas = out;
    d.generation++;
  });
}

/** Where the mapping a VMA's name was created for starts (its start less its name offset). */
export function vmaNameStart(v: Vma): number {
  return v.start - (v.nameOffset ?? 0);
}

/** Models is_cow_mapping(): VM_MAYWRITE without VM_SHARED. */
export function isCowMapping(vmFlags: number): boolean {
  return (vmFlags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;
}

/**
 * Models kvm_vma_is_cacheable() (6.17): false for MT_NORMAL_NC and the two
 * Device types, true otherwise (including tagged and unused indices).
 */
export function kvmVmaIsCacheable(vma: Vma): boolean {
  const t = vma.memType;
  return t !== MT_NORMAL_NC && t !== MT_DEVICE_nGnRnE && t !== MT_DEVICE_nGnRE;
}

/** Models kvm_vma_mte_allowed(): vm_flags & VM_MTE_ALLOWED. */
export function kvmVmaMteAllowed(vma: Vma): boolean {
  return (vma.vmFlags & VM_MTE_ALLOWED) !== 0;
}
