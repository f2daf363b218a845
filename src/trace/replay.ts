/**
 * A trace replayed through a modelled host (docs/trace.md): the host file (a scenario without
 * steps) plus one step per usable event makes an ordinary scenario, validated by the scenario
 * checker itself and run by ScenarioRunner; each access is compared, as it runs, with what the
 * trace shows happened next (agreement.ts).
 *
 * Which events become steps:
 * - kvm_guest_fault: the access its syndrome describes (syndrome.ts);
 * - kvm_age_hva: an `age` step over the IPAs the memslots map that host range to (clear_young);
 * - kvm_unmap_hva_range: a `hostUnmap` of the anonymous, THP, shmem or hugetlb memory in the
 *   range (the host dropped those pages; a later guest access faults them in again).
 * kvm_userspace_exit, kvm_mmio, kvm_mmio_emulate and kvm_access_fault that follow a fault are
 * what the agreement compares. Every other event, and any of these the model cannot use, is
 * counted by name in `unused`.
 *
 * The model has one vCPU: faults of every vCPU replay on it in trace order. Core code: no Node
 * imports.
 */

import { ScenarioError } from '../scenario/errors.js';
import { parseScenario, parseScenarioText } from '../scenario/parse.js';
import type { AccessExtra, RunSink, RunSummary, ScenarioRunner } from '../scenario/run.js';
import type { AccessKind, Scenario } from '../scenario/types.js';
import { GRANULE_BYTES } from '../scenario/types.js';
import type { AccessResult } from '../mmu/vcpu.js';
import { Agreement, traceAccesses } from './agreement.js';
import type { Expectation, TracedGroup } from './agreement.js';
import { eventName } from './parse.js';
import type { ParsedTrace, TraceEvent } from './parse.js';

/** The host a trace replays on: the validated scenario (no steps) and the file's JSON value. */
export interface TraceHost {
  readonly scenario: Scenario;
  readonly json: Readonly<Record<string, unknown>>;
}

/**
 * Parses a host file: a scenario without `steps` (cpu, granule, physical, vmas, memslots, and
 * optionally vm, guest, kernel, ...), checked by the scenario parser with every issue's line
 * and column. Returns the host; throws a ScenarioError.
 */
export function parseHostText(text: string): TraceHost {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let json: unknown;
  try {
    json = JSON.parse(source);
  } catch {
    parseScenarioText(source); // reports the syntax error with its position
    throw new ScenarioError([{ path: '', message: 'invalid JSON' }]);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new ScenarioError([{ path: '', message: 'expected a host object (a scenario without "steps")' }]);
  if (Object.hasOwn(json, 'steps'))
    throw new ScenarioError([
      { path: 'steps', message: 'a host file has no "steps": the trace supplies them (remove the key)' },
    ]);
  // The text with an empty `steps` added at the end of the top-level object, so that every
  // issue the checker finds keeps its line and column in the file.
  const close = source.lastIndexOf('}');
  const before = source.slice(0, close).trimEnd();
  const withSteps = `${before}${before.endsWith('{') ? '' : ','} "steps": []${source.slice(close)}`;
  const scenario = parseScenarioText(withSteps);
  return { scenario, json: json as Record<string, unknown> };
}

/** An access the replay makes for one or more kvm_guest_fault events (one instruction's faults). */
export interface ReplayedFault {
  /** The trace line of its first fault. */
  readonly line: number;
  /** The trace lines of all its faults (more than one when the instruction faulted again). */
  readonly lines: readonly number[];
  readonly stream: string;
  readonly kind: AccessKind;
  readonly address: number;
  /** What the trace shows for it. */
  readonly expectation: Expectation;
}

/** A trace turned into a scenario, with what it could not use. */
export interface TracePlan {
  /** The host with the generated steps, validated. */
  readonly scenario: Scenario;
  /** The same as a scenario file's JSON value (what `--scenario` writes). */
  readonly json: Record<string, unknown>;
  /** Step index → index into `faults`, or −1 for a step that is not a replayed access. */
  readonly stepFault: Int32Array;
  /** Step index → the trace line it came from. */
  readonly stepLine: Int32Array;
  /** The replayed accesses, in step order. */
  readonly faults: readonly ReplayedFault[];
  /** Events in the trace. */
  readonly events: number;
  /** kvm_guest_fault events in the trace (replayed or not). */
  readonly guestFaults: number;
  /** Events the model could not use, by tracepoint name. */
  readonly unused: Record<string, number>;
  /** The kvm_guest_fault events not replayed, with why. */
  readonly unusedFaults: readonly { traceLine: number; reason: string }[];
  /** The vCPUs (streams) seen, in order of first appearance. */
  readonly vcpus: readonly string[];
  /** Malformed lines skipped (--lenient). */
  readonly skipped: number;
}

/**
 * Turns a parsed trace into a scenario on `host`. Returns the plan; throws a ScenarioError when
 * the generated steps do not validate (each issue names the trace line of its step).
 */
export function planTrace(trace: ParsedTrace, host: TraceHost): TracePlan {
  const s = host.scenario;
  const page = GRANULE_BYTES[s.granule];
  const { groups, used } = traceAccesses(trace.events, s.guest !== null);
  const groupAt = new Map<number, TracedGroup>();
  for (const g of groups) groupAt.set(g.lines[0]!, g);
  const steps: Record<string, unknown>[] = [];
  const stepFault: number[] = [];
  const stepLine: number[] = [];
  const faults: ReplayedFault[] = [];
  const unused: Record<string, number> = {};
  const unusedFaults: { traceLine: number; reason: string }[] = [];
  const vcpus = new Set<string>();
  let guestFaults = 0;
  const notUsed = (e: TraceEvent): void => {
    const n = eventName(e);
    unused[n] = (unused[n] ?? 0) + 1;
  };
  const addStep = (step: Record<string, unknown>, line: number, fault: number): void => {
    steps.push(step);
    stepFault.push(fault);
    stepLine.push(line);
  };
  for (const e of trace.events) {
    // Streams of vCPU events only: a kswapd aging pages is not a vCPU.
    if (/^kvm_(guest_fault|entry|exit|userspace_exit)$/.test(e.kind)) vcpus.add(e.stream);
    switch (e.kind) {
      case 'kvm_guest_fault': {
        guestFaults++;
        // A retry's fault belongs to the access of its group's first fault.
        const g = groupAt.get(e.line);
        if (g === undefined) break;
        const a = g.access;
        if ('unusable' in a) {
          notUsed(e);
          unusedFaults.push({ traceLine: e.line, reason: a.unusable });
          break;
        }
        addStep({ access: a.kind, [a.space]: hx(a.address) }, e.line, faults.length);
        faults.push({
          line: e.line,
          lines: g.lines,
          stream: e.stream,
          kind: a.kind,
          address: a.address,
          expectation: g.expectation,
        });
        break;
      }
      case 'kvm_age_hva': {
        const ranges = hvaToIpa(s, e.start, e.end, page);
        if (ranges.length === 0) notUsed(e);
        for (const [ipa, size] of ranges) addStep({ age: { ipa: hx(ipa), size: hx(size) } }, e.line, -1);
        break;
      }
      case 'kvm_unmap_hva_range': {
        const pieces = hvaToVma(s, e.start, e.end, page);
        if (pieces.length === 0) notUsed(e);
        for (const p of pieces)
          addStep({ hostUnmap: { vma: p.vma, offset: hx(p.offset), size: hx(p.size) } }, e.line, -1);
        break;
      }
      default:
        if (!used.has(e)) notUsed(e);
    }
  }
  const json: Record<string, unknown> = { ...host.json, steps };
  let scenario: Scenario;
  try {
    scenario = parseScenario(json);
  } catch (err) {
    if (!(err instanceof ScenarioError)) throw err;
    // Name the trace line each generated step came from.
    throw new ScenarioError(
      err.issues.map((i) => {
        const m = /^steps\[(\d+)\]/.exec(i.path);
        return m === null ? i : { ...i, message: `${i.message} (from trace line ${stepLine[Number(m[1])]})` };
      }),
    );
  }
  return {
    scenario,
    json,
    stepFault: Int32Array.from(stepFault),
    stepLine: Int32Array.from(stepLine),
    faults,
    events: trace.events.length,
    guestFaults,
    unused,
    unusedFaults,
    vcpus: [...vcpus],
    skipped: trace.skipped.length,
  };
}

/** The IPA ranges, granule-aligned, that the memslots map `[start, end)` of host VA to. */
function hvaToIpa(s: Scenario, start: number, end: number, page: number): [number, number][] {
  const out: [number, number][] = [];
  for (const m of s.memslots) {
    const lo = Math.max(start, m.userspaceAddr);
    const hi = Math.min(end, m.userspaceAddr + m.size);
    if (lo >= hi) continue;
    const a = Math.floor((m.gpa + lo - m.userspaceAddr) / page) * page;
    const b = Math.ceil((m.gpa + hi - m.userspaceAddr) / page) * page;
    out.push([a, b - a]);
  }
  return out;
}

/** The pieces of memory VMAs in `[start, end)`, aligned to the VMA's page (a hugetlb VMA's huge page). */
function hvaToVma(
  s: Scenario,
  start: number,
  end: number,
  page: number,
): { vma: string; offset: number; size: number }[] {
  const out: { vma: string; offset: number; size: number }[] = [];
  for (const v of s.vmas) {
    if (v.backing === 'pfnmap' || v.backing === 'mixedmap') continue;
    const lo = Math.max(start, v.start);
    const hi = Math.min(end, v.start + v.size);
    if (lo >= hi) continue;
    const unit = v.backing === 'hugetlb' ? v.hugePage : page;
    const a = Math.floor((lo - v.start) / unit) * unit;
    const b = Math.min(v.size, Math.ceil((hi - v.start) / unit) * unit);
    out.push({ vma: v.name, offset: a, size: b - a });
  }
  return out;
}

/** What the replay reports for each access. The AccessResult is borrowed. */
export interface TraceSink extends Omit<RunSink, 'access'> {
  access?(fault: ReplayedFault, step: number, r: AccessResult, extra?: AccessExtra): void;
}

/** The `trace` object of the summary. */
export interface TraceSummary {
  events: number;
  faults: number;
  accesses: number;
  vcpus: number;
  skippedLines: number;
  unused: Record<string, number>;
  unusedFaults: { traceLine: number; reason: string }[];
  agreement: ReturnType<Agreement['toJSON']>;
}

/**
 * Runs a plan on `runner` (a ScenarioRunner built from plan.scenario), comparing every access
 * with what the trace shows. Returns the run's summary and the trace's.
 */
export function replayTrace(
  plan: TracePlan,
  runner: ScenarioRunner,
  sink: TraceSink = {},
): { summary: RunSummary; trace: TraceSummary } {
  const agreement = new Agreement();
  const { access: onAccess, ...rest } = sink;
  const summary = runner.run({
    ...rest,
    access: (step, r, extra) => {
      const i = plan.stepFault[step]!;
      if (i < 0) return;
      const f = plan.faults[i]!;
      agreement.check(f.line, f.expectation, r);
      onAccess?.(f, step, r, extra);
    },
  });
  return {
    summary,
    trace: {
      events: plan.events,
      faults: plan.guestFaults,
      accesses: plan.faults.length,
      vcpus: plan.vcpus.length,
      skippedLines: plan.skipped,
      unused: plan.unused,
      unusedFaults: [...plan.unusedFaults],
      agreement: agreement.toJSON(),
    },
  };
}

function hx(n: number): string {
  return '0x' + n.toString(16);
}
