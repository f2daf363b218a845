/**
 * `s2emu diff` (src/cli/diff.ts): two runs compared access by access. The kernels' difference
 * on a cacheable PFNMAP (examples/kernel-versions.json): 6.16's kvm_is_device_pfn() maps any
 * pfn outside the linear map Device-nGnRE and refuses execution there (an injected iabt);
 * 6.17 keeps a cacheable VMA Normal write-back (arch/arm64/kvm/mmu.c, user_mem_abort()).
 */

import { afterEach, describe, expect, it, vi } from 'vitest';
import { captureStdout as capture } from './helpers/cli.js';
import { main } from '../src/cli/app.js';
import { CliInputError } from '../src/cli/errors.js';

afterEach(() => {
  vi.restoreAllMocks();
});

const EXAMPLE = 'examples/kernel-versions.json';

describe('diff --kernel 6.16 --vs 6.17', () => {
  it('shows the cacheable PFNMAP difference access by access, then the totals', () => {
    const cap = capture();
    expect(main(['diff', EXAMPLE, '--kernel', '6.16', '--vs', '6.17'])).toBe(1);
    const t = cap.text();
    expect(t).toContain(`--- ${EXAMPLE} under kernel 6.16\n+++ ${EXAMPLE} under kernel 6.17\n`);
    // The HBM write: the same block, Device under 6.16, Normal-WB and executable under 6.17.
    expect(t).toMatch(
      /access 2 \(step 2\) write 0x0000400000000000:\n {2}descriptor {2}- 0x0000400000000000 0x[0-9a-f]{16}\n {14}\+ 0x0000400000000000 0x[0-9a-f]{16}\n {2}attributes {2}- Device-nGnRE RW- ISH L1\n {14}\+ Normal-WB RWX ISH L1\n/,
    );
    // The fetch from HBM: an injected instruction abort under 6.16 only.
    expect(t).toMatch(/access 3 \(step 3\) exec 0x0000400000001000:\n {2}outcome {5}- iabt\n {14}\+ done\n/);
    expect(t).toContain('  faults      - permission L1 user_mem_abort -8\n              + none\n');
    // RAM (accesses 0 and 1) is the same under both.
    expect(t).not.toMatch(/^access [01] /m);
    expect(t).toMatch(
      /^summary: 5 accesses compared, 3 differ \(outcome 1, faults 1, descriptor 3, attributes 3, costNs 1\)$/m,
    );
    expect(t).toContain('  outcomes        {"done":4,"iabt":1} → {"done":5}');
  });

  it('--json: one line per differing access, then the summary', () => {
    const cap = capture();
    expect(main(['diff', EXAMPLE, '--kernel', '6.16', '--vs', '6.17', '--json'])).toBe(1);
    const lines = cap
      .text()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l['index'])).toEqual([2, 3, 4, undefined]);
    const first = lines[0] as { fields: string[]; a: { attributes: string }; b: { attributes: string } };
    expect(first.fields).toEqual(['descriptor', 'attributes']);
    expect(first.a.attributes).toBe('Device-nGnRE RW- ISH L1');
    expect(first.b.attributes).toBe('Normal-WB RWX ISH L1');
    const summary = (lines[3] as { summary: Record<string, unknown> }).summary;
    expect(summary['compared']).toBe(5);
    expect(summary['differ']).toBe(3);
    expect(summary['counts']).toEqual({ outcome: 1, faults: 1, descriptor: 3, attributes: 3, costNs: 1 });
  });

  it('a run against itself: no difference, status 0', () => {
    const cap = capture();
    expect(main(['diff', EXAMPLE, '--kernel', '6.17', '--vs', '6.17'])).toBe(0);
    expect(cap.text()).toMatch(/^summary: 5 accesses compared, 0 differ$/m);
  });
});

describe('diff --cpu A --vs B and two files', () => {
  it('a CPU without FWB: cache maintenance on the same mappings, so the modelled cost differs', () => {
    const cap = capture();
    expect(
      main(['diff', 'examples/grace-gpu-passthrough.json', '--cpu', 'grace', '--vs', 'neoverse-n1']),
    ).toBe(1);
    const t = cap.text();
    expect(t).toContain('on cpu grace\n+++ examples/grace-gpu-passthrough.json on cpu neoverse-n1\n');
    expect(t).toMatch(/^ {2}costNs {6}- \d+ ns\n {14}\+ \d+ ns$/m);
    expect(t).toMatch(/^ {2}dcacheBytes +0 → [1-9]\d*$/m);
  });

  it('two files', () => {
    const cap = capture();
    expect(main(['diff', 'examples/kernel-versions.json', 'examples/kernel-versions-no-fwb.json'])).toBe(1);
    expect(cap.text()).toContain(
      '--- examples/kernel-versions.json\n+++ examples/kernel-versions-no-fwb.json\n',
    );
  });
});

describe('diff: bad input', () => {
  it('names what is wrong', () => {
    expect(() => main(['diff', EXAMPLE])).toThrow(/one FILE needs --kernel A --vs B/);
    expect(() => main(['diff', EXAMPLE, '--vs', '6.16'])).toThrow(/--vs needs --kernel A or --cpu A/);
    expect(() => main(['diff', EXAMPLE, '--kernel', '6.15', '--vs', '6.17'])).toThrow(
      /--kernel: expected one of .*got "6.15"/,
    );
    expect(() => main(['diff', EXAMPLE, '--cpu', 'grace', '--vs', 'm1'])).toThrow(
      /--vs: expected a CPU profile .*got "m1"/,
    );
    expect(() => main(['diff', EXAMPLE, '--cpu', 'grace', '--kernel', '6.16', '--vs', 'x'])).toThrow(
      CliInputError,
    );
    expect(() => main(['diff', 'test/vectors/901.ops', '--kernel', '6.16', '--vs', '6.17'])).toThrow(
      /is a replay script/,
    );
    expect(() => main(['diff'])).toThrow(/expected FILE --kernel A --vs B/);
  });
});

describe('diff --html', () => {
  it('draws both runs side by side and lists every differing field of every differing access', async () => {
    const { mkdtempSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { parseHTML } = await import('linkedom');
    const file = join(mkdtempSync(join(tmpdir(), 's2emu-diff-')), 'diff.html');
    const out = capture();
    expect(main(['diff', EXAMPLE, '--kernel', '6.16', '--vs', '6.17', '--json', '--html', file])).toBe(1);
    const lines = out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { fields?: string[]; summary?: { differ: number } });
    const fieldsDiffering = lines.reduce((n, l) => n + (l.fields?.length ?? 0), 0);
    const doc = parseHTML(readFileSync(file, 'utf8')).document;
    // The cost chart has a bar for each configuration: 6.16 and 6.17.
    const cost = doc.querySelector('figure[data-chart="cost"]')!.textContent;
    expect(cost).toContain('under kernel 6.16');
    expect(cost).toContain('under kernel 6.17');
    const tables = [...doc.querySelectorAll('table')];
    const diffTable = tables.find((t) => t.textContent.includes('field'))!;
    // A row per differing field, plus the header.
    expect(diffTable.querySelectorAll('tr').length).toBe(fieldsDiffering + 1);
    expect(diffTable.textContent).toContain('under kernel 6.16');
    expect(diffTable.textContent).toContain('Device-nGnRE');
  });
});
