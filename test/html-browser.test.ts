/**
 * The HTML report in a real browser: headless Chromium (Debian's `chromium` package, driven by
 * puppeteer-core; no browser is ever downloaded) opens the page of a sweep of the GPU
 * passthrough example over three kernels and two CPUs from a file, with every network request
 * refused, and the test checks that the charts are laid out, carry the expected marks and
 * legends, that nothing was fetched and that the page logged no error. It takes a screenshot:
 * in the system's temporary directory always, and as docs/img/sweep-chart.png (the one
 * docs/sweep.md shows) when that file is missing or S2EMU_UPDATE_SCREENSHOT=1.
 *
 * Without Chromium the check is skipped and says so; under CI=true (where .ci/run installs it)
 * its absence is a failure.
 */

import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { describe, expect, it } from 'vitest';
import { faultRateChart } from '../src/cli/charts.js';
import { renderHtmlReport, resultSections } from '../src/cli/html.js';
import { SWEEP_AXES, expandMatrix, runConfig } from '../src/cli/sweep-matrix.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What the code run in the page (page.evaluate) uses of the DOM: the project compiles without
 * the DOM library, so the browser's `document` is declared here, for this file only.
 */
interface PageElement {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
  getBoundingClientRect(): { width: number; height: number };
  textContent: string | null;
}
declare const document: PageElement & { scripts: { length: number } };

/** Debian's Chromium, or the one CHROMIUM_PATH names; null when there is none. */
function findChromium(): string | null {
  const candidates = [process.env['CHROMIUM_PATH'], '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((p): p is string => p !== undefined && p !== '' && existsSync(p)) ?? null;
}

const chromium = findChromium();
const ci = process.env['CI'] === 'true';
const SKIPPED = 'skipped the browser check: Chromium is not installed (apt-get install chromium)';
if (chromium === null && !ci) process.stderr.write(`test/html-browser.test.ts: ${SKIPPED}\n`);

/** The page docs/sweep.md shows: kernels 6.16, seed, 6.17 by CPUs grace and kunpeng-920. */
function sweepPage(): { html: string; labels: string[] } {
  const raw = JSON.parse(readFileSync(join(root, 'examples/grace-gpu-passthrough.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const axis = (n: string) => SWEEP_AXES.find((a) => a.name === n)!;
  const configs = expandMatrix([
    { axis: axis('kernel'), values: ['6.16', 'seed', '6.17'] },
    { axis: axis('cpu'), values: ['grace', 'kunpeng-920'] },
  ]);
  const rows = configs.map((c) => runConfig(raw, c, { audit: 'incremental' }));
  return {
    html: renderHtmlReport(
      's2emu sweep examples/grace-gpu-passthrough.json',
      resultSections(rows),
      's2emu: 6 configurations over kernel 6.16, seed, 6.17; cpu grace, kunpeng-920',
    ),
    labels: rows.map((r) => r.label),
  };
}

describe('the HTML report in headless Chromium', () => {
  // Listed as skipped, by name, only when the check cannot run.
  if (chromium === null && !ci) it.skip(SKIPPED, () => {});

  it.runIf(chromium !== null || ci)('renders every chart, fetches nothing and logs no error', async () => {
    if (chromium === null)
      throw new Error('CI=true but Chromium is not installed: .ci/run installs Debian\'s "chromium" package');
    const { html, labels } = sweepPage();
    const dir = mkdtempSync(join(tmpdir(), 's2emu-browser-'));
    const file = join(dir, 'sweep.html');
    writeFileSync(file, html);
    const pageUrl = pathToFileURL(file).href;

    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      // As root (CI) Chromium's sandbox cannot start; the page is our own file.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      const fetched: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warn') problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
      await page.setRequestInterception(true);
      page.on('request', (req) => {
        if (req.url() === pageUrl) void req.continue();
        else {
          fetched.push(req.url());
          void req.abort();
        }
      });
      await page.setViewport({ width: 1000, height: 800 });
      await page.goto(pageUrl, { waitUntil: 'load' });

      const seen = await page.evaluate(() => {
        const chart = (name: string) => {
          const fig = document.querySelector(`figure[data-chart="${name}"]`);
          const svg = fig?.querySelector('svg:not(span svg)');
          const box = svg?.getBoundingClientRect();
          const marks = [
            ...(fig?.querySelectorAll('g[aria-label="bar"] rect, g[aria-label="rect"] rect') ?? []),
          ];
          return {
            svgs: fig?.querySelectorAll('svg').length ?? 0,
            width: box?.width ?? 0,
            height: box?.height ?? 0,
            marks: marks.length,
            // Marks the browser actually laid out with an area.
            drawn: marks.filter((m) => {
              const b = m.getBoundingClientRect();
              return b.width > 0 && b.height > 0;
            }).length,
            legend: [...(fig?.querySelectorAll('span[class$="-swatch"]') ?? [])].map((s) =>
              s.textContent?.trim(),
            ),
            yLabels: [...(fig?.querySelectorAll('g[aria-label="y-axis tick label"] text') ?? [])].map(
              (t) => t.textContent,
            ),
          };
        };
        return {
          cost: chart('cost'),
          faults: chart('faults'),
          leaves: chart('leaves'),
          rows: document.querySelectorAll('tbody tr').length,
          scripts: document.scripts.length,
        };
      });

      for (const name of ['cost', 'faults', 'leaves'] as const) {
        const c = seen[name];
        expect(c.width, name).toBeGreaterThan(500);
        expect(c.height, name).toBeGreaterThan(150);
        expect(c.marks, name).toBeGreaterThanOrEqual(labels.length);
        expect(c.drawn, name).toBe(c.marks);
        expect(c.yLabels, name).toEqual(labels);
      }
      expect(seen.cost.legend).toEqual(expect.arrayContaining(['exit', 'handler', 'zero', 'dcache', 'mmio']));
      expect(seen.faults.legend).toEqual(
        expect.arrayContaining(['translation L0', 'translation L2', 'permission L2']),
      );
      expect(seen.leaves.legend).toEqual(['2M', '1G', 'none']);
      expect(seen.rows).toBe(6);
      expect(seen.scripts).toBe(0);
      expect(fetched).toEqual([]);
      expect(problems).toEqual([]);

      const shot = join(dir, 'sweep-chart.png');
      await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
      const png = readFileSync(shot);
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
      const docsImg = join(root, 'docs/img/sweep-chart.png');
      if (!existsSync(docsImg) || process.env['S2EMU_UPDATE_SCREENSHOT'] === '1') {
        mkdirSync(dirname(docsImg), { recursive: true });
        writeFileSync(docsImg, png);
      }

      // The trace's chart (fault rate over time), on made-up fault times: a burst, then a tail.
      const times = [...Array.from({ length: 300 }, (_, i) => i / 1000), 1, 1.5, 2];
      await page.setContent(
        renderHtmlReport('trace', [{ title: 'Fault rate', charts: [faultRateChart(times, { bins: 20 })] }]),
      );
      const rate = await page.evaluate(() =>
        [...document.querySelectorAll('figure[data-chart="fault-rate"] g[aria-label="rect"] rect')].map(
          (r) => r.getBoundingClientRect().height,
        ),
      );
      expect(rate).toHaveLength(20);
      // 0.1 s bins over 0 to 2 s: the burst fills the first three (100 faults each), then
      // one fault at 1, 1.5 and 2 s; empty bins draw nothing.
      expect(rate.map((h) => (h > 0 ? 1 : 0)).join('')).toBe('11100000001000010001');
      expect(rate[1]).toBeCloseTo(rate[0]!, 3);
      expect(rate[0]! / rate[10]!).toBeCloseTo(100, 1);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
