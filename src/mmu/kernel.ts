/**
 * The kernel behaviours s2emu models for user_mem_abort() and
 * kvm_arch_prepare_memory_region() (fault-path.md §1): what changed with the
 * cacheable-PFNMAP series. The fault path reads these booleans instead of
 * comparing version strings, so each difference is named where it applies.
 */

/** A modelled kernel behaviour. */
export type KernelName = '6.16' | 'seed' | '6.17';

/** The differences between the modelled kernels. */
export interface KernelModel {
  readonly name: KernelName;
  /**
   * S10 "no cache maintenance possible" test. 'pfn': any pfn outside the linear map
   * (kvm_is_device_pfn() in 6.16, kvm_can_use_cmo_pfn() in the seed); 'vma-and-pfn':
   * VM_PFNMAP|VM_MIXEDMAP and outside the linear map (6.17, 216887f79d98).
   */
  readonly deviceTest: 'pfn' | 'vma-and-pfn';
  /**
   * Whether the VMA's cacheability decides the stage-2 memory type of such pfns
   * (is_vma_cacheable, 2a8dfab26677). 6.16 maps every non-linear-map pfn as device.
   */
  readonly vmaCacheable: boolean;
  /**
   * Where a cacheable VMA on a CPU without FWB+DIC fails. 'none' (6.16: it cannot happen),
   * 'early-efault' (6.17: -EFAULT before mmu_lock, only for the PFNMAP/MIXEDMAP non-linear
   * case), 'late-einval' (seed: -EINVAL under mmu_lock after THP and MTE, for any cacheable
   * VMA, ordinary RAM included, as fault-path.md §1.2 states).
   */
  readonly cacheableCheck: 'none' | 'early-efault' | 'late-einval';
  /** The seed's -EINVAL for a COW VM_PFNMAP, returned with mmap_lock still held. */
  readonly cowPfnmapEinval: boolean;
  /** 5f9466b50c1b: the early -EFAULT/-ENOEXEC returns release the page (6.17.y). */
  readonly releaseOnEarlyError: boolean;
  /** kvm_arch_prepare_memory_region() refuses a cacheable VM_PFNMAP without FWB+DIC. */
  readonly memslotCacheableCheck: boolean;
}

/** The modelled kernels by name. */
export const KERNELS: Readonly<Record<KernelName, KernelModel>> = {
  '6.16': {
    name: '6.16',
    deviceTest: 'pfn',
    vmaCacheable: false,
    cacheableCheck: 'none',
    cowPfnmapEinval: false,
    releaseOnEarlyError: false,
    memslotCacheableCheck: false,
  },
  seed: {
    name: 'seed',
    deviceTest: 'pfn',
    vmaCacheable: true,
    cacheableCheck: 'late-einval',
    cowPfnmapEinval: true,
    releaseOnEarlyError: false,
    memslotCacheableCheck: true,
  },
  '6.17': {
    name: '6.17',
    deviceTest: 'vma-and-pfn',
    vmaCacheable: true,
    cacheableCheck: 'early-efault',
    cowPfnmapEinval: false,
    releaseOnEarlyError: true,
    memslotCacheableCheck: true,
  },
};
