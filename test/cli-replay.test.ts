import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, s2emu } from './helpers/cli.js';

/** Runs the CLI from source (tsx), as `npx s2emu` would run the built one. */

describe('s2emu replay', () => {
  it('prints a vector byte for byte from a file', () => {
    const r = s2emu(['replay', 'test/vectors/905.ops']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(root, 'test/vectors/905.out'), 'utf8'));
  });

  it('reads standard input with -', () => {
    const r = s2emu(
      ['replay', '-'],
      'init ipa_bits=40 granule=4K fwb=0\nmap 0x40000000 0x1000 0x80000000 R|W\ndump\n',
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      [
        'dcache 0x0000000080000000 0x0000000000001000',
        'ret map 0',
        'table L1 0x0000000040000000',
        'table L2 0x0000000040000000',
        'leaf L3 0x0000000040000000 0x0000000000001000 0x00400000800007ff',
        'end tables=4',
        '',
      ].join('\n'),
    );
  });

  it('rejects a bad line with its number, exit 2, no output and no stack trace', () => {
    const r = s2emu(
      ['replay', '-'],
      'init ipa_bits=40 granule=4K fwb=0\nmap 0x1000 0x1000 0x2000 R\nmap 0x1000 zz 0x2000 R\n',
    );
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe("s2emu: <stdin>:3: SIZE: expected a number (hex with 0x, or decimal), got 'zz'\n");
  });

  it.each([
    ['frob 1\n', "<stdin>:1: unknown operation 'frob'"],
    ['map 0 0 0 R\n', '<stdin>:1: map before any init'],
    ['init ipa_bits=40 granule=8K fwb=0\n', "<stdin>:1: granule: expected 4K, 16K or 64K, got '8K'"],
    ['init ipa_bits=40 granule=4K fwb=0\nrelax 0x1000 Q\n', "<stdin>:2: PROT: unknown prot flag 'Q'"],
    ['init ipa_bits=40 granule=4K\n', '<stdin>:1: init: missing fwb='],
    [
      'init ipa_bits=40 granule=4K fwb=0\nunmap  0x1000 0x1000\n',
      '<stdin>:2: fields must be separated by single spaces',
    ],
  ])('names what is wrong in %j', (input, msg) => {
    const r = s2emu(['replay', '-'], input);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(msg);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('reports a missing file and an unknown command with exit 2', () => {
    expect(s2emu(['replay', 'no-such-file.ops'])).toMatchObject({
      status: 2,
      stderr: 's2emu: cannot read no-such-file.ops (ENOENT)\n',
    });
    expect(s2emu(['frobnicate']).status).toBe(2);
    expect(s2emu(['replay', '--bogus']).status).toBe(2);
  });

  it("names the file and line in the editor's format, and the expected and found argument counts", () => {
    const r = s2emu(['replay', 'test/vectors/905.ops', '--no-color'], undefined);
    expect(r.status).toBe(0);
    const bad = s2emu(['replay', '-'], 'init ipa_bits=40 granule=4K fwb=0\nunmap 0x1000\n');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('s2emu: <stdin>:2: unmap: expected 2 arguments, found 1: unmap IPA SIZE\n');
  });

  it('never echoes control bytes of a garbage line to the terminal', () => {
    const r = s2emu(['replay', '-'], 'init ipa_bits=40 granule=4K fwb=0\nmap 0x1000 \u001b[31mzz 0x2000 R\n');
    expect(r.status).toBe(2);
    expect(r.stderr).not.toContain('\u001b');
    expect(r.stderr).toContain('\\x1b[31mzz');
  });

  it('refuses run-only options and extra arguments, naming them', () => {
    expect(s2emu(['replay', '--kernel', '6.16', 'test/vectors/905.ops'])).toMatchObject({
      status: 2,
      stderr: 's2emu: replay: --kernel applies to run only\n',
    });
    expect(s2emu(['replay', 'test/vectors/905.ops', 'extra'])).toMatchObject({
      status: 2,
      stderr: 's2emu: replay test/vectors/905.ops extra: unexpected argument "extra"\n',
    });
  });
});

describe('the CLI front end', () => {
  it('--version prints the package version', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(s2emu(['--version'])).toMatchObject({ status: 0, stdout: `s2emu ${pkg.version}\n` });
    expect(s2emu(['-V']).stdout).toBe(`s2emu ${pkg.version}\n`);
  });

  it('--help names only documentation files that exist in the repository', () => {
    const help = s2emu(['--help']).stdout;
    const files = [...help.matchAll(/\b(docs\/[\w.-]+\.md)\b/g)].map((m) => m[1]!);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(existsSync(join(root, f)), f).toBe(true);
    expect(help).not.toMatch(/-format\.md/);
  });

  it('a reader that closes the pipe early (| head -1) ends the process quietly with status 0', () => {
    // A long output: 001 prints thousands of lines.
    const r = spawnSync(
      'bash',
      [
        '-c',
        `set -o pipefail; "${process.execPath}" --import tsx src/cli/main.ts replay test/vectors/001.ops | head -1`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(r.stdout).toBe('ret map 0\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
