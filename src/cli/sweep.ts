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
import type { MessagePort } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import pc from 'picocolors';
import { countAccesses } from '../scenario/run.js';
import type { CliCommand } from './app.js';
import { CliInputError, parseScenarioInput, readInput } from './errors.js';
import { renderHtmlReport, resultSections, writeHtmlFile } from './html.js';
import { DEFAULT_MAX_ACCESSES } from './run.js';
import { SWEEP_AXES, WORKER_EXITED, expandMatrix, parseAxisValues } from './sweep-matrix.js';
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
}

/**
 * Runs every configuration of the matrix over `raw` (the scenario file's object) in a pool of
 * `jobs` worker threads, each taking the next configuration when it finishes one. Blocks until
 * all are done (the main thread sleeps in Atomics.wait between messages), so the command stays
 * synchronous. Returns the rows in matrix order.
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
  const pool: { worker: Worker; port: MessagePort; busy: number }[] = [];
  let next = 0;
  let received = 0;
  const send = (w: (typeof pool)[number]): void => {
    const m: ToWorker = next < configs.length ? { type: 'run', config: configs[next]! } : { type: 'stop' };
    w.busy = next < configs.length ? next++ : -1;
    w.port.postMessage(m);
  };
  try {
    for (let id = 0; id < n; id++) {
      const { port1, port2 } = new MessageChannel();
      const data: SweepWorkerData = {
        sweepWorker: true,
        id,
        raw,
        audit: opts.audit,
        progress: opts.progress !== undefined,
        signal: signal.buffer as SharedArrayBuffer,
        port: port2,
      };
      const worker = startWorker(data, [port2]);
      // The main thread never runs its event loop while the sweep lasts: nothing may keep the
      // process alive after it (each worker exits once told to stop).
      worker.unref();
      const w = { worker, port: port1, busy: -1 };
      pool.push(w);
      send(w);
    }
    while (received < configs.length) {
      const seen = Atomics.load(signal, 0);
      let got = false;
      for (const [id, w] of pool.entries()) {
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
        if (exited && w.busy >= 0)
          throw new Error(`sweep worker exited while running configuration ${w.busy}`);
      }
      if (!got) Atomics.wait(signal, 0, seen, 1000);
    }
  } finally {
    for (const w of pool) {
      if (w.busy >= 0) void w.worker.terminate();
      w.port.close();
    }
  }
  return rows as SweepRow[];
}

/**
 * Starts one worker. From the build (dist/cli/sweep.js) the entry is sweep-worker.js beside
 * this file. Run from the sources (tsx, vitest) it is sweep-worker.ts, which a worker thread
 * cannot load by itself (it does not inherit the parent's loader, and `--import tsx` in its
 * execArgv is not applied in Node 20): a small bootstrap loads it through tsx's API, having
 * first hooked the thread's exit, so that a worker that fails to load is seen as exited.
 */
function startWorker(data: SweepWorkerData, transfer: MessagePort[]): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts'))
    return new Worker(new URL('./sweep-worker.js', here), { workerData: data, transferList: transfer });
  const entry = new URL('./sweep-worker.ts', here).href;
  const boot = [
    "const d = require('node:worker_threads').workerData;",
    'const s = new Int32Array(d.signal);',
    `process.on('exit', () => { Atomics.store(s, 1 + d.id, ${WORKER_EXITED}); Atomics.add(s, 0, 1); Atomics.notify(s, 0); });`,
    `import(${JSON.stringify(tsxApiUrl(here))}).then((m) => m.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(here)}));`,
  ].join('\n');
  return new Worker(boot, { eval: true, workerData: data, transferList: transfer });
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
