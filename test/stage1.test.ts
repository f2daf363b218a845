import { describe, expect, it } from 'vitest';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner, accessJson } from '../src/scenario/run.js';

/** Runs a scenario object and returns its access lines and summary. */
function run(s: unknown) {
  const lines: Record<string, unknown>[] = [];
  const summary = new ScenarioRunner(parseScenario(s)).run({
    access: (step, r) => lines.push(accessJson(step, r)),
  });
  return { lines, summary };
}

const base = (
  cpu: unknown,
  mair: string,
  mappings: unknown[],
  steps: unknown[],
  extra: Record<string, unknown> = {},
) => ({
  cpu,
  granule: '4K',
  physical: [
    { base: '0x8000_0000', size: '4G', type: 'ram' },
    { base: '0x4000_0000_0000', size: '64M', type: 'nomap' },
  ],
  vmas: [
    { name: 'ram', start: '0x7f00_0000_0000', size: '1G', backing: 'anon', prot: 'rw' },
    {
      name: 'nc',
      start: '0x7e00_0000_0000',
      size: '64M',
      backing: 'pfnmap',
      pa: '0x4000_0000_0000',
      prot: 'rw',
      memType: 'normal-nc',
      flags: ['shared', 'allow-any-uncached'],
    },
  ],
  memslots: [
    { slot: 0, gpa: '0x4000_0000', size: '1G', vma: 'ram' },
    { slot: 1, gpa: '0x1_0000_0000', size: '64M', vma: 'nc' },
  ],
  guest: { stage1: { granule: '4K', tables: '0x7000_0000', mair, mappings, ...extra } },
  steps,
});

describe('guest stage 1', () => {
  it('reads each stage-1 descriptor through stage 2: S1PTW faults map the table pages first', () => {
    const { lines } = run(
      base(
        { profile: 'grace' },
        '0xff',
        [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '512M', attrIndx: 0, ap: 'rw' }],
        [
          { access: 'write', va: '0x40_0000_1000' },
          { access: 'write', va: '0x40_0000_2000' },
        ],
      ),
    );
    const first = lines[0]!;
    expect(first['outcome']).toBe('done');
    expect(first['va']).toBe('0x4000001000');
    expect(first['ipa']).toBe('0x40001000');
    const faults = first['faults'] as { fsc: string; level: number; s1ptw: boolean; handler: string }[];
    // Level-0 and level-1 tables (first two pages at 0x70000000) share one THP-less anon page
    // each; the walk faults on the table pages before the data page.
    expect(faults.filter((f) => f.s1ptw).length).toBeGreaterThan(0);
    expect(faults.at(-1)).toMatchObject({ s1ptw: false, fsc: 'translation', handler: 'user_mem_abort' });
    // A stage-1 walk reads its tables: the stage-2 faults on them are never writes, so the
    // anon table pages are the zero page, mapped read-only... until the data write.
    // The second access reuses every table: no fault on the walk, one on the data page.
    const second = lines[1]!['faults'] as { s1ptw: boolean }[];
    expect(second.every((f) => !f.s1ptw)).toBe(true);
    expect(second.length).toBe(1);
  });

  it("the guest's own translation and permission faults are aborts KVM never sees", () => {
    const { lines, summary } = run(
      base(
        { profile: 'grace' },
        '0xff',
        [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '2M', attrIndx: 0, ap: 'ro' }],
        [
          { access: 'read', va: '0x40_0000_0000' },
          { access: 'write', va: '0x40_0000_0000' },
          { access: 'read', va: '0x50_0000_0000' },
          { access: 'at', va: '0x50_0000_0000' },
        ],
      ),
    );
    expect(lines.map((l) => l['outcome'])).toEqual(['done', 'dabt', 'dabt', 'done']);
    expect(lines[1]!['stage1Fault']).toBe(true);
    expect(lines[1]!['faults']).toEqual([]);
    expect(lines[3]!['stage1Fault']).toBeUndefined();
    expect(summary.injected).toBe(0);
  });

  // Changed with issue 8: the tables are now bytes the VMM wrote into guest memory, so their
  // pages are private and writable in the host, and the read fault of the walk already maps
  // them writable at stage 2. The AF update then needs no second fault. The permission fault
  // this test used to expect came from the old model's never-touched (zero-page) table pages.
  it('with TCR_EL1.HA an AF update writes the descriptor into the table page, without a second fault', () => {
    const { lines, summary } = run(
      base(
        { profile: 'grace' },
        '0xff',
        [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '2M', attrIndx: 0, ap: 'rw', af: false }],
        [{ access: 'read', va: '0x40_0000_0000' }],
        { ha: true },
      ),
    );
    const faults = lines[0]!['faults'] as { fsc: string; s1ptw: boolean }[];
    expect(lines[0]!['outcome']).toBe('done');
    expect(faults.some((f) => f.fsc === 'permission')).toBe(false);
    // The leaf now has AF (bit 10): 0x40000000 | AF | SH=0b11 | page | valid.
    expect(lines[0]!['s1']).toMatchObject({ desc: '0x0000000040000703', level: 3 });
    expect(summary.diagnostics).toEqual([]);
  });

  it('with dirty logging the table page is mapped read-only, and the AF update is an S1PTW permission fault', () => {
    const sc = base(
      { profile: 'grace' },
      '0xff',
      [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '2M', attrIndx: 0, ap: 'rw', af: false }],
      [{ access: 'read', va: '0x40_0000_0000' }],
      { ha: true },
    );
    (sc.memslots[0] as Record<string, unknown>)['flags'] = ['log-dirty'];
    const { lines } = run(sc);
    const faults = lines[0]!['faults'] as { fsc: string; s1ptw: boolean }[];
    expect(lines[0]!['outcome']).toBe('done');
    expect(faults.filter((f) => f.s1ptw && f.fsc === 'permission')).toHaveLength(1);
    expect(lines[0]!['s1']).toMatchObject({ desc: '0x0000000040000703' });
  });

  it('without HA a clear AF is a stage-1 access-flag fault for the guest', () => {
    const { lines } = run(
      base(
        { profile: 'grace' },
        '0xff',
        [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '2M', attrIndx: 0, ap: 'rw', af: false }],
        [{ access: 'read', va: '0x40_0000_0000' }],
      ),
    );
    expect(lines[0]).toMatchObject({ outcome: 'dabt', stage1Fault: true });
  });

  it('the attribute audit reports a cacheable guest mapping over Normal-NC stage 2', () => {
    const { summary } = run(
      base(
        { profile: 'grace' },
        '0x44ff',
        [
          { va: '0x40_0000_0000', ipa: '0x1_0000_0000', size: '2M', attrIndx: 0, ap: 'rw' },
          { va: '0x41_0000_0000', ipa: '0x1_0000_0000', size: '2M', attrIndx: 1, ap: 'rw' },
        ],
        [
          { access: 'read', va: '0x40_0000_0000' },
          { access: 'read', va: '0x40_0000_1000' },
          { access: 'read', va: '0x41_0000_0000' },
        ],
      ),
    );
    const mism = summary.diagnostics.filter((d) => d.startsWith('attribute mismatch'));
    // Reported once (same leaf, same index), and only for the cacheable alias.
    expect(mism).toHaveLength(1);
    expect(mism[0]).toContain('MAIR.Attr0');
    expect(mism[0]).toContain('Normal-NC');
  });

  it('a stage-1 walk that reaches no memslot gets an injected data abort (S1PTW, kvm_handle_guest_abort() step 8)', () => {
    const sc = base(
      { profile: 'grace' },
      '0xff',
      [{ va: '0x40_0000_0000', ipa: '0x4000_0000', size: '2M', attrIndx: 0, ap: 'rw' }],
      [{ deleteMemslot: 0 }, { access: 'read', va: '0x40_0000_0000' }],
    );
    const { lines } = run(sc);
    expect(lines[0]).toMatchObject({
      outcome: 'dabt',
      faults: [{ fsc: 'translation', s1ptw: true, handler: 'kvm_inject_sea_dabt', ret: 1 }],
    });
    expect(lines[0]!['stage1Fault']).toBeUndefined();
    // The walk never finished; `s1` is guest memory as a debugger reads it: with the slot gone
    // the root table reads as zeroes, an invalid L0 entry.
    expect(lines[0]!['s1']).toEqual({ va: '0x4000000000', fault: 'translation', level: 0 });
  });
});
