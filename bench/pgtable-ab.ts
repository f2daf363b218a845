/**
 * Before and after in one process: the page-table workloads of `bench/pgtable.ts`, run on
 * another checkout's page table and on this one's, a batch of each in turn and then a batch
 * of the floor loop, so that both builds see the same machine (on a shared machine, two
 * separate bench runs are minutes apart and the load between them differs).
 *
 *   node --import tsx bench/pgtable-ab.ts BASE_DIR [order|random|blocks|unmap] [4096|16384|65536] [ROUNDS]
 *
 * BASE_DIR is the root of the other checkout (e.g. `git archive <commit> src | tar -x -C DIR`
 * with DIR/node_modules linked to this one's); its `src/index.ts` is loaded beside ours. The
 * other build is driven through the fastest form it has: `mapOp(op, …)` with an S2Op, or the
 * request fields of the builds before issue 9 (`reqAddr`, then `mapReq()`). Prints the best
 * and the median batch of each, operations a second, and this build's median as a fraction of
 * the floor's median. Not part of `npm run bench`.
 */

import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as B from '../src/index.js';
import type { GranuleSize } from '../src/index.js';
import { floorCase } from './floor.js';
import { permutation } from './harness.js';

/** What this script uses of a page table, in any build. */
interface AnyTable {
  map(addr: number, size: number, phys: number, prot: number, mc: unknown, flags?: number): number;
  unmap(addr: number, size: number): number;
  mapOp?(op: { addr: number; size: number; phys: number }, prot: number, mc: unknown): number;
  unmapOp?(op: { addr: number; size: number; phys: number }): number;
  mapReq?(prot: number, mc: unknown): number;
  unmapReq?(): number;
  reqAddr?: number;
  reqSize?: number;
  reqPhys?: number;
  pool: unknown;
}
interface AnyModule {
  Stage2PageTable: new (o: {
    granule: GranuleSize;
    ipaBits: number;
    fwb: boolean;
    events: unknown;
  }) => AnyTable;
  MemCache: { unlimited(pool: unknown): unknown };
  CountingEvents: new () => unknown;
}

const [baseDir, which = 'order', g = '4096', r = '12'] = process.argv.slice(2);
if (baseDir === undefined || !['order', 'random', 'blocks', 'unmap'].includes(which)) {
  process.stderr.write('usage: pgtable-ab.ts BASE_DIR [order|random|blocks|unmap] [granule] [rounds]\n');
  process.exit(2);
}
const A = (await import(pathToFileURL(join(resolve(baseDir), 'src', 'index.ts')).href)) as AnyModule;

const GIB = 2 ** 30;
const BASE_IPA = 0x40_0000_0000;
const BASE_PA = 0x80_0000_0000;
const RW = B.KVM_PGTABLE_PROT_R | B.KVM_PGTABLE_PROT_W;
const RWX = RW | B.KVM_PGTABLE_PROT_X;
const granule = Number(g) as GranuleSize;
const rounds = Number(r);
const pages = GIB / granule;
const blockSize = granule === 4096 ? 2 ** 21 : granule === 16384 ? 2 ** 25 : 2 ** 29;
const blockSpan = granule === 65536 ? 64 * GIB : GIB;
const perm = permutation(pages, 0x5eed);
/** A batch of blocks is short: each sample is this many batches (each after its reset). */
const reps = which === 'blocks' ? 64 : 1;

interface Side {
  pgt: AnyTable;
  mc: unknown;
  op: { addr: number; size: number; phys: number };
}

function side(m: AnyModule): Side {
  const pgt = new m.Stage2PageTable({ granule, ipaBits: 40, fwb: true, events: new m.CountingEvents() });
  return { pgt, mc: m.MemCache.unlimited(pgt.pool), op: new B.S2Op() };
}

/** One operation of the workload on either build, through its fastest form. */
function mapOne(s: Side, addr: number, size: number, phys: number, prot: number): void {
  const pgt = s.pgt;
  if (pgt.mapOp !== undefined) {
    s.op.addr = addr;
    s.op.size = size;
    s.op.phys = phys;
    pgt.mapOp(s.op, prot, s.mc);
  } else {
    pgt.reqAddr = addr;
    pgt.reqSize = size;
    pgt.reqPhys = phys;
    pgt.mapReq!(prot, s.mc);
  }
}

function unmapOne(s: Side, addr: number, size: number): void {
  const pgt = s.pgt;
  if (pgt.unmapOp !== undefined) {
    s.op.addr = addr;
    s.op.size = size;
    pgt.unmapOp(s.op);
  } else {
    pgt.reqAddr = addr;
    pgt.reqSize = size;
    pgt.unmapReq!();
  }
}

function reset(s: Side): void {
  if (which === 'unmap') {
    for (let i = 0; i < pages; i++)
      s.pgt.map(BASE_IPA + i * granule, granule, BASE_PA + i * granule, RW, s.mc);
  } else s.pgt.unmap(BASE_IPA, which === 'blocks' ? blockSpan : GIB);
}

/** One timed batch after an untimed reset. Returns the seconds it took. */
function batch(s: Side): number {
  reset(s);
  const t0 = performance.now();
  if (which === 'order' || which === 'random') {
    for (let i = 0; i < pages; i++) {
      const k = which === 'random' ? perm[i]! : i;
      mapOne(s, BASE_IPA + k * granule, granule, BASE_PA + k * granule, RW);
    }
  } else if (which === 'blocks') {
    for (let i = 0; i < blockSpan / blockSize; i++)
      mapOne(s, BASE_IPA + i * blockSize, blockSize, BASE_PA + i * blockSize, RWX);
  } else {
    for (let i = 0; i < pages; i++) unmapOne(s, BASE_IPA + i * granule, granule);
  }
  return (performance.now() - t0) / 1000;
}

const opsPerBatch = which === 'blocks' ? blockSpan / blockSize : pages;
const floorState = floorCase.setup();
function floorRate(): number {
  const t0 = performance.now();
  floorCase.run(floorState);
  return floorCase.opsPerCall / ((performance.now() - t0) / 1000);
}

const a = side(A);
const b = side(B as unknown as AnyModule);
const ra: number[] = [];
const rb: number[] = [];
const rf: number[] = [];
for (let round = 0; round < rounds + 3; round++) {
  let ta = 0;
  let tb = 0;
  for (let k = 0; k < reps; k++) ta += batch(a);
  for (let k = 0; k < reps; k++) tb += batch(b);
  const f = floorRate();
  if (round < 3) continue; // warm-up
  ra.push((reps * opsPerBatch) / ta);
  rb.push((reps * opsPerBatch) / tb);
  rf.push(f);
}
const median = (v: number[]): number => [...v].sort((p, q) => p - q)[v.length >> 1]!;
const best = (v: number[]): number => Math.max(...v);
const m = (v: number): string => `${(v / 1e6).toFixed(2)}M`;
process.stdout.write(
  `${which} ${granule}: before best ${m(best(ra))} median ${m(median(ra))} | after best ${m(best(rb))} ` +
    `median ${m(median(rb))} | floor best ${m(best(rf))} median ${m(median(rf))} | ` +
    `after/before ${(median(rb) / median(ra)).toFixed(2)}x, after ×floor ${(median(rb) / median(rf)).toFixed(3)}\n`,
);
