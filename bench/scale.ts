/**
 * The scale run: maps a 1 TiB IPA space at 4K pages through the page table (every page a
 * separate single-page map, as faults install them) and reports time and peak memory.
 */

import {
  CountingEvents,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  MemCache,
  Stage2PageTable,
} from '../src/index.js';

const TIB = 2 ** 40;

/** Runs the scale test and prints the figures. */
export function runScale(): void {
  const events = new CountingEvents();
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 44, fwb: true, events });
  const mc = MemCache.unlimited(pgt.pool);
  const pages = TIB / 4096;
  const prot = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
  let peakRss = 0;
  const t0 = performance.now();
  for (let i = 0; i < pages; i++) {
    pgt.map(i * 4096, 4096, 0x100_0000_0000 + i * 4096, prot, mc);
    if ((i & 0xfffff) === 0) {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      process.stdout.write(`\r${((i / pages) * 100).toFixed(1)}%`);
    }
  }
  const secs = (performance.now() - t0) / 1000;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const tables = pgt.pool.inUse;
  process.stdout.write(
    `\r1 TiB at 4K: ${pages} maps in ${secs.toFixed(1)} s (${(pages / secs / 1e6).toFixed(2)}M/s), ` +
      `${tables} table pages (${((tables * 4096) / 2 ** 30).toFixed(2)} GiB; descriptors alone ${((pages * 8) / 2 ** 30).toFixed(2)} GiB), ` +
      `peak RSS ${(peakRss / 2 ** 30).toFixed(2)} GiB\n`,
  );
}
