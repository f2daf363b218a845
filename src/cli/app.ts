/**
 * The `s2emu` command line. Node lives here and only here: the core (src/pgtable, src/mmu,
 * src/scenario, src/replay) takes text and returns results.
 *
 * Exit status: 0 on success, 2 for bad input (a usage error, a bad replay line, a rejected
 * scenario), 1 for an internal failure. Bad input never prints a stack trace.
 */

import { parseArgs } from 'node:util';
import { ReplayError, parseReplay, runReplay } from '../replay/replay.js';
import pc from 'picocolors';
import { CliInputError, readInput } from './errors.js';
import { runCommand } from './run.js';

const USAGE = `Usage: s2emu <command> [options]

Commands:
  replay FILE|-                  run a replay script (replay-format.md) and print its output
  run FILE [--json] [--kernel V] run a scenario (scenario-format.md) and print a report
  help                           this text

Options:
  --json         (run) print the JSON lines of scenario-format.md instead of a report
  --kernel V     (run) model kernel "6.17" (default), "6.16" or "seed"
  --no-color     plain output
`;

function replayCommand(args: string[]): number {
  if (args.length !== 1) throw new CliInputError('replay: expected one FILE (or - for standard input)');
  const file = args[0]!;
  const text = readInput(file);
  // Parse everything first: a bad line is reported before any output.
  const ops = parseReplay(text);
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

/** Runs the CLI with `argv` (without node and the script). Returns the exit status. */
export function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean' },
      kernel: { type: 'string' },
      'no-color': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, ...rest] = positionals;
  if (values.help || cmd === undefined || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined && !values.help ? 2 : 0;
  }
  switch (cmd) {
    case 'replay':
      return replayCommand(rest);
    case 'run':
      return runCommand(rest, {
        json: values.json ?? false,
        kernel: values.kernel,
        color: !(values['no-color'] ?? false) && pc.isColorSupported,
      });
    default:
      throw new CliInputError(`unknown command '${cmd}' (expected replay, run or help)`);
  }
}

function isInputError(e: unknown): e is Error {
  if (!(e instanceof Error)) return false;
  if (e instanceof CliInputError || e instanceof ReplayError) return true;
  // parseArgs errors and scenario rejections carry a code or name we recognise.
  const code = (e as { code?: string }).code ?? '';
  return code.startsWith('ERR_PARSE_ARGS') || e.name === 'ScenarioError';
}

/** Entry point: maps errors to messages and exit statuses. */
export function cli(argv: string[]): void {
  try {
    process.exitCode = main(argv);
  } catch (e) {
    if (isInputError(e)) {
      process.stderr.write(`s2emu: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(
        `s2emu: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exitCode = 1;
    }
  }
}
