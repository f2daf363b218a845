/**
 * `s2emu explain FILE ADDR [--at STEP] [--va] [--json] [--kernel V]`: one address of a
 * scenario's VM (or of a replay script's table) walked level by level, each descriptor
 * decoded, and what the MMU would do for a read, a write and an exec (src/views/explain.ts).
 * With `--va` (a scenario with a guest stage 1) ADDR is a guest VA: the guest's own walk comes
 * first, then the stage-2 walk of the IPA it gives, and the memory type the two combine to.
 */

import { parseArgs } from 'node:util';
import { ExplainView, explainIpa, explainStage1, stage1Lines } from '../views/explain.js';
import type { ExplainOptions } from '../views/explain.js';
import type { CliCommand } from './app.js';
import { CliInputError } from './errors.js';
import { loadState, parseStep } from './ptdump.js';
import { leafProvenance } from '../views/provenance.js';

const EXPLAIN_OPTIONS = {
  at: { type: 'string' },
  va: { type: 'boolean' },
  json: { type: 'boolean' },
  kernel: { type: 'string' },
} as const;

/** Parses an address argument: hex with 0x (underscores allowed) or decimal, below 2^53. Returns it. */
export function parseAddress(text: string, what: string): number {
  const t = text.replace(/_/g, '');
  const n = /^0x[0-9a-f]+$/i.test(t) ? Number(BigInt(t)) : /^[0-9]+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n) || n < 0)
    throw new CliInputError(
      `${what}: expected an address (hex with 0x, or decimal, below 2^53), got "${text}"`,
    );
  return n;
}

/**
 * Runs `explain` with the arguments after the command name; `write` receives the output.
 * Returns the exit status (0; bad input throws CliInputError).
 */
export function explainCommand(
  args: string[],
  write: (t: string) => void = (t) => void process.stdout.write(t),
): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: EXPLAIN_OPTIONS,
  });
  if (positionals.length !== 2)
    throw new CliInputError(
      `explain: expected FILE and an address (e.g. explain scenario.json 0x40001000), got ${positionals.length} argument(s)`,
    );
  const [file, addrText] = positionals as [string, string];
  const addr = parseAddress(addrText, values.va ? 'VA' : 'IPA');
  const at = parseStep(values.at);
  const st = loadState(file, { ...(at !== undefined ? { at } : {}), kernel: values.kernel });
  const opts: ExplainOptions = { ha: st.kvm?.hwAf ?? false };
  // Why the leaf is what it is: the fault path's provenance (a scenario's; a replay has none).
  const prov = st.kvm?.provenance ?? null;
  if (prov !== null) opts.provenance = (a) => leafProvenance(prov, st.pgt, a);
  let ipa = addr;
  if (values.va) {
    const s1 = st.vcpu?.stage1 ?? null;
    if (st.kvm === null || s1 === null)
      throw new CliInputError(`explain --va: ${file} has no guest stage 1 (guest.stage1 in the scenario)`);
    const kvm = st.kvm;
    const walk = explainStage1(s1, addr, (a) => kvm.readGuestPhys(a, 8), kvm.pgt);
    if (walk.ipa === null) {
      if (values.json) write(JSON.stringify({ where: st.where, stage1: walk }) + '\n');
      else write(`# ${file}, ${st.where}\n${stage1Lines(walk).join('\n')}\n`);
      return 0;
    }
    opts.stage1 = walk;
    ipa = Number(BigInt(walk.ipa));
  }
  const view: ExplainView = explainIpa(st.pgt, ipa, opts);
  if (values.json) write(JSON.stringify({ where: st.where, ...view.toJSON() }) + '\n');
  else write(`# ${file}, ${st.where}\n${view.text}\n`);
  return 0;
}

/** The `explain` entry of the CLI's COMMANDS table. */
export const EXPLAIN_COMMAND: CliCommand = {
  usage: 'explain FILE ADDR [--at STEP] [--va] [--json]',
  run: (args) => explainCommand(args),
};
