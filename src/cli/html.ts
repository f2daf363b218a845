/**
 * `--html OUT.html`: one self-contained page (inline CSS, inline SVG, no script, nothing
 * fetched) with the charts of charts.ts and small tables. `renderHtmlReport()` lays out any
 * list of sections, so each command (`run`, `sweep`, and `trace` or `diff`) builds its own
 * sections from its results and shares the page.
 */

import { writeFileSync } from 'node:fs';
import { COST_CAUSES } from '../mmu/cost.js';
import type { AccessResult } from '../mmu/vcpu.js';
import type { RunSink, RunSummary } from '../scenario/run.js';
import type { ChartRow } from './charts.js';
import { costChart, escapeHtml, faultsChart, leafMixChart } from './charts.js';
import { CliInputError } from './errors.js';
import { AccessTally, judgeResult, sweepResult } from './sweep-matrix.js';
import type { SweepRow } from './sweep-matrix.js';
import { s2emuVersion } from './version.js';

/** A table of a section: a header row and rows of cells (numbers right-aligned). */
export interface HtmlTable {
  readonly head: readonly string[];
  readonly rows: readonly (readonly (string | number)[])[];
}

/** One section of the page: a heading, an optional paragraph, charts, and a table. */
export interface HtmlSection {
  readonly title: string;
  /** Plain text, escaped on output. */
  readonly text?: string;
  /** Chart markup from charts.ts (trusted: it is produced here, not read from input). */
  readonly charts?: readonly string[];
  readonly table?: HtmlTable;
}

/** The page's style: system fonts, one readable column, charts full width. */
const CSS = `
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; padding: 0 1rem; color: #222; background: #fff; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
p.meta { color: #666; margin-top: 0; }
figure.chart { margin: 1rem 0; }
figure.chart figcaption { color: #555; font-size: 0.9rem; margin-top: 0.3rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
`;

/**
 * The page: `title`, a line saying what produced it, then each section. Returns the HTML
 * text (UTF-8, no external resources: it opens the same offline).
 */
export function renderHtmlReport(title: string, sections: readonly HtmlSection[], meta?: string): string {
  const out: string[] = [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    `<p class="meta">${escapeHtml(meta ?? `s2emu ${s2emuVersion()}`)}</p>`,
  ];
  for (const s of sections) {
    out.push('<section>', `<h2>${escapeHtml(s.title)}</h2>`);
    if (s.text !== undefined) out.push(`<p>${escapeHtml(s.text)}</p>`);
    for (const c of s.charts ?? []) out.push(c);
    if (s.table !== undefined) out.push(tableHtml(s.table));
    out.push('</section>');
  }
  out.push('</body>', '</html>', '');
  return out.join('\n');
}

function tableHtml(t: HtmlTable): string {
  const head = t.head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const rows = t.rows.map(
    (r) =>
      '<tr>' +
      r
        .map((c) =>
          typeof c === 'number'
            ? `<td class="n">${c.toLocaleString('en-US')}</td>`
            : `<td>${escapeHtml(c)}</td>`,
        )
        .join('') +
      '</tr>',
  );
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

/**
 * The sections for results of one or more configurations (a sweep's rows, or a run as one
 * row): the charts of time, faults and leaf sizes for the rows that ran, and a table of every
 * row with its status. Returns the sections.
 */
export function resultSections(rows: readonly SweepRow[]): HtmlSection[] {
  const ran: ChartRow[] = rows.flatMap((r) => (r.result ? [{ label: r.label, result: r.result }] : []));
  const table: HtmlTable = {
    head: [
      'configuration',
      'status',
      'accesses',
      'faults',
      'maps',
      'relaxes',
      'TLBIs',
      'modelled ns',
      'problems',
    ],
    rows: rows.map((r) => [
      r.label,
      r.status,
      r.result?.accesses ?? '',
      r.result?.faults ?? '',
      r.result?.maps ?? '',
      r.result?.relaxes ?? '',
      r.result?.tlbi ?? '',
      r.result?.modelledNs ?? '',
      r.problems.length > 1 ? `${r.problems[0]} (and ${r.problems.length - 1} more)` : (r.problems[0] ?? ''),
    ]),
  };
  const sections: HtmlSection[] = [];
  if (ran.length > 0) {
    sections.push(
      {
        title: 'Modelled time per access',
        text: `What each access cost on the modelled hardware, by cause (${COST_CAUSES.join(', ')}), host-side steps included.`,
        charts: [costChart(ran)],
      },
      { title: 'Faults by class and level', charts: [faultsChart(ran)] },
      { title: 'Leaf-size mix', charts: [leafMixChart(ran)] },
    );
  }
  sections.push({ title: 'Configurations', table });
  return sections;
}

/** Writes the page to `file`. Throws CliInputError naming the file when it cannot. */
export function writeHtmlFile(file: string, html: string): void {
  try {
    writeFileSync(file, html);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    throw new CliInputError(`--html: cannot write ${file}${code ? ` (${code})` : ''}`);
  }
}

/**
 * What `run --html` collects beside the run's own output: the per-access tallies and the
 * refused memslots, taken from the sink the run already has (wrap() passes every call on).
 */
export class RunHtmlTap {
  private readonly tally = new AccessTally();
  private readonly refused: { slot: number; errno: string }[] = [];

  /** The sink with the tap in front of `access` and `memslotRefused`. Returns a new sink. */
  wrap(sink: RunSink): RunSink {
    return {
      ...sink,
      access: (step, r, extra) => {
        this.tally.add(r);
        sink.access?.(step, r, extra);
      },
      memslotRefused: (slot, errno, step) => {
        this.refused.push({ slot, errno });
        sink.memslotRefused?.(slot, errno, step);
      },
    };
  }

  /** Counts one access (for a driver whose sink is not a RunSink, such as `trace`). */
  add(r: AccessResult): void {
    this.tally.add(r);
  }

  /** Records a refused memslot (as wrap() does). */
  refuse(slot: number, errno: string): void {
    this.refused.push({ slot, errno });
  }

  /**
   * Writes the page of the finished run `summary` to `file`: `label` names the configuration
   * (kernel, CPU, granule), `where` the input; `title` heads the page (default `s2emu run
   * WHERE`) and `extra` sections follow the run's (a trace's fault rate over time).
   */
  write(
    file: string,
    where: string,
    label: string,
    summary: RunSummary,
    title = `s2emu run ${where}`,
    extra: readonly HtmlSection[] = [],
  ): void {
    writeHtmlFile(file, renderHtmlReport(title, [...resultSections([this.row(label, summary)]), ...extra]));
  }

  /** The finished run as one configuration row of the charts (`index` its position). */
  row(label: string, summary: RunSummary, index = 0): SweepRow {
    const result = sweepResult(summary, this.tally, this.refused);
    const { status, problems } = judgeResult(result);
    return { index, config: {}, label, status, problems, result };
  }
}
