/**
 * The HTML report (`--html`): each chart's marks measured against the data they draw, the
 * page's self-containment and escaping, and the `run` and `sweep` plumbing. The page in a real
 * browser is test/html-browser.test.ts.
 */

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHTML } from 'linkedom';
import { describe, expect, it } from 'vitest';
import { s2emuHere } from './helpers/cli.js';
import { costChart, faultRateChart, faultsChart, leafMixChart } from '../src/cli/charts.js';
import type { ChartRow } from '../src/cli/charts.js';
import { renderHtmlReport, resultSections } from '../src/cli/html.js';
import type { SweepResult, SweepRow } from '../src/cli/sweep-matrix.js';

/** A result with only what a test sets. */
function result(over: Partial<SweepResult>): SweepResult {
  return {
    accesses: 0,
    outcomes: {},
    faults: 0,
    faultsByClass: {},
    maps: 0,
    relaxes: 0,
    mkyoungs: 0,
    tlbi: 0,
    dcacheBytes: 0,
    icacheBytes: 0,
    injected: 0,
    mmioExits: 0,
    tablePages: 0,
    errors: {},
    diagnostics: [],
    memslotsRefused: [],
    leafSizes: {},
    modelledNs: 0,
    modelledByCause: {},
    costModel: 'grace',
    ...over,
  };
}

/** The chart's document, to query. */
function dom(markup: string) {
  return parseHTML(`<!doctype html><html><body>${markup}</body></html>`).document;
}

/** The bars (rects of Plot's bar or rect mark) of a chart, in data order. */
function bars(markup: string) {
  return [...dom(markup).querySelectorAll('g[aria-label="bar"] rect, g[aria-label="rect"] rect')];
}

/** The legend's swatch labels. */
function legend(markup: string): string[] {
  return [...dom(markup).querySelectorAll('span[class$="-swatch"]')].map((s) => s.textContent.trim());
}

const num = (e: { getAttribute(a: string): string | null }, a: string): number => Number(e.getAttribute(a));

describe('the charts', () => {
  it('stacks modelled time per access by cause, one bar per configuration', () => {
    const rows: ChartRow[] = [
      { label: 'A', result: result({ accesses: 10, modelledByCause: { exit: 100, walk: 50, dcache: 0 } }) },
      { label: 'B', result: result({ accesses: 3, modelledByCause: { dcache: 300 } }) },
    ];
    const svg = costChart(rows);
    expect(svg).toMatch(/^<figure class="chart" data-chart="cost">/);
    expect(legend(svg)).toEqual(['exit', 'walk', 'dcache']); // cost.ts's order, zero causes left out
    const b = bars(svg);
    expect(b).toHaveLength(3);
    const w = b.map((r) => num(r, 'width'));
    // A: 10 ns exit + 5 ns walk per access; B: 100 ns dcache per access.
    expect(w[0]! / w[1]!).toBeCloseTo(2, 5);
    expect(w[2]! / (w[0]! + w[1]!)).toBeCloseTo(100 / 15, 3);
    // Stacked: A's walk starts where its exit ends; A and B on their own rows.
    expect(num(b[1]!, 'x')).toBeCloseTo(num(b[0]!, 'x') + w[0]!, 5);
    expect(num(b[2]!, 'y')).toBeGreaterThan(num(b[0]!, 'y'));
    expect(b.map((r) => r.querySelector('title')?.textContent)).toEqual([
      'A\nexit: 10.0 ns/access',
      'A\nwalk: 5.0 ns/access',
      'B\ndcache: 100.0 ns/access',
    ]);
  });

  it('shows faults by class and level', () => {
    const svg = faultsChart([
      {
        label: 'x',
        result: result({ faultsByClass: { translation: { L2: 6, L3: 2 }, permission: { L3: 4 } } }),
      },
    ]);
    expect(legend(svg)).toEqual(['translation L2', 'translation L3', 'permission L3']);
    const w = bars(svg).map((r) => num(r, 'width'));
    expect(w[0]! / w[1]!).toBeCloseTo(3, 5);
    expect(w[2]! / w[1]!).toBeCloseTo(2, 5);
  });

  it('normalises the leaf-size mix to each configuration, sizes in ascending order', () => {
    const svg = leafMixChart([
      { label: 'a', result: result({ accesses: 4, leafSizes: { '1G': 1, '4K': 3 } }) },
      { label: 'b', result: result({ accesses: 2, leafSizes: { none: 1, '2M': 1 } }) },
    ]);
    expect(legend(svg)).toEqual(['4K', '1G', '2M', 'none'].sort((x, y) => order(x) - order(y)));
    const w = Object.fromEntries(
      bars(svg).map((r) => [r.querySelector('title')!.textContent, num(r, 'width')]),
    );
    expect(w['a\n4K: 3 accesses']! / w['a\n1G: 1 access']!).toBeCloseTo(3, 5);
    expect(w['b\nnone: 1 access']! / w['b\n2M: 1 access']!).toBeCloseTo(1, 5);
    // Both bars span 100%.
    expect(w['a\n4K: 3 accesses']! + w['a\n1G: 1 access']!).toBeCloseTo(
      w['b\nnone: 1 access']! + w['b\n2M: 1 access']!,
      5,
    );
  });

  it('counts a trace’s fault times into bins of faults per second', () => {
    const svg = faultRateChart([0, 0, 0.5, 1, 2], { bins: 2 });
    const b = bars(svg);
    expect(b.map((r) => r.querySelector('title')?.textContent)).toEqual([
      '0.000 s: 3 faults (3/s)',
      '1.000 s: 2 faults (2/s)',
    ]);
    expect(num(b[0]!, 'height') / num(b[1]!, 'height')).toBeCloseTo(1.5, 5);
    expect(faultRateChart([])).toContain('No timed faults.');
  });
});

function order(size: string): number {
  return size === 'none' ? Infinity : { '4K': 1, '2M': 2, '1G': 3 }[size]!;
}

describe('the page', () => {
  it('is self-contained, escapes what it shows, and lists every row', () => {
    const rows: SweepRow[] = [
      {
        index: 0,
        config: { kernel: '6.17' },
        label: '6.17 <b>',
        status: 'ok',
        problems: [],
        result: result({ accesses: 2, faults: 1, modelledByCause: { exit: 10 } }),
      },
      {
        index: 1,
        config: { kernel: '6.16' },
        label: '6.16',
        status: 'rejected',
        problems: ['granule: x & y'],
        result: null,
      },
    ];
    const page = renderHtmlReport('sweep <x.json>', resultSections(rows));
    expect(page.startsWith('<!doctype html>')).toBe(true);
    expect(page).toContain('<meta charset="utf-8">');
    expect(page).toContain('<title>sweep &#60;x.json&#62;</title>');
    expect(page).not.toMatch(/<script|<link|<img|<iframe|\bsrc=|\bhref=|@import|url\(/i);
    const doc = parseHTML(page).document;
    expect([...doc.querySelectorAll('h2')].map((h) => h.textContent)).toEqual([
      'Modelled time per access',
      'Faults by class and level',
      'Leaf-size mix',
      'Configurations',
    ]);
    // The rejected row is in the table, not in the charts (it has no numbers).
    const cells = [...doc.querySelectorAll('tbody tr')].map((tr) =>
      [...tr.querySelectorAll('td')].map((td) => td.textContent),
    );
    expect(cells[0]!.slice(0, 3)).toEqual(['6.17 <b>', 'ok', '2']);
    expect(cells[1]!.slice(0, 3)).toEqual(['6.16', 'rejected', '']);
    expect(cells[1]![8]).toBe('granule: x & y');
    expect(doc.querySelectorAll('figure[data-chart="cost"] g[aria-label="bar"] rect')).toHaveLength(1);
    expect(page).not.toContain('6.17 <b>');
  });
});

describe('--html on the commands', () => {
  const dir = mkdtempSync(join(tmpdir(), 's2emu-html-'));

  it('run --html writes the run’s charts and leaves the output as it was', () => {
    const file = join(dir, 'run.html');
    const plain = s2emuHere(['run', 'examples/grace-gpu-passthrough.json', '--json']);
    const withHtml = s2emuHere(['run', 'examples/grace-gpu-passthrough.json', '--json', '--html', file]);
    expect(withHtml.status, withHtml.stderr).toBe(0);
    expect(withHtml.stdout).toBe(plain.stdout);
    const summary = JSON.parse(plain.stdout.trim().split('\n').at(-1)!) as {
      summary: { accesses: number; faults: number; modelledNs: number };
    };
    const doc = parseHTML(readFileSync(file, 'utf8')).document;
    expect(doc.querySelector('h1')?.textContent).toBe('s2emu run examples/grace-gpu-passthrough.json');
    for (const c of ['cost', 'faults', 'leaves'])
      expect(doc.querySelector(`figure[data-chart="${c}"] svg`)).not.toBeNull();
    const row = [...doc.querySelectorAll('tbody td')].map((td) => td.textContent);
    expect(row.slice(0, 4)).toEqual([
      '6.17 grace 4K',
      'ok',
      summary.summary.accesses.toLocaleString('en-US'),
      summary.summary.faults.toLocaleString('en-US'),
    ]);
    expect(row[7]).toBe(summary.summary.modelledNs.toLocaleString('en-US'));
  });

  it('sweep --html writes one bar per configuration', () => {
    const file = join(dir, 'sweep.html');
    const r = s2emuHere([
      'sweep',
      'examples/grace-gpu-passthrough.json',
      '--cpu',
      'grace,ampere-altra',
      '--html',
      file,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const doc = parseHTML(readFileSync(file, 'utf8')).document;
    const labels = [
      ...doc.querySelectorAll('figure[data-chart="leaves"] g[aria-label="y-axis tick label"] text'),
    ].map((t) => t.textContent);
    expect(labels).toEqual(['grace', 'ampere-altra']);
  });

  it('names a file it cannot write, and is refused where it does not apply', () => {
    const bad = s2emuHere(['run', 'examples/vfio-bar.json', '--html', join(dir, 'no/such/dir.html')]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe(`s2emu: --html: cannot write ${join(dir, 'no/such/dir.html')} (ENOENT)\n`);
    const replay = s2emuHere(['replay', 'test/vectors/901.ops', '--html', join(dir, 'r.html')]);
    expect(replay.status).toBe(2);
    expect(replay.stderr).toBe('s2emu: replay: --html applies to run only\n');
  });
});
