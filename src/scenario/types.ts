/**
 * The validated, normalised scenario (docs/scenario.md).
 *
 * Everything here is readonly plain data: what `parseScenario()` returns once every key has been
 * checked and every default applied, and what library users may build by hand. Addresses and
 * sizes are plain numbers (always non-negative safe integers, below 2^53). Enumerations are
 * string-literal unions whose allowed values are the `as const` arrays beside them, which the
 * parser also uses, so the type and the validation cannot drift apart.
 */

import { ACCESS_NAMES } from '../mmu/access.js';
import { CPU_FEATURE_NAMES, type CpuFeatures } from '../mmu/cpu.js';

/** The user_mem_abort() behaviour to model (src/mmu/kernel.ts; docs/scenario.md, "Top level"). */
export const KERNELS = ['6.16', 'seed', 'v7', '6.17'] as const;
/**
 * `"6.16"` (before the cacheable-PFNMAP series), `"seed"` (the 19 Jun 2025 reply's diff),
 * `"v7"` (the archived v7 4/5 patch of 18 Jun 2025) or `"6.17"` (as merged).
 */
export type Kernel = (typeof KERNELS)[number];

/** Host PAGE_SIZE, which is also the stage-2 granule; and the guest's stage-1 granule. */
export const GRANULES = ['4K', '16K', '64K'] as const;
/** A translation granule by name. */
export type Granule = (typeof GRANULES)[number];

/** Bytes in each granule. */
export const GRANULE_BYTES: Readonly<Record<Granule, number>> = {
  '4K': 0x1000,
  '16K': 0x4000,
  '64K': 0x10000,
};

/**
 * The hstate sizes hugetlbfs offers on arm64 for each granule, contiguous-hint sizes included:
 * CONT_PTE, PMD, CONT_PMD and (4K only, where PUD sections exist) PUD.
 * See arch_hugetlb_valid_size() (arch/arm64/mm/hugetlbpage.c), and the shifts user_mem_abort()
 * clamps (S4 in docs/decisions.md, "Step labels").
 */
export const HUGETLB_SIZES: Readonly<Record<Granule, readonly number[]>> = {
  '4K': [0x1_0000, 0x20_0000, 0x200_0000, 0x4000_0000],
  '16K': [0x20_0000, 0x200_0000, 0x4000_0000],
  '64K': [0x20_0000, 0x2000_0000, 0x4_0000_0000],
};

/** The PARange sizes ID_AA64MMFR0_EL1 can report (codes 0 to 6). */
export const PA_BITS = [32, 36, 40, 42, 44, 48, 52] as const;

/** The smallest IPA size KVM accepts (ARM64_MIN_PARANGE_BITS). */
export const MIN_IPA_BITS = 32;

/** Exclusive upper bound of host virtual addresses a VMA may use: the 48-bit user address space. */
export const USER_VA_LIMIT = 2 ** 48;

/** Exclusive upper bound of guest virtual addresses a stage-1 mapping may use (TTBR0_EL1, T0SZ = 16). */
export const GUEST_VA_LIMIT = 2 ** 48;

/** Memslot ids KVM accepts are 0 to KVM_USER_MEM_SLOTS - 1 (32767 on arm64). */
export const MAX_SLOT_ID = 32766;

/** Host CPU feature names, as `cpu` keys: the model's own list (src/mmu/cpu.ts, CPU_FEATURE_NAMES). */
export const CPU_FEATURES = CPU_FEATURE_NAMES;
/** One host CPU feature. */
export type CpuFeature = (typeof CPU_FEATURES)[number];
/** Optional CPU booleans (default false): FEAT_LPA2 in use by the host. */
export const CPU_OPTIONAL_FEATURES = ['lpa2'] as const;
/**
 * A fully specified host CPU: the model's own CpuFeatures (src/mmu/cpu.ts), which the file gives
 * key by key (CPU_FEATURES, and `lpa2`).
 */
export type ScenarioCpuFeatures = CpuFeatures;

/** The built-in CPU presets; their feature values are defined in src/mmu/cpu.ts. */
export const CPU_PROFILES = [
  'grace',
  'neoverse-n1',
  'ampere-altra',
  'kunpeng-920',
  'cortex-a76',
  'generic-v8',
] as const;
/** A built-in CPU preset name. */
export type CpuProfileName = (typeof CPU_PROFILES)[number];

/**
 * The `cpu` key, normalised: either every feature (no profile), or a profile name plus the
 * features the file overrides. The parser does not know the presets' values (src/mmu/cpu.ts owns
 * them); this shape is what the mmu layer's resolveCpu() takes.
 */
export type ScenarioCpu = CpuFeatures | ({ readonly profile: CpuProfileName } & Partial<CpuFeatures>);

/** Host physical memory: `ram` is in the linear map (pfn_is_map_memory() true), `nomap` is not. */
export const PHYS_TYPES = ['ram', 'nomap'] as const;
/** The kind of a physical region. */
export type PhysType = (typeof PHYS_TYPES)[number];

/** One region of the host physical memory map, `[base, base + size)`. */
export interface PhysicalRegion {
  readonly base: number;
  readonly size: number;
  readonly type: PhysType;
}

/** What backs a VMA. */
export const BACKINGS = ['anon', 'thp', 'hugetlb', 'shmem', 'pfnmap', 'mixedmap'] as const;
/** A VMA backing. */
export type Backing = (typeof BACKINGS)[number];

/** VM_READ / VM_WRITE / VM_EXEC, as the letters given. */
export const PROTS = ['r', 'rw', 'rx', 'rwx'] as const;
/** A VMA protection. */
export type Prot = (typeof PROTS)[number];

/** The memory type of the VMA's vm_page_prot (its AttrIndx). */
export const MEM_TYPES = ['normal', 'normal-tagged', 'normal-nc', 'device-nGnRE', 'device-nGnRnE'] as const;
/** A VMA memory type. */
export type MemType = (typeof MEM_TYPES)[number];

/** The size of the host's own page-table entries over a pfnmap/mixedmap VMA. */
export const HOST_MAPPINGS = ['page', 'pmd', 'pud'] as const;
/** A host mapping size. */
export type HostMapping = (typeof HOST_MAPPINGS)[number];

/** The strings the `flags` array of a VMA may hold. */
export const VMA_FLAG_NAMES = [
  'shared',
  'maywrite',
  'no-maywrite',
  'mte-allowed',
  'no-mte-allowed',
  'allow-any-uncached',
  'io',
] as const;

/**
 * The VMA's vm_flags beyond its protection, resolved.
 *
 * `mteAllowed` is `'implied'` when Linux would set VM_MTE_ALLOWED exactly when the CPU has MTE
 * (anon, thp, shmem and hugetlb VMAs without an explicit flag); resolve it with vmaMteAllowed()
 * once the CPU is known.
 */
export interface VmaFlags {
  /** VM_SHARED. */
  readonly shared: boolean;
  /** VM_MAYWRITE: given, or implied by `w` in `prot` unless `no-maywrite`. */
  readonly maywrite: boolean;
  /** VM_MTE_ALLOWED. */
  readonly mteAllowed: boolean | 'implied';
  /** VM_ALLOW_ANY_UNCACHED. */
  readonly allowAnyUncached: boolean;
  /** VM_IO. */
  readonly io: boolean;
}

/** Fields every VMA has. */
export interface VmaCommon {
  readonly name: string;
  /** Host virtual start, granule-aligned. */
  readonly start: number;
  /** Bytes, granule-aligned, non-zero. */
  readonly size: number;
  readonly prot: Prot;
  readonly memType: MemType;
  readonly flags: VmaFlags;
  /** The userfaultfd registration for missing-page events, or null when not registered. */
  readonly userfaultfd: Userfaultfd | null;
  /** Bytes the VMM writes before the run (after the stage-1 tables), in file order; absent: none. */
  readonly init?: readonly VmaInit[];
  /** MAP_POPULATE: every page faulted in at creation (for write when writable); absent: false. */
  readonly populate?: boolean;
}

/** One `init` entry of a VMA: `bytes` written at `offset` (a `u64` is its 8 bytes, little-endian). */
export interface VmaInit {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/** How the VMM answers a userfaultfd missing-page event: one page, or the whole registered range. */
export const UFFD_RESOLVES = ['page', 'range'] as const;
/** A userfaultfd resolution policy. */
export type UffdResolve = (typeof UFFD_RESOLVES)[number];
/** What the VMM's UFFDIO_COPY copies: the range's contents at registration, or zeroes. */
export const UFFD_COPY_FROMS = ['registration', 'zero'] as const;
/** A userfaultfd copy source. */
export type UffdCopyFrom = (typeof UFFD_COPY_FROMS)[number];

/** A VMA's userfaultfd registration (the string `"missing"` is `{ mode: "missing" }` with the defaults). */
export interface Userfaultfd {
  readonly mode: 'missing';
  /** Default `'page'`. */
  readonly resolve: UffdResolve;
  /** Default `'registration'`. */
  readonly copyFrom: UffdCopyFrom;
}

/** Anonymous, THP or shmem memory. */
export interface MemoryVma extends VmaCommon {
  readonly backing: 'anon' | 'thp' | 'shmem';
}

/** hugetlbfs memory: `start` and `size` are multiples of `hugePage`. */
export interface HugetlbVma extends VmaCommon {
  readonly backing: 'hugetlb';
  /** The hstate size in bytes, one of HUGETLB_SIZES[granule]. */
  readonly hugePage: number;
}

/** VM_PFNMAP or VM_MIXEDMAP over physical `[pa, pa + size)`. */
export interface PhysVma extends VmaCommon {
  readonly backing: 'pfnmap' | 'mixedmap';
  /** First physical address (vm_pgoff << PAGE_SHIFT), granule-aligned. */
  readonly pa: number;
  readonly hostMapping: HostMapping;
}

/** One VMA of the VMM, discriminated by `backing`. */
export type ScenarioVma = MemoryVma | HugetlbVma | PhysVma;

/** The strings a memslot's `flags` array may hold. */
export const MEMSLOT_FLAG_NAMES = ['log-dirty', 'readonly'] as const;

/**
 * A memslot: guest physical `[gpa, gpa + size)` backed by VMA `vma` from `offset`, or (with `vma`
 * null) by host virtual `[userspaceAddr, userspaceAddr + size)` as given by the file's `hva`,
 * which may span several VMAs or holes.
 */
export interface ScenarioMemslot {
  readonly slot: number;
  readonly gpa: number;
  readonly size: number;
  /** The VMA named by the file, or null when the slot was given by `hva`. */
  readonly vma: string | null;
  /** Offset into `vma` (0 when given by `hva`). */
  readonly offset: number;
  /** userspace_addr: the VMA's start plus `offset`. */
  readonly userspaceAddr: number;
  readonly flags: {
    /** KVM_MEM_LOG_DIRTY_PAGES. */
    readonly logDirty: boolean;
    /** KVM_MEM_READONLY. */
    readonly readonly: boolean;
  };
}

/** VM-wide settings. */
export interface VmConfig {
  readonly ipaBits: number;
  /** KVM_CAP_ARM_MTE enabled. */
  readonly mte: boolean;
  /** KVM_CAP_ARM_NISV_TO_USER enabled. */
  readonly nisvToUser: boolean;
  /** The most stage-2 table pages the host allocates for the VM (PGD included); absent: no limit. */
  readonly tablePagesMax?: number;
  /** What the VMM does with a write MMIO exit in a read-only memslot; absent: `'drop'`. */
  readonly mmioWrites?: MmioWrites;
}

/** `vm.mmioWrites`: drop the write, or store it into the read-only slot's backing (a hostWrite). */
export const MMIO_WRITES = ['drop', 'store-readonly-slot'] as const;
/** A VMM policy for MMIO writes. */
export type MmioWrites = (typeof MMIO_WRITES)[number];

/** Top-level `onError`: what the VMM does when KVM_RUN fails. */
export const ON_ERRORS = ['continue', 'stop'] as const;
/** An error policy. */
export type OnError = (typeof ON_ERRORS)[number];

/** Races an access may meet on its first fault (docs/scenario.md, "Host events"). */
export const RACES = ['invalidate', 'zap-host-pte', 'other-vcpu'] as const;
/** A race. */
export type Race = (typeof RACES)[number];

/** Stage-1 access permission of a guest mapping (AP[2]). */
export const GUEST_APS = ['rw', 'ro'] as const;
/** A guest stage-1 permission. */
export type GuestAp = (typeof GUEST_APS)[number];

/**
 * A guest stage-1 mapping: `[va, va + size)` onto `[ipa, ipa + size)`, or (GuestLeafAlias) one
 * granule page at `va` onto the table page holding the leaf descriptor of `leafTableOf`.
 */
export type GuestMapping = GuestRangeMapping | GuestLeafAlias;

/** One granule page at `va` mapped onto the table page that holds `leafTableOf`'s leaf descriptor. */
export interface GuestLeafAlias {
  readonly va: number;
  /** A VA mapped by an earlier entry of `mappings`. */
  readonly leafTableOf: number;
  readonly attrIndx: number;
  readonly ap: GuestAp;
  readonly af: boolean;
  readonly xn: boolean;
}

/** One guest stage-1 mapping of `[va, va + size)` to `[ipa, ipa + size)`. */
export interface GuestRangeMapping {
  readonly va: number;
  readonly ipa: number;
  readonly size: number;
  /** Index into MAIR_EL1, 0 to 7. */
  readonly attrIndx: number;
  readonly ap: GuestAp;
  readonly af: boolean;
  readonly xn: boolean;
}

/** The guest's own stage-1 translation. */
export interface ScenarioGuestStage1 {
  readonly granule: Granule;
  /** IPA where the builder lays out the tables, aligned to the stage-1 granule. */
  readonly tables: number;
  /** MAIR_EL1 as its eight attribute bytes: `mair[i]` is Attr<i> (bits [8i+7:8i]). */
  readonly mair: readonly number[];
  /** TCR_EL1.HA. */
  readonly ha: boolean;
  /** TCR_EL1.HD. */
  readonly hd: boolean;
  /** VA size (TCR_EL1.T0SZ = 64 − vaBits); absent: 48. */
  readonly vaBits?: number;
  /** TCR_EL1.IPS as bits; absent: vm.ipaBits (at most 48). */
  readonly ips?: number;
  /** Blocks wherever size and alignment allow; absent: false (pages only). */
  readonly blocks?: boolean;
  readonly mappings: readonly GuestMapping[];
}

/** The `guest` key. */
export interface GuestConfig {
  readonly stage1: ScenarioGuestStage1;
}

/** Guest access kinds: the one table of names (src/mmu/access.ts), in ACC_* order. */
export const ACCESS_KINDS = ACCESS_NAMES;
/** One kind of guest access. */
export type AccessKind = (typeof ACCESS_KINDS)[number];

/** Whether accesses name guest virtual (stage 1 on) or intermediate physical (stage 1 off) addresses. */
export type AddressSpace = 'ipa' | 'va';

/** Orders a `touch` step can visit its addresses in. */
export const TOUCH_ORDERS = ['sequential', 'random'] as const;
/** A touch order. */
export type TouchOrder = (typeof TOUCH_ORDERS)[number];

/** `dirtyLog` operations. */
export const DIRTY_LOG_OPS = ['enable', 'disable', 'get-and-clear'] as const;
/** A dirty-log operation. */
export type DirtyLogOp = (typeof DIRTY_LOG_OPS)[number];

/** Fields every step has. */
export interface StepCommon {
  /** 0-based position in the `steps` array; the output's `"step"` field. */
  readonly index: number;
}

/** One guest access. */
export interface AccessStep extends StepCommon {
  readonly kind: 'access';
  readonly access: AccessKind;
  readonly space: AddressSpace;
  readonly address: number;
  /** A race on the access's first fault; absent: none. */
  readonly race?: Race;
  /** write/st-preidx: the 8 bytes stored; cas: the value swapped in. Absent: 0. */
  readonly value?: bigint;
  /** cas: the value compared with. Absent: 0. */
  readonly expect?: bigint;
}

/** The VMM writes `bytes` at `offset` of a VMA through its own mapping. */
export interface HostWriteStep extends StepCommon {
  readonly kind: 'hostWrite';
  readonly vma: string;
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/** One access of kind `access` every `stride` bytes of `[from, from + size)`. */
export interface TouchStep extends StepCommon {
  readonly kind: 'touch';
  readonly space: AddressSpace;
  readonly from: number;
  readonly size: number;
  readonly stride: number;
  readonly access: AccessKind;
  readonly order: TouchOrder;
  /** Seed of the permutation for `order: "random"` (0 to 2^32 - 1); kept, unused, for sequential. */
  readonly seed: number;
}

/** The host drops `[offset, offset + size)` of a VMA. */
export interface HostUnmapStep extends StepCommon {
  readonly kind: 'hostUnmap';
  readonly vma: string;
  readonly offset: number;
  readonly size: number;
}

/** mprotect of a whole VMA. */
export interface HostProtectStep extends StepCommon {
  readonly kind: 'hostProtect';
  readonly vma: string;
  readonly prot: Prot;
}

/** MMU-notifier clear_young over `[ipa, ipa + size)`. */
export interface AgeStep extends StepCommon {
  readonly kind: 'age';
  readonly ipa: number;
  readonly size: number;
}

/** A dirty-logging operation on a slot. */
export interface DirtyLogStep extends StepCommon {
  readonly kind: 'dirtyLog';
  readonly slot: number;
  readonly op: DirtyLogOp;
}

/** A memslot created mid-run. */
export interface MemslotStep extends StepCommon {
  readonly kind: 'memslot';
  readonly memslot: ScenarioMemslot;
}

/** A memslot deleted mid-run. */
export interface DeleteMemslotStep extends StepCommon {
  readonly kind: 'deleteMemslot';
  readonly slot: number;
}

/** One step, discriminated by `kind`. */
export type Step =
  | AccessStep
  | TouchStep
  | HostUnmapStep
  | HostProtectStep
  | AgeStep
  | DirtyLogStep
  | MemslotStep
  | DeleteMemslotStep
  | MmapStep
  | MunmapStep
  | PoisonStep
  | HostWriteStep;

/** A VMA mapped mid-run (MAP_FIXED: it replaces whatever it overlaps). */
export interface MmapStep extends StepCommon {
  readonly kind: 'mmap';
  readonly vma: ScenarioVma;
}

/** munmap of `[offset, offset + size)` of the named VMA (offsets from where it was mapped). */
export interface MunmapStep extends StepCommon {
  readonly kind: 'munmap';
  readonly vma: string;
  readonly offset: number;
  readonly size: number;
}

/** memory_failure() on the page (or huge page) backing `offset` of the named VMA. */
export interface PoisonStep extends StepCommon {
  readonly kind: 'poison';
  readonly vma: string;
  readonly offset: number;
}

/** Step kinds, as the key that introduces each in the file. */
export const STEP_KINDS = [
  'access',
  'touch',
  'hostUnmap',
  'hostProtect',
  'age',
  'dirtyLog',
  'memslot',
  'deleteMemslot',
  'mmap',
  'munmap',
  'poison',
  'hostWrite',
] as const;
/** A step kind. */
export type StepKind = (typeof STEP_KINDS)[number];

/** A complete, validated scenario. */
export interface Scenario {
  /** Free text for people reading the file; null when absent. */
  readonly description: string | null;
  readonly kernel: Kernel;
  readonly cpu: ScenarioCpu;
  readonly granule: Granule;
  readonly paBits: number;
  readonly physical: readonly PhysicalRegion[];
  readonly vmas: readonly ScenarioVma[];
  readonly vm: VmConfig;
  /** The memslots created before the first step, in file order. */
  readonly memslots: readonly ScenarioMemslot[];
  readonly guest: GuestConfig | null;
  readonly steps: readonly Step[];
  /** Top-level `onError`; absent: `'continue'`. */
  readonly onError?: OnError;
  /** The `cpu` keys that are not host features (DC ZVA, AT); absent: the defaults. */
  readonly cpuOptions?: CpuOptions;
}

/** `cpu` keys beyond the host features: what the guest's DCZID_EL0 says, and what AT does. */
export interface CpuOptions {
  /** DCZID_EL0.BS as bytes (4 << BS): the block DC ZVA zeroes. Default 64. */
  readonly dczvaBytes: number;
  /** DCZID_EL0.DZP: DC ZVA prohibited (the guest takes an UNDEF). Default false. */
  readonly dzp: boolean;
  /** AT with TCR_EL1.HA updates the access flag (IMPLEMENTATION DEFINED). Default false. */
  readonly atUpdatesAf: boolean;
}

/** The `cpu` keys CpuOptions come from. */
export const CPU_OPTION_KEYS = ['dczvaBytes', 'dzp', 'atUpdatesAf'] as const;

/**
 * Resolve VM_MTE_ALLOWED for a VMA once the host CPU is known: Linux sets it on anon, thp, shmem
 * and hugetlb VMAs when the CPU has MTE, unless the file says otherwise.
 *
 * Returns whether the VMA has VM_MTE_ALLOWED.
 */
export function vmaMteAllowed(vma: ScenarioVma, cpuHasMte: boolean): boolean {
  const allowed = vma.flags.mteAllowed;
  return allowed === 'implied' ? cpuHasMte : allowed;
}
