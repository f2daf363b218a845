/**
 * Page-table benchmarks: the operations `replay` drives, called through the library API
 * (no parsing), with the replay's unlimited page cache and a counting event sink. The timed
 * loops use the operand-object forms (fill one reused `S2Op`, then `mapOp(op, …)` or
 * `unmapOp(op)`), as a hot caller such as the fault path does: `map(addr, size, phys, …)`
 * takes its addresses as arguments, which V8 boxes wherever it does not inline the call.
 */

import {
  CountingEvents,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  MemCache,
  S2Op,
  Stage2PageTable,
} from '../src/index.js';
import type { GranuleSize } from '../src/index.js';
import type { BenchCase } from './harness.js';
import { permutation } from './harness.js';

const GIB = 2 ** 30;
const RW = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
const RWX = RW | KVM_PGTABLE_PROT_X;

interface PgState {
  pgt: Stage2PageTable;
  /** The loops' operands (reused: see S2Op). */
  op: S2Op;
  mc: MemCache;
  events: CountingEvents;
  perm: Int32Array;
}

const BASE_IPA = 0x40_0000_0000; // 256 GiB: above the low GiBs, below 2^40
const BASE_PA = 0x80_0000_0000;

function newState(granule: GranuleSize, n: number): PgState {
  const events = new CountingEvents();
  const pgt = new Stage2PageTable({ granule, ipaBits: 40, fwb: true, events });
  return { pgt, op: new S2Op(), mc: MemCache.unlimited(pgt.pool), events, perm: permutation(n, 0x5eed) };
}

/**
 * Maps `n` leaves of `size` at BASE_IPA → BASE_PA, leaf k = order[i] (or i) at step i, through
 * the operand object.
 */
function mapLeaves(s: PgState, n: number, size: number, prot: number, order: Int32Array | null): void {
  const pgt = s.pgt;
  const op = s.op;
  for (let i = 0; i < n; i++) {
    const k = order === null ? i : order[i]!;
    op.addr = BASE_IPA + k * size;
    op.size = size;
    op.phys = BASE_PA + k * size;
    pgt.mapOp(op, prot, s.mc);
  }
}

function label(g: GranuleSize): string {
  return g === 4096 ? '4K' : g === 16384 ? '16K' : '64K';
}

function tableBytesPerGiB(s: PgState, mappedBytes: number): number {
  return (s.pgt.pool.inUse * s.pgt.pool.pageSize * GIB) / mappedBytes;
}

/** The page-table cases for one granule. */
export function pgtableCases(granule: GranuleSize): BenchCase<PgState>[] {
  const g = label(granule);
  const pages = GIB / granule;
  const blockSize = granule === 4096 ? 2 ** 21 : granule === 16384 ? 2 ** 25 : 2 ** 29;
  // Enough blocks a batch (32768, 16384, 1024) that the harness's per-call cost stays small.
  const blockSpan = granule === 4096 ? 64 * GIB : 512 * GIB;
  const blocks = blockSpan / blockSize;
  const bigBlock = granule === 4096 ? GIB : blockSize; // what split breaks
  const splitSpan = granule === 4096 ? 8 * GIB : granule === 16384 ? GIB : 16 * GIB;
  const bl = (x: number): string => (x >= GIB ? `${x / GIB}G` : `${x / 2 ** 20}M`);
  return [
    {
      name: `pgtable/${g}/map-pages-in-order-1G`,
      opsPerCall: pages,
      setup: () => newState(granule, pages),
      run: (s) => mapLeaves(s, pages, granule, RW, null),
      reset: (s) => void s.pgt.unmap(BASE_IPA, GIB),
      tableBytesPerGiB: (s) => tableBytesPerGiB(s, GIB),
    },
    {
      name: `pgtable/${g}/map-pages-random-1G`,
      opsPerCall: pages,
      setup: () => newState(granule, pages),
      run: (s) => mapLeaves(s, pages, granule, RW, s.perm),
      reset: (s) => void s.pgt.unmap(BASE_IPA, GIB),
      tableBytesPerGiB: (s) => tableBytesPerGiB(s, GIB),
    },
    {
      name: `pgtable/${g}/map-${bl(blockSize)}-blocks-${bl(blockSpan)}`,
      opsPerCall: blocks,
      setup: () => newState(granule, blocks),
      run: (s) => mapLeaves(s, blocks, blockSize, RWX, null),
      reset: (s) => void s.pgt.unmap(BASE_IPA, blockSpan),
      tableBytesPerGiB: (s) => tableBytesPerGiB(s, blockSpan),
    },
    {
      name: `pgtable/${g}/unmap-pages-in-order-1G`,
      opsPerCall: pages,
      setup: () => newState(granule, pages),
      run(s) {
        const pgt = s.pgt;
        const op = s.op;
        for (let i = 0; i < pages; i++) {
          op.addr = BASE_IPA + i * granule;
          op.size = granule;
          pgt.unmapOp(op);
        }
      },
      reset: (s) => mapLeaves(s, pages, granule, RW, null),
    },
    {
      name: `pgtable/${g}/split-${bl(bigBlock)}-blocks-${bl(splitSpan)}`,
      opsPerCall: splitSpan / bigBlock,
      setup: () => newState(granule, 1),
      run(s) {
        for (let a = 0; a < splitSpan; a += bigBlock) s.pgt.split(BASE_IPA + a, bigBlock, s.mc);
      },
      reset(s) {
        s.pgt.unmap(BASE_IPA, splitSpan);
        for (let a = 0; a < splitSpan; a += bigBlock)
          s.pgt.map(BASE_IPA + a, bigBlock, BASE_PA + a, RW, s.mc);
      },
      tableBytesPerGiB: (s) => tableBytesPerGiB(s, splitSpan),
    },
  ];
}
