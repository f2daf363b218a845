/**
 * The floor: the least work that installs one 4K page through a four-level table held in a
 * typed array (index four levels, follow three table entries, write a leaf's two halves).
 * Every other result can be read as a fraction of what this runtime can do at all.
 */

import type { BenchCase } from './harness.js';

const GIB = 2 ** 30;
const PAGES = GIB / 4096;

interface FloorState {
  /** Four table pages (L0, L1, L2, L3 × 512 entries of lo/hi), L3 tables for 1 GiB. */
  mem: Uint32Array;
}

/** The floor case. */
export const floorCase: BenchCase<FloorState> = {
  name: 'floor',
  opsPerCall: PAGES,
  setup() {
    // Table page p lives at words [p * 1024, p * 1024 + 1024). Page 0: L0, 1: L1, 2: L2,
    // 3..514: the L3 tables of the 1 GiB at IPA 0x40000000 (L1 index 1).
    const mem = new Uint32Array(515 * 1024);
    mem[0] = (1 << 12) | 3; // L0[0] → page 1
    mem[1024 + 2] = (2 << 12) | 3; // L1[1] → page 2
    for (let i = 0; i < 512; i++) mem[2048 + 2 * i] = ((3 + i) << 12) | 3; // L2[i] → page 3 + i
    return { mem };
  },
  run(s) {
    const mem = s.mem;
    const base = 0x40000000;
    for (let n = 0; n < PAGES; n++) {
      const ipa = base + n * 4096;
      const hiIdx = Math.floor(ipa * (1 / 2 ** 30)); // L0 and L1 index bits live above bit 29
      const l0 = (hiIdx >>> 9) & 511;
      const l1 = hiIdx & 511;
      const lo = ipa >>> 0;
      const l2 = (lo >>> 21) & 511;
      const l3 = (lo >>> 12) & 511;
      const t1 = mem[2 * l0]! >>> 12;
      const t2 = mem[t1 * 1024 + 2 * l1]! >>> 12;
      const t3 = mem[t2 * 1024 + 2 * l2]! >>> 12;
      const pa = 0x80000000 + n * 4096;
      mem[t3 * 1024 + 2 * l3] = ((pa >>> 0) | 0x7c3) >>> 0;
      mem[t3 * 1024 + 2 * l3 + 1] = 0x00400000;
    }
  },
  reset() {},
};
