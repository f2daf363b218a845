import { inspect } from 'node:util';
import { describe, it, expect } from 'vitest';
import {
  AddrLayout,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_RW,
  KVM_PGTABLE_PROT_RWX,
} from '../src/pgtable/descriptor.js';
import { Geometry } from '../src/pgtable/geometry.js';
import type { GranuleSize } from '../src/pgtable/geometry.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, HwWalkResult, HwWalker } from '../src/pgtable/hwwalk.js';
import { MemCache } from '../src/pgtable/pool.js';
import { Stage2PageTable } from '../src/pgtable/stage2.js';
import {
  DescriptorView,
  WalkView,
  describeTable,
  ptdump,
  ptdumpIpaRange,
  ptdumpStage2Levels,
  sizeUnit,
} from '../src/views/index.js';
import type { DescriptorContext } from '../src/views/index.js';

const ctx = (fwb: boolean, granule: GranuleSize = 4096): DescriptorContext => {
  const geo = new Geometry(granule, 40);
  return { geo, layout: new AddrLayout(geo.pageShift), fwb };
};
const NOFWB = ctx(false);
const FWB = ctx(true);

/** A view of a 64-bit descriptor given as a BigInt. */
function view(
  d: bigint,
  level: number,
  c: DescriptorContext = NOFWB,
  ipa: number | null = null,
): DescriptorView {
  return new DescriptorView(Number(d & 0xffffffffn), Number(d >> 32n), level, c, ipa);
}

function table(opts: { fwb?: boolean; ipaBits?: number } = {}) {
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: opts.ipaBits ?? 40, fwb: opts.fwb ?? false });
  return { pgt, mc: MemCache.unlimited(pgt.pool) };
}

describe('DescriptorView text (stage2_set_prot_attr() worked descriptors)', () => {
  it.each([
    [0x00000000800007ffn, NOFWB, 'L3 page 0x80000000 RWX Normal-WB AF'],
    [0x00400000800007ffn, NOFWB, 'L3 page 0x80000000 RW- Normal-WB AF'],
    [0x004000008000077fn, NOFWB, 'L3 page 0x80000000 R-- Normal-WB AF'],
    [0x00400000800007dbn, FWB, 'L3 page 0x80000000 RW- Normal-WB AF'],
    [0x00000000800007dbn, FWB, 'L3 page 0x80000000 RWX Normal-WB AF'],
    [0x004000008000075bn, FWB, 'L3 page 0x80000000 R-- Normal-WB AF'],
    // The FWB encoding read without FWB: MemAttr 0b0110 is outer NC, inner WT.
    [0x00400000800007dbn, NOFWB, 'L3 page 0x80000000 RW- Normal-iWT-oNC AF'],
    [0x00400000800007c7n, NOFWB, 'L3 page 0x80000000 RW- Device-nGnRE AF'],
    [0x00400000800007c7n, FWB, 'L3 page 0x80000000 RW- Device-nGnRE AF'],
    [0x00400000800007d7n, NOFWB, 'L3 page 0x80000000 RW- Normal-NC AF'],
    [0x00400000800007d7n, FWB, 'L3 page 0x80000000 RW- Normal-NC AF'],
  ])('%s', (d, c, text) => {
    expect(view(d, 3, c).text).toBe(text);
  });

  it('blocks, tables and the invalid encodings', () => {
    expect(view(0x00000000402007fdn, 2).text).toBe('L2 block 0x40200000 RWX Normal-WB AF');
    expect(view(0x00000000402007fdn, 2).size).toBe(0x200000);
    expect(view(0x0000000412345003n, 1).text).toBe('L1 table 0x412345000');
    expect(view(0n, 2).text).toBe('L2 invalid');
    expect(view(0x400n, 3).text).toBe('L3 locked');
    expect(view(0x4n, 3).text).toBe('L3 owner 1');
    expect(view(0x1000n, 3).text).toBe('L3 invalid 0x0000000000001000');
    expect(view(0x00000000800007fdn, 3).text).toBe('L3 reserved 0x00000000800007fd');
  });

  it('shows a non-Inner SH, a clear AF, DBM/CONT and software bits', () => {
    // Page, MemAttr 0xF, R W, SH = Outer, AF clear; hi: XN, DBM, CONT, SW0, SW2.
    const v = view(0x02d80000_800002ffn, 3);
    expect(v.text).toBe('L3 page 0x80000000 RW- Normal-WB OSH DBM CONT SW0 SW2');
    expect([v.af, v.sw, v.sh, v.flags]).toEqual([false, 0b0101, 'OSH', ['DBM', 'CONT']]);
  });

  it('prefixes the IPA when known', () => {
    expect(view(0x00000000800007ffn, 3, NOFWB, 0x40000000).text).toBe(
      'ipa 0x40000000: L3 page 0x80000000 RWX Normal-WB AF',
    );
  });

  it('reads OA[51:48] from bits [15:12] with 64K pages', () => {
    const v = view(0x00000000800017ffn, 3, ctx(false, 65536));
    expect(v.text).toBe('L3 page 0x1000080000000 RWX Normal-WB AF');
    expect(v.oaBigInt).toBe(0x1000080000000n);
    expect(v.size).toBe(65536);
  });
});

describe('DescriptorView fields, JSON and hooks', () => {
  it('has the decoded fields and BigInt forms', () => {
    const v = view(0x00400000800007ffn, 3);
    expect(v.kind).toBe('page');
    expect(v.oaBigInt).toBe(0x80000000n);
    expect(v.rawBigInt).toBe(0x00400000800007ffn);
    expect(v.perms).toEqual({ r: true, w: true, x: false });
  });

  it('serialises a page to this JSON shape', () => {
    expect(JSON.parse(JSON.stringify(view(0x00400000800007ffn, 3, NOFWB, 0x40000000)))).toEqual({
      kind: 'page',
      level: 3,
      ipa: '0x40000000',
      raw: '0x00400000800007ff',
      oa: '0x80000000',
      size: 4096,
      perms: { r: true, w: true, x: false },
      memattr: 'Normal-WB',
      memattrValue: 15,
      sh: 'ISH',
      af: true,
      sw: 0,
      flags: [],
      owner: null,
      text: 'ipa 0x40000000: L3 page 0x80000000 RW- Normal-WB AF',
    });
  });

  it('serialises a table and an owner annotation with the leaf fields null', () => {
    expect(JSON.parse(JSON.stringify(view(0x0000000412345003n, 1)))).toEqual({
      kind: 'table',
      level: 1,
      ipa: null,
      raw: '0x0000000412345003',
      oa: '0x412345000',
      size: 0x40000000,
      perms: null,
      memattr: null,
      memattrValue: null,
      sh: null,
      af: null,
      sw: null,
      flags: [],
      owner: null,
      text: 'L1 table 0x412345000',
    });
    expect(view(0x4n, 3).toJSON()).toMatchObject({ kind: 'owner', owner: 1, oa: null, perms: null });
  });

  it('answers util.inspect, the debugger description hook and toString with the text', () => {
    const v = view(0x00400000800007ffn, 3);
    const text = 'L3 page 0x80000000 RW- Normal-WB AF';
    expect(inspect(v)).toBe(text);
    expect(inspect([v])).toBe(`[ ${text} ]`);
    const hook = (v as unknown as Record<symbol, () => string>)[Symbol.for('debug.description')]!;
    expect(hook.call(v)).toBe(text);
    expect(`${v}`).toBe(text);
  });
});

describe('WalkView', () => {
  it('describes a success, each fault, and an IPA out of range', () => {
    const { pgt, mc } = table();
    pgt.map(0x40000000, 0x1000, 0x80000000, KVM_PGTABLE_PROT_RW, mc);
    pgt.map(0x40001000, 0x1000, 0x80001000, KVM_PGTABLE_PROT_RW, mc);
    pgt.testClearYoung(0x40001000, 0x1000, true);
    const w = new HwWalker(pgt);
    const r = new HwWalkResult();
    const text = (ipa: number, a: 0 | 1 | 2, walker = w) => {
      walker.walk(ipa, a, r);
      return new WalkView(r, pgt).text;
    };
    expect(text(0x40000123, ACCESS_READ)).toBe(
      'read ipa 0x40000123 -> pa 0x80000123 (L3 page 0x80000000 RW- Normal-WB AF)',
    );
    expect(text(0x40000123, ACCESS_EXEC)).toBe(
      'exec ipa 0x40000123: permission fault at L3, FSC 0x0f (L3 page 0x80000000 RW- Normal-WB AF)',
    );
    expect(text(0x40001008, ACCESS_WRITE)).toBe(
      'write ipa 0x40001008: access-flag fault at L3, FSC 0x0b (L3 page 0x80001000 RW- Normal-WB)',
    );
    expect(text(0x40001008, ACCESS_WRITE, new HwWalker(pgt, { ha: true }))).toBe(
      'write ipa 0x40001008 -> pa 0x80001008 (L3 page 0x80001000 RW- Normal-WB) [AF set by hardware]',
    );
    expect(text(0x80000000, ACCESS_READ)).toBe(
      'read ipa 0x80000000: translation fault at L1, FSC 0x05 (L1 invalid)',
    );
    expect(text(2 ** 40, ACCESS_READ)).toBe(
      'read ipa 0x10000000000: translation fault at L0, FSC 0x04 (IPA out of range)',
    );
  });

  it('copies the result (the walker reuses it) and serialises to JSON', () => {
    const { pgt, mc } = table();
    pgt.map(0x40000000, 0x200000, 0x80000000, KVM_PGTABLE_PROT_R, mc);
    const w = new HwWalker(pgt);
    const r = new HwWalkResult();
    w.walk(0x40000010, ACCESS_WRITE, r);
    const v = new WalkView(r, pgt);
    w.walk(0x40000010, ACCESS_READ, r);
    expect(v.ok).toBe(false);
    expect(JSON.parse(JSON.stringify(v))).toEqual({
      ipa: '0x40000010',
      access: 'write',
      ok: false,
      fault: 'permission',
      fsc: '0x0e',
      level: 2,
      pa: null,
      afWouldBeSet: false,
      entry: view(0x0040000080000000n | 0x77dn, 2).toJSON(),
      text: 'write ipa 0x40000010: permission fault at L2, FSC 0x0e (L2 block 0x80000000 R-- Normal-WB AF)',
    });
    const ok = new WalkView(r, pgt);
    expect(ok.toJSON()).toMatchObject({ ok: true, fault: null, fsc: null, pa: '0x80000010' });
    expect(inspect(ok)).toBe(ok.text);
    const hook = (ok as unknown as Record<symbol, () => string>)[Symbol.for('debug.description')]!;
    expect(hook.call(ok)).toBe(ok.text);
  });

  it('shows the dangling table descriptor for an external abort', () => {
    const { pgt } = table();
    pgt.pool.pages[pgt.pgd]![2] = 0x5003; // L1 entry 1 (0x40000000)
    const r = new HwWalkResult();
    new HwWalker(pgt).walk(0x40000000, ACCESS_READ, r);
    expect(new WalkView(r, pgt).text).toBe(
      'read ipa 0x40000000: external-abort fault at L2, FSC 0x16 (L1 table 0x5000)',
    );
  });
});

describe('describeTable', () => {
  it('lists leaves and annotations in IPA order with their IPAs', () => {
    const { pgt, mc } = table();
    pgt.map(0x40200000, 0x200000, 0x80200000, KVM_PGTABLE_PROT_R, mc);
    pgt.map(0x40000000, 0x2000, 0x80000000, KVM_PGTABLE_PROT_RW, mc);
    pgt.map(0x80000000, 0x40000000, 0x100000000, KVM_PGTABLE_PROT_RWX, mc);
    expect(pgt.setOwner(0x50000000, 0x1000, mc, 1)).toBe(0);
    expect(describeTable(pgt).map((v) => v.text)).toEqual([
      'ipa 0x40000000: L3 page 0x80000000 RW- Normal-WB AF',
      'ipa 0x40001000: L3 page 0x80001000 RW- Normal-WB AF',
      'ipa 0x40200000: L2 block 0x80200000 R-- Normal-WB AF',
      'ipa 0x50000000: L3 owner 1',
      'ipa 0x80000000: L1 block 0x100000000 RWX Normal-WB AF',
    ]);
    pgt.destroy();
    expect(describeTable(pgt)).toEqual([]);
  });
});

describe('ptdump (arch/arm64/kvm/ptdump.c, v6.17 legacy-XN bit table)', () => {
  const HEADER = '---[ Guest IPA ]---';
  const lines = (pgt: Stage2PageTable): string[] => {
    const text = ptdump(pgt);
    expect(text.endsWith('\n')).toBe(true);
    return text.slice(0, -1).split('\n');
  };

  it('reproduces the kernel debugfs format: a non-executable RW 2M block with start level 1', () => {
    const { pgt, mc } = table();
    pgt.map(0x40000000, 0x200000, 0x40000000, KVM_PGTABLE_PROT_RW, mc);
    expect(lines(pgt)).toEqual([
      HEADER,
      // An empty region.
      '0x0000000000000000-0x0000000040000000           1G 1',
      // The block, as note_page() prints it.
      '0x0000000040000000-0x0000000040200000           2M 2   R W X AF BLK',
      '0x0000000040200000-0x0000000080000000        1022M 2',
      // The L1 tail [0x80000000, 2^40) is never printed.
    ]);
  });

  it('merges runs by level and masked bits whatever the PA; X means not executable', () => {
    for (const fwb of [false, true]) {
      const { pgt, mc } = table({ fwb });
      pgt.map(0x1000, 0x1000, 0x80000000, KVM_PGTABLE_PROT_RWX, mc);
      pgt.map(0x2000, 0x1000, 0x90000000, KVM_PGTABLE_PROT_RWX, mc);
      pgt.map(0x3000, 0x1000, 0x70000000, KVM_PGTABLE_PROT_RW, mc);
      pgt.map(0x80000000, 0x40000000, 0xc0000000, KVM_PGTABLE_PROT_R, mc);
      // Page bits: VALID set " ", R, W, XN clear -> set " ", AF, type 0b11 -> BLK clear "   ".
      const rwxPage = '  ' + ' R' + ' W' + '  ' + ' AF' + '    ';
      const rwPage = '  ' + ' R' + ' W' + ' X' + ' AF' + '    ';
      expect(lines(pgt)).toEqual([
        HEADER,
        '0x0000000000000000-0x0000000000001000           4K 3',
        '0x0000000000001000-0x0000000000003000           8K 3' + rwxPage,
        '0x0000000000003000-0x0000000000004000           4K 3' + rwPage,
        '0x0000000000004000-0x0000000000200000        2032K 3',
        '0x0000000000200000-0x0000000040000000        1022M 2',
        '0x0000000040000000-0x0000000080000000           1G 1',
        '0x0000000080000000-0x00000000c0000000           1G 1   R   X AF BLK',
      ]);
    }
  });

  it('shows a LOCKED entry with F and X, and hides owner annotations (bits outside the mask)', () => {
    const { pgt, mc } = table();
    pgt.setOwner(0x1000, 0x1000, mc, 1);
    expect(lines(pgt)).toEqual([
      HEADER,
      '0x0000000000000000-0x0000000000200000           2M 3',
      '0x0000000000200000-0x0000000040000000        1022M 2',
    ]);
    pgt.map(0x2000, 0x1000, 0x2000, KVM_PGTABLE_PROT_RW, mc);
    // Overwrite the new page with KVM_INVALID_PTE_LOCKED (0x400), as mid break-before-make.
    const l3 = describeTable(pgt).find((v) => v.ipa === 0x2000)!;
    expect(l3.kind).toBe('page');
    const words = pgt.pool.pages.find((p) => p[4] === l3.lo && p[5] === l3.hi)!;
    words[4] = 0x400;
    words[5] = 0;
    const locked = ' F' + '  ' + '  ' + ' X' + '   ' + '    ';
    expect(lines(pgt)).toEqual([
      HEADER,
      '0x0000000000000000-0x0000000000002000           8K 3',
      '0x0000000000002000-0x0000000000003000           4K 3' + locked,
      '0x0000000000003000-0x0000000000200000        2036K 3',
      '0x0000000000200000-0x0000000040000000        1022M 2',
    ]);
  });

  it('prints only the marker for an empty table, and nothing once destroyed', () => {
    const { pgt } = table();
    expect(ptdump(pgt)).toBe(`${HEADER}\n`);
    pgt.destroy();
    expect(ptdump(pgt)).toBe('');
  });

  it('formats sizes as the kernel does', () => {
    expect([0x1000, 0x3000, 0x200000, 0x60000000, 2 ** 40, 2 ** 60, 2 ** 70].map(sizeUnit)).toEqual([
      '4K',
      '12K',
      '2M',
      '1536M',
      '1T',
      '1E',
      '1024E',
    ]);
  });

  it('writes ipa_range and stage2_levels', () => {
    expect([ptdumpIpaRange(table().pgt), ptdumpStage2Levels(table().pgt)]).toEqual(['40\n', '3\n']);
    const p48 = table({ ipaBits: 48 }).pgt;
    expect([ptdumpIpaRange(p48), ptdumpStage2Levels(p48)]).toEqual(['48\n', '4\n']);
    const p32 = table({ ipaBits: 32 }).pgt;
    expect([ptdumpIpaRange(p32), ptdumpStage2Levels(p32)]).toEqual(['32\n', '2\n']);
  });
});
