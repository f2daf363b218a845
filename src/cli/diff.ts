/**
 * `s2emu diff FILE --kernel A --vs B` (or `--cpu A --vs B`, or `diff FILE1 FILE2`): runs a
 * scenario twice and shows, access by access, where the outcomes, the installed descriptors,
 * their attributes (memory type, permissions, shareability) and the modelled costs differ,
 * then a summary of the runs' totals; `--json` prints one JSON line per differing access and
 * a summary line. The accesses are paired in order (the n-th access of each run).
 *
 * Exit status, as diff(1): 0 no difference, 1 differences, 2 bad input.
 */

import { parseArgs } from 'node:util';
import { hex64, hexAddr } from '../pgtable/descriptor.js';
import { CPU_PRESETS } from '../mmu/cpu.js';
import { KERNEL_NAMES } from '../mmu/kernel.js';
import type { KernelName } from '../mmu/kernel.js';
import { ACCESS_NAMES } from '../mmu/access.js';
import { ScenarioRunError, ScenarioRunner } from '../scenario/run.js';
import type { RunSummary } from '../scenario/run.js';
import type { Scenario } from '../scenario/types.js';
import { DescriptorView } from '../views/descriptor.js';
import { CliInputError } from './errors.js';
import { RunHtmlTap, renderHtmlReport, resultSections, writeHtmlFile } from './html.js';
import type { HtmlSection } from './html.js';
import type { SweepRow } from './sweep-matrix.js';
import { loadInput } from './step.js';
import type { CommonOptions } from './app.js';

/** One access of a run, as diff compares it. */
export interface DiffAccess {
  step: number;
  access: string;
  ipa: number;
  /** The outcome, with the errno of an error. */
  outcome: string;
  faults: string;
  /** The descriptor the access ended on (raw), or null. */
  descriptor: string | null;
  /** Its decoded attributes: memory type, permissions, shareability, level and size. */
  attributes: string | null;
  /** Modelled hardware time of the access (ns, rounded). */
  costNs: number;
}

/** The fields diff compares, in output order. */
const FIELDS = ['outcome', 'faults', 'descriptor', 'attributes', 'costNs'] as const;
type Field = (typeof FIELDS)[number];

/** Runs `scenario` (kernel override optional) and records every access. */
export function diffRun(
  scenario: Scenario,
  where: string,
  kernel?: KernelName,
  tap?: RunHtmlTap,
): { accesses: DiffAccess[]; summary: RunSummary } {
  const accesses: DiffAccess[] = [];
  let summary: RunSummary;
  try {
    const runner = new ScenarioRunner(scenario, kernel ? { kernel } : {});
    const pgt = runner.kvm.pgt;
    summary = runner.run({
      access: (step, r) => {
        tap?.add(r);
        const faults: string[] = [];
        for (let i = 0; i < r.nFaults; i++) {
          const f = r.fault(i);
          faults.push(
            `${['?', 'translation', 'access-flag', 'permission'][f.fsc] ?? 'other'} L${f.level} ${f.handler} ${f.ret}`,
          );
        }
        let attributes: string | null = null;
        if (r.leafValid) {
          const v = new DescriptorView(r.leafLo, r.leafHi, r.leafLevel, pgt, r.leafIpa);
          const p = v.perms;
          attributes =
            `${v.memattr ?? v.kind} ${p ? `${p.r ? 'R' : '-'}${p.w ? 'W' : '-'}${p.x ? 'X' : '-'}` : '---'} ${v.sh ?? ''} L${r.leafLevel}`.replace(
              / +/g,
              ' ',
            );
        }
        accesses.push({
          step,
          access: ACCESS_NAMES[r.access] ?? String(r.access),
          ipa: r.ipa,
          outcome: r.errnoName ? `${r.outcomeName} ${r.errnoName}` : r.outcomeName,
          faults: faults.join('; '),
          descriptor: r.leafValid ? `${hexAddr(r.leafIpa)} ${hex64(r.leafLo, r.leafHi)}` : null,
          attributes,
          costNs: Math.round(runner.accessCost(r).total),
        });
      },
    });
  } catch (e) {
    if (e instanceof ScenarioRunError) throw new CliInputError(`diff: ${where}: ${e.message}`);
    throw e;
  }
  return { accesses, summary };
}

/** Where two runs differ. */
export interface DiffResult {
  labels: [string, string];
  /** Differing accesses: index, both sides, and the fields that differ. */
  accesses: { index: number; a: DiffAccess | null; b: DiffAccess | null; fields: Field[] }[];
  compared: number;
  /** Per field: how many accesses differ in it. */
  counts: Record<Field, number>;
  /** Summary totals that differ: name → [a, b]. */
  totals: Record<string, [unknown, unknown]>;
}

/** Compares two runs' records. Returns the differences. */
export function diffRuns(
  labels: [string, string],
  a: { accesses: DiffAccess[]; summary: RunSummary },
  b: { accesses: DiffAccess[]; summary: RunSummary },
): DiffResult {
  const counts = Object.fromEntries(FIELDS.map((f) => [f, 0])) as Record<Field, number>;
  const out: DiffResult = {
    labels,
    accesses: [],
    compared: Math.max(a.accesses.length, b.accesses.length),
    counts,
    totals: {},
  };
  for (let i = 0; i < out.compared; i++) {
    const x = a.accesses[i] ?? null;
    const y = b.accesses[i] ?? null;
    const fields = FIELDS.filter((f) => x === null || y === null || x[f] !== y[f]);
    for (const f of fields) counts[f]++;
    if (fields.length) out.accesses.push({ index: i, a: x, b: y, fields });
  }
  const keys: (keyof RunSummary)[] = [
    'accesses',
    'faults',
    'maps',
    'relaxes',
    'mkyoungs',
    'hwAfUpdates',
    'mmioExits',
    'injected',
    'tablePages',
    'dcacheBytes',
    'icacheBytes',
    'tlbi',
    'dirtyPages',
    'mtePagesCleared',
    'modelledNs',
    'outcomes',
    'errors',
  ];
  for (const k of keys) {
    const va = JSON.stringify(a.summary[k]);
    const vb = JSON.stringify(b.summary[k]);
    if (va !== vb) out.totals[k] = [a.summary[k], b.summary[k]];
  }
  const da = a.summary.diagnostics.length;
  const db = b.summary.diagnostics.length;
  if (da !== db) out.totals['diagnostics'] = [da, db];
  return out;
}

/** The differences as readable text lines. */
export function formatDiff(d: DiffResult): string[] {
  const [la, lb] = d.labels;
  const lines = [`--- ${la}`, `+++ ${lb}`];
  for (const e of d.accesses) {
    const s = e.a ?? e.b!;
    lines.push(`access ${e.index} (step ${s.step}) ${s.access} ${hexAddr(s.ipa)}:`);
    for (const f of e.fields) {
      const show = (x: DiffAccess | null): string =>
        x === null
          ? '(no such access)'
          : f === 'costNs'
            ? `${x.costNs} ns`
            : x[f] === null || x[f] === ''
              ? 'none'
              : String(x[f]);
      lines.push(`  ${f.padEnd(11)} - ${show(e.a)}`);
      lines.push(`  ${''.padEnd(11)} + ${show(e.b)}`);
    }
  }
  const c = d.counts;
  lines.push(
    `summary: ${d.compared} accesses compared, ${d.accesses.length} differ` +
      (d.accesses.length
        ? ` (${FIELDS.filter((f) => c[f] > 0)
            .map((f) => `${f} ${c[f]}`)
            .join(', ')})`
        : ''),
  );
  for (const [k, [x, y]] of Object.entries(d.totals))
    lines.push(`  ${k.padEnd(15)} ${JSON.stringify(x)} → ${JSON.stringify(y)}`);
  return lines;
}

/** The options of `diff`. */
const DIFF_OPTIONS = {
  kernel: { type: 'string' },
  cpu: { type: 'string' },
  vs: { type: 'string' },
  json: { type: 'boolean' },
  html: { type: 'string' },
} as const;

function checkKernel(what: string, k: string): KernelName {
  if (!(KERNEL_NAMES as readonly string[]).includes(k))
    throw new CliInputError(
      `diff: ${what}: expected one of ${KERNEL_NAMES.map((n) => `"${n}"`).join(', ')}, got "${k}"`,
    );
  return k as KernelName;
}

function checkCpu(what: string, c: string): string {
  if (!Object.hasOwn(CPU_PRESETS, c))
    throw new CliInputError(
      `diff: ${what}: expected a CPU profile (${Object.keys(CPU_PRESETS).join(', ')}), got "${c}"`,
    );
  return c;
}

/** `s2emu diff ...`. Returns the exit status. */
export function diffCommand(args: string[], common: CommonOptions): number {
  void common;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: DIFF_OPTIONS,
  });
  if (positionals.length === 0 || positionals.length > 2)
    throw new CliInputError('diff: expected FILE --kernel A --vs B, FILE --cpu A --vs B, or FILE1 FILE2');
  if (values.kernel !== undefined && values.cpu !== undefined)
    throw new CliInputError('diff: compare kernels (--kernel A --vs B) or CPUs (--cpu A --vs B), not both');
  const scen = (file: string): { scenario: Scenario; where: string } => {
    const inp = loadInput(file, 'diff');
    if (inp.kind !== 'scenario')
      throw new CliInputError(`diff: ${inp.where} is a replay script; diff compares scenario runs`);
    return inp;
  };
  // `--html`: each side's charts next to the other's, then the differing accesses.
  const taps = values.html !== undefined ? [new RunHtmlTap(), new RunHtmlTap()] : [];
  let labels: [string, string];
  let a: ReturnType<typeof diffRun>;
  let b: ReturnType<typeof diffRun>;
  if (positionals.length === 2) {
    if (values.vs !== undefined)
      throw new CliInputError('diff: --vs compares one FILE under two settings, not two files');
    if (values.cpu !== undefined)
      throw new CliInputError('diff: --cpu without --vs: give two FILEs or --cpu A --vs B');
    const k = values.kernel === undefined ? undefined : checkKernel('--kernel', values.kernel);
    const x = scen(positionals[0]!);
    const y = scen(positionals[1]!);
    labels = [x.where, y.where];
    a = diffRun(x.scenario, x.where, k, taps[0]);
    b = diffRun(y.scenario, y.where, k, taps[1]);
  } else {
    if (values.vs === undefined)
      throw new CliInputError('diff: one FILE needs --kernel A --vs B or --cpu A --vs B (or give two FILEs)');
    const x = scen(positionals[0]!);
    if (values.cpu !== undefined) {
      const ca = checkCpu('--cpu', values.cpu);
      const cb = checkCpu('--vs', values.vs);
      labels = [`${x.where} on cpu ${ca}`, `${x.where} on cpu ${cb}`];
      a = diffRun({ ...x.scenario, cpu: { profile: ca } } as Scenario, x.where, undefined, taps[0]);
      b = diffRun({ ...x.scenario, cpu: { profile: cb } } as Scenario, x.where, undefined, taps[1]);
    } else {
      if (values.kernel === undefined)
        throw new CliInputError('diff: --vs needs --kernel A or --cpu A to compare with');
      const ka = checkKernel('--kernel', values.kernel);
      const kb = checkKernel('--vs', values.vs);
      labels = [`${x.where} under kernel ${ka}`, `${x.where} under kernel ${kb}`];
      a = diffRun(x.scenario, x.where, ka, taps[0]);
      b = diffRun(x.scenario, x.where, kb, taps[1]);
    }
  }
  const d = diffRuns(labels, a, b);
  if (values.html !== undefined)
    writeDiffHtml(values.html, d, [
      taps[0]!.row(labels[0], a.summary, 0),
      taps[1]!.row(labels[1], b.summary, 1),
    ]);
  if (values.json) {
    const lines = d.accesses.map((e) => JSON.stringify({ index: e.index, fields: e.fields, a: e.a, b: e.b }));
    lines.push(
      JSON.stringify({
        summary: {
          labels: d.labels,
          compared: d.compared,
          differ: d.accesses.length,
          counts: d.counts,
          totals: d.totals,
        },
      }),
    );
    process.stdout.write(lines.join('\n') + '\n');
  } else process.stdout.write(formatDiff(d).join('\n') + '\n');
  return d.accesses.length > 0 || Object.keys(d.totals).length > 0 ? 1 : 0;
}

/** The `diff` entry of the CLI's command table. */
export const DIFF_COMMAND = {
  usage: 'diff FILE --kernel A --vs B | --cpu A --vs B | FILE1 FILE2 [--json] [--html OUT.html]',
  run: diffCommand,
};

/** Differing accesses the page lists (the rest are counted). */
const HTML_DIFF_ROWS = 500;

/** `diff --html`: both runs' charts side by side, then the accesses that differ. */
function writeDiffHtml(file: string, d: DiffResult, rows: [SweepRow, SweepRow]): void {
  const cell = (e: DiffAccess | null, f: Field): string => (e === null ? '(none)' : String(e[f] ?? '-'));
  const tableRows: (string | number)[][] = [];
  for (const e of d.accesses.slice(0, HTML_DIFF_ROWS)) {
    const x = e.a ?? e.b!;
    for (const f of e.fields)
      tableRows.push([e.index, x.step, x.access, hexAddr(x.ipa), f, cell(e.a, f), cell(e.b, f)]);
  }
  const more = d.accesses.length - Math.min(d.accesses.length, HTML_DIFF_ROWS);
  const counts = FIELDS.filter((f) => d.counts[f] > 0).map((f) => `${f} in ${d.counts[f]}`);
  const differences: HtmlSection = {
    title: 'Where the runs differ',
    text:
      d.accesses.length === 0
        ? `The ${d.compared} accesses agree in every compared field.`
        : `${d.accesses.length} of ${d.compared} accesses differ (${counts.join(', ')})` +
          (more > 0 ? `; the first ${HTML_DIFF_ROWS} are listed.` : '.'),
    table: { head: ['#', 'step', 'access', 'IPA', 'field', d.labels[0], d.labels[1]], rows: tableRows },
  };
  writeHtmlFile(
    file,
    renderHtmlReport(`s2emu diff: ${d.labels[0]} vs ${d.labels[1]}`, [...resultSections(rows), differences]),
  );
}
