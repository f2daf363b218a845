import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function s2emu(args: string[], input?: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    input,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

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

  it('reports invalid JSON with its position, and a bad --kernel', () => {
    const j = s2emu(['run', '-'], '{ bad json');
    expect(j.status).toBe(2);
    expect(j.stderr).toMatch(/invalid JSON: .*\(line 1, column 3\)/);
    const k = s2emu(['run', 'examples/vfio-bar.json', '--kernel', '7.0']);
    expect(k.status).toBe(2);
    expect(k.stderr).toBe('s2emu: --kernel: expected one of "6.16", "seed", "6.17", got "7.0"\n');
  });
});
