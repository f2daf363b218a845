/**
 * The scenario's host sections (docs/scenario.md): `cpu`, `vm`, `physical`, `vmas` and
 * `memslots`, with the tracker that follows the set of memslots through the steps that add and
 * delete them. Each reader reports through the Checker and returns undefined after reporting.
 */

import {
  BACKINGS,
  CPU_FEATURES,
  CPU_OPTIONAL_FEATURES,
  CPU_OPTION_KEYS,
  CPU_PROFILES,
  HOST_MAPPINGS,
  HUGETLB_SIZES,
  MAX_SLOT_ID,
  MEM_TYPES,
  MEMSLOT_FLAG_NAMES,
  MIN_IPA_BITS,
  MMIO_WRITES,
  PHYS_TYPES,
  PROTS,
  UFFD_COPY_FROMS,
  UFFD_RESOLVES,
  USER_VA_LIMIT,
  VMA_FLAG_NAMES,
} from './types.js';
import type {
  Backing,
  CpuOptions,
  ScenarioMemslot,
  PhysicalRegion,
  Prot,
  ScenarioCpu,
  Userfaultfd,
  ScenarioVma,
  VmaFlags,
  VmaInit,
  VmConfig,
} from './types.js';
import { allDefined, complete, get, isObject, readWriteBytes } from './check.js';
import type { Checker, Context, Maybe, Obj, Shape } from './check.js';
import { indexPath, keyPath, M } from './errors.js';
import type { CpuFeatures } from '../mmu/cpu.js';

/** `cpu`: every feature, or a profile with overrides. Returns the ScenarioCpu, or undefined after reporting. */
export function readCpu(c: Checker, v: unknown): ScenarioCpu | undefined {
  if (v === undefined) return undefined;
  const withProfile = isObject(v) && Object.hasOwn(v, 'profile');
  // Without a profile every feature is required; one issue names all the missing ones.
  const obj = c.object(
    v,
    'cpu',
    {
      required: withProfile ? ['profile'] : [],
      optional: [...CPU_FEATURES, ...CPU_OPTIONAL_FEATURES, ...CPU_OPTION_KEYS],
    },
    M.expectedCpu,
  );
  if (obj === undefined) return undefined;
  if (!withProfile) {
    const missing = CPU_FEATURES.filter((name) => !Object.hasOwn(obj, name));
    if (missing.length > 0) {
      c.report('cpu', M.missingCpuFeatures(missing));
      return undefined;
    }
    const features: Maybe<CpuFeatures> = {
      fwb: undefined,
      dic: undefined,
      idc: undefined,
      mte: undefined,
      tlbiRange: undefined,
      hafdbs: undefined,
      lse: undefined,
    };
    for (const name of CPU_FEATURES) features[name] = c.bool(get(obj, name), keyPath('cpu', name));
    const done = complete(features);
    const lpa2 = readCpuLpa2(c, obj);
    if (done === undefined || lpa2 === null) return undefined;
    return lpa2 === undefined ? done : { ...done, lpa2 };
  }
  const profile = c.oneOf(obj.profile, 'cpu.profile', CPU_PROFILES);
  const overrides: Partial<Record<keyof CpuFeatures, boolean>> = {};
  let ok = profile !== undefined;
  for (const name of CPU_FEATURES) {
    if (!Object.hasOwn(obj, name)) continue;
    const b = c.bool(obj[name], keyPath('cpu', name));
    if (b === undefined) ok = false;
    else overrides[name] = b;
  }
  const lpa2 = readCpuLpa2(c, obj);
  if (lpa2 === null) ok = false;
  else if (lpa2 !== undefined) overrides.lpa2 = lpa2;
  return ok && profile !== undefined ? { profile, ...overrides } : undefined;
}

/** `cpu.lpa2` (optional, default false): the value, undefined when absent, null when bad. */
function readCpuLpa2(c: Checker, obj: Record<string, unknown>): boolean | undefined | null {
  if (!Object.hasOwn(obj, 'lpa2')) return undefined;
  return c.bool(obj.lpa2, 'cpu.lpa2') ?? null;
}

/**
 * `vm` (optional): the IPA size against the host's limit `paBits`, and MTE against the CPU's.
 * Returns the VmConfig (the defaults when absent), or undefined after reporting.
 */
export function readVm(
  c: Checker,
  v: unknown,
  paBits: number | undefined,
  cpuMte: boolean | undefined,
): VmConfig | undefined {
  const defaults: VmConfig = { ipaBits: 40, mte: false, nisvToUser: false };
  if (v === undefined) {
    if (paBits !== undefined && paBits < defaults.ipaBits) c.report('vm.ipaBits', M.defaultIpaBits(paBits));
    return defaults;
  }
  const obj = c.object(v, 'vm', {
    required: [],
    optional: ['ipaBits', 'mte', 'nisvToUser', 'tablePagesMax', 'mmioWrites'],
  });
  if (obj === undefined) return undefined;
  const limit = paBits ?? 52;
  let ipaBits: number | undefined = defaults.ipaBits;
  if (Object.hasOwn(obj, 'ipaBits')) {
    ipaBits = c.integer(obj.ipaBits, 'vm.ipaBits', MIN_IPA_BITS, limit, M.ipaLimit(limit));
  } else if (paBits !== undefined && paBits < defaults.ipaBits) {
    c.report('vm.ipaBits', M.defaultIpaBits(paBits));
    ipaBits = undefined;
  }
  const mte = Object.hasOwn(obj, 'mte') ? c.bool(obj.mte, 'vm.mte') : defaults.mte;
  if (mte === true && cpuMte === false) c.report('vm.mte', M.vmMteWithoutCpuMte);
  const nisvToUser = Object.hasOwn(obj, 'nisvToUser') ? c.bool(obj.nisvToUser, 'vm.nisvToUser') : false;
  const vm = complete<VmConfig>({
    ipaBits,
    mte: mte === true && cpuMte === false ? undefined : mte,
    nisvToUser,
  });
  // The host-event keys are kept only when given (absent: no limit, "drop").
  const tablePagesMax = Object.hasOwn(obj, 'tablePagesMax')
    ? c.integer(obj.tablePagesMax, 'vm.tablePagesMax', 1, 2 ** 31 - 1, M.tablePagesMax)
    : undefined;
  const mmioWrites = Object.hasOwn(obj, 'mmioWrites')
    ? c.oneOf(obj.mmioWrites, 'vm.mmioWrites', MMIO_WRITES)
    : undefined;
  if (vm === undefined) return undefined;
  return {
    ...vm,
    ...(tablePagesMax !== undefined ? { tablePagesMax } : {}),
    ...(mmioWrites !== undefined ? { mmioWrites } : {}),
  };
}

/** `physical`: aligned, non-overlapping regions inside the PA space. Returns them, or undefined after reporting. */
export function readPhysical(ctx: Context, v: unknown): readonly PhysicalRegion[] | undefined {
  const { c, page, paBits } = ctx;
  const list = c.array(v, 'physical');
  if (list === undefined) return undefined;
  const out: (PhysicalRegion | undefined)[] = [];
  list.forEach((item, i) => {
    const path = indexPath('physical', i);
    const obj = c.object(item, path, { required: ['base', 'size', 'type'] });
    if (obj === undefined) return out.push(undefined);
    const base = c.value(get(obj, 'base'), `${path}.base`);
    const size = c.size(get(obj, 'size'), `${path}.size`);
    const type = c.oneOf(get(obj, 'type'), `${path}.type`, PHYS_TYPES);
    let ok = c.aligned(base, page, `${path}.base`, M.granuleWhat(ctx.granule));
    ok = c.aligned(size, page, `${path}.size`, M.granuleWhat(ctx.granule)) && ok;
    const end =
      paBits === undefined
        ? c.end(base, size, path)
        : c.end(base, size, path, 2 ** paBits, M.paSpace(paBits));
    if (base !== undefined && end !== undefined) {
      out.forEach((other, j) => {
        if (other !== undefined && base < other.base + other.size && other.base < end) {
          c.report(
            path,
            M.overlaps(base, end, indexPath('physical', j), other.base, other.base + other.size),
          );
          ok = false;
        }
      });
    }
    out.push(ok && end !== undefined ? complete<PhysicalRegion>({ base, size, type }) : undefined);
  });
  return allDefined(out);
}

const VMA_REQUIRED = ['name', 'start', 'size', 'backing', 'prot'] as const;
const VMA_OPTIONAL = [
  'memType',
  'flags',
  'userfaultfd',
  'hugePage',
  'pa',
  'hostMapping',
  'init',
  'populate',
] as const;
/** Backings whose VMAs Linux marks VM_MTE_ALLOWED on an MTE CPU, and that userfaultfd accepts. */
const MEMORY_BACKINGS: readonly Backing[] = ['anon', 'thp', 'shmem', 'hugetlb'];

/**
 * `vmas`: each VMA (readVma), names unique (recorded in `ctx.vmaNames`), ranges not overlapping.
 * Returns them, or undefined after reporting.
 */
export function readVmas(
  ctx: Context,
  v: unknown,
  physical: readonly PhysicalRegion[] | undefined,
): readonly ScenarioVma[] | undefined {
  const { c } = ctx;
  const list = c.array(v, 'vmas');
  if (list === undefined) return undefined;
  const out: (ScenarioVma | undefined)[] = [];
  /** The index of the first VMA of each name. */
  const names = new Map<string, number>();
  list.forEach((item, i) => {
    const path = indexPath('vmas', i);
    const vma = readVma(ctx, item, path, physical);
    const name = isObject(item) && typeof item.name === 'string' ? item.name : undefined;
    if (name !== undefined) {
      const first = names.get(name);
      if (first !== undefined) c.report(`${path}.name`, M.duplicateVmaName(name, indexPath('vmas', first)));
      else {
        ctx.vmaNames.set(name, vma);
        names.set(name, i);
      }
    }
    if (vma !== undefined) {
      // The first overlap only: n copies of one VMA are n issues, not n^2.
      out.some((other, j) => {
        if (
          other !== undefined &&
          vma.start < other.start + other.size &&
          other.start < vma.start + vma.size
        ) {
          c.report(
            path,
            M.overlaps(
              vma.start,
              vma.start + vma.size,
              `${indexPath('vmas', j)} "${other.name}"`,
              other.start,
              other.start + other.size,
            ),
          );
          return true;
        }
        return false;
      });
    }
    out.push(vma);
  });
  return allDefined(out);
}

/**
 * One VMA (of `vmas`, or of an `mmap` step), with the keys of its backing; a PFNMAP's `pa` must
 * lie in `physical`. Returns the Vma, or undefined after reporting.
 */
export function readVma(
  ctx: Context,
  item: unknown,
  path: string,
  physical: readonly PhysicalRegion[] | undefined,
): ScenarioVma | undefined {
  const { c, page, granule } = ctx;
  const obj = c.object(item, path, { required: VMA_REQUIRED, optional: VMA_OPTIONAL });
  if (obj === undefined) return undefined;
  const name = c.string(get(obj, 'name'), `${path}.name`);
  const start = c.value(get(obj, 'start'), `${path}.start`);
  const size = c.size(get(obj, 'size'), `${path}.size`);
  const backing = c.oneOf(get(obj, 'backing'), `${path}.backing`, BACKINGS);
  const prot = c.oneOf(get(obj, 'prot'), `${path}.prot`, PROTS);
  const memType = Object.hasOwn(obj, 'memType')
    ? c.oneOf(obj.memType, `${path}.memType`, MEM_TYPES)
    : 'normal';
  let ok = c.aligned(start, page, `${path}.start`, M.granuleWhat(granule));
  ok = c.aligned(size, page, `${path}.size`, M.granuleWhat(granule)) && ok;
  ok = c.end(start, size, path, USER_VA_LIMIT, M.userVaSpace) !== undefined && ok;

  const flags = readVmaFlags(c, obj, path, backing, prot);
  const userfaultfd = Object.hasOwn(obj, 'userfaultfd')
    ? readUserfaultfd(c, obj.userfaultfd, `${path}.userfaultfd`)
    : null;
  if (userfaultfd && backing !== undefined && !MEMORY_BACKINGS.includes(backing)) {
    c.report(`${path}.userfaultfd`, M.userfaultfdBacking(backing));
    ok = false;
  }
  if (memType === 'normal-tagged' && flags !== undefined) {
    const allowed = flags.mteAllowed === 'implied' ? ctx.cpuMte : flags.mteAllowed;
    if (allowed === false) {
      c.report(`${path}.memType`, M.taggedWithoutMte(flags.mteAllowed === 'implied'));
      ok = false;
    }
  }

  // Keys that belong to particular backings.
  const only = (key: string, backings: readonly Backing[]): boolean => {
    if (backing === undefined || !Object.hasOwn(obj, key) || backings.includes(backing)) return true;
    c.report(`${path}.${key}`, M.keyOnlyFor(key, backings, backing));
    return false;
  };
  ok = only('hugePage', ['hugetlb']) && ok;
  ok = only('pa', ['pfnmap', 'mixedmap']) && ok;
  ok = only('hostMapping', ['pfnmap', 'mixedmap']) && ok;

  const init = Object.hasOwn(obj, 'init') ? readInit(c, obj.init, `${path}.init`, name, size, prot) : null;
  const populate = Object.hasOwn(obj, 'populate') ? c.bool(obj.populate, `${path}.populate`) : false;
  if (init === undefined || populate === undefined) ok = false;
  const common = {
    name,
    start,
    size,
    prot,
    memType,
    flags,
    userfaultfd,
    ...(init ? { init } : {}),
    ...(populate ? { populate } : {}),
  };
  if (backing === 'hugetlb') {
    if (!Object.hasOwn(obj, 'hugePage')) {
      c.report(`${path}.hugePage`, M.missingFor(backing));
      return undefined;
    }
    const hugePage = readHugePage(ctx, obj.hugePage, `${path}.hugePage`);
    if (hugePage !== undefined) {
      const what = M.hugePageWhat(hugePage);
      ok = c.aligned(start, hugePage, `${path}.start`, what) && ok;
      ok = c.aligned(size, hugePage, `${path}.size`, what) && ok;
    }
    return ok ? complete<ScenarioVma>({ ...common, backing, hugePage }) : undefined;
  }
  if (backing === 'pfnmap' || backing === 'mixedmap') {
    if (!Object.hasOwn(obj, 'pa')) {
      c.report(`${path}.pa`, M.missingFor(backing));
      return undefined;
    }
    const pa = c.value(obj.pa, `${path}.pa`);
    ok = c.aligned(pa, page, `${path}.pa`, M.granuleWhat(granule)) && ok;
    const hostMapping = Object.hasOwn(obj, 'hostMapping')
      ? c.oneOf(obj.hostMapping, `${path}.hostMapping`, HOST_MAPPINGS)
      : 'page';
    if (pa !== undefined && size !== undefined && physical !== undefined) {
      const end = c.end(pa, size, `${path}.pa`);
      if (end !== undefined && !covered(physical, pa, end)) {
        c.report(`${path}.pa`, M.paNotCovered(pa, end));
        ok = false;
      }
    }
    return ok ? complete<ScenarioVma>({ ...common, backing, pa, hostMapping }) : undefined;
  }
  return ok && backing !== undefined ? complete<ScenarioVma>({ ...common, backing }) : undefined;
}

/**
 * A VMA's `userfaultfd`: the string `"missing"`, or `{ "mode": "missing", "resolve", "copyFrom" }`
 * (defaults `"page"` and `"registration"`). Returns the normalised registration.
 */
function readUserfaultfd(c: Checker, v: unknown, path: string): Userfaultfd | undefined {
  if (typeof v === 'string') {
    const mode = c.oneOf(v, path, ['missing'] as const);
    return mode === undefined ? undefined : { mode, resolve: 'page', copyFrom: 'registration' };
  }
  const obj = c.object(
    v,
    path,
    { required: ['mode'], optional: ['resolve', 'copyFrom'] },
    M.userfaultfdShape,
  );
  if (obj === undefined) return undefined;
  const mode = c.oneOf(get(obj, 'mode'), `${path}.mode`, ['missing'] as const);
  const resolve = Object.hasOwn(obj, 'resolve')
    ? c.oneOf(obj.resolve, `${path}.resolve`, UFFD_RESOLVES)
    : 'page';
  const copyFrom = Object.hasOwn(obj, 'copyFrom')
    ? c.oneOf(obj.copyFrom, `${path}.copyFrom`, UFFD_COPY_FROMS)
    : 'registration';
  return complete<Userfaultfd>({ mode, resolve, copyFrom });
}

function readHugePage(ctx: Context, v: unknown, path: string): number | undefined {
  const n = ctx.c.value(v, path);
  if (n === undefined || ctx.granule === undefined) return undefined;
  const sizes = HUGETLB_SIZES[ctx.granule];
  if (sizes.includes(n)) return n;
  ctx.c.report(path, M.hugePageSize(ctx.granule, sizes));
  return undefined;
}

function readVmaFlags(
  c: Checker,
  obj: Obj,
  path: string,
  backing: Backing | undefined,
  prot: Prot | undefined,
): VmaFlags | undefined {
  const given = Object.hasOwn(obj, 'flags') ? c.flags(obj.flags, `${path}.flags`, VMA_FLAG_NAMES) : new Set();
  if (given === undefined) return undefined;
  let ok = true;
  for (const [yes, no] of [
    ['maywrite', 'no-maywrite'],
    ['mte-allowed', 'no-mte-allowed'],
  ] as const) {
    if (given.has(yes) && given.has(no)) {
      c.report(`${path}.flags`, M.flagsContradict(yes, no));
      ok = false;
    }
  }
  if (!ok || prot === undefined || backing === undefined) return undefined;
  return {
    shared: given.has('shared'),
    maywrite: given.has('maywrite') || (prot.includes('w') && !given.has('no-maywrite')),
    mteAllowed: given.has('mte-allowed')
      ? true
      : given.has('no-mte-allowed')
        ? false
        : MEMORY_BACKINGS.includes(backing)
          ? 'implied'
          : false,
    allowAnyUncached: given.has('allow-any-uncached'),
    io: given.has('io'),
  };
}

/** Returns whether `[start, end)` lies entirely inside the union of the regions. */
function covered(regions: readonly PhysicalRegion[], start: number, end: number): boolean {
  let at = start;
  const sorted = [...regions].sort((a, b) => a.base - b.base);
  for (const r of sorted) {
    if (r.base <= at && at < r.base + r.size) at = r.base + r.size;
    if (at >= end) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Memslots, which steps may add and delete: the tracker follows the set of slots through the run.

interface SlotState {
  /** Where the slot was created (`memslots[1]`, `steps[4].memslot`). */
  readonly origin: string;
  /** The guest physical range, or undefined if the slot's own definition was invalid. */
  readonly range: { readonly gpa: number; readonly end: number } | undefined;
  logDirty: boolean;
}

/** The set of live memslots as the file builds it: `memslots`, then each step that adds or deletes one. */
export class SlotTracker {
  readonly ctx: Context;
  readonly live = new Map<number, SlotState>();
  /** Slots deleted so far, with the path of the step that deleted them. */
  readonly deleted = new Map<number, string>();

  constructor(ctx: Context) {
    this.ctx = ctx;
  }

  /** Add a slot if its id is free and its range overlaps no live slot. */
  add(
    id: number | undefined,
    memslot: ScenarioMemslot | undefined,
    origin: string,
    logDirty: boolean,
  ): boolean {
    const { c } = this.ctx;
    if (id === undefined) return false;
    const existing = this.live.get(id);
    if (existing !== undefined) {
      c.report(`${origin}.slot`, M.slotExists(id, existing.origin));
      return false;
    }
    const range = memslot === undefined ? undefined : { gpa: memslot.gpa, end: memslot.gpa + memslot.size };
    let ok = true;
    if (range !== undefined) {
      for (const [otherId, other] of this.live) {
        // The first overlap only: n copies of one slot are n issues, not n^2.
        if (!ok) break;
        if (other.range !== undefined && range.gpa < other.range.end && other.range.gpa < range.end) {
          c.report(
            origin,
            M.overlaps(
              range.gpa,
              range.end,
              `slot ${otherId} (${other.origin})`,
              other.range.gpa,
              other.range.end,
            ),
          );
          ok = false;
        }
      }
    }
    this.live.set(id, { origin, range: ok ? range : undefined, logDirty });
    this.deleted.delete(id);
    return ok;
  }

  /** The live slot `id`, or undefined after reporting that it does not exist. */
  find(id: number, path: string): SlotState | undefined {
    const state = this.live.get(id);
    if (state === undefined) this.ctx.c.report(path, M.noSuchSlot(id, this.deleted.get(id)));
    return state;
  }
}

const MEMSLOT_SHAPE: Shape = {
  required: ['slot', 'gpa', 'size'],
  optional: ['vma', 'offset', 'flags', 'hva'],
};

/**
 * One memslot (of `memslots`, or of a `memslot` step), by VMA and offset or by hva. Returns its id
 * (when readable) and the Memslot (undefined after reporting); the caller adds it to the tracker.
 */
export function readMemslot(
  ctx: Context,
  v: unknown,
  path: string,
): { id: number | undefined; memslot: ScenarioMemslot | undefined } {
  const { c, page, granule } = ctx;
  const obj = c.object(v, path, MEMSLOT_SHAPE);
  if (obj === undefined) return { id: undefined, memslot: undefined };
  const id = c.integer(get(obj, 'slot'), `${path}.slot`, 0, MAX_SLOT_ID, M.slotIdLimit);
  const gpa = c.value(get(obj, 'gpa'), `${path}.gpa`);
  const size = c.size(get(obj, 'size'), `${path}.size`);
  // Either a VMA (and offset), or a host virtual range that may span several VMAs and holes.
  const byHva = Object.hasOwn(obj, 'hva');
  if (byHva && (Object.hasOwn(obj, 'vma') || Object.hasOwn(obj, 'offset')))
    c.report(`${path}.hva`, M.memslotVmaOrHva);
  else if (!byHva && !Object.hasOwn(obj, 'vma')) c.report(`${path}.vma`, M.memslotNeedsVmaOrHva);
  const hva = byHva ? c.value(obj.hva, `${path}.hva`) : undefined;
  const vmaName = byHva ? undefined : c.string(get(obj, 'vma'), `${path}.vma`);
  const offset = Object.hasOwn(obj, 'offset') ? c.value(obj.offset, `${path}.offset`) : 0;
  const flags = Object.hasOwn(obj, 'flags')
    ? c.flags(obj.flags, `${path}.flags`, MEMSLOT_FLAG_NAMES)
    : new Set<string>();
  let ok = c.aligned(gpa, page, `${path}.gpa`, M.granuleWhat(granule));
  ok = c.aligned(size, page, `${path}.size`, M.granuleWhat(granule)) && ok;
  ok = c.aligned(offset, page, `${path}.offset`, M.granuleWhat(granule)) && ok;
  ok = c.end(gpa, size, path) !== undefined && ok;
  let userspaceAddr: number | undefined;
  if (byHva) {
    ok = hva !== undefined && !Object.hasOwn(obj, 'vma') && !Object.hasOwn(obj, 'offset') && ok;
    ok = c.aligned(hva, page, `${path}.hva`, M.granuleWhat(granule)) && ok;
    ok = c.end(hva, size, `${path}.hva`, USER_VA_LIMIT, M.userVaSpace) !== undefined && ok;
    userspaceAddr = hva;
  } else if (vmaName !== undefined) {
    if (!ctx.vmaNames.has(vmaName)) {
      c.report(`${path}.vma`, M.noSuchVma(vmaName, [...ctx.vmaNames.keys()]));
      ok = false;
    }
    const vma = ctx.vmaNames.get(vmaName);
    if (vma !== undefined && offset !== undefined && size !== undefined) {
      if (offset > vma.size || size > vma.size - offset) {
        c.report(`${path}.size`, M.beyondVma(offset, size, vma.name, vma.size));
        ok = false;
      } else userspaceAddr = vma.start + offset;
    }
  }
  const memslot =
    ok && flags !== undefined
      ? complete<ScenarioMemslot>({
          slot: id,
          gpa,
          size,
          vma: byHva ? null : vmaName,
          offset: byHva ? 0 : offset,
          userspaceAddr,
          flags: { logDirty: flags.has('log-dirty'), readonly: flags.has('readonly') },
        })
      : undefined;
  return { id, memslot };
}

/** `memslots`: each one read and added to `slots`. Returns them, or undefined after reporting. */
export function readMemslots(
  ctx: Context,
  v: unknown,
  slots: SlotTracker,
): readonly ScenarioMemslot[] | undefined {
  const list = ctx.c.array(v, 'memslots');
  if (list === undefined) return undefined;
  const out = list.map((item, i) => {
    const path = indexPath('memslots', i);
    const { id, memslot } = readMemslot(ctx, item, path);
    const added = slots.add(id, memslot, path, memslot?.flags.logDirty ?? false);
    return added ? memslot : undefined;
  });
  return allDefined(out);
}

/**
 * A VMA's `init`: `[{ offset, u64 } | { offset, hex }]`, bytes the VMM writes before the run.
 * Returns the entries, or undefined after reporting.
 */
function readInit(
  c: Checker,
  v: unknown,
  path: string,
  name: string | undefined,
  size: number | undefined,
  prot: Prot | undefined,
): readonly VmaInit[] | undefined {
  const list = c.array(v, path);
  if (list === undefined) return undefined;
  if (prot !== undefined && !prot.includes('w')) {
    c.report(path, M.vmmWriteNeedsWrite(name ?? '?'));
    return undefined;
  }
  const out: (VmaInit | undefined)[] = list.map((item, i) => {
    const ipath = indexPath(path, i);
    const obj = c.object(item, ipath, { required: ['offset'], optional: ['u64', 'hex'] }, M.initShape);
    if (obj === undefined) return undefined;
    const offset = c.value(get(obj, 'offset'), `${ipath}.offset`);
    const bytes = readWriteBytes(c, obj, ipath);
    if (offset === undefined || bytes === undefined) return undefined;
    if (size !== undefined && (offset > size || bytes.length > size - offset)) {
      c.report(`${ipath}.offset`, M.bytesBeyondVma(offset, bytes.length, name ?? '?', size));
      return undefined;
    }
    return { offset, bytes };
  });
  return allDefined(out);
}

/**
 * The `cpu` keys that are not host features: `dczvaBytes`, `dzp`, `atUpdatesAf`. Returns null
 * when none is given, the options (defaults filled in) otherwise, or undefined after reporting.
 */
export function readCpuOptions(c: Checker, v: unknown): CpuOptions | null | undefined {
  if (!isObject(v) || !CPU_OPTION_KEYS.some((k) => Object.hasOwn(v, k))) return null;
  let dczvaBytes: number | undefined = 64;
  if (Object.hasOwn(v, 'dczvaBytes')) {
    const n = c.value(v.dczvaBytes, 'cpu.dczvaBytes');
    dczvaBytes = n !== undefined && n >= 4 && n <= 2048 && (n & (n - 1)) === 0 ? n : undefined;
    if (n !== undefined && dczvaBytes === undefined) c.report('cpu.dczvaBytes', M.dczvaBytes);
  }
  const dzp = Object.hasOwn(v, 'dzp') ? c.bool(v.dzp, 'cpu.dzp') : false;
  const atUpdatesAf = Object.hasOwn(v, 'atUpdatesAf') ? c.bool(v.atUpdatesAf, 'cpu.atUpdatesAf') : false;
  return complete<CpuOptions>({ dczvaBytes, dzp, atUpdatesAf });
}
