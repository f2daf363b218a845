/**
 * `s2emu run FILE --break IPA` / `--break-step N`: runs the scenario under the inspector and
 * stops inside user_mem_abort() (src/mmu/fault.ts) at the first fault that matches: the IPA's
 * 4K page (what HPFAR_EL2 reports), and/or a fault taken while step N runs. The stop is a
 * `debugger` statement in userMemAbort behind `faultBreak.armed` (pgtable/debughooks.ts):
 * unarmed, the fault path pays one test. docs/debugging.md shows a session.
 *
 * The inspector: if a debugger is already attached (VS Code's launch configuration, `node
 * --inspect-brk`), the break just arms; otherwise s2emu opens the inspector on 127.0.0.1
 * (port 9229, or --inspect-port's), prints where to attach, and waits for a debugger.
 *
 * S2EMU_BREAK_REPORT=1 (for scripts and tests): no inspector; at the break s2emu prints
 * where it stopped (function, IPA, step) on standard error and exits with status 0.
 */

import inspector from 'node:inspector';
import { faultBreak } from '../pgtable/debughooks.js';
import type { Scenario } from '../scenario/types.js';
import '../views/debug.js';
import { CliInputError } from './errors.js';
import { parseAddress } from './explain.js';
import { parseStep } from './ptdump.js';

/** Where to stop: a fault at this IPA (its 4K page), during this step, or both. */
export interface BreakSpec {
  ipa?: number;
  step?: number;
}

/** The step the runner is in (set by noteBreakStep; −1 before the first). */
let currentStep = -1;

/**
 * Parses `--break` and `--break-step`. Returns the spec, or null when neither is given;
 * throws CliInputError for a bad value.
 */
export function parseBreak(ipa: string | undefined, step: string | undefined): BreakSpec | null {
  if (ipa === undefined && step === undefined) return null;
  const spec: BreakSpec = {};
  if (ipa !== undefined) spec.ipa = parseAddress(ipa, '--break');
  const s = parseStep(step, '--break-step');
  if (s !== undefined) spec.step = s;
  return spec;
}

/** Whether a fault at `faultIpa` during the current step matches `spec`. Returns true to stop. */
export function breakMatches(spec: BreakSpec, faultIpa: number): boolean {
  if (spec.step !== undefined && currentStep !== spec.step) return false;
  if (spec.ipa !== undefined && Math.floor(faultIpa / 4096) !== Math.floor(spec.ipa / 4096)) return false;
  return true;
}

/**
 * The runner's step hook (RunOptions.stepStart) for `--break-step`: notes the step the
 * runner is starting, which breakMatches() compares with the spec.
 */
export function noteBreakStep(step: number): void {
  currentStep = step;
}

/**
 * Arms the break: the first matching fault calls `onHit` (which may stop or exit) and, unless
 * it returns false, stops on the `debugger` statement in userMemAbort. Fires once.
 * Returns a function that disarms it.
 */
export function armFaultBreak(
  spec: BreakSpec,
  onHit: (faultIpa: number, step: number) => boolean = () => true,
): () => void {
  currentStep = -1;
  let fired = false;
  faultBreak.match = (fault) => {
    if (fired || !breakMatches(spec, fault.faultIpa)) return false;
    fired = true;
    return onHit(fault.faultIpa, currentStep);
  };
  faultBreak.armed = true;
  return () => {
    faultBreak.armed = false;
    faultBreak.match = () => false;
  };
}

/** The function that called the break's match (userMemAbort), from a stack trace. Returns its name. */
function callerName(): string {
  const lines = (new Error().stack ?? '').split('\n').slice(1);
  // Frames: callerName, onHit, match, then the function holding the debugger statement.
  const i = lines.findIndex((l) => /faultBreak\.match|\.match \(/.test(l));
  const frame = lines[i + 1] ?? lines[3] ?? '';
  return /at (\S+)/.exec(frame)?.[1] ?? '?';
}

function describeSpec(spec: BreakSpec): string {
  const parts: string[] = [];
  if (spec.ipa !== undefined) parts.push(`ipa 0x${spec.ipa.toString(16)} faults`);
  if (spec.step !== undefined) parts.push(`step ${spec.step} faults`);
  return parts.join(' and ');
}

/**
 * Prepares `s2emu run --break`: arms the break, opens the inspector and waits for a debugger
 * (unless one is attached, or S2EMU_BREAK_REPORT is set). The caller runs the scenario with
 * noteBreakStep as the runner's step hook and the fused fast path off, so that every fault
 * goes through user_mem_abort() (the results are the same either way).
 */
export function prepareBreak(scenario: Scenario, spec: BreakSpec): void {
  if (spec.step !== undefined && spec.step >= scenario.steps.length)
    throw new CliInputError(
      `--break-step ${spec.step}: the scenario has steps 0 to ${scenario.steps.length - 1}`,
    );
  const report = process.env.S2EMU_BREAK_REPORT === '1';
  if (report) {
    armFaultBreak(spec, (ipa, step) => {
      process.stderr.write(
        `s2emu: break in ${callerName()}: fault at ipa 0x${ipa.toString(16)}, step ${step}\n`,
      );
      process.exit(0);
    });
  } else {
    if (inspector.url() === undefined) {
      try {
        inspector.open(undefined, '127.0.0.1', false);
      } catch (e) {
        // Most often the port is taken by another debugging session.
        throw new CliInputError(
          `--break: cannot open the inspector on 127.0.0.1:9229 (${(e as Error).message}); ` +
            'end the other session, or start s2emu under a debugger (docs/debugging.md)',
        );
      }
      process.stderr.write(
        `s2emu: debugger listening on ${inspector.url()!}\n` +
          `s2emu: attach (VS Code "Attach", chrome://inspect, or node inspect ${inspector.url()!});\n` +
          `s2emu: s2emu stops in user_mem_abort() when ${describeSpec(spec)}\n`,
      );
      inspector.waitForDebugger();
    }
    armFaultBreak(spec, (ipa, step) => {
      process.stderr.write(
        `s2emu: stopping in user_mem_abort(): fault at ipa 0x${ipa.toString(16)}, step ${step}\n`,
      );
      return true;
    });
  }
}
