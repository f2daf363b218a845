/**
 * `s2emu ptdump FILE [--at STEP] [--wide | --json] [--kernel V]`: the stage-2 table of a
 * scenario's VM (after its last step, or after step STEP) or of a replay script (after its
 * last operation, or after operation STEP), printed as the kernel's debugfs files show it:
 * `stage2_page_tables` (src/views/ptdump.ts), then `ipa_range` and `stage2_levels`.
 *
 * Also the loader `explain` shares: a file's state at a step (`loadState`).
 */

import { parseArgs } from 'node:util';
import { KERNEL_NAMES } from '../mmu/kernel.js';
import type { KernelName } from '../mmu/kernel.js';
import type { Kvm } from '../mmu/vm.js';
import type { Vcpu } from '../mmu/vcpu.js';
import type { Stage2PageTable } from '../pgtable/stage2.js';
import { ReplayError, parseReplay, runReplay } from '../replay/replay.js';
import { ScenarioRunError, ScenarioRunner } from '../scenario/run.js';
import {
  ptdump,
  ptdumpIpaRange,
  ptdumpJson,
  ptdumpStage2Levels,
  ptdumpUnavailable,
  ptdumpWide,
} from '../views/ptdump.js';
import type { CliCommand } from './app.js';
import { CliInputError, parseScenarioInput, readInput } from './errors.js';
import { leafProvenance } from '../views/provenance.js';

/** What a file's state is: the table, and for a scenario its VM and vCPU. */
export interface LoadedState {
  kind: 'scenario' | 'replay';
  pgt: Stage2PageTable;
  kvm: Kvm | null;
  vcpu: Vcpu | null;
  /** The scenario's runner (null for a replay). */
  runner: ScenarioRunner | null;
  /** What `--at` selected, for headers: e.g. "after step 3 of 7". */
  where: string;
}

/** Options of loadState. */
export interface LoadOptions {
  /** The state after this step (scenario: 0-based step index; replay: 1-based operation). */
  at?: number;
  kernel?: string;
}

/**
 * Whether `text` (from `file`) is a replay script rather than a scenario: by extension
 * (.ops/.replay vs .json/.yaml/.yml), else by content (its first line that is neither blank
 * nor a comment starts with `init`). Returns true for a replay script.
 */
export function isReplayScript(file: string, text: string): boolean {
  if (/\.(ops|replay)$/i.test(file)) return true;
  if (/\.(json|ya?ml)$/i.test(file)) return false;
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (l === '' || l.startsWith('#')) continue;
    return /^init(\s|$)/.test(l);
  }
  return false;
}

/** Parses `--at`: a whole number (decimal or 0x hex). Returns it, or throws CliInputError. */
export function parseStep(v: string | undefined, what = '--at'): number | undefined {
  if (v === undefined) return undefined;
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new CliInputError(`${what}: expected a step number, got "${v}"`);
  return n;
}

/**
 * Runs `file` (a scenario or a replay script) up to `opts.at` (default: to the end) and
 * returns its state. Bad input throws CliInputError naming the file and what is wrong.
 */
export function loadState(file: string, opts: LoadOptions = {}): LoadedState {
  const where = file === '-' ? '<stdin>' : file;
  const text = readInput(file);
  if (opts.kernel !== undefined && !(KERNEL_NAMES as readonly string[]).includes(opts.kernel)) {
    throw new CliInputError(
      `--kernel: expected one of ${KERNEL_NAMES.map((k) => `"${k}"`).join(', ')}, got "${opts.kernel}"`,
    );
  }
  return isReplayScript(file, text) ? loadReplay(where, text, opts) : loadScenario(where, text, opts);
}

function loadReplay(where: string, text: string, opts: LoadOptions): LoadedState {
  if (opts.kernel !== undefined)
    throw new CliInputError(`${where}: --kernel applies to scenarios, not replay scripts`);
  let ops: ReturnType<typeof parseReplay>;
  try {
    ops = parseReplay(text);
  } catch (e) {
    if (e instanceof ReplayError) throw new CliInputError(`${where}:${e.line}: ${e.detail}`);
    throw e;
  }
  let n = ops.length;
  if (opts.at !== undefined) {
    if (opts.at < 1 || opts.at > ops.length)
      throw new CliInputError(`${where}: --at ${opts.at}: the script has operations 1 to ${ops.length}`);
    n = opts.at;
  }
  const pgt = runReplay(ops.slice(0, n), () => {});
  if (pgt === null) throw new CliInputError(`${where}: no table (the script has no init)`);
  const last = ops[n - 1]!;
  return {
    kind: 'replay',
    pgt,
    kvm: null,
    vcpu: null,
    runner: null,
    where: `after operation ${n} of ${ops.length} (line ${last.line})`,
  };
}

function loadScenario(where: string, text: string, opts: LoadOptions): LoadedState {
  let scenario = parseScenarioInput(text, where);
  const total = scenario.steps.length;
  if (opts.at !== undefined) {
    if (opts.at >= total)
      throw new CliInputError(
        `${where}: --at ${opts.at}: the scenario has ${total === 0 ? 'no steps' : `steps 0 to ${total - 1}`}`,
      );
    // The state after step N is the state of a run of the first N + 1 steps (steps are
    // deterministic, and nothing after a step changes what came before it).
    scenario = { ...scenario, steps: scenario.steps.filter((s) => s.index <= opts.at!) };
  }
  let runner: ScenarioRunner;
  try {
    runner = new ScenarioRunner(scenario, {
      provenance: true, // the `why:` lines of explain and ptdump --wide
      ...(opts.kernel !== undefined ? { kernel: opts.kernel as KernelName } : {}),
    });
    runner.run();
  } catch (e) {
    if (e instanceof ScenarioRunError) throw new CliInputError(`${where}: ${e.message}`);
    throw e;
  }
  return {
    kind: 'scenario',
    pgt: runner.kvm.pgt,
    kvm: runner.kvm,
    vcpu: runner.vcpu,
    runner,
    where:
      opts.at === undefined
        ? `after the last step (${total} step${total === 1 ? '' : 's'})`
        : `after step ${opts.at} of 0..${total - 1}`,
  };
}

/** The options of `ptdump`. */
const PTDUMP_OPTIONS = {
  at: { type: 'string' },
  wide: { type: 'boolean' },
  json: { type: 'boolean' },
  kernel: { type: 'string' },
} as const;

/**
 * Runs `ptdump` with the arguments after the command name; `write` receives the output.
 * Returns the exit status (0; bad input throws CliInputError).
 */
export function ptdumpCommand(
  args: string[],
  write: (t: string) => void = (t) => void process.stdout.write(t),
): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: PTDUMP_OPTIONS,
  });
  if (positionals.length === 0)
    throw new CliInputError('ptdump: expected one FILE (a scenario or a replay script, or -)');
  if (positionals.length > 1)
    throw new CliInputError(
      `ptdump ${positionals[0]} ${positionals[1]}: unexpected argument "${positionals[1]}"`,
    );
  if (values.wide && values.json)
    throw new CliInputError('ptdump: --wide and --json are alternatives; pick one');
  const at = parseStep(values.at);
  const st = loadState(positionals[0]!, { ...(at !== undefined ? { at } : {}), kernel: values.kernel });
  const pgt = st.pgt;
  if (values.json) {
    write(JSON.stringify(ptdumpJson(pgt)) + '\n');
  } else if (values.wide) {
    const prov = st.kvm?.provenance ?? null;
    write(ptdumpWide(pgt, prov === null ? {} : { provenance: (a) => leafProvenance(prov, pgt, a) }));
  } else {
    // The three debugfs files, each under its name, as `head` prints several files.
    const none = ptdumpUnavailable(pgt);
    write(
      `==> stage2_page_tables <==\n${none === null ? ptdump(pgt) : `(${none})\n`}\n` +
        `==> ipa_range <==\n${ptdumpIpaRange(pgt)}\n` +
        `==> stage2_levels <==\n${ptdumpStage2Levels(pgt)}`,
    );
  }
  return 0;
}

/** The `ptdump` entry of the CLI's COMMANDS table. */
export const PTDUMP_COMMAND: CliCommand = {
  usage: 'ptdump FILE [--at STEP] [--wide|--json]',
  run: (args) => ptdumpCommand(args),
};
