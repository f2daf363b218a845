/**
 * `npm run bench -- --alloc-sites`: where a case allocates, when its B/op is not zero. V8's
 * sampling heap profiler (through node:inspector) records the JavaScript stack of a sample of
 * the allocations made over a few batches; this sums them by the function that allocated and
 * its caller. Stacks are V8's physical frames: a function inlined into another counts as the
 * one it was inlined into, so a boxed argument shows up in the caller that passed it.
 */

import { Session } from 'node:inspector/promises';
import type { BenchCase } from './harness.js';

/** One allocation site: `fn (file) ← caller`, and the bytes per op it allocated. */
export interface AllocSite {
  site: string;
  bytesPerOp: number;
}

interface ProfileNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: ProfileNode[];
}

const BATCHES = 3;
/** One sample per this many bytes on average: fine enough for a 16-byte heap number per op. */
const SAMPLING_INTERVAL = 64;

function frameName(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url.split('/').pop() ?? f.url;
  return `${f.functionName || '(anonymous)'} (${file})`;
}

/** Whether a frame belongs to the measurement (the inspector, Node's internals), not the case. */
function isHarness(n: ProfileNode): boolean {
  const url = n.callFrame.url;
  return url === '' || url.startsWith('node:') || url.endsWith('/allocsites.ts');
}

/** Sites below this are left out: a single sample somewhere in a batch, not a per-op cost. */
const MIN_BYTES_PER_OP = 0.1;

/** Warm-up batches before sampling, so that what is sampled is the steady state. */
const WARM_BATCHES = 10;

/**
 * Sets the case up afresh, warms it up, then runs a few batches under the sampling heap
 * profiler. Returns the `top` sites by bytes per op (from 0.1 up), largest first.
 */
export async function allocationSites<S>(c: BenchCase<S>, top = 5): Promise<AllocSite[]> {
  const state = c.setup();
  for (let i = 0; i < WARM_BATCHES; i++) {
    c.reset(state);
    c.run(state);
  }
  const session = new Session();
  session.connect();
  const bytes = new Map<string, number>();
  const visit = (n: ProfileNode, caller: string): void => {
    const name = frameName(n);
    if (n.selfSize > 0 && !isHarness(n)) {
      const key = `${name} ← ${caller}`;
      bytes.set(key, (bytes.get(key) ?? 0) + n.selfSize);
    }
    for (const child of n.children) visit(child, name);
  };
  try {
    // One profile per batch, the reset outside it: only the batch's allocations count.
    for (let i = 0; i < BATCHES; i++) {
      c.reset(state);
      await session.post('HeapProfiler.startSampling', {
        samplingInterval: SAMPLING_INTERVAL,
        includeObjectsCollectedByMinorGC: true,
        includeObjectsCollectedByMajorGC: true,
      });
      c.run(state);
      const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
        profile: { head: ProfileNode };
      };
      visit(profile.head, '(root)');
    }
    const ops = BATCHES * c.opsPerCall;
    return [...bytes.entries()]
      .map(([site, b]) => ({ site, bytesPerOp: b / ops }))
      .filter((s) => s.bytesPerOp >= MIN_BYTES_PER_OP)
      .sort((a, b) => b.bytesPerOp - a.bytesPerOp)
      .slice(0, top);
  } finally {
    session.disconnect();
  }
}
