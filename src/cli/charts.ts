/**
 * The charts of the HTML report, drawn by Observable Plot on the server side: Plot builds its
 * SVG in a linkedom document (no browser, no network), and each function returns the markup
 * of one chart (a `<figure>` holding the SVG and, where there is one, its legend, with their
 * styles inline) for html.ts to place in the page.
 *
 * Every chart takes plain data (rows of the sweep, fault times of a trace), so `run`, `sweep`,
 * `trace` and a later `diff` draw the same charts from their own results.
 */

import { createRequire } from 'node:module';
import type * as PlotModule from '@observablehq/plot';
import type { parseHTML as ParseHtml } from 'linkedom';
import { COST_CAUSES } from '../mmu/cost.js';
import type { SweepResult } from './sweep-matrix.js';

/** One bar of a chart: a configuration's name and its results. */
export interface ChartRow {
  readonly label: string;
  readonly result: SweepResult;
}

/** Plot and linkedom, loaded on the first chart. */
interface ChartLibs {
  Plot: typeof PlotModule;
  parseHTML: typeof ParseHtml;
}

let libs: ChartLibs | null = null;

/**
 * Loads Plot and linkedom when a chart is first drawn (require() of their ES modules, which
 * Node supports from 20.19): they take a few hundred milliseconds to load, which every
 * `s2emu run` without `--html` would otherwise pay at start-up. Returns them.
 */
function chartLibs(): ChartLibs {
  if (libs === null) {
    const require = createRequire(import.meta.url);
    libs = {
      Plot: require('@observablehq/plot') as typeof PlotModule,
      parseHTML: (require('linkedom') as { parseHTML: typeof ParseHtml }).parseHTML,
    };
  }
  return libs;
}

/** The width of every chart, px (the page's column). */
const WIDTH = 880;

/** Room for the longest label on a horizontal bar chart's y axis, px. */
function labelMargin(rows: readonly ChartRow[]): number {
  const longest = Math.max(0, ...rows.map((r) => r.label.length));
  return Math.min(360, 16 + 6.5 * longest);
}

/** Height for `n` bars. */
function barsHeight(n: number): number {
  return 70 + 28 * Math.max(1, n);
}

/**
 * Draws one Plot chart in a fresh linkedom document and wraps it in a `<figure>` tagged
 * `data-chart="name"`. Returns the markup.
 */
function draw(name: string, caption: string, options: PlotModule.PlotOptions): string {
  const { Plot, parseHTML } = chartLibs();
  const { document } = parseHTML('<!doctype html><html><head></head><body></body></html>');
  // Plot types its `document` as the DOM's; linkedom's implements what Plot uses of it.
  const el = Plot.plot({ ...options, document: document as unknown as PlotModule.PlotOptions['document'] });
  const markup = (el as unknown as { outerHTML: string }).outerHTML;
  return `<figure class="chart" data-chart="${name}">${markup}<figcaption>${escapeHtml(caption)}</figcaption></figure>`;
}

/** Text made safe inside HTML (element content and quoted attributes). Returns it. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Modelled time per access by cause (cost.ts), one stacked horizontal bar per configuration,
 * in row order. Host-side steps are included (the summary's modelledByCause), spread over the
 * accesses. Returns the figure's markup.
 */
export function costChart(rows: readonly ChartRow[]): string {
  const { Plot } = chartLibs();
  const data: { config: string; cause: string; ns: number }[] = [];
  for (const r of rows) {
    const per = Math.max(1, r.result.accesses);
    for (const c of COST_CAUSES) {
      const ns = r.result.modelledByCause[c] ?? 0;
      if (ns > 0) data.push({ config: r.label, cause: c, ns: ns / per });
    }
  }
  const causes = COST_CAUSES.filter((c) => data.some((d) => d.cause === c));
  return draw('cost', 'Modelled time per access, by cause (ns)', {
    width: WIDTH,
    height: barsHeight(rows.length),
    marginLeft: labelMargin(rows),
    x: { label: 'ns per access', grid: true },
    y: { label: null, domain: rows.map((r) => r.label) },
    color: { legend: true, domain: causes, scheme: 'tableau10' },
    marks: [
      Plot.barX(data, {
        x: 'ns',
        y: 'config',
        fill: 'cause',
        order: causes,
        title: (d: { config: string; cause: string; ns: number }) =>
          `${d.config}\n${d.cause}: ${d.ns.toFixed(1)} ns/access`,
      }),
      Plot.ruleX([0]),
    ],
  });
}

/** Faults as chart data: one datum per (configuration, class, level). */
function faultData(rows: readonly ChartRow[]): { config: string; kind: string; faults: number }[] {
  const data: { config: string; kind: string; faults: number }[] = [];
  for (const r of rows)
    for (const [cls, levels] of Object.entries(r.result.faultsByClass))
      for (const [level, n] of Object.entries(levels))
        data.push({ config: r.label, kind: `${cls} ${level}`, faults: n });
  return data;
}

/**
 * Faults by class and level (translation L2, permission L3, ...), one stacked horizontal bar
 * per configuration. Returns the figure's markup.
 */
export function faultsChart(rows: readonly ChartRow[]): string {
  const { Plot } = chartLibs();
  const data = faultData(rows);
  const kinds = [...new Set(data.map((d) => d.kind))];
  return draw('faults', 'Stage-2 faults by class and level', {
    width: WIDTH,
    height: barsHeight(rows.length),
    marginLeft: labelMargin(rows),
    x: { label: 'faults', grid: true },
    y: { label: null, domain: rows.map((r) => r.label) },
    color: { legend: true, domain: kinds, scheme: 'set2' },
    marks: [
      Plot.barX(data, {
        x: 'faults',
        y: 'config',
        fill: 'kind',
        order: kinds,
        title: (d: { config: string; kind: string; faults: number }) =>
          `${d.config}\n${d.kind}: ${d.faults} faults`,
      }),
      Plot.ruleX([0]),
    ],
  });
}

/**
 * The leaf-size mix: the share of accesses that ended on a leaf of each size (4K, 64K, 2M,
 * 512M, 1G; `none` for an access left without a leaf: MMIO, an injected abort), one
 * bar per configuration, normalised to 100%. Returns the figure's markup.
 */
export function leafMixChart(rows: readonly ChartRow[]): string {
  const { Plot } = chartLibs();
  const data: { config: string; size: string; share: number; accesses: number }[] = [];
  const order = new Map<string, number>();
  for (const r of rows) {
    const total = Math.max(1, r.result.accesses);
    for (const [size, n] of Object.entries(r.result.leafSizes)) {
      data.push({ config: r.label, size, share: n / total, accesses: n });
      if (!order.has(size)) order.set(size, size === 'none' ? Infinity : sizeBytes(size));
    }
  }
  const sizes = [...order.keys()].sort((a, b) => order.get(a)! - order.get(b)!);
  return draw('leaves', 'Leaf-size mix: accesses by the size of the stage-2 leaf they ended on', {
    width: WIDTH,
    height: barsHeight(rows.length),
    marginLeft: labelMargin(rows),
    x: { label: 'share of accesses (%)', percent: true, domain: [0, 100], grid: true },
    y: { label: null, domain: rows.map((r) => r.label) },
    color: { legend: true, domain: sizes, scheme: 'observable10' },
    marks: [
      Plot.barX(data, {
        x: 'share',
        y: 'config',
        fill: 'size',
        order: sizes,
        title: (d: { config: string; size: string; accesses: number }) =>
          `${d.config}\n${d.size}: ${d.accesses} access${d.accesses === 1 ? '' : 'es'}`,
      }),
    ],
  });
}

/** `4K`, `2M`, `1G` as bytes (the chart's ordering of leaf sizes). */
function sizeBytes(s: string): number {
  const m = /^([0-9]+)([KMGT])$/.exec(s);
  if (m === null) return Number(s);
  return Number(m[1]) * 2 ** (10 * ('KMGT'.indexOf(m[2]!) + 1));
}

/** Options of faultRateChart. */
export interface FaultRateOptions {
  /** How many bins the trace's time span is cut into (default 60). */
  bins?: number;
  /** The caption (default: "Faults per second over the trace"). */
  caption?: string;
}

/**
 * The fault rate over time, for a trace: `times` are the faults' timestamps in seconds (any
 * origin, any order), counted into equal bins over their span and drawn as faults per second.
 * Returns the figure's markup (an empty-chart note when there are no times).
 */
export function faultRateChart(times: readonly number[], opts: FaultRateOptions = {}): string {
  const caption = opts.caption ?? 'Faults per second over the trace';
  const finite = times.filter((t) => Number.isFinite(t));
  if (finite.length === 0)
    return `<figure class="chart" data-chart="fault-rate"><p>No timed faults.</p><figcaption>${escapeHtml(caption)}</figcaption></figure>`;
  let lo = Infinity;
  let hi = -Infinity;
  for (const t of finite) {
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  const n = Math.max(1, Math.floor(opts.bins ?? 60));
  // A trace of one instant still gets a bin of some width (1 ms), so the rate is finite.
  const width = hi > lo ? (hi - lo) / n : 1e-3;
  const counts = new Array<number>(n).fill(0);
  for (const t of finite) counts[Math.min(n - 1, Math.floor((t - lo) / width))]!++;
  const { Plot } = chartLibs();
  const data = counts.map((c, i) => ({ x1: i * width, x2: (i + 1) * width, rate: c / width, faults: c }));
  return draw('fault-rate', caption, {
    width: WIDTH,
    height: 260,
    x: { label: 'seconds from the first fault' },
    y: { label: 'faults/s', grid: true },
    marks: [
      Plot.rectY(data, {
        x1: 'x1',
        x2: 'x2',
        y: 'rate',
        fill: 'steelblue',
        title: (d: { x1: number; faults: number; rate: number }) =>
          `${d.x1.toFixed(3)} s: ${d.faults} faults (${Math.round(d.rate)}/s)`,
      }),
      Plot.ruleY([0]),
    ],
  });
}
