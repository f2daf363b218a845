/**
 * Host CPU features that change what KVM's stage-2 fault path does, and
 * documented presets for real cores.
 *
 * Each feature corresponds to a kernel cpucap (or an ID register field); the
 * fault path reads them as cpus_have_final_cap() would: fixed for the life of
 * the host.
 */

import {
  COST_ALTRA,
  COST_CORTEX_A76,
  COST_GENERIC_V8,
  COST_GRACE,
  COST_KUNPENG_920,
  COST_NEOVERSE_N1,
} from './cost.js';
import type { CostParams } from './cost.js';

/**
 * The CPU features the model consults.
 *
 * - `fwb`: FEAT_S2FWB, cpucap ARM64_HAS_STAGE2_FWB (ID_AA64MMFR2_EL1.FWB). Stage 2
 *   can force write-back, so KVM skips D-cache maintenance on map.
 * - `dic`: CTR_EL0.DIC, cpucap ARM64_HAS_CACHE_DIC. No I-cache invalidation to PoU
 *   is needed for coherence; KVM maps cacheable memory executable up front.
 * - `idc`: CTR_EL0.IDC, cpucap ARM64_HAS_CACHE_IDC. No D-cache clean to PoU is
 *   needed for instruction coherence.
 * - `mte`: FEAT_MTE2 usable by the host (cpucap ARM64_MTE), so a VM may enable MTE.
 * - `tlbiRange`: FEAT_TLBIRANGE (cpucap ARM64_HAS_TLB_RANGE), range TLBI by IPA.
 * - `hafdbs`: FEAT_HAFDBS hardware access flag / dirty state (ID_AA64MMFR1_EL1.HAFDBS).
 * - `lse`: FEAT_LSE atomics (cpucap ARM64_HAS_LSE_ATOMICS).
 * - `lpa2`: FEAT_LPA2 in use by the host (kvm_lpa2_is_enabled() = system_supports_lpa2()):
 *   52-bit IPAs with 4K/16K pages, and VTCR_EL2.DS = 1 for every VM. Optional, default false.
 */
export interface CpuFeatures {
  readonly fwb: boolean;
  readonly dic: boolean;
  readonly idc: boolean;
  readonly mte: boolean;
  readonly tlbiRange: boolean;
  readonly hafdbs: boolean;
  readonly lse: boolean;
  readonly lpa2?: boolean;
}

/**
 * A named, documented set of CPU features. `source` says what each value is
 * based on, and which values are not confirmed. Presets are plain objects so
 * later fields (costs, cache geometry) can be added without breaking callers.
 */
export interface CpuPreset {
  readonly name: string;
  readonly description: string;
  readonly source: string;
  readonly features: CpuFeatures;
  /** The cost model's unit costs for this core (cost.ts; each number's source is noted there). */
  readonly cost: CostParams;
}

/**
 * The feature names every CpuFeatures gives, in a fixed order (for validation and printing):
 * the one list, which the scenario's `cpu` keys reuse (src/scenario/types.ts, CPU_FEATURES).
 * `lpa2`, optional, is not among them.
 */
export const CPU_FEATURE_NAMES = [
  'fwb',
  'dic',
  'idc',
  'mte',
  'tlbiRange',
  'hafdbs',
  'lse',
] as const satisfies readonly (keyof CpuFeatures)[];

/** Every feature off: the baseline an Armv8.0 core guarantees. */
export const NO_CPU_FEATURES: CpuFeatures = {
  fwb: false,
  dic: false,
  idc: false,
  mte: false,
  tlbiRange: false,
  hafdbs: false,
  lse: false,
};

/**
 * The built-in presets, keyed by name. Each `source` names what the values are
 * based on; anything marked UNCONFIRMED was not checked against a published
 * CTR_EL0 / ID register value or a kernel boot log.
 */
export const CPU_PRESETS: Readonly<Record<string, CpuPreset>> = {
  grace: {
    name: 'grace',
    description: 'NVIDIA Grace (Arm Neoverse V2, Armv9.0-A)',
    source:
      'FWB: FEAT_S2FWB is mandatory from Armv8.4. DIC and IDC: Grace is the platform the ' +
      'cacheable-PFNMAP series (which requires FWB && DIC) was written for, and the V2 TRM ' +
      'reports CTR_EL0.DIC = IDC = 1. MTE: the V2 core implements MTE, but Grace systems do ' +
      'not expose it (no "mte" in /proc/cpuinfo), so it is off. TLBI range (v8.4), HAFDBS and ' +
      'LSE ("atomics") are present.',
    features: { fwb: true, dic: true, idc: true, mte: false, tlbiRange: true, hafdbs: true, lse: true },
    cost: COST_GRACE,
  },
  'neoverse-n1': {
    name: 'neoverse-n1',
    description: 'Arm Neoverse N1 (Armv8.2-A), as in Ampere Altra',
    source:
      'No FWB (Armv8.2 core; FEAT_S2FWB is v8.4) and no TLBI range (v8.4). The N1 was the first ' +
      'core to report CTR_EL0.DIC = IDC = 1 (N1 TRM). Erratum 1542419 (affected revisions only) ' +
      'makes the kernel trap CTR_EL0 and hide DIC from user space; whether that also clears ' +
      'ARM64_HAS_CACHE_DIC for KVM is UNCONFIRMED, so DIC is left on. No MTE. HAFDBS and LSE present.',
    features: { fwb: false, dic: true, idc: true, mte: false, tlbiRange: false, hafdbs: true, lse: true },
    cost: COST_NEOVERSE_N1,
  },
  'ampere-altra': {
    name: 'ampere-altra',
    description: 'Ampere Altra / Altra Max (80/128 Neoverse N1 cores)',
    source: 'Same as neoverse-n1 (the Altra core is an N1; revision-dependent errata UNCONFIRMED).',
    features: { fwb: false, dic: true, idc: true, mte: false, tlbiRange: false, hafdbs: true, lse: true },
    cost: COST_ALTRA,
  },
  'kunpeng-920': {
    name: 'kunpeng-920',
    description: 'HiSilicon Kunpeng 920 (TaiShan v110, Armv8.2-A)',
    source:
      'No FWB and no TLBI range (Armv8.2 core). LSE present (v8.1 atomics are mandatory from ' +
      'v8.1). DIC, IDC and HAFDBS: UNCONFIRMED; the preset assumes DIC = IDC = 0 (the ' +
      'conservative choice: full cache maintenance) and HAFDBS present.',
    features: { fwb: false, dic: false, idc: false, mte: false, tlbiRange: false, hafdbs: true, lse: true },
    cost: COST_KUNPENG_920,
  },
  'cortex-a76': {
    name: 'cortex-a76',
    description: 'Arm Cortex-A76 (Armv8.2-A)',
    source:
      'No FWB, no TLBI range, no MTE (Armv8.2). CTR_EL0 as commonly reported for A76 ' +
      '(0x8444c004: DIC = IDC = 0) is from memory, UNCONFIRMED. HAFDBS and LSE present (A76 TRM).',
    features: { fwb: false, dic: false, idc: false, mte: false, tlbiRange: false, hafdbs: true, lse: true },
    cost: COST_CORTEX_A76,
  },
  'generic-v8': {
    name: 'generic-v8',
    description: 'A minimal Armv8.0-A core: none of the optional features',
    source: 'Architectural baseline: every feature here is optional in Armv8.0.',
    features: NO_CPU_FEATURES,
    cost: COST_GENERIC_V8,
  },
};

/**
 * The cost parameters for a CPU description: the named preset's, or generic-v8's when there
 * is no profile (or an unknown one). Feature overrides do not change the unit costs: what a
 * feature saves shows in the counters (no bytes cleaned with FWB, none invalidated with DIC).
 */
export function cpuCostParams(profile: string | undefined): CostParams {
  const preset =
    profile !== undefined && Object.prototype.hasOwnProperty.call(CPU_PRESETS, profile)
      ? CPU_PRESETS[profile]
      : undefined;
  return preset?.cost ?? COST_GENERIC_V8;
}

/** Input to resolveCpu(): an optional preset name plus per-feature overrides. */
export interface CpuSpec extends Partial<CpuFeatures> {
  readonly profile?: string;
}

/**
 * Resolves a CPU description into concrete features: start from the named
 * preset (or from no features), then apply any boolean overrides.
 *
 * Returns the features, or a string naming the problem (an unknown profile)
 * so the caller can report it with its key path.
 */
export function resolveCpu(spec: CpuSpec): CpuFeatures | string {
  let base = NO_CPU_FEATURES;
  if (spec.profile !== undefined) {
    const preset = Object.prototype.hasOwnProperty.call(CPU_PRESETS, spec.profile)
      ? CPU_PRESETS[spec.profile]
      : undefined;
    if (preset === undefined) {
      return `unknown CPU profile "${spec.profile}": expected one of ${Object.keys(CPU_PRESETS).join(', ')}`;
    }
    base = preset.features;
  }
  const out: { -readonly [K in keyof CpuFeatures]: CpuFeatures[K] } = { ...base };
  for (const name of CPU_FEATURE_NAMES) {
    const v = spec[name];
    if (v !== undefined) out[name] = v;
  }
  if (spec.lpa2 !== undefined) out.lpa2 = spec.lpa2;
  return out;
}

/** kvm_lpa2_is_enabled(): the host uses LPA2 (never with 64K pages, which have FEAT_LPA instead). */
export function kvmLpa2IsEnabled(cpu: CpuFeatures, pageSize: number): boolean {
  return (cpu.lpa2 ?? false) && pageSize !== 65536;
}

/**
 * kvm_set_ipa_limit() (arch/arm64/kvm/reset.c): the largest IPA size KVM_CREATE_VM accepts,
 * from the host's PARange. With 4K or 16K pages an IPA beyond 48 bits needs LPA2, so without
 * it the limit is capped at 48. Returns the limit in bits.
 */
export function kvmIpaLimitBits(paBits: number, pageSize: number, lpa2: boolean): number {
  return !lpa2 && pageSize !== 65536 ? Math.min(paBits, 48) : paBits;
}

/**
 * Models kvm_supports_cacheable_pfnmap() (6.17): cacheable PFNMAP/MIXEDMAP
 * memory outside the linear map can be mapped only when stage 2 needs no
 * cache maintenance, i.e. FWB and DIC. Returns true when both are present.
 */
export function kvmSupportsCacheablePfnmap(cpu: CpuFeatures): boolean {
  return cpu.fwb && cpu.dic;
}
