/**
 * `s2emu run FILE [--json] [--kernel V]`: runs a scenario and prints a readable report
 * (report.ts), or one JSON line per access and a summary (docs/scenario.md).
 *
 * Exit status: 0 when the scenario ran and nothing went wrong on the host side; 1 when it
 * ran but KVM_RUN failed for an access or a diagnostic fired (a lock left held, a livelock,
 * an attribute or host-consistency mismatch), so that a CI script can rely on it
 * (`--allow-errors` keeps 0 for scenarios meant to fail); 2 for rejected input.
 */

import cliProgress from 'cli-progress';
import pc from 'picocolors';
import { KERNEL_NAMES } from '../mmu/kernel.js';
import type { KernelName } from '../mmu/kernel.js';
import {
  ScenarioRunError,
  ScenarioRunner,
  accessJson,
  countAccesses,
  uffdEventJson,
} from '../scenario/run.js';
import type { RunSink, RunSummary } from '../scenario/run.js';
import type { Scenario } from '../scenario/types.js';
import { CliInputError, parseScenarioInput, readInput } from './errors.js';
import { StepReport, formatReport, uffdText } from './report.js';
import { noteBreakStep, prepareBreak } from './break.js';
import type { BreakSpec } from './break.js';
import { RunHtmlTap } from './html.js';
import { s2emuVersion } from './version.js';

/** Options of the run command. */
export interface RunCommandOptions {
  json: boolean;
  kernel: string | undefined;
  color: boolean;
  /** The host-consistency audit after every step (default on; `--no-audit`). */
  audit?: boolean;
  /** Exit 0 even when KVM_RUN failed or a diagnostic fired (`--allow-errors`). */
  allowErrors?: boolean;
  /** No progress bar (`--quiet`). */
  quiet?: boolean;
  /** The most accesses a run may make (`--max-accesses`); default DEFAULT_MAX_ACCESSES. */
  maxAccesses?: number;
  /** `--break IPA` / `--break-step N` (break.ts): stop in user_mem_abort() under the inspector. */
  breakAt?: BreakSpec | null;
  /** Also write the charts to this file (`--html OUT.html`, html.ts). */
  html?: string | undefined;
  /** Where the output goes (default: standard output); the benchmark passes a sink. */
  write?: (text: string) => void;
}

/**
 * The most accesses a run makes unless `--max-accesses` allows more: 2^30, about a quarter of
 * an hour at the fault path's speed. A scenario past it (a touch of 1 TiB at a 1-byte
 * stride is 2^40 accesses) is refused up front rather than left to run for days.
 */
export const DEFAULT_MAX_ACCESSES = 2 ** 30;

/** A run longer than this shows a progress bar (on a terminal, without --quiet). */
const PROGRESS_AFTER_MS = 2000;

/** What produced a JSON run: recorded in its summary. */
function producer(scenario: Scenario, runner: ScenarioRunner, kernel: string): Record<string, unknown> {
  return {
    s2emu: s2emuVersion(),
    kernel,
    cpu: {
      profile: 'profile' in scenario.cpu ? scenario.cpu.profile : null,
      features: { ...runner.cpu },
    },
    granule: scenario.granule,
    paBits: scenario.paBits,
    ipaBits: scenario.vm.ipaBits,
  };
}

/** The exit status of a run that completed: 1 if the host side went wrong, unless allowed. */
export function runExitStatus(s: RunSummary, allowErrors: boolean): number {
  if (allowErrors) return 0;
  return Object.keys(s.errors).length > 0 || s.diagnostics.length > 0 ? 1 : 0;
}

/** Runs the command. Returns the exit status. */
export function runCommand(args: string[], opts: RunCommandOptions): number {
  if (args.length === 0) throw new CliInputError('run: expected one scenario FILE (or - for standard input)');
  if (args.length > 1) throw new CliInputError(`run ${args[0]} ${args[1]}: unexpected argument "${args[1]}"`);
  if (opts.kernel !== undefined && !(KERNEL_NAMES as readonly string[]).includes(opts.kernel)) {
    throw new CliInputError(
      `--kernel: expected one of ${KERNEL_NAMES.map((k) => `"${k}"`).join(', ')}, got "${opts.kernel}"`,
    );
  }
  const file = args[0]!;
  const where = file === '-' ? '<stdin>' : file;
  const write = opts.write ?? ((t: string): void => void process.stdout.write(t));
  const text = readInput(file);
  // One issue a line in the editor's format, FILE:LINE:COL: key.path: message.
  const scenario = parseScenarioInput(text, where);
  const kernel = (opts.kernel ?? scenario.kernel) as KernelName;
  const total = countAccesses(scenario);
  const max = opts.maxAccesses ?? DEFAULT_MAX_ACCESSES;
  if (total > max) {
    throw new CliInputError(
      `${where}: the scenario makes ${total.toLocaleString('en-US')} accesses, more than the limit of ` +
        `${max.toLocaleString('en-US')}; check each touch's size and stride, or allow it with --max-accesses ${total}`,
    );
  }
  // A progress bar on a terminal, for runs that last: started once a run has taken
  // PROGRESS_AFTER_MS, with the rate and the time left.
  const tty = process.stderr.isTTY === true && !(opts.quiet ?? false);
  let bar: cliProgress.SingleBar | null = null;
  const started = Date.now();
  const progress = (done: number): void => {
    if (bar === null) {
      if (Date.now() - started < PROGRESS_AFTER_MS) return;
      bar = new cliProgress.SingleBar(
        {
          format: 'running [{bar}] {percentage}% {value}/{total} accesses, {rate}/s, {eta_formatted} left',
          clearOnComplete: true,
          hideCursor: true,
          etaBuffer: 64,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, done, { rate: '-' });
    }
    const secs = (Date.now() - started) / 1000;
    bar.update(done, { rate: secs > 0 ? Math.round(done / secs).toLocaleString('en-US') : '-' });
  };
  let runner: ScenarioRunner;
  try {
    if (opts.breakAt) prepareBreak(scenario, opts.breakAt);
    runner = new ScenarioRunner(scenario, {
      kernel,
      // Every fault through user_mem_abort(), where the break is (same results either way).
      ...(opts.breakAt ? { fusedFaults: false, stepStart: noteBreakStep } : {}),
      auditHost: (opts.audit ?? true) ? 'incremental' : false,
      ...(tty ? { progress, progressEvery: 16384 } : {}),
    });
  } catch (e) {
    // What the host refuses to build from a valid file (a VMA mmap() refuses) is the input's
    // fault; anything else thrown here is a bug, reported as an internal error.
    if (e instanceof ScenarioRunError) throw new CliInputError(`${where}: ${e.message}`);
    throw e;
  }
  // `--html`: the tap sees every access and refused memslot on the way to the output's sink.
  const tap = opts.html !== undefined ? new RunHtmlTap() : null;
  const runTapped = (sink: RunSink): RunSummary => runner.run(tap ? tap.wrap(sink) : sink);
  const writeHtml = (summary: RunSummary): void => {
    const profile = 'profile' in scenario.cpu ? scenario.cpu.profile : 'custom CPU';
    tap?.write(opts.html!, where, `${kernel} ${profile} ${scenario.granule}`, summary);
  };
  const stopBar = (): void => {
    if (bar !== null) (bar as cliProgress.SingleBar).stop();
  };
  if (opts.json) {
    const lines: string[] = [];
    const flush = (): void => {
      if (lines.length) write(lines.join('\n') + '\n');
      lines.length = 0;
    };
    const summary = runTapped({
      memslotRefused: (slot, errno) => lines.push(JSON.stringify({ memslot: slot, errno })),
      dirtyLog: (step, slot, gfns) =>
        lines.push(
          JSON.stringify({ step, dirtyLog: { slot, gfns: gfns.map((g) => '0x' + g.toString(16)) } }),
        ),
      hostWrite: (step, w, events) =>
        lines.push(
          JSON.stringify({
            step,
            hostWrite: { vma: w.vma, offset: '0x' + w.offset.toString(16), size: w.size },
            uffdEvents: events.map((e) => uffdEventJson(e)),
          }),
        ),
      access: (step, r, extra) => {
        lines.push(JSON.stringify(accessJson(step, r, runner.accessCost(r).total, extra)));
        if (lines.length >= 4096) flush();
      },
    });
    stopBar();
    writeHtml(summary);
    lines.push(JSON.stringify({ summary: { ...summary, producer: producer(scenario, runner, kernel) } }));
    flush();
    return runExitStatus(summary, opts.allowErrors ?? false);
  }

  // The readable report: aggregate per step, format once at the end.
  const c = opts.color ? pc : pc.createColors(false);
  const steps = new Map<number, StepReport>();
  const notes = new Map<number, string[]>();
  const note = (step: number, line: string): void => {
    const l = notes.get(step);
    if (l) l.push(line);
    else notes.set(step, [line]);
  };
  const refused: string[] = [];
  let lastStep = -1;
  let agg: StepReport | null = null;
  const summary = runTapped({
    memslotRefused: (slot, errno, step) => {
      if (step === null) refused.push(`memslot ${slot} refused: -${errno}`);
      else note(step, `memslot ${slot} refused: -${errno}`);
    },
    dirtyLog: (step, slot, gfns) =>
      note(
        step,
        `dirty log: slot ${slot} had ${gfns.length} dirty page(s)${
          gfns.length
            ? ` (${gfns
                .slice(0, 4)
                .map((g) => '0x' + g.toString(16))
                .join(', ')}${gfns.length > 4 ? ', ...' : ''})`
            : ''
        }`,
      ),
    hostWrite: (step, _w, events) => {
      if (events.length) note(step, `userfaultfd: ${uffdText(events)}`);
    },
    access: (step, r, extra) => {
      if (step !== lastStep || agg === null) {
        agg = steps.get(step) ?? null;
        if (agg === null) steps.set(step, (agg = new StepReport()));
        lastStep = step;
      }
      agg.add(r, runner.accessCost(r), extra);
    },
  });
  stopBar();
  writeHtml(summary);
  const width = process.stdout.isTTY === true ? Math.max(60, process.stdout.columns ?? 100) : null;
  const out = formatReport(c, { scenario, runner, kernel, steps, notes, refused, summary, width });
  write(out.join('\n') + '\n');
  return runExitStatus(summary, opts.allowErrors ?? false);
}
