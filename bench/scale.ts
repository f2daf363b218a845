/**
 * The scale runs (`npm run bench -- --scale`), each in its own process so that its peak
 * resident memory is its own:
 *
 * - `pgtable`: maps a 1 TiB IPA space at 4K pages through the page table (every page a
 *   separate single-page map, as faults install them);
 * - `fault`: faults in a 1 TiB guest at 4K through the whole fault path (anonymous memory,
 *   one write per page: Vcpu.access → abort → user_mem_abort → host fault → install).
 *
 * Each reports time, rate, table pages and peak RSS (getrusage maxrss); the fault run also
 * the modelled hardware time for the same faults on a Grace-class host.
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  CountingEvents,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  MemCache,
  Stage2PageTable,
} from '../src/index.js';
import { CPU_PRESETS } from '../src/mmu/cpu.js';
import { CostBreakdown, costShapeOf, formatBreakdown, formatNs, modelledCost } from '../src/mmu/cost.js';
import { MT_NORMAL, VM_MAYWRITE, VM_READ, VM_WRITE } from '../src/mmu/host/vma.js';
import { AccessResult, OUT_DONE, Vcpu } from '../src/mmu/vcpu.js';
import { ACC_WRITE } from '../src/mmu/access.js';
import { Kvm } from '../src/mmu/vm.js';

const TIB = 2 ** 40;
const GIB = 2 ** 30;

/** The scale parts. */
export const SCALE_PARTS = ['pgtable', 'fault'] as const;
export type ScalePart = (typeof SCALE_PARTS)[number];

/** Peak resident set size of this process so far, bytes. */
function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

function gib(b: number): string {
  return `${(b / GIB).toFixed(2)} GiB`;
}

/** 1 TiB of single-page maps through the page table alone. */
function scalePgtable(): void {
  const events = new CountingEvents();
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 44, fwb: true, events });
  const mc = MemCache.unlimited(pgt.pool);
  const pages = TIB / 4096;
  const prot = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
  const t0 = performance.now();
  for (let i = 0; i < pages; i++) {
    pgt.map(i * 4096, 4096, 0x100_0000_0000 + i * 4096, prot, mc);
    if ((i & 0xfffff) === 0) process.stdout.write(`\rpgtable: ${((i / pages) * 100).toFixed(1)}%`);
  }
  const secs = (performance.now() - t0) / 1000;
  const tables = pgt.pool.inUse;
  process.stdout.write(
    `\rpgtable: 1 TiB at 4K: ${pages} maps in ${secs.toFixed(1)} s (${(pages / secs / 1e6).toFixed(2)}M/s), ` +
      `${tables} table pages (${gib(tables * 4096)}; descriptors alone ${gib(pages * 8)}), ` +
      `peak RSS ${gib(peakRss())}\n`,
  );
}

/** 1 TiB (or `size` bytes) of anonymous guest RAM faulted in at 4K through Vcpu.access. */
export function scaleFault(size = TIB): void {
  const cpu = CPU_PRESETS['grace']!;
  const ipa = TIB; // guest RAM at 1 TiB
  const hva = 0x7e00_0000_0000;
  const kvm = new Kvm({
    cpu: cpu.features,
    granule: 4096,
    paBits: 48,
    physical: [{ base: 0x100_0000_0000, size: size + 16 * GIB, type: 'ram' }],
    ipaBits: 42,
  });
  const vma = kvm.mm.mmap({
    name: 'ram',
    start: hva,
    size,
    vmFlags: VM_READ | VM_WRITE | VM_MAYWRITE,
    memType: MT_NORMAL,
    backing: 'anon',
  });
  if (typeof vma === 'string') throw new Error(vma);
  const ret = kvm.createMemslot({
    id: 0,
    baseGfn: ipa / 4096,
    npages: size / 4096,
    userspaceAddr: hva,
    flags: 0,
  });
  if (ret) throw new Error(`memslot: ${ret}`);
  const vcpu = new Vcpu(kvm);
  const r = new AccessResult();
  const pages = size / 4096;
  const t0 = performance.now();
  let tLast = t0;
  for (let i = 0; i < pages; i++) {
    if (vcpu.access(ACC_WRITE, ipa + i * 4096, r) !== OUT_DONE)
      throw new Error(`fault ${i}: ${r.outcomeName}`);
    if ((i & 0x3fffff) === 0x3fffff) {
      const now = performance.now();
      const rate = 0x400000 / ((now - tLast) / 1000);
      tLast = now;
      process.stdout.write(
        `\rfault: ${(((i + 1) / pages) * 100).toFixed(1)}% (${((i + 1) / 2 ** 18).toFixed(0)} GiB), ` +
          `${(rate / 1e6).toFixed(2)}M faults/s, RSS ${gib(process.memoryUsage().rss)}   `,
      );
    }
  }
  const secs = (performance.now() - t0) / 1000;
  const t = kvm.totals;
  const bd = new CostBreakdown();
  modelledCost(t, cpu.cost, bd, costShapeOf(kvm));
  const tables = kvm.tablePages;
  process.stdout.write(
    `\rfault: ${size === TIB ? '1 TiB' : gib(size)} guest at 4K: ${t.faults} faults in ${secs.toFixed(1)} s (${(t.faults / secs / 1e6).toFixed(2)}M faults/s), ` +
      `${tables} stage-2 table pages (${gib(tables * 4096)}; descriptors alone ${gib(pages * 8)}), ` +
      `peak RSS ${gib(peakRss())}${kvm.diagnostics.length ? `; diagnostics: ${kvm.diagnostics.slice(0, 3).join('; ')}` : ''}\n` +
      `  modelled on grace: ${formatNs(bd.total)} of hardware time (${formatBreakdown(bd, 5)})\n`,
  );
}

/**
 * Runs one scale part in this process, or (no part) each part in a child process of its own,
 * with this process's Node options.
 */
export function runScale(part?: ScalePart): void {
  if (part === 'pgtable') return scalePgtable();
  if (part === 'fault') return scaleFault();
  const index = fileURLToPath(new URL('./index.ts', import.meta.url));
  for (const p of SCALE_PARTS) {
    const res = spawnSync(process.execPath, [...process.execArgv, index, '--scale', '--scale-part', p], {
      stdio: 'inherit',
    });
    if (res.status !== 0) throw new Error(`scale part ${p} failed (${res.status ?? res.signal})`);
  }
}
