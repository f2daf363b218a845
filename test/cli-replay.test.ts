import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs the CLI from source (tsx), as `npx s2emu` would run the built one. */
function s2emu(args: string[], input?: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    input,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

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
    expect(r.stderr).toBe("s2emu: line 3: SIZE: expected a number (hex with 0x, or decimal), got 'zz'\n");
  });

  it.each([
    ['frob 1\n', "line 1: unknown operation 'frob'"],
    ['map 0 0 0 R\n', 'line 1: map before any init'],
    ['init ipa_bits=40 granule=8K fwb=0\n', "line 1: granule: expected 4K, 16K or 64K, got '8K'"],
    ['init ipa_bits=40 granule=4K fwb=0\nrelax 0x1000 Q\n', "line 2: PROT: unknown prot flag 'Q'"],
    ['init ipa_bits=40 granule=4K\n', 'line 1: init: missing fwb='],
    [
      'init ipa_bits=40 granule=4K fwb=0\nunmap  0x1000 0x1000\n',
      'line 2: fields must be separated by single spaces',
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
});
