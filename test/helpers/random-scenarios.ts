/**
 * The random scenarios of the property tests (test/host-consistency.props.test.ts and
 * test/fastfault.props.test.ts): VMAs of every backing, memslots, guest accesses and host
 * events, on every modelled kernel and a few CPUs. `worldGen` draws one; `scenarioOf()` turns it
 * into scenario JSON that `s2emu run FILE` accepts.
 */
import fc from 'fast-check';
import {
  ACCESS_KINDS,
  BACKINGS,
  HUGETLB_SIZES,
  KERNELS,
  MEM_TYPES,
  PROTS,
  RACES,
} from '../../src/scenario/types.js';
import type { Backing, MemType, Prot } from '../../src/scenario/types.js';
import { hex } from './scenarios.js';
import type { Json } from './scenarios.js';

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

export const RAM = { base: 0x8000_0000, size: 0x1_0000_0000 };
export const NOMAP = { base: 0x40_0000_0000, size: 0x1_0000_0000 };
/** Raw-pfn VMAs over RAM take their pa from the top quarter (the allocator starts at the bottom). */
const RAM_PFN_BASE = RAM.base + 0xc000_0000;
export const HVA_BASE = 0x7f00_0000_0000;
export const IPA_BASE = 0x4000_0000;
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
export interface World {
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

export const worldGen: fc.Arbitrary<World> = fc.record({
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
export function scenarioOf(w: World): Json {
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
export const GENERATED_KINDS = [
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
