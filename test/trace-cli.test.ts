import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseTrace } from '../src/trace/parse.js';
import { parseHostText, planTrace, replayTrace } from '../src/trace/replay.js';
import { generateTrace } from '../scripts/gen-trace.js';
import { parseScenario, parseScenarioText } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = 'examples/traces/host.json';

function s2emu(args: string[], input?: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Line = Record<string, unknown>;

function jsonLines(stdout: string): { accesses: Line[]; summary: Line & { trace: TraceJson } } {
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
  const last = lines.pop() as { summary: Line & { trace: TraceJson } };
  return { accesses: lines, summary: last.summary };
}

interface TraceJson {
  events: number;
  faults: number;
  accesses: number;
  unused: Record<string, number>;
  agreement: {
    compared: number;
    agreed: number;
    disagreements: { traceLine: number; trace: string; model: string }[];
  };
}

const tmp = mkdtempSync(join(tmpdir(), 's2emu-trace-'));

describe('s2emu trace: the example traces in both tools’ formats', () => {
  const tc = s2emu(['trace', 'examples/traces/boot-trace-cmd.txt', '--host', HOST, '--json']);
  const perf = s2emu(['trace', 'examples/traces/boot-perf.txt', '--host', HOST, '--json']);

  it('prints run --json’s access lines plus traceLine, then a summary with the trace object', () => {
    expect(tc.status).toBe(0);
    const { accesses, summary } = jsonLines(tc.stdout);
    expect(accesses).toHaveLength(9);
    for (const a of accesses)
      expect(Object.keys(a)).toEqual(
        expect.arrayContaining(['step', 'access', 'ipa', 'outcome', 'faults', 'leaf', 'costNs', 'traceLine']),
      );
    // The first access is the instruction fetch at trace line 3; the write that faulted twice
    // (permission, then translation after the copy-on-write invalidation) names both lines.
    expect(accesses[0]).toMatchObject({ access: 'exec', ipa: '0x40080000', traceLine: 3 });
    const retried = accesses.find((a) => a['traceLine'] === 6)!;
    expect(retried).toMatchObject({
      access: 'write',
      ipa: '0x40100010',
      traceLines: [6, 7],
      outcome: 'done',
    });
    expect((retried['faults'] as { fsc: string }[]).map((f) => f.fsc)).toEqual(['permission', 'translation']);
    expect(accesses.find((a) => a['traceLine'] === 11)).toMatchObject({
      access: 'ld-preidx',
      outcome: 'nisv',
    });
    expect(summary.faults).toBe(10);
    expect(summary.trace).toMatchObject({
      events: 23,
      faults: 12,
      accesses: 9,
      unused: { kvm_exit: 1, kvm_entry: 1, kvm_irq_line: 1, kvm_guest_fault: 1, kvm_vcpu_wakeup: 1 },
    });
  });

  it('reports the agreement: which accesses the model got right, and each disagreement', () => {
    const { trace } = jsonLines(tc.stdout).summary;
    // Compared (7): the accesses whose exits lines 10, 12, 14 and 16 show; the write at lines
    // 6-7 (faulted twice, after the read at line 5 on the same page); the write at lines 17-18
    // (faulted twice); the access-flag fault at line 21 (with kvm_access_fault at line 22).
    expect(trace.agreement.compared).toBe(7);
    expect(trace.agreement.agreed).toBe(5);
    expect(trace.agreement.disagreements).toEqual([
      {
        traceLine: 15,
        trace: 'exit to the VMM: KVM_EXIT_MMIO (line 16)',
        model: 'translation L2 → user_mem_abort; outcome done; leaf L3 4K at 0x40200000',
      },
      {
        traceLine: 17,
        trace: 'the access faulted 2 times: translation L3, then translation L3',
        model: 'translation L3 → user_mem_abort; outcome done; leaf L3 4K at 0x40300000',
      },
    ]);
  });

  it('gives the same replay for the perf-script version (its lines one earlier)', () => {
    expect(perf.status).toBe(0);
    const a = jsonLines(tc.stdout);
    const b = jsonLines(perf.stdout);
    const strip = (l: Line): Line => {
      const { traceLine: _t, traceLines: _u, ...rest } = l;
      return rest;
    };
    expect(b.accesses.map(strip)).toEqual(a.accesses.map(strip));
    expect(b.accesses.map((l) => l['traceLine'])).toEqual(
      a.accesses.map((l) => (l['traceLine'] as number) - 1),
    );
    expect(b.summary.trace.agreement.disagreements.map((d) => d.traceLine)).toEqual([14, 16]);
  });

  it('prints a readable report without --json', () => {
    const r = s2emu(['trace', 'examples/traces/boot-trace-cmd.txt', '--host', HOST, '--no-color']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('23 events, 12 kvm_guest_fault replayed as 9 accesses, 2 vCPU(s)');
    expect(r.stdout).toContain('line 23: not replayed: FSC 0x10');
    expect(r.stdout).toContain('agreed on 5 of 7 accesses whose outcome the trace shows');
    expect(r.stdout).toContain(
      '  line 15:\n    trace: exit to the VMM: KVM_EXIT_MMIO (line 16)\n    model: translation L2',
    );
  });
});

describe('s2emu trace: a generated trace of thousands of faults, end to end', () => {
  const file = 'examples/traces/generated-perf.txt';
  const text = readFileSync(join(root, file), 'utf8');
  const count = (re: RegExp): number => text.split('\n').filter((l) => re.test(l)).length;
  const r = s2emu(['trace', file, '--host', HOST, '--json']);

  it('replays every fault and agrees with the trace on every compared access', () => {
    expect(r.status).toBe(0);
    const { accesses, summary } = jsonLines(r.stdout);
    const faults = count(/kvm:kvm_guest_fault: /);
    expect(faults).toBeGreaterThan(3000);
    expect(summary.trace.faults).toBe(faults);
    // The model took exactly the trace's faults: as many, of the same classes.
    expect(summary.faults).toBe(faults);
    const classes = (re: RegExp): number => count(re);
    const modelClasses = new Map<string, number>();
    for (const a of accesses)
      for (const f of a['faults'] as { fsc: string }[])
        modelClasses.set(f.fsc, (modelClasses.get(f.fsc) ?? 0) + 1);
    expect(modelClasses.get('access-flag')).toBe(
      classes(/kvm_guest_fault: .* hsr 0x[89][23][0-9a-f]{4}[048c][89ab],/),
    );
    expect(modelClasses.get('permission')).toBe(
      classes(/kvm_guest_fault: .* hsr 0x[89][23][0-9a-f]{4}[048c][c-f],/),
    );
    // Each exit and access-flag fault the trace shows is one the model makes.
    const outcomes = (o: string): number => accesses.filter((a) => a['outcome'] === o).length;
    expect(outcomes('mmio')).toBe(count(/KVM_EXIT_MMIO/));
    expect(outcomes('nisv')).toBe(count(/KVM_EXIT_ARM_NISV/));
    expect(summary['mkyoungs']).toBe(count(/kvm_access_fault/));
    const a = summary.trace.agreement;
    expect(a.compared).toBeGreaterThan(500);
    expect(a.agreed).toBe(a.compared);
    expect(a.disagreements).toEqual([]);
    expect(summary.trace.unused).toEqual({
      kvm_exit: count(/kvm:kvm_exit:/),
      kvm_entry: count(/kvm:kvm_entry:/),
    });
  });

  it('on another kernel or host, the same trace shows where the model departs from it', () => {
    // Without the VMM's KVM_CAP_ARM_NISV_TO_USER, a load without a valid syndrome at an MMIO
    // address fails KVM_RUN (-ENOSYS) instead of exiting with KVM_EXIT_ARM_NISV.
    const host = JSON.parse(readFileSync(join(root, HOST), 'utf8')) as { vm: Record<string, unknown> };
    host.vm.nisvToUser = false;
    const h = join(tmp, 'no-nisv.json');
    writeFileSync(h, JSON.stringify(host));
    const n = s2emu(['trace', file, '--host', h, '--json', '--allow-errors']);
    expect(n.status).toBe(0);
    const a = jsonLines(n.stdout).summary.trace.agreement;
    expect(a.disagreements).toHaveLength(count(/KVM_EXIT_ARM_NISV/));
    expect(a.agreed).toBe(a.compared - a.disagreements.length);
    for (const d of a.disagreements) {
      expect(d.trace).toMatch(/^exit to the VMM: KVM_EXIT_ARM_NISV \(line \d+\)$/);
      expect(d.model).toMatch(/outcome error -ENOSYS$/);
    }
    // Without --allow-errors, a KVM_RUN failure is exit status 1, as for run.
    expect(s2emu(['trace', 'examples/traces/boot-perf.txt', '--host', h]).status).toBe(1);
  });
});

describe('a generated trace in trace-cmd’s format with the esr/far spelling', () => {
  it('replays every fault, and agrees on every compared access', () => {
    const hostText = readFileSync(join(root, HOST), 'utf8');
    const text = generateTrace(hostText, {
      accesses: 600,
      seed: 3,
      format: 'trace-cmd',
      spelling: 'esr',
      vcpus: 3,
    });
    expect(text).toMatch(/^ {2}CPU 0\/KVM-4240 \[000\] [\d.]+: kvm_guest_fault: ipa 0x[0-9a-f]+, esr 0x/m);
    const trace = parseTrace(text);
    const faults = trace.events.filter((e) => e.kind === 'kvm_guest_fault').length;
    const plan = planTrace(trace, parseHostText(hostText));
    const runner = new ScenarioRunner(plan.scenario);
    const { summary, trace: ts } = replayTrace(plan, runner);
    expect(ts.faults).toBe(faults);
    expect(summary.faults).toBe(faults);
    expect(ts.vcpus).toBe(3);
    expect(ts.agreement.compared).toBeGreaterThan(50);
    expect(ts.agreement.disagreements).toEqual([]);
  });
});

describe('s2emu trace --scenario: the trace as an ordinary scenario', () => {
  it('writes a scenario that parses back and runs to the same access lines', () => {
    const out = join(tmp, 'boot.json');
    const w = s2emu(['trace', 'examples/traces/boot-trace-cmd.txt', '--host', HOST, '--scenario', out]);
    expect(w.status).toBe(0);
    expect(w.stdout).toMatch(
      /^wrote .*boot\.json: 10 steps \(9 accesses from 12 kvm_guest_fault events\); unused: /,
    );
    const scenario = parseScenarioText(readFileSync(out, 'utf8'));
    expect(scenario.steps.map((s) => s.kind)).toEqual([...Array(8).fill('access'), 'age', 'access']);
    expect(scenario.steps[1]).toMatchObject({ kind: 'access', access: 'read', address: 0x40100010 });
    const run = s2emu(['run', out, '--json']);
    const replay = s2emu(['trace', 'examples/traces/boot-trace-cmd.txt', '--host', HOST, '--json']);
    const strip = (l: Line): Line => {
      const { traceLine: _t, traceLines: _u, ...rest } = l;
      return rest;
    };
    expect(jsonLines(run.stdout).accesses).toEqual(jsonLines(replay.stdout).accesses.map(strip));
  });
});

describe('s2emu trace: bad input exits 2 with a message', () => {
  const host = readFileSync(join(root, HOST), 'utf8');

  it('names a malformed line; --lenient skips and counts it', () => {
    const bad =
      'kvm_guest_fault: ipa 0x40001000, hsr 0x93800047, hxfar 0x1008, pc 0x0\nkvm_guest_fault: ipa 0x1000\n';
    const r = s2emu(['trace', '-', '--host', HOST], bad);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^s2emu: <stdin>:2: kvm_guest_fault: missing hsr \(or esr\), hxfar \(or far\)/);
    expect(r.stderr).toContain('(--lenient skips such lines)');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const l = s2emu(['trace', '-', '--host', HOST, '--lenient', '--json'], bad);
    expect(l.status).toBe(0);
    expect(jsonLines(l.stdout).summary.trace).toMatchObject({ events: 1, faults: 1, skippedLines: 1 });
  });

  it('rejects a missing --host, a host with steps or bad keys, and bad options', () => {
    const t = 'examples/traces/boot-perf.txt';
    expect(s2emu(['trace', t]).stderr).toBe(
      's2emu: trace: --host HOST.json is required (the modelled host)\n',
    );
    const withSteps = join(tmp, 'steps.json');
    writeFileSync(withSteps, host.replace(/\n}\s*$/, ',\n  "steps": []\n}\n'));
    const s = s2emu(['trace', t, '--host', withSteps]);
    expect([s.status, s.stderr]).toEqual([
      2,
      `s2emu: ${withSteps}: host rejected:\n${withSteps}: steps: a host file has no "steps": the trace supplies them (remove the key)\n`,
    ]);
    const badKey = join(tmp, 'bad.json');
    writeFileSync(badKey, host.replace('"granule": "4K"', '"granule": "8K"'));
    const b = s2emu(['trace', t, '--host', badKey]);
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(new RegExp(`${badKey}:5:3: granule: expected one of "4K", "16K", "64K"`));
    expect(s2emu(['trace', t, '--host', HOST, '--kernel', '5.0']).status).toBe(2);
    expect(s2emu(['trace', t, '--host', HOST, '--bogus']).status).toBe(2);
    expect(s2emu(['trace', t, '--host', HOST, '--json', '--scenario', join(tmp, 'x.json')]).status).toBe(2);
    expect(s2emu(['trace', 'no-such-file.txt', '--host', HOST]).stderr).toBe(
      's2emu: cannot read no-such-file.txt (ENOENT)\n',
    );
  });
});

describe('planTrace: host events and instruction retries become steps', () => {
  const host = parseHostText(readFileSync(join(root, HOST), 'utf8'));
  const plan = (text: string) => planTrace(parseTrace(text), host);

  it('turns kvm_age_hva into age steps over the IPAs the memslots map, kvm_unmap_hva_range into hostUnmap', () => {
    // guest-ram is mapped at 0x7f00_0000_0000 and is slot 1 at IPA 0x4000_0000.
    const p = plan(
      'kvm_age_hva: mmu notifier age hva: 0x00007f0000100800 -- 0x00007f0000102001\n' +
        'kvm_unmap_hva_range: mmu notifier unmap range: 0x00007f0000200000 -- 0x00007f0000400000\n' +
        'kvm_age_hva: mmu notifier age hva: 0x0000100000000000 -- 0x0000100000001000\n',
    );
    expect(p.scenario.steps).toEqual([
      { kind: 'age', index: 0, ipa: 0x4010_0000, size: 0x3000 },
      { kind: 'hostUnmap', index: 1, vma: 'guest-ram', offset: 0x20_0000, size: 0x20_0000 },
    ]);
    // A range no memslot maps is of no use to the model: counted, not dropped.
    expect(p.unused).toEqual({ kvm_age_hva: 1 });
    expect([...p.stepLine]).toEqual([1, 2]);
  });

  it('makes one access of an instruction’s retried faults: a load then a store without ISV is a cas', () => {
    const p = plan(
      'kvm_guest_fault: ipa 0x40100000, hsr 0x92000007, hxfar 0xffff000000100010, pc 0x1000\n' +
        'kvm_guest_fault: ipa 0x40100000, hsr 0x9200004f, hxfar 0xffff000000100010, pc 0x1000\n' +
        'kvm_guest_fault: ipa 0x40100000, hsr 0x92000007, hxfar 0xffff000000100010, pc 0x1000\n' +
        'kvm_guest_fault: ipa 0x40100000, hsr 0x9200004f, hxfar 0xffff000000100010, pc 0x1004\n',
    );
    expect(p.faults.map((f) => [f.kind, f.address, f.lines])).toEqual([
      ['cas', 0x4010_0010, [1, 2, 3]],
      ['st-preidx', 0x4010_0010, [4]],
    ]);
    expect(p.faults[0]!.expectation.faults).toEqual({
      classes: ['translation L3', 'permission L3', 'translation L3'],
      why: 'the access faulted 3 times',
    });
    // A different PC at the same page: a new access, which must fault as the trace shows.
    expect(p.faults[1]!.expectation.faults?.why).toBe('the vCPU faulted again at this page after line 3');
    expect(p.guestFaults).toBe(4);
  });

  it('keeps faults of different vCPUs, or separated by an exit, apart', () => {
    const f = (tid: number, ts: string): string =>
      `CPU 0/KVM-${tid} [000] ${ts}: kvm_guest_fault: ipa 0x9000000, hsr 0x93800046, hxfar 0x9000018, pc 0x2000`;
    const p = plan(
      [
        f(10, '1.0'),
        f(11, '1.1'),
        'CPU 0/KVM-10 [000] 1.2: kvm_userspace_exit: reason KVM_EXIT_MMIO (6)',
        f(10, '1.3'),
      ].join('\n'),
    );
    expect(p.faults.map((x) => x.lines)).toEqual([[1], [2], [4]]);
    expect(p.faults[0]!.expectation.outcome).toMatchObject({ want: 'mmio' });
    expect(p.faults[2]!.expectation).toEqual({});
    expect(p.vcpus).toEqual(['CPU 0/KVM-10', 'CPU 0/KVM-11']);
  });
});

describe('s2emu help', () => {
  it('lists the trace command', () => {
    expect(s2emu(['help']).stdout).toMatch(/^ {2}trace FILE --host HOST\.json/m);
  });
});

describe('a guest with its own stage 1: faults replay at the VA in FAR', () => {
  const hostJson = {
    cpu: { profile: 'ampere-altra', hafdbs: false },
    granule: '4K',
    physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
    vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '64M', backing: 'anon', prot: 'rw' }],
    vm: { ipaBits: 40 },
    memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram' }],
    guest: {
      stage1: {
        granule: '4K',
        tables: '0x4300_0000',
        mair: '0xff',
        ha: false,
        mappings: [
          { va: '0x40_0000_0000', ipa: '0x4010_0000', size: '64K', attrIndx: 0, ap: 'rw', af: true },
        ],
      },
    },
  };
  const steps = [
    { access: 'at', va: '0x40_0000_5000' },
    { access: 'read', va: '0x40_0000_0040' },
    { access: 'write', va: '0x40_0000_1040' },
    { access: 'write', va: '0x40_0000_0048' },
    { access: 'cas', va: '0x40_0000_3000' },
    { access: 'exec', va: '0x40_0000_4000' },
    { access: 'at', va: '0x40_0000_7000' },
    { access: 'dc-civac', va: '0x40_0000_6000' },
  ];

  it('reproduces each access’s faults, stage-1 walk faults included', () => {
    // The "real" run: each access's faults as kvm_guest_fault lines, one PC per instruction.
    const original: string[][] = [];
    const trace: string[] = [];
    new ScenarioRunner(parseScenario({ ...hostJson, steps })).run({
      access: (step, r) => {
        original.push(r.faults.map((f) => `${f.fsc}/${f.level}/${f.s1ptw}`));
        for (const f of r.faults)
          trace.push(
            `kvm_guest_fault: ipa 0x${(r.ipa - (r.ipa % 4096)).toString(16)}, hsr 0x${(f.esr >>> 0).toString(16)}, ` +
              `hxfar 0x${r.va.toString(16)}, pc 0x${(0x1000 + 4 * step).toString(16)}`,
          );
      },
    });
    expect(original.flat().filter((f) => f.endsWith('true')).length).toBeGreaterThanOrEqual(4);
    const plan = planTrace(parseTrace(trace.join('\n')), parseHostText(JSON.stringify(hostJson)));
    // The first AT's walk faults on the four table pages: a walk alone, an AT. The second AT
    // finds every table page mapped and takes no fault, so it is not in the trace.
    expect(plan.faults.map((f) => [f.kind, f.lines.length])).toEqual([
      ['at', 4],
      ['read', 1],
      ['write', 1],
      ['write', 2],
      ['cas', 3],
      ['exec', 1],
      ['dc-civac', 1],
    ]);
    const replayed: string[][] = [];
    const { trace: ts } = replayTrace(plan, new ScenarioRunner(plan.scenario), {
      access: (_f, _s, r) => replayed.push(r.faults.map((f) => `${f.fsc}/${f.level}/${f.s1ptw}`)),
    });
    expect(replayed).toEqual(original.filter((f) => f.length > 0));
    expect(ts.agreement.agreed).toBe(ts.agreement.compared);
    expect(ts.agreement.compared).toBeGreaterThan(0);
  });
});

describe('trace --html', () => {
  it('writes the run charts and the fault rate over the trace, counting every timed fault once', async () => {
    const { parseHTML } = await import('linkedom');
    const out = join(tmp, 'trace.html');
    const r = s2emu(['trace', 'examples/traces/generated-perf.txt', '--host', HOST, '--html', out, '--json']);
    expect(r.status).toBe(0);
    const { summary } = jsonLines(r.stdout);
    const doc = parseHTML(readFileSync(out, 'utf8')).document;
    for (const c of ['cost', 'faults', 'leaves', 'fault-rate'])
      expect(doc.querySelector(`figure[data-chart="${c}"] svg`), c).not.toBeNull();
    // Each bin's title says how many faults it holds; together, every kvm_guest_fault event
    // of the trace (all of them carry perf's timestamp).
    const titles = [
      ...doc.querySelectorAll('figure[data-chart="fault-rate"] g[aria-label="rect"] rect title'),
    ];
    const counted = titles.reduce((n, t) => n + Number(/: (\d+) faults?/.exec(t.textContent)![1]), 0);
    expect(counted).toBe(summary.trace.faults);
    expect(doc.querySelector('title')!.textContent).toBe('s2emu trace examples/traces/generated-perf.txt');
  });

  it('refuses --html with --scenario (nothing runs)', () => {
    const r = s2emu([
      'trace',
      'examples/traces/boot-perf.txt',
      '--host',
      HOST,
      '--scenario',
      join(tmp, 'x.json'),
      '--html',
      join(tmp, 'x.html'),
    ]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--html does not apply');
  });
});
