/**
 * `s2emu run --break IPA` / `--break-step N` (src/cli/break.ts): the run stops inside
 * user_mem_abort() (src/mmu/fault.ts) at the first matching fault. Checked two ways: with an
 * in-process inspector session (node:inspector), whose Debugger.paused event names the paused
 * frame's function and lets us read the fault object there; and through the CLI with
 * S2EMU_BREAK_REPORT=1, which prints where it stopped instead of waiting for a debugger.
 */
import { spawnSync } from 'node:child_process';
import { Session } from 'node:inspector';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { armFaultBreak, breakMatches, noteBreakStep, parseBreak } from '../src/cli/break.js';
import { faultBreak } from '../src/pgtable/debughooks.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import { RAM_IPA, accesses, scenario } from './helpers/scenarios.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function s2emu(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Paused {
  fn: string;
  url: string;
  faultIpa: string;
}

/**
 * Runs `s` with an in-process inspector session attached; each pause records the top frame's
 * function and the fault object's IPA read in that frame, then resumes. Returns the pauses.
 */
function runUnderInspector(s: Record<string, unknown>, arm: () => void): Paused[] {
  const session = new Session();
  session.connect();
  const paused: Paused[] = [];
  const scripts = new Map<string, string>();
  session.on('Debugger.scriptParsed', (msg) => scripts.set(msg.params.scriptId, msg.params.url));
  session.on('Debugger.paused', (msg) => {
    const top = msg.params.callFrames[0]!;
    const p: Paused = { fn: top.functionName, url: scripts.get(top.location.scriptId) ?? '', faultIpa: '' };
    session.post(
      'Debugger.evaluateOnCallFrame',
      { callFrameId: top.callFrameId, expression: "'0x' + fault.faultIpa.toString(16)" },
      (err, res) => {
        p.faultIpa = err ? String(err) : String(res.result.value);
      },
    );
    paused.push(p);
    session.post('Debugger.resume');
  });
  session.post('Debugger.enable');
  try {
    arm();
    const runner = new ScenarioRunner(parseScenario(s), { fusedFaults: false, stepStart: noteBreakStep });
    runner.run();
  } finally {
    faultBreak.armed = false;
    session.post('Debugger.disable');
    session.disconnect();
  }
  return paused;
}

afterEach(() => {
  faultBreak.armed = false;
});

describe('--break under the inspector', () => {
  const s = scenario({
    steps: accesses(['write', RAM_IPA], ['read', RAM_IPA + 0x5000], ['write', RAM_IPA + 0x20_1000]),
  });

  it('pauses in userMemAbort at the fault of the IPA asked for, with the fault object in scope', () => {
    const paused = runUnderInspector(s, () => armFaultBreak({ ipa: RAM_IPA + 0x5123 }));
    expect(paused).toHaveLength(1);
    expect(paused[0]!.fn).toBe('userMemAbort');
    expect(paused[0]!.url).toMatch(/src\/mmu\/fault\.ts/);
    // HPFAR holds the fault's 4K page.
    expect(paused[0]!.faultIpa).toBe('0x' + (RAM_IPA + 0x5000).toString(16));
  });

  it('--break-step pauses at the first fault of that step', () => {
    const paused = runUnderInspector(s, () => armFaultBreak({ step: 2 }));
    expect(paused.map((p) => [p.fn, p.faultIpa])).toEqual([
      ['userMemAbort', '0x' + (RAM_IPA + 0x20_1000).toString(16)],
    ]);
  });

  it('does not pause when unarmed, or when nothing matches', () => {
    expect(runUnderInspector(s, () => {})).toEqual([]);
    expect(runUnderInspector(s, () => armFaultBreak({ ipa: 0x7000_0000 }))).toEqual([]);
  });
});

describe('the step hook', () => {
  it('is called with each step as it starts, before its faults', () => {
    const s = scenario({
      steps: accesses(['write', RAM_IPA], ['read', RAM_IPA + 8], ['write', RAM_IPA + 0x20_1000]),
    });
    const seen: string[] = [];
    const runner = new ScenarioRunner(parseScenario(s), {
      stepStart: (step) => void seen.push(`start ${step}`),
    });
    runner.run({ access: (step, r) => void seen.push(`access ${step}: ${r.nFaults} fault(s)`) });
    expect(seen).toEqual([
      'start 0',
      'access 0: 1 fault(s)',
      'start 1',
      'access 1: 0 fault(s)',
      'start 2',
      'access 2: 1 fault(s)',
    ]);
  });
});

describe('break matching', () => {
  it('matches the 4K page of the IPA, and the step when given', () => {
    armFaultBreak({ ipa: 0x4000_1234 })();
    expect(breakMatches({ ipa: 0x4000_1234 }, 0x4000_1000)).toBe(true);
    expect(breakMatches({ ipa: 0x4000_1234 }, 0x4000_2000)).toBe(false);
    expect(faultBreak.armed).toBe(false);
  });

  it('parses --break and --break-step, rejecting bad values', () => {
    expect(parseBreak(undefined, undefined)).toBeNull();
    expect(parseBreak('0x4000_1000', '3')).toEqual({ ipa: 0x4000_1000, step: 3 });
    expect(() => parseBreak('nowhere', undefined)).toThrow(/--break: expected an address/);
    expect(() => parseBreak(undefined, '-1')).toThrow(/--break-step: expected a step number/);
  });
});

describe('s2emu run --break (S2EMU_BREAK_REPORT=1: report and exit instead of waiting)', () => {
  it('stops in userMemAbort at the IPA', () => {
    const r = s2emu(['run', 'examples/anon-1g-touch.json', '--break', '0x4020_0000', '--quiet'], {
      S2EMU_BREAK_REPORT: '1',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('s2emu: break in userMemAbort: fault at ipa 0x40200000, step 0\n');
    // It stopped before the report: nothing was printed.
    expect(r.stdout).toBe('');
  });

  it('stops at the first fault of --break-step N', () => {
    const r = s2emu(['run', 'examples/anon-1g-touch.json', '--break-step', '1', '--quiet'], {
      S2EMU_BREAK_REPORT: '1',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('s2emu: break in userMemAbort: fault at ipa 0x40000000, step 1\n');
  });

  it('rejects a bad --break with status 2, and --break on replay', () => {
    const bad = s2emu(['run', 'examples/anon-1g-touch.json', '--break', 'zz']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--break: expected an address/);
    const step = s2emu(['run', 'examples/anon-1g-touch.json', '--break-step', '99'], {
      S2EMU_BREAK_REPORT: '1',
    });
    expect(step.status).toBe(2);
    expect(step.stderr).toMatch(/--break-step 99: the scenario has steps 0 to/);
    const rep = s2emu(['replay', 'test/vectors/905.ops', '--break', '0x1000']);
    expect(rep.status).toBe(2);
    expect(rep.stderr).toMatch(/--break applies to run only/);
  });
});
