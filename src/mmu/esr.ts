/**
 * The syndrome of a stage-2 abort (ESR_EL2) and the predicates KVM derives from it
 * (arch/arm64/include/asm/esr.h, arch/arm64/include/asm/kvm_emulate.h).
 *
 * ESR_EL2 layout for instruction and data aborts (the bits modelled):
 *
 *   31:26 EC   (0x20 IABT_LOW, 0x24 DABT_LOW)
 *   25    IL
 *   24    ISV  (data aborts: the syndrome describes the access)
 *   8     CM   (data aborts: a cache-maintenance instruction)
 *   7     S1PTW (the fault happened on a stage-1 table walk)
 *   6     WnR  (data aborts: write, not read)
 *   5:0   FSC  (fault status; [1:0] is the level for translation/AF/permission faults)
 *
 * An ESR fits in 32 bits here; the hot path passes it as a number.
 */

import {
  FAULT_ACCESS_FLAG,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  FSC_EXTERNAL_ABORT_WALK,
} from '../pgtable/hwwalk.js';

/** EC for an instruction abort from a lower EL. */
export const ESR_ELx_EC_IABT_LOW = 0x20;
/** EC for a data abort from a lower EL. */
export const ESR_ELx_EC_DABT_LOW = 0x24;
/** EC field shift. */
export const ESR_ELx_EC_SHIFT = 26;
/** IL: 32-bit instruction. */
export const ESR_ELx_IL = 1 << 25;
/** ISV: the instruction syndrome is valid. */
export const ESR_ELx_ISV = 1 << 24;
/** CM: cache maintenance. */
export const ESR_ELx_CM = 1 << 8;
/** S1PTW: stage-1 page-table walk. */
export const ESR_ELx_S1PTW = 1 << 7;
/** WnR: write not read. */
export const ESR_ELx_WNR = 1 << 6;
/** ESR_ELx_FSC: bits [5:0]. */
export const ESR_ELx_FSC = 0x3f;
/** ESR_ELx_FSC_LEVEL: bits [1:0]. */
export const ESR_ELx_FSC_LEVEL = 0x3;

/** FSC base of a translation fault (ESR_ELx_FSC_FAULT; level in [1:0]). */
export const ESR_ELx_FSC_FAULT = 0x04;
/** FSC of a level −1 translation fault (LPA2, ESR_ELx_FSC_FAULT_L(-1)). */
export const ESR_ELx_FSC_FAULT_L_MINUS1 = 0x2b;
/** FSC base of an access-flag fault. */
export const ESR_ELx_FSC_ACCESS = 0x08;
/** FSC base of a permission fault. */
export const ESR_ELx_FSC_PERM = 0x0c;
/** FSC of a synchronous external abort (not on a walk). */
export const ESR_ELx_FSC_EXTABT = 0x10;

/** The FSC for a fault class (hwwalk's FAULT_*) at a level. Returns the 6-bit code. */
export function fscFor(fault: number, level: number): number {
  if (fault === FAULT_TRANSLATION) return level < 0 ? ESR_ELx_FSC_FAULT_L_MINUS1 : ESR_ELx_FSC_FAULT + level;
  if (fault === FAULT_ACCESS_FLAG) return ESR_ELx_FSC_ACCESS + level;
  if (fault === FAULT_PERMISSION) return ESR_ELx_FSC_PERM + level;
  return FSC_EXTERNAL_ABORT_WALK + level;
}

/** esr_fsc_is_translation_fault(). */
export function esrFscIsTranslationFault(esr: number): boolean {
  const fsc = esr & ESR_ELx_FSC;
  return (fsc & ~ESR_ELx_FSC_LEVEL) === ESR_ELx_FSC_FAULT || fsc === ESR_ELx_FSC_FAULT_L_MINUS1;
}

/** esr_fsc_is_access_flag_fault(). */
export function esrFscIsAccessFlagFault(esr: number): boolean {
  return (esr & ESR_ELx_FSC & ~ESR_ELx_FSC_LEVEL) === ESR_ELx_FSC_ACCESS;
}

/** esr_fsc_is_permission_fault(). */
export function esrFscIsPermissionFault(esr: number): boolean {
  return (esr & ESR_ELx_FSC & ~ESR_ELx_FSC_LEVEL) === ESR_ELx_FSC_PERM;
}

/** kvm_vcpu_abt_issea(): a synchronous external abort (0x10, 0x13–0x17, 0x18, 0x1B–0x1F). */
export function kvmVcpuAbtIssea(esr: number): boolean {
  const fsc = esr & ESR_ELx_FSC;
  return fsc === 0x10 || (fsc >= 0x13 && fsc <= 0x18) || (fsc >= 0x1b && fsc <= 0x1f);
}

/** The level encoded in a translation/AF/permission FSC (−1 for 0x2B). */
export function esrFaultLevel(esr: number): number {
  const fsc = esr & ESR_ELx_FSC;
  return fsc === ESR_ELx_FSC_FAULT_L_MINUS1 ? -1 : fsc & ESR_ELx_FSC_LEVEL;
}

/** kvm_vcpu_trap_is_iabt(). */
export function esrIsIabt(esr: number): boolean {
  return esr >>> ESR_ELx_EC_SHIFT === ESR_ELx_EC_IABT_LOW;
}

/** kvm_vcpu_abt_iss1tw(). */
export function esrIsS1ptw(esr: number): boolean {
  return (esr & ESR_ELx_S1PTW) !== 0;
}

/** kvm_vcpu_dabt_is_cm(). */
export function esrIsCm(esr: number): boolean {
  return !esrIsIabt(esr) && (esr & ESR_ELx_CM) !== 0;
}

/** kvm_vcpu_dabt_isvalid(). */
export function esrIsv(esr: number): boolean {
  return (esr & ESR_ELx_ISV) !== 0;
}

/**
 * kvm_is_write_fault(): on a stage-1 walk, a write only for a permission fault (so tables in
 * a read-only memslot still fault in); an instruction abort never; otherwise WnR.
 */
export function kvmIsWriteFault(esr: number): boolean {
  if (esrIsS1ptw(esr)) return esrFscIsPermissionFault(esr);
  if (esrIsIabt(esr)) return false;
  return (esr & ESR_ELx_WNR) !== 0;
}

/** kvm_vcpu_trap_is_exec_fault(): an instruction abort not on a stage-1 walk. */
export function kvmIsExecFault(esr: number): boolean {
  return esrIsIabt(esr) && !esrIsS1ptw(esr);
}

/**
 * Builds an abort syndrome. Returns the ESR value as a signed 32-bit integer (`>>> 0` gives
 * the register's unsigned value): an abort's EC puts bit 31 up, and an unsigned value there
 * would be a heap number at every call V8 does not inline; the esr* tests work on either.
 */
export function makeEsr(
  iabt: boolean,
  fsc: number,
  wnr: boolean,
  isv: boolean,
  s1ptw: boolean,
  cm: boolean,
): number {
  let esr = ((iabt ? ESR_ELx_EC_IABT_LOW : ESR_ELx_EC_DABT_LOW) << ESR_ELx_EC_SHIFT) | ESR_ELx_IL | fsc;
  if (!iabt) {
    if (isv) esr |= ESR_ELx_ISV;
    if (wnr) esr |= ESR_ELx_WNR;
    if (cm) esr |= ESR_ELx_CM;
  }
  if (s1ptw) esr |= ESR_ELx_S1PTW;
  return esr | 0;
}

/** The name of a fault class as the scenario output writes it. */
export function faultClassName(esr: number): 'translation' | 'access-flag' | 'permission' | 'other' {
  if (esrFscIsTranslationFault(esr)) return 'translation';
  if (esrFscIsAccessFlagFault(esr)) return 'access-flag';
  if (esrFscIsPermissionFault(esr)) return 'permission';
  return 'other';
}
