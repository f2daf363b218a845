/**
 * The parser fixes test/fuzz.test.ts led to (docs/decisions.md, "Hostile input (issue 11)"),
 * one test each: the fuzz test finds such inputs at random, these pin them down.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReplayError, parseReplay } from '../src/replay/replay.js';
import { ScenarioError, suggest } from '../src/scenario/errors.js';
import type { ScenarioIssue } from '../src/scenario/errors.js';
import { parseScenarioText } from '../src/scenario/parse.js';

const root = join(import.meta.dirname, '..');
const example = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(root, 'examples', name), 'utf8')) as Record<string, unknown>;

/** The issues parseScenarioText reports for `text` (it must reject it), and how long it took. */
function issuesOf(text: string): { issues: readonly ScenarioIssue[]; ms: number } {
  const t0 = performance.now();
  try {
    parseScenarioText(text);
  } catch (e) {
    if (!(e instanceof ScenarioError)) throw e;
    return { issues: e.issues, ms: performance.now() - t0 };
  }
  throw new Error('accepted');
}

describe('scenario parser', () => {
  it('n copies of one VMA are about n issues, not n^2/2 overlaps (3000 copies exhausted the heap)', () => {
    const s = example('vfio-bar.json');
    const vmas = s.vmas as unknown[];
    s.vmas = [...vmas, ...Array.from({ length: 3000 }, () => vmas[0])];
    const { issues, ms } = issuesOf(JSON.stringify(s));
    const overlaps = issues.filter((i) => / overlaps /.test(i.message));
    expect(overlaps.length).toBeGreaterThanOrEqual(3000);
    expect(overlaps.length).toBeLessThanOrEqual(3000 + vmas.length);
    // Each names the first VMA it overlaps.
    expect(overlaps.at(-1)!.message).toMatch(/overlaps vmas\[0\]/);
    expect(ms).toBeLessThan(3000);
  });

  it('the same for memslots and for guest stage-1 mappings', () => {
    const s = example('guest-page-tables.json');
    const slots = s.memslots as unknown[];
    s.memslots = [...slots, ...Array.from({ length: 2000 }, () => slots[0])];
    const stage1 = (s.guest as { stage1: { mappings: unknown[] } }).stage1;
    stage1.mappings = [...stage1.mappings, ...Array.from({ length: 2000 }, () => stage1.mappings[0])];
    const { issues } = issuesOf(JSON.stringify(s));
    const slotOverlaps = issues.filter((i) => i.path.startsWith('memslots[') && / overlaps /.test(i.message));
    const mapOverlaps = issues.filter((i) => i.path.startsWith('guest.') && / overlaps /.test(i.message));
    expect(slotOverlaps.length).toBeLessThanOrEqual(2000 + slots.length);
    expect(mapOverlaps.length).toBeGreaterThanOrEqual(2000);
    expect(mapOverlaps.length).toBeLessThanOrEqual(2000 + stage1.mappings.length);
  });

  it('an unknown key of 200 000 characters is reported at once (no edit-distance table for it)', () => {
    const s = example('vfio-bar.json');
    s['k'.repeat(200_000)] = 1;
    const { issues, ms } = issuesOf(JSON.stringify(s));
    expect(issues.some((i) => i.message.startsWith('unknown key; expected one of'))).toBe(true);
    expect(ms).toBeLessThan(1000);
    // The suggestion itself is unchanged for words of a near length.
    expect(suggest('memslot', ['memslots', 'vmas'])).toBe('memslots');
    expect(suggest('x'.repeat(100_000), ['memslots', 'vmas'])).toBeUndefined();
  });

  it('thousands of issues in a large file get their lines without rescanning the file for each', () => {
    const s = example('vfio-bar.json');
    s.steps = Array.from({ length: 6000 }, () => ({ touch: 'bad' }));
    const text = JSON.stringify(s, null, 2);
    const { issues, ms } = issuesOf(text);
    expect(issues.length).toBeGreaterThanOrEqual(6000);
    expect(ms).toBeLessThan(3000);
    // Still the right lines: steps[i] is on the line of its own "touch".
    const lines = text.split('\n');
    const at = issues.find((i) => i.path.startsWith('steps[5999]'))!;
    expect(lines[at.line! - 1]).toMatch(/"touch"|\{/);
  });

  it('a value nested past the scanner’s depth, but valid JSON, leaves the other issues located', () => {
    const s = example('vfio-bar.json');
    const text = JSON.stringify(s, null, 2).replace(
      '"steps": [',
      `"deep": ${'['.repeat(600)}${']'.repeat(600)},\n  "steps": [`,
    );
    const { issues } = issuesOf(text);
    const deep = issues.find((i) => i.path === 'deep')!;
    expect(deep.message).toMatch(/unknown key/);
    expect(deep.line).toBe(text.split('\n').findIndex((l) => l.includes('"deep"')) + 1);
  });

  it('a guest stage 1 of a terabyte in pages is refused before the builder writes 2^28 descriptors', () => {
    const s = example('guest-page-tables.json');
    const mappings = (s.guest as { stage1: { mappings: Record<string, unknown>[] } }).stage1.mappings;
    Object.assign(mappings[0]!, { va: '0x100_0000_0000', ipa: '0', size: '1T' });
    mappings.length = 1;
    const { issues, ms } = issuesOf(JSON.stringify(s));
    expect(issues.map((i) => i.path)).toContain('guest.stage1.mappings');
    expect(issues.find((i) => i.path === 'guest.stage1.mappings')!.message).toMatch(
      /more than 1048576 page and block/,
    );
    expect(ms).toBeLessThan(1000);
  });

  it('a missing top-level key is placed at the root object', () => {
    const s = example('vfio-bar.json');
    delete s.cpu;
    const { issues } = issuesOf('\n\n  ' + JSON.stringify(s));
    const cpu = issues.find((i) => i.path === 'cpu')!;
    expect(cpu.message).toBe('missing required key');
    expect([cpu.line, cpu.column]).toEqual([3, 3]);
  });
});

describe('replay parser', () => {
  const init = 'init ipa_bits=40 granule=4K fwb=0\n';
  const errorOf = (text: string): ReplayError => {
    try {
      parseReplay(text);
    } catch (e) {
      if (e instanceof ReplayError) return e;
      throw e;
    }
    throw new Error('accepted');
  };

  it('a number of 100 000 digits is refused at once, and not echoed whole', () => {
    const t0 = performance.now();
    const e = errorOf(`${init}unmap ${'9'.repeat(100_000)} 0x1000\n`);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(e.line).toBe(2);
    expect(e.detail).toMatch(/^IPA: '9{40}\.\.\.' is beyond 2\^53/);
    // Leading zeros are not significant digits.
    expect(parseReplay(`${init}unmap 0x${'0'.repeat(50_000)}1000 0x1000\n`)[1]).toMatchObject({
      ipa: 0x1000,
    });
  });

  it('a huge bad field is cut in the message, for every kind of field', () => {
    const huge = 'Z'.repeat(100_000);
    for (const text of [
      `${init}map 0x1000 0x1000 0x1000 ${huge}\n`,
      `${init}${huge} 0x1000\n`,
      `init ipa_bits=40 granule=${huge} fwb=0\n`,
      `init ipa_bits=40 granule=4K fwb=0 ${huge}=1\n`,
      `${init}unmap 0x1000 ${huge}\n`,
    ]) {
      const e = errorOf(text);
      expect(e.detail.length, e.detail.slice(0, 80)).toBeLessThan(200);
      expect(e.detail).toContain(`'${'Z'.repeat(40)}...'`);
    }
    // A short bad PROT keeps its precise message.
    expect(errorOf(`${init}relax 0x1000 Q\n`).detail).toBe(
      "PROT: unknown prot flag 'Q' (expected R, W, X, DEVICE, NORMAL_NC, SW0..SW3 or NONE)",
    );
  });
});
