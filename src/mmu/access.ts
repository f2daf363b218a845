/**
 * Guest access kinds: the one enumeration. A kind is a small integer (ACC_*, what the vCPU's
 * hot path compares), its name is the scenario format's `access` value (docs/scenario.md), and
 * ACCESS_NAMES, indexed by kind, is the single table both are read from: the scenario's names
 * (scenario/types.ts ACCESS_KINDS) are this table, and the name-to-kind mapping is derived from
 * it (ACCESS_KIND_BY_NAME), so the two cannot drift apart.
 *
 * The first three kinds are the hardware walk's own (pgtable/hwwalk.ts ACCESS_READ, _WRITE,
 * _EXEC: which permission the access needs); the others are instructions whose walk kind the
 * vCPU derives (a CAS walks as a read, then as a write; DC ZVA as a write).
 */

import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE } from '../pgtable/hwwalk.js';

/** A data load with a valid syndrome (LDR): walks as ACCESS_READ. */
export const ACC_READ = ACCESS_READ;
/** A data store with a valid syndrome (STR): walks as ACCESS_WRITE. */
export const ACC_WRITE = ACCESS_WRITE;
/** An instruction fetch: walks as ACCESS_EXEC. */
export const ACC_EXEC = ACCESS_EXEC;
/** An atomic read-modify-write: translation/AF faults report a read, a permission fault a write. */
export const ACC_CAS = 3;
/** A load whose data abort has no valid syndrome (ISV = 0), e.g. LDR with pre-index writeback. */
export const ACC_LD_PREIDX = 4;
/** A store whose data abort has no valid syndrome (ISV = 0), e.g. STR with pre-index writeback. */
export const ACC_ST_PREIDX = 5;
/** DC ZVA: zeroes `cpu.dczvaBytes` bytes; a write (WnR = 1). */
export const ACC_DC_ZVA = 6;
/** A cache-maintenance instruction (CM = 1, WnR = 1). */
export const ACC_DC_CIVAC = 7;
/** AT S1E1R: a stage-1 walk only (its descriptor reads are stage-2 accesses). */
export const ACC_AT = 8;

/** Access kind names, indexed by ACC_*: the scenario format's `access` values. */
export const ACCESS_NAMES = [
  'read',
  'write',
  'exec',
  'cas',
  'ld-preidx',
  'st-preidx',
  'dc-zva',
  'dc-civac',
  'at',
] as const;

/** The name of an access kind (an element of ACCESS_NAMES). */
export type AccessName = (typeof ACCESS_NAMES)[number];

/** The ACC_* kind of each name, derived from ACCESS_NAMES (the kind is the name's index). */
export const ACCESS_KIND_BY_NAME: Readonly<Record<AccessName, number>> = Object.fromEntries(
  ACCESS_NAMES.map((name, kind) => [name, kind]),
) as Record<AccessName, number>;
