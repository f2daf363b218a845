/**
 * Runs a scenario and keeps every output line as `--json` writes it (access lines with their
 * userfaultfd events, sigbus and mmio details; hostWrite lines; refused memslots), for the
 * host-event tests (issue 8).
 */
import { parseScenario } from '../../src/scenario/parse.js';
import { ScenarioRunner, accessJson, uffdEventJson } from '../../src/scenario/run.js';
import type { RunSummary } from '../../src/scenario/run.js';

type Json = Record<string, unknown>;

/** One output line (loosely typed: the tests read the fields they check). */
export type Line = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** What a run printed, and the runner (to look at the host afterwards). */
export interface Lines {
  runner: ScenarioRunner;
  lines: Line[];
  summary: RunSummary;
}

/** Parses and runs `s`; `before` runs after the host is built and before set-up. */
export function runLines(s: Json, before?: (r: ScenarioRunner) => void): Lines {
  const runner = new ScenarioRunner(parseScenario(s));
  const lines: Line[] = [];
  before?.(runner);
  const summary = runner.run({
    access: (step, r, extra) => lines.push(accessJson(step, r, undefined, extra)),
    hostWrite: (step, w, events) =>
      lines.push({
        step,
        hostWrite: { vma: w.vma, offset: '0x' + w.offset.toString(16), size: w.size },
        uffdEvents: events.map(uffdEventJson),
      }),
    memslotRefused: (slot, errno) => lines.push({ memslot: slot, errno }),
  });
  return { runner, lines, summary };
}

/** The faults of a line as compact strings: "translation L3 user_mem_abort 0". */
export function faultList(l: Line): string[] {
  return (l['faults'] as Line[]).map((f) => `${f['fsc']} L${f['level']} ${f['handler']} ${f['ret']}`);
}

/** The line of step `step` (the first, for a touch). */
export function stepLine(out: Lines, step: number): Line {
  const l = out.lines.find((x) => x['step'] === step);
  if (l === undefined) throw new Error(`no line for step ${step}`);
  return l;
}
