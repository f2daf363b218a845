import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, s2emu } from './helpers/cli.js';

describe('s2emu run: bad input', () => {
  it('rejects a scenario before running, naming every key path, exit 2, no stack trace', () => {
    const r = s2emu(
      ['run', '-'],
      '{"cpu":{"profile":"grace"},"granule":"8K","physical":[],"memslots":[],"steps":[],' +
        '"vmas":[{"name":"a","start":"0x1000","size":"4K","prot":"rw","backing":"anon2"}]}',
    );
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('<stdin>: scenario rejected:');
    expect(r.stderr).toContain('granule: expected one of "4K", "16K", "64K"');
    expect(r.stderr).toContain(
      'vmas[0].backing: expected one of "anon", "thp", "hugetlb", "shmem", "pfnmap", "mixedmap"',
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("names an option the command does not take, and the commands that take it (USAGE's lists)", () => {
    const at = s2emu(['run', 'examples/vfio-bar.json', '--at', '3']);
    expect(at.status).toBe(2);
    expect(at.stderr).toBe("s2emu: run: unknown option '--at' (an option of ptdump, explain, step)\n");
    const wide = s2emu(['sweep', 'examples/vfio-bar.json', '--wide']);
    expect(wide.stderr).toBe("s2emu: sweep: unknown option '--wide' (an option of ptdump)\n");
    const none = s2emu(['ptdump', 'examples/vfio-bar.json', '--frob']);
    expect(none.status).toBe(2);
    expect(none.stderr).toBe("s2emu: ptdump: unknown option '--frob' (s2emu --help lists the options)\n");
  });

  it('reports invalid JSON with its position, and a bad --kernel', () => {
    const j = s2emu(['run', '-'], '{ bad json');
    expect(j.status).toBe(2);
    expect(j.stderr).toMatch(/^<stdin>:1:3: invalid JSON: /m);
    const k = s2emu(['run', 'examples/vfio-bar.json', '--kernel', '7.0']);
    expect(k.status).toBe(2);
    expect(k.stderr).toBe('s2emu: --kernel: expected one of "6.16", "seed", "v7", "6.17", got "7.0"\n');
  });
});

/** A small scenario (the tests' default host) as JSON text. */
function scenarioText(over: Record<string, unknown>): string {
  return JSON.stringify({
    cpu: { profile: 'grace' },
    granule: '4K',
    physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
    vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '64M', backing: 'anon', prot: 'rw' }],
    vm: { ipaBits: 40 },
    memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram' }],
    steps: [],
    ...over,
  });
}

describe("s2emu run: the editor's error format, arguments, limits", () => {
  it('reports each rejected key as FILE:LINE:COL: key.path: message', () => {
    const text =
      '{"cpu":{"profile":"grace"},\n  "granule":"8K","physical":[],"memslots":[],"steps":[],"vmas":[]}';
    const r = s2emu(['run', '-'], text);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      's2emu: <stdin>: scenario rejected:\n<stdin>:2:3: granule: expected one of "4K", "16K", "64K"\n',
    );
  });

  it('names an unexpected argument', () => {
    const r = s2emu(['run', 'examples/vfio-bar.json', 'extra']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('s2emu: run examples/vfio-bar.json extra: unexpected argument "extra"\n');
  });

  it('refuses a scenario out of proportion up front, with the count and the option that allows it', () => {
    // 1 TiB at a 1-byte stride: 2^40 accesses.
    const huge = scenarioText({
      steps: [{ touch: { from: '0x4000_0000', size: '1T', stride: 1, access: 'read' } }],
    });
    const r = s2emu(['run', '-'], huge);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('makes 1,099,511,627,776 accesses, more than the limit of 1,073,741,824');
    expect(r.stderr).toContain('--max-accesses 1099511627776');
    // A lower limit refuses a small touch; a high enough one runs it.
    const small = scenarioText({
      steps: [{ touch: { from: '0x4000_0000', size: '64K', stride: '4K', access: 'read' } }],
    });
    expect(s2emu(['run', '-', '--max-accesses', '15'], small).status).toBe(2);
    expect(s2emu(['run', '-', '--max-accesses', '16'], small).status).toBe(0);
    expect(s2emu(['run', '-', '--max-accesses', 'lots'], small).stderr).toBe(
      's2emu: --max-accesses: expected a positive whole number, got "lots"\n',
    );
  });
});

describe('s2emu run: exit status and what the output records', () => {
  const exitsAndMmio = scenarioText({
    steps: [
      { access: 'exec', ipa: '0x4000_1000' },
      { access: 'read', ipa: '0x2_0000_0000' },
    ],
  });

  it('0 when nothing went wrong on the host side; 1 when KVM_RUN failed; --allow-errors keeps 0', () => {
    const ok = scenarioText({ steps: [{ access: 'write', ipa: '0x4000_1000' }] });
    expect(s2emu(['run', '-', '--json'], ok).status).toBe(0);
    // An IPA past the memslots but inside the IPA space is MMIO (fine); a read-only memslot's
    // write without a syndrome is -ENOSYS: KVM_RUN fails.
    const enosys = scenarioText({
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram', flags: ['readonly'] }],
      steps: [{ access: 'st-preidx', ipa: '0x4000_1000' }],
    });
    const r = s2emu(['run', '-', '--json'], enosys);
    expect(r.stdout).toContain('"errno":"ENOSYS"');
    expect(r.status).toBe(1);
    expect(s2emu(['run', '-'], enosys).status).toBe(1);
    expect(s2emu(['run', '-', '--json', '--allow-errors'], enosys).status).toBe(0);
    expect(s2emu(['run', '-', '--json'], exitsAndMmio).status).toBe(0);
  });

  it('1 when a diagnostic fired (the seed leaves mmap_lock held)', () => {
    const cow = scenarioText({
      kernel: 'seed',
      physical: [{ base: '0x40_0000_0000', size: '1G', type: 'nomap' }],
      vmas: [
        {
          name: 'hbm',
          start: '0x7e00_0000_0000',
          size: '4M',
          backing: 'pfnmap',
          pa: '0x40_0000_0000',
          prot: 'rw',
        },
      ],
      memslots: [{ slot: 0, gpa: '0x80_0000_0000', size: '4M', vma: 'hbm' }],
      steps: [{ access: 'read', ipa: '0x80_0000_0000' }],
    });
    const r = s2emu(['run', '-', '--json'], cow);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('mmap_lock (read) still held');
  });

  it('the JSON summary records what produced it', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    const r = s2emu(['run', '-', '--json', '--kernel', '6.16'], exitsAndMmio);
    const { summary } = JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!) as {
      summary: { producer: Record<string, unknown> };
    };
    expect(summary.producer).toEqual({
      s2emu: pkg.version,
      kernel: '6.16',
      cpu: {
        profile: 'grace',
        features: { fwb: true, dic: true, idc: true, mte: false, tlbiRange: true, hafdbs: true, lse: true },
      },
      granule: '4K',
      paBits: 48,
      ipaBits: 40,
    });
  });

  it('ends quietly with status 0 when the reader closes the pipe (| head -1)', () => {
    const r = spawnSync(
      'bash',
      [
        '-c',
        `set -o pipefail; "${process.execPath}" --import tsx src/cli/main.ts run examples/grace-gpu-passthrough.json --json | head -1`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ step: 0, access: 'read' });
  });
});

describe('s2emu run: the readable report', () => {
  it('names handler returns as errnos and marks S1PTW faults', () => {
    const r = s2emu(['run', 'examples/postcopy-page-tables.json', '--no-color']);
    expect(r.stdout).toMatch(/fault: translation L\d \(S1PTW\) → user_mem_abort 0/);
    const nc = s2emu(['run', 'examples/grace-gpu-passthrough.json', '--no-color']);
    expect(nc.stdout).toContain('fault: permission L2 → user_mem_abort -ENOEXEC');
  });

  it('prints a dirty-log harvest at its own step', () => {
    const r = s2emu(['run', 'examples/dirty-logging-migration.json', '--no-color']);
    const lines = r.stdout.split('\n');
    const harvest = lines.findIndex((l) => l.includes('dirty log: slot'));
    expect(harvest).toBeGreaterThan(0);
    // The line above it (or above its siblings) is a step header for a get-and-clear.
    const header = lines
      .slice(0, harvest)
      .reverse()
      .find((l) => /^ {2}\[\d+\]/.test(l))!;
    expect(header).toContain('dirty log get-and-clear');
  });
});

describe('s2emu run: what the report shows of the cost and of long runs', () => {
  it('puts whole-I-cache invalidations on the cost line (an exec of a 1G block without DIC)', () => {
    const text = scenarioText({
      cpu: { profile: 'kunpeng-920' },
      physical: [{ base: '0x4000_0000', size: '4G', type: 'ram' }],
      vmas: [
        {
          name: 'ram',
          start: '0x7f00_0000_0000',
          size: '1G',
          backing: 'hugetlb',
          hugePage: '1G',
          prot: 'rwx',
        },
      ],
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '1G', vma: 'ram' }],
      steps: [{ access: 'exec', ipa: '0x4000_0000' }],
    });
    const r = s2emu(['run', '-', '--no-color'], text);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/cost: .*1 whole-I-cache invalidation\(s\)/);
  });

  it('shows a progress bar with rate and time left on a terminal, and none when piped or --quiet', () => {
    // A run of several seconds: 16 GiB written at 4K stride (4M accesses).
    const text = scenarioText({
      physical: [{ base: '0x8000_0000', size: '32G', type: 'ram' }],
      vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '16G', backing: 'anon', prot: 'rw' }],
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '16G', vma: 'ram' }],
      steps: [{ touch: { from: '0x4000_0000', size: '16G', stride: '4K', access: 'write' } }],
    });
    const file = join(mkdtempSync(join(tmpdir(), 's2emu-progress-')), 'long.json');
    writeFileSync(file, text);
    const cmd = (extra: string) =>
      `"${process.execPath}" --import tsx src/cli/main.ts run ${file} --no-color --no-audit ${extra} >/dev/null`;
    // `script` gives the command a terminal for standard error.
    const tty = spawnSync('script', ['-qec', cmd(''), '/dev/null'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/running \[.*\] \d+% [\d,]+\/4194304 accesses, [\d,]+\/s, .* left/);
    const quiet = spawnSync('script', ['-qec', cmd('--quiet'), '/dev/null'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(quiet.stdout).not.toContain('running [');
    const piped = s2emu(['run', file, '--no-color', '--no-audit']);
    expect(piped.stderr).toBe('');
  }, 180_000);
});
