/**
 * Page-table benchmarks: the operations `replay` drives, called through the library API
 * (no parsing), with the replay's unlimited page cache and a counting event sink. The timed
 * loops use the request-field forms (`reqAddr`/`reqSize`/`reqPhys`, then `mapReq()` or
 * `unmapReq()`), as a hot caller such as the fault path does: `map(addr, size, phys, …)`
 * takes its addresses as arguments, which V8 boxes wherever it does not inline the call.
 */

import {
  CountingEvents,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  MemCache,
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
  mc: MemCache;
  events: CountingEvents;
  perm: Int32Array;
}

const BASE_IPA = 0x40_0000_0000; // 256 GiB: above the low GiBs, below 2^40
const BASE_PA = 0x80_0000_0000;

function newState(granule: GranuleSize, n: number): PgState {
  const events = new CountingEvents();
  const pgt = new Stage2PageTable({ granule, ipaBits: 40, fwb: true, events });
  return { pgt, mc: MemCache.unlimited(pgt.pool), events, perm: permutation(n, 0x5eed) };
}

/**
 * Maps `n` leaves of `size` at BASE_IPA → BASE_PA, leaf k = order[i] (or i) at step i, through
 * the request fields.
 */
function mapLeaves(s: PgState, n: number, size: number, prot: number, order: Int32Array | null): void {
  const pgt = s.pgt;
  for (let i = 0; i < n; i++) {
    const k = order === null ? i : order[i]!;
    pgt.reqAddr = BASE_IPA + k * size;
    pgt.reqSize = size;
    pgt.reqPhys = BASE_PA + k * size;
    pgt.mapReq(prot, s.mc);
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
  const blockSpan = granule === 65536 ? 64 * GIB : GIB;
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
        for (let i = 0; i < pages; i++) {
          pgt.reqAddr = BASE_IPA + i * granule;
          pgt.reqSize = granule;
          pgt.unmapReq();
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
