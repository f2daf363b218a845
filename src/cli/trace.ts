/**
 * `s2emu trace FILE --host HOST.json`: replays a text trace of the KVM arm64 tracepoints
 * (`trace-cmd report`, `perf script`) through the modelled host HOST.json describes, and reports
 * how the model's faults compare with what the trace shows (docs/trace.md). `--json` prints one
 * line per replayed fault (run --json's access line plus `traceLine`) and a summary with a
 * `trace` object; `--scenario OUT.json` writes the trace as an ordinary scenario instead.
 *
 * Exit status as `run`: 0 ran, 1 ran but KVM_RUN failed or a diagnostic fired (unless
 * `--allow-errors`), 2 rejected input (a malformed trace line, a bad host file, bad options).
 * Disagreements between model and trace are the report's content, not an error.
 */

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pc from 'picocolors';
import { formatBreakdown, formatNs } from '../mmu/cost.js';
import { KERNEL_NAMES } from '../mmu/kernel.js';
import type { KernelName } from '../mmu/kernel.js';
import { OUTCOME_NAMES } from '../mmu/vcpu.js';
import { ScenarioError, formatIssue } from '../scenario/errors.js';
import { ScenarioRunError, ScenarioRunner, accessJson } from '../scenario/run.js';
import type { RunSummary } from '../scenario/run.js';
import { TraceParseError, eventName, parseTrace } from '../trace/parse.js';
import type { ParsedTrace } from '../trace/parse.js';
import { parseHostText, planTrace, replayTrace } from '../trace/replay.js';
import type { TraceHost, TracePlan, TraceSummary } from '../trace/replay.js';
import { DescriptorView } from '../views/descriptor.js';
import type { CliCommand, CommonOptions } from './app.js';
import { faultRateChart } from './charts.js';
import { CliInputError, readInput } from './errors.js';
import { RunHtmlTap } from './html.js';
import type { HtmlSection } from './html.js';
import { StepReport, retText } from './report.js';
import type { Colors } from './report.js';
import { runExitStatus } from './run.js';
import { s2emuVersion } from './version.js';

/** The options of `trace`. */
export const TRACE_OPTIONS = {
  host: { type: 'string' },
  json: { type: 'boolean' },
  scenario: { type: 'string' },
  lenient: { type: 'boolean' },
  kernel: { type: 'string' },
  'no-audit': { type: 'boolean' },
  'allow-errors': { type: 'boolean' },
  html: { type: 'string' },
} as const;

/** The `trace` entry of the CLI's COMMANDS table. */
export const TRACE_COMMAND: CliCommand = {
  usage:
    'trace FILE --host HOST.json [--json|--scenario OUT.json] [--lenient] [--kernel V] [--html OUT.html]',
  run: (args, common) => traceCommand(args, common),
};

/** Disagreements the readable report lists before "and N more". */
const REPORT_DISAGREEMENTS = 20;

/** Parses the arguments and runs the command. Returns the exit status. */
export function traceCommand(args: string[], common: CommonOptions): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: TRACE_OPTIONS,
  });
  if (positionals.length === 0)
    throw new CliInputError('trace: expected one trace FILE (or - for standard input) and --host HOST.json');
  if (positionals.length > 1)
    throw new CliInputError(
      `trace ${positionals[0]} ${positionals[1]}: unexpected argument "${positionals[1]}"`,
    );
  if (values.host === undefined)
    throw new CliInputError('trace: --host HOST.json is required (the modelled host)');
  if (values.kernel !== undefined && !(KERNEL_NAMES as readonly string[]).includes(values.kernel))
    throw new CliInputError(
      `--kernel: expected one of ${KERNEL_NAMES.map((k) => `"${k}"`).join(', ')}, got "${values.kernel}"`,
    );
  if (values.scenario !== undefined && values.json)
    throw new CliInputError('trace: --scenario writes a scenario and runs nothing; --json does not apply');
  if (values.scenario !== undefined && values.html !== undefined)
    throw new CliInputError('trace: --scenario writes a scenario and runs nothing; --html does not apply');
  const file = positionals[0]!;
  const where = file === '-' ? '<stdin>' : file;
  const hostFile = values.host;
  if (hostFile === '-' && file === '-')
    throw new CliInputError('trace: the trace and --host cannot both be standard input');

  let host: TraceHost;
  try {
    host = parseHostText(readInput(hostFile));
  } catch (e) {
    if (e instanceof ScenarioError)
      throw new CliInputError(
        `${hostFile}: host rejected:\n${e.issues.map((i) => formatIssue(i, hostFile)).join('\n')}`,
      );
    throw e;
  }
  let trace: ParsedTrace;
  try {
    trace = parseTrace(readInput(file), { lenient: values.lenient ?? false });
  } catch (e) {
    if (e instanceof TraceParseError)
      throw new CliInputError(
        `${where}:${e.line}: ${e.detail}${values.lenient ? '' : ' (--lenient skips such lines)'}`,
      );
    throw e;
  }
  let plan: TracePlan;
  try {
    plan = planTrace(trace, host);
  } catch (e) {
    if (e instanceof ScenarioError)
      throw new CliInputError(
        `${where}: the trace's steps do not fit ${hostFile}:\n${e.issues.map((i) => formatIssue(i)).join('\n')}`,
      );
    throw e;
  }
  const write = (t: string): void => void process.stdout.write(t);

  if (values.scenario !== undefined) {
    const out = values.scenario;
    try {
      writeFileSync(out, scenarioText(plan, where));
    } catch (e) {
      throw new CliInputError(`cannot write ${out} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    write(
      `wrote ${out}: ${plan.scenario.steps.length} steps (${plan.faults.length} accesses from ${plan.guestFaults} kvm_guest_fault events)` +
        `${Object.keys(plan.unused).length ? `; unused: ${unusedText(plan.unused)}` : ''}\n`,
    );
    return 0;
  }

  const kernel = (values.kernel ?? plan.scenario.kernel) as KernelName;
  let runner: ScenarioRunner;
  try {
    runner = new ScenarioRunner(plan.scenario, {
      kernel,
      auditHost: (values['no-audit'] ?? false) ? false : 'incremental',
    });
  } catch (e) {
    if (e instanceof ScenarioRunError) throw new CliInputError(`${hostFile}: ${e.message}`);
    throw e;
  }
  const allowErrors = values['allow-errors'] ?? false;
  // `--html`: the run's charts plus the trace's fault rate over its own time.
  const tap = values.html !== undefined ? new RunHtmlTap() : null;
  const writeHtml = (summary: RunSummary): void => {
    if (tap === null) return;
    const times: number[] = [];
    let first = Infinity;
    let last = -Infinity;
    for (const e of trace.events) {
      if (e.time === null || eventName(e) !== 'kvm_guest_fault') continue;
      times.push(e.time);
      if (e.time < first) first = e.time;
      if (e.time > last) last = e.time;
    }
    const rate: HtmlSection = {
      title: 'The trace over time',
      text:
        times.length > 0
          ? `${times.length} kvm_guest_fault events with timestamps, over ${(last - first).toFixed(6)} s.`
          : 'The trace has no timestamps (no trace-cmd or perf line prefix).',
      charts: [faultRateChart(times)],
    };
    const label = `${kernel} ${hostFile}`;
    tap.write(values.html!, where, label, summary, `s2emu trace ${where}`, [rate]);
  };

  if (values.json) {
    const lines: string[] = [];
    const flush = (): void => {
      if (lines.length) write(lines.join('\n') + '\n');
      lines.length = 0;
    };
    const { summary, trace: ts } = replayTrace(plan, runner, {
      memslotRefused: (slot, errno) => {
        tap?.refuse(slot, errno);
        lines.push(JSON.stringify({ memslot: slot, errno }));
      },
      access: (f, step, r, extra) => {
        tap?.add(r);
        const o = accessJson(step, r, runner.accessCost(r).total, extra);
        o['traceLine'] = f.line;
        if (f.lines.length > 1) o['traceLines'] = f.lines;
        lines.push(JSON.stringify(o));
        if (lines.length >= 4096) flush();
      },
    });
    const producer = { s2emu: s2emuVersion(), kernel, host: hostFile, trace: where };
    lines.push(JSON.stringify({ summary: { ...summary, producer, trace: ts } }));
    flush();
    writeHtml(summary);
    return runExitStatus(summary, allowErrors);
  }

  const all = new StepReport();
  const perVcpu = new Map<string, number>();
  const refused: string[] = [];
  const { summary, trace: ts } = replayTrace(plan, runner, {
    memslotRefused: (slot, errno) => {
      tap?.refuse(slot, errno);
      refused.push(`memslot ${slot} refused: -${errno}`);
    },
    access: (f, _step, r, extra) => {
      tap?.add(r);
      all.add(r, runner.accessCost(r), extra);
      perVcpu.set(f.stream, (perVcpu.get(f.stream) ?? 0) + 1);
    },
  });
  const c = common.color ? pc : pc.createColors(false);
  write(
    report(c, { where, hostFile, kernel, plan, runner, all, perVcpu, refused, ts, summary }).join('\n') +
      '\n',
  );
  writeHtml(summary);
  return runExitStatus(summary, allowErrors);
}

/** The plan as a scenario file: the host's keys as given, then one step a line. */
function scenarioText(plan: TracePlan, where: string): string {
  const { steps, description, ...host } = plan.json;
  const withDescription = {
    description:
      `Generated by s2emu trace from ${where}: ${plan.guestFaults} kvm_guest_fault events as ${plan.faults.length} accesses.` +
      (typeof description === 'string' ? ` The host: ${description}` : ''),
    ...host,
  };
  const head = JSON.stringify({ ...withDescription, steps: [] }, null, 2);
  const list = (steps as unknown[]).map((s) => `    ${JSON.stringify(s)}`).join(',\n');
  return (
    head.replace(/"steps": \[\]\n\}$/, list === '' ? '"steps": []\n}' : `"steps": [\n${list}\n  ]\n}`) + '\n'
  );
}

function unusedText(u: Record<string, number>): string {
  return Object.entries(u)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ×${n}`)
    .join(', ');
}

interface ReportInput {
  where: string;
  hostFile: string;
  kernel: string;
  plan: TracePlan;
  runner: ScenarioRunner;
  all: StepReport;
  perVcpu: Map<string, number>;
  refused: string[];
  ts: TraceSummary;
  summary: ReturnType<ScenarioRunner['run']>;
}

/** The readable report's lines. */
function report(c: Colors, x: ReportInput): string[] {
  const { ts, summary: s, all } = x;
  const out: string[] = [];
  out.push(`${c.bold('s2emu trace')} ${x.where} on ${x.hostFile} (kernel ${x.kernel})`);
  out.push(
    `  trace  ${ts.events} events, ${ts.faults} kvm_guest_fault replayed as ${ts.accesses} accesses, ${ts.vcpus} vCPU(s)` +
      (ts.skippedLines ? `, ${ts.skippedLines} malformed line(s) skipped` : ''),
  );
  out.push(`  VM     ${x.runner.kvm.describe()}`);
  for (const r of x.refused) out.push(c.yellow(`  ${r}`));
  if (Object.keys(ts.unused).length) out.push(`  unused ${unusedText(ts.unused)}`);
  for (const u of ts.unusedFaults.slice(0, 5))
    out.push(c.yellow(`    line ${u.traceLine}: not replayed: ${u.reason}`));
  if (ts.unusedFaults.length > 5) out.push(c.yellow(`    ... and ${ts.unusedFaults.length - 5} more`));
  out.push('');
  out.push(c.bold('Replayed faults'));
  if (x.perVcpu.size > 1) out.push(`  by vCPU: ${[...x.perVcpu].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const oc: string[] = [];
  all.outcomes.forEach((n, o) => oc.push(`${OUTCOME_NAMES[o]} ×${n}`));
  out.push(`  guest saw: ${oc.join(', ') || 'nothing'}`);
  for (const f of [...all.faults.values()].sort((a, b) => b.count - a.count))
    out.push(
      `  fault: ${['none', 'translation', 'access-flag', 'permission', 'external abort'][f.fsc] ?? f.fsc} L${f.level}${f.s1ptw ? ' (S1PTW)' : ''} → ${f.handler} ${retText(f.ret)} ×${f.count}`,
    );
  for (const l of [...all.leaves.values()].sort((a, b) => b.count - a.count)) {
    const text = new DescriptorView(l.lo, l.hi, l.level, x.runner.kvm.pgt, l.ipa).toString();
    out.push(`  leaf: ${text.replace(/^ipa 0x[0-9a-f]+: /, '').replace(/ 0x[0-9a-f]+ /, ' ')} ×${l.count}`);
  }
  if (all.cost.total > 0 && all.accesses > 0)
    out.push(
      `  modelled: ${formatNs(all.cost.total)} (${formatNs(all.cost.total / all.accesses)} per access): ${formatBreakdown(all.cost, 4)}`,
    );
  out.push('');
  const a = ts.agreement;
  out.push(c.bold('Model against the trace'));
  if (a.compared === 0)
    out.push('  nothing to compare: the trace shows no exit, MMIO, access-flag fault or repeated fault');
  else {
    const line = `  agreed on ${a.agreed} of ${a.compared} accesses whose outcome the trace shows`;
    out.push(a.agreed === a.compared ? c.green(line) : c.yellow(line));
    for (const d of a.disagreements.slice(0, REPORT_DISAGREEMENTS)) {
      out.push(`  line ${d.traceLine}:`);
      out.push(`    trace: ${d.trace}`);
      out.push(`    model: ${d.model}`);
    }
    if (a.disagreements.length > REPORT_DISAGREEMENTS)
      out.push(`  ... and ${a.disagreements.length - REPORT_DISAGREEMENTS} more (--json lists them all)`);
  }
  out.push('');
  out.push(c.bold('Summary'));
  out.push(
    `  accesses ${s.accesses}; faults ${s.faults}; maps ${s.maps}; relaxes ${s.relaxes}; access-flag faults ${s.mkyoungs}; MMIO exits ${s.mmioExits}; TLBI ${s.tlbi}`,
  );
  const errs = Object.entries(s.errors);
  if (errs.length) out.push(c.red(`  KVM_RUN errors: ${errs.map(([k, n]) => `-${k} ×${n}`).join(', ')}`));
  if (s.diagnostics.length) {
    out.push(c.yellow('  diagnostics:'));
    for (const d of s.diagnostics) out.push(c.yellow(`    ${d}`));
  }
  return out;
}
