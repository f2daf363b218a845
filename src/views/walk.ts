/**
 * WalkView: a hardware walk result (pgtable/hwwalk.ts) decoded for people. The result object
 * is reused by its walker, so the view copies what it shows.
 *
 * Text forms:
 *
 *   read ipa 0x40000123 -> pa 0x80000123 (L3 page 0x80000000 RWX Normal-WB AF)
 *   write ipa 0x40000123: permission fault at L3, FSC 0x0f (L3 page 0x80000000 R-X Normal-WB AF)
 *   read ipa 0x10000000000: translation fault at L0, FSC 0x04 (IPA out of range)
 *
 * A successful walk under hardware AF on a leaf with AF = 0 ends with "[AF set by hardware]".
 */

import {
  ACCESS_EXEC,
  ACCESS_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_EXTERNAL_ABORT,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
} from '../pgtable/hwwalk.js';
import type { HwWalkResult } from '../pgtable/hwwalk.js';
import { DescriptorView } from './descriptor.js';
import type { DescriptorContext, DescriptorJson } from './descriptor.js';
import { TextView, hexShort, levelName } from './hooks.js';

/** Access kinds by name. */
export type AccessName = 'read' | 'write' | 'exec';
/** Fault classes by name. */
export type FaultName = 'translation' | 'access-flag' | 'permission' | 'external-abort';

/** Returns the name of an ACCESS_* value. */
export function accessName(access: number): AccessName {
  return access === ACCESS_WRITE ? 'write' : access === ACCESS_EXEC ? 'exec' : 'read';
}

/** Returns the name of a FAULT_* value, or null for FAULT_NONE. */
export function faultName(fault: number): FaultName | null {
  switch (fault) {
    case FAULT_NONE:
      return null;
    case FAULT_TRANSLATION:
      return 'translation';
    case FAULT_ACCESS_FLAG:
      return 'access-flag';
    case FAULT_PERMISSION:
      return 'permission';
    case FAULT_EXTERNAL_ABORT:
      return 'external-abort';
    default:
      throw new RangeError(`fault: unknown class ${fault}`);
  }
}

/** The JSON form of a WalkView. */
export interface WalkJson {
  ipa: string;
  access: AccessName;
  ok: boolean;
  fault: FaultName | null;
  fsc: string | null;
  level: number;
  pa: string | null;
  afWouldBeSet: boolean;
  entry: DescriptorJson | null;
  text: string;
}

/** A decoded hardware walk: the output address and leaf, or the fault and where it was taken. */
export class WalkView extends TextView {
  readonly ipa: number;
  readonly access: AccessName;
  readonly ok: boolean;
  readonly fault: FaultName | null;
  /** The ESR FSC code of the fault; null on success. */
  readonly fsc: number | null;
  /** The leaf's level, or the level the fault reports. */
  readonly level: number;
  readonly pa: number | null;
  readonly afWouldBeSet: boolean;
  /**
   * The descriptor the walk stopped at: the leaf, the invalid or reserved entry, or (for an
   * external abort) the table descriptor that points nowhere. Null for an IPA out of range.
   */
  readonly entry: DescriptorView | null;
  readonly text: string;

  constructor(r: HwWalkResult, ctx: DescriptorContext) {
    super();
    this.ipa = r.ipa;
    this.access = accessName(r.access);
    this.ok = r.fault === FAULT_NONE;
    this.fault = faultName(r.fault);
    this.fsc = this.ok ? null : r.fsc;
    this.level = r.level;
    this.pa = this.ok ? r.pa : null;
    this.afWouldBeSet = r.afWouldBeSet;
    const inRange = r.ipa >= 0 && r.ipa < ctx.geo.ipaLimit;
    const entryLevel = r.fault === FAULT_EXTERNAL_ABORT ? r.level - 1 : r.level;
    this.entry = inRange ? new DescriptorView(r.lo, r.hi, entryLevel, ctx) : null;
    const detail = this.entry === null ? 'IPA out of range' : this.entry.text;
    const head = `${this.access} ipa ${hexShort(r.ipa)}`;
    this.text = this.ok
      ? `${head} -> pa ${hexShort(r.pa)} (${detail})${r.afWouldBeSet ? ' [AF set by hardware]' : ''}`
      : `${head}: ${this.fault!} fault at ${levelName(r.level)}, FSC 0x${r.fsc.toString(16).padStart(2, '0')} (${detail})`;
  }

  /** Returns the plain-data form (addresses and FSC as hex text). */
  toJSON(): WalkJson {
    return {
      ipa: hexShort(this.ipa),
      access: this.access,
      ok: this.ok,
      fault: this.fault,
      fsc: this.fsc === null ? null : '0x' + this.fsc.toString(16).padStart(2, '0'),
      level: this.level,
      pa: this.pa === null ? null : hexShort(this.pa),
      afWouldBeSet: this.afWouldBeSet,
      entry: this.entry === null ? null : this.entry.toJSON(),
      text: this.text,
    };
  }
}
