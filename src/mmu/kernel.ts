/**
 * The kernel behaviours s2emu models for user_mem_abort() and
 * kvm_arch_prepare_memory_region() (arch/arm64/kvm/mmu.c): what changed with the
 * cacheable-PFNMAP series. The fault path reads these fields instead of
 * comparing version strings, so each difference is named where it applies.
 *
 * - '6.16': before the series.
 * - 'seed': the diff of the 19 Jun 2025 reply to the v7 4/5 review, on top of 6.16 and the
 *   series' "Block cacheable PFNMAP mapping" patch (docs/decisions.md, "The seed model").
 * - 'v7': the archived v7 4/5 patch of 18 Jun 2025 (disable_cmo, kvm_can_use_cmo_pfn()): a
 *   different text from the seed, kept because its late -EINVAL is instructive.
 * - '6.17': as merged (kvmarm-6.17), with the page-leak fix 5f9466b50c1b of 6.17.y.
 */

/** A modelled kernel behaviour. */
export type KernelName = '6.16' | 'seed' | 'v7' | '6.17';

/** Every modelled kernel, oldest first (the order the CLI and the tests list them in). */
export const KERNEL_NAMES: readonly KernelName[] = ['6.16', 'seed', 'v7', '6.17'];

/** The differences between the modelled kernels. */
export interface KernelModel {
  readonly name: KernelName;
  /**
   * The "no cache maintenance possible" test. 'pfn': any pfn outside the linear map
   * (kvm_is_device_pfn() in 6.16 and the seed, kvm_can_use_cmo_pfn() in v7); 'vma-and-pfn':
   * VM_PFNMAP|VM_MIXEDMAP and outside the linear map (6.17, 216887f79d98).
   */
  readonly deviceTest: 'pfn' | 'vma-and-pfn';
  /**
   * Which VMAs may keep a cacheable stage 2 over such pfns. 'none': 6.16 maps every
   * non-linear-map pfn as device. 'cacheable-vma': any VMA that kvm_vma_is_cacheable()
   * accepts (v7, 6.17). 'cacheable-pfnmap': only a cacheable VM_PFNMAP VMA, the seed's
   * `cacheable_pfnmap` (step 1; MIXEDMAP never sets it).
   */
  readonly cacheableOver: 'none' | 'cacheable-vma' | 'cacheable-pfnmap';
  /**
   * What a cacheable mapping of such a pfn on a CPU without FWB+DIC does. 'none' (6.16: it
   * cannot happen), 'early-efault' (the seed and 6.17: -EFAULT before mmu_lock, only for
   * the pfns that would have been mapped cacheable), 'late-einval' (v7: -EINVAL under
   * mmu_lock after THP and MTE, for any cacheable VMA, ordinary RAM included).
   */
  readonly cacheableCheck: 'none' | 'early-efault' | 'late-einval';
  /**
   * The seed's "mismatched mapping" refusal (step 3): a cacheable VMA whose pfn is given a
   * non-cacheable stage 2 returns -EINVAL before mmu_lock.
   */
  readonly mismatchEinval: boolean;
  /** The seed's and v7's -EINVAL for a COW VM_PFNMAP, returned with mmap_lock still held. */
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
    cacheableOver: 'none',
    cacheableCheck: 'none',
    mismatchEinval: false,
    cowPfnmapEinval: false,
    releaseOnEarlyError: false,
    memslotCacheableCheck: false,
  },
  seed: {
    name: 'seed',
    deviceTest: 'pfn',
    cacheableOver: 'cacheable-pfnmap',
    cacheableCheck: 'early-efault',
    mismatchEinval: true,
    cowPfnmapEinval: true,
    releaseOnEarlyError: false,
    memslotCacheableCheck: true,
  },
  v7: {
    name: 'v7',
    deviceTest: 'pfn',
    cacheableOver: 'cacheable-vma',
    cacheableCheck: 'late-einval',
    mismatchEinval: false,
    cowPfnmapEinval: true,
    releaseOnEarlyError: false,
    memslotCacheableCheck: true,
  },
  '6.17': {
    name: '6.17',
    deviceTest: 'vma-and-pfn',
    cacheableOver: 'cacheable-vma',
    cacheableCheck: 'early-efault',
    mismatchEinval: false,
    cowPfnmapEinval: false,
    releaseOnEarlyError: true,
    memslotCacheableCheck: true,
  },
};
