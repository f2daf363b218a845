/**
 * The guest's stage-1 tables as bytes in guest memory (issue 8), values in accesses, and what
 * the output says about stage 1: `s1`, `memType`, `par`. Expected descriptors and PAR_EL1
 * values are derived by hand from the VMSAv8-64 layouts in the comments, not from output.
 */
import { describe, expect, it } from 'vitest';
import { HPTE_WRITE, HPTE_ZERO, newHostLeaf } from '../src/mmu/host/hostpt.js';
import { ScenarioError } from '../src/scenario/errors.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner, accessJson } from '../src/scenario/run.js';

type Line = Record<string, unknown>;

function runner(s: unknown): { lines: Line[]; r: ScenarioRunner } {
  const lines: Line[] = [];
  const r = new ScenarioRunner(parseScenario(s));
  r.run({ access: (step, res) => lines.push(accessJson(step, res)) });
  return { lines, r };
}

/** The 8 bytes of guest memory at `ipa` as a 0x-prefixed 16-digit hex string. */
function guest64(r: ScenarioRunner, ipa: number): string {
  const b = r.kvm.readGuestPhys(ipa, 8);
  let s = '';
  for (let i = 7; i >= 0; i--) s += b[i]!.toString(16).padStart(2, '0');
  return '0x' + s;
}

const MAIR = '0x0000_0000_0004_44ff'; // Attr0 Normal-WB, Attr1 Normal-NC, Attr2 Device-nGnRE

function scenario(opts: {
  mappings: unknown[];
  steps: unknown[];
  stage1?: Record<string, unknown>;
  cpu?: Record<string, unknown>;
  slotFlags?: string[];
}): Record<string, unknown> {
  return {
    cpu: { profile: 'grace', ...opts.cpu },
    granule: '4K',
    physical: [
      { base: '0x8000_0000', size: '4G', type: 'ram' },
      { base: '0x4000_0000_0000', size: '64M', type: 'nomap' },
    ],
    vmas: [
      { name: 'ram', start: '0x7f00_0000_0000', size: '1G', backing: 'anon', prot: 'rw' },
      {
        name: 'dev',
        start: '0x7e00_0000_0000',
        size: '2M',
        backing: 'pfnmap',
        pa: '0x4000_0000_0000',
        prot: 'rw',
        memType: 'device-nGnRE',
        flags: ['shared'],
      },
    ],
    memslots: [
      { slot: 0, gpa: '0x4000_0000', size: '1G', vma: 'ram', flags: opts.slotFlags ?? [] },
      { slot: 1, gpa: '0x1_0000_0000', size: '2M', vma: 'dev' },
    ],
    guest: {
      stage1: { granule: '4K', tables: '0x7000_0000', mair: MAIR, mappings: opts.mappings, ...opts.stage1 },
    },
    steps: opts.steps,
  };
}

const RAM_MAP = { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '8K', attrIndx: 1, ap: 'ro', xn: true };

describe('stage-1 tables are bytes in guest memory', () => {
  it('lays the tables out from `tables` with the descriptors VMSAv8-64 defines', () => {
    const { r } = runner(scenario({ mappings: [RAM_MAP], steps: [] }));
    // VA 0x40_0000_0000: L0 index 0 (VA >> 39), L1 index 256 ((VA >> 30) & 511), L2 and L3 index 0.
    // Tables: L0 at 0x70000000 (root), L1 at 0x70001000, L2 at 0x70002000, L3 at 0x70003000.
    // A table descriptor is its table's address | 0b11.
    expect(guest64(r, 0x7000_0000)).toBe('0x0000000070001003');
    expect(guest64(r, 0x7000_1000 + 256 * 8)).toBe('0x0000000070002003');
    expect(guest64(r, 0x7000_2000)).toBe('0x0000000070003003');
    // Page: OA 0x40000000 | AF (0x400) | SH 0b11 (0x300) | AP[2] (0x80) | AttrIndx 1 (0x4) | 0b11,
    // and PXN | UXN (bits 53, 54: 0x0060 in the top half).
    expect(guest64(r, 0x7000_3000)).toBe('0x0060000040000787');
    expect(guest64(r, 0x7000_3008)).toBe('0x0060000040001787');
    expect(guest64(r, 0x7000_3010)).toBe('0x0000000000000000');
    expect(r.vcpu.stage1!.tablesEnd).toBe(0x7000_4000);
  });

  it('pages only by default; "blocks": true uses a 2M block where it fits', () => {
    const map = { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '2M', attrIndx: 0, ap: 'rw' };
    const pages = runner(scenario({ mappings: [map], steps: [] })).r;
    expect(guest64(pages, 0x7000_2000)).toBe('0x0000000070003003');
    expect(guest64(pages, 0x7000_3000 + 511 * 8)).toBe('0x00000000401ff703');
    const blocks = runner(scenario({ mappings: [map], steps: [], stage1: { blocks: true } })).r;
    // L2 block: bits [1:0] = 0b01.
    expect(guest64(blocks, 0x7000_2000)).toBe('0x0000000040000701');
    expect(blocks.vcpu.stage1!.tablesEnd).toBe(0x7000_3000);
  });

  it('vaBits fixes the start level: 39 bits with 4K pages start at level 1', () => {
    const { r, lines } = runner(
      scenario({
        mappings: [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw' }],
        steps: [{ access: 'read', va: '0x40_0000_0000' }],
        stage1: { vaBits: 39 },
      }),
    );
    // Root is level 1: index (VA >> 30) & 511 = 256.
    expect(guest64(r, 0x7000_0000 + 256 * 8)).toBe('0x0000000070001003');
    expect(lines[0]!['s1']).toEqual({
      va: '0x4000000000',
      desc: '0x0000000040000703',
      level: 3,
      tableIpa: '0x70002000',
    });
  });

  it('the table pages are private and writable in the host: the first walk needs no zero-page copy-on-write', () => {
    // The issue's bug: with the tables kept on the side, the first walk read never-touched
    // pages, the host mapped the zero page read-only, and the AF update took an S1PTW permission
    // fault and a copy-on-write. Now the VMM wrote them, so they are private and writable.
    const { r, lines } = runner(
      scenario({
        mappings: [
          { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw', af: false },
        ],
        steps: [{ access: 'read', va: '0x40_0000_0000' }],
        stage1: { ha: true },
      }),
    );
    const faults = lines[0]!['faults'] as { fsc: string; s1ptw: boolean }[];
    expect(faults.filter((f) => f.s1ptw).map((f) => f.fsc)).toEqual([
      'translation',
      'translation',
      'translation',
      'translation',
    ]);
    expect(r.kvm.mm.stats.cowBreaks).toBe(0);
    const l = newHostLeaf();
    r.kvm.mm.pt.lookup(r.kvm.ipaToHva(0x7000_3000), l);
    expect(l.flags & HPTE_WRITE).not.toBe(0);
    expect(l.flags & HPTE_ZERO).toBe(0);
    // The AF update was a write to that page: guest memory holds the leaf with AF now.
    expect(guest64(r, 0x7000_3000)).toBe('0x0000000040000703');
    expect(lines[0]!['s1']).toMatchObject({ desc: '0x0000000040000703', tableIpa: '0x70003000' });
  });

  it("leafTableOf maps a VA onto the table page holding another VA's leaf; a store there changes the translation", () => {
    const { lines } = runner(
      scenario({
        mappings: [
          { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '8K', attrIndx: 0, ap: 'rw' },
          { va: '0x50_0000_0000', leafTableOf: '0x40_0000_1000', attrIndx: 0, ap: 'rw' },
        ],
        steps: [
          { access: 'read', va: '0x50_0000_0008' },
          { access: 'read', va: '0x40_0000_1000' },
          { access: 'write', va: '0x50_0000_0008', value: '0' },
          { access: 'read', va: '0x40_0000_1000' },
        ],
      }),
    );
    // The alias reads the L3 entry of VA 0x40_0000_1000: 0x40001000 | 0x703.
    expect(lines[0]).toMatchObject({ ipa: '0x70003008', value: '0x0000000040001703' });
    expect(lines[0]!['s1']).toMatchObject({ desc: '0x0000000070003703' });
    expect(lines[1]).toMatchObject({ outcome: 'done', ipa: '0x40001000' });
    // The guest cleared its own PTE: the next access is a stage-1 translation fault at level 3.
    expect(lines[3]).toMatchObject({
      outcome: 'dabt',
      stage1Fault: true,
      s1: { va: '0x4000001000', fault: 'translation', level: 3 },
    });
  });
});

describe('stage-1 faults from descriptors the guest writes', () => {
  it('an output address at or above 2^ips is an address size fault; a VA past 2^vaBits a level-0 translation fault', () => {
    const { lines } = runner(
      scenario({
        mappings: [
          { va: '0x4000_0000', ipa: '0x4000_0000', size: '8K', attrIndx: 0, ap: 'rw' },
          { va: '0x5000_0000', leafTableOf: '0x4000_0000', attrIndx: 0, ap: 'rw' },
        ],
        // 32-bit VA and IPA: the root is level 1 (4K pages), the walk has three levels.
        stage1: { vaBits: 32, ips: 32 },
        steps: [
          // PTE of VA 0x4000_1000 := OA 2^32 | AF | SH | page: beyond the 32-bit output space.
          { access: 'write', va: '0x5000_0008', value: '0x1_0000_0703' },
          { access: 'read', va: '0x4000_1000' },
          { access: 'at', va: '0x4000_1000' },
          { access: 'read', va: '0x1_0000_0000' },
        ],
      }),
    );
    expect(lines[1]).toMatchObject({
      outcome: 'dabt',
      stage1Fault: true,
      s1: { fault: 'address-size', level: 3 },
    });
    // FST 0b000011 (address size, level 3) << 1 = 0x6, F = 1, bit 11.
    expect(lines[2]!['par']).toBe('0x0000000000000807');
    expect(lines[3]).toMatchObject({ outcome: 'dabt', s1: { fault: 'translation', level: 0 } });
  });
});

describe('values in accesses', () => {
  const steps = [
    { access: 'write', va: '0x40_0000_1000', value: '0x1122_3344_5566_7788' },
    { access: 'read', va: '0x40_0000_1000' },
    { access: 'ld-preidx', va: '0x40_0000_1004' },
    { access: 'cas', va: '0x40_0000_1000', expect: '0x1', value: '0x2' },
    { access: 'cas', va: '0x40_0000_1000', expect: '0x1122_3344_5566_7788', value: '0x2' },
    { access: 'read', va: '0x40_0000_1000' },
    { access: 'st-preidx', va: '0x40_0000_1040', value: '0xabc' },
    { access: 'dc-zva', va: '0x40_0000_1010' },
    { access: 'read', va: '0x40_0000_1000' },
    { access: 'read', va: '0x40_0000_1040' },
    { access: 'read', va: '0x40_0000_1ff8' },
  ];
  const map = [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '8K', attrIndx: 0, ap: 'rw' }];

  it('stores, loads, compares and swaps, and zeroes a DC ZVA block', () => {
    const { lines } = runner(scenario({ mappings: map, steps }));
    expect(lines.map((l) => l['value'])).toEqual([
      undefined,
      '0x1122334455667788',
      // An unaligned load reports the naturally aligned doubleword that holds it.
      '0x1122334455667788',
      '0x1122334455667788', // cas fails: old value, nothing stored
      '0x1122334455667788', // cas succeeds: old value reported, 2 stored
      '0x0000000000000002',
      undefined,
      undefined,
      '0x0000000000000000', // DC ZVA at 0x1010 zeroed [0x1000, 0x1040)
      '0x0000000000000abc', // ... and not 0x1040
      '0x0000000000000000',
    ]);
  });

  it('cpu.dczvaBytes sets the block DC ZVA zeroes', () => {
    const { lines } = runner(scenario({ mappings: map, steps, cpu: { dczvaBytes: 128 } }));
    expect(lines[9]!['value']).toBe('0x0000000000000000');
  });

  it('cpu.dzp: DC ZVA is an UNDEF for the guest; nothing is translated or written', () => {
    const { lines } = runner(scenario({ mappings: map, steps, cpu: { dzp: true } }));
    expect(lines[7]).toMatchObject({ outcome: 'done', undef: true, faults: [] });
    expect(lines[7]!['memType']).toBeUndefined();
    expect(lines[8]!['value']).toBe('0x0000000000000002');
  });

  it('an MMIO read returns zero', () => {
    const { lines } = runner(
      scenario({
        mappings: [{ va: '0x40_0000_0000', ipa: '0x2_0000_0000', size: '4K', attrIndx: 2, ap: 'rw' }],
        steps: [{ access: 'read', va: '0x40_0000_0010' }],
      }),
    );
    expect(lines[0]).toMatchObject({ outcome: 'mmio', value: '0x0000000000000000' });
  });

  it('works with stage 1 off too', () => {
    const lines: Line[] = [];
    const s = scenario({ mappings: [], steps: [] });
    delete s['guest'];
    s['steps'] = [
      { access: 'write', ipa: '0x4000_0008', value: '0xff' },
      { access: 'read', ipa: '0x4000_0008' },
    ];
    new ScenarioRunner(parseScenario(s)).run({ access: (st, r) => lines.push(accessJson(st, r)) });
    expect(lines[1]).toMatchObject({ value: '0x00000000000000ff' });
    expect(lines[1]!['s1']).toBeUndefined();
    expect(lines[1]!['memType']).toBeUndefined();
  });
});

describe('AT and PAR_EL1', () => {
  it('F = 0: the IPA, SH and the MAIR attribute; F = 1: the fault status', () => {
    const { lines } = runner(
      scenario({
        mappings: [
          { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw' },
          { va: '0x41_0000_0000', ipa: '0x4000_1000', size: '4K', attrIndx: 1, ap: 'rw' },
          { va: '0x42_0000_0000', ipa: '0x4000_2000', size: '4K', attrIndx: 0, ap: 'rw', af: false },
        ],
        steps: [
          { access: 'at', va: '0x40_0000_0123' },
          { access: 'at', va: '0x41_0000_0000' },
          { access: 'at', va: '0x43_0000_0000' },
          { access: 'at', va: '0x42_0000_0000' },
        ],
      }),
    );
    // Normal-WB: PA 0x40000000 | SH 0b11 << 7 (0x180) | RES1 bit 11 (0x800), ATTR 0xff in [63:56].
    expect(lines[0]!['par']).toBe('0xff00000040000980');
    // Normal-NC reports SH = 0b10 (Outer Shareable): 0x100 | 0x800; ATTR 0x44.
    expect(lines[1]!['par']).toBe('0x4400000040001900');
    // Unmapped: L1 translation fault, FST 0b000101 << 1 = 0xa, F = 1, bit 11.
    expect(lines[2]!['par']).toBe('0x000000000000080b');
    // AF = 0 without HA: L3 access-flag fault, FST 0b001011 << 1 = 0x16.
    expect(lines[3]!['par']).toBe('0x0000000000000817');
    expect(lines[3]!['s1']).toEqual({ va: '0x4200000000', fault: 'access-flag', level: 3 });
    expect(lines.every((l) => l['outcome'] === 'done' && l['memType'] === undefined)).toBe(true);
  });

  it('cpu.atUpdatesAf decides whether AT with TCR_EL1.HA sets the access flag', () => {
    const run = (atUpdatesAf: boolean) =>
      runner(
        scenario({
          mappings: [
            { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw', af: false },
          ],
          steps: [{ access: 'at', va: '0x40_0000_0000' }],
          stage1: { ha: true },
          cpu: { atUpdatesAf },
        }),
      );
    const off = run(false);
    expect(off.lines[0]!['par']).toBe('0xff00000040000980');
    expect(guest64(off.r, 0x7000_3000)).toBe('0x0000000040000303');
    const on = run(true);
    expect(guest64(on.r, 0x7000_3000)).toBe('0x0000000040000703');
  });
});

describe('memType: stage 1 combined with stage 2', () => {
  const mappings = [
    { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw' },
    { va: '0x41_0000_0000', ipa: '0x4000_1000', size: '4K', attrIndx: 1, ap: 'rw' },
    { va: '0x42_0000_0000', ipa: '0x4000_2000', size: '4K', attrIndx: 2, ap: 'rw' },
    { va: '0x43_0000_0000', ipa: '0x1_0000_0000', size: '4K', attrIndx: 0, ap: 'rw' },
  ];
  const steps = ['0x40', '0x41', '0x42', '0x43'].map((v) => ({ access: 'read', va: `${v}_0000_0000` }));
  const types = (fwb: boolean) =>
    runner(scenario({ mappings, steps, cpu: { fwb } })).lines.map((l) => l['memType']);

  it('without FWB: the weaker cacheability and the stronger Device type win', () => {
    // S1 WB + S2 WB = WB; S1 NC + S2 WB = NC; S1 Device + S2 WB = Device; S1 WB + S2 Device = Device.
    expect(types(false)).toEqual(['Normal-WB', 'Normal-NC', 'Device-nGnRE', 'Device-nGnRE']);
  });

  it("with FWB: KVM's Normal forces write-back over stage 1", () => {
    expect(types(true)).toEqual(['Normal-WB', 'Normal-WB', 'Normal-WB', 'Device-nGnRE']);
  });
});

describe('the parser rejects bad keys with their paths', () => {
  const issues = (s: unknown): string[] => {
    try {
      parseScenario(s);
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      return (e as ScenarioError).issues.map((i) => `${i.path}: ${i.message}`);
    }
    throw new Error('accepted');
  };
  const ok = { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw' };

  it('init, populate and hostWrite', () => {
    const s = scenario({ mappings: [ok], steps: [] });
    const vmas = s['vmas'] as Record<string, unknown>[];
    vmas[0]!['init'] = [
      { offset: 0, u64: '0x1_0000_0000_0000_0000' },
      { offset: 0, hex: 'abc' },
      { offset: 0 },
    ];
    vmas[0]!['populate'] = 'yes';
    const got = issues(s);
    expect(got).toContain(
      'vmas[0].init[0].u64: ' +
        'expected a 64-bit value: a hex string of up to 16 digits such as "0x0123_4567_89ab_cdef", a decimal string, or a number below 2^53',
    );
    expect(got.some((m) => m.startsWith('vmas[0].init[1].hex: expected bytes'))).toBe(true);
    expect(got).toContain('vmas[0].init[2]: give exactly one of "u64" and "hex"');
    expect(got.some((m) => m.startsWith('vmas[0].populate: '))).toBe(true);
    const step = issues(
      scenario({ mappings: [ok], steps: [{ hostWrite: { vma: 'ram', offset: '1G', u64: '1' } }] }),
    );
    expect(step).toEqual([
      'steps[0].hostWrite.offset: 8 byte(s) at offset 0x40000000 run past the end of VMA "ram" (0x40000000 bytes)',
    ]);
  });

  it('a VMM write into a read-only VMA', () => {
    const s = scenario({ mappings: [ok], steps: [] });
    const vmas = s['vmas'] as Record<string, unknown>[];
    vmas[0]!['prot'] = 'r';
    vmas[0]!['init'] = [{ offset: 0, u64: '1' }];
    expect(issues(s).some((m) => m.startsWith('vmas[0].init: VMA "ram" is not writable'))).toBe(true);
  });

  it('values on accesses that take none, and unaligned values', () => {
    const got = issues(
      scenario({
        mappings: [ok],
        steps: [
          { access: 'read', va: '0x40_0000_0000', value: '1' },
          { access: 'write', va: '0x40_0000_0000', expect: '1' },
          { access: 'write', va: '0x40_0000_0004', value: '1' },
          { access: 'cas', va: '0x40_0000_0000', value: 'x' },
        ],
      }),
    );
    expect(got.some((m) => m.startsWith('steps[0].value: "value" is not used by a "read" access'))).toBe(
      true,
    );
    expect(got.some((m) => m.startsWith('steps[1].expect: "expect" is not used by a "write" access'))).toBe(
      true,
    );
    expect(got.some((m) => m.startsWith('steps[2].va: an access that stores or compares a value'))).toBe(
      true,
    );
    expect(got.some((m) => m.startsWith('steps[3].value: expected a 64-bit value'))).toBe(true);
  });

  it('stage-1 keys: vaBits, ips, leafTableOf, tables beyond the memslots, cpu.dczvaBytes', () => {
    const s = scenario({
      mappings: [ok, { va: '0x50_0000_0000', leafTableOf: '0x60_0000_0000', attrIndx: 0, ap: 'rw' }],
      steps: [],
      stage1: { vaBits: 50, ips: 52 },
      cpu: { dczvaBytes: 48, dzp: 1 },
    });
    const got = issues(s);
    expect(got.some((m) => m.startsWith('guest.stage1.vaBits: expected an integer from 25 to 48'))).toBe(
      true,
    );
    expect(got.some((m) => m.startsWith('guest.stage1.ips: expected one of 32, 36, 40, 42, 44, 48'))).toBe(
      true,
    );
    expect(
      got.some((m) => m.startsWith('guest.stage1.mappings[1].leafTableOf: 0x6000000000 is not mapped')),
    ).toBe(true);
    expect(got).toContain('cpu.dczvaBytes: DCZID_EL0.BS: a power of two from 4 to 2048 bytes');
    expect(got.some((m) => m.startsWith('cpu.dzp: '))).toBe(true);

    // The layout needs 4 table pages; a memslot ending 2 pages after `tables` cannot hold them.
    const short = scenario({ mappings: [ok], steps: [], stage1: { tables: '0x2000_0000' } });
    (short['memslots'] as Record<string, unknown>[]).push({
      slot: 2,
      gpa: '0x2000_0000',
      size: '8K',
      vma: 'ram',
      offset: '0x3000_0000',
    });
    expect(issues(short)).toEqual([
      'guest.stage1.tables: the stage-1 builder needs 4 table page(s) from "tables"; the one at 0x20002000 lies in no memslot',
    ]);
  });
});
