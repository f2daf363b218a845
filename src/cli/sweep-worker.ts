/**
 * The entry of one sweep worker thread (sweep.ts has as many started as it runs at once). It
 * is handed the scenario file's object, the run options, a MessagePort and a shared signal
 * word; it runs each configuration the port sends it and posts back progress and the row.
 *
 * The main thread waits for it with Atomics.wait() and reads the port with
 * receiveMessageOnPort(), so the sweep stays a synchronous command like the others: after
 * every message it posts, the worker bumps the signal word and wakes the main thread. Its
 * exit, however it comes (a normal stop, a crash, a module that does not load, the heap
 * limit), is reported by the supervisor thread that started it (sweep.ts), which runs an
 * event loop and so sees the exit even when no code of this worker can run any more.
 */

import { workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import type { ConfigRunOptions, SweepConfig, SweepRow } from './sweep-matrix.js';

/** What the main thread hands each worker (workerData). */
export interface SweepWorkerData {
  /** Marks a sweep worker's data (a test runner's own worker threads have workerData too). */
  sweepWorker: true;
  /** This worker's number: its state word is `signal[1 + id]`. */
  id: number;
  /** The scenario file's object (every configuration starts from a copy). */
  raw: Record<string, unknown>;
  audit: ConfigRunOptions['audit'];
  /** Whether to post progress messages (a progress bar is shown). */
  progress: boolean;
  /** Int32 words: [0] bumped after every message; [1 + id] = WORKER_EXITED (2) once exited (set by the supervisor). */
  signal: SharedArrayBuffer;
  port: MessagePort;
}

/** Main thread → worker. */
export type ToWorker = { type: 'run'; config: SweepConfig } | { type: 'stop' };

/** Worker → main thread. */
export type FromWorker =
  | { type: 'progress'; index: number; done: number }
  | { type: 'row'; row: SweepRow }
  | { type: 'fatal'; message: string };

const data = workerData as Partial<SweepWorkerData> | null;
if (data !== null && typeof data === 'object' && data.sweepWorker === true)
  void serve(data as SweepWorkerData);

/** Wakes the main thread: one more message (or an exit) to look at. */
function ring(signal: Int32Array): void {
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
}

async function serve(d: SweepWorkerData): Promise<void> {
  const signal = new Int32Array(d.signal);
  const post = (m: FromWorker): void => {
    d.port.postMessage(m);
    ring(signal);
  };
  let matrix: typeof import('./sweep-matrix.js');
  try {
    matrix = await import('./sweep-matrix.js');
  } catch (e) {
    post({ type: 'fatal', message: `sweep worker: ${e instanceof Error ? e.message : String(e)}` });
    d.port.close();
    return;
  }
  d.port.on('message', (m: ToWorker) => {
    if (m.type === 'stop') {
      d.port.close();
      return;
    }
    const index = m.config.index;
    const row = matrix.runConfig(d.raw, m.config, {
      audit: d.audit,
      ...(d.progress ? { progress: (done: number) => post({ type: 'progress', index, done }) } : {}),
    });
    post({ type: 'row', row });
  });
}
