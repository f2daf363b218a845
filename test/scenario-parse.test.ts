import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { parseScenario, parseScenarioText } from '../src/scenario/parse.js';
import { ScenarioError, formatIssue } from '../src/scenario/errors.js';
import type { ScenarioIssue } from '../src/scenario/errors.js';
import { parseValue, tryParseValue } from '../src/scenario/values.js';
import { formatHex, formatSize } from '../src/scenario/format.js';
import { CPU_PROFILES, HUGETLB_SIZES, vmaMteAllowed } from '../src/scenario/types.js';
import type { Scenario, VmaFlags } from '../src/scenario/types.js';
import { CPU_PRESETS, resolveCpu } from '../src/mmu/cpu.js';

// ---------------------------------------------------------------------------------------------
// Helpers: a small valid scenario, edited per test through key paths.

type Key = string | number;

function base(): Record<string, unknown> {
  return {
    cpu: { fwb: true, dic: true, idc: true, mte: false, tlbiRange: true, hafdbs: true, lse: true },
    granule: '4K',
    physical: [
      { base: '0x8000_0000', size: '1G', type: 'ram' },
      { base: '0x40_0000_0000', size: '1G', type: 'nomap' },
    ],
    vmas: [
      { name: 'ram', start: '0x7f00_0000_0000', size: '1G', backing: 'anon', prot: 'rw' },
      {
        name: 'hbm',
        start: '0x7e00_0000_0000',
        size: '1G',
        backing: 'pfnmap',
        prot: 'rw',
        pa: '0x40_0000_0000',
      },
      {
        name: 'huge',
        start: '0x7d00_0000_0000',
        size: '64M',
        backing: 'hugetlb',
        prot: 'rw',
        hugePage: '2M',
      },
    ],
    memslots: [{ slot: 0, gpa: '0x4000_0000', size: '1G', vma: 'ram' }],
    steps: [{ access: 'read', ipa: '0x4000_0000' }],
  };
}

function container(root: unknown, path: readonly Key[]): Record<Key, unknown> {
  let at = root;
  for (const key of path.slice(0, -1)) at = (at as Record<Key, unknown>)[key];
  return at as Record<Key, unknown>;
}

/** A copy of base() with the value at `path` replaced. */
function withValue(path: readonly Key[], value: unknown): Record<string, unknown> {
  const s = base();
  container(s, path)[path[path.length - 1]!] = value;
  return s;
}

/** A copy of base() without the key at `path`. */
function without(path: readonly Key[]): Record<string, unknown> {
  const s = base();
  delete container(s, path)[path[path.length - 1]!];
  return s;
}

/** A copy of base() with `steps` replaced. */
function withSteps(...steps: unknown[]): Record<string, unknown> {
  return withValue(['steps'], steps);
}

/** The issues parseScenario() reports (failing the test if it accepts the input). */
function issuesOf(input: unknown): readonly ScenarioIssue[] {
  try {
    parseScenario(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as ScenarioError).issues;
  }
  expect.fail('the scenario was accepted');
}

/** Expect exactly one issue, at `path`, with `message`. */
function expectIssue(input: unknown, path: string, message: string | RegExp): void {
  const issues = issuesOf(input);
  expect(issues).toHaveLength(1);
  expect(issues[0]!.path).toBe(path);
  if (typeof message === 'string') expect(issues[0]!.message).toBe(message);
  else expect(issues[0]!.message).toMatch(message);
}

// ---------------------------------------------------------------------------------------------

describe('a complete valid scenario', () => {
  const file = {
    description: 'every section and step kind',
    kernel: 'seed',
    cpu: { profile: 'neoverse-n1', mte: true, fwb: false },
    granule: '4K',
    paBits: 44,
    physical: [
      { base: '0x8000_0000', size: '4G', type: 'ram' },
      { base: 0x800_0000_0000, size: '1G', type: 'nomap' },
    ],
    vmas: [
      { name: 'ram', start: '0x7f00_0000_0000', size: '1G', backing: 'anon', prot: 'rw' },
      {
        name: 'tagged',
        start: '0x7f00_4000_0000',
        size: '16M',
        backing: 'thp',
        prot: 'r',
        memType: 'normal-tagged',
        flags: ['maywrite'],
        userfaultfd: 'missing',
      },
      {
        name: 'huge',
        start: '0x7e00_0000_0000',
        size: '2G',
        backing: 'hugetlb',
        prot: 'rwx',
        hugePage: '1g',
        flags: ['no-mte-allowed'],
      },
      {
        name: 'hbm',
        start: '0x7d00_0000_0000',
        size: '1G',
        backing: 'pfnmap',
        prot: 'rw',
        pa: '0x800_0000_0000',
        hostMapping: 'pud',
        memType: 'normal-nc',
        flags: ['shared', 'allow-any-uncached', 'io'],
      },
      {
        name: 'mix',
        start: '0x7c00_0000_0000',
        size: '2M',
        backing: 'mixedmap',
        prot: 'r',
        pa: '0x1_0000_0000',
        memType: 'device-nGnRE',
      },
      {
        name: 'shm',
        start: 0x7b00_0000_0000,
        size: 65536,
        backing: 'shmem',
        prot: 'rw',
        flags: ['shared', 'no-maywrite', 'mte-allowed'],
      },
    ],
    vm: { ipaBits: 42, mte: true },
    memslots: [
      { slot: 0, gpa: '0x4000_0000', size: '1G', vma: 'ram', flags: ['log-dirty'] },
      { slot: 7, gpa: '0x100_0000_0000', size: '512M', vma: 'hbm', offset: '512M', flags: ['readonly'] },
    ],
    steps: [
      { access: 'write', ipa: '0x4000_1008' },
      { touch: { from: '0x4000_0000', size: '2M', stride: '4K', access: 'cas' } },
      {
        touch: {
          from: 0x4020_0000,
          size: '64K',
          stride: 4096,
          access: 'dc-zva',
          order: 'random',
          seed: '0xdead_beef',
        },
      },
      { hostUnmap: { vma: 'huge', offset: '1G', size: '1G' } },
      { hostProtect: { vma: 'ram', prot: 'r' } },
      { age: { ipa: '0x4000_0000', size: '2M' } },
      { dirtyLog: { slot: 0, op: 'get-and-clear' } },
      { dirtyLog: { slot: 0, op: 'disable' } },
      { memslot: { slot: 1, gpa: '0x8000_0000', size: '16M', vma: 'tagged' } },
      { dirtyLog: { slot: 1, op: 'enable' } },
      { dirtyLog: { slot: 1, op: 'get-and-clear' } },
      { deleteMemslot: 1 },
      { memslot: { slot: 1, gpa: '0x9000_0000', size: '64K', vma: 'shm' } },
      { access: 'exec', ipa: 0x9000_0000 },
    ],
  };

  const flags: VmaFlags = {
    shared: false,
    maywrite: true,
    mteAllowed: 'implied',
    allowAnyUncached: false,
    io: false,
  };
  const expected: Scenario = {
    description: 'every section and step kind',
    kernel: 'seed',
    cpu: { profile: 'neoverse-n1', fwb: false, mte: true },
    granule: '4K',
    paBits: 44,
    physical: [
      { base: 0x8000_0000, size: 0x1_0000_0000, type: 'ram' },
      { base: 0x800_0000_0000, size: 0x4000_0000, type: 'nomap' },
    ],
    vmas: [
      {
        name: 'ram',
        start: 0x7f00_0000_0000,
        size: 0x4000_0000,
        backing: 'anon',
        prot: 'rw',
        memType: 'normal',
        flags: { shared: false, maywrite: true, mteAllowed: 'implied', allowAnyUncached: false, io: false },
        userfaultfd: null,
      },
      {
        name: 'tagged',
        start: 0x7f00_4000_0000,
        size: 0x100_0000,
        backing: 'thp',
        prot: 'r',
        memType: 'normal-tagged',
        flags: { ...flags, maywrite: true, mteAllowed: 'implied' },
        userfaultfd: { mode: 'missing', resolve: 'page', copyFrom: 'registration' },
      },
      {
        name: 'huge',
        start: 0x7e00_0000_0000,
        size: 0x8000_0000,
        backing: 'hugetlb',
        hugePage: 0x4000_0000,
        prot: 'rwx',
        memType: 'normal',
        flags: { ...flags, mteAllowed: false },
        userfaultfd: null,
      },
      {
        name: 'hbm',
        start: 0x7d00_0000_0000,
        size: 0x4000_0000,
        backing: 'pfnmap',
        pa: 0x800_0000_0000,
        hostMapping: 'pud',
        prot: 'rw',
        memType: 'normal-nc',
        flags: { shared: true, maywrite: true, mteAllowed: false, allowAnyUncached: true, io: true },
        userfaultfd: null,
      },
      {
        name: 'mix',
        start: 0x7c00_0000_0000,
        size: 0x20_0000,
        backing: 'mixedmap',
        pa: 0x1_0000_0000,
        hostMapping: 'page',
        prot: 'r',
        memType: 'device-nGnRE',
        flags: { ...flags, maywrite: false, mteAllowed: false },
        userfaultfd: null,
      },
      {
        name: 'shm',
        start: 0x7b00_0000_0000,
        size: 0x1_0000,
        backing: 'shmem',
        prot: 'rw',
        memType: 'normal',
        flags: { ...flags, shared: true, maywrite: false, mteAllowed: true },
        userfaultfd: null,
      },
    ],
    vm: { ipaBits: 42, mte: true, nisvToUser: false },
    memslots: [
      {
        slot: 0,
        gpa: 0x4000_0000,
        size: 0x4000_0000,
        vma: 'ram',
        offset: 0,
        userspaceAddr: 0x7f00_0000_0000,
        flags: { logDirty: true, readonly: false },
      },
      {
        slot: 7,
        gpa: 0x100_0000_0000,
        size: 0x2000_0000,
        vma: 'hbm',
        offset: 0x2000_0000,
        userspaceAddr: 0x7d00_2000_0000,
        flags: { logDirty: false, readonly: true },
      },
    ],
    guest: null,
    steps: [
      { kind: 'access', index: 0, access: 'write', space: 'ipa', address: 0x4000_1008 },
      {
        kind: 'touch',
        index: 1,
        space: 'ipa',
        from: 0x4000_0000,
        size: 0x20_0000,
        stride: 0x1000,
        access: 'cas',
        order: 'sequential',
        seed: 0,
      },
      {
        kind: 'touch',
        index: 2,
        space: 'ipa',
        from: 0x4020_0000,
        size: 0x1_0000,
        stride: 0x1000,
        access: 'dc-zva',
        order: 'random',
        seed: 0xdead_beef,
      },
      { kind: 'hostUnmap', index: 3, vma: 'huge', offset: 0x4000_0000, size: 0x4000_0000 },
      { kind: 'hostProtect', index: 4, vma: 'ram', prot: 'r' },
      { kind: 'age', index: 5, ipa: 0x4000_0000, size: 0x20_0000 },
      { kind: 'dirtyLog', index: 6, slot: 0, op: 'get-and-clear' },
      { kind: 'dirtyLog', index: 7, slot: 0, op: 'disable' },
      {
        kind: 'memslot',
        index: 8,
        memslot: {
          slot: 1,
          gpa: 0x8000_0000,
          size: 0x100_0000,
          vma: 'tagged',
          offset: 0,
          userspaceAddr: 0x7f00_4000_0000,
          flags: { logDirty: false, readonly: false },
        },
      },
      { kind: 'dirtyLog', index: 9, slot: 1, op: 'enable' },
      { kind: 'dirtyLog', index: 10, slot: 1, op: 'get-and-clear' },
      { kind: 'deleteMemslot', index: 11, slot: 1 },
      {
        kind: 'memslot',
        index: 12,
        memslot: {
          slot: 1,
          gpa: 0x9000_0000,
          size: 0x1_0000,
          vma: 'shm',
          offset: 0,
          userspaceAddr: 0x7b00_0000_0000,
          flags: { logDirty: false, readonly: false },
        },
      },
      { kind: 'access', index: 13, access: 'exec', space: 'ipa', address: 0x9000_0000 },
    ],
  };

  it('parses to the normalised form', () => {
    expect(parseScenario(file)).toEqual(expected);
  });

  it('parses the same from text', () => {
    expect(parseScenarioText(JSON.stringify(file, null, 2))).toEqual(expected);
  });

  it('applies every default to a minimal scenario', () => {
    const s = parseScenario(base());
    expect(s.description).toBeNull();
    expect(s.kernel).toBe('6.17');
    expect(s.paBits).toBe(48);
    expect(s.vm).toEqual({ ipaBits: 40, mte: false, nisvToUser: false });
    expect(s.guest).toBeNull();
    expect(s.vmas[1]).toMatchObject({ backing: 'pfnmap', hostMapping: 'page', memType: 'normal' });
    expect(s.vmas[1]!.flags).toEqual({
      shared: false,
      maywrite: true,
      mteAllowed: false,
      allowAnyUncached: false,
      io: false,
    });
    expect(s.memslots[0]).toMatchObject({ offset: 0, flags: { logDirty: false, readonly: false } });
  });

  it('parses a guest with stage 1, whose accesses name VAs', () => {
    const s = withValue(['guest'], {
      stage1: {
        granule: '64K',
        tables: '0x7000_0000',
        mair: '0xbb00_4400_0c04_f0ff',
        hd: true,
        mappings: [
          { va: '0x40_0000_0000', ipa: '0x4000_0000', size: '512M', attrIndx: 0, ap: 'rw' },
          {
            va: '0x50_0000_0000',
            ipa: '0x9000_0000',
            size: '64K',
            attrIndx: 4,
            ap: 'ro',
            af: false,
            xn: true,
          },
        ],
      },
    });
    (s.steps as unknown[]).push(
      { access: 'at', va: '0x40_0000_1000' },
      { touch: { from: '0x40_0000_0000', size: '1M', stride: '64K', access: 'write' } },
    );
    (s.steps as unknown[])[0] = { access: 'read', va: '0x50_0000_0000' };
    const parsed = parseScenario(s);
    expect(parsed.guest).toEqual({
      stage1: {
        granule: '64K',
        tables: 0x7000_0000,
        mair: [0xff, 0xf0, 0x04, 0x0c, 0x00, 0x44, 0x00, 0xbb],
        ha: false,
        hd: true,
        mappings: [
          {
            va: 0x40_0000_0000,
            ipa: 0x4000_0000,
            size: 0x2000_0000,
            attrIndx: 0,
            ap: 'rw',
            af: true,
            xn: false,
          },
          {
            va: 0x50_0000_0000,
            ipa: 0x9000_0000,
            size: 0x1_0000,
            attrIndx: 4,
            ap: 'ro',
            af: false,
            xn: true,
          },
        ],
      },
    });
    expect(parsed.steps).toEqual([
      { kind: 'access', index: 0, access: 'read', space: 'va', address: 0x50_0000_0000 },
      { kind: 'access', index: 1, access: 'at', space: 'va', address: 0x40_0000_1000 },
      {
        kind: 'touch',
        index: 2,
        space: 'va',
        from: 0x40_0000_0000,
        size: 0x10_0000,
        stride: 0x1_0000,
        access: 'write',
        order: 'sequential',
        seed: 0,
      },
    ]);
  });

  it('resolves implied VM_MTE_ALLOWED against the CPU', () => {
    const s = parseScenario(file);
    expect(s.vmas.map((v) => vmaMteAllowed(v, true))).toEqual([true, true, false, false, false, true]);
    expect(s.vmas.map((v) => vmaMteAllowed(v, false))).toEqual([false, false, false, false, false, true]);
  });

  it('keeps the CPU in the form src/mmu/cpu.ts resolves, with the same profile names', () => {
    expect([...CPU_PROFILES].sort()).toEqual(Object.keys(CPU_PRESETS).sort());
    const s = parseScenario(file);
    expect(resolveCpu(s.cpu)).toEqual({ ...CPU_PRESETS['neoverse-n1']!.features, fwb: false, mte: true });
    expect(resolveCpu(parseScenario(base()).cpu)).toEqual(base().cpu);
  });
});

// ---------------------------------------------------------------------------------------------

describe('rejections name the key path', () => {
  it('rejects a scenario that is not an object', () => {
    expectIssue([], '', 'expected a JSON object: the whole scenario');
  });

  it('rejects unknown keys, suggesting the likely one', () => {
    expectIssue(withValue(['grnaule'], '4K'), 'grnaule', 'unknown key; did you mean "granule"?');
    expectIssue(
      withValue(['vmas', 0, 'hugepage'], '2M'),
      'vmas[0].hugepage',
      'unknown key; did you mean "hugePage"?',
    );
    expectIssue(
      withValue(['memslots', 0, 'colour'], 'red'),
      'memslots[0].colour',
      'unknown key; expected one of "slot", "gpa", "size", "vma", "offset", "flags", "hva"',
    );
  });

  it('rejects missing required keys', () => {
    expectIssue(without(['granule']), 'granule', 'missing required key');
    expectIssue(without(['vmas', 1, 'prot']), 'vmas[1].prot', 'missing required key');
    expectIssue(without(['steps']), 'steps', 'missing required key');
    expectIssue(
      without(['cpu', 'lse']),
      'cpu',
      'missing "lse": without a "profile", all seven features are required',
    );
  });

  it('rejects wrong types', () => {
    expectIssue(withValue(['cpu', 'fwb'], 1), 'cpu.fwb', 'expected true or false');
    expectIssue(withValue(['physical'], {}), 'physical', 'expected an array');
    expectIssue(withValue(['vmas', 2], 'huge'), 'vmas[2]', 'expected an object');
    expectIssue(withValue(['vmas', 2, 'name'], ''), 'vmas[2].name', 'expected a non-empty string');
    expectIssue(withValue(['vm'], { ipaBits: 40.5 }), 'vm.ipaBits', /^expected an integer from 32 to 48/);
    expectIssue(withValue(['description'], 7), 'description', 'expected a string');
  });

  it('rejects bad enum values, listing the choices', () => {
    expectIssue(
      withValue(['vmas', 2, 'backing'], 'stack'),
      'vmas[2].backing',
      'expected one of "anon", "thp", "hugetlb", "shmem", "pfnmap", "mixedmap"',
    );
    expectIssue(withValue(['kernel'], 6.17), 'kernel', 'expected one of "6.16", "seed", "v7", "6.17"');
    expectIssue(withValue(['paBits'], 47), 'paBits', 'expected one of 32, 36, 40, 42, 44, 48, 52');
    expectIssue(
      withValue(['cpu'], { profile: 'm1' }),
      'cpu.profile',
      'expected one of "grace", "neoverse-n1", "ampere-altra", "kunpeng-920", "cortex-a76", "generic-v8"',
    );
    expectIssue(
      withValue(['vmas', 0, 'flags'], ['shared', 'locked']),
      'vmas[0].flags[1]',
      /^expected one of "shared"/,
    );
  });

  it('rejects VMA starts and sizes that are not page-aligned for the granule', () => {
    const s = withValue(['granule'], '16K');
    container(s, ['vmas', 0, 'start'])['start'] = '0x7f00_0000_1000';
    expectIssue(s, 'vmas[0].start', '0x7f0000001000 is not aligned to the 16K granule');
    expectIssue(
      withValue(['vmas', 0, 'size'], 4097),
      'vmas[0].size',
      '0x1001 is not aligned to the 4K granule',
    );
    expectIssue(withValue(['vmas', 0, 'size'], 0), 'vmas[0].size', 'must not be zero');
    expectIssue(
      withValue(['vmas', 2, 'size'], '65M'),
      'vmas[2].size',
      '0x4100000 is not aligned to the 2M hugePage',
    );
  });

  it('rejects overlapping VMAs, physical regions and memslots', () => {
    expectIssue(
      withValue(['vmas', 1, 'start'], '0x7f00_3fff_f000'),
      'vmas[1]',
      '[0x7f003ffff000, 0x7f007ffff000) overlaps vmas[0] "ram" [0x7f0000000000, 0x7f0040000000)',
    );
    const p = base();
    (p.physical as unknown[]).push({ base: '0xbfff_0000', size: '64K', type: 'nomap' });
    expectIssue(p, 'physical[2]', '[0xbfff0000, 0xc0000000) overlaps physical[0] [0x80000000, 0xc0000000)');
    const s = base();
    (s.memslots as unknown[]).push({ slot: 1, gpa: '0x7fff_f000', size: '8K', vma: 'huge' });
    expectIssue(
      s,
      'memslots[1]',
      '[0x7ffff000, 0x80001000) overlaps slot 0 (memslots[0]) [0x40000000, 0x80000000)',
    );
  });

  it('rejects memslots naming a missing VMA, or running past its end', () => {
    expectIssue(
      withValue(['memslots', 0, 'vma'], 'rma'),
      'memslots[0].vma',
      'no VMA is named "rma"; did you mean "ram"?',
    );
    expectIssue(
      withValue(['memslots', 0, 'offset'], '4K'),
      'memslots[0].size',
      'offset 0x1000 + size 0x40000000 runs past the end of VMA "ram" (0x40000000 bytes)',
    );
  });

  it('rejects duplicate slot ids and VMA names', () => {
    const s = base();
    (s.memslots as unknown[]).push({ slot: 0, gpa: '0x1_0000_0000', size: '2M', vma: 'huge' });
    expectIssue(s, 'memslots[1].slot', 'slot 0 already exists (memslots[0]); delete it first');
    expectIssue(
      withValue(['vmas', 2, 'name'], 'ram'),
      'vmas[2].name',
      '"ram" is already the name of vmas[0]',
    );
    expectIssue(
      withValue(['memslots', 0, 'slot'], 32767),
      'memslots[0].slot',
      /^expected an integer from 0 to 32766/,
    );
  });

  it('checks hugePage: hugetlb only, and a size hugetlbfs offers for the granule', () => {
    expectIssue(
      withValue(['vmas', 0, 'hugePage'], '2M'),
      'vmas[0].hugePage',
      '"hugePage" belongs only to "hugetlb" VMAs, not "anon"',
    );
    expectIssue(
      without(['vmas', 2, 'hugePage']),
      'vmas[2].hugePage',
      'missing required key (a "hugetlb" VMA needs it)',
    );
    expectIssue(
      withValue(['vmas', 2, 'hugePage'], '4M'),
      'vmas[2].hugePage',
      'expected one of "64K", "2M", "32M", "1G" (the hugetlb sizes for the 4K granule)',
    );
    const s16 = withValue(['granule'], '16K');
    container(s16, ['vmas', 2, 'hugePage'])['hugePage'] = '64K';
    expectIssue(
      s16,
      'vmas[2].hugePage',
      'expected one of "2M", "32M", "1G" (the hugetlb sizes for the 16K granule)',
    );
    const s64 = withValue(['granule'], '64K');
    Object.assign(container(s64, ['vmas', 2, 'x']), { size: '1G', hugePage: '512M' });
    expect(parseScenario(s64).vmas[2]).toMatchObject({ hugePage: 0x2000_0000 });
    expect(HUGETLB_SIZES['64K'].map(formatSize)).toEqual(['2M', '512M', '16G']);
  });

  it('checks pa and hostMapping: required and only for pfnmap/mixedmap', () => {
    expectIssue(without(['vmas', 1, 'pa']), 'vmas[1].pa', 'missing required key (a "pfnmap" VMA needs it)');
    expectIssue(
      withValue(['vmas', 0, 'pa'], '0x8000_0000'),
      'vmas[0].pa',
      '"pa" belongs only to "pfnmap" and "mixedmap" VMAs, not "anon"',
    );
    expectIssue(
      withValue(['vmas', 2, 'hostMapping'], 'pmd'),
      'vmas[2].hostMapping',
      '"hostMapping" belongs only to "pfnmap" and "mixedmap" VMAs, not "hugetlb"',
    );
    expectIssue(
      withValue(['vmas', 1, 'pa'], '0x50_0000_0000'),
      'vmas[1].pa',
      '[0x5000000000, 0x5040000000) is not all in the physical memory map; describe device memory as a "nomap" region',
    );
  });

  it('checks VMA flags against each other, memType and userfaultfd', () => {
    expectIssue(
      withValue(['vmas', 0, 'flags'], ['maywrite', 'no-maywrite']),
      'vmas[0].flags',
      '"maywrite" and "no-maywrite" contradict each other',
    );
    expectIssue(withValue(['vmas', 0, 'flags'], ['io', 'io']), 'vmas[0].flags[1]', '"io" is listed twice');
    expectIssue(
      withValue(['vmas', 0, 'memType'], 'normal-tagged'),
      'vmas[0].memType',
      '"normal-tagged" (PROT_MTE) needs VM_MTE_ALLOWED, which Linux does not set when the CPU has no MTE',
    );
    expectIssue(
      withValue(['vmas', 1, 'userfaultfd'], 'missing'),
      'vmas[1].userfaultfd',
      'userfaultfd registers only anon, thp, shmem and hugetlb VMAs (UFFDIO_REGISTER fails with EINVAL on "pfnmap")',
    );
  });

  it('checks the VM against the host', () => {
    expectIssue(
      withValue(['vm'], { mte: true }),
      'vm.mte',
      'the CPU has no MTE (cpu.mte is false), so KVM does not offer KVM_CAP_ARM_MTE',
    );
    expectIssue(
      withValue(['vm'], { ipaBits: 52 }),
      'vm.ipaBits',
      "expected an integer from 32 to 48 (KVM_CREATE_VM accepts 32 bits up to the host's IPA limit, 48 bits (kvm_set_ipa_limit(): paBits, capped at 48 with a 4K or 16K granule unless cpu.lpa2))",
    );
    const s = withValue(['paBits'], 36);
    (s.physical as unknown[]).pop();
    container(s, ['vmas', 1, 'pa'])['pa'] = '0x8000_0000';
    expectIssue(
      s,
      'vm.ipaBits',
      'the default of 40 bits is more than paBits (36); give an ipaBits from 32 to 36',
    );
    const t = withValue(['paBits'], 36);
    t.vm = { ipaBits: 36 };
    expectIssue(
      t,
      'physical[1]',
      'the range [0x4000000000, 0x4040000000) ends beyond the 36-bit physical address space (paBits)',
    );
  });

  it('rejects steps that name unknown VMAs or slots', () => {
    expectIssue(
      withSteps({ hostUnmap: { vma: 'hmb', offset: 0, size: '4K' } }),
      'steps[0].hostUnmap.vma',
      'no VMA is named "hmb"; did you mean "hbm"?',
    );
    expectIssue(
      withSteps({ dirtyLog: { slot: 3, op: 'enable' } }),
      'steps[0].dirtyLog.slot',
      'slot 3 does not exist at this point',
    );
    expectIssue(
      withSteps({ deleteMemslot: 2 }),
      'steps[0].deleteMemslot',
      'slot 2 does not exist at this point',
    );
  });

  it('follows memslots added and deleted by steps', () => {
    const add = { memslot: { slot: 1, gpa: '0x1_0000_0000', size: '2M', vma: 'huge' } };
    expect(() =>
      parseScenario(withSteps(add, { deleteMemslot: 1 }, add, { deleteMemslot: 0 })),
    ).not.toThrow();
    expectIssue(
      withSteps(add, { deleteMemslot: 1 }, { deleteMemslot: 1 }),
      'steps[2].deleteMemslot',
      'slot 1 does not exist at this point (steps[1] deleted it)',
    );
    expectIssue(
      withSteps(add, add),
      'steps[1].memslot.slot',
      'slot 1 already exists (steps[0].memslot); delete it first',
    );
    expectIssue(
      withSteps({ memslot: { slot: 2, gpa: '0x4000_0000', size: '4K', vma: 'huge' } }),
      'steps[0].memslot',
      '[0x40000000, 0x40001000) overlaps slot 0 (memslots[0]) [0x40000000, 0x80000000)',
    );
    // Once slot 0 is gone its range is free again.
    const reuse = { memslot: { slot: 2, gpa: '0x4000_0000', size: '4K', vma: 'huge' } };
    expect(() => parseScenario(withSteps({ deleteMemslot: 0 }, reuse))).not.toThrow();
  });

  it('requires dirty logging before get-and-clear', () => {
    expectIssue(
      withSteps({ dirtyLog: { slot: 0, op: 'get-and-clear' } }),
      'steps[0].dirtyLog.op',
      'slot 0 is not logging dirty pages at this point (KVM_GET_DIRTY_LOG would fail); ' +
        'create it with "log-dirty" or enable logging first',
    );
    expect(() =>
      parseScenario(
        withSteps({ dirtyLog: { slot: 0, op: 'enable' } }, { dirtyLog: { slot: 0, op: 'get-and-clear' } }),
      ),
    ).not.toThrow();
  });

  it('rejects touch with a zero stride or size', () => {
    expectIssue(
      withSteps({ touch: { from: 0, size: '4K', stride: 0, access: 'read' } }),
      'steps[0].touch.stride',
      'must not be zero',
    );
    expectIssue(
      withSteps({ touch: { from: 0, size: '0x0', stride: 8, access: 'read' } }),
      'steps[0].touch.size',
      'must not be zero',
    );
  });

  it('takes va only with guest stage 1 and ipa only without', () => {
    expectIssue(
      withSteps({ access: 'read', va: '0x1000' }),
      'steps[0].va',
      'the guest runs with stage 1 off (no guest.stage1), so accesses name an "ipa", not a "va"',
    );
    expectIssue(
      withSteps({ access: 'at', ipa: '0x1000' }),
      'steps[0].access',
      '"at" (AT S1E1R) is a stage-1 walk, and this guest has no stage 1 (add guest.stage1)',
    );
    const s = withValue(['guest'], {
      stage1: { granule: '4K', tables: '0x4000_0000', mair: 0xff, mappings: [] },
    });
    expectIssue(
      s,
      'steps[0].ipa',
      'the guest has stage 1 on (guest.stage1 is given), so accesses name a "va", not an "ipa"',
    );
  });

  it('checks guest stage 1 tables and mappings', () => {
    const guest = (stage1: Record<string, unknown>): Record<string, unknown> =>
      withValue(['guest'], {
        stage1: { granule: '4K', tables: '0x4000_0000', mair: 0xff, mappings: [], ...stage1 },
      });
    const steps = [{ access: 'read', va: 0 }];
    const withGuest = (stage1: Record<string, unknown>): Record<string, unknown> => ({
      ...guest(stage1),
      steps,
    });
    expectIssue(
      withGuest({ tables: '0x1000' }),
      'guest.stage1.tables',
      '0x1000 is in no memslot that exists at the start, and the stage-1 tables live in guest memory',
    );
    expectIssue(
      withGuest({ mair: '0x1_0000_0000_0000_0000' }),
      'guest.stage1.mair',
      'expected MAIR_EL1: a number, or a hex string of up to 16 digits such as "0x0000_0004_0044_f0ff"',
    );
    const m = { va: 0, ipa: '0x4000_0000', size: '4K', attrIndx: 0, ap: 'rw' };
    expectIssue(
      withGuest({ mappings: [m, { ...m, va: '0x1000' }, { ...m, va: 0 }] }),
      'guest.stage1.mappings[2]',
      '[0x0, 0x1000) overlaps mappings[0] [0x0, 0x1000)',
    );
    expectIssue(
      withGuest({ granule: '16K', mappings: [m] }),
      'guest.stage1.mappings[0].size',
      '0x1000 is not aligned to the 16K stage-1 granule',
    );
    expectIssue(
      withGuest({ mappings: [{ ...m, attrIndx: 8 }] }),
      'guest.stage1.mappings[0].attrIndx',
      'expected an integer from 0 to 7 (an index into MAIR_EL1)',
    );
  });

  it('rejects hostProtect adding write to a VMA without VM_MAYWRITE', () => {
    const s = withValue(['vmas', 0, 'prot'], 'r');
    (s as { steps: unknown }).steps = [{ hostProtect: { vma: 'ram', prot: 'rw' } }];
    expectIssue(
      s,
      'steps[0].hostProtect.prot',
      '"rw" adds write permission, but VMA "ram" lacks VM_MAYWRITE (mprotect would fail with EACCES); ' +
        'give it the "maywrite" flag',
    );
  });

  it('rejects malformed steps', () => {
    expectIssue(withSteps({ tuch: {} }), 'steps[0].tuch', 'unknown step; did you mean "touch"?');
    expectIssue(
      withSteps({ age: { ipa: 0, size: '4K' }, touch: {} }),
      'steps[0]',
      'a step does one thing, but this one has "age", "touch"; split it into several steps',
    );
    expectIssue(
      withSteps({ age: { ipa: 0, size: '4K' }, note: 'x' }),
      'steps[0].note',
      'unknown key; "age" steps have no other keys',
    );
    expectIssue(withSteps(3), 'steps[0]', /^expected a step: an object with one of "access", "touch"/);
  });

  it('rejects bad values with the value rules', () => {
    expectIssue(
      withValue(['vmas', 0, 'start'], 2 ** 53),
      'vmas[0].start',
      '9007199254740992 is 2^53 or more; addresses and sizes must be below 2^53',
    );
    expectIssue(
      withValue(['vmas', 0, 'start'], -4096),
      'vmas[0].start',
      'expected a non-negative value, not -4096',
    );
    expectIssue(
      withValue(['vmas', 0, 'size'], '1 G'),
      'vmas[0].size',
      /^"1 G" is not an address or size: write hex/,
    );
    expectIssue(
      withValue(['vmas', 0, 'start'], '0xffff_ffff_f000'),
      'vmas[0]',
      'the range [0xfffffffff000, 0x100003ffff000) ends beyond the 48-bit host user address space',
    );
  });

  it('collects every issue into one error, one per line', () => {
    const s = withValue(['granule'], '8K');
    container(s, ['vmas', 2, 'backing'])['backing'] = 'stack';
    (s as { kernel: unknown }).kernel = '6.18';
    let error: unknown;
    try {
      parseScenario(s);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ScenarioError);
    expect((error as Error).message.split('\n')).toEqual([
      'kernel: expected one of "6.16", "seed", "v7", "6.17"',
      'granule: expected one of "4K", "16K", "64K"',
      'vmas[2].backing: expected one of "anon", "thp", "hugetlb", "shmem", "pfnmap", "mixedmap"',
    ]);
  });
});

describe('parseScenarioText', () => {
  it('reports JSON syntax errors with line and column', () => {
    const text = '{\n  "granule": "4K",\n  "vmas": [1, 2,, 3]\n}';
    expect(() => parseScenarioText(text)).toThrow(ScenarioError);
    try {
      parseScenarioText(text);
    } catch (e) {
      expect((e as ScenarioError).issues).toEqual([
        { path: '', message: 'invalid JSON: found "," where a value should be', line: 3, column: 17 },
      ]);
      expect((e as Error).message).toBe(
        'invalid JSON: found "," where a value should be (line 3, column 17)',
      );
    }
  });

  it('reports an unterminated file', () => {
    expect(() => parseScenarioText('{ "granule": "4K"')).toThrow(
      'invalid JSON: the text ends where "," or "}" should be (line 1, column 18)',
    );
  });

  it('places validation issues at their keys and reports duplicate keys', () => {
    const text = JSON.stringify(withValue(['vmas', 2, 'backing'], 'stack'), null, 2).replace(
      '"granule": "4K"',
      '"granule": "4K", "granule": "4K"',
    );
    try {
      parseScenarioText(text);
      expect.fail('accepted');
    } catch (e) {
      const issues = (e as ScenarioError).issues;
      const lines = text.split('\n');
      expect(issues.map((i) => i.path)).toEqual(['granule', 'vmas[2].backing']);
      expect(issues[0]!.message).toBe('key given more than once (JSON.parse would silently keep the last)');
      const at = issues[1]!;
      expect(lines[at.line! - 1]!.slice(at.column! - 1)).toMatch(/^"backing": "stack"/);
      expect(formatIssue(at, 'x.json')).toBe(
        `x.json:${at.line}:${at.column}: vmas[2].backing: ` +
          'expected one of "anon", "thp", "hugetlb", "shmem", "pfnmap", "mixedmap"',
      );
    }
  });

  it('accepts a byte-order mark', () => {
    expect(parseScenarioText('\ufeff' + JSON.stringify(base())).granule).toBe('4K');
  });
});

// ---------------------------------------------------------------------------------------------

describe('values', () => {
  it('parses hex with underscores, decimal and binary suffixes', () => {
    expect(parseValue('0x8000_0000')).toBe(0x8000_0000);
    expect(parseValue('0XdeadBEEF')).toBe(0xdead_beef);
    expect(parseValue('4096')).toBe(4096);
    expect(parseValue('1_048_576')).toBe(0x10_0000);
    expect(parseValue(4096)).toBe(4096);
    expect(parseValue('4K')).toBe(0x1000);
    expect(parseValue('16k')).toBe(0x4000);
    expect(parseValue('2M')).toBe(0x20_0000);
    expect(parseValue('512M')).toBe(0x2000_0000);
    expect(parseValue('1G')).toBe(0x4000_0000);
    expect(parseValue('4T')).toBe(0x400_0000_0000);
    expect(parseValue('1P')).toBe(2 ** 50);
    expect(parseValue('0x1f_ffff_ffff_ffff')).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseValue('0x0000_0000_0000_0000_1000')).toBe(0x1000);
  });

  it('rejects values of 2^53 or more rather than rounding them', () => {
    for (const v of [
      2 ** 53,
      2 ** 64,
      '0x20_0000_0000_0000',
      '9007199254740992',
      '9007199254740993',
      '8P',
      '8192T',
    ]) {
      const r = tryParseValue(v);
      expect(r.ok).toBe(false);
      expect(r.ok ? '' : r.message).toMatch(/is 2\^53 or more/);
    }
  });

  it('rejects negative, fractional and malformed values', () => {
    expect(tryParseValue(-1)).toEqual({ ok: false, message: 'expected a non-negative value, not -1' });
    expect(tryParseValue('-0x10')).toEqual({
      ok: false,
      message: 'expected a non-negative value, not "-0x10"',
    });
    expect(tryParseValue(1.5)).toEqual({
      ok: false,
      message: 'expected a whole, non-negative number, not 1.5',
    });
    for (const bad of ['', '0x', '0x_10', '1__0', '10_', '1.5K', '4KB', '0x10M', ' 4K', 'four', 'Infinity']) {
      expect(tryParseValue(bad).ok, bad).toBe(false);
    }
    expect(tryParseValue(true).ok).toBe(false);
    expect(tryParseValue(null).ok).toBe(false);
    expect(() => parseValue('2Q')).toThrow(ScenarioError);
  });

  it('formats hex and sizes', () => {
    expect(formatHex(0)).toBe('0x0');
    expect(formatHex(0x4000_1000)).toBe('0x40001000');
    expect(formatHex(0x8020_07fd, 16)).toBe('0x00000000802007fd');
    expect(() => formatHex(-1)).toThrow(RangeError);
    expect(() => formatHex(2 ** 53)).toThrow(RangeError);
    expect(formatSize(0x20_0000)).toBe('2M');
    expect(formatSize(0x1_0000)).toBe('64K');
    expect(formatSize(0x4_0000_0000)).toBe('16G');
    expect(formatSize(0x1800)).toBe('6K');
    expect(formatSize(0x1001)).toBe('0x1001');
  });

  /** Digits with an underscore after each (but the last) where `marks` says so. */
  const groupDigits = (digits: string, marks: readonly boolean[]): string =>
    [...digits].map((d, i) => (i < digits.length - 1 && marks[i] ? d + '_' : d)).join('');
  const marks = fc.array(fc.boolean(), { maxLength: 20 });
  const decimal = fc.tuple(fc.maxSafeNat(), marks).map(([n, m]) => [n, groupDigits(String(n), m)] as const);
  const hex = fc
    .tuple(fc.maxSafeNat(), marks, fc.nat({ max: 3 }), fc.boolean(), fc.boolean())
    .map(([n, m, zeros, upperDigits, upperX]) => {
      const digits = '0'.repeat(zeros) + (upperDigits ? n.toString(16).toUpperCase() : n.toString(16));
      return [n, (upperX ? '0X' : '0x') + groupDigits(digits, m)] as const;
    });
  const suffixed = fc
    .constantFrom(
      ['K', 2 ** 10] as const,
      ['M', 2 ** 20] as const,
      ['G', 2 ** 30] as const,
      ['T', 2 ** 40] as const,
      ['P', 2 ** 50] as const,
    )
    .chain(([suffix, unit]) =>
      fc
        .tuple(fc.integer({ min: 0, max: Math.floor(Number.MAX_SAFE_INTEGER / unit) }), marks, fc.boolean())
        .map(
          ([k, m, lower]) =>
            [k * unit, groupDigits(String(k), m) + (lower ? suffix.toLowerCase() : suffix)] as const,
        ),
    );

  it('parses any generated value string to the number it was generated from', () => {
    fc.assert(
      fc.property(fc.oneof(decimal, hex, suffixed), ([n, text]) => {
        expect(tryParseValue(text)).toEqual({ ok: true, value: n });
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips formatHex and formatSize', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        expect(parseValue(formatHex(n))).toBe(n);
        expect(parseValue(formatSize(n))).toBe(n);
      }),
    );
  });
});
