import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  MT_S2_NORMAL,
  MT_S2_NORMAL_NC,
  MT_S2_DEVICE_nGnRE,
  MT_S2_NORMAL_NOTAGACCESS,
  MT_S2_FWB_NORMAL,
  MT_S2_FWB_NORMAL_NC,
  MT_S2_FWB_DEVICE_nGnRE,
  MT_S2_FWB_NORMAL_NOTAGACCESS,
  S2_FWB_USE_S1,
  SH_NSH,
  SH_OSH,
  SH_ISH,
  S2_KIND_DEVICE,
  S2_KIND_NORMAL,
  S2_KIND_FORCE_WB,
  S2_KIND_USE_S1,
  S2_KIND_NOTAGACCESS,
  S2_KIND_RESERVED,
  combineS1S2Attrs,
  combinedAttr,
  combinedSh,
  describeMair,
  describeS2MemAttr,
  isS2Cacheable,
  mairText,
  s2CodeKind,
  s2MemAttrCode,
  s2MemAttrFor,
} from '../src/pgtable/memattr.js';

/** Combines with both shareabilities Inner (what KVM writes and Linux guests use). */
function comb(s1: number, s2: number, fwb: boolean, mode?: 'armarm' | 'qemu'): { attr: number; sh: number } {
  const r = combineS1S2Attrs(s1, SH_ISH, s2, SH_ISH, fwb, mode ? { fwbDeviceCombine: mode } : undefined);
  return { attr: combinedAttr(r), sh: combinedSh(r) };
}

describe('stage-2 MemAttr decoding without FWB', () => {
  const cases: [number, string, string, number][] = [
    [0x0, 'device', 'Device-nGnRnE', 0x00],
    [0x1, 'device', 'Device-nGnRE', 0x01],
    [0x2, 'device', 'Device-nGRE', 0x02],
    [0x3, 'device', 'Device-GRE', 0x03],
    [0x4, 'noTagAccess', 'Normal-WB-NoTagAccess', 0x4f],
    [0x5, 'normal', 'Normal-NC', 0x15],
    [0x6, 'normal', 'Normal-iWT-oNC', 0x16],
    [0x7, 'normal', 'Normal-iWB-oNC', 0x17],
    [0x8, 'reserved', 'Reserved-0x8', 0x50],
    [0x9, 'normal', 'Normal-iNC-oWT', 0x19],
    [0xa, 'normal', 'Normal-WT', 0x1a],
    [0xb, 'normal', 'Normal-iWB-oWT', 0x1b],
    [0xc, 'reserved', 'Reserved-0xc', 0x50],
    [0xd, 'normal', 'Normal-iNC-oWB', 0x1d],
    [0xe, 'normal', 'Normal-iWT-oWB', 0x1e],
    [0xf, 'normal', 'Normal-WB', 0x1f],
  ];
  it.each(cases)('MemAttr %i decodes as %s "%s"', (m, kind, text, code) => {
    const d = describeS2MemAttr(m, false);
    expect(d.kind).toBe(kind);
    expect(d.text).toBe(text);
    expect(d.memattr).toBe(m);
    expect(d.fwb).toBe(false);
    expect(s2MemAttrCode(m, false)).toBe(code);
  });

  it('reports inner and outer separately (0x7 = outer NC, inner WB)', () => {
    const d = describeS2MemAttr(0x7, false);
    expect(d.kind === 'normal' && [d.inner, d.outer]).toEqual(['wb', 'nc']);
  });
});

describe('stage-2 MemAttr decoding with FWB', () => {
  const cases: [number, string, string, number][] = [
    [0x0, 'device', 'Device-nGnRnE', 0x00],
    [0x1, 'device', 'Device-nGnRE', 0x01],
    [0x2, 'device', 'Device-nGRE', 0x02],
    [0x3, 'device', 'Device-GRE', 0x03],
    [0x4, 'reserved', 'Reserved-0x4', 0x50],
    [0x5, 'normal', 'Normal-NC', 0x15],
    [0x6, 'forceWB', 'Normal-WB', 0x2f],
    [0x7, 'useS1', 'Stage1', 0x30],
    [0x8, 'reserved', 'Reserved-0x8', 0x50],
    [0x9, 'reserved', 'Reserved-0x9', 0x50],
    [0xa, 'reserved', 'Reserved-0xa', 0x50],
    [0xb, 'reserved', 'Reserved-0xb', 0x50],
    [0xc, 'reserved', 'Reserved-0xc', 0x50],
    [0xd, 'reserved', 'Reserved-0xd', 0x50],
    [0xe, 'noTagAccess', 'Normal-WB-NoTagAccess', 0x4f],
    [0xf, 'reserved', 'Reserved-0xf', 0x50],
  ];
  it.each(cases)('MemAttr %i decodes as %s "%s"', (m, kind, text, code) => {
    const d = describeS2MemAttr(m, true);
    expect(d.kind).toBe(kind);
    expect(d.text).toBe(text);
    expect(d.fwb).toBe(true);
    expect(s2MemAttrCode(m, true)).toBe(code);
  });

  it('the packed kind agrees with the object kind for every value and FWB state', () => {
    const names = ['device', 'normal', 'forceWB', 'useS1', 'noTagAccess', 'reserved'];
    const kinds = [
      S2_KIND_DEVICE,
      S2_KIND_NORMAL,
      S2_KIND_FORCE_WB,
      S2_KIND_USE_S1,
      S2_KIND_NOTAGACCESS,
      S2_KIND_RESERVED,
    ];
    for (const fwb of [false, true]) {
      for (let m = 0; m < 16; m++) {
        expect(names[kinds.indexOf(s2CodeKind(s2MemAttrCode(m, fwb)))]).toBe(describeS2MemAttr(m, fwb).kind);
      }
    }
  });
});

describe('KVM values (arch/arm64/include/asm/memory.h)', () => {
  it('s2MemAttrFor picks MT_S2_* or MT_S2_FWB_*', () => {
    expect(s2MemAttrFor('normal', false)).toBe(0xf);
    expect(s2MemAttrFor('normal-nc', false)).toBe(0x5);
    expect(s2MemAttrFor('device', false)).toBe(0x1);
    expect(s2MemAttrFor('normal', true)).toBe(0x6);
    expect(s2MemAttrFor('normal-nc', true)).toBe(0x5);
    expect(s2MemAttrFor('device', true)).toBe(0x1);
  });

  it('keeps the scaffold constant values', () => {
    expect([MT_S2_NORMAL, MT_S2_NORMAL_NC, MT_S2_DEVICE_nGnRE, MT_S2_NORMAL_NOTAGACCESS]).toEqual([
      0xf, 5, 1, 4,
    ]);
    expect([
      MT_S2_FWB_NORMAL,
      MT_S2_FWB_NORMAL_NC,
      MT_S2_FWB_DEVICE_nGnRE,
      MT_S2_FWB_NORMAL_NOTAGACCESS,
    ]).toEqual([6, 5, 1, 0xe]);
  });

  it('isS2Cacheable is true only for NORMAL of the current FWB state', () => {
    for (let m = 0; m < 16; m++) {
      expect(isS2Cacheable(m, false)).toBe(m === 0xf);
      expect(isS2Cacheable(m, true)).toBe(m === 6);
    }
  });
});

describe('stage-1 MAIR decoding', () => {
  const cases: [number, string, string][] = [
    [0x00, 'device', 'Device-nGnRnE'],
    [0x04, 'device', 'Device-nGnRE'],
    [0x08, 'device', 'Device-nGRE'],
    [0x0c, 'device', 'Device-GRE'],
    [0x05, 'device', 'Device-nGnRE-XS0'],
    [0x02, 'reserved', 'Reserved-0x02'],
    [0x44, 'normal', 'Normal-NC'],
    [0xff, 'normal', 'Normal-WB'],
    [0xbb, 'normal', 'Normal-WT'],
    [0xaa, 'normal', 'Normal-WT-RA'],
    [0x99, 'normal', 'Normal-WT-WA'],
    [0xcc, 'normal', 'Normal-WB-NA'],
    [0x77, 'normal', 'Normal-WBt'],
    [0x33, 'normal', 'Normal-WTt'],
    [0x4f, 'normal', 'Normal-iWB-oNC'],
    [0xf0, 'normal', 'Normal-WB-Tagged'],
    [0x40, 'normal', 'Normal-NC-XS0'],
    [0xa0, 'normal', 'Normal-WT-RA-XS0'],
    [0x80, 'reserved', 'Reserved-0x80'],
  ];
  it.each(cases)('MAIR %i is %s "%s"', (attr, kind, text) => {
    const d = describeMair(attr);
    expect(d.kind).toBe(kind);
    expect(d.text).toBe(text);
    expect(mairText(attr)).toBe(text);
  });

  it('decodes nibble hints and tagging', () => {
    const d = describeMair(0x7e);
    expect(d.kind).toBe('normal');
    if (d.kind !== 'normal') return;
    expect(d.outer).toEqual({ cache: 'wb', transient: true, readAlloc: true, writeAlloc: true });
    expect(d.inner).toEqual({ cache: 'wb', transient: false, readAlloc: true, writeAlloc: false });
    expect(d.tagged).toBe(false);
    const t = describeMair(0xf0);
    expect(t.kind === 'normal' && t.tagged).toBe(true);
  });
});

describe('combining examples', () => {
  it('0xFF WB + NORMAL: 0xFF, Inner (no FWB)', () => {
    expect(comb(0xff, 0xf, false)).toEqual({ attr: 0xff, sh: SH_ISH });
  });
  it('0xFF WB + NORMAL: 0xFF (FWB)', () => {
    expect(comb(0xff, 6, true)).toEqual({ attr: 0xff, sh: SH_ISH });
  });
  it('0x44 NC + NORMAL: 0x44, OSH, the guest wins (no FWB)', () => {
    expect(comb(0x44, 0xf, false)).toEqual({ attr: 0x44, sh: SH_OSH });
  });
  it('0x44 NC + NORMAL: forced to 0xFF (FWB)', () => {
    expect(comb(0x44, 6, true)).toEqual({ attr: 0xff, sh: SH_ISH });
  });
  it('0xBB WT + NORMAL: 0xBB (no FWB)', () => {
    expect(comb(0xbb, 0xf, false)).toEqual({ attr: 0xbb, sh: SH_ISH });
  });
  it('0xBB WT + NORMAL: forced to 0xFF (FWB)', () => {
    expect(comb(0xbb, 6, true)).toEqual({ attr: 0xff, sh: SH_ISH });
  });
  it('0x00 Device-nGnRnE + NORMAL: 0x00, OSH (no FWB)', () => {
    expect(comb(0x00, 0xf, false)).toEqual({ attr: 0x00, sh: SH_OSH });
  });
  it('0x00 Device-nGnRnE + NORMAL: forced to Normal 0xFF (FWB)', () => {
    expect(comb(0x00, 6, true)).toEqual({ attr: 0xff, sh: SH_ISH });
  });
  it('0xFF WB + NORMAL_NC: 0x44, OSH (no FWB)', () => {
    expect(comb(0xff, 0x5, false)).toEqual({ attr: 0x44, sh: SH_OSH });
  });
  it('0xFF WB + NORMAL_NC: 0x44, OSH (FWB)', () => {
    expect(comb(0xff, 5, true)).toEqual({ attr: 0x44, sh: SH_OSH });
  });
  it('0x00 Device + NORMAL_NC: 0x00 (no FWB)', () => {
    expect(comb(0x00, 0x5, false)).toEqual({ attr: 0x00, sh: SH_OSH });
  });
  it('0x00 Device + NORMAL_NC: stage-1 Device kept, 0x00 (FWB)', () => {
    expect(comb(0x00, 5, true)).toEqual({ attr: 0x00, sh: SH_OSH });
  });
  it('0xFF + DEVICE_nGnRE: 0x04, OSH (no FWB)', () => {
    expect(comb(0xff, 0x1, false)).toEqual({ attr: 0x04, sh: SH_OSH });
  });
  it('0xFF + DEVICE_nGnRE: 0x04 (FWB)', () => {
    expect(comb(0xff, 1, true)).toEqual({ attr: 0x04, sh: SH_OSH });
  });
  it('0x00 nGnRnE + DEVICE_nGnRE: 0x00, the stronger (no FWB)', () => {
    expect(comb(0x00, 0x1, false)).toEqual({ attr: 0x00, sh: SH_OSH });
  });
  it('0x00 nGnRnE + DEVICE_nGnRE (FWB): 0x00 by default (ARM ARM), 0x04 in QEMU mode', () => {
    expect(comb(0x00, 1, true)).toEqual({ attr: 0x00, sh: SH_OSH });
    expect(comb(0x00, 1, true, 'armarm')).toEqual({ attr: 0x00, sh: SH_OSH });
    expect(comb(0x00, 1, true, 'qemu')).toEqual({ attr: 0x04, sh: SH_OSH });
  });
  it('0x0C GRE + DEVICE_nGnRE: 0x04 (no FWB)', () => {
    expect(comb(0x0c, 0x1, false)).toEqual({ attr: 0x04, sh: SH_OSH });
  });
  it('0x0C GRE + DEVICE_nGnRE: 0x04 (FWB, both modes)', () => {
    expect(comb(0x0c, 1, true)).toEqual({ attr: 0x04, sh: SH_OSH });
    expect(comb(0x0c, 1, true, 'qemu')).toEqual({ attr: 0x04, sh: SH_OSH });
  });
  it('any + use-stage-1 (FWB 7): the stage-1 byte', () => {
    for (const s1 of [0x00, 0x04, 0x0c, 0x44, 0x4f, 0x77, 0xbb, 0xee, 0xff, 0xf0]) {
      expect(comb(s1, S2_FWB_USE_S1, true).attr).toBe(s1);
    }
  });
});

describe('combining details (with and without FWB)', () => {
  it('stage-2 WT gives WT non-transient with the stage-1 hints', () => {
    expect(comb(0xff, 0xa, false).attr).toBe(0xbb);
    expect(comb(0xee, 0xa, false).attr).toBe(0xaa);
    expect(comb(0x7f, 0xa, false).attr).toBe(0xbb); // WB transient outer becomes WT non-transient
    expect(comb(0x33, 0xa, false).attr).toBe(0x33); // stage-1 WT (transient) kept
  });
  it('inner and outer combine separately', () => {
    expect(comb(0xff, 0x7, false)).toEqual({ attr: 0x4f, sh: SH_ISH }); // outer NC, inner WB
    expect(comb(0xf4, 0xe, false).attr).toBe(0xf4); // inner NC from stage 1 wins over inner WT
  });
  it('FWB force-WB keeps stage-1 hints where it can', () => {
    expect(comb(0xaa, 6, true).attr).toBe(0xee); // WT RA → WB RA
    expect(comb(0x33, 6, true).attr).toBe(0x77); // WT transient → WB transient
    expect(comb(0x4b, 6, true).attr).toBe(0xff); // NC outer → WB RWA
  });
  it('MTE: Tagged 0xF0 survives WB, is lost otherwise and under NoTagAccess', () => {
    expect(comb(0xf0, MT_S2_NORMAL, false).attr).toBe(0xf0);
    expect(comb(0xf0, MT_S2_FWB_NORMAL, true).attr).toBe(0xf0);
    expect(comb(0xf0, MT_S2_NORMAL_NC, false).attr).toBe(0x44);
    expect(comb(0xf0, 0xa, false).attr).toBe(0xbb);
    expect(comb(0xf0, MT_S2_NORMAL_NOTAGACCESS, false).attr).toBe(0xff);
    expect(comb(0xf0, MT_S2_FWB_NORMAL_NOTAGACCESS, true).attr).toBe(0xff);
  });
  it('NoTagAccess otherwise behaves like NORMAL', () => {
    expect(comb(0x44, MT_S2_NORMAL_NOTAGACCESS, false).attr).toBe(0x44);
    expect(comb(0x44, MT_S2_FWB_NORMAL_NOTAGACCESS, true).attr).toBe(0xff);
    expect(comb(0x04, MT_S2_FWB_NORMAL_NOTAGACCESS, true).attr).toBe(0xff);
  });
  it('reserved encodings combine as Device-nGnRnE', () => {
    expect(comb(0xff, 0x8, false)).toEqual({ attr: 0x00, sh: SH_OSH });
    expect(comb(0xff, 0x4, true)).toEqual({ attr: 0x00, sh: SH_OSH });
    expect(comb(0xff, 0x9, true)).toEqual({ attr: 0x00, sh: SH_OSH });
    expect(comb(0x80, 0xf, false)).toEqual({ attr: 0x00, sh: SH_OSH });
  });
  it('FEAT_XS MAIR forms combine as their XS = 1 twins', () => {
    expect(comb(0x40, 0xf, false).attr).toBe(0x44);
    expect(comb(0x05, 0xf, false).attr).toBe(0x04);
  });
  it('shareability: Outer beats Inner beats Non-shareable, for Normal cacheable results', () => {
    const sh = (a: number, b: number): number => combinedSh(combineS1S2Attrs(0xff, a, 0xf, b, false));
    expect(sh(SH_NSH, SH_NSH)).toBe(SH_NSH);
    expect(sh(SH_NSH, SH_ISH)).toBe(SH_ISH);
    expect(sh(SH_ISH, SH_NSH)).toBe(SH_ISH);
    expect(sh(SH_ISH, SH_OSH)).toBe(SH_OSH);
    expect(sh(SH_OSH, SH_NSH)).toBe(SH_OSH);
    expect(sh(1, SH_NSH)).toBe(SH_NSH); // reserved SH = 1 counts as neither
    expect(combinedSh(combineS1S2Attrs(0x00, SH_NSH, 0xf, SH_NSH, false))).toBe(SH_OSH);
  });
});

describe('combining properties', () => {
  const byte = fc.integer({ min: 0, max: 255 });
  const nibble = fc.integer({ min: 0, max: 15 });
  const shArb = fc.constantFrom(SH_NSH, SH_OSH, SH_ISH);
  const isDevice = (attr: number): boolean => (attr & 0xf0) === 0;

  it('without FWB, a Device side is never weakened: the result is Device at least as strong', () => {
    fc.assert(
      fc.property(byte, nibble, (s1, s2) => {
        const s1Dev = isDevice(s1);
        const s2Dev = (s2 & 0xc) === 0;
        fc.pre(s1Dev || s2Dev);
        const attr = comb(s1, s2, false).attr;
        expect(isDevice(attr)).toBe(true);
        if (s1Dev) expect(attr >> 2).toBeLessThanOrEqual((s1 >> 2) & 3);
        if (s2Dev) expect(attr >> 2).toBeLessThanOrEqual(s2 & 3);
      }),
    );
  });

  it('without FWB, NC on either side gives NC (0x44) or Device', () => {
    fc.assert(
      fc.property(byte, fc.boolean(), (other, s1IsNc) => {
        const attr = s1IsNc ? comb(0x44, other & 0xf, false).attr : comb(other, MT_S2_NORMAL_NC, false).attr;
        expect(attr === 0x44 || isDevice(attr)).toBe(true);
      }),
    );
  });

  it('without FWB, Normal + Normal is never more cacheable than either side, per nibble', () => {
    // Rank of a MAIR nibble: NC 0, WT 1, WB 2. Stage-2 codes use the same order (1, 2, 3).
    const rank = (n: number): number => (n === 4 ? 0 : (n & 0xc) === 0 || (n & 0xc) === 8 ? 1 : 2);
    const s1Arb = fc
      .tuple(fc.integer({ min: 1, max: 15 }), fc.integer({ min: 1, max: 15 }))
      .map(([o, i]) => (o << 4) | i);
    const s2Arb = fc
      .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }))
      .map(([o, i]) => (o << 2) | i);
    fc.assert(
      fc.property(s1Arb, s2Arb, (s1, s2) => {
        const attr = comb(s1, s2, false).attr;
        expect(isDevice(attr)).toBe(false);
        expect(rank(attr >> 4)).toBeLessThanOrEqual(Math.min(rank(s1 >> 4), (s2 >> 2) - 1));
        expect(rank(attr & 0xf)).toBeLessThanOrEqual(Math.min(rank(s1 & 0xf), (s2 & 3) - 1));
      }),
    );
  });

  it('with FWB, force-WB always yields Write-Back on both nibbles', () => {
    fc.assert(
      fc.property(byte, shArb, shArb, (s1, a, b) => {
        const attr = combinedAttr(combineS1S2Attrs(s1, a, MT_S2_FWB_NORMAL, b, true));
        if (attr === 0xf0) return; // Tagged Normal is WB
        for (const n of [attr >> 4, attr & 0xf]) {
          expect(n).not.toBe(4);
          expect(n & 0x4).toBe(4);
        }
      }),
    );
  });

  it('the two FWB device modes differ only for stage-1 Device stronger than stage-2 Device', () => {
    fc.assert(
      fc.property(byte, nibble, (s1, s2) => {
        const a = comb(s1, s2, true, 'armarm').attr;
        const q = comb(s1, s2, true, 'qemu').attr;
        // Reserved Normal bytes (a zero nibble other than 0xF0 / 0x40 / 0xA0) count as Device-nGnRnE.
        const reserved = !isDevice(s1) && (s1 & 0xf) === 0 && ![0xf0, 0x40, 0xa0].includes(s1);
        const s1Type = isDevice(s1) ? (s1 >> 2) & 3 : reserved ? 0 : -1;
        const differs = s1Type >= 0 && (s2 & 0xc) === 0 && s1Type < (s2 & 3);
        expect(a !== q).toBe(differs);
      }),
    );
  });

  it('shareability is a valid code, and Outer whenever the result is Device or 0x44', () => {
    fc.assert(
      fc.property(byte, shArb, nibble, shArb, fc.boolean(), (s1, a, s2, b, fwb) => {
        const r = combineS1S2Attrs(s1, a, s2, b, fwb);
        const attr = combinedAttr(r);
        const sh = combinedSh(r);
        expect([SH_NSH, SH_OSH, SH_ISH]).toContain(sh);
        expect(r >> 10).toBe(0);
        if (isDevice(attr) || attr === 0x44) expect(sh).toBe(SH_OSH);
        else if (a === SH_OSH || b === SH_OSH) expect(sh).toBe(SH_OSH);
        else if (a === SH_ISH || b === SH_ISH) expect(sh).toBe(SH_ISH);
        else expect(sh).toBe(SH_NSH);
      }),
    );
  });
});
