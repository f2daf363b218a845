/**
 * explain (src/views/explain.ts, src/cli/explain.ts): the level-by-level walk of one address,
 * each descriptor with its index and table page, the hardware's answer for read, write and
 * exec, the guest's stage-1 walk and the combined memory type, the "why" slot; and that
 * explaining changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { explainCommand } from '../src/cli/explain.js';
import {
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  hex64,
} from '../src/pgtable/descriptor.js';
import { MemCache } from '../src/pgtable/pool.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';
import { ptdump } from '../src/views/ptdump.js';
import { explainIpa, walkLevels } from '../src/views/explain.js';

function table(): Stage2PageTable {
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
  const mc = MemCache.unlimited(pgt.pool);
  // A 2M RW non-exec block, and a 4K R-X page in another 1G.
  expect(pgt.map(0x4000_0000, 0x20_0000, 0x8000_0000, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W, mc)).toBe(0);
  expect(pgt.map(0x8000_3000, 0x1000, 0x9000_0000, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_X, mc)).toBe(0);
  return pgt;
}

function cli(args: string[]): string {
  let out = '';
  expect(explainCommand(args, (t) => (out += t))).toBe(0);
  return out;
}

describe('explain: the walk', () => {
  it('reads each level: index, table page, raw value, decoded entry', () => {
    const pgt = table();
    const ipa = 0x4000_1234;
    const levels = walkLevels(pgt, ipa);
    expect(levels.map((l) => [l.level, l.index, l.entry.kind])).toEqual([
      [1, 1, 'table'], // 0x40001234 >> 30 = 1
      [2, 0, 'block'], // (0x40001234 >> 21) & 511 = 0
    ]);
    // The level-1 entry sits in the PGD page; the level-2 one in the table it points to.
    expect(levels[0]!.tablePa).toBe(pgt.pool.phys(pgt.pgd));
    expect(levels[1]!.tablePa).toBe(Number(levels[0]!.entry.oaBigInt));
    const leaf = new LeafResult();
    pgt.getLeaf(ipa, leaf);
    expect([levels[1]!.lo, levels[1]!.hi]).toEqual([leaf.lo, leaf.hi]);
    const text = explainIpa(pgt, ipa).text.split('\n');
    expect(text[0]).toBe(
      'ipa 0x40001234 in a 40-bit IPA space, 4K granule, start level 1 (2 concatenated PGD pages), no FWB',
    );
    expect(text[1]).toBe(
      `  L1[  1] table page 0x${pgt.pool.phys(pgt.pgd).toString(16)}  ${hex64(levels[0]!.lo, levels[0]!.hi)}  L1 table ${levels[0]!.entry.oa}`,
    );
    expect(text[2]).toBe(
      `  L2[  0] table page ${levels[0]!.entry.oa}  ${hex64(leaf.lo, leaf.hi)}  L2 block 0x80000000 RW- Normal-WB AF`,
    );
    expect(text[3]).toMatch(
      /^leaf: ipa 0x40000000-0x40200000 -> pa 0x80000000-0x80200000 \(2M at L2\), memory type Normal-WB/,
    );
  });

  it("says what a read, a write and an exec would do, legacy XN's way", () => {
    const v = explainIpa(table(), 0x4000_1234);
    expect(v.read.text).toBe('read ipa 0x40001234 -> pa 0x80001234 (L2 block 0x80000000 RW- Normal-WB AF)');
    expect(v.write.ok).toBe(true);
    expect(v.exec.text).toBe(
      'exec ipa 0x40001234: permission fault at L2, FSC 0x0e (L2 block 0x80000000 RW- Normal-WB AF)',
    );
    const page = explainIpa(table(), 0x8000_3008);
    expect(page.write.text).toMatch(/^write ipa 0x80003008: permission fault at L3, FSC 0x0f/);
    expect(page.exec.ok).toBe(true);
    expect(page.read.pa).toBe(0x9000_0008);
  });

  it('an unmapped IPA ends on an invalid entry; an IPA past the space takes a level-0 fault', () => {
    const pgt = table();
    const v = explainIpa(pgt, 0x4020_0000);
    expect(v.leaf).toBeNull();
    expect(v.text).toContain('L2[  1] table page');
    expect(v.text).toContain('leaf: none');
    expect(v.read.text).toMatch(/translation fault at L2, FSC 0x06/);
    const far = explainIpa(pgt, 2 ** 40);
    expect(far.levels).toEqual([]);
    expect(far.text).toContain('beyond the IPA space (2^40)');
    expect(far.read.fsc).toBe(0x04);
  });

  it('an aged leaf: an access-flag fault, or with hardware AF an access that would set it, and nothing changes', () => {
    const pgt = table();
    pgt.testClearYoung(0x4000_0000, 0x20_0000, true);
    const before = ptdump(pgt);
    expect(explainIpa(pgt, 0x4000_0000).read.text).toMatch(/access-flag fault at L2, FSC 0x0a/);
    expect(explainIpa(pgt, 0x4000_0000, { ha: true }).read.text).toMatch(/\[AF set by hardware\]$/);
    // A debugger's walk has no side effects: AF is still clear.
    expect(ptdump(pgt)).toBe(before);
  });

  it('prints the why line from a provenance function, for a leaf', () => {
    const pgt = table();
    const asked: number[] = [];
    const why = (ipa: number): string | null => {
      asked.push(ipa);
      return ipa === 0x4000_1234 ? 'mapped by user_mem_abort at step 3' : null;
    };
    expect(explainIpa(pgt, 0x4000_1234, { provenance: why }).text.split('\n').at(-1)).toBe(
      'why:   mapped by user_mem_abort at step 3',
    );
    expect(explainIpa(pgt, 0x8000_3000, { provenance: why }).text).toContain(
      'why:   (nothing recorded for this leaf)',
    );
    expect(explainIpa(pgt, 0x4000_1234).text).not.toContain('why:');
    expect(asked).toEqual([0x4000_1234, 0x8000_3000]);
  });

  it('has a JSON form with the same facts', () => {
    const j = explainIpa(table(), 0x4000_1234).toJSON();
    expect(j.levels.map((l) => l.index)).toEqual([1, 0]);
    expect(j.leaf).toMatchObject({ ipa: '0x40000000', size: 0x20_0000, pa: '0x80000000' });
    expect(j.exec.fault).toBe('permission');
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });
});

describe('s2emu explain', () => {
  it('explains an IPA of a scenario at the end and after a step', () => {
    const end = cli(['examples/guest-page-tables.json', '0x4010_0000']);
    expect(end.split('\n')[0]).toBe('# examples/guest-page-tables.json, after the last step (14 steps)');
    expect(end).toMatch(/^ {2}L3\[256\] table page 0x[0-9a-f]+ {2}0x[0-9a-f]{16} {2}L3 page /m);
    expect(end).toMatch(/^read: {2}read ipa 0x40100000 -> pa /m);
    const early = cli(['examples/guest-page-tables.json', '0x4010_0000', '--at', '0']);
    expect(early).toContain('after step 0 of 0..13');
  });

  it('--va walks the guest stage 1 first and gives the combined memory type', () => {
    const out = cli(['examples/guest-page-tables.json', '0x41_0000_0000', '--va']);
    const lines = out.split('\n');
    expect(lines[1]).toBe('stage 1 (guest): va 0x4100000000');
    // Four stage-1 levels (4K granule, 48-bit VA), each descriptor read from guest memory.
    expect(lines.slice(2, 6).map((l) => l.trim().split(' ')[0])).toEqual(['L0', 'L1', 'L2', 'L3']);
    expect(lines[6]).toMatch(/^ {2}-> ipa 0x40100000, MAIR_EL1\.Attr1 = 0x44 Normal-NC$/);
    // Stage 2 forces write-back under FWB (MemAttr 0b0110): Normal-NC at stage 1 comes out Normal-WB.
    expect(lines[7]).toBe(
      'combined memory type: Normal-WB (stage 1 Normal-NC, stage 2 MemAttr 0x6 Normal-WB, FWB; SH ISH)',
    );
    expect(lines[8]).toMatch(/^ipa 0x40100000 in a 40-bit IPA space/);
  });

  it('rejects bad input', () => {
    expect(() => cli(['examples/guest-page-tables.json'])).toThrow(/expected FILE and an address/);
    expect(() => cli(['examples/guest-page-tables.json', 'here'])).toThrow(/IPA: expected an address/);
    expect(() => cli(['examples/anon-1g-touch.json', '0x1000', '--va'])).toThrow(/has no guest stage 1/);
  });
});
