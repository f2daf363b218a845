/**
 * `s2emu sweep FILE --kernel 6.16,seed,6.17 --cpu grace,kunpeng-920 --granule 4K,64K`: runs
 * a scenario once per configuration of the matrix the options span (sweep-matrix.ts), each
 * configuration in a worker thread, and prints one row per configuration: a table, JSON lines
 * (`--json`) or CSV (`--csv`) (sweep-output.ts); `--html OUT.html` also writes the charts
 * (docs/sweep.md).
 *
 * The rows come back in matrix order, and each is computed from the file alone, so the output
 * is the same whichever number of workers (`--jobs`) ran it. A configuration that fails is a
 * row that says so. Exit status: 0 when every configuration ran clean (a refused memslot is
 * allowed, as for `run`), 1 when one was rejected, failed, or ran with KVM_RUN errors or
 * diagnostics (0 with `--allow-errors`), 2 for bad input.
 */

import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';
import type { MessagePort, ResourceLimits } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import pc from 'picocolors';
import { countAccesses } from '../scenario/run.js';
import type { CliCommand } from './app.js';
import { CliInputError, parseScenarioInput, readInput } from './errors.js';
import { renderHtmlReport, resultSections, writeHtmlFile } from './html.js';
import { DEFAULT_MAX_ACCESSES } from './run.js';
import { SWEEP_AXES, WORKER_EXITED, configRow, expandMatrix, parseAxisValues } from './sweep-matrix.js';
import type { AxisValues, ConfigRunOptions, SweepConfig, SweepRow } from './sweep-matrix.js';
import { sweepCsv, sweepJson, sweepTable } from './sweep-output.js';
import type { FromWorker, SweepWorkerData, ToWorker } from './sweep-worker.js';
import { s2emuVersion } from './version.js';

/** The options of `sweep`: one per axis, then the command's own. */
const SWEEP_OPTIONS = {
  ...Object.fromEntries(SWEEP_AXES.map((a) => [a.option, { type: 'string' as const }])),
  jobs: { type: 'string', short: 'j' },
  json: { type: 'boolean' },
  csv: { type: 'boolean' },
  html: { type: 'string' },
  'no-audit': { type: 'boolean' },
  'allow-errors': { type: 'boolean' },
  'max-accesses': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

/** The `sweep` entry of the CLI's command table. */
export const SWEEP_COMMAND: CliCommand = {
  usage: 'sweep FILE [--kernel A,B] [--cpu P,Q] [--granule G,H] [--jobs N] [--json|--csv] [--html OUT]',
  run(args, common) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: SWEEP_OPTIONS,
    });
    const v = values as Record<string, string | boolean | undefined>;
    const axes: AxisValues[] = [];
    for (const axis of SWEEP_AXES) {
      const text = v[axis.option];
      if (typeof text === 'string') axes.push({ axis, values: parseAxisValues(axis, text) });
    }
    return sweepCommand(positionals, {
      axes,
      jobs: v['jobs'] === undefined ? undefined : parseJobs(String(v['jobs'])),
      format: v['json'] ? (v['csv'] ? 'both' : 'json') : v['csv'] ? 'csv' : 'table',
      html: typeof v['html'] === 'string' ? v['html'] : undefined,
      audit: v['no-audit'] ? false : 'incremental',
      allowErrors: v['allow-errors'] === true,
      quiet: v['quiet'] === true,
      color: common.color,
      maxAccesses:
        v['max-accesses'] === undefined
          ? undefined
          : parsePositive('--max-accesses', String(v['max-accesses'])),
    });
  },
};

/** Options of the sweep command. */
export interface SweepCommandOptions {
  axes: readonly AxisValues[];
  /** Worker threads (default: as many as the machine has cores). */
  jobs: number | undefined;
  format: 'table' | 'json' | 'csv' | 'both';
  html: string | undefined;
  audit: ConfigRunOptions['audit'];
  allowErrors: boolean;
  quiet: boolean;
  color: boolean;
  maxAccesses: number | undefined;
  /** Where the output goes (default: standard output). */
  write?: (text: string) => void;
}

/** `--jobs N`: a whole number from 1 to 256. */
function parseJobs(v: string): number {
  const n = parsePositive('--jobs', v);
  if (n > 256) throw new CliInputError(`--jobs: expected at most 256 workers, got ${n}`);
  return n;
}

function parsePositive(what: string, v: string): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER))
    throw new CliInputError(`${what}: expected a positive whole number, got "${v}"`);
  return n;
}

/** Runs the command. Returns the exit status. */
export function sweepCommand(args: string[], opts: SweepCommandOptions): number {
  if (args.length === 0)
    throw new CliInputError('sweep: expected one scenario FILE (or - for standard input)');
  if (args.length > 1)
    throw new CliInputError(`sweep ${args[0]} ${args[1]}: unexpected argument "${args[1]}"`);
  if (opts.format === 'both') throw new CliInputError('sweep: --json and --csv cannot be used together');
  const file = args[0]!;
  const where = file === '-' ? '<stdin>' : file;
  const text = readInput(file);
  // The file as written must be a valid scenario: its errors are reported once, with line
  // numbers, instead of once per configuration.
  const base = parseScenarioInput(text, where);
  const raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as Record<string, unknown>;
  const perConfig = countAccesses(base);
  const max = opts.maxAccesses ?? DEFAULT_MAX_ACCESSES;
  if (perConfig > max)
    throw new CliInputError(
      `${where}: the scenario makes ${perConfig.toLocaleString('en-US')} accesses, more than the limit of ` +
        `${max.toLocaleString('en-US')}; allow it with --max-accesses ${perConfig}`,
    );
  const configs = expandMatrix(opts.axes);
  const jobs = Math.min(configs.length, opts.jobs ?? availableParallelism());

  // One bar over the whole matrix, in accesses, on a terminal only.
  const tty = process.stderr.isTTY === true && !opts.quiet;
  let bar: cliProgress.SingleBar | null = null;
  const done = new Array<number>(configs.length).fill(0);
  let sum = 0;
  let finished = 0;
  if (tty) {
    bar = new cliProgress.SingleBar(
      {
        format:
          'sweeping [{bar}] {percentage}% {configs}/{total_configs} configurations, {eta_formatted} left',
        clearOnComplete: true,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(1, perConfig * configs.length), 0, { configs: 0, total_configs: configs.length });
  }
  const progress = (index: number, n: number, complete: boolean): void => {
    if (bar === null) return;
    const now = complete ? perConfig : Math.min(n, perConfig);
    sum += now - done[index]!;
    done[index] = now;
    if (complete) finished++;
    bar.update(sum, { configs: finished });
  };
  let rows: SweepRow[];
  try {
    rows = runMatrix(raw, configs, { jobs, audit: opts.audit, progress: tty ? progress : undefined });
  } finally {
    bar?.stop();
  }

  const write = opts.write ?? ((t: string): void => void process.stdout.write(t));
  const axisNames = opts.axes.length
    ? SWEEP_AXES.filter((a) => opts.axes.some((x) => x.axis === a)).map((a) => a.name)
    : [];
  if (opts.format === 'json') write(sweepJson(rows, where, opts.axes));
  else if (opts.format === 'csv') write(sweepCsv(rows, axisNames));
  else write(sweepTable(rows, axisNames, opts.color ? pc : pc.createColors(false)));
  if (opts.html !== undefined) {
    const title = `s2emu sweep ${where}`;
    const axesText = opts.axes.map((a) => `${a.axis.name} ${a.values.join(', ')}`).join('; ') || 'no axes';
    writeHtmlFile(
      opts.html,
      renderHtmlReport(
        title,
        resultSections(rows),
        `s2emu ${s2emuVersion()}: ${configs.length} configuration(s) over ${axesText}`,
      ),
    );
  }
  const bad = rows.some((r) => r.status === 'errors' || r.status === 'rejected' || r.status === 'failed');
  return bad && !opts.allowErrors ? 1 : 0;
}

/** Options of runMatrix. */
export interface MatrixOptions {
  /** Worker threads (at least 1; no more are started than there are configurations). */
  jobs: number;
  audit: ConfigRunOptions['audit'];
  /** Progress of configuration `index`: `done` accesses so far, or `complete`. */
  progress?: ((index: number, done: number, complete: boolean) => void) | undefined;
  /** Every worker's resource limits (tests use a small heap to make one run out of memory). */
  resourceLimits?: ResourceLimits | undefined;
  /**
   * Milliseconds without a word from any worker (a row, progress, an exit) after which the
   * sweep gives up and throws, naming the configurations in hand. Unset (the CLI): wait as long
   * as the configurations take, since one without progress reporting says nothing until done.
   * Tests set it, so that a pool that stopped hearing its workers fails instead of hanging.
   */
  stallMs?: number | undefined;
}

/**
 * The supervisor thread's code (CommonJS, evaluated, so the same in the build and from the
 * sources): it starts the sweep workers the main thread asks for and, from its own event
 * loop, reports each one's exit on its port, then marks the worker's state word and wakes the
 * main thread. A worker's own exit hook would not run when it is stopped at its heap limit
 * (ERR_WORKER_OUT_OF_MEMORY), and the main thread, blocked in Atomics.wait(), never runs the
 * event loop that would deliver the Worker's 'exit' event: without the supervisor that
 * configuration would be waited for forever. Closing the port stops the remaining workers.
 */
const SUPERVISOR = `
const { Worker, workerData } = require('node:worker_threads');
const signal = new Int32Array(workerData.signal);
const port = workerData.port;
const live = new Set();
const text = (e) => String(e && e.message ? e.message : e);
const exited = (id, code, why) => {
  port.postMessage({ id, code, why });
  Atomics.store(signal, 1 + id, ${WORKER_EXITED});
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
};
port.on('message', (m) => {
  const opts = { workerData: m.data, transferList: [m.data.port], resourceLimits: m.resourceLimits };
  let w;
  try {
    w = m.code !== undefined ? new Worker(m.code, { ...opts, eval: true }) : new Worker(new URL(m.url), opts);
  } catch (e) {
    exited(m.id, 1, text(e));
    return;
  }
  live.add(w);
  let why = '';
  w.on('error', (e) => { why = text(e); });
  w.on('exit', (code) => {
    live.delete(w);
    exited(m.id, code, why);
  });
});
port.on('close', () => { for (const w of live) void w.terminate(); });
`;

/** What the supervisor reports when a worker has exited. */
interface WorkerExit {
  id: number;
  code: number;
  /** The worker's uncaught error (its message), or empty. */
  why: string;
}

/** One worker slot of the pool. */
interface PoolSlot {
  port: MessagePort;
  /** The configuration it is running, or −1. */
  busy: number;
  /** It has exited (and its exit has been dealt with). */
  gone: boolean;
}

/**
 * Runs every configuration of the matrix over `raw` (the scenario file's object) in a pool of
 * `jobs` worker threads, each taking the next configuration when it finishes one. Blocks until
 * all are done (the main thread sleeps in Atomics.wait between messages), so the command stays
 * synchronous. A worker that dies while running a configuration (its heap limit, a crash)
 * makes that configuration's row `failed`, saying why, and a new worker takes its place.
 * Returns the rows in matrix order.
 */
export function runMatrix(
  raw: Record<string, unknown>,
  configs: readonly SweepConfig[],
  opts: MatrixOptions,
): SweepRow[] {
  const rows = new Array<SweepRow | undefined>(configs.length);
  if (configs.length === 0) return [];
  const n = Math.max(1, Math.min(opts.jobs, configs.length));
  const signal = new Int32Array(new SharedArrayBuffer(4 * (1 + n)));
  const control = new MessageChannel();
  // The main thread never runs its event loop while the sweep lasts: nothing may keep the
  // process alive after it (the supervisor ends when its port closes, each worker once told
  // to stop).
  const supervisor = new Worker(SUPERVISOR, {
    eval: true,
    workerData: { signal: signal.buffer, port: control.port2 },
    transferList: [control.port2],
  });
  supervisor.unref();
  const pool: PoolSlot[] = [];
  let next = 0;
  let received = 0;
  const send = (w: PoolSlot): void => {
    const m: ToWorker = next < configs.length ? { type: 'run', config: configs[next]! } : { type: 'stop' };
    w.busy = next < configs.length ? next++ : -1;
    w.port.postMessage(m);
  };
  /** Has the supervisor start worker `id` (a new one in that slot) and gives it work. */
  const start = (id: number): void => {
    const { port1, port2 } = new MessageChannel();
    Atomics.store(signal, 1 + id, 0);
    const data: SweepWorkerData = {
      sweepWorker: true,
      id,
      raw,
      audit: opts.audit,
      progress: opts.progress !== undefined,
      signal: signal.buffer as SharedArrayBuffer,
      port: port2,
    };
    control.port1.postMessage({ id, ...workerEntry(), data, resourceLimits: opts.resourceLimits }, [port2]);
    const w: PoolSlot = { port: port1, busy: -1, gone: false };
    pool[id] = w;
    send(w);
  };
  const exits = new Map<number, WorkerExit>();
  let heard = Date.now();
  try {
    for (let id = 0; id < n; id++) start(id);
    while (received < configs.length) {
      const seen = Atomics.load(signal, 0);
      let got = false;
      for (let id = 0; id < pool.length; id++) {
        const w = pool[id]!;
        if (w.gone) continue;
        // Read the exit state before draining: a worker's messages are queued before it exits.
        const exited = Atomics.load(signal, 1 + id) === WORKER_EXITED;
        let msg: { message: FromWorker } | undefined;
        while ((msg = receiveMessageOnPort(w.port) as { message: FromWorker } | undefined) !== undefined) {
          got = true;
          const m = msg.message;
          if (m.type === 'fatal') throw new Error(m.message);
          if (m.type === 'progress') opts.progress?.(m.index, m.done, false);
          else {
            rows[m.row.index] = m.row;
            received++;
            opts.progress?.(m.row.index, 0, true);
            send(w);
          }
        }
        if (!exited) continue;
        got = true;
        w.gone = true;
        w.port.close();
        let e: { message: WorkerExit } | undefined;
        while ((e = receiveMessageOnPort(control.port1) as { message: WorkerExit } | undefined) !== undefined)
          exits.set(e.message.id, e.message);
        if (w.busy < 0) continue;
        // It died with a configuration in hand: that row says why, and a new worker goes on.
        const x = exits.get(id);
        const why = x?.why || `exit code ${x?.code ?? 'unknown'}`;
        const c = configs[w.busy]!;
        rows[c.index] = configRow(
          c,
          'failed',
          [`the worker running this configuration stopped: ${why}`],
          null,
        );
        received++;
        opts.progress?.(c.index, 0, true);
        w.busy = -1;
        if (next < configs.length) start(id);
      }
      if (got) heard = Date.now();
      else if (opts.stallMs !== undefined && Date.now() - heard >= opts.stallMs) {
        const inHand = pool.filter((w) => !w.gone && w.busy >= 0).map((w) => configs[w.busy]!.index);
        throw new Error(
          `sweep: no worker reported anything for ${opts.stallMs} ms ` +
            `(configuration(s) in hand: ${inHand.join(', ') || 'none'})`,
        );
      } else Atomics.wait(signal, 0, seen, Math.min(1000, opts.stallMs ?? 1000));
    }
  } finally {
    for (const w of pool) if (!w.gone) w.port.close();
    // Closing the supervisor's port stops it and any worker still running.
    control.port1.close();
  }
  return rows as SweepRow[];
}

/**
 * Where a worker starts: from the build (dist/cli/sweep.js), sweep-worker.js beside this file.
 * Run from the sources (tsx, vitest) it is sweep-worker.ts, which a worker thread cannot load by
 * itself (it does not inherit the parent's loader, and `--import tsx` in its execArgv is not
 * applied in Node 20): a small bootstrap loads it through tsx's API. Returns the module URL or
 * the bootstrap's code.
 */
function workerEntry(): { url: string } | { code: string } {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return { url: new URL('./sweep-worker.js', here).href };
  const entry = new URL('./sweep-worker.ts', here).href;
  return {
    code: `import(${JSON.stringify(tsxApiUrl(here))}).then((m) => m.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(here)}));`,
  };
}

/**
 * The file URL of tsx's ES-module API (`tsx/esm/api`, its "import" export), found from this
 * file (createRequire() alone would give the CommonJS twin, which cannot register the hooks
 * from an ES-module import). Returns the URL.
 */
function tsxApiUrl(from: string): string {
  const require = createRequire(from);
  const pkgFile = require.resolve('tsx/package.json');
  const pkg = require(pkgFile) as { exports: Record<string, { import: { default: string } }> };
  return new URL(pkg.exports['./esm/api']!.import.default, pathToFileURL(pkgFile)).href;
}
