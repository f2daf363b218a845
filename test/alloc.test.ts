/**
 * The fault path allocates nothing per fault in the steady state (the issue's last "done
 * when"). A child process (test/helpers/alloc-probe.ts) runs the benchmark's fault workloads
 * one after another in one V8 heap (anonymous 4K, THP, hugetlbfs, copy-on-write through the
 * MMU notifier, PFNMAP device memory, dirty-logging permission faults and block splits,
 * access-flag faults, an MTE guest, a CPU without FWB, 64K pages, RAM at 16 TiB where every pfn
 * is past 2^32, a GPU's memory at 64 TiB), warms each up, and reports the heap bytes per fault
 * of the least of seven batches: a per-fault allocation shows in every batch, while V8's own
 * work (tiering, GC bookkeeping) only adds to some. Bytes, not time: nothing here is timed.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const probe = fileURLToPath(new URL('./helpers/alloc-probe.ts', import.meta.url));

function runProbe(): Record<string, number> {
  const out = execFileSync(
    process.execPath,
    [
      '--expose-gc',
      '--single-threaded',
      '--min-semi-space-size=64',
      '--max-semi-space-size=64',
      '--import',
      'tsx',
      probe,
    ],
    { cwd: root, encoding: 'utf8', timeout: 300_000 },
  );
  return JSON.parse(out) as Record<string, number>;
}

describe('allocation on the fault path', () => {
  it('is zero per fault in the steady state, for every workload of the benchmark with many faults per batch', () => {
    const r = runProbe();
    // The probe's control: one small object per op must be seen (the measurement works).
    expect(r['self-check/one-object-per-op']).toBeGreaterThan(16);
    const faults = Object.entries(r).filter(([name]) => name.startsWith('fault/'));
    expect(faults.map(([name]) => name)).toEqual(
      expect.arrayContaining([
        'fault/grace/anon-4K-write-in-order',
        'fault/grace/anon-4K-read-then-write',
        'fault/grace/thp-2M-write',
        'fault/grace/hugetlb-2M-write',
        'fault/grace/pfnmap-cacheable-4K',
        'fault/kunpeng-920/anon-4K-write-in-order',
        'fault/grace/dirty-log-4K-write-permission',
        'fault/grace/dirty-log-thp-split-4K-write',
        'fault/grace-no-hafdbs/access-flag-4K-read-after-age',
        'fault/grace/hw-af-4K-read-after-age',
        'fault/grace+mte/anon-4K-write',
        'fault/grace-64K/anon-64K-write-in-order',
        'fault/grace/anon-4K-write-ram-at-16T',
      ]),
    );
    // Under one byte per fault: a single heap number boxed per fault would be 16.
    const over = faults.filter(([, bytes]) => !(bytes < 1));
    expect(over).toEqual([]);
  }, 300_000);
});
