/**
 * s2emu: the public API. Everything documented is re-exported from here; other modules are
 * internal and may change.
 *
 * - The page table (arch/arm64/kvm/hyp/pgtable.c): Geometry, descriptors, MemAttr and
 *   attribute combining, the table-page pool and memcache, Stage2PageTable, the hardware walk.
 * - KVM's fault path over a modelled host: Kvm, Vcpu, AccessResult, CPU presets, kernels.
 * - Scenarios and replays: parse, run, and their output formats.
 * - Decoded views for consoles, JSON and debuggers.
 */

// ---- page table ----
export * from './pgtable/geometry.js';
export * from './pgtable/descriptor.js';
export * from './pgtable/memattr.js';
export * from './pgtable/pool.js';
export {
  KVM_PGTABLE_WALK_LEAF,
  KVM_PGTABLE_WALK_TABLE_PRE,
  KVM_PGTABLE_WALK_TABLE_POST,
  KVM_PGTABLE_WALK_SHARED,
  KVM_PGTABLE_WALK_HANDLE_FAULT,
  KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
  KVM_PGTABLE_WALK_SKIP_CMO,
} from './pgtable/walker.js';
export * from './pgtable/stage2.js';
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
export type { AccessKind as HwAccessKind, HwWalkerOptions, Translation } from './pgtable/hwwalk.js';
export { auditStage2, collectLeaves } from './pgtable/audit.js';
export type { LeafInfo, AuditOptions } from './pgtable/audit.js';

// ---- KVM and the host ----
export { CPU_PRESETS, resolveCpu, kvmSupportsCacheablePfnmap } from './mmu/cpu.js';
export type { CpuFeatures, CpuPreset, CpuSpec } from './mmu/cpu.js';
export { KERNELS } from './mmu/kernel.js';
export type { KernelModel, KernelName } from './mmu/kernel.js';
export { Kvm, AccessStats } from './mmu/vm.js';
export type { KvmOptions } from './mmu/vm.js';
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
export type { FaultRecord } from './mmu/vcpu.js';
export { GuestStage1, S1_FAULT_NAMES } from './mmu/stage1.js';
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
export type { RunSink, RunSummary, RunOptions } from './scenario/run.js';
export type { Scenario, Step, Vma as ScenarioVma, Memslot as ScenarioMemslot } from './scenario/types.js';
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
