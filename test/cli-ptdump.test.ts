/**
 * `s2emu ptdump` (src/cli/ptdump.ts): a scenario's or a replay script's table at the end or
 * after a step, in the debugfs format, --wide and --json; and its input errors.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, s2emu } from './helpers/cli.js';
import { isReplayScript, loadState, ptdumpCommand } from '../src/cli/ptdump.js';
import { parseReplay, runReplay } from '../src/replay/replay.js';
import { ptdump } from '../src/views/ptdump.js';

function run(args: string[]): string {
  let out = '';
  expect(ptdumpCommand(args, (t) => (out += t))).toBe(0);
  return out;
}

const SCRIPT = [
  '# two maps, a dump, an unmap',
  'init ipa_bits=40 granule=4K fwb=0',
  'map 0x40000000 0x200000 0x80000000 R|W',
  'map 0x40400000 0x1000 0x90000000 R|X',
  'unmap 0x40000000 0x200000',
  '',
].join('\n');

describe('s2emu ptdump', () => {
  it('prints the three debugfs files of a scenario, through the CLI', () => {
    const r = s2emu(['ptdump', 'examples/grace-gpu-passthrough.json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const parts = r.stdout.split(/^==> (\S+) <==\n/m);
    expect(parts.filter((_, i) => i % 2 === 1)).toEqual(['stage2_page_tables', 'ipa_range', 'stage2_levels']);
    const tables = parts[2]!;
    expect(tables.startsWith('---[ Guest IPA ]---\n0x0000000000000000-')).toBe(true);
    // Each line is in the kernel's format: range, size and unit, level, then the bits or nothing.
    for (const l of tables.trimEnd().split('\n').slice(1)) {
      expect(l).toMatch(
        /^0x[0-9a-f]{16}-0x[0-9a-f]{16} {3}[ 0-9]{9}[KMGTPE] [0-3]( [ F] [ R] [ W] [ X] (AF| {2}) (BLK| {3}))?$/,
      );
    }
    expect(parts[4]).toBe('48\n\n');
    expect(parts[6]).toBe('4\n');
  });

  it('reads a replay script (by extension or content) and --at N stops after operation N', () => {
    const dir = mkdtempSync(join(tmpdir(), 's2emu-ptdump-'));
    const file = join(dir, 'script.txt');
    writeFileSync(file, SCRIPT);
    expect(isReplayScript(file, SCRIPT)).toBe(true);
    expect(isReplayScript('x.json', SCRIPT)).toBe(false);
    const end = run([file]);
    const at2 = run([file, '--at', '2']);
    // After operation 2 (the first map) the block is there; at the end it has been unmapped.
    expect(at2).toContain('0x0000000040000000-0x0000000040200000           2M 2   R W X AF BLK\n');
    expect(end).not.toContain('BLK');
    // R|X: executable, so the XN column is blank ("X" would mean not executable).
    expect(end).toContain('0x0000000040400000-0x0000000040401000           4K 3   R     AF    \n');
    // The same text as the library's ptdump of the table the replay leaves.
    const pgt = runReplay(parseReplay(SCRIPT), () => {})!;
    expect(end.split('==> ipa_range <==')[0]).toBe(`==> stage2_page_tables <==\n${ptdump(pgt)}\n`);
  });

  it('--at N of a scenario is the state after step N', () => {
    const full = loadState('examples/guest-page-tables.json');
    const first = loadState('examples/guest-page-tables.json', { at: 0 });
    expect(first.where).toBe('after step 0 of 0..13');
    expect(full.kind).toBe('scenario');
    expect(first.pgt.countTables()).toBeLessThanOrEqual(full.pgt.countTables());
    expect(ptdump(first.pgt)).not.toBe(ptdump(full.pgt));
  });

  it('--wide prints every run with its output addresses and memory types', () => {
    const out = run(['examples/grace-gpu-passthrough.json', '--wide']);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^# ipa_range 48, stage2_levels 4 \(start level 0\), granule 4K, FWB$/);
    const valid = lines.filter((l) => l.includes(' -> '));
    expect(valid.length).toBeGreaterThan(0);
    for (const l of valid)
      expect(l).toMatch(
        /-> 0x[0-9a-f]{16}-0x[0-9a-f]{16} {2}memattr 0x[0-9a-f] \S+ \(FWB; no FWB: \S+\) {2}(ISH|OSH|NSH)/,
      );
    // The wide form shows the final run the kernel leaves out.
    expect(lines.at(-1)).toMatch(/-0x0001000000000000 .* empty$/);
  });

  it('--json is one JSON document with the debugfs text, the runs and the entries', () => {
    const j = JSON.parse(run(['examples/grace-gpu-passthrough.json', '--json']));
    expect(j.ipaRange).toBe(48);
    expect(j.stage2Levels).toBe(4);
    expect(j.text).toBe(ptdump(loadState('examples/grace-gpu-passthrough.json').pgt));
    expect(j.runs.at(-1).printed).toBe(false);
    expect(j.entries.some((e: { valid: boolean }) => e.valid)).toBe(true);
  });

  it('rejects bad input with a message and status 2', () => {
    const cases: [string[], RegExp][] = [
      [['ptdump'], /ptdump: expected one FILE/],
      [
        ['ptdump', 'examples/grace-gpu-passthrough.json', '--at', 'soon'],
        /--at: expected a step number, got "soon"/,
      ],
      [
        ['ptdump', 'examples/grace-gpu-passthrough.json', '--at', '999'],
        /--at 999: the scenario has steps 0 to/,
      ],
      [
        ['ptdump', 'examples/grace-gpu-passthrough.json', '--wide', '--json'],
        /--wide and --json are alternatives/,
      ],
      [['ptdump', 'no/such/file.json'], /cannot read no\/such\/file.json/],
      [['ptdump', 'examples/grace-gpu-passthrough.json', '--frobnicate'], /frobnicate/],
    ];
    for (const [args, msg] of cases) {
      const r = s2emu(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const bad = s2emu(['ptdump', '-'], 'init ipa_bits=40 granule=4K fwb=0\nmap 0x1000\n');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/<stdin>:2: map: expected 4 arguments/);
  });

  it('the help text lists ptdump and explain', () => {
    const r = s2emu(['help']);
    expect(r.stdout).toMatch(/^ {2}ptdump FILE/m);
    expect(r.stdout).toMatch(/^ {2}explain FILE ADDR/m);
    expect(readFileSync(join(root, 'src/cli/app.ts'), 'utf8')).toContain('ptdump: PTDUMP_COMMAND');
  });
});
