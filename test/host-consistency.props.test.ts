/**
 * Issue 8: the host-consistency property. Random scenarios (VMAs of every backing, memslots,
 * guest accesses and host events, on every modelled kernel and a few CPUs) run with the
 * host-consistency audit after every step (src/mmu/hostaudit.ts): every valid stage-2 leaf
 * must map exactly the pfns the host maps at the corresponding hva right now, with no more
 * permission than the host mapping and the memslot allow, a memory type consistent with the
 * host's, and only pfns hva_to_pfn() can obtain. Where the modelled kernel itself breaks a
 * rule, the fault path reports it (a diagnostic naming the rule, the IPA and the kernel
 * function); the property is that every violation is so explained. A failure writes the
 * shrunk scenario to a JSON file that `s2emu run FILE` accepts, and names it.
 *
 * Also: the two model bugs this property was written to catch, as deterministic scenarios.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunError, ScenarioRunner } from '../src/scenario/run.js';
import {
  ACCESS_KINDS,
  BACKINGS,
  HUGETLB_SIZES,
  KERNELS,
  MEM_TYPES,
  PROTS,
  RACES,
  STEP_KINDS,
} from '../src/scenario/types.js';
import type { Backing, MemType, Prot } from '../src/scenario/types.js';
import { KERNELS as KERNEL_MODELS } from '../src/mmu/kernel.js';
import type { KernelName } from '../src/mmu/kernel.js';
import {
  auditHostConsistency,
  explainedBy,
  formatHostViolation,
  kernelViolations,
} from '../src/mmu/hostaudit.js';
import { hex, more, run } from './helpers/scenarios.js';
import { HPTE_OWNED, HPTE_PRESENT, HPTE_WRITE } from '../src/mmu/host/hostpt.js';
import type { Json } from './helpers/scenarios.js';

// ---- the random scenario ------------------------------------------------------------------

/** The memory types other than normal-tagged (which needs an MTE CPU: vmaJson() decides). */
const UNTAGGED = MEM_TYPES.filter((t) => t !== 'normal-tagged');
/** CPUs: FWB+DIC (grace), DIC only (neoverse-n1), neither (kunpeng-920), and MTE on the first two. */
const CPUS: readonly Json[] = [
  { profile: 'grace' },
  { profile: 'neoverse-n1' },
  { profile: 'kunpeng-920' },
  { profile: 'grace', mte: true },
  { profile: 'neoverse-n1', mte: true },
];
/** Guest accesses the property makes (AT needs a guest stage 1, which these scenarios lack). */
const ACCESSES = ACCESS_KINDS.filter((k) => k !== 'at');
/** Mostly reads and writes (what maps memory), every other kind now and then. */
const accessKind = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('read', 'write') },
  { weight: 2, arbitrary: fc.constantFrom(...ACCESSES) },
);

const RAM = { base: 0x8000_0000, size: 0x1_0000_0000 };
const NOMAP = { base: 0x40_0000_0000, size: 0x1_0000_0000 };
/** Raw-pfn VMAs over RAM take their pa from the top quarter (the allocator starts at the bottom). */
const RAM_PFN_BASE = RAM.base + 0xc000_0000;
const HVA_BASE = 0x7f00_0000_0000;
const IPA_BASE = 0x4000_0000;
/** Each VMA has its own 4 GiB of hva and 256 MiB of IPA, so nothing overlaps. */
const HVA_STRIDE = 0x1_0000_0000;
const IPA_STRIDE = 0x1000_0000;

interface VmaGen {
  backing: Backing;
  prot: Prot;
  memType: MemType;
  shared: boolean;
  io: boolean;
  allowAnyUncached: boolean;
  uffd: boolean;
  /** MAP_POPULATE (memory backings). */
  populate: boolean;
  /** Size: 4 pages, 16 pages, one PMD, two PMDs (hugetlb: one or two huge pages). */
  sizeKind: number;
  hugeIdx: number;
  hostMapping: 'page' | 'pmd' | 'pud';
  paRam: boolean;
  /** The raw-pfn VMA's pa is one page off PMD alignment (no huge host or stage-2 entries). */
  paMisaligned: boolean;
  slot: boolean;
  slotOffsetPages: number;
  /** The slot's IPA is one page off the hva's PMD congruence (no stage-2 blocks). */
  slotMisaligned: boolean;
  readonly: boolean;
  logDirty: boolean;
}

const vmaGen: fc.Arbitrary<VmaGen> = fc.record({
  // Raw-pfn VMAs twice as often: most of what hva_to_pfn() and get_vma_page_shift() do.
  backing: fc.constantFrom<Backing>(...BACKINGS, 'pfnmap', 'mixedmap'),
  prot: fc.constantFrom(...PROTS),
  // Normal most often; normal-tagged as often as each uncached type.
  memType: fc.constantFrom<MemType>('normal', 'normal', 'normal-tagged', ...UNTAGGED),
  shared: fc.boolean(),
  io: fc.boolean(),
  allowAnyUncached: fc.boolean(),
  uffd: fc.boolean(),
  populate: fc.nat(4).map((n) => n === 0),
  sizeKind: fc.nat(3),
  hugeIdx: fc.nat(2),
  hostMapping: fc.constantFrom('page', 'pmd', 'pud'),
  paRam: fc.boolean(),
  // Misalignment (no huge host or stage-2 entries) one time in four: blocks are where bugs hide.
  paMisaligned: fc.nat(3).map((n) => n === 0),
  slot: fc.nat(6).map((n) => n !== 0),
  slotOffsetPages: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(3) }),
  slotMisaligned: fc.nat(3).map((n) => n === 0),
  readonly: fc.nat(4).map((n) => n === 0),
  logDirty: fc.nat(3).map((n) => n === 0),
});

/** A step before it is fitted to the scenario (indices are taken modulo what exists). */
type RawStep =
  | { k: 'access'; v: number; page: number; byte: number; access: string; race: number }
  | {
      k: 'touch';
      v: number;
      page: number;
      n: number;
      stride: number;
      access: string;
      random: boolean;
      seed: number;
    }
  | { k: 'hostUnmap' | 'munmap'; v: number; page: number; n: number }
  | { k: 'hostProtect'; v: number; prot: Prot }
  | { k: 'age'; v: number; page: number; n: number }
  | { k: 'dirtyLog'; v: number; op: 'enable' | 'disable' | 'get-and-clear' }
  | { k: 'memslot' | 'deleteMemslot'; v: number }
  | { k: 'mmap'; v: number; page: number; n: number; vma: VmaGen }
  | { k: 'poison' | 'hostWrite'; v: number; page: number; value: number };

const v = fc.nat(8);
const page = fc.nat(1100);
const rawStep: fc.Arbitrary<RawStep> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant('access' as const),
      v,
      page,
      byte: fc.constantFrom(0, 8),
      access: accessKind,
      // Index into RACES; past its end: no race (most accesses).
      race: fc.nat(3 * RACES.length),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('touch' as const),
      v,
      page,
      n: fc.integer({ min: 1, max: 12 }),
      stride: fc.nat(2),
      access: accessKind,
      random: fc.boolean(),
      seed: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('hostUnmap' as const),
      v,
      page,
      n: fc.integer({ min: 1, max: 600 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('hostProtect' as const), v, prot: fc.constantFrom(...PROTS) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('age' as const), v, page, n: fc.integer({ min: 1, max: 600 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('dirtyLog' as const),
      v,
      op: fc.constantFrom('enable', 'disable', 'get-and-clear'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constantFrom('memslot' as const, 'deleteMemslot' as const), v }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('munmap' as const), v, page, n: fc.integer({ min: 1, max: 600 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('mmap' as const),
      v,
      page,
      n: fc.integer({ min: 1, max: 600 }),
      vma: vmaGen,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constantFrom('poison' as const, 'hostWrite' as const),
      v,
      page,
      value: fc.nat(),
    }),
  },
);

/** The generated world: host, kernel, CPU, VMAs and the raw steps. */
interface World {
  kernel: string;
  cpu: Json;
  granule: '4K' | '16K';
  /** KVM_CAP_ARM_MTE, when the CPU has MTE. */
  vmMte: boolean;
  /**
   * A memslot given by `hva` across the end of the first VMA and into the hole after it (its
   * own IPA window below the others); accesses go there when their VMA index is 8.
   */
  hvaSlot: boolean;
  /** vm.tablePagesMax, when not 0. */
  tablePagesMax: number;
  vmas: VmaGen[];
  steps: RawStep[];
}

const worldGen: fc.Arbitrary<World> = fc.record({
  kernel: fc.constantFrom(...KERNELS),
  cpu: fc.constantFrom(...CPUS),
  granule: fc.constantFrom<'4K' | '16K'>('4K', '4K', '4K', '16K'),
  vmMte: fc.nat(3).map((n) => n === 0),
  hvaSlot: fc.boolean(),
  // Past the PGD (2 pages with 4K, 16 with 16K, at 40 bits): a few table pages, then -ENOMEM.
  tablePagesMax: fc.constantFrom(0, 0, 0, 0, 18, 20),
  vmas: fc.array(vmaGen, { minLength: 1, maxLength: 4 }),
  steps: fc.array(rawStep, { minLength: 1, maxLength: 60 }),
});

/** What the fitting pass knows of one VMA. */
interface Fitted {
  name: string;
  size: number;
  /** hostUnmap unit: the huge page for hugetlb, else the page. */
  unit: number;
  backing: string;
  maywrite: boolean;
  slot: Json;
  /** The VMA's IPA window, and how much of it accesses visit (the slot and a little past it). */
  window: number;
  reach: number;
  /** The slot's first IPA and its pages. */
  slotStart: number;
  slotPages: number;
  /** Still whole (no munmap or MAP_FIXED over it): name-based host steps may use it. */
  whole: boolean;
}

/** The granule's sizes. */
function sizesOf(granule: '4K' | '16K'): { ps: number; pmd: number } {
  return granule === '4K' ? { ps: 0x1000, pmd: 0x20_0000 } : { ps: 0x4000, pmd: 0x200_0000 };
}

/**
 * One VMA's file entry: `name` at `start`, of VMA slot `i` (whose pa window raw-pfn VMAs use),
 * `size` bytes unless the backing dictates (hugetlb). Returns the entry and its hugetlb unit.
 */
function vmaJson(w: World, g: VmaGen, name: string, i: number, start: number, size: number): [Json, number] {
  const { ps } = sizesOf(w.granule);
  const mte = w.cpu['mte'] === true;
  const vma: Json = { name, start: hex(start), backing: g.backing, prot: g.prot };
  const flags: string[] = [];
  let unit = ps;
  const raw = g.backing === 'pfnmap' || g.backing === 'mixedmap';
  let memType = g.memType;
  if (memType === 'normal-tagged') {
    // PROT_MTE needs VM_MTE_ALLOWED: a CPU with MTE, and the flag given for raw-pfn VMAs.
    if (!mte) memType = 'normal';
    else if (raw) flags.push('mte-allowed');
  }
  if (memType !== 'normal') vma['memType'] = memType;
  if (g.backing === 'hugetlb') {
    const sizes = HUGETLB_SIZES[w.granule].filter((s) => s < 0x4000_0000);
    unit = sizes[g.hugeIdx % sizes.length]!;
    size = unit * (g.sizeKind % 2 === 0 ? 1 : 2);
    vma['hugePage'] = hex(unit);
  }
  if (raw) {
    const base = g.paRam ? RAM_PFN_BASE : NOMAP.base;
    vma['pa'] = hex(base + i * IPA_STRIDE + (g.paMisaligned ? ps : 0));
    vma['hostMapping'] = g.hostMapping;
    if (g.io) flags.push('io');
  } else {
    if (g.uffd) vma['userfaultfd'] = 'missing';
    if (g.populate) vma['populate'] = true;
  }
  if (g.shared) flags.push('shared');
  if (g.allowAnyUncached) flags.push('allow-any-uncached');
  if (flags.length) vma['flags'] = flags;
  vma['size'] = hex(size);
  return [vma, unit];
}

/**
 * The scenario file for a world: VMAs and slots laid out so that nothing overlaps, and the
 * steps fitted to what exists at each point (a dirty-log step only on an existing slot, a
 * harvest only while logging, a memslot re-created only once deleted, name-based host steps
 * only on a VMA no munmap or MAP_FIXED has cut), so every scenario passes validation.
 * Returns the JSON object.
 */
function scenarioOf(w: World): Json {
  const { ps, pmd } = sizesOf(w.granule);
  const mte = w.cpu['mte'] === true;
  const vmas: Json[] = [];
  const fitted: Fitted[] = [];
  const memslots: Json[] = [];
  w.vmas.forEach((g, i) => {
    const name = `v${i}`;
    const start = HVA_BASE + i * HVA_STRIDE;
    const [vma, unit] = vmaJson(w, g, name, i, start, [4 * ps, 16 * ps, pmd, 2 * pmd][g.sizeKind]!);
    const size = parseInt(vma['size'] as string, 16);
    vmas.push(vma);
    const offset = g.backing === 'hugetlb' ? 0 : Math.min(g.slotOffsetPages, size / ps - 1) * ps;
    const window = IPA_BASE + i * IPA_STRIDE;
    const gpa = window + offset + (g.slotMisaligned ? ps : 0);
    const slotFlags = [...(g.readonly ? ['readonly'] : []), ...(g.logDirty ? ['log-dirty'] : [])];
    const slot: Json = { slot: i, gpa: hex(gpa), size: hex(size - offset), vma: name, offset: hex(offset) };
    if (slotFlags.length) slot['flags'] = slotFlags;
    if (g.slot) memslots.push(slot);
    fitted.push({
      name,
      size,
      unit,
      backing: g.backing,
      maywrite: g.prot.includes('w'),
      slot,
      window,
      reach: size + 2 * ps,
      slotStart: gpa,
      slotPages: (size - offset) / ps,
      whole: true,
    });
  });
  // The state the parser follows: which slots exist, and which are logging.
  const exists = w.vmas.map((g) => g.slot);
  const logging = w.vmas.map((g) => g.slot && g.logDirty);
  const steps: Json[] = [];
  const strides = [ps, pmd / 4, pmd];
  const HVA_SLOT_IPA = 0x3000_0000;
  if (w.hvaSlot) {
    const end = HVA_BASE + fitted[0]!.size;
    memslots.push({ slot: 8, gpa: hex(HVA_SLOT_IPA), size: hex(4 * ps), hva: hex(end - 2 * ps) });
  }
  let mmaps = 0;
  for (const s of w.steps) {
    const i = s.v % fitted.length;
    const f = fitted[i]!;
    // An IPA in the VMA's window: mostly in its slot's range, now and then a little past it
    // (MMIO, or no slot); or in the hva slot.
    const ipaAt = (p: number): number =>
      w.hvaSlot && s.v === 8
        ? HVA_SLOT_IPA + (p % 4) * ps
        : p % 8 === 7
          ? f.window + (p % (f.reach / ps)) * ps
          : f.slotStart + (p % f.slotPages) * ps;
    // A range of whole units of the VMA (huge pages for hugetlb), for hostUnmap and munmap.
    const range = (p: number, n: number): Json => {
      const units = f.size / f.unit;
      const off = p % units;
      return { vma: f.name, offset: hex(off * f.unit), size: hex(Math.min(n, units - off) * f.unit) };
    };
    switch (s.k) {
      case 'access': {
        const race = RACES[s.race];
        steps.push({ access: s.access, ipa: hex(ipaAt(s.page) + s.byte), ...(race ? { race } : {}) });
        break;
      }
      case 'touch': {
        const stride = strides[s.stride]!;
        steps.push({
          touch: {
            from: hex(ipaAt(s.page)),
            size: hex(s.n * stride),
            stride: hex(stride),
            access: s.access,
            ...(s.random ? { order: 'random', seed: s.seed } : {}),
          },
        });
        break;
      }
      case 'hostUnmap':
        if (f.whole) steps.push({ hostUnmap: range(s.page, s.n) });
        break;
      case 'munmap':
        if (!f.whole) break;
        steps.push({ munmap: range(s.page, s.n) });
        f.whole = false;
        break;
      case 'mmap': {
        // MAP_FIXED over part of the VMA (or past its end, into the hole after it).
        if (!f.whole) break;
        const at = (s.page % (f.size / ps)) * ps;
        const start = HVA_BASE + i * HVA_STRIDE + at;
        const name = `m${mmaps++}`;
        if (s.vma.backing === 'hugetlb') break; // its alignment rarely fits; hugetlb is covered above
        const [vma] = vmaJson(w, s.vma, name, i, start, Math.min(s.n, 64) * ps);
        steps.push({ mmap: vma });
        f.whole = false;
        break;
      }
      case 'hostProtect':
        // mprotect cannot add write to a VMA without VM_MAYWRITE.
        if (!f.whole || (s.prot.includes('w') && !f.maywrite)) break;
        steps.push({ hostProtect: { vma: f.name, prot: s.prot } });
        break;
      case 'poison':
        if (!f.whole || f.backing === 'pfnmap' || f.backing === 'mixedmap') break;
        steps.push({ poison: { vma: f.name, offset: hex((s.page % (f.size / ps)) * ps) } });
        break;
      case 'hostWrite':
        if (!f.whole || !f.maywrite) break;
        steps.push({
          hostWrite: { vma: f.name, offset: hex((s.page % (f.size / ps)) * ps + 8), u64: hex(s.value) },
        });
        break;
      case 'age':
        steps.push({ age: { ipa: hex(ipaAt(s.page)), size: hex(Math.min(s.n, 64) * ps) } });
        break;
      case 'dirtyLog':
        if (!exists[i]) break;
        if (s.op === 'get-and-clear' && !logging[i]) break;
        steps.push({ dirtyLog: { slot: i, op: s.op } });
        if (s.op !== 'get-and-clear') logging[i] = s.op === 'enable';
        break;
      case 'memslot':
        if (exists[i]) break;
        steps.push({ memslot: f.slot });
        exists[i] = true;
        logging[i] = (f.slot['flags'] as string[] | undefined)?.includes('log-dirty') ?? false;
        break;
      case 'deleteMemslot':
        if (!exists[i]) break;
        steps.push({ deleteMemslot: i });
        exists[i] = false;
        logging[i] = false;
        break;
    }
  }
  return {
    description: 'host-consistency property (test/host-consistency.props.test.ts)',
    kernel: w.kernel,
    cpu: w.cpu,
    granule: w.granule,
    physical: [
      { base: hex(RAM.base), size: hex(RAM.size), type: 'ram' },
      { base: hex(NOMAP.base), size: hex(NOMAP.size), type: 'nomap' },
    ],
    vmas,
    vm: {
      ipaBits: 40,
      ...(mte ? { mte: w.vmMte } : {}),
      ...(w.tablePagesMax ? { tablePagesMax: w.tablePagesMax } : {}),
    },
    memslots,
    steps,
  };
}

/** The step kinds scenarioOf() makes (the test below checks the format has no others). */
const GENERATED_KINDS = [
  'access',
  'touch',
  'hostUnmap',
  'hostProtect',
  'age',
  'dirtyLog',
  'memslot',
  'deleteMemslot',
  'mmap',
  'munmap',
  'poison',
  'hostWrite',
];

// ---- the property -------------------------------------------------------------------------

/** Steps per `npm test` run (at least); S2EMU_HOST_PROPS_STEPS raises it for a long hunt. */
const STEP_TARGET = Math.max(10_000, Number(process.env['S2EMU_HOST_PROPS_STEPS'] ?? 0) || 0);

/** Steps run so far (every step is followed by an audit). */
let stepsRun = 0;
/** Stage-2 maps made, and the kernels run (what the property exercised). */
let mapsMade = 0;
const kernelsSeen = new Set<string>();
const rulesExplained = new Set<string>();

/**
 * Runs one scenario with the audit after every step. Returns null when every violation was
 * explained by a kernel behaviour, else the first unexplained one, in words.
 */
function check(s: Json): string | null {
  const sc = parseScenario(s);
  let runner: ScenarioRunner;
  try {
    runner = new ScenarioRunner(sc, { auditHost: true });
    mapsMade += runner.run().maps;
  } catch (e) {
    if (e instanceof ScenarioRunError) return `the run stopped: ${e.message}`;
    throw e;
  }
  stepsRun += sc.steps.length;
  kernelsSeen.add(runner.kvm.kernel.name);
  for (const r of kernelViolations(runner.kvm)) for (const rule of r.rules) rulesExplained.add(rule);
  const f = runner.hostAuditFailures[0];
  if (f === undefined) return null;
  const where = f.step === null ? 'after the initial memslots' : `after steps[${f.step}]`;
  return `${where}: ${formatHostViolation(f.violation)}`;
}

/** Writes a failing scenario where a user can run it. Returns the path. */
function writeCounterexample(s: Json): string {
  const dir = join(tmpdir(), 's2emu-host-consistency');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `counterexample-${process.pid}-${Date.now()}.json`);
  writeFileSync(file, JSON.stringify(s, null, 2) + '\n');
  return file;
}

describe('host consistency (issue 8)', () => {
  it(
    'every stage-2 leaf is consistent with the host, or the kernel said why, after every step',
    () => {
      const prop = fc.property(worldGen, (w) => {
        const why = check(scenarioOf(w));
        if (why !== null) throw new Error(why);
      });
      // Batches of runs until at least 10^4 steps have been run and audited.
      const seed = Date.now() ^ (Math.random() * 0x7fffffff);
      for (let batch = 0; stepsRun < STEP_TARGET; batch++) {
        const out = fc.check(prop, { numRuns: 50, seed: seed + batch });
        if (out.failed) {
          const w = out.counterexample![0];
          const file = writeCounterexample(scenarioOf(w));
          expect.fail(
            `${String((out.errorInstance as Error | undefined)?.message ?? out.errorInstance)}\n` +
              `shrunk scenario (seed ${out.seed}, ${out.numShrinks} shrinks) written to ${file}; ` +
              `run it with: node dist/cli/main.js run ${file}`,
          );
        }
      }
      expect(stepsRun).toBeGreaterThanOrEqual(STEP_TARGET);
      // What it exercised: every kernel of the format's list (taken at run time, so a new
      // variant is covered), a good number of stage-2 maps, and kernel behaviours it explained.
      expect([...kernelsSeen].sort()).toEqual([...KERNELS].sort());
      expect(mapsMade).toBeGreaterThan(1000);
      expect(rulesExplained.has('memtype')).toBe(true);
    },
    120_000 + STEP_TARGET * 10,
  );

  it('generates every step kind the runner models', () => {
    // Kinds the generator does not make yet: each one added to the format must be added here.
    const missing = STEP_KINDS.filter((k) => !GENERATED_KINDS.includes(k));
    expect(missing).toEqual([]);
  });
});

// ---- the audit itself -----------------------------------------------------------------------

describe('host-consistency audit', () => {
  it('finds nothing on a clean run, and finds a stage-2 leaf the host no longer backs', () => {
    const r = run(
      {
        kernel: '6.17',
        cpu: { profile: 'grace' },
        granule: '4K',
        physical: [{ base: hex(RAM.base), size: '1G', type: 'ram' }],
        vmas: [{ name: 'ram', start: hex(HVA_BASE), size: '4M', backing: 'thp', prot: 'rw' }],
        memslots: [{ slot: 0, gpa: hex(IPA_BASE), size: '4M', vma: 'ram' }],
        steps: [
          { access: 'write', ipa: hex(IPA_BASE) },
          { access: 'read', ipa: hex(IPA_BASE + 0x20_0000) },
        ],
      },
      undefined,
      { auditHost: true },
    );
    const kvm = r.runner.kvm;
    expect(r.runner.hostAuditFailures).toEqual([]);
    expect(auditHostConsistency(kvm)).toEqual([]);
    // Pull the host's PMD out from under stage 2 without the MMU notifier: the audit sees
    // both blocks go stale (pfn) — the first was writable too.
    kvm.mm.pt.clear(1, HVA_BASE);
    const found = auditHostConsistency(kvm);
    expect(found.map((v) => [v.rule, hex(v.ipa), hex(v.size), v.hostPfn])).toEqual([
      ['pfn', '0x40000000', '0x200000', -1],
    ]);
    expect(formatHostViolation(found[0]!)).toMatch(
      /^pfn: IPA 0x40000000\+0x200000 .* but the host maps nothing at hva 0x7f0000000000$/,
    );
    expect(explainedBy(kvm, found[0]!)).toBeUndefined();
  });
});

// ---- the bugs the property was written for -----------------------------------------------

/** A COW (private, writable) PFNMAP of device memory, congruent at PMD size, in slot 0. */
function cowPfnmap(kernel: string, steps: Json[]): Json {
  return {
    kernel,
    cpu: { profile: 'grace' },
    granule: '4K',
    physical: [
      { base: hex(RAM.base), size: '1G', type: 'ram' },
      { base: hex(NOMAP.base), size: '1G', type: 'nomap' },
    ],
    vmas: [
      {
        name: 'bar',
        start: hex(HVA_BASE),
        size: '4M',
        backing: 'pfnmap',
        prot: 'rw',
        pa: hex(NOMAP.base),
        hostMapping: 'pmd',
      },
    ],
    memslots: [{ slot: 0, gpa: hex(IPA_BASE), size: '4M', vma: 'bar' }],
    steps,
  };
}

/** A VM_MIXEDMAP VMA (vmf_insert_mixed()) over `pa`, with or without VM_IO, in slot 0. */
function mixedmap(kernel: string, pa: number, io: boolean): Json {
  return {
    kernel,
    cpu: { profile: 'grace' },
    granule: '4K',
    physical: [
      { base: hex(RAM.base), size: '1G', type: 'ram' },
      { base: hex(NOMAP.base), size: '1G', type: 'nomap' },
    ],
    vmas: [
      {
        name: 'mix',
        start: hex(HVA_BASE),
        size: '2M',
        backing: 'mixedmap',
        prot: 'rw',
        pa: hex(pa),
        flags: ['shared', ...(io ? ['io'] : [])],
      },
    ],
    memslots: [{ slot: 0, gpa: hex(IPA_BASE), size: '2M', vma: 'mix' }],
    steps: [
      { access: 'read', ipa: hex(IPA_BASE) },
      { access: 'write', ipa: hex(IPA_BASE + 0x1000) },
    ],
  };
}

describe('regressions the property catches (hva_to_pfn() in virt/kvm/kvm_main.c)', () => {
  for (const kernel of KERNELS) {
    const model = KERNEL_MODELS[kernel as KernelName];
    // The seed and v7 refuse a COW PFNMAP before the pfn lookup (-EINVAL under mmap_lock).
    const expectErr = model.cowPfnmapEinval ? 'EINVAL' : 'EFAULT';

    it(`${kernel}: a write to a COW PFNMAP whose host entry is present and read-only fails, and maps no host RAM`, () => {
      // hva_to_pfn_remapped(): follow_pfnmap_start() finds the driver's read-only entry, so
      // fixup_user_fault() is not called; a write fault on it is KVM_PFN_ERR_RO_FAULT, and
      // user_mem_abort() returns -EFAULT. The old model broke the COW into anonymous memory and
      // mapped the PMD block that get_vma_page_shift() chose from vm_pgoff onto it.
      for (const steps of [
        [{ access: 'write', ipa: hex(IPA_BASE + 0x3000) }],
        [
          { access: 'read', ipa: hex(IPA_BASE + 0x3000) },
          { access: 'write', ipa: hex(IPA_BASE + 0x3000) },
        ],
      ]) {
        const r = run(cowPfnmap(kernel, steps), undefined, { auditHost: true });
        const w = r.lines[r.lines.length - 1]!;
        expect(w.outcome).toBe('error');
        expect(w.errno).toBe(expectErr);
        expect(r.runner.kvm.mm.stats.cowBreaks).toBe(0);
        expect(r.runner.hostAuditFailures).toEqual([]);
      }
    });

    it(`${kernel}: VM_MIXEDMAP without VM_IO cannot be faulted in; with VM_IO it can`, () => {
      // hva_to_pfn(): GUP refuses the special entries vmf_insert_mixed() installs on arm64
      // (pte_special: vm_normal_page() has no page), and hva_to_pfn_remapped() is only tried
      // for VM_IO|VM_PFNMAP, so the fault is -EFAULT whether the pfn is RAM or device memory.
      for (const pa of [NOMAP.base, RAM.base + 0x2000_0000]) {
        const r = run(mixedmap(kernel, pa, false), undefined, { auditHost: true });
        expect(r.lines.map((l) => `${l.outcome} ${l.errno ?? ''}`)).toEqual(['error EFAULT', 'error EFAULT']);
        expect(r.runner.hostAuditFailures).toEqual([]);
      }
      const r = run(mixedmap(kernel, RAM.base + 0x2000_0000, true), undefined, { auditHost: true });
      expect(r.lines.map((l) => l.outcome)).toEqual(['done', 'done']);
      expect(r.runner.hostAuditFailures).toEqual([]);
    });
  }

  it('a VM_PFNMAP block over host entries the host zapped is a kernel behaviour (get_vma_page_shift())', () => {
    // The driver refills only the faulting page; user_mem_abort() maps the PMD block that
    // vm_pgoff allows anyway, over 511 entries the host does not map now.
    const s = cowPfnmap('6.17', [
      { hostUnmap: { vma: 'bar', offset: '0', size: '2M' } },
      { access: 'read', ipa: hex(IPA_BASE) },
    ]);
    (s['vmas'] as Json[])[0]!['flags'] = ['shared'];
    (s['vmas'] as Json[])[0]!['hostMapping'] = 'page';
    const r = run(s, undefined, { auditHost: true });
    expect(r.lines[0]!.leaf?.size).toBe('0x200000');
    expect(r.runner.hostAuditFailures).toEqual([]);
    const kvm = r.runner.kvm;
    expect(auditHostConsistency(kvm).map((v) => [v.rule, hex(v.ipa), hex(v.size)])).toEqual([
      ['pfn', '0x40001000', '0x1ff000'],
    ]);
    expect(r.summary.diagnostics).toEqual([
      'host-consistency: pfn, perm: IPA 0x40000000+0x200000 maps a block of pfns from 0x4000000 where the host ' +
        'does not map all of them (from hva 0x7f0000000000) (user_mem_abort: get_vma_page_shift() sizes a ' +
        "VM_PFNMAP block from vm_pgoff alone, not from the host's entries, kernel 6.17)",
    ]);
  });

  /**
   * A COW PFNMAP whose first page the host has already replaced by an anonymous page (as the
   * VMM's own write does: do_wp_page() copies a special entry of a private mapping), then a
   * guest read of it. `byKvm` makes the copy inside KVM's fault instead (the old model's bug 2).
   */
  function blockFromCopy(byKvm: boolean): ReturnType<typeof run> {
    const s = cowPfnmap('6.17', []);
    (s['vmas'] as Json[])[0]!['hostMapping'] = 'page';
    const r = run(s, undefined, { auditHost: true });
    const kvm = r.runner.kvm;
    const copy = kvm.phys.allocFolio(0, false);
    const install = (): void => kvm.mm.pt.set(0, HVA_BASE, copy, HPTE_PRESENT | HPTE_WRITE | HPTE_OWNED);
    if (!byKvm) install();
    else {
      // The copy appears during __kvm_faultin_pfn(), from the driver's present entry.
      const mm = kvm.mm;
      const orig = mm.hvaToPfn.bind(mm);
      mm.hvaToPfn = (kfp) => {
        install();
        orig(kfp);
      };
    }
    more(r, 'read', IPA_BASE);
    return r;
  }

  it('a VM_PFNMAP block from an anonymous copy the host already had is a kernel behaviour', () => {
    const r = blockFromCopy(false);
    const kvm = r.runner.kvm;
    const found = auditHostConsistency(kvm);
    expect(found.length).toBeGreaterThan(0);
    expect(found.every((v) => explainedBy(kvm, v) !== undefined)).toBe(true);
    expect(kvm.diagnostics).toEqual([
      expect.stringMatching(
        /^host-consistency: pfn, perm: IPA 0x40000000\+0x200000 maps a block from pfn 0x[0-9a-f]+, an anonymous copy at hva 0x7f0000000000, over the host RAM after it \(user_mem_abort: get_vma_page_shift\(\) sized the block from vm_pgoff; hva_to_pfn\(\) returned the copy, kernel 6.17\)$/,
      ),
    ]);
  });

  it("a copy made by KVM's own fault from a present entry is no kernel behaviour: the audit reports it unexplained", () => {
    const r = blockFromCopy(true);
    const kvm = r.runner.kvm;
    expect(kvm.diagnostics).toEqual([]);
    const found = auditHostConsistency(kvm);
    expect(found.some((v) => v.rule === 'pfn' && explainedBy(kvm, v) === undefined)).toBe(true);
  });

  it('names the rule, the IPA and the kernel function for a kernel behaviour (6.16: device memory of a cacheable VMA)', () => {
    const s = cowPfnmap('6.16', [{ access: 'read', ipa: hex(IPA_BASE) }]);
    (s['vmas'] as Json[])[0]!['flags'] = ['shared'];
    const r = run(s, undefined, { auditHost: true });
    expect(r.lines[0]!.outcome).toBe('done');
    expect(r.runner.hostAuditFailures).toEqual([]);
    expect(r.summary.diagnostics).toEqual([
      'host-consistency: memtype: IPA 0x40000000+0x200000 maps pfn 0x4000000 uncached under a cacheable host mapping ' +
        '(user_mem_abort: kvm_is_device_pfn() makes every pfn outside the linear map device, whatever the VMA, kernel 6.16)',
    ]);
  });
});

describe('the incremental audit (the CLI default)', () => {
  it('reports exactly what the full audit reports, on every example', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { parseScenarioText } = await import('../src/scenario/parse.js');
    const { ScenarioRunner } = await import('../src/scenario/run.js');
    const dir = join(__dirname, '..', 'examples');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
      const text = readFileSync(join(dir, f), 'utf8');
      const diag = (mode: 'full' | 'incremental') =>
        new ScenarioRunner(parseScenarioText(text), { auditHost: mode }).run().diagnostics;
      expect(diag('incremental'), f).toEqual(diag('full'));
    }
  });

  it('catches a model bug in the pages a step touched (a fault mapping the wrong pfn)', async () => {
    const { parseScenario } = await import('../src/scenario/parse.js');
    const { ScenarioRunner } = await import('../src/scenario/run.js');
    const s = parseScenario({
      cpu: { profile: 'grace' },
      granule: '4K',
      physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
      vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '64M', backing: 'anon', prot: 'rw' }],
      vm: { ipaBits: 40 },
      memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram' }],
      steps: [{ touch: { from: '0x4000_0000', size: '64K', stride: '4K', access: 'write' } }],
    });
    const runner = new ScenarioRunner(s, { auditHost: 'incremental' });
    // Inject the bug: GUP hands KVM the pfn after the one the host maps.
    const mm = runner.kvm.mm;
    const hvaToPfn = mm.hvaToPfn.bind(mm);
    mm.hvaToPfn = (kfp) => {
      hvaToPfn(kfp);
      if (kfp.pfn >= 0) kfp.pfn += 1;
    };
    const d = runner.run().diagnostics;
    expect(d.some((x) => x.includes('host-consistency audit after steps[0]') && x.includes('pfn'))).toBe(
      true,
    );
  });
});
