/**
 * `s2emu step FILE`: walks a scenario or a replay script one access or operation at a time,
 * showing what faulted, which stage-2 descriptors changed (old → new, decoded) and why
 * (provenance). Interactive on a terminal: n / → / space next, p / ← previous, g N jump,
 * / IPA search, q quit. For scripts: `--at N` prints frame N, `--until IPA` every frame up to
 * the first that touches IPA.
 *
 * It runs the whole input once with the write journal and provenance on, then moves through
 * the table's history with time travel (src/views/timetravel.ts): going back is undoing
 * journaled writes, nothing runs again.
 */

import { parseArgs } from 'node:util';
import { hex64, hexAddr, pteIsTable } from '../pgtable/descriptor.js';
import { KERNEL_NAMES } from '../mmu/kernel.js';
import type { KernelName } from '../mmu/kernel.js';
import type { Provenance } from '../mmu/provenance.js';
import { ReplayError, parseReplay, runReplay } from '../replay/replay.js';
import type { ReplayOp } from '../replay/replay.js';
import { ScenarioRunError, ScenarioRunner, accessJson } from '../scenario/run.js';
import type { Scenario } from '../scenario/types.js';
import { DescriptorView } from '../views/descriptor.js';
import { formatProvenance } from '../views/provenance.js';
import { TimeTravel } from '../views/timetravel.js';
import type { DescriptorChange } from '../views/timetravel.js';
import { CliInputError, parseScenarioInput, readInput } from './errors.js';
import type { CommonOptions } from './app.js';

/** A parsed input file: a scenario or a replay script. */
export type LoadedInput =
  | { kind: 'scenario'; scenario: Scenario; where: string }
  | { kind: 'replay'; ops: ReplayOp[]; lines: string[]; where: string };

/**
 * Reads and parses FILE (a scenario if it starts with `{`, else a replay script), turning
 * input errors into CliInputError (`cmd` names the command). Returns the input.
 */
export function loadInput(file: string, cmd: string): LoadedInput {
  const text = readInput(file);
  const where = file === '-' ? '<stdin>' : file;
  if (text.trimStart().startsWith('{')) {
    return {
      kind: 'scenario',
      scenario: parseScenarioInput(text, where, `${cmd}: ${where}: scenario rejected:`),
      where,
    };
  }
  try {
    return { kind: 'replay', ops: parseReplay(text), lines: text.split('\n'), where };
  } catch (e) {
    if (e instanceof ReplayError) throw new CliInputError(`${cmd}: ${where}:${e.line}: ${e.detail}`);
    throw e;
  }
}

/** Parses an IPA argument (0x hex, underscores allowed, or decimal). Returns it or throws. */
export function parseIpaArg(what: string, text: string): number {
  const t = text.trim().replace(/_/g, '');
  const n = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t, 16) : /^[0-9]+$/.test(t) ? Number(t) : NaN;
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER))
    throw new CliInputError(`${what}: expected an IPA (0x hex or decimal), got "${text}"`);
  return n;
}

/** One frame: the state after one unit of work (frame 0: before the first). */
interface Frame {
  title: string;
  detail: string[];
  tt: TimeTravel | null;
  unit: number;
  /** IPAs the unit accessed (searched by / IPA besides the descriptors it changed). */
  ipas: number[];
  /** The run's access index, for provenance (−1: not an access). */
  access: number;
}

/** Every frame of an input, and the provenance of a scenario run. */
export class StepModel {
  readonly frames: Frame[] = [];
  prov: Provenance | null = null;
  private readonly cache = new Map<number, { text: string[]; changes: DescriptorChange[] }>();

  /** Runs `input` (under `kernel` for a scenario) with the journal and provenance on. */
  constructor(input: LoadedInput, kernel?: KernelName) {
    if (input.kind === 'scenario') this.fromScenario(input.scenario, input.where, kernel);
    else this.fromReplay(input.ops, input.lines);
  }

  private fromScenario(scenario: Scenario, where: string, kernel?: KernelName): void {
    let runner: ScenarioRunner;
    const accesses: ReturnType<typeof accessJson>[] = [];
    const leaves: (string | null)[] = [];
    try {
      runner = new ScenarioRunner(scenario, {
        journal: true,
        provenance: true,
        ...(kernel ? { kernel } : {}),
      });
      const pgt = runner.kvm.pgt;
      runner.run({
        access: (step, r) => {
          accesses.push(accessJson(step, r));
          leaves.push(
            r.leafValid ? new DescriptorView(r.leafLo, r.leafHi, r.leafLevel, pgt, r.leafIpa).text : null,
          );
        },
      });
    } catch (e) {
      if (e instanceof ScenarioRunError) throw new CliInputError(`step: ${where}: ${e.message}`);
      throw e;
    }
    this.prov = runner.kvm.provenance;
    const tt = new TimeTravel(runner.kvm.pgt);
    const j = tt.journal;
    this.frames.push({
      title: 'start: memslots and guest memory set up',
      detail: [],
      tt,
      unit: -1,
      ipas: [],
      access: -1,
    });
    for (let u = 0; u < j.units; u++) {
      const op = j.opName(j.unitOpCode(u));
      const step = j.unitStepIndex(u);
      const access = j.unitAccessIndex(u);
      if (op === 'access' && access >= 0 && accesses[access] !== undefined) {
        const a = accesses[access] as Record<string, unknown>;
        const detail: string[] = [];
        for (const f of (a['faults'] as Record<string, unknown>[] | undefined) ?? [])
          detail.push(
            `fault: ${String(f['fsc'])} L${String(f['level'])}${f['s1ptw'] ? ' S1PTW' : ''} → ${String(f['handler'])}, ret ${String(f['ret'])}`,
          );
        if (a['errno'] !== undefined) detail.push(`error: ${String(a['errno'])}`);
        const leaf = leaves[access];
        if (leaf) detail.push(`leaf: ${leaf}`);
        const ipa = Number(a['ipa']);
        this.frames.push({
          title: `access ${access} (step ${step}): ${String(a['access'])} ${String(a['ipa'])} → ${String(a['outcome'])}`,
          detail,
          tt,
          unit: u,
          ipas: Number.isFinite(ipa) ? [ipa] : [],
          access,
        });
      } else {
        const st = scenario.steps[step];
        this.frames.push({
          title: `step ${step}: ${op}${st ? ` ${describeStep(st)}` : ''}`,
          detail: [],
          tt,
          unit: u,
          ipas: [],
          access: -1,
        });
      }
    }
  }

  private fromReplay(ops: ReplayOp[], lines: string[]): void {
    // One table per `init`: each segment runs on its own, with its own journal.
    const segments: ReplayOp[][] = [];
    for (const op of ops) {
      if (op.op === 'init' || segments.length === 0) segments.push([]);
      segments[segments.length - 1]!.push(op);
    }
    for (const seg of segments) {
      const outputs: string[][] = seg.map(() => []);
      let cur = seg.findIndex((o) => o.op !== 'init');
      const pgt = runReplay(
        seg,
        (l) => {
          if (cur < 0 || cur >= seg.length) return;
          outputs[cur]!.push(l);
          if (l.startsWith('ret ') || l.startsWith('end tables=')) {
            do cur++;
            while (cur < seg.length && seg[cur]!.op === 'init');
          }
        },
        { journal: true },
      );
      const tt = pgt !== null && pgt.journal !== null ? new TimeTravel(pgt) : null;
      let unit = -1;
      seg.forEach((op, i) => {
        if (op.op !== 'init') unit++;
        const src = (lines[op.line - 1] ?? op.op).trim();
        this.frames.push({
          title: `line ${op.line}: ${src}`,
          detail: outputs[i]!.filter((l) => !l.startsWith('table ') && !l.startsWith('leaf ')),
          tt,
          unit,
          ipas: 'ipa' in op ? [op.ipa] : [],
          access: -1,
        });
      });
    }
  }

  /** The changes of frame `i` (cached). */
  private changesOf(i: number): DescriptorChange[] {
    return this.render(i).changes;
  }

  /** Frame `i` as text lines (cached). */
  render(i: number): { text: string[]; changes: DescriptorChange[] } {
    const hit = this.cache.get(i);
    if (hit) return hit;
    const f = this.frames[i]!;
    const text = [`[${i}/${this.frames.length - 1}] ${f.title}`];
    for (const d of f.detail) text.push(`  ${d}`);
    let changes: DescriptorChange[] = [];
    // A replay's `init` is unit −1 of its table: nothing changed yet.
    if (f.tt !== null && f.unit >= 0) changes = f.tt.changes(f.unit);
    if (changes.length === 0) text.push('  no descriptor changed');
    else {
      text.push(`  ${changes.length} descriptor(s) changed:`);
      for (const c of changes) {
        const where = c.ipa === null ? `(unlinked table page ${c.page}, entry ${c.idx})` : hexAddr(c.ipa);
        text.push(
          `    L${c.level} ${where}  ${hex64(c.oldLo, c.oldHi)} → ${hex64(c.newLo, c.newHi)}${c.writes > 1 ? `  (${c.writes} writes)` : ''}`,
        );
        const ctx = f.tt!;
        text.push(`      was: ${new DescriptorView(c.oldLo, c.oldHi, c.level, ctx).text}`);
        text.push(`      now: ${new DescriptorView(c.newLo, c.newHi, c.level, ctx).text}`);
      }
    }
    if (this.prov !== null && f.access >= 0) {
      for (let r = 0; r < this.prov.length; r++) {
        const rec = this.prov.get(r);
        if (rec.access === f.access) text.push(`  why: ${formatProvenance(rec)}`);
      }
    }
    const out = { text, changes };
    this.cache.set(i, out);
    return out;
  }

  /** Whether frame `i` accessed or changed a descriptor covering `ipa`. */
  touches(i: number, ipa: number): boolean {
    const f = this.frames[i]!;
    if (f.ipas.some((a) => Math.floor(a / 4096) === Math.floor(ipa / 4096))) return true;
    if (f.tt === null) return false;
    // A table created or removed around the IPA does not count: a leaf there must change.
    const tableOrEmpty = (lo: number, hi: number, level: number): boolean =>
      (lo === 0 && hi === 0) || pteIsTable(lo, level);
    return this.changesOf(i).some(
      (c) =>
        c.ipa !== null &&
        c.ipa <= ipa &&
        ipa < c.ipa + f.tt!.geo.granuleSize(c.level) &&
        !(tableOrEmpty(c.oldLo, c.oldHi, c.level) && tableOrEmpty(c.newLo, c.newHi, c.level)),
    );
  }

  /** The first frame after `from` that touches `ipa`, or −1. */
  find(ipa: number, from: number): number {
    for (let i = from + 1; i < this.frames.length; i++) if (this.touches(i, ipa)) return i;
    return -1;
  }
}

/** A scenario step's operands as short text (its fields but index and kind). */
function describeStep(st: object): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(st)) {
    if (k === 'index' || k === 'kind') continue;
    parts.push(`${k}=${brief(v)}`);
  }
  return parts.join(' ');
}

function brief(v: unknown): string {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (typeof v === 'number') return v >= 4096 ? `0x${v.toString(16)}` : String(v);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `[${v.map(brief).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${describeStep(v)}}`;
  return String(v);
}

const HELP = 'keys: n/→/space next · p/← previous · g N jump · / IPA search · h help · q quit';

/**
 * The interactive walk: reads keys from `input` (raw terminal bytes or piped text), writes
 * frames through `write`. Keys: n, space, → (ESC [ C) next; p, ← (ESC [ D) previous;
 * `g N` + Enter jump; `/ IPA` + Enter search forwards; h help; q (or the end of input) quits.
 * Resolves to the exit status.
 */
export async function stepSession(
  model: StepModel,
  input: AsyncIterable<string | Buffer>,
  write: (text: string) => void,
): Promise<number> {
  let cur = 0;
  const show = (): void => write(model.render(cur).text.join('\n') + '\n');
  write(`${HELP}\n`);
  show();
  let line: string | null = null; // collecting `g N` or `/ IPA`
  let esc = '';
  const last = model.frames.length - 1;
  const go = (to: number): void => {
    if (to < 0 || to > last) {
      write(`(no frame ${to}: frames are 0..${last})\n`);
      return;
    }
    cur = to;
    show();
  };
  const command = (cmd: string): void => {
    const kind = cmd[0]!;
    const arg = cmd.slice(1).trim();
    if (kind === 'g') {
      const n = /^[0-9]+$/.test(arg) ? Number(arg) : NaN;
      if (Number.isNaN(n)) write(`g: expected a frame number, got "${arg}"\n`);
      else go(n);
      return;
    }
    let ipa: number;
    try {
      ipa = parseIpaArg('/', arg);
    } catch (e) {
      write(`${(e as Error).message}\n`);
      return;
    }
    const at = model.find(ipa, cur);
    if (at < 0) write(`/: no frame after ${cur} touches ${hexAddr(ipa)}\n`);
    else go(at);
  };
  for await (const chunk of input) {
    for (const ch of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
      if (esc !== '') {
        esc += ch;
        if (esc === '\x1b[C') go(cur + 1);
        else if (esc === '\x1b[D') go(cur - 1);
        if (esc.length >= 3 || (esc.length === 2 && ch !== '[')) esc = '';
        continue;
      }
      if (line !== null) {
        if (ch === '\r' || ch === '\n') {
          const cmd = line;
          line = null;
          write('\n');
          command(cmd);
        } else if (ch === '\x7f' || ch === '\b') {
          if (line.length > 1) line = line.slice(0, -1);
        } else {
          line += ch;
          write(ch);
        }
        continue;
      }
      if (ch === '\x1b') esc = ch;
      else if (ch === 'n' || ch === ' ') go(cur + 1);
      else if (ch === 'p') go(cur - 1);
      else if (ch === 'g' || ch === '/') {
        line = ch;
        write(ch);
      } else if (ch === 'h' || ch === '?') write(`${HELP}\n`);
      else if (ch === 'q' || ch === '\x03' || ch === '\x04') return 0;
    }
  }
  return 0;
}

/** The options of `step`. */
const STEP_OPTIONS = {
  at: { type: 'string' },
  until: { type: 'string' },
  kernel: { type: 'string' },
} as const;

/**
 * `s2emu step FILE [--at N | --until IPA] [--kernel V]`. Non-interactive with --at or --until
 * (or when standard input is not a terminal and holds no keys: the keys are read from it).
 * Returns the exit status (the interactive session sets process.exitCode when it ends).
 */
export function stepCommand(args: string[], common: CommonOptions): number {
  void common;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: STEP_OPTIONS,
  });
  if (positionals.length !== 1)
    throw new CliInputError(
      positionals.length === 0
        ? 'step: expected one FILE (a scenario or a replay script)'
        : `step: unexpected argument "${positionals[1]}"`,
    );
  if (values.at !== undefined && values.until !== undefined)
    throw new CliInputError('step: --at and --until cannot be used together');
  const kernel = values.kernel;
  if (kernel !== undefined && !(KERNEL_NAMES as readonly string[]).includes(kernel))
    throw new CliInputError(
      `step: --kernel: expected one of ${KERNEL_NAMES.map((k) => `"${k}"`).join(', ')}, got "${kernel}"`,
    );
  const input = loadInput(positionals[0]!, 'step');
  if (kernel !== undefined && input.kind === 'replay')
    throw new CliInputError('step: --kernel applies to scenarios only');
  const model = new StepModel(input, kernel as KernelName | undefined);
  const last = model.frames.length - 1;
  const out = (s: string): boolean => process.stdout.write(s);
  if (values.at !== undefined) {
    const n = /^[0-9]+$/.test(values.at) ? Number(values.at) : NaN;
    if (!(n >= 0 && n <= last))
      throw new CliInputError(`step: --at: expected a frame number from 0 to ${last}, got "${values.at}"`);
    out(model.render(n).text.join('\n') + '\n');
    return 0;
  }
  if (values.until !== undefined) {
    const ipa = parseIpaArg('step: --until', values.until);
    const hit = model.find(ipa, 0);
    const end = hit < 0 ? last : hit;
    for (let i = 1; i <= end; i++) out(model.render(i).text.join('\n') + '\n');
    if (hit < 0) {
      out(`no frame touches ${hexAddr(ipa)}\n`);
      return 1;
    }
    return 0;
  }
  const stdin = process.stdin;
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  void stepSession(model, stdin, out).then(
    (status) => {
      if (stdin.isTTY) stdin.setRawMode(false);
      stdin.pause();
      process.exitCode = status;
    },
    (e: unknown) => {
      process.stderr.write(`s2emu: internal error: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
  return 0;
}

/** The `step` entry of the CLI's command table. */
export const STEP_COMMAND = {
  usage: 'step FILE [--at N | --until IPA] [--kernel V]',
  run: stepCommand,
};
