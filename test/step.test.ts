/**
 * `s2emu step` (src/cli/step.ts): the interactive walk driven by keystrokes through an
 * injected input stream, and the scripted `--at` / `--until` forms through the CLI's main().
 */

import { afterEach, describe, expect, it, vi } from 'vitest';
import { captureStdout as capture } from './helpers/cli.js';
import { main } from '../src/cli/app.js';
import { CliInputError } from '../src/cli/errors.js';
import { StepModel, loadInput, stepSession } from '../src/cli/step.js';
import { parseScenario } from '../src/scenario/parse.js';
import { CPU_BARE, RAM_IPA, scenario } from './helpers/scenarios.js';

/** Runs a session over `keys` (each string one chunk, as a terminal delivers them). */
async function session(model: StepModel, keys: string[]): Promise<{ status: number; out: string }> {
  let out = '';
  async function* input(): AsyncGenerator<string> {
    for (const k of keys) yield k;
  }
  const status = await stepSession(model, input(), (s) => (out += s));
  return { status, out };
}

/** The frames a session printed, in order (each starts with its `[i/N]` header). */
function shown(out: string): string[] {
  return out.split('\n').filter((l) => /^\[\d+\/\d+\]/.test(l));
}

afterEach(() => {
  vi.restoreAllMocks();
});

// test/vectors/901.ops: line 7 init, 8-10 three maps, 11 dump, 12 a 2M block over the L3
// table, 13 dump, 14 a 1G block over the L2 table, 15 dump, 17 init, 18-19 maps, 20 dump.
const VECTOR = 'test/vectors/901.ops';

describe('step: keystrokes over a replay script', () => {
  const model = new StepModel(loadInput(VECTOR, 'step'));

  it('has one frame per line, each init starting its own table', () => {
    expect(model.frames.length).toBe(13);
    expect(model.render(0).text[0]).toBe('[0/12] line 7: init ipa_bits=40 granule=4K fwb=0');
    expect(model.render(9).text[0]).toBe('[9/12] line 17: init ipa_bits=40 granule=4K fwb=1');
  });

  it('n, /, p, arrows, g N and q move through the frames and show what changed', async () => {
    const { status, out } = await session(model, [
      'n',
      '/0x40400000\r',
      'n',
      'n',
      'p',
      '\x1b[D',
      'g 9\n',
      'g 99\n',
      'q',
      'n',
    ]);
    expect(status).toBe(0);
    expect(shown(out).map((l) => l.split(' ')[0])).toEqual([
      '[0/12]',
      '[1/12]',
      '[3/12]',
      '[4/12]',
      '[5/12]',
      '[4/12]',
      '[3/12]',
      '[9/12]',
    ]);
    // Frame 1: the first map creates L1 and L2 tables and three pages.
    expect(out).toContain('[1/12] line 8: map 0x40200000 0x3000 0x80000000 R|W');
    expect(out).toContain('now: L3 page 0x80000000 RW- Normal-WB AF');
    // Frame 3 (found by / 0x40400000): the read-only page.
    expect(out).toMatch(
      /\[3\/12\] line 10: map 0x40400000[^]*L3 0x0000000040400000 {2}0x0000000000000000 → 0x0040000091000[0-9a-f]{3}/,
    );
    // Frame 5: the 2M block replaces the table (break-before-make: 2 writes), the L3 entries are freed.
    const f5 = model.render(5).text.join('\n');
    expect(f5).toMatch(
      /L2 0x0000000040200000 {2}0x0000100000003003 → 0x00000000a02007[0-9a-f]{2} {2}\(2 writes\)/,
    );
    expect(f5).toContain('now: L2 block 0xa0200000 RWX Normal-WB AF');
    expect(f5).toMatch(/L3 0x0000000040202000 {2}0x00400000800027ff → 0x0000000000000000/);
    // g 99 is refused; q ends the session and the key after it is never read.
    expect(out).toContain('(no frame 99: frames are 0..12)');
    expect(out.trimEnd().endsWith('(no frame 99: frames are 0..12)')).toBe(true);
  });

  it('a search that finds nothing says so and stays', async () => {
    const { out } = await session(model, ['/ 0x7000000000\n', '/ zz\n']);
    expect(out).toContain('/: no frame after 0 touches 0x0000007000000000');
    expect(out).toContain('/: expected an IPA (0x hex or decimal), got "zz"');
    expect(shown(out)).toHaveLength(1);
  });
});

describe('step: a scenario', () => {
  const s = scenario({
    cpu: CPU_BARE,
    steps: [
      { access: 'write', ipa: RAM_IPA },
      { age: { ipa: RAM_IPA, size: '4K' } },
      { access: 'read', ipa: RAM_IPA },
    ],
  });
  const model = new StepModel({ kind: 'scenario', scenario: parseScenario(s), where: 't' });

  it('shows the fault, the descriptor changes and the provenance of each access', async () => {
    const { out } = await session(model, ['n', 'n', 'n', 'q']);
    const frames = shown(out);
    expect(frames).toEqual([
      '[0/3] start: memslots and guest memory set up',
      '[1/3] access 0 (step 0): write 0x40000000 → done',
      '[2/3] step 1: age ipa=0x40000000 size=0x1000',
      '[3/3] access 1 (step 2): read 0x40000000 → done',
    ]);
    expect(out).toContain('fault: translation L1 → user_mem_abort, ret 0');
    expect(out).toContain('why: map by access 0 (step 0): translation fault L1, write; kernel 6.17');
    // The age clears AF; the access-flag fault sets it again (mkyoung).
    const f2 = model.render(2).text.join('\n');
    expect(f2).toMatch(
      /was: L3 page 0x80[0-9a-f]+ RW- Normal-WB AF\n\s+now: L3 page 0x80[0-9a-f]+ RW- Normal-WB$/m,
    );
    const f3 = model.render(3).text.join('\n');
    expect(f3).toContain('fault: access-flag L3 → handle_access_fault, ret 1');
    expect(f3).toContain('why: mkyoung by access 1 (step 2): access-flag fault L3, read');
  });
});

describe('step: scripted forms through the CLI', () => {
  it('--at N prints that frame', () => {
    const cap = capture();
    expect(main(['step', VECTOR, '--at', '5'])).toBe(0);
    const text = cap.text();
    expect(text.startsWith('[5/12] line 12: map 0x40200000 0x200000 0xa0200000 R|W|X\n')).toBe(true);
    expect(text).toContain('now: L2 block 0xa0200000 RWX Normal-WB AF');
  });

  it('--until IPA prints every frame up to the first that touches it', () => {
    const cap = capture();
    expect(main(['step', VECTOR, '--until', '0x4030_0000'])).toBe(0);
    expect(shown(cap.text()).map((l) => l.split(' ')[0])).toEqual(['[1/12]', '[2/12]']);
  });

  it('--until an IPA nothing touches: every frame, a note, status 1', () => {
    const cap = capture();
    expect(main(['step', VECTOR, '--until', '0x1'])).toBe(1);
    expect(shown(cap.text())).toHaveLength(12);
    expect(cap.text()).toContain('no frame touches 0x0000000000000001');
  });

  it('bad input is a CliInputError naming what is wrong', () => {
    expect(() => main(['step', VECTOR, '--at', '13'])).toThrow(
      /--at: expected a frame number from 0 to 12, got "13"/,
    );
    expect(() => main(['step', VECTOR, '--at', '1', '--until', '0'])).toThrow(CliInputError);
    expect(() => main(['step', VECTOR, '--kernel', '6.16'])).toThrow(/--kernel applies to scenarios only/);
    expect(() => main(['step', 'no/such/file.json'])).toThrow(/cannot read no\/such\/file.json/);
    expect(() => main(['step'])).toThrow(/expected one FILE/);
    expect(() => main(['step', VECTOR, '--until', 'zz'])).toThrow(/--until: expected an IPA/);
  });
});
