/**
 * `s2emu sweep`: the matrix (axes, order, how a configuration is applied), one configuration's
 * row against a run of the same scenario, rows for configurations that fail, the worker pool
 * (the same rows whatever the number of workers), and the command's outputs and exit status.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { s2emuHere } from './helpers/cli.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import {
  SWEEP_AXES,
  applyConfig,
  expandMatrix,
  parseAxisValues,
  runConfig,
} from '../src/cli/sweep-matrix.js';
import type { SweepAxis } from '../src/cli/sweep-matrix.js';
import { runMatrix } from '../src/cli/sweep.js';
import { sweepCsv } from '../src/cli/sweep-output.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const example = join(root, 'examples/grace-gpu-passthrough.json');

function axis(name: string): SweepAxis {
  return SWEEP_AXES.find((a) => a.name === name)!;
}

/** Runs the CLI from the sources (tsx), as the other CLI tests do. */
function s2emu(args: string[], input?: string) {
  // Plain output whatever the environment (picocolors turns colour on under CI=true).
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args, '--no-color'],
    {
      cwd: root,
      input,
      encoding: 'utf8',
    },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A small scenario: 64M of anonymous RAM in one slot, a write and a touch. */
function small(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cpu: { profile: 'grace', dczvaBytes: 128, mte: true },
    granule: '4K',
    physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
    vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '64M', backing: 'thp', prot: 'rw' }],
    vm: { ipaBits: 40 },
    memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram' }],
    steps: [
      { access: 'write', ipa: '0x4000_1000' },
      { touch: { from: '0x4000_0000', size: '8M', stride: '64K', access: 'read' } },
      { access: 'read', ipa: '0x9000_0000' },
    ],
    ...over,
  };
}

describe('the matrix', () => {
  it('parses each axis, naming the option and what it allows', () => {
    expect(parseAxisValues(axis('kernel'), '6.16,seed,6.17')).toEqual(['6.16', 'seed', '6.17']);
    expect(parseAxisValues(axis('granule'), '4k, 64K')).toEqual(['4K', '64K']);
    expect(parseAxisValues(axis('fwb'), 'on,off')).toEqual(['on', 'off']);
    expect(parseAxisValues(axis('ipaBits'), '40,048')).toEqual(['40', '48']);
    expect(() => parseAxisValues(axis('kernel'), '6.16,7.0')).toThrow(
      '--kernel: expected one of "6.16", "seed", "v7", "6.17", got "7.0"',
    );
    expect(() => parseAxisValues(axis('cpu'), 'grace,,kunpeng-920')).toThrow('--cpu: empty value');
    expect(() => parseAxisValues(axis('granule'), '4K,4k')).toThrow('--granule: "4K" is given twice');
    expect(() => parseAxisValues(axis('ipaBits'), 'forty')).toThrow('--ipa-bits: expected a whole number');
  });

  it('expands in axis order, the last axis fastest, whatever order the options came in', () => {
    const configs = expandMatrix([
      { axis: axis('granule'), values: ['4K', '64K'] },
      { axis: axis('kernel'), values: ['6.16', '6.17'] },
      { axis: axis('cpu'), values: ['grace'] },
    ]);
    expect(configs.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(configs.map((c) => Object.values(c.choices).join(' '))).toEqual([
      '6.16 grace 4K',
      '6.16 grace 64K',
      '6.17 grace 4K',
      '6.17 grace 64K',
    ]);
    expect(Object.keys(configs[0]!.choices)).toEqual(['kernel', 'cpu', 'granule']);
    expect(expandMatrix([])).toEqual([{ index: 0, choices: {} }]);
  });

  it('applies a configuration to a copy: a profile replaces the features, a feature overrides it', () => {
    const raw = small();
    const [cfg] = expandMatrix([
      { axis: axis('cpu'), values: ['kunpeng-920'] },
      { axis: axis('fwb'), values: ['on'] },
      { axis: axis('ipaBits'), values: ['44'] },
    ]);
    const out = applyConfig(raw, cfg!);
    // The file's mte override described the file's CPU: gone; dczvaBytes is the guest's: kept.
    expect(out['cpu']).toEqual({ profile: 'kunpeng-920', dczvaBytes: 128, fwb: true });
    expect(out['vm']).toEqual({ ipaBits: 44 });
    expect(raw['cpu']).toEqual({ profile: 'grace', dczvaBytes: 128, mte: true });
    expect(raw['vm']).toEqual({ ipaBits: 40 });
  });
});

describe('one configuration', () => {
  it("counts faults by class and level as the run's own access records show them", () => {
    const raw = small();
    const [cfg] = expandMatrix([{ axis: axis('kernel'), values: ['6.16'] }]);
    const row = runConfig(raw, cfg!, { audit: 'incremental' });
    expect(row.status).toBe('ok');
    // The same scenario run directly, counting the fault records and leaves of every access.
    const runner = new ScenarioRunner(parseScenario({ ...raw, kernel: '6.16' }));
    const faults: Record<string, number> = {};
    const leaves: Record<number, number> = {};
    const fsc = ['none', 'translation', 'access-flag', 'permission', 'external-abort'];
    const summary = runner.run({
      access: (_s, r) => {
        for (const f of r.faults)
          faults[`${fsc[f.fsc]} L${f.level}`] = (faults[`${fsc[f.fsc]} L${f.level}`] ?? 0) + 1;
        const size = r.leafValid ? r.leafSize : 0;
        leaves[size] = (leaves[size] ?? 0) + 1;
      },
    });
    const got: Record<string, number> = {};
    for (const [cls, levels] of Object.entries(row.result!.faultsByClass))
      for (const [l, n] of Object.entries(levels)) got[`${cls} ${l}`] = n;
    expect(got).toEqual(faults);
    expect(Object.values(got).reduce((a, b) => a + b, 0)).toBe(summary.faults);
    expect(row.result!.leafSizes).toEqual({ '2M': leaves[0x20_0000] ?? 0, none: leaves[0] ?? 0 });
    expect(row.result!.accesses).toBe(summary.accesses);
    expect(row.result!.modelledByCause).toEqual(summary.modelledByCause);
    expect(row.result!.outcomes).toEqual({ done: 129, mmio: 1 });
  });

  it('is a row that says so when the scenario is invalid for it, or KVM refuses a memslot', () => {
    const raw = small({ memslots: [{ slot: 0, gpa: '0x4000_1000', size: '4K', vma: 'ram' }], steps: [] });
    const configs = expandMatrix([{ axis: axis('granule'), values: ['4K', '64K'] }]);
    const [ok, rejected] = configs.map((c) => runConfig(raw, c, { audit: 'incremental' }));
    expect(ok!.status).toBe('ok');
    expect(rejected!.status).toBe('rejected');
    expect(rejected!.result).toBeNull();
    expect(rejected!.problems.join('\n')).toMatch(/^memslots\[0\]\.gpa: .*64K|granule/m);

    // A memslot past a 36-bit IPA space: KVM refuses it with EFAULT (kvm_arch_prepare_memory_region()).
    const high = small({
      memslots: [{ slot: 3, gpa: '0x10_0000_0000', size: '64M', vma: 'ram' }],
      steps: [],
    });
    const rows = expandMatrix([{ axis: axis('ipaBits'), values: ['36', '40'] }]).map((c) =>
      runConfig(high, c, { audit: 'incremental' }),
    );
    expect(rows.map((r) => r.status)).toEqual(['refused', 'ok']);
    expect(rows[0]!.problems).toEqual(['memslot 3 refused: -EFAULT']);
    expect(rows[0]!.result!.memslotsRefused).toEqual([{ slot: 3, errno: 'EFAULT' }]);
  });
});

describe('the worker pool', () => {
  it('gives the same rows, in matrix order, with one worker or two', () => {
    const raw = JSON.parse(readFileSync(example, 'utf8')) as Record<string, unknown>;
    const configs = expandMatrix([
      { axis: axis('kernel'), values: ['6.16', 'seed', '6.17'] },
      { axis: axis('cpu'), values: ['grace', 'kunpeng-920'] },
    ]);
    const one = runMatrix(raw, configs, { jobs: 1, audit: 'incremental' });
    const two = runMatrix(raw, configs, { jobs: 2, audit: 'incremental' });
    expect(two).toEqual(one);
    expect(one.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(one.map((r) => r.label)).toEqual(configs.map((c) => Object.values(c.choices).join(' ')));
    // Each row is the configuration's own run, not a neighbour's: the same as in this thread.
    for (const c of configs) expect(one[c.index]).toEqual(runConfig(raw, c, { audit: 'incremental' }));
    // What the example shows: without FWB the cacheable PFNMAP slot is refused from the
    // series on; 6.16 maps it Device under a cacheable host mapping (the audit's diagnostic).
    expect(one.map((r) => `${r.label}: ${r.status}`)).toEqual([
      '6.16 grace: errors',
      '6.16 kunpeng-920: errors',
      'seed grace: ok',
      'seed kunpeng-920: refused',
      '6.17 grace: ok',
      '6.17 kunpeng-920: refused',
    ]);
    expect(one[3]!.problems).toEqual(['memslot 1 refused: -EINVAL']);
    expect(one[0]!.problems[0]).toContain('host-consistency: memtype');
  });
});

describe('a worker that dies', () => {
  it('makes its configuration a failed row that says why, and the sweep goes on', () => {
    // A worker stopped at its heap limit runs no exit hook, and the main thread (blocked in
    // Atomics.wait) runs no event loop: only the supervisor thread sees it go. A heap this
    // small stops every worker while it loads, so each configuration in turn takes a new
    // worker and fails; the sweep must end with one row each, not wait forever.
    const raw = JSON.parse(readFileSync(example, 'utf8')) as Record<string, unknown>;
    const configs = expandMatrix([{ axis: axis('kernel'), values: ['6.16', 'seed', '6.17'] }]);
    const rows = runMatrix(raw, configs, {
      jobs: 2,
      audit: 'incremental',
      resourceLimits: { maxOldGenerationSizeMb: 4, maxYoungGenerationSizeMb: 1 },
      // Without the supervisor's reports this would otherwise wait forever: fail instead.
      stallMs: 60_000,
    });
    expect(rows.map((r) => `${r.label}: ${r.status}`)).toEqual([
      '6.16: failed',
      'seed: failed',
      '6.17: failed',
    ]);
    for (const r of rows) {
      expect(r.result).toBeNull();
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]).toMatch(/^the worker running this configuration stopped: .*memory limit/);
    }
  }, 120_000);

  it('gives up, naming the configurations in hand, when no worker says anything for stallMs', () => {
    // A worker takes far longer than 1 ms to load the model, so the pool hears nothing in
    // time: the guard a test relies on to fail rather than hang, checked by tripping it.
    const raw = JSON.parse(readFileSync(example, 'utf8')) as Record<string, unknown>;
    const configs = expandMatrix([{ axis: axis('kernel'), values: ['6.16', 'seed', '6.17'] }]);
    expect(() => runMatrix(raw, configs, { jobs: 2, audit: 'incremental', stallMs: 1 })).toThrow(
      'sweep: no worker reported anything for 1 ms (configuration(s) in hand: 0, 1)',
    );
    // What it stopped is gone: the next sweep runs normally.
    const rows = runMatrix(raw, configs.slice(0, 1), { jobs: 1, audit: 'incremental', stallMs: 60_000 });
    expect(rows.map((r) => r.status)).toEqual(['errors']);
  }, 60_000);
});

describe('s2emu sweep', () => {
  it('prints the same table and JSON with --jobs 1 and --jobs 2', () => {
    const args = [
      'sweep',
      'examples/grace-gpu-passthrough.json',
      '--kernel',
      '6.17,6.16',
      '--cpu',
      'grace,ampere-altra',
    ];
    for (const fmt of [[], ['--json']]) {
      const a = s2emuHere([...args, ...fmt, '--jobs', '1', '--allow-errors']);
      const b = s2emuHere([...args, ...fmt, '--jobs', '2', '--allow-errors']);
      expect(a.status, a.stderr).toBe(0);
      expect(b.stdout).toBe(a.stdout);
    }
  });

  it('prints the table, JSON lines and CSV with the rows in matrix order', () => {
    const base = [
      'sweep',
      'examples/grace-gpu-passthrough.json',
      '--cpu',
      'kunpeng-920,grace',
      '--kernel',
      '6.17',
    ];
    // One run as the executable (its progress bar is off: standard error is not a terminal).
    const t = s2emu(base);
    expect(t.status, t.stderr).toBe(0);
    const lines = t.stdout.split('\n');
    expect(lines[0]).toMatch(
      /^kernel\s+cpu\s+status\s+accesses\s+outcomes\s+faults\s+maps\s+relaxes\s+TLBIs\s+D-cache/,
    );
    expect(lines[2]).toMatch(/^6\.17\s+kunpeng-920\s+refused\s+34,822\s+done 32,771, mmio 2,049, iabt 2/);
    expect(lines[3]).toMatch(/^6\.17\s+grace\s+ok\s+34,822/);
    for (const h of [
      'Faults by class and level',
      'Modelled time by cause',
      'Accesses by leaf size',
      'Problems',
    ])
      expect(t.stdout).toContain(h);
    expect(t.stdout).toContain('6.17 kunpeng-920: refused\n  memslot 1 refused: -EINVAL');

    const j = s2emuHere([...base, '--json']);
    const rows = j.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatchObject({
      index: 0,
      config: { kernel: '6.17', cpu: 'kunpeng-920' },
      status: 'refused',
    });
    expect(rows[1]).toMatchObject({
      index: 1,
      config: { kernel: '6.17', cpu: 'grace' },
      status: 'ok',
      problems: [],
    });
    const r1 = rows[1]!['result'] as Record<string, unknown>;
    expect(r1['accesses']).toBe(34822);
    expect(r1['dcacheBytes']).toBe(0); // FWB: no cache maintenance
    expect(rows[2]).toEqual({
      summary: {
        file: 'examples/grace-gpu-passthrough.json',
        axes: { kernel: ['6.17'], cpu: ['kunpeng-920', 'grace'] },
        configurations: 2,
        statuses: { refused: 1, ok: 1 },
        producer: { s2emu: expect.any(String) as string },
      },
    });

    const c = s2emuHere([...base, '--csv']);
    const csv = c.stdout.trim().split('\n');
    expect(csv).toHaveLength(3);
    const head = csv[0]!.split(',');
    expect(head.slice(0, 5)).toEqual(['kernel', 'cpu', 'label', 'status', 'problems']);
    const grace = csv[2]!.split(',');
    expect(grace[head.indexOf('status')]).toBe('ok');
    expect(grace[head.indexOf('accesses')]).toBe('34822');
    expect(Number(grace[head.indexOf('faults.translation.L2')])).toBeGreaterThan(0);
    expect(csv[1]).toContain(',refused,memslot 1 refused: -EINVAL,');
  });

  it('exits 1 when a configuration ran with errors (0 with --allow-errors), 2 for bad input', () => {
    const dir = mkdtempSync(join(tmpdir(), 's2emu-sweep-'));
    const f = join(dir, 's.json');
    writeFileSync(
      f,
      JSON.stringify(
        small({ memslots: [{ slot: 0, gpa: '0x4000_1000', size: '4K', vma: 'ram' }], steps: [] }),
      ),
    );
    const r = s2emuHere(['sweep', f, '--granule', '4K,64K', '--quiet']);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^64K\s+rejected\s*$/m);
    expect(r.stdout).toContain('64K: rejected\n  memslots[0].gpa');
    expect(s2emuHere(['sweep', f, '--granule', '4K,64K', '--allow-errors']).status).toBe(0);
    expect(s2emuHere(['sweep', f, '--granule', '4K']).status).toBe(0);

    const bad = s2emuHere(['sweep', f, '--kernel', '6.18']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('s2emu: --kernel: expected one of "6.16", "seed", "v7", "6.17", got "6.18"\n');
    expect(s2emuHere(['sweep', f, '--json', '--csv']).stderr).toContain(
      '--json and --csv cannot be used together',
    );
    expect(s2emuHere(['sweep', f, '--jobs', '0']).stderr).toContain(
      '--jobs: expected a positive whole number, got "0"',
    );
    expect(s2emuHere(['sweep', f, '--colour', 'x']).status).toBe(2);
    expect(s2emuHere(['sweep']).stderr).toContain('sweep: expected one scenario FILE');
    const rejected = s2emu(['sweep', '-', '--kernel', '6.17'], '{"granule":"8K"}');
    expect(rejected.status).toBe(2);
    expect(rejected.stderr).toContain('<stdin>: scenario rejected:');
    expect(rejected.stderr).not.toMatch(/\n\s+at /);
  });

  it('quotes CSV fields that hold commas or quotes', () => {
    const csv = sweepCsv(
      [
        {
          index: 0,
          config: { kernel: '6.17' },
          label: '6.17',
          status: 'failed',
          problems: ['a, "b"', 'c'],
          result: null,
        },
      ],
      ['kernel'],
    );
    expect(csv.split('\n')[1]).toBe(
      '6.17,6.17,failed,"a, ""b""; c"' + ','.repeat(csv.split('\n')[0]!.split(',').length - 4),
    );
  });
});

// The built CLI starts its workers from dist/cli/sweep-worker.js (not through tsx). Under CI the
// build is there (npm test builds first): a missing one is a failure, not a skip.
const distCli = join(root, 'dist/cli/main.js');
const haveDist = existsSync(join(root, 'dist/cli/sweep-worker.js')) || process.env['CI'] === 'true';
describe.runIf(haveDist)('s2emu sweep, built (dist)', () => {
  it('runs its workers from dist and prints what the sources print', () => {
    const args = [
      'sweep',
      'examples/grace-gpu-passthrough.json',
      '--kernel',
      '6.16,6.17',
      '--cpu',
      'grace',
      '--json',
    ];
    const built = spawnSync(process.execPath, [distCli, ...args, '--jobs', '2'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(built.status, built.stderr).toBe(1); // 6.16's memtype diagnostic
    expect(built.stdout).toBe(s2emuHere([...args, '--jobs', '1']).stdout);
  });
});
