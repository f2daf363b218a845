import { describe, expect, it } from 'vitest';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import { ACCESS_KINDS } from '../src/scenario/types.js';
import type { AccessKind } from '../src/scenario/types.js';
import { decodeSyndrome, syndromeText, tracedAccess } from '../src/trace/syndrome.js';

// ESR_ELx for aborts (Arm ARM, ISS encoding for an exception from a data / instruction abort),
// written out here bit by bit rather than taken from src/mmu/esr.ts:
// EC[31:26] IL[25] ISV[24] SAS[23:22] SSE[21] SRT[20:16] SF[15] AR[14] VNCR[13] SET[12:11]
// FnV[10] EA[9] CM[8] S1PTW[7] WnR[6] DFSC/IFSC[5:0].

describe('decodeSyndrome: the ESR_ELx layout', () => {
  it('decodes the issue example: a 4-byte load, translation fault at level 2', () => {
    // 0x93800006 = EC 0x24 (100100) | IL | ISV | SAS 0b10 | FSC 0b000110.
    const s = decodeSyndrome(0x93800006);
    expect(s).toMatchObject({
      ec: 0x24,
      dabt: true,
      iabt: false,
      il: true,
      isv: true,
      sas: 2,
      sse: false,
      srt: 0,
      sf: false,
      ar: false,
      vncr: false,
      fnv: false,
      ea: false,
      cm: false,
      s1ptw: false,
      wnr: false,
      fsc: 0x06,
      faultClass: 'translation',
      level: 2,
    });
    expect(syndromeText(s)).toBe('data abort, 4-byte read, translation fault L2');
  });

  it('finds every field at its bit position', () => {
    const esr =
      ((0x24 << 26) >>> 0) +
      (1 << 25) + // IL
      (1 << 24) + // ISV
      (3 << 22) + // SAS: 8 bytes
      (1 << 21) + // SSE
      (17 << 16) + // SRT: x17
      (1 << 15) + // SF
      (1 << 14) + // AR
      (1 << 13) + // VNCR
      (1 << 10) + // FnV
      (1 << 9) + // EA
      (1 << 8) + // CM
      (1 << 7) + // S1PTW
      (1 << 6) + // WnR
      0x0d; // permission fault, level 1
    expect(esr).toBe(0x93f1e7cd);
    expect(decodeSyndrome(esr)).toMatchObject({
      ec: 0x24,
      il: true,
      isv: true,
      sas: 3,
      sse: true,
      srt: 17,
      sf: true,
      ar: true,
      vncr: true,
      fnv: true,
      ea: true,
      cm: true,
      s1ptw: true,
      wnr: true,
      fsc: 0x0d,
      faultClass: 'permission',
      level: 1,
    });
    // Each bit alone, so that no field reads its neighbour's bit.
    const alone: [number, string][] = [
      [1 << 24, 'isv'],
      [1 << 21, 'sse'],
      [1 << 15, 'sf'],
      [1 << 14, 'ar'],
      [1 << 13, 'vncr'],
      [1 << 10, 'fnv'],
      [1 << 9, 'ea'],
      [1 << 8, 'cm'],
      [1 << 7, 's1ptw'],
      [1 << 6, 'wnr'],
    ];
    const flags = ['isv', 'sse', 'sf', 'ar', 'vncr', 'fnv', 'ea', 'cm', 's1ptw', 'wnr'] as const;
    for (const [bit, name] of alone) {
      const s = decodeSyndrome((0x24 << 26) + bit + 0x07) as unknown as Record<string, unknown>;
      for (const f of flags) expect([name, f, s[f]]).toEqual([name, f, f === name]);
    }
  });

  it('reads instruction aborts, fault classes and levels from the FSC', () => {
    const i = decodeSyndrome(0x82000007);
    expect(i).toMatchObject({ ec: 0x20, iabt: true, dabt: false, isv: false, wnr: false, cm: false });
    expect([i.faultClass, i.level]).toEqual(['translation', 3]);
    // The instruction-abort ISS has no ISV, CM or WnR: bits there are not read as such.
    expect(decodeSyndrome(0x83000147)).toMatchObject({
      iabt: true,
      isv: false,
      cm: false,
      wnr: false,
      s1ptw: false,
    });
    const cases: [number, string, number | null][] = [
      [0x04, 'translation', 0],
      [0x07, 'translation', 3],
      [0x2b, 'translation', -1],
      [0x09, 'access-flag', 1],
      [0x0b, 'access-flag', 3],
      [0x0e, 'permission', 2],
      [0x10, 'other', null],
      [0x00, 'other', null],
      [0x21, 'other', null],
    ];
    for (const [fsc, cls, level] of cases) {
      const s = decodeSyndrome(0x92000000 + fsc);
      expect([fsc, s.faultClass, s.level]).toEqual([fsc, cls, level]);
    }
  });
});

describe('tracedAccess: the address a fault names', () => {
  it('adds FAR’s 4K page offset to the fault IPA (kvm_handle_guest_abort())', () => {
    expect(tracedAccess(0x93800006, 0x1c010000, 0xf80100a8n, false)).toEqual({
      kind: 'read',
      space: 'ipa',
      address: 0x1c0100a8,
    });
    // FnV: FAR is not valid, only the page is known.
    expect(tracedAccess(0x93800006 + (1 << 10), 0x1c010000, 0xf80100a8n, false)).toMatchObject({
      address: 0x1c010000,
    });
    // A stage-1 walk's fault: FAR is the VA, the IPA is the table page's; a WnR there is the
    // walker's AF/dirty update, a store.
    expect(tracedAccess(0x92000087, 0x43003000, 0x4000001234n, false)).toEqual({
      kind: 'read',
      space: 'ipa',
      address: 0x43003000,
    });
    expect(tracedAccess(0x920000cf, 0x43003000, 0x4000001234n, false)).toMatchObject({ kind: 'write' });
  });

  it('with a guest stage 1, names the VA in FAR', () => {
    expect(tracedAccess(0x93800046, 0x40100000, 0x4000000018n, true)).toEqual({
      kind: 'write',
      space: 'va',
      address: 0x4000000018,
    });
    expect(tracedAccess(0x82000087, 0x43001000, 0x4000000000n, true)).toEqual({
      kind: 'exec',
      space: 'va',
      address: 0x4000000000,
    });
    expect(tracedAccess(0x93800046, 0x40100000, 0xffff000000100018n, true)).toHaveProperty('unusable');
  });

  it('refuses what the model cannot replay, saying why', () => {
    expect(tracedAccess(0x56000000, 0, 0n, false)).toEqual({
      unusable: 'EC 0x15 is not an instruction or data abort from the guest',
    });
    expect(tracedAccess(0x92000010, 0x40000000, 0n, false)).toEqual({
      unusable: 'FSC 0x10: the model takes only translation, access-flag and permission faults',
    });
  });
});

/** A small host as a scenario object; `guest` adds a stage 1 mapping VA 0x40_0000_0000. */
function host(steps: unknown[], guest = false, profile = 'ampere-altra'): ScenarioRunner {
  return new ScenarioRunner(
    parseScenario({
      cpu: { profile, hafdbs: false },
      granule: '4K',
      physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
      vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '64M', backing: 'anon', prot: 'rwx' }],
      vm: { ipaBits: 40 },
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram' }],
      ...(guest
        ? {
            guest: {
              stage1: {
                granule: '4K',
                tables: '0x4300_0000',
                mair: '0xff',
                ha: false,
                mappings: [{ va: '0x40_0000_0000', ipa: '0x4010_0000', size: '64K', attrIndx: 0, ap: 'rw' }],
              },
            },
          }
        : {}),
      steps,
    }),
  );
}

/** The faults (ESR, class, level) the last access of `steps` took. */
function lastFaults(
  steps: unknown[],
  guest = false,
  profile?: string,
): { esr: number; fsc: number; level: number }[] {
  let out: { esr: number; fsc: number; level: number }[] = [];
  host(steps, guest, profile).run({
    access: (_s, r) => {
      out = r.faults.map((f) => ({ esr: f.esr >>> 0, fsc: f.fsc, level: f.level }));
    },
  });
  return out;
}

/** What the architecture says each kind's first abort looks like, and the kind the syndrome names. */
const EXPECTED: Record<
  AccessKind,
  { iabt: boolean; isv: boolean; wnr: boolean; cm: boolean; s1ptw: boolean; replayAs: AccessKind }
> = {
  read: { iabt: false, isv: true, wnr: false, cm: false, s1ptw: false, replayAs: 'read' },
  write: { iabt: false, isv: true, wnr: true, cm: false, s1ptw: false, replayAs: 'write' },
  exec: { iabt: true, isv: false, wnr: false, cm: false, s1ptw: false, replayAs: 'exec' },
  // An atomic's translation fault reports a read, without ISV.
  cas: { iabt: false, isv: false, wnr: false, cm: false, s1ptw: false, replayAs: 'ld-preidx' },
  'ld-preidx': { iabt: false, isv: false, wnr: false, cm: false, s1ptw: false, replayAs: 'ld-preidx' },
  'st-preidx': { iabt: false, isv: false, wnr: true, cm: false, s1ptw: false, replayAs: 'st-preidx' },
  'dc-zva': { iabt: false, isv: false, wnr: true, cm: false, s1ptw: false, replayAs: 'st-preidx' },
  // Cache maintenance: CM = 1 and WnR = 1.
  'dc-civac': { iabt: false, isv: false, wnr: true, cm: true, s1ptw: false, replayAs: 'dc-civac' },
  // AT's stage-1 walk reads a table page stage 2 does not map yet.
  at: { iabt: false, isv: false, wnr: false, cm: false, s1ptw: true, replayAs: 'at' },
};

describe('every access kind: the model’s syndrome decodes to an access with the same syndrome', () => {
  for (const kind of ACCESS_KINDS) {
    it(kind, () => {
      const guest = kind === 'at';
      const space = guest ? 'va' : 'ipa';
      const addr = guest ? '0x40_0000_0040' : '0x4010_0040';
      const [first] = lastFaults([{ access: kind, [space]: addr }], guest);
      expect(first).toBeDefined();
      const s = decodeSyndrome(first!.esr);
      const x = EXPECTED[kind];
      expect({ iabt: s.iabt, isv: s.isv, wnr: s.wnr, cm: s.cm, s1ptw: s.s1ptw }).toEqual({
        iabt: x.iabt,
        isv: x.isv,
        wnr: x.wnr,
        cm: x.cm,
        s1ptw: x.s1ptw,
      });
      expect(s.dabt).toBe(!x.iabt);
      expect([s.faultClass, s.level]).toEqual(['translation', first!.level]);
      // The fault IPA is the page (HPFAR); FAR carries the offset (here, the address itself).
      const ipa = guest ? 0x4300_0000 : 0x4010_0000;
      const a = tracedAccess(first!.esr, ipa, BigInt(addr.replace(/_/g, '')), guest);
      expect(a).toEqual({ kind: x.replayAs, space, address: Number(addr.replace(/_/g, '')) });
      // Replaying the decoded kind in the same state takes a fault with the same syndrome.
      const [again] = lastFaults([{ access: x.replayAs, [space]: addr }], guest);
      expect((again!.esr >>> 0).toString(16)).toBe((first!.esr >>> 0).toString(16));
    });
  }
});

describe('every abort class: permission and access-flag faults decode as the model took them', () => {
  it('a store to the zero page mapped by a load: a permission fault', () => {
    const f = lastFaults([
      { access: 'read', ipa: '0x4010_0000' },
      { access: 'write', ipa: '0x4010_0008' },
    ]);
    const s = decodeSyndrome(f[0]!.esr);
    expect([s.faultClass, s.level, s.wnr, s.isv]).toEqual(['permission', f[0]!.level, true, true]);
    expect(f[0]!.fsc).toBe(3);
    expect(tracedAccess(f[0]!.esr, 0x4010_0000, 0x8n, false)).toMatchObject({
      kind: 'write',
      address: 0x4010_0008,
    });
  });

  it('a load from an aged page without FEAT_HAFDBS: an access-flag fault', () => {
    const f = lastFaults([
      { access: 'write', ipa: '0x4010_0000' },
      { age: { ipa: '0x4010_0000', size: '4K' } },
      { access: 'read', ipa: '0x4010_0010' },
    ]);
    expect(f).toHaveLength(1);
    const s = decodeSyndrome(f[0]!.esr);
    expect([s.faultClass, s.level, s.fsc]).toEqual(['access-flag', 3, 0x0b]);
    expect(f[0]!.fsc).toBe(2);
  });

  it('an instruction fetch from a page a store mapped without exec (no DIC): permission, IABT', () => {
    // Without CTR_EL0.DIC, user_mem_abort() leaves a data fault's leaf non-executable.
    const f = lastFaults(
      [
        { access: 'write', ipa: '0x4010_0000' },
        { access: 'exec', ipa: '0x4010_0000' },
      ],
      false,
      'cortex-a76',
    );
    expect(f).toHaveLength(1);
    const s = decodeSyndrome(f[0]!.esr);
    expect([s.iabt, s.faultClass]).toEqual([true, 'permission']);
    expect(tracedAccess(f[0]!.esr, 0x4010_0000, 0n, false)).toMatchObject({ kind: 'exec' });
  });
});
