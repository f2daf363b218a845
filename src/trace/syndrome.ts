/**
 * From a traced stage-2 abort (ESR_EL2, FAR_EL2 and the fault IPA of kvm_guest_fault) back to
 * the guest access it describes, so that a trace replays as the same sequence of faults.
 *
 * ESR_ELx for an abort from a lower EL (Arm ARM D24.2.40, ISS encoding for an exception from a
 * data abort / instruction abort):
 *
 *   31:26 EC     0x20 instruction abort, 0x24 data abort (from a lower EL)
 *   25    IL     32-bit instruction
 *   24    ISV    data: bits 23:14 hold a valid instruction syndrome
 *   23:22 SAS    data, ISV: access size, 1 << SAS bytes
 *   21    SSE    data, ISV: sign-extended load
 *   20:16 SRT    data, ISV: the transfer register
 *   15    SF     data, ISV: 64-bit register
 *   14    AR     data, ISV: acquire/release
 *   13    VNCR   data: the fault came from a VNCR_EL2-relative access
 *   10    FnV    FAR not valid
 *   9     EA     external abort type
 *   8     CM     data: a cache-maintenance (or address-translation) instruction
 *   7     S1PTW  the fault happened on the stage-1 table walk
 *   6     WnR    data: write, not read (1 for cache maintenance)
 *   5:0   DFSC / IFSC: fault status; [1:0] the level of a translation, access-flag or permission fault
 *
 * Core code: no Node imports.
 */

import {
  ESR_ELx_CM,
  ESR_ELx_EC_DABT_LOW,
  ESR_ELx_EC_IABT_LOW,
  ESR_ELx_EC_SHIFT,
  ESR_ELx_FSC,
  ESR_ELx_IL,
  ESR_ELx_ISV,
  ESR_ELx_S1PTW,
  ESR_ELx_WNR,
  esrFaultLevel,
  faultClassName,
} from '../mmu/esr.js';
import type { AccessKind } from '../scenario/types.js';

/** ESR bit 21, SSE. */
const ESR_SSE = 1 << 21;
/** ESR bit 15, SF. */
const ESR_SF = 1 << 15;
/** ESR bit 14, AR. */
const ESR_AR = 1 << 14;
/** ESR bit 13, VNCR. */
const ESR_VNCR = 1 << 13;
/** ESR bit 10, FnV. */
const ESR_FNV = 1 << 10;
/** ESR bit 9, EA. */
const ESR_EA = 1 << 9;

/** An abort syndrome, field by field. */
export interface Syndrome {
  /** The register value, unsigned 32-bit. */
  readonly esr: number;
  readonly ec: number;
  /** EC is 0x20 (instruction abort from a lower EL). */
  readonly iabt: boolean;
  /** EC is 0x24 (data abort from a lower EL). */
  readonly dabt: boolean;
  readonly il: boolean;
  readonly isv: boolean;
  /** SAS (access size log2), SSE, SRT, SF, AR: meaningful only with ISV. */
  readonly sas: number;
  readonly sse: boolean;
  readonly srt: number;
  readonly sf: boolean;
  readonly ar: boolean;
  readonly vncr: boolean;
  readonly fnv: boolean;
  readonly ea: boolean;
  readonly cm: boolean;
  readonly s1ptw: boolean;
  readonly wnr: boolean;
  /** DFSC or IFSC. */
  readonly fsc: number;
  /** The fault class of the FSC. */
  readonly faultClass: 'translation' | 'access-flag' | 'permission' | 'other';
  /** The level of a translation, access-flag or permission fault (−1 for FSC 0x2B); null for others. */
  readonly level: number | null;
}

/** Decodes ESR_ELx (bits [31:0]) into its abort fields. Returns them. */
export function decodeSyndrome(esr: number): Syndrome {
  const e = esr >>> 0;
  const ec = e >>> ESR_ELx_EC_SHIFT;
  const iabt = ec === ESR_ELx_EC_IABT_LOW;
  const dabt = ec === ESR_ELx_EC_DABT_LOW;
  const faultClass = faultClassName(e | 0);
  return {
    esr: e,
    ec,
    iabt,
    dabt,
    il: (e & ESR_ELx_IL) !== 0,
    isv: dabt && (e & ESR_ELx_ISV) !== 0,
    sas: (e >>> 22) & 3,
    sse: (e & ESR_SSE) !== 0,
    srt: (e >>> 16) & 0x1f,
    sf: (e & ESR_SF) !== 0,
    ar: (e & ESR_AR) !== 0,
    vncr: dabt && (e & ESR_VNCR) !== 0,
    fnv: (e & ESR_FNV) !== 0,
    ea: (e & ESR_EA) !== 0,
    cm: dabt && (e & ESR_ELx_CM) !== 0,
    s1ptw: (e & ESR_ELx_S1PTW) !== 0,
    wnr: dabt && (e & ESR_ELx_WNR) !== 0,
    fsc: e & ESR_ELx_FSC,
    faultClass,
    level: faultClass === 'other' ? null : esrFaultLevel(e | 0),
  };
}

/** The access a traced abort describes, or why the model cannot replay it. */
export type TracedAccess =
  | {
      readonly kind: AccessKind;
      /** `'ipa'` without a guest stage 1, `'va'` with one. */
      readonly space: 'ipa' | 'va';
      readonly address: number;
    }
  | { readonly unusable: string };

/**
 * The guest access behind a kvm_guest_fault: the instruction (or table-walk access) the
 * syndrome describes, at the address the replay must name.
 *
 * - Without a guest stage 1 the access names the IPA: the event's `ipa` (HPFAR_EL2, a 4K page)
 *   plus FAR_EL2's offset in its 4K page, as kvm_handle_guest_abort() forms the MMIO address
 *   (arch/arm64/kvm/mmu.c). A fault on a stage-1 table walk (S1PTW) is replayed as the walker's
 *   load of the table page (a store when WnR: the walker's access-flag or dirty update); its
 *   FAR is the VA, so only the page is known.
 * - With a guest stage 1 the access names FAR_EL2 (the VA); the modelled walk finds the IPA. A
 *   fault on the walk alone replays as `exec` (an instruction abort) or `at` (a data abort: AT
 *   walks without touching the data page), or `read` when the walker was writing (WnR).
 *
 * Kinds, from the syndrome alone: an instruction abort is `exec`; a data abort with CM is
 * `dc-civac`; with ISV, `write` or `read` by WnR; without ISV, `st-preidx` or `ld-preidx`. Some
 * kinds share their syndrome and cannot be told apart (a `cas` faults as a load, or as a store on
 * its permission fault; `dc-zva` as a store without ISV); the kind chosen has exactly the
 * syndrome the trace shows. Faults other than translation, access-flag and permission (external
 * aborts, address-size, alignment, TLB conflict) are not replayed.
 *
 * Returns the access, or `{ unusable }` saying why not.
 */
export function tracedAccess(esr: number, ipa: number, far: bigint, stage1: boolean): TracedAccess {
  const s = decodeSyndrome(esr);
  if (!s.iabt && !s.dabt)
    return { unusable: `EC 0x${s.ec.toString(16)} is not an instruction or data abort from the guest` };
  if (s.faultClass === 'other')
    return {
      unusable: `FSC 0x${s.fsc.toString(16).padStart(2, '0')}: the model takes only translation, access-flag and permission faults`,
    };
  if (stage1) {
    if (s.fnv) return { unusable: 'FnV: FAR_EL2 is not valid, so the VA is unknown' };
    if (far >= 2n ** 48n)
      return {
        unusable: `VA 0x${far.toString(16)} is outside the model's guest address space (TTBR0, 48 bits)`,
      };
    // A walk fault alone: an instruction fetch, or a data access; an `at` unless the walker was
    // writing (its access-flag update), which only a load or store makes. The instruction's
    // other faults, if any, name its kind (agreement.ts).
    const walk = s.iabt ? 'exec' : s.wnr ? 'read' : 'at';
    return { kind: s.s1ptw ? walk : kindOf(s), space: 'va', address: Number(far) };
  }
  if (s.s1ptw) return { kind: s.wnr ? 'write' : 'read', space: 'ipa', address: ipa - (ipa % 4096) };
  const offset = s.fnv ? 0 : Number(far & 0xfffn);
  return { kind: kindOf(s), space: 'ipa', address: ipa - (ipa % 4096) + offset };
}

/** The access kind of a syndrome not on a table walk. */
function kindOf(s: Syndrome): AccessKind {
  if (s.iabt) return 'exec';
  if (s.cm) return 'dc-civac';
  if (s.isv) return s.wnr ? 'write' : 'read';
  return s.wnr ? 'st-preidx' : 'ld-preidx';
}

/** "data abort, ISV, 4-byte write, translation fault L3" — a syndrome in words. Returns the text. */
export function syndromeText(s: Syndrome): string {
  const parts: string[] = [
    s.iabt ? 'instruction abort' : s.dabt ? 'data abort' : `EC 0x${s.ec.toString(16)}`,
  ];
  if (s.dabt) {
    if (s.cm) parts.push('cache maintenance');
    else if (s.isv) parts.push(`${1 << s.sas}-byte ${s.wnr ? 'write' : 'read'}`);
    else parts.push(`${s.wnr ? 'write' : 'read'} without ISV`);
  }
  if (s.s1ptw) parts.push('on the stage-1 walk');
  parts.push(
    s.faultClass === 'other'
      ? `FSC 0x${s.fsc.toString(16).padStart(2, '0')}`
      : `${s.faultClass} fault L${s.level}`,
  );
  return parts.join(', ');
}
