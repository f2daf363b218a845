import { describe, it, expect } from 'vitest';
import { GRANULE_4K, GRANULE_16K, type HostGranule } from '../src/mmu/host/granule.js';
import { PhysMem, PS_DIRTY } from '../src/mmu/host/physmem.js';
import { MmuNotifier } from '../src/mmu/host/notifier.js';
import {
  Mm,
  FollowPfn,
  FAULTIN_OK,
  KVM_PFN_ERR_FAULT,
  KVM_PFN_ERR_HWPOISON,
  KVM_PFN_ERR_RO_FAULT,
  type MmOptions,
} from '../src/mmu/host/mm.js';
import {
  VM_READ,
  VM_WRITE,
  VM_SHARED,
  VM_MAYWRITE,
  VM_PFNMAP,
  VM_IO,
  VM_HUGETLB,
  VM_UFFD_MISSING,
  MT_DEVICE_nGnRE,
  MT_NORMAL_NC,
  MT_NORMAL_TAGGED,
  VM_MTE,
  kvmVmaIsCacheable,
  isCowMapping,
  forEachVmaInRange,
  type Vma,
} from '../src/mmu/host/vma.js';

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;
const RAM_BASE = 0x8000_0000;
const DEV_BASE = 0x40_0000_0000;
const RW = VM_READ | VM_WRITE | VM_MAYWRITE;

function setup(granule: HostGranule = GRANULE_4K, options: MmOptions = {}, ramSize = 8 * G) {
  const phys = new PhysMem(granule, [
    { base: RAM_BASE, size: ramSize, type: 'ram' },
    { base: DEV_BASE, size: 16 * G, type: 'nomap' },
  ]);
  const notifier = new MmuNotifier();
  const calls: [number, number][] = [];
  notifier.subscribe({
    invalidateRange: (r) => {
      // The subscriber runs inside the invalidation: in_progress is raised.
      expect(notifier.inProgress).toBeGreaterThan(0);
      calls.push([r.start, r.end]);
    },
    clearYoung: () => true,
  });
  const mm = new Mm(phys, notifier, options);
  return { phys, notifier, calls, mm, out: new FollowPfn() };
}

function mustVma(v: Vma | string): Vma {
  if (typeof v === 'string') throw new Error(v);
  return v;
}

describe('anon: zero page and copy-on-write', () => {
  it('maps the zero page read-only, then a write breaks CoW through the notifier', () => {
    const { phys, notifier, calls, mm, out } = setup();
    mustVma(mm.mmap({ name: 'ram', start: 0x1_0000_0000, size: 16 * M, vmFlags: RW, backing: 'anon' }));
    const hva = 0x1_0000_3000;
    expect(mm.hostLeafSize(hva)).toBe(0);
    mm.faultinPfn(hva, false, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(out.pfn).toBe(phys.zeroPfn);
    expect(out.writable).toBe(false);
    expect(out.page).toBe(true);
    expect(mm.hostLeafSize(hva)).toBe(4 * K);
    expect(notifier.seq).toBe(0);
    mm.releaseFaultinPage(out, false, false);

    mm.faultinPfn(hva, true, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(out.pfn).not.toBe(phys.zeroPfn);
    expect(phys.pfnIsMapMemory(out.pfn)).toBe(true);
    expect(phys.pageIsAllocated(out.pfn)).toBe(true);
    expect(out.writable).toBe(true);
    expect(calls).toEqual([[hva, hva + 4 * K]]);
    expect(notifier.seq).toBe(1);
    expect(notifier.inProgress).toBe(0);
    expect(mm.stats.cowBreaks).toBe(1);
    mm.releaseFaultinPage(out, false, true);
    expect(mm.pagesHeld).toBe(0);
  });

  it('a first write allocates without any invalidation; a later read is opportunistically writable', () => {
    const { notifier, calls, mm, out } = setup();
    mustVma(mm.mmap({ name: 'ram', start: 0x1_0000_0000, size: 16 * M, vmFlags: RW, backing: 'anon' }));
    mm.faultinPfn(0x1_0000_0000, true, out);
    const pfn = out.pfn;
    mm.releaseFaultinPage(out, false, true);
    expect(calls).toEqual([]);
    expect(notifier.seq).toBe(0);
    mm.faultinPfn(0x1_0000_0000, false, out);
    expect(out.pfn).toBe(pfn);
    expect(out.writable).toBe(true);
    mm.releaseFaultinPage(out, true, false);
  });

  it('no VMA or a protection that denies the access gives KVM_PFN_ERR_FAULT and holds no page', () => {
    const { mm, out } = setup();
    mustVma(mm.mmap({ name: 'ro', start: 0x1_0000_0000, size: 1 * M, vmFlags: VM_READ, backing: 'anon' }));
    mm.faultinPfn(0x5_0000_0000, false, out);
    expect(out.err).toBe(KVM_PFN_ERR_FAULT);
    mm.faultinPfn(0x1_0000_0000, true, out);
    expect(out.err).toBe(KVM_PFN_ERR_FAULT);
    expect(out.pfn).toBe(-1);
    expect(mm.pagesHeld).toBe(0);
  });
});

describe('THP', () => {
  const START = 0x1_0000_0000; // PMD-aligned

  it("with hugeZeroWrite 'split', a write after the huge zero page splits it and copies one base page", () => {
    const { phys, calls, mm, out } = setup(GRANULE_4K, { hugeZeroWrite: 'split' });
    mustVma(mm.mmap({ name: 'thp', start: START, size: 8 * M, vmFlags: RW, backing: 'thp' }));
    const hva = START + 2 * M + 5 * 4 * K;
    mm.faultinPfn(hva, false, out);
    const hz = phys.hugeZeroPfn();
    expect(out.pfn).toBe(hz + 5);
    expect(phys.isZeroPfn(out.pfn)).toBe(true);
    expect(out.writable).toBe(false);
    expect(mm.hostLeafSize(hva)).toBe(2 * M);
    mm.releaseFaultinPage(out, false, false);

    mm.faultinPfn(hva, true, out);
    expect(out.writable).toBe(true);
    expect(phys.isZeroPfn(out.pfn)).toBe(false);
    expect(phys.folioOrder(out.pfn)).toBe(0);
    // __split_huge_pmd invalidates the PMD range, then wp_page_copy the page.
    expect(calls).toEqual([
      [START + 2 * M, START + 4 * M],
      [hva, hva + 4 * K],
    ]);
    expect(mm.hostLeafSize(hva)).toBe(4 * K);
    // The neighbours now map the 4K zero page.
    mm.releaseFaultinPage(out, false, true);
    mm.faultinPfn(hva + 4 * K, false, out);
    expect(out.pfn).toBe(phys.zeroPfn);
    mm.releaseFaultinPage(out, false, false);
  });

  it('read maps the huge zero page at PMD size; by default a write allocates a PMD folio', () => {
    const { phys, calls, mm, out } = setup();
    mustVma(mm.mmap({ name: 'thp', start: START, size: 8 * M, vmFlags: RW, backing: 'thp' }));
    mm.faultinPfn(START, false, out);
    mm.releaseFaultinPage(out, false, false);
    mm.faultinPfn(START + 4 * K, true, out);
    expect(phys.folioOrder(out.pfn)).toBe(9);
    expect(phys.folioHead(out.pfn)).toBe(out.pfn - 1);
    expect(calls).toEqual([[START, START + 2 * M]]);
    expect(mm.hostLeafSize(START)).toBe(2 * M);
    mm.releaseFaultinPage(out, false, true);
  });

  it('a write to never-touched, PMD-aligned memory allocates a naturally aligned PMD folio', () => {
    const { phys, calls, mm, out } = setup();
    mustVma(mm.mmap({ name: 'thp', start: START, size: 8 * M, vmFlags: RW, backing: 'thp' }));
    mm.faultinPfn(START + 6 * M + 12 * K, true, out);
    expect(phys.folioOrder(out.pfn)).toBe(9);
    expect(phys.folioHead(out.pfn) % 512).toBe(0);
    expect(out.pfn - phys.folioHead(out.pfn)).toBe(3);
    expect(calls).toEqual([]);
    expect(mm.hostLeafSize(START + 6 * M)).toBe(2 * M);
    mm.releaseFaultinPage(out, false, true);
  });

  it('falls back to base pages where the PMD-aligned range is not inside the VMA', () => {
    const { phys, mm, out } = setup();
    mustVma(mm.mmap({ name: 'thp', start: START + 1 * M, size: 3 * M, vmFlags: RW, backing: 'thp' }));
    mm.faultinPfn(START + 1 * M, true, out);
    expect(phys.folioOrder(out.pfn)).toBe(0);
    expect(mm.hostLeafSize(START + 1 * M)).toBe(4 * K);
    mm.releaseFaultinPage(out, false, true);
    mm.faultinPfn(START + 2 * M, true, out);
    expect(phys.folioOrder(out.pfn)).toBe(9);
    mm.releaseFaultinPage(out, false, true);
  });

  it('a partial unmap splits the PMD: the rest stays mapped at 4K', () => {
    const { calls, mm, out } = setup();
    const vma = mustVma(mm.mmap({ name: 'thp', start: START, size: 4 * M, vmFlags: RW, backing: 'thp' }));
    mm.faultinPfn(START, true, out);
    const pfn = out.pfn;
    mm.releaseFaultinPage(out, false, true);
    mm.hostUnmap(vma, 8 * K, 4 * K);
    expect(mm.hostLeafSize(START + 8 * K)).toBe(0);
    expect(mm.hostLeafSize(START)).toBe(4 * K);
    expect(calls).toContainEqual([START + 8 * K, START + 12 * K]);
    mm.faultinPfn(START + 16 * K, false, out);
    expect(out.pfn).toBe(pfn + 4);
    mm.releaseFaultinPage(out, true, false);
  });
});

describe('hugetlb', () => {
  const cases: [HostGranule, number, number][] = [
    // granule, hstate size, what get_user_mapping_size sees
    [GRANULE_4K, 64 * K, 4 * K],
    [GRANULE_4K, 2 * M, 2 * M],
    [GRANULE_4K, 32 * M, 2 * M],
    [GRANULE_4K, 1 * G, 1 * G],
    [GRANULE_16K, 2 * M, 16 * K],
    [GRANULE_16K, 32 * M, 32 * M],
    [GRANULE_16K, 1 * G, 32 * M],
  ];
  for (const [granule, size, leaf] of cases) {
    it(`${granule.pageSize / K}K granule, ${size / K}K hstate: folio of that size, host leaf ${leaf / K}K`, () => {
      const { phys, mm, out } = setup(granule);
      const start = 0x100_0000_0000;
      mustVma(
        mm.mmap({
          name: 'h',
          start,
          size: 2 * size,
          vmFlags: RW | VM_SHARED,
          backing: 'hugetlb',
          hugePage: size,
        }),
      );
      const hva = start + size + 3 * granule.pageSize;
      mm.faultinPfn(hva, false, out);
      expect(out.err).toBe(FAULTIN_OK);
      const order = Math.log2(size) - granule.pageShift;
      expect(phys.folioOrder(out.pfn)).toBe(order);
      expect(phys.folioTestHugetlb(out.pfn)).toBe(true);
      expect(out.pfn - phys.folioHead(out.pfn)).toBe(3);
      expect(phys.folioHead(out.pfn) % 2 ** order).toBe(0);
      expect(out.vmaShift).toBe(Math.log2(size));
      expect(out.writable).toBe(true); // shared and writable
      expect(mm.hostLeafSize(hva)).toBe(leaf);
      expect(mm.hostLeafSize(start)).toBe(0);
      mm.releaseFaultinPage(out, false, false);
    });
  }

  it('rejects sizes the granule does not offer and unaligned VMAs', () => {
    const { mm } = setup();
    expect(
      mm.mmap({ name: 'a', start: 0, size: 4 * M, vmFlags: RW, backing: 'hugetlb', hugePage: 4 * M }),
    ).toMatch(/hugePage/);
    expect(
      mm.mmap({ name: 'b', start: 1 * M, size: 2 * M, vmFlags: RW, backing: 'hugetlb', hugePage: 2 * M }),
    ).toMatch(/aligned/);
    const { mm: mm16 } = setup(GRANULE_16K);
    expect(
      mm16.mmap({ name: 'c', start: 0, size: 64 * G, vmFlags: RW, backing: 'hugetlb', hugePage: 64 * G }),
    ).toMatch(/hugePage/);
  });

  it('private: a read maps read-only, a write reuses the same folio without invalidation', () => {
    const { calls, mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'h',
        start: 0x1_0000_0000,
        size: 2 * M,
        vmFlags: RW,
        backing: 'hugetlb',
        hugePage: 2 * M,
      }),
    );
    expect(vma.vmFlags & VM_HUGETLB).toBe(VM_HUGETLB);
    mm.faultinPfn(0x1_0000_0000, false, out);
    const pfn = out.pfn;
    expect(out.writable).toBe(false);
    mm.releaseFaultinPage(out, false, false);
    mm.faultinPfn(0x1_0000_1000, true, out);
    expect(out.pfn).toBe(pfn + 1);
    expect(out.writable).toBe(true);
    expect(calls).toEqual([]);
    mm.releaseFaultinPage(out, false, true);
  });

  it('hole punch rounds to the hstate size and frees the folio', () => {
    const { phys, calls, mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'h',
        start: 0x1_0000_0000,
        size: 64 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'hugetlb',
        hugePage: 32 * M,
      }),
    );
    mm.faultinPfn(0x1_0000_0000, true, out);
    const head = out.pfn;
    mm.releaseFaultinPage(out, false, true);
    const range = { start: 0, end: 0 };
    mm.hostUnmap(vma, 4 * K, 4 * K, range);
    expect(range).toEqual({ start: 0x1_0000_0000, end: 0x1_0000_0000 + 32 * M });
    expect(calls).toEqual([[range.start, range.end]]);
    expect(phys.pageIsAllocated(head)).toBe(false);
    expect(phys.pageIsAllocated(head + 8191)).toBe(false);
    expect(mm.hostLeafSize(0x1_0000_0000)).toBe(0);
  });
});

describe('shmem', () => {
  it('a read of a never-touched page allocates (no zero page), shared mappings are writable', () => {
    const { phys, mm, out } = setup();
    mustVma(
      mm.mmap({ name: 's', start: 0x1_0000_0000, size: 1 * M, vmFlags: RW | VM_SHARED, backing: 'shmem' }),
    );
    mm.faultinPfn(0x1_0000_0000, false, out);
    expect(out.pfn).not.toBe(phys.zeroPfn);
    expect(phys.pageIsAllocated(out.pfn)).toBe(true);
    expect(out.writable).toBe(true);
    mm.releaseFaultinPage(out, false, false);
  });

  it('private: a read maps the file page read-only and a write copies it with an invalidation', () => {
    const { calls, mm, out } = setup();
    mustVma(mm.mmap({ name: 's', start: 0x1_0000_0000, size: 1 * M, vmFlags: RW, backing: 'shmem' }));
    mm.faultinPfn(0x1_0000_0000, false, out);
    const filePfn = out.pfn;
    expect(out.writable).toBe(false);
    mm.releaseFaultinPage(out, false, false);
    mm.faultinPfn(0x1_0000_0000, true, out);
    expect(out.pfn).not.toBe(filePfn);
    expect(calls).toEqual([[0x1_0000_0000, 0x1_0000_1000]]);
    mm.releaseFaultinPage(out, false, true);
  });
});

describe('pfnmap and mixedmap', () => {
  const HVA = 0x2_0000_0000;

  it('entries are present from the start, with pfn = vm_pgoff + offset and no refcounted page', () => {
    const { mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'bar',
        start: HVA,
        size: 64 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
      }),
    );
    expect(vma.vmFlags & (VM_PFNMAP | VM_IO)).toBe(VM_PFNMAP | VM_IO);
    expect(vma.pgoff).toBe(DEV_BASE / 4096);
    expect(mm.hostLeafSize(HVA + 3 * M)).toBe(4 * K);
    mm.faultinPfn(HVA + 3 * M + 4 * K, false, out);
    expect(out.pfn).toBe(DEV_BASE / 4096 + 769);
    expect(out.page).toBe(false);
    expect(out.writable).toBe(true);
    expect(mm.pagesHeld).toBe(0);
  });

  it('writable exactly when shared and writable', () => {
    const { mm, out } = setup();
    mustVma(
      mm.mmap({
        name: 'ro',
        start: HVA,
        size: 4 * M,
        vmFlags: VM_READ | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
      }),
    );
    mustVma(
      mm.mmap({
        name: 'priv',
        start: HVA + 4 * M,
        size: 4 * M,
        vmFlags: RW,
        backing: 'pfnmap',
        pa: DEV_BASE,
      }),
    );
    mm.faultinPfn(HVA, false, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(out.writable).toBe(false);
    mm.faultinPfn(HVA, true, out);
    expect(out.err).toBe(KVM_PFN_ERR_FAULT);
    mm.faultinPfn(HVA + 4 * M, false, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(out.writable).toBe(false);
  });

  it('a write to a private (CoW) pfnmap is KVM_PFN_ERR_RO_FAULT: COW is not broken (hva_to_pfn_remapped)', () => {
    // follow_pfnmap_start() finds the driver's read-only entry, so fixup_user_fault() is not
    // called; a write fault on a read-only entry gives KVM_PFN_ERR_RO_FAULT.
    const { calls, mm, out } = setup();
    const v = mustVma(
      mm.mmap({ name: 'priv', start: HVA, size: 4 * M, vmFlags: RW, backing: 'pfnmap', pa: DEV_BASE }),
    );
    expect(isCowMapping(v.vmFlags)).toBe(true);
    mm.faultinPfn(HVA + 4 * K, true, out);
    expect(out.err).toBe(KVM_PFN_ERR_RO_FAULT);
    expect(out.pfn).toBe(-1);
    expect(calls).toEqual([]);
    expect(mm.stats.cowBreaks).toBe(0);
    // A read gets the device pfn, read-only, with no page reference.
    mm.faultinPfn(HVA + 4 * K, false, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(out.pfn).toBe(DEV_BASE / 4096 + 1);
    expect(out.writable).toBe(false);
    expect(out.page).toBe(false);
  });

  it('hostMapping pmd/pud gives huge host leaves only where hva and pa are congruent and inside the VMA', () => {
    const { mm } = setup();
    mustVma(
      mm.mmap({
        name: 'pmd',
        start: HVA,
        size: 8 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
        hostMapping: 'pmd',
      }),
    );
    mustVma(
      mm.mmap({
        name: 'skew',
        start: HVA + 8 * M,
        size: 8 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE + 4 * K,
        hostMapping: 'pmd',
      }),
    );
    mustVma(
      mm.mmap({
        name: 'pud',
        start: 0x40_0000_0000,
        size: 2 * G,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
        hostMapping: 'pud',
      }),
    );
    expect(mm.hostLeafSize(HVA + 1 * M)).toBe(2 * M);
    expect(mm.hostLeafSize(HVA + 9 * M)).toBe(4 * K);
    expect(mm.hostLeafSize(0x40_0000_0000 + 1 * G + 5 * M)).toBe(1 * G);
  });

  it('after a host unmap the entry is gone until a fault refills it; neighbours stay zapped', () => {
    const { calls, mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'bar',
        start: HVA,
        size: 4 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
        hostMapping: 'pmd',
      }),
    );
    mm.hostUnmap(vma, 0, 4 * M);
    expect(calls).toEqual([[HVA, HVA + 4 * M]]);
    expect(mm.hostLeafSize(HVA)).toBe(0);
    expect(mm.hostLeafSize(HVA + 3 * M)).toBe(0);
    mm.faultinPfn(HVA + 4 * K, false, out);
    expect(out.pfn).toBe(DEV_BASE / 4096 + 1);
    expect(mm.hostLeafSize(HVA)).toBe(2 * M);
    expect(mm.hostLeafSize(HVA + 3 * M)).toBe(0);
  });

  it("the VMM's own store to a private pfnmap does break COW (handle_mm_fault, not GUP); KVM then gets the copy", () => {
    const { phys, calls, mm, out } = setup();
    mustVma(mm.mmap({ name: 'priv', start: HVA, size: 4 * M, vmFlags: RW, backing: 'pfnmap', pa: DEV_BASE }));
    // do_wp_page() → wp_page_copy(): an anonymous copy replaces the device page, with its
    // MMU-notifier invalidation.
    expect(mm.hostWrite(HVA + 4 * K + 8, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))).toBe(0);
    expect(calls).toEqual([[HVA + 4 * K, HVA + 8 * K]]);
    expect(mm.stats.cowBreaks).toBe(1);
    // GUP-fast now finds a present, writable, normal page: a write fault gets it, refcounted.
    mm.faultinPfn(HVA + 4 * K, true, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(phys.pfnIsMapMemory(out.pfn)).toBe(true);
    expect(out.page).toBe(true);
    expect(mm.hostRead(HVA + 4 * K + 8, 8)).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    mm.releaseFaultinPage(out, true, false);
    // The neighbouring page is still the driver's read-only device entry: RO_FAULT for KVM.
    mm.faultinPfn(HVA + 8 * K, true, out);
    expect(out.err).toBe(KVM_PFN_ERR_RO_FAULT);
  });

  it("the VMM's own store to a mixedmap without VM_IO works (its page table, not GUP)", () => {
    const { mm, out } = setup();
    mustVma(
      mm.mmap({
        name: 'mx',
        start: HVA,
        size: 1 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'mixedmap',
        pa: RAM_BASE + 1 * G,
      }),
    );
    expect(mm.hostWrite(HVA + 16, new Uint8Array([9]))).toBe(0);
    expect(mm.hostRead(HVA + 16, 1)).toEqual(new Uint8Array([9]));
    mm.faultinPfn(HVA, false, out);
    expect(out.err).toBe(KVM_PFN_ERR_FAULT); // while GUP still refuses it
  });

  it('mixedmap: GUP refuses its special entries; with VM_IO the remapped path returns the pfn, no page', () => {
    // On arm64 (pte_special) vmf_insert_mixed() installs special entries for RAM and device
    // pfns alike: follow_page_pte() refuses them, and hva_to_pfn() falls back to
    // hva_to_pfn_remapped() only for VM_IO | VM_PFNMAP.
    const { mm, out } = setup();
    mustVma(
      mm.mmap({
        name: 'm1',
        start: HVA,
        size: 1 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'mixedmap',
        pa: RAM_BASE + 1 * G,
      }),
    );
    mustVma(
      mm.mmap({
        name: 'm2',
        start: HVA + 1 * M,
        size: 1 * M,
        vmFlags: RW | VM_SHARED | VM_IO,
        backing: 'mixedmap',
        pa: RAM_BASE + 1 * G,
      }),
    );
    mm.faultinPfn(HVA, false, out);
    expect(out.err).toBe(KVM_PFN_ERR_FAULT);
    expect(out.page).toBe(false);
    mm.faultinPfn(HVA + 1 * M, true, out);
    expect(out.err).toBe(FAULTIN_OK);
    expect(out.pfn).toBe((RAM_BASE + 1 * G) / 4096);
    expect(out.writable).toBe(true);
    expect(out.page).toBe(false);
    expect(mm.pagesHeld).toBe(0);
  });

  it('vma cacheability follows the page protection memory type', () => {
    const { mm } = setup();
    const dev = mustVma(
      mm.mmap({
        name: 'd',
        start: HVA,
        size: 1 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
        memType: MT_DEVICE_nGnRE,
      }),
    );
    const nc = mustVma(
      mm.mmap({
        name: 'n',
        start: HVA + 1 * M,
        size: 1 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
        memType: MT_NORMAL_NC,
      }),
    );
    const wb = mustVma(
      mm.mmap({
        name: 'w',
        start: HVA + 2 * M,
        size: 1 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
      }),
    );
    expect([kvmVmaIsCacheable(dev), kvmVmaIsCacheable(nc), kvmVmaIsCacheable(wb)]).toEqual([
      false,
      false,
      true,
    ]);
  });
});

describe('userfaultfd missing', () => {
  it('counts one event per missing page and populates it writable', () => {
    const { phys, mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'u',
        start: 0x1_0000_0000,
        size: 1 * M,
        vmFlags: RW,
        backing: 'anon',
        uffdMissing: true,
      }),
    );
    expect(vma.vmFlags & VM_UFFD_MISSING).toBe(VM_UFFD_MISSING);
    mm.faultinPfn(0x1_0000_0000, false, out);
    expect(mm.stats.uffdEvents).toBe(1);
    expect(out.pfn).not.toBe(phys.zeroPfn);
    expect(out.writable).toBe(true);
    mm.releaseFaultinPage(out, false, false);
    mm.faultinPfn(0x1_0000_0000, true, out);
    expect(mm.stats.uffdEvents).toBe(1);
    mm.releaseFaultinPage(out, false, true);
    mm.faultinPfn(0x1_0000_1000, true, out);
    expect(mm.stats.uffdEvents).toBe(2);
    mm.releaseFaultinPage(out, false, true);
    mm.hostUnmap(vma, 0, 4 * K);
    mm.faultinPfn(0x1_0000_0000, false, out);
    expect(mm.stats.uffdEvents).toBe(3);
    mm.releaseFaultinPage(out, false, false);
  });

  it('is refused on a pfnmap VMA', () => {
    const { mm } = setup();
    expect(
      mm.mmap({
        name: 'p',
        start: 0,
        size: 1 * M,
        vmFlags: RW,
        backing: 'pfnmap',
        pa: DEV_BASE,
        uffdMissing: true,
      }),
    ).toMatch(/userfaultfd/);
  });
});

describe('hardware poison', () => {
  it('returns KVM_PFN_ERR_HWPOISON with the backing page shift, holding no page', () => {
    const { mm, out } = setup();
    mustVma(mm.mmap({ name: 'a', start: 0x1_0000_0000, size: 1 * M, vmFlags: RW, backing: 'anon' }));
    mustVma(
      mm.mmap({
        name: 'h',
        start: 0x1_0000_0000 + 2 * M,
        size: 2 * M,
        vmFlags: RW,
        backing: 'hugetlb',
        hugePage: 2 * M,
      }),
    );
    expect(mm.poisonHva(0x1_0000_1000)).toBeGreaterThan(0);
    mm.faultinPfn(0x1_0000_1000, false, out);
    expect(out.err).toBe(KVM_PFN_ERR_HWPOISON);
    expect(out.vmaShift).toBe(12);
    mm.faultinPfn(0x1_0000_2000, false, out);
    expect(out.err).toBe(FAULTIN_OK);
    mm.releaseFaultinPage(out, true, false);
    mm.poisonHva(0x1_0000_0000 + 2 * M + 8 * K);
    mm.faultinPfn(0x1_0000_0000 + 2 * M + 8 * K, false, out);
    expect(out.err).toBe(KVM_PFN_ERR_HWPOISON);
    expect(out.vmaShift).toBe(21);
    expect(mm.pagesHeld).toBe(0);
  });
});

describe('host unmap, mprotect and aging', () => {
  it('unmap invalidates the range and the pages are no longer populated', () => {
    const { phys, notifier, calls, mm, out } = setup();
    const vma = mustVma(
      mm.mmap({ name: 'a', start: 0x1_0000_0000, size: 1 * M, vmFlags: RW, backing: 'anon' }),
    );
    mm.faultinPfn(0x1_0000_2000, true, out);
    const pfn = out.pfn;
    mm.releaseFaultinPage(out, false, true);
    const before = phys.stats.allocatedPages;
    mm.hostUnmap(vma, 0x2000, 0x1000);
    expect(calls).toEqual([[0x1_0000_2000, 0x1_0000_3000]]);
    expect(notifier.seq).toBe(1);
    expect(phys.pageIsAllocated(pfn)).toBe(false);
    expect(phys.stats.allocatedPages).toBe(before - 1);
    expect(mm.hostLeafSize(0x1_0000_2000)).toBe(0);
  });

  it('mprotect invalidates the VMA, removes write, and restoring write makes owned pages writable again', () => {
    const { phys, calls, mm, out } = setup();
    let vma = mustVma(
      mm.mmap({ name: 'a', start: 0x1_0000_0000, size: 1 * M, vmFlags: RW, backing: 'anon' }),
    );
    mm.faultinPfn(0x1_0000_0000, true, out);
    mm.releaseFaultinPage(out, false, true);
    mm.faultinPfn(0x1_0000_1000, false, out); // zero page
    mm.releaseFaultinPage(out, false, false);
    const gen = mm.vmas;
    vma = mm.hostProtect(vma, VM_READ);
    expect(calls).toEqual([[0x1_0000_0000, 0x1_0010_0000]]);
    expect(gen.vmas[0].vmFlags & VM_WRITE).toBe(VM_WRITE); // old generation unchanged
    expect(vma.vmFlags & VM_WRITE).toBe(0);
    mm.faultinPfn(0x1_0000_0000, true, out);
    expect(out.err).toBe(KVM_PFN_ERR_FAULT);
    mm.faultinPfn(0x1_0000_0000, false, out);
    expect(out.writable).toBe(false);
    mm.releaseFaultinPage(out, false, false);
    const rw = mm.hostProtect(vma, VM_READ | VM_WRITE);
    expect(rw.vmFlags & VM_WRITE).toBe(VM_WRITE);
    mm.faultinPfn(0x1_0000_0000, false, out);
    expect(out.writable).toBe(true);
    mm.releaseFaultinPage(out, false, false);
    mm.faultinPfn(0x1_0000_1000, false, out);
    expect(out.pfn).toBe(phys.zeroPfn);
    expect(out.writable).toBe(false);
    mm.releaseFaultinPage(out, false, false);
  });

  it('clearYoung forwards to the subscriber', () => {
    const { notifier, mm } = setup();
    expect(mm.clearYoung(0, 4096)).toBe(true);
    expect(notifier.stats.clearYoungs).toBe(1);
  });
});

describe('steady state', () => {
  it('refaulting populated pages does not grow the host page table', () => {
    const { mm, out } = setup();
    mustVma(mm.mmap({ name: 'a', start: 0x1_0000_0000, size: 64 * M, vmFlags: RW, backing: 'anon' }));
    for (let a = 0; a < 64 * M; a += 4 * K) {
      mm.faultinPfn(0x1_0000_0000 + a, true, out);
      mm.releaseFaultinPage(out, false, true);
    }
    const tables = mm.pt.tables;
    const allocated = mm.phys.stats.allocatedPages;
    for (let a = 0; a < 64 * M; a += 4 * K) {
      mm.faultinPfn(0x1_0000_0000 + a, false, out);
      mm.releaseFaultinPage(out, false, false);
    }
    expect(mm.pt.tables).toBe(tables);
    expect(mm.phys.stats.allocatedPages).toBe(allocated);
    expect(mm.pagesHeld).toBe(0);
  });

  it('a zapped pfnmap range refilled by its driver frees and rebuilds the same tables each time', () => {
    const { mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'bar',
        start: 0x40_0000_0000,
        size: 1 * G,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
      }),
    );
    const touch = (): void => {
      for (let a = 0; a < 1 * G; a += 256 * M) mm.faultinPfn(0x40_0000_0000 + a + 4 * K, true, out);
    };
    touch();
    const built = mm.pt.tables;
    for (let round = 0; round < 3; round++) {
      // The zap leaves one 1G marker: the tables under it are freed (not counted)...
      mm.hostUnmap(vma, 0, 1 * G);
      expect(mm.pt.tables).toBeLessThan(built);
      expect(mm.hostLeafSize(0x40_0000_0000 + 4 * K)).toBe(0);
      // ...and the driver's faults rebuild them: counted again, entries as before.
      touch();
      expect(mm.pt.tables).toBe(built);
      expect(out.pfn).toBe(DEV_BASE / 4096 + (768 * M + 4 * K) / 4096);
      expect(mm.hostLeafSize(0x40_0000_0000 + 4 * K)).toBe(4 * K);
      expect(mm.hostLeafSize(0x40_0000_0000 + 8 * K)).toBe(0); // still zapped
    }
  });
});

describe('VMA generations', () => {
  it('mmap produces a new immutable generation; lookups and range iteration see the current one', () => {
    const { mm } = setup();
    const g0 = mm.vmas;
    mustVma(mm.mmap({ name: 'b', start: 0x20_0000, size: 0x10_0000, vmFlags: RW, backing: 'anon' }));
    mustVma(mm.mmap({ name: 'a', start: 0x10_0000, size: 0x1000, vmFlags: RW, backing: 'anon' }));
    expect(g0.vmas).toHaveLength(0);
    expect(mm.vmas.generation).toBe(2);
    expect(Object.isFrozen(mm.vmas.vmas[0])).toBe(true);
    expect(mm.vmas.vmas.map((v) => v.name)).toEqual(['a', 'b']);
    expect(mm.vmaLookup(0x10_0fff)?.name).toBe('a');
    expect(mm.vmaLookup(0x10_1000)).toBeUndefined();
    expect(mm.vmaLookup(0x2f_ffff)?.name).toBe('b');
    const seen: string[] = [];
    expect(forEachVmaInRange(mm.vmas, 0x10_0800, 0x20_0001, (v) => seen.push(v.name))).toBe(2);
    expect(seen).toEqual(['a', 'b']);
    expect(mm.mmap({ name: 'c', start: 0x20_8000, size: 0x1000, vmFlags: RW, backing: 'anon' })).toMatch(
      /overlaps/,
    );
    expect(mm.mmap({ name: 'a', start: 0x90_0000, size: 0x1000, vmFlags: RW, backing: 'anon' })).toMatch(
      /duplicate/,
    );
  });
});

describe('host MTE tag initialisation', () => {
  function mteSetup() {
    const phys = new PhysMem(GRANULE_4K, [{ base: RAM_BASE, size: 4 * G, type: 'ram' }], { mte: true });
    return { phys, mm: new Mm(phys), out: new FollowPfn() };
  }

  it('the zero page is tagged at boot when the host has MTE, not otherwise', () => {
    expect(mteSetup().phys.pageMteTagged(mteSetup().phys.zeroPfn)).toBe(true);
    const { phys } = setup();
    expect(phys.pageMteTagged(phys.zeroPfn)).toBe(false);
  });

  it('PROT_MTE mappings initialise tags as pages are mapped; untagged mappings leave them to KVM', () => {
    const { phys, mm, out } = mteSetup();
    const tagged = mustVma(
      mm.mmap({
        name: 't',
        start: 0x1_0000_0000,
        size: 4 * M,
        vmFlags: RW,
        backing: 'thp',
        memType: MT_NORMAL_TAGGED,
      }),
    );
    expect(tagged.vmFlags & VM_MTE).toBe(VM_MTE);
    mustVma(mm.mmap({ name: 'u', start: 0x2_0000_0000, size: 4 * M, vmFlags: RW, backing: 'anon' }));
    mustVma(
      mm.mmap({
        name: 'h',
        start: 0x3_0000_0000,
        size: 2 * M,
        vmFlags: RW,
        backing: 'hugetlb',
        hugePage: 2 * M,
        memType: MT_NORMAL_TAGGED,
      }),
    );
    mm.faultinPfn(0x1_0000_0000, true, out);
    expect(phys.pageMteTagged(out.pfn)).toBe(true);
    expect(phys.pageMteTagged(out.pfn + 511)).toBe(true);
    expect(phys.stats.mteTagClears).toBe(512);
    mm.releaseFaultinPage(out, false, true);
    mm.faultinPfn(0x2_0000_0000, true, out);
    expect(phys.pageMteTagged(out.pfn)).toBe(false);
    mm.releaseFaultinPage(out, false, true);
    mm.faultinPfn(0x3_0000_0000 + 4 * K, true, out);
    expect(phys.folioTestHugetlbMteTagged(out.pfn)).toBe(true);
    expect(phys.folioTryHugetlbMteTagging(out.pfn)).toBe(false);
    expect(phys.stats.mteTagClears).toBe(1024);
    expect(phys.warnings).toEqual([]);
    mm.releaseFaultinPage(out, false, true);
  });
});

describe('large and partial unmaps', () => {
  it('a full unmap of a THP PMD frees the folio; an unreleased GUP reference stays visible', () => {
    const { phys, mm, out } = setup();
    const vma = mustVma(
      mm.mmap({ name: 'thp', start: 0x1_0000_0000, size: 4 * M, vmFlags: RW, backing: 'thp' }),
    );
    mm.faultinPfn(0x1_0020_0000, true, out);
    const head = phys.folioHead(out.pfn);
    expect(mm.pagesHeld).toBe(1); // not released yet: KVM's job
    mm.releaseFaultinPage(out, false, true);
    expect(mm.pagesHeld).toBe(0);
    expect(phys.state(head) & PS_DIRTY).toBe(PS_DIRTY); // released dirty
    mm.hostUnmap(vma, 2 * M, 2 * M);
    expect(phys.pageIsAllocated(head)).toBe(false);
    expect(phys.pageIsAllocated(head + 511)).toBe(false);
  });

  it('a 4K hole in a huge pfnmap entry leaves the rest mapped at page size', () => {
    const { mm, out } = setup();
    const vma = mustVma(
      mm.mmap({
        name: 'bar',
        start: 0x2_0000_0000,
        size: 4 * M,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: DEV_BASE,
        hostMapping: 'pmd',
      }),
    );
    expect(mm.hostLeafSize(0x2_0000_0000)).toBe(2 * M);
    mm.hostUnmap(vma, 8 * K, 4 * K);
    expect(mm.hostLeafSize(0x2_0000_2000)).toBe(0);
    expect(mm.hostLeafSize(0x2_0000_1000)).toBe(4 * K);
    mm.faultinPfn(0x2_0000_3000, false, out);
    expect(out.pfn).toBe(DEV_BASE / 4096 + 3);
    expect(mm.hostLeafSize(0x2_0020_0000)).toBe(2 * M); // the other PMD is untouched
  });

  it('mprotect and unmap of a 512 GiB pfnmap stay sparse (PUD-sized markers, a few tables)', () => {
    const { notifier, mm } = setup();
    let vma = mustVma(
      mm.mmap({
        name: 'hbm',
        start: 0x100_0000_0000,
        size: 512 * G,
        vmFlags: RW | VM_SHARED,
        backing: 'pfnmap',
        pa: 0x200_0000_0000,
        hostMapping: 'pud',
      }),
    );
    expect(mm.hostLeafSize(0x100_0000_0000 + 300 * G)).toBe(1 * G);
    vma = mm.hostProtect(vma, VM_READ);
    const out = new FollowPfn();
    mm.faultinPfn(0x100_0000_0000 + 300 * G, false, out);
    expect(out.writable).toBe(false);
    mm.hostUnmap(vma, 0, 512 * G);
    expect(mm.hostLeafSize(0x100_0000_0000 + 300 * G)).toBe(0);
    expect(mm.pt.tables).toBeLessThan(8);
    expect(notifier.seq).toBe(2);
  });
});
