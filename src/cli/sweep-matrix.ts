/**
 * The sweep's matrix: its axes (the scenario's top-level choices a sweep can vary), the
 * configurations they expand to, how one configuration is applied to the scenario file and
 * run, and what is kept of the run (a SweepRow).
 *
 * No Node imports: the command (sweep.ts) and its worker threads (sweep-worker.ts) share it,
 * and `run --html` uses its tally. Everything a row holds is plain data, so it crosses
 * postMessage() unchanged and a row is the same whichever thread computed it.
 */

import type { AccessResult } from '../mmu/vcpu.js';
import { ScenarioError, formatIssue } from '../scenario/errors.js';
import { parseScenario } from '../scenario/parse.js';
import { ScenarioRunError, ScenarioRunner } from '../scenario/run.js';
import type { RunSummary } from '../scenario/run.js';
import { CPU_OPTION_KEYS, CPU_PROFILES, GRANULES, KERNELS, PA_BITS } from '../scenario/types.js';
import { CliInputError } from './errors.js';

/** A JSON object of the scenario file, as JSON.parse returns it. */
type JsonObject = Record<string, unknown>;

/** One axis a sweep can vary: a top-level choice of the scenario (docs/sweep.md). */
export interface SweepAxis {
  /** The name in rows and JSON (`kernel`, `cpu`, `fwb`, `ipaBits`). */
  readonly name: string;
  /** The command-line option, without `--`. */
  readonly option: string;
  /** The values it accepts, or null for a whole number checked by the scenario's own rules. */
  readonly allowed: readonly string[] | null;
  /** Sets the value in a copy of the scenario file's object. */
  apply(raw: JsonObject, value: string): void;
}

/** The file's `cpu` object (or a fresh one when the file's is not an object: the parser says so). */
function cpuOf(raw: JsonObject): JsonObject {
  const c = raw['cpu'];
  return typeof c === 'object' && c !== null && !Array.isArray(c) ? (c as JsonObject) : {};
}

/** The file's `vm` object, likewise. */
function vmOf(raw: JsonObject): JsonObject {
  const v = raw['vm'];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : {};
}

/** An on/off axis for one host CPU feature (a `cpu` key overriding the profile). */
function featureAxis(name: string, option: string): SweepAxis {
  return {
    name,
    option,
    allowed: ['on', 'off'],
    apply(raw, v) {
      raw['cpu'] = { ...cpuOf(raw), [name]: v === 'on' };
    },
  };
}

/**
 * The axes, in matrix order: the first varies slowest, the last fastest, whatever order the
 * options were given in. `cpu` comes before the feature axes so that a feature overrides the
 * profile a row chose.
 */
export const SWEEP_AXES: readonly SweepAxis[] = [
  {
    name: 'kernel',
    option: 'kernel',
    allowed: KERNELS,
    // kernel: the user_mem_abort() to model
    apply(raw, v) {
      raw['kernel'] = v;
    },
  },
  {
    name: 'cpu',
    option: 'cpu',
    allowed: CPU_PROFILES,
    // The file's feature overrides described the file's CPU, not the swept one: only the
    // guest-visible keys (DCZID_EL0, AT's AF update) are kept.
    apply(raw, v) {
      const old = cpuOf(raw);
      const cpu: JsonObject = { profile: v };
      for (const k of CPU_OPTION_KEYS) if (k in old) cpu[k] = old[k];
      raw['cpu'] = cpu;
    },
  },
  featureAxis('fwb', 'fwb'),
  featureAxis('dic', 'dic'),
  featureAxis('idc', 'idc'),
  featureAxis('mte', 'mte'),
  featureAxis('tlbiRange', 'tlbi-range'),
  featureAxis('hafdbs', 'hafdbs'),
  featureAxis('lse', 'lse'),
  featureAxis('lpa2', 'lpa2'),
  {
    name: 'granule',
    option: 'granule',
    allowed: GRANULES,
    // granule: the host PAGE_SIZE and stage-2 granule
    apply(raw, v) {
      raw['granule'] = v;
    },
  },
  {
    name: 'paBits',
    option: 'pa-bits',
    allowed: PA_BITS.map(String),
    // paBits: the host's PARange
    apply(raw, v) {
      raw['paBits'] = Number(v);
    },
  },
  {
    name: 'ipaBits',
    option: 'ipa-bits',
    allowed: null,
    // vm.ipaBits: the VM's IPA size
    apply(raw, v) {
      raw['vm'] = { ...vmOf(raw), ipaBits: Number(v) };
    },
  },
];

/** One axis with the values a sweep gives it, in the order given. */
export interface AxisValues {
  readonly axis: SweepAxis;
  readonly values: readonly string[];
}

/** The most configurations one sweep may have: a typo like `--ipa-bits 32,...` stays bounded. */
export const MAX_CONFIGS = 4096;

/**
 * Parses the value of `--OPTION` (a comma-separated list) for `axis`: each value must be one
 * the axis allows (granules in either case), with no repeats. Returns the values; throws
 * CliInputError naming the option and what it allows.
 */
export function parseAxisValues(axis: SweepAxis, text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(',')) {
    const v = part.trim();
    if (v === '') throw new CliInputError(`--${axis.option}: empty value in "${text}"`);
    let value: string | undefined;
    if (axis.allowed === null) {
      if (/^[0-9]{1,3}$/.test(v)) value = String(Number(v));
    } else {
      value =
        axis.allowed.find((a) => a === v) ?? axis.allowed.find((a) => a.toLowerCase() === v.toLowerCase());
    }
    if (value === undefined) {
      const want =
        axis.allowed === null ? 'a whole number' : `one of ${axis.allowed.map((a) => `"${a}"`).join(', ')}`;
      throw new CliInputError(`--${axis.option}: expected ${want}, got "${v}"`);
    }
    if (out.includes(value)) throw new CliInputError(`--${axis.option}: "${value}" is given twice`);
    out.push(value);
  }
  return out;
}

/** One configuration of the matrix: its position and each swept axis's value. */
export interface SweepConfig {
  /** 0-based position in matrix order. */
  readonly index: number;
  /** Axis name → value, in axis order. */
  readonly choices: Readonly<Record<string, string>>;
}

/**
 * The configurations of `axes` (ordered as SWEEP_AXES, each axis's values as given), in
 * matrix order: the cartesian product, the last axis varying fastest. No axes give one
 * configuration, the file as written. Returns them; throws CliInputError past MAX_CONFIGS.
 */
export function expandMatrix(axes: readonly AxisValues[]): SweepConfig[] {
  const ordered = [...axes].sort((a, b) => SWEEP_AXES.indexOf(a.axis) - SWEEP_AXES.indexOf(b.axis));
  const total = ordered.reduce((n, a) => n * a.values.length, 1);
  if (total > MAX_CONFIGS)
    throw new CliInputError(`the sweep has ${total} configurations, more than the limit of ${MAX_CONFIGS}`);
  const out: SweepConfig[] = [];
  for (let i = 0; i < total; i++) {
    const choices: Record<string, string> = {};
    let rest = i;
    for (let a = ordered.length - 1; a >= 0; a--) {
      const { axis, values } = ordered[a]!;
      choices[axis.name] = values[rest % values.length]!;
      rest = Math.floor(rest / values.length);
    }
    // Insertion order is the axis order (the loop above filled it backwards).
    const inOrder: Record<string, string> = {};
    for (const { axis } of ordered) inOrder[axis.name] = choices[axis.name]!;
    out.push({ index: i, choices: inOrder });
  }
  return out;
}

/** A configuration's short name: its values joined, features as `fwb=off`. Returns the text. */
export function configLabel(choices: Readonly<Record<string, string>>): string {
  const parts: string[] = [];
  for (const [name, v] of Object.entries(choices)) {
    // Kernel, profile and granule names speak for themselves; on/off and bit counts do not.
    const axis = SWEEP_AXES.find((a) => a.name === name);
    const bare =
      axis !== undefined && axis.allowed !== null && axis.allowed[0] !== 'on' && !name.endsWith('Bits');
    parts.push(bare ? v : `${name}=${v}`);
  }
  return parts.length ? parts.join(' ') : 'as written';
}

/**
 * The scenario file's object with `config` applied, a deep copy (the file's object is shared
 * by every configuration). Returns the copy.
 */
export function applyConfig(raw: JsonObject, config: SweepConfig): JsonObject {
  const copy = structuredClone(raw);
  for (const [name, v] of Object.entries(config.choices))
    SWEEP_AXES.find((a) => a.name === name)!.apply(copy, v);
  return copy;
}

// ---------------------------------------------------------------------------------------------
// What a run is reduced to.

/** Fault status classes by FSC code (FAULT_* of src/pgtable/hwwalk.ts). */
export const FAULT_CLASSES = ['none', 'translation', 'access-flag', 'permission', 'external-abort'] as const;

/**
 * Per-access tallies a RunSummary does not keep: faults by class and level, and the size of
 * the leaf each access ended on (the leaf-size mix). Counts under numeric keys, so adding an
 * access allocates nothing once each class has been seen.
 */
export class AccessTally {
  /** fsc · 16 + (level + 2) → faults (level is −1 to 3). */
  private readonly faults = new Map<number, number>();
  /** Leaf size in bytes (0: no leaf) → accesses. */
  private readonly leaves = new Map<number, number>();

  /** Adds one access (the AccessResult is borrowed; nothing of it is kept). */
  add(r: AccessResult): void {
    for (let i = 0; i < r.nFaults; i++) {
      const f = r.fault(i);
      const k = f.fsc * 16 + (f.level + 2);
      this.faults.set(k, (this.faults.get(k) ?? 0) + 1);
    }
    const size = r.leafValid ? r.leafSize : 0;
    this.leaves.set(size, (this.leaves.get(size) ?? 0) + 1);
  }

  /** Faults as class → `L<level>` → count, classes in FSC order, levels ascending. Returns a fresh object. */
  faultsByClass(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const k of [...this.faults.keys()].sort((a, b) => a - b)) {
      const cls = FAULT_CLASSES[k >> 4] ?? `fsc-${k >> 4}`;
      (out[cls] ??= {})[`L${(k & 15) - 2}`] = this.faults.get(k)!;
    }
    return out;
  }

  /** Accesses by the size of the leaf they ended on (`4K`, `2M`, `1G`), smallest first, then `none`. Returns a fresh object. */
  leafSizes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const k of [...this.leaves.keys()].sort((a, b) => (a || Infinity) - (b || Infinity)))
      out[k === 0 ? 'none' : sizeText(k)] = this.leaves.get(k)!;
    return out;
  }
}

/** A power-of-two-ish byte count as 4K / 2M / 1G / 512M (or hex when not a whole unit). */
export function sizeText(b: number): string {
  const units: [number, string][] = [
    [2 ** 40, 'T'],
    [2 ** 30, 'G'],
    [2 ** 20, 'M'],
    [2 ** 10, 'K'],
  ];
  for (const [u, s] of units) if (b >= u && b % u === 0) return `${b / u}${s}`;
  return '0x' + b.toString(16);
}

/** What one configuration's run comes to (the numbers of the table, JSON and CSV). */
export interface SweepResult {
  accesses: number;
  outcomes: Record<string, number>;
  faults: number;
  /** Fault class → `L<level>` → faults (AccessResult's fault records, stage-1 walks included). */
  faultsByClass: Record<string, Record<string, number>>;
  maps: number;
  relaxes: number;
  mkyoungs: number;
  tlbi: number;
  dcacheBytes: number;
  icacheBytes: number;
  injected: number;
  mmioExits: number;
  tablePages: number;
  /** KVM_RUN failures by errno. */
  errors: Record<string, number>;
  diagnostics: string[];
  memslotsRefused: { slot: number; errno: string }[];
  /** Accesses by the size of the leaf they ended on. */
  leafSizes: Record<string, number>;
  modelledNs: number;
  modelledByCause: Record<string, number>;
  costModel: string;
}

/**
 * How a configuration went: `ok`; `refused` (it ran, but KVM refused a memslot); `errors`
 * (it ran, but KVM_RUN failed or a diagnostic fired); `rejected` (the scenario is not valid
 * with these choices, e.g. an address not a multiple of the granule); `failed` (the host could
 * not be built or the run stopped with an error).
 */
export type SweepStatus = 'ok' | 'refused' | 'errors' | 'rejected' | 'failed';

/** One row of the sweep. */
export interface SweepRow {
  index: number;
  config: Record<string, string>;
  label: string;
  status: SweepStatus;
  /** What went wrong, one line each (empty for `ok`). */
  problems: string[];
  /** The run's numbers; null when the configuration was rejected or failed. */
  result: SweepResult | null;
}

/** A sweep worker's state word once it has exited (the supervisor thread sets it: sweep.ts). */
export const WORKER_EXITED = 2;

/** The row of `config` with this status, problems and result. Returns a fresh object. */
export function configRow(
  config: SweepConfig,
  status: SweepStatus,
  problems: string[],
  result: SweepResult | null,
): SweepRow {
  return {
    index: config.index,
    config: { ...config.choices },
    label: configLabel(config.choices),
    status,
    problems,
    result,
  };
}

/** Options of one configuration's run. */
export interface ConfigRunOptions {
  /** The host-consistency audit (the CLI's default: `'incremental'`). */
  audit: false | 'incremental';
  /** Called now and then with the accesses done so far. */
  progress?: (done: number) => void;
}

/** The SweepResult of a finished run. Returns a fresh object. */
export function sweepResult(
  s: RunSummary,
  tally: AccessTally,
  refused: { slot: number; errno: string }[],
): SweepResult {
  return {
    accesses: s.accesses,
    outcomes: { ...s.outcomes },
    faults: s.faults,
    faultsByClass: tally.faultsByClass(),
    maps: s.maps,
    relaxes: s.relaxes,
    mkyoungs: s.mkyoungs,
    tlbi: s.tlbi,
    dcacheBytes: s.dcacheBytes,
    icacheBytes: s.icacheBytes,
    injected: s.injected,
    mmioExits: s.mmioExits,
    tablePages: s.tablePages,
    errors: { ...s.errors },
    diagnostics: [...s.diagnostics],
    memslotsRefused: refused,
    leafSizes: tally.leafSizes(),
    modelledNs: s.modelledNs,
    modelledByCause: { ...s.modelledByCause },
    costModel: s.costModel,
  };
}

/** A run's status and its problems, one line each, from its result. Returns them. */
export function judgeResult(r: SweepResult): { status: SweepStatus; problems: string[] } {
  const problems: string[] = [];
  for (const m of r.memslotsRefused) problems.push(`memslot ${m.slot} refused: -${m.errno}`);
  for (const [e, n] of Object.entries(r.errors))
    problems.push(`KVM_RUN failed with -${e} (${n} access${n === 1 ? '' : 'es'})`);
  for (const d of r.diagnostics) problems.push(d);
  const errors = Object.keys(r.errors).length > 0 || r.diagnostics.length > 0;
  return { status: errors ? 'errors' : r.memslotsRefused.length > 0 ? 'refused' : 'ok', problems };
}

/**
 * Runs one configuration: applies it to the scenario file's object, validates and runs the
 * result. What goes wrong with this configuration (a rejected scenario, a host that cannot be
 * built, a run error) becomes the row's status, never an exception, so one bad configuration
 * does not end the sweep. Returns the row.
 */
export function runConfig(raw: JsonObject, config: SweepConfig, opts: ConfigRunOptions): SweepRow {
  const row = (status: SweepStatus, problems: string[], result: SweepResult | null): SweepRow =>
    configRow(config, status, problems, result);
  let runner: ScenarioRunner;
  try {
    const scenario = parseScenario(applyConfig(raw, config));
    runner = new ScenarioRunner(scenario, {
      auditHost: opts.audit,
      ...(opts.progress ? { progress: opts.progress, progressEvery: 16384 } : {}),
    });
  } catch (e) {
    if (e instanceof ScenarioError)
      return row(
        'rejected',
        e.issues.map((i) => formatIssue(i)),
        null,
      );
    if (e instanceof ScenarioRunError) return row('failed', [e.message], null);
    return row('failed', [`internal error: ${e instanceof Error ? e.message : String(e)}`], null);
  }
  const tally = new AccessTally();
  const refused: { slot: number; errno: string }[] = [];
  let summary: RunSummary;
  try {
    summary = runner.run({
      memslotRefused: (slot, errno) => refused.push({ slot, errno }),
      access: (_step, r) => tally.add(r),
    });
  } catch (e) {
    const what =
      e instanceof ScenarioRunError
        ? e.message
        : `internal error: ${e instanceof Error ? e.message : String(e)}`;
    return row('failed', [what], null);
  }
  const result = sweepResult(summary, tally, refused);
  const { status, problems } = judgeResult(result);
  return row(status, problems, result);
}
