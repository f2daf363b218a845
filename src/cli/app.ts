/**
 * The `s2emu` command line. Node lives here and only here: the core (src/pgtable, src/mmu,
 * src/scenario, src/replay) takes text and returns results.
 *
 * Exit status: 0 on success, 2 for bad input (a usage error, a bad replay line, a rejected
 * scenario), 1 for an internal failure (one line naming the version; the stack only with
 * --debug). Bad input never prints a stack trace. A reader that closes standard output early
 * (`| head -1`) ends the process quietly with status 0, as Unix tools do.
 */

import { parseArgs } from 'node:util';
import { ReplayError, parseReplay, runReplay } from '../replay/replay.js';
import pc from 'picocolors';
import { CliInputError, readInput } from './errors.js';
import { parseBreak } from './break.js';
import { EXPLAIN_COMMAND } from './explain.js';
import { PTDUMP_COMMAND } from './ptdump.js';
import { runCommand } from './run.js';
import { STEP_COMMAND } from './step.js';
import { DIFF_COMMAND } from './diff.js';
import { SWEEP_COMMAND } from './sweep.js';
import { TRACE_COMMAND } from './trace.js';
import { s2emuVersion } from './version.js';

const USAGE = `Usage: s2emu <command> [options]

Commands:
  run FILE                 run a scenario and print a report (docs/scenario.md)
  replay FILE|-            run a replay script and print its output (docs/replay.md)
  ptdump FILE              the stage-2 table as debugfs prints it (docs/debugging.md)
  explain FILE ADDR        one address walked level by level, and why (docs/debugging.md)
  step FILE                walk a run one access or operation at a time (docs/time-travel.md)
  diff FILE --kernel A --vs B | --cpu A --vs B | FILE1 FILE2
                           where two runs differ, access by access (docs/time-travel.md)
  trace FILE --host HOST.json
                           replay a KVM tracepoint trace on a modelled host (docs/trace.md)
  sweep FILE --kernel A,B --cpu P,Q --granule G,H ...
                           run every configuration of a matrix (docs/sweep.md)
  help                     this text

Exit status: 0 ran, nothing went wrong on the host side; 1 ran, but KVM_RUN failed or a
diagnostic fired; 2 rejected input (a usage error, a bad file).

Options:
  --json         (run, trace, diff, ptdump, explain, sweep) JSON lines for tools
  --kernel V     (run, trace, ...) model kernel "6.17" (default), "6.16", "seed" or "v7"
  --no-audit     (run) skip the host-consistency audit after each step (docs/scenario.md)
  --allow-errors (run) exit 0 even when KVM_RUN failed or a diagnostic fired
  --max-accesses N  (run) allow a scenario of more than 2^30 accesses
  --quiet        (run, sweep) no progress bar
  --html OUT     (run, sweep, trace, diff) also write charts as one self-contained page
  --break IPA    (run) stop in user_mem_abort() under the inspector when IPA faults (docs/debugging.md)
  --break-step N (run) the same, at the first fault of step N
  --at N         (ptdump, explain, step) the state after step N
  --wide         (ptdump) one run per line with OA, memory types, SH, CONT, SW bits
  --jobs N       (sweep) worker threads (default: one per core)
  --no-color     plain output
  --debug        print the stack of an internal error
  -V, --version  print s2emu's version
  -h, --help     this text

The scenario format is described in docs/scenario.md, the replay format in docs/replay.md.
`;

function replayCommand(
  args: string[],
  opts: {
    json?: boolean;
    kernel?: string;
    'no-audit'?: boolean;
    'allow-errors'?: boolean;
    'max-accesses'?: string;
    quiet?: boolean;
    html?: string;
    break?: string;
    'break-step'?: string;
  },
): number {
  if (opts.kernel !== undefined) throw new CliInputError('replay: --kernel applies to run only');
  if (opts.json !== undefined) throw new CliInputError('replay: --json applies to run only');
  for (const o of [
    'no-audit',
    'allow-errors',
    'max-accesses',
    'quiet',
    'html',
    'break',
    'break-step',
  ] as const)
    if (opts[o] !== undefined) throw new CliInputError(`replay: --${o} applies to run only`);
  if (args.length === 0) throw new CliInputError('replay: expected one FILE (or - for standard input)');
  if (args.length > 1)
    throw new CliInputError(`replay ${args[0]} ${args[1]}: unexpected argument "${args[1]}"`);
  const file = args[0]!;
  const text = readInput(file);
  // Parse everything first: a bad line is reported before any output, in the editor's
  // FILE:LINE: format.
  let ops: ReturnType<typeof parseReplay>;
  try {
    ops = parseReplay(text);
  } catch (e) {
    if (e instanceof ReplayError)
      throw new CliInputError(`${file === '-' ? '<stdin>' : file}:${e.line}: ${e.detail}`);
    throw e;
  }
  const buf: string[] = [];
  const flushEvery = 4096;
  const write = (l: string): void => {
    buf.push(l);
    if (buf.length >= flushEvery) {
      process.stdout.write(buf.join('\n') + '\n');
      buf.length = 0;
    }
  };
  runReplay(ops, write);
  if (buf.length) process.stdout.write(buf.join('\n') + '\n');
  return 0;
}

/**
 * One command of the CLI: its one-line usage, and its handler, which receives the arguments
 * after the command name (options included: each command parses its own with parseArgs,
 * strict) and the options every command shares. Returns the exit status.
 */
export interface CliCommand {
  usage: string;
  run(args: string[], common: CommonOptions): number;
}

/** The options every command accepts (parsed before dispatch). */
export interface CommonOptions {
  /** Colour output (not --no-color, and the terminal supports it). */
  color: boolean;
  /** --debug: print the stack of an internal error. */
  debug: boolean;
}

/** The options of `run`. */
const RUN_OPTIONS = {
  json: { type: 'boolean' },
  kernel: { type: 'string' },
  'no-audit': { type: 'boolean' },
  'allow-errors': { type: 'boolean' },
  'max-accesses': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  html: { type: 'string' },
  break: { type: 'string' },
  'break-step': { type: 'string' },
} as const;

/**
 * The commands, by name. A new command adds one entry here (its handler lives in its own
 * module under src/cli) and one line to USAGE.
 */
export const COMMANDS: Record<string, CliCommand> = {
  step: STEP_COMMAND,
  diff: DIFF_COMMAND,
  sweep: SWEEP_COMMAND,
  trace: TRACE_COMMAND,
  ptdump: PTDUMP_COMMAND,
  explain: EXPLAIN_COMMAND,
  replay: {
    usage: 'replay FILE|-',
    run(args) {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        strict: true,
        options: RUN_OPTIONS,
      });
      return replayCommand(positionals, values);
    },
  },
  run: {
    usage: 'run FILE [--json] [--kernel V]',
    run(args, common) {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        strict: true,
        options: RUN_OPTIONS,
      });
      return runCommand(positionals, {
        json: values.json ?? false,
        kernel: values.kernel,
        color: common.color,
        audit: !(values['no-audit'] ?? false),
        allowErrors: values['allow-errors'] ?? false,
        quiet: values.quiet ?? false,
        html: values.html,
        breakAt: parseBreak(values.break, values['break-step']),
        ...(values['max-accesses'] !== undefined ? { maxAccesses: maxAccesses(values['max-accesses']) } : {}),
      });
    },
  },
};

/** The options accepted anywhere on the line, whatever the command. */
const GLOBAL_FLAGS = new Set(['--no-color', '--debug', '--help', '-h', '--version', '-V']);

/** Runs the CLI with `argv` (without node and the script). Returns the exit status. */
export function main(argv: string[]): number {
  // The command is the first argument that is not a global flag; global flags may come
  // anywhere and are removed before the command parses its own options.
  const rest = argv.filter((a) => !GLOBAL_FLAGS.has(a));
  const has = (...f: string[]): boolean => argv.some((a) => f.includes(a));
  const cmd = rest[0]?.startsWith('-') ? undefined : rest[0];
  if (has('--version', '-V')) {
    process.stdout.write(`s2emu ${s2emuVersion()}\n`);
    return 0;
  }
  if (has('--help', '-h') || cmd === undefined || cmd === 'help') {
    if (cmd === undefined && rest.length > 0) {
      // An option before any command: let parseArgs name it, as it would after one.
      parseArgs({ args: rest, allowPositionals: true, strict: true, options: {} });
    }
    process.stdout.write(USAGE);
    return cmd === undefined && !has('--help', '-h') ? 2 : 0;
  }
  const command = COMMANDS[cmd];
  if (command === undefined || !Object.hasOwn(COMMANDS, cmd))
    throw new CliInputError(
      `unknown command '${cmd}' (expected ${Object.keys(COMMANDS).join(', ')} or help)`,
    );
  const common: CommonOptions = {
    color: !has('--no-color') && pc.isColorSupported,
    debug: has('--debug'),
  };
  try {
    return command.run(rest.slice(1), common);
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw new CliInputError(unknownOption(cmd, (e as Error).message));
    throw e;
  }
}

/**
 * parseArgs' "Unknown option '--at'. To specify a positional argument…" said for this CLI:
 * the option, the command that does not take it, and the commands that do (from USAGE's
 * option lines, which name them in parentheses). Returns the message.
 */
function unknownOption(cmd: string, parseMessage: string): string {
  const opt = /'([^']+)'/.exec(parseMessage)?.[1] ?? '?';
  const line = USAGE.split('\n').find((l) => l.trimStart().startsWith(`${opt} `));
  const takers = line === undefined ? undefined : /\(([a-z]+(?:, [a-z]+)*)\)/.exec(line)?.[1];
  return (
    `${cmd}: unknown option '${opt}'` +
    (takers !== undefined ? ` (an option of ${takers})` : ' (s2emu --help lists the options)')
  );
}

/** `--max-accesses N`: a positive whole number (decimal or 0x hex). */
function maxAccesses(v: string): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER))
    throw new CliInputError(`--max-accesses: expected a positive whole number, got "${v}"`);
  return n;
}

function isInputError(e: unknown): e is Error {
  if (!(e instanceof Error)) return false;
  if (e instanceof CliInputError || e instanceof ReplayError) return true;
  // parseArgs errors and scenario rejections carry a code or name we recognise.
  const code = (e as { code?: string }).code ?? '';
  return code.startsWith('ERR_PARSE_ARGS') || e.name === 'ScenarioError';
}

/**
 * A closed standard output (EPIPE: the reader, e.g. `head -1`, has exited) ends the process
 * quietly with status 0; any other output error is reported as an internal error.
 */
function onStdoutError(e: NodeJS.ErrnoException): void {
  if (e.code === 'EPIPE') process.exit(0);
  process.stderr.write(`s2emu: internal error (s2emu ${s2emuVersion()}): standard output: ${e.message}\n`);
  process.exit(1);
}

/** Whether the EPIPE handler is installed (once per process, however often cli() runs). */
let stdoutWatched = false;

/** Entry point: maps errors to messages and exit statuses. */
export function cli(argv: string[]): void {
  if (!stdoutWatched) {
    process.stdout.on('error', onStdoutError);
    stdoutWatched = true;
  }
  const debug = argv.includes('--debug');
  try {
    process.exitCode = main(argv);
  } catch (e) {
    if ((e as NodeJS.ErrnoException | undefined)?.code === 'EPIPE') {
      process.exitCode = 0;
    } else if (isInputError(e)) {
      process.stderr.write(`s2emu: ${printable(e.message)}\n`);
      process.exitCode = 2;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      process.stderr.write(`s2emu: internal error (s2emu ${s2emuVersion()}): ${printable(msg)}\n`);
      if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
      else process.stderr.write('s2emu: run again with --debug for the stack\n');
      process.exitCode = 1;
    }
  }
}

/**
 * A message made safe for a terminal: control characters (escape sequences from a garbage
 * input file, for one) become \xNN escapes, so bad bytes are never echoed raw.
 */
export function printable(s: string): string {
  return s.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}
