/**
 * s2emu: the public API, a curated list: every export is named here (no `export *`), and
 * other modules, and anything marked `@internal`, may change. The list with each name's kind
 * is kept in api/exports.txt and checked by test/api-report.test.ts
 * (`npm run api-report` rewrites it after a deliberate change).
 *
 * - The page table (arch/arm64/kvm/hyp/pgtable.c): Geometry, descriptors, MemAttr and
 *   attribute combining, the table-page pool and memcache, Stage2PageTable, the hardware walk.
 * - KVM's fault path over a modelled host: Kvm, Vcpu, AccessResult, CPU presets, kernels.
 * - Scenarios and replays: parse, run, and their output formats.
 * - Decoded views for consoles, JSON and debuggers.
 */

// ---- page table ----
export {
  KVM_PGTABLE_FIRST_LEVEL,
  KVM_PGTABLE_LAST_LEVEL,
  ARM64_MIN_PARANGE_BITS,
  KVM_PHYS_SHIFT,
  pageShiftOf,
  levelShift,
  stage2Levels,
  kvmPgdPages,
  minBlockLevel,
  Geometry,
  VTCR_T0SZ_MASK,
  VTCR_SL0_SHIFT,
  VTCR_IRGN0_SHIFT,
  VTCR_ORGN0_SHIFT,
  VTCR_SH0_SHIFT,
  VTCR_TG0_SHIFT,
  VTCR_PS_SHIFT,
  VTCR_VS,
  VTCR_HA,
  VTCR_HD,
  VTCR_RES1,
  VTCR_DS,
  VTCR_SL2,
  PARANGE_BITS,
  kvmGetVtcr,
  decodeVtcr,
} from './pgtable/geometry.js';
export type { GranuleSize, VtcrParams, VtcrFields } from './pgtable/geometry.js';
export {
  KVM_PTE_VALID,
  KVM_PTE_TYPE,
  KVM_PTE_TYPE_TABLE,
  KVM_PTE_TYPE_BLOCK,
  KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR,
  S2_MEMATTR_SHIFT,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  KVM_PTE_LEAF_ATTR_LO_S2_SH,
  KVM_PTE_LEAF_ATTR_LO_S2_SH_IS,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_FNXS,
  KVM_PTE_LEAF_ATTR_LO,
  KVM_INVALID_PTE_OWNER_MASK,
  KVM_INVALID_PTE_LOCKED,
  KVM_MAX_OWNER_ID,
  KVM_PTE_ADDR_51_48,
  KVM_PTE_ADDR_51_50_LPA2,
  KVM_PTE_ADDR_HI_MASK,
  KVM_PTE_ADDR_HI_MASK_LPA2,
  KVM_PTE_LEAF_ATTR_HI_DBM,
  KVM_PTE_LEAF_ATTR_HI_CONT,
  KVM_PTE_LEAF_ATTR_HI_S2_XN,
  KVM_PTE_LEAF_ATTR_HI_S2_XN0,
  KVM_PTE_LEAF_ATTR_HI_SW,
  KVM_PTE_LEAF_ATTR_HI_SW_SHIFT,
  KVM_PTE_LEAF_ATTR_HI,
  KVM_PGTABLE_PROT_X,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_SW1,
  KVM_PGTABLE_PROT_SW2,
  KVM_PGTABLE_PROT_SW3,
  KVM_PGTABLE_PROT_SW_MASK,
  KVM_PGTABLE_PROT_RW,
  KVM_PGTABLE_PROT_RWX,
  pteValid,
  pteIsTable,
  pteIsCounted,
  pteIsLocked,
  pteMemAttr,
  pteExecutable,
  memAttrNormal,
  pteCacheable,
  AddrLayout,
  stage2SetProtAttr,
  stage2PteProt,
  parseProt,
  formatProt,
  hex64,
  hexAddr,
  toBigInt,
} from './pgtable/descriptor.js';
export {
  EPERM,
  ENOENT,
  EAGAIN,
  ENOMEM,
  EFAULT,
  EINVAL,
  ERANGE,
  E2BIG,
  ENOSYS,
  ENOEXEC,
  errnoName,
} from './pgtable/errno.js';
export type { AttrOut, LeafBuild, LeafOut } from './pgtable/descriptor.js';
export {
  MT_S2_NORMAL,
  MT_S2_NORMAL_NC,
  MT_S2_DEVICE_nGnRE,
  MT_S2_NORMAL_NOTAGACCESS,
  MT_S2_FWB_NORMAL,
  MT_S2_FWB_NORMAL_NC,
  MT_S2_FWB_DEVICE_nGnRE,
  MT_S2_FWB_NORMAL_NOTAGACCESS,
  S2_MEMATTR_MASK,
  S2_FWB_USE_S1,
  S2_FWB_NORMAL_BIT,
  DEVICE_nGnRnE,
  DEVICE_nGnRE,
  DEVICE_nGRE,
  DEVICE_GRE,
  CACHE_NC,
  CACHE_WT,
  CACHE_WB,
  SH_NSH,
  SH_OSH,
  SH_ISH,
  MAIR_DEVICE_nGnRnE,
  MAIR_DEVICE_nGnRE,
  MAIR_DEVICE_nGRE,
  MAIR_DEVICE_GRE,
  MAIR_NORMAL_NC,
  MAIR_NORMAL_WT,
  MAIR_NORMAL_WB,
  MAIR_NORMAL_TAGGED,
  MAIR_NIBBLE_NC,
  MAIR_NIBBLE_WA,
  MAIR_NIBBLE_RA,
  MAIR_NIBBLE_ALLOC_MASK,
  MAIR_NIBBLE_POLICY_MASK,
  MAIR_NIBBLE_WB_BIT,
  MAIR_NIBBLE_WT,
  MAIR_NIBBLE_WT_RWA,
  MAIR_NIBBLE_WB_RWA,
  describeS2MemAttr,
  s2MemAttrFor,
  isS2Cacheable,
  describeMair,
  mairText,
  combineS1S2Attrs,
  combinedAttr,
  combinedSh,
} from './pgtable/memattr.js';
export type {
  CacheName,
  DeviceTypeName,
  S2MemAttrInfo,
  MairNibbleInfo,
  MairInfo,
  MairBase,
  S2MemAttrBase,
  CombineOptions,
} from './pgtable/memattr.js';
export {
  TLBI_TTL_UNKNOWN,
  newMaintenanceOp,
  NULL_EVENTS,
  CountingEvents,
  TablePool,
  KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE,
  MemCache,
} from './pgtable/pool.js';
export type { MaintenanceOp, Stage2Events } from './pgtable/pool.js';
export {
  KVM_PGTABLE_WALK_LEAF,
  KVM_PGTABLE_WALK_TABLE_PRE,
  KVM_PGTABLE_WALK_TABLE_POST,
  KVM_PGTABLE_WALK_SHARED,
  KVM_PGTABLE_WALK_HANDLE_FAULT,
  KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
  KVM_PGTABLE_WALK_SKIP_CMO,
  Walker,
} from './pgtable/walker.js';
export type { Visitor, WalkData, WalkCtx } from './pgtable/walker.js';
export {
  KVM_PGTABLE_S2_NOFWB,
  KVM_PGTABLE_S2_IDMAP,
  MAX_TLBI_RANGE_PAGES,
  LeafResult,
  Stage2PageTable,
} from './pgtable/stage2.js';
export type { Stage2Options } from './pgtable/stage2.js';
export {
  Journal,
  JournalEntry,
  JOURNAL_SITE_SET,
  JOURNAL_SITE_MAKE,
  JOURNAL_SITE_INSTALL,
  JOURNAL_SITE_UNMAP,
  JOURNAL_SITE_FREE,
  JOURNAL_SITE_HW_AF,
  JOURNAL_SITE_NAMES,
} from './pgtable/journal.js';
export type { JournalBase } from './pgtable/journal.js';
export { DOUBLE_FIELD, S2Op } from './pgtable/op.js';
export {
  ACCESS_READ,
  ACCESS_WRITE,
  ACCESS_EXEC,
  FAULT_NONE,
  FAULT_TRANSLATION,
  FAULT_ACCESS_FLAG,
  FAULT_PERMISSION,
  FAULT_EXTERNAL_ABORT,
  HwWalkResult,
  HwWalker,
} from './pgtable/hwwalk.js';
export type {
  AccessKind as HwAccessKind,
  HwFaultClass,
  HwWalkerOptions,
  Translation,
} from './pgtable/hwwalk.js';
export { auditStage2, collectLeaves } from './pgtable/audit.js';
export type { LeafInfo, AuditOptions } from './pgtable/audit.js';

// ---- KVM and the host ----
export { CPU_PRESETS, resolveCpu, kvmSupportsCacheablePfnmap } from './mmu/cpu.js';
export type { CpuFeatures, CpuPreset, CpuSpec } from './mmu/cpu.js';
export { KERNELS } from './mmu/kernel.js';
export type { KernelModel, KernelName } from './mmu/kernel.js';
export { Kvm } from './mmu/vm.js';
export { AccessStats } from './mmu/stats.js';
export type { KvmOptions, Diagnostic } from './mmu/vm.js';
export { COST_CAUSES, CostBreakdown, modelledCost, formatNs, formatBreakdown } from './mmu/cost.js';
export type { CostCause, CostParams, CostShape } from './mmu/cost.js';
export { Mm, FollowPfn } from './mmu/host/mm.js';
export type { VmaSpec, MmStats, MmOptions, HugeZeroWritePolicy } from './mmu/host/mm.js';
export { PhysMem } from './mmu/host/physmem.js';
export type { PhysRegion, PhysMemOptions, PhysStats } from './mmu/host/physmem.js';
export { MmuNotifier } from './mmu/host/notifier.js';
export type { MmuNotifierRange, MmuNotifierSubscriber, NotifierStats } from './mmu/host/notifier.js';
export { HostPageTable } from './mmu/host/hostpt.js';
export { HostOp } from './mmu/host/op.js';
export type { HvaOp, PfnOp, HvaPfnOp, PfnResult } from './mmu/host/op.js';
export { S2Fault } from './mmu/fault.js';
export type { HostLeaf } from './mmu/host/hostpt.js';
export type { HostGranule } from './mmu/host/granule.js';
export type { Vma, BackingKind, HostMappingSize, VmaSet, UffdRegistration } from './mmu/host/vma.js';
export type { HvaProt } from './mmu/memslots.js';
export {
  HOST_RULES,
  auditHostConsistency,
  explainedBy,
  formatHostViolation,
  kernelViolations,
} from './mmu/hostaudit.js';
export type { HostRule, HostViolation, KernelViolation } from './mmu/hostaudit.js';
export {
  Vcpu,
  AccessResult,
  AccessOp,
  OUT_DONE,
  OUT_MMIO,
  OUT_NISV,
  OUT_ERROR,
  OUT_IABT,
  OUT_DABT,
  OUT_SERROR,
  OUT_SIGBUS,
  OUT_LIVELOCK,
  OUTCOME_NAMES,
  LIVELOCK_FAULTS,
} from './mmu/vcpu.js';
export {
  ACC_READ,
  ACC_WRITE,
  ACC_EXEC,
  ACC_CAS,
  ACC_LD_PREIDX,
  ACC_ST_PREIDX,
  ACC_DC_ZVA,
  ACC_DC_CIVAC,
  ACC_AT,
  ACCESS_NAMES,
} from './mmu/access.js';
export type { FaultRecord } from './mmu/vcpu.js';
export { GuestStage1, Stage1Walk, S1_FAULT_NAMES } from './mmu/stage1.js';
export type { Stage1Config, Stage1Mapping, Stage1LeafAlias, Stage1TablePage } from './mmu/stage1.js';
export { S1R_NONE, S1R_LEAF, S1R_FAULT } from './mmu/vcpu.js';
export type { VcpuOptions } from './mmu/vcpu.js';
export { PageContents } from './mmu/host/contents.js';
export { memoryFailure, mmapFixed, munmapRange, uffdRegister, uffdSnapshot } from './mmu/host/events.js';
export type { MemoryFailureResult } from './mmu/host/events.js';
export type { UffdEvent } from './mmu/host/uffd.js';
export { FaultRaces, RACE_NONE, RACE_INVALIDATE, RACE_ZAP_HOST_PTE, RACE_OTHER_VCPU } from './mmu/races.js';
export {
  VM_READ,
  VM_WRITE,
  VM_EXEC,
  VM_SHARED,
  VM_MAYWRITE,
  VM_PFNMAP,
  VM_MIXEDMAP,
  VM_IO,
  VM_MTE_ALLOWED,
  VM_ALLOW_ANY_UNCACHED,
  MT_NORMAL,
  MT_NORMAL_TAGGED,
  MT_NORMAL_NC,
  MT_DEVICE_nGnRnE,
  MT_DEVICE_nGnRE,
} from './mmu/host/vma.js';
export { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from './mmu/memslots.js';
export type { Memslot as KvmMemslot, MemslotSpec } from './mmu/memslots.js';

// ---- scenarios and replays ----
export { parseScenario, parseScenarioText } from './scenario/parse.js';
export { ScenarioError, formatIssue } from './scenario/errors.js';
export type { ScenarioIssue } from './scenario/errors.js';
export { ScenarioRunner, ScenarioRunError, accessJson, countAccesses } from './scenario/run.js';
export type { RunSink, RunSummary, RunOptions, AccessExtra } from './scenario/run.js';
export type {
  Scenario,
  Step,
  StepCommon,
  ScenarioVma,
  VmaCommon as ScenarioVmaCommon,
  MemoryVma,
  HugetlbVma,
  PhysVma,
  ScenarioMemslot,
  AccessStep,
  TouchStep,
  HostUnmapStep,
  HostProtectStep,
  AgeStep,
  DirtyLogStep,
  MemslotStep,
  DeleteMemslotStep,
  HostWriteStep,
  MmapStep,
  MunmapStep,
  PoisonStep,
  CpuOptions,
  CpuProfileName,
  Granule,
  GuestConfig,
  Kernel,
  OnError,
  PhysicalRegion,
  ScenarioCpu,
  VmConfig,
  AccessKind as ScenarioAccessKind,
  AddressSpace,
  ScenarioCpuFeatures,
  DirtyLogOp,
  ScenarioGuestStage1,
  HostMapping,
  MemType,
  MmioWrites,
  PhysType,
  Prot,
  Race,
  TouchOrder,
  Userfaultfd,
  VmaFlags,
  VmaInit,
  CpuFeature as ScenarioCpuFeature,
  GuestMapping,
  GuestAp,
  GuestLeafAlias,
  GuestRangeMapping,
  UffdCopyFrom,
  UffdResolve,
} from './scenario/types.js';
export {
  parseReplay,
  runReplay,
  replayText,
  dumpTable,
  ReplayError,
  PrintingEvents,
} from './replay/replay.js';
export type { ReplayOp, ReplayOptions } from './replay/replay.js';

// ---- views ----
export {
  DescriptorView,
  WalkView,
  describeTable,
  ptdump,
  ptdumpIpaRange,
  ptdumpStage2Levels,
} from './views/index.js';
export type { DescriptorJson, DescriptorKind, WalkJson } from './views/index.js';
export type { DescriptorContext, Perms, ShareName } from './views/descriptor.js';
export type { AccessName, FaultName } from './views/walk.js';
export type { TextView } from './views/hooks.js';
export { TimeTravel } from './views/timetravel.js';
export type { DescriptorChange, DescriptorVisit } from './views/timetravel.js';
export { Provenance } from './mmu/provenance.js';
export type { ProvenanceRecord } from './mmu/provenance.js';
export { formatProvenance, provenanceLine, provenanceLines } from './views/provenance.js';
