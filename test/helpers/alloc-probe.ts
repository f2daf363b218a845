/**
 * Heap bytes per fault of the benchmark's fault workloads, in the steady state (the least of
 * seven batches after thirty of warm-up), printed as one JSON object { case: bytesPerFault }. Run by test/alloc.test.ts in a child process:
 *
 *   node --expose-gc --single-threaded --min-semi-space-size=64 --max-semi-space-size=64 \
 *        --import tsx test/helpers/alloc-probe.ts [case...]
 *
 * --expose-gc for gc(); a fixed young generation so that no scavenge hides allocation inside a
 * batch; --single-threaded so that no background compilation lands its objects in a measured
 * batch. Every case runs in the same process, after the others, as a library user's would:
 * the type feedback is mixed, and V8 inlines less.
 */
import { faultCases } from '../../bench/fault.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('alloc-probe: run with --expose-gc');

const WARM_BATCHES = 30;
const BATCHES = 7;
/**
 * Cases with fewer faults per batch are left out unless named: a 1G fault is 16 to a batch,
 * and a few hundred bytes of V8's own bookkeeping in a batch would read as tens per fault.
 */
const MIN_OPS = 1000;

/** The probe's own check: a batch that allocates one small object per op must show it. */
const SELF_CHECK = 'self-check/one-object-per-op';

interface ProbeCase {
  name: string;
  opsPerCall: number;
  setup(): unknown;
  reset(s: unknown): void;
  run(s: unknown): void;
}

const kept: unknown[] = [];
const selfCheck: ProbeCase = {
  name: SELF_CHECK,
  opsPerCall: 16384,
  setup: () => null,
  reset: () => {
    kept.length = 0;
  },
  run: () => {
    for (let i = 0; i < 16384; i++) kept.push({ i });
  },
};

const wanted = process.argv.slice(2);
const cases: ProbeCase[] = [
  ...(faultCases(true) as unknown as ProbeCase[]).filter((c) =>
    wanted.length === 0 ? c.opsPerCall >= MIN_OPS : wanted.includes(c.name),
  ),
  selfCheck,
];

// What the measurement itself allocates (process.memoryUsage() builds objects).
let overhead = Infinity;
for (let i = 0; i < 5; i++) {
  gc();
  const before = process.memoryUsage().heapUsed;
  overhead = Math.min(overhead, process.memoryUsage().heapUsed - before);
}

const out: Record<string, number> = {};
for (const c of cases) {
  const s = c.setup();
  for (let i = 0; i < WARM_BATCHES; i++) {
    c.reset(s);
    c.run(s);
  }
  const per: number[] = [];
  for (let i = 0; i < BATCHES; i++) {
    c.reset(s);
    gc();
    const before = process.memoryUsage().heapUsed;
    c.run(s);
    per.push((process.memoryUsage().heapUsed - before - overhead) / c.opsPerCall);
  }
  // The least of the batches: an allocation per fault shows in every batch, while what V8
  // does on its own account (tiering a function up, GC bookkeeping) only ever adds to some.
  out[c.name] = Math.max(0, Math.min(...per));
}
process.stdout.write(JSON.stringify(out) + '\n');
