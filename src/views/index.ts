/** Decoded, friendly views of the page table for inspect, JSON and debuggers. */

export { DescriptorView } from './descriptor.js';
export type { DescriptorContext, DescriptorJson, DescriptorKind, Perms, ShareName } from './descriptor.js';
export { WalkView, accessName, faultName } from './walk.js';
export type { AccessName, FaultName, WalkJson } from './walk.js';
export { describeTable } from './table.js';
export { ptdump, ptdumpIpaRange, ptdumpStage2Levels } from './ptdump.js';
export { DEBUG_DESCRIPTION, INSPECT_CUSTOM, hexShort, sizeUnit } from './hooks.js';
export { installDebugHooks } from './debug.js';
