/**
 * s2emu: the public API. Everything documented is re-exported from here; other modules are
 * internal and may change.
 */

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
export {
  parseReplay,
  runReplay,
  replayText,
  dumpTable,
  ReplayError,
  PrintingEvents,
} from './replay/replay.js';
export type { ReplayOp, ReplayOptions } from './replay/replay.js';
