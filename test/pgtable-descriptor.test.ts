import { describe, it, expect } from 'vitest';
import {
  AddrLayout,
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_SW1,
  KVM_PGTABLE_PROT_SW2,
  KVM_PGTABLE_PROT_SW3,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  formatProt,
  hex64,
  initValidLeafPte,
  parseProt,
  pteIsCounted,
  pteIsLocked,
  pteIsTable,
  stage2PteProt,
  stage2SetProtAttr,
  toBigInt,
} from '../src/pgtable/descriptor.js';
import { EINVAL } from '../src/pgtable/errno.js';
import type { AttrOut, LeafOut } from '../src/pgtable/descriptor.js';
import { MemCache, TABLE_ARENA_BASE } from '../src/pgtable/pool.js';
import type { Stage2Events } from '../src/pgtable/pool.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';
import type { Stage2Options } from '../src/pgtable/stage2.js';
import { auditStage2 } from '../src/pgtable/audit.js';

const R = KVM_PGTABLE_PROT_R;
const W = KVM_PGTABLE_PROT_W;
const X = KVM_PGTABLE_PROT_X;
const DEVICE = KVM_PGTABLE_PROT_DEVICE;
const NC = KVM_PGTABLE_PROT_NORMAL_NC;

/** Builds a leaf the way map does: stage2_set_prot_attr, then kvm_init_valid_leaf_pte. */
function leaf(
  prot: number,
  pa: number,
  level: number,
  opts: { fwb?: boolean; pageShift?: number; lpa2?: boolean } = {},
): string {
  const lpa2 = opts.lpa2 ?? false;
  const attr: AttrOut = { lo: 0, hi: 0 };
  expect(stage2SetProtAttr(prot, opts.fwb ?? false, lpa2, attr)).toBe(0);
  const out: LeafOut = { lo: 0, hi: 0 };
  initValidLeafPte(new AddrLayout(opts.pageShift ?? 12, lpa2), pa, attr.lo, attr.hi, level, out);
  return hex64(out.lo, out.hi);
}

/** Maps one leaf through a real table and reads it back with get_leaf. */
function mapped(
  prot: number,
  ipa: number,
  size: number,
  pa: number,
  opts: Partial<Stage2Options> = {},
): { desc: string; level: number; pgt: Stage2PageTable } {
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, ...opts });
  expect(pgt.map(ipa, size, pa, prot, MemCache.unlimited(pgt.pool))).toBe(0);
  const r = new LeafResult();
  expect(pgt.getLeaf(ipa, r)).toBe(0);
  expect(auditStage2(pgt)).toEqual([]);
  return { desc: hex64(r.lo, r.hi), level: r.level, pgt };
}

// Worked descriptors from stage2_set_prot_attr(): 4K, no LPA2, level-3 page at PA 0x80000000.
//   RWX normal: PA | AF 0x400 | SH 0x300 | W 0x80 | R 0x40 | MemAttr (0xF or 6) << 2 | 0b11.
//   Not executable: XN, bit 54 (0x0040_0000 in the high word).
const WORKED: [string, number, string, string][] = [
  ['R W X', R | W | X, '0x00000000800007ff', '0x00000000800007db'],
  ['R W', R | W, '0x00400000800007ff', '0x00400000800007db'],
  ['R', R, '0x004000008000077f', '0x004000008000075b'],
  ['R W DEVICE', R | W | DEVICE, '0x00400000800007c7', '0x00400000800007c7'],
  ['R W NORMAL_NC', R | W | NC, '0x00400000800007d7', '0x00400000800007d7'],
  // Derived the same way.
  ['W', W, '0x00400000800007bf', '0x004000008000079b'],
  ['X', X, '0x000000008000073f', '0x000000008000071b'],
  ['NONE', 0, '0x004000008000073f', '0x004000008000071b'],
  ['R DEVICE', R | DEVICE, '0x0040000080000747', '0x0040000080000747'],
  [
    'R W SW0 SW3',
    R | W | KVM_PGTABLE_PROT_SW0 | KVM_PGTABLE_PROT_SW3,
    '0x04c00000800007ff',
    '0x04c00000800007db',
  ],
];

describe('stage2_set_prot_attr(): prot → descriptor, worked values', () => {
  it.each(WORKED)('%s (built from stage2SetProtAttr + initValidLeafPte)', (_n, prot, nofwb, fwb) => {
    expect(leaf(prot, 0x80000000, 3)).toBe(nofwb);
    expect(leaf(prot, 0x80000000, 3, { fwb: true })).toBe(fwb);
  });

  it.each(WORKED)('%s (mapped through Stage2PageTable, read with getLeaf)', (_n, prot, nofwb, fwb) => {
    const a = mapped(prot, 0x1000, 0x1000, 0x80000000);
    expect(a.desc).toBe(nofwb);
    expect(a.level).toBe(3);
    expect(mapped(prot, 0x1000, 0x1000, 0x80000000, { fwb: true }).desc).toBe(fwb);
  });

  it('KVM_PGTABLE_S2_NOFWB opts a table out of FWB', () => {
    expect(mapped(R | W | X, 0x1000, 0x1000, 0x80000000, { fwb: true, flags: 1 }).desc).toBe(
      '0x00000000800007ff',
    );
  });

  it('a 2 MiB block at PA 0x40200000, R W X, no FWB, is 0x00000000402007FD', () => {
    expect(leaf(R | W | X, 0x40200000, 2)).toBe('0x00000000402007fd');
    const m = mapped(R | W | X, 0x40200000, 0x200000, 0x40200000);
    expect(m.desc).toBe('0x00000000402007fd');
    expect(m.level).toBe(2);
    // get_leaf anywhere inside the block returns the same block.
    const r = new LeafResult();
    m.pgt.getLeaf(0x40200000 + 0x1ff000, r);
    expect(hex64(r.lo, r.hi)).toBe('0x00000000402007fd');
  });

  it('a 1 GiB block is type 0b01 at level 1', () => {
    expect(leaf(R | W, 0x80000000, 1)).toBe('0x00400000800007fd');
    const m = mapped(R | W, 0x40000000, 0x40000000, 0x80000000);
    expect(m.level).toBe(1);
    expect(m.desc).toBe('0x00400000800007fd');
  });

  it('the PA of a page is the aligned-down PA; the PA of a block keeps bits below its size only if aligned', () => {
    // phys = ALIGN_DOWN(phys, PAGE_SIZE).
    expect(mapped(R | W | X, 0x1000, 0x1000, 0x80000abc).desc).toBe('0x00000000800007ff');
    // Misaligned PA: no block, 512 pages instead.
    const m = mapped(R | W | X, 0x200000, 0x200000, 0x80001000);
    expect(m.level).toBe(3);
    expect(m.desc).toBe('0x00000000800017ff');
  });
});

describe('table descriptors (kvm_init_table_pte())', () => {
  it('a table pointing to PA 0x412345000 is 0x0000000412345003', () => {
    const l = new AddrLayout(12);
    const pa = 0x412345000;
    expect(hex64((l.physLo(pa) | 3) >>> 0, l.physHi(pa))).toBe('0x0000000412345003');
    expect(l.toPhys(0x12345003, 0x4)).toBe(pa);
    expect(pteIsTable(0x12345003, 2)).toBe(true);
    // The same bits at level 3 are a page, not a table.
    expect(pteIsTable(0x12345003, 3)).toBe(false);
    expect(pteIsTable(0x12345001, 2)).toBe(false);
  });

  it('map installs table descriptors with only address and type bits', () => {
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
    expect(pgt.map(0x1000, 0x1000, 0x80000000, R, MemCache.unlimited(pgt.pool))).toBe(0);
    // The arena starts at 0x100000000000 and hands pages out in ascending order: the two PGD
    // pages are 0 and 1, then the L2 table (page 2) and the L3 table (page 3).
    expect(pgt.pgd).toBe(0);
    expect(TABLE_ARENA_BASE).toBe(0x100000000000);
    const word = (page: number, idx: number): string =>
      hex64(pgt.pool.pages[page]![2 * idx]!, pgt.pool.pages[page]![2 * idx + 1]!);
    expect(word(0, 0)).toBe('0x0000100000002003');
    expect(word(2, 0)).toBe('0x0000100000003003');
    expect(word(3, 1)).toBe('0x004000008000077f');
    expect(pgt.pool.phys(3)).toBe(0x100000003000);
    expect(pgt.pool.pageOf(0x100000003000)).toBe(3);
  });
});

describe('stage2_set_prot_attr() error cases: −EINVAL before any walk', () => {
  const BAD: [string, number][] = [
    ['DEVICE|X', DEVICE | X],
    ['NORMAL_NC|X', NC | X],
    ['DEVICE|NORMAL_NC', DEVICE | NC],
    ['R|W|DEVICE|NORMAL_NC', R | W | DEVICE | NC],
    ['R|DEVICE|X', R | DEVICE | X],
  ];

  it.each(BAD)('%s', (_n, prot) => {
    const attr: AttrOut = { lo: 0x1234, hi: 0x5678 };
    expect(stage2SetProtAttr(prot, false, false, attr)).toBe(EINVAL);
    expect(stage2SetProtAttr(prot, true, false, attr)).toBe(EINVAL);

    const log: string[] = [];
    const events: Stage2Events = {
      tlbiVmidIpa: () => log.push('tlbi'),
      tlbiVmidIpaNsh: () => log.push('tlbi nsh'),
      tlbiVmidRange: () => log.push('tlbi range'),
      tlbiVmid: () => log.push('tlbi vmid'),
      dcacheCleanInvalPoc: () => log.push('dcache'),
      icacheInvalPou: () => log.push('icache'),
    };
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, events });
    const mc = MemCache.unlimited(pgt.pool);
    // Over an existing mapping too: nothing is broken, nothing is allocated.
    expect(pgt.map(0x200000, 0x200000, 0x40000000, R | W, mc)).toBe(0);
    log.length = 0;
    const before = pgt.pool.allocs;
    expect(pgt.map(0x200000, 0x1000, 0x80000000, prot, mc)).toBe(EINVAL);
    expect(pgt.map(0x400000, 0x1000, 0x80000000, prot, mc)).toBe(EINVAL);
    // Even an out-of-range map reports the prot error first.
    expect(pgt.map(2 ** 41, 0x1000, 0x80000000, prot, mc)).toBe(EINVAL);
    expect(log).toEqual([]);
    expect(pgt.pool.allocs).toBe(before);
    const r = new LeafResult();
    pgt.getLeaf(0x200000, r);
    expect(hex64(r.lo, r.hi)).toBe('0x00400000400007fd');
    expect(pgt.createUnlinked(0x40000000, 2, prot, mc, false)).toBe(EINVAL);
    expect(pgt.pool.allocs).toBe(before);
  });

  it('NONE maps a valid leaf with no access', () => {
    const m = mapped(0, 0x1000, 0x1000, 0x80000000);
    expect(m.desc).toBe('0x004000008000073f');
    expect(stage2PteProt(0x8000073f, 0x00400000)).toBe(0);
  });
});

describe('kvm_pgtable_stage2_pte_prot(): pte → prot', () => {
  const SW = [KVM_PGTABLE_PROT_SW0, KVM_PGTABLE_PROT_SW1, KVM_PGTABLE_PROT_SW2, KVM_PGTABLE_PROT_SW3];

  it('round-trips every combination of R, W, X and the software bits', () => {
    for (let m = 0; m < 128; m++) {
      let prot = 0;
      if (m & 1) prot |= R;
      if (m & 2) prot |= W;
      if (m & 4) prot |= X;
      for (let s = 0; s < 4; s++) if (m & (8 << s)) prot |= SW[s]!;
      for (const fwb of [false, true]) {
        const attr: AttrOut = { lo: 0, hi: 0 };
        expect(stage2SetProtAttr(prot, fwb, false, attr)).toBe(0);
        const out: LeafOut = { lo: 0, hi: 0 };
        initValidLeafPte(new AddrLayout(12), 0x80000000, attr.lo, attr.hi, 3, out);
        expect(stage2PteProt(out.lo, out.hi)).toBe(prot);
      }
    }
  });

  it('does not recover the memory type', () => {
    const attr: AttrOut = { lo: 0, hi: 0 };
    stage2SetProtAttr(R | W | DEVICE, false, false, attr);
    expect(stage2PteProt(attr.lo | 3, attr.hi)).toBe(R | W);
    stage2SetProtAttr(R | NC | KVM_PGTABLE_PROT_SW1, true, false, attr);
    expect(stage2PteProt(attr.lo | 3, attr.hi)).toBe(R | KVM_PGTABLE_PROT_SW1);
  });

  it('an invalid entry gives its software bits only', () => {
    // Bits R/W/XN-clear in an invalid entry grant nothing.
    expect(stage2PteProt(0x000000c0, 0)).toBe(0);
    expect(stage2PteProt(0x000000c0, 0x00800000)).toBe(KVM_PGTABLE_PROT_SW0);
    expect(stage2PteProt(0x400, 0x04000000)).toBe(KVM_PGTABLE_PROT_SW3);
    expect(stage2PteProt(0, 0)).toBe(0);
  });

  it('parseProt / formatProt', () => {
    expect(parseProt('R|W|X')).toBe(R | W | X);
    expect(parseProt('NONE')).toBe(0);
    expect(parseProt('DEVICE|R')).toBe(R | DEVICE);
    expect(parseProt('R|Q')).toMatch(/unknown prot flag 'Q'/);
    expect(formatProt(R | W | NC | KVM_PGTABLE_PROT_SW2)).toBe('R|W|NORMAL_NC|SW2');
    expect(formatProt(0)).toBe('NONE');
  });
});

describe('output-address layouts (kvm_phys_to_pte(), kvm_pte_to_phys())', () => {
  it('64K pages put PA[51:48] into bits [15:12]', () => {
    const l = new AddrLayout(16);
    const pa = 0x000f123456780000; // PA[51:48] = 0xF, PA[47:16] = 0x12345678
    expect(hex64(l.physLo(pa), l.physHi(pa))).toBe('0x000012345678f000');
    expect(l.toPhys(l.physLo(pa), l.physHi(pa))).toBe(pa);
    expect(leaf(R | W | X, pa, 3, { pageShift: 16 })).toBe('0x000012345678f7ff');
    // Below 2^48 the field is zero.
    expect(leaf(R | W | X, 0x80000000, 3, { pageShift: 16 })).toBe('0x00000000800007ff');
    // Through a table: a 52-bit PA maps and reads back.
    const pgt = new Stage2PageTable({ granule: 65536, ipaBits: 48, fwb: false });
    expect(pgt.map(0x10000, 0x10000, 0x000a000100010000, R, MemCache.unlimited(pgt.pool))).toBe(0);
    const r = new LeafResult();
    pgt.getLeaf(0x10000, r);
    expect(hex64(r.lo, r.hi)).toBe('0x004000010001a77f');
    expect(pgt.layout.toPhys(r.lo, r.hi)).toBe(0x000a000100010000);
  });

  it('4K and 16K drop PA bits above 47 without LPA2', () => {
    const l = new AddrLayout(12);
    expect(l.toPhys(l.physLo(0x000f000080000000), l.physHi(0x000f000080000000))).toBe(0x80000000);
    expect(leaf(R | W | X, 0x000f000080000000, 3)).toBe('0x00000000800007ff');
    expect(mapped(R | W | X, 0x1000, 0x1000, 0x000f000080000000).desc).toBe('0x00000000800007ff');
    const p16 = new Stage2PageTable({ granule: 16384, ipaBits: 40, fwb: false });
    expect(p16.map(0x4000, 0x4000, 0x0003800000004000, R, MemCache.unlimited(p16.pool))).toBe(0);
    const r = new LeafResult();
    p16.getLeaf(0x4000, r);
    expect(hex64(r.lo, r.hi)).toBe('0x004080000000477f');
  });

  it('LPA2: PA[49:48] in place, PA[51:50] into bits [9:8], and no SH', () => {
    const l = new AddrLayout(12, true);
    const pa = 0x0006000080000000; // PA[51:50] = 0b01, PA[49:48] = 0b10
    expect(hex64(l.physLo(pa), l.physHi(pa))).toBe('0x0002000080000100');
    expect(l.toPhys(l.physLo(pa), l.physHi(pa))).toBe(pa);
    // With LPA2, stage2_set_prot_attr() sets no SH, and PA[51:50] goes in bits 9:8.
    expect(leaf(R | W | X, 0x80000000, 3, { lpa2: true })).toBe('0x00000000800004ff');
    expect(leaf(R | W, 0x80000000, 3, { lpa2: true, fwb: true })).toBe('0x00400000800004db');
    expect(leaf(R | W | X, pa, 3, { lpa2: true })).toBe('0x00020000800005ff');
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 52, fwb: false, lpa2: true });
    expect(pgt.map(2 ** 51 + 0x1000, 0x1000, pa, R | W | X, MemCache.unlimited(pgt.pool))).toBe(0);
    const r = new LeafResult();
    expect(pgt.getLeaf(2 ** 51 + 0x1000, r)).toBe(0);
    expect(hex64(r.lo, r.hi)).toBe('0x00020000800005ff');
    expect(auditStage2(pgt)).toEqual([]);
    // 16K with LPA2: OA[49:14] in place.
    const l16 = new AddrLayout(14, true);
    const pa16 = 0x000d000000004000; // PA[51:50] = 0b11, PA[49:48] = 0b01
    expect(hex64(l16.physLo(pa16), l16.physHi(pa16))).toBe('0x0001000000004300');
    expect(l16.toPhys(l16.physLo(pa16), l16.physHi(pa16))).toBe(pa16);
  });
});

describe('invalid-entry encodings KVM uses (locked, owner)', () => {
  it('LOCKED is bit 10 with bit 0 clear; every non-zero entry is counted', () => {
    expect(pteIsLocked(0x400)).toBe(true);
    expect(pteIsLocked(0x401)).toBe(false);
    expect(pteIsLocked(0x4)).toBe(false);
    expect(pteIsCounted(0, 0)).toBe(false);
    expect(pteIsCounted(0x4, 0)).toBe(true);
    expect(pteIsCounted(0, 1)).toBe(true);
  });

  it('hex64 / toBigInt join halves', () => {
    expect(hex64(0x800007ff, 0x00400000)).toBe('0x00400000800007ff');
    expect(toBigInt(0x800007ff, 0x00400000)).toBe(0x00400000800007ffn);
  });
});
