/**
 * Scenario validation (docs/scenario.md): from the JSON value of a scenario file to a Scenario
 * with every default applied.
 *
 * All checking happens here, before anything runs. The checker never stops at the first problem:
 * it collects every issue with its key path (`vmas[2].backing`) and throws one ScenarioError.
 * The rule for what is rejected here and what is left to the run: what the file itself gets
 * wrong (types, enum values, alignment, overlaps, references to names that do not exist, and the
 * checks KVM's generic kvm_set_memory_region() would make) is rejected here; what the modelled
 * arm64 code decides (kvm_arch_prepare_memory_region() refusals, fault outcomes) is an output of
 * the run, so a file that provokes it is valid.
 */

import {
  ACCESS_KINDS,
  BACKINGS,
  CPU_FEATURES,
  CPU_OPTIONAL_FEATURES,
  CPU_OPTION_KEYS,
  CPU_PROFILES,
  DIRTY_LOG_OPS,
  GRANULE_BYTES,
  GRANULES,
  GUEST_APS,
  HOST_MAPPINGS,
  HUGETLB_SIZES,
  KERNELS,
  MAX_SLOT_ID,
  MEM_TYPES,
  MEMSLOT_FLAG_NAMES,
  MIN_IPA_BITS,
  MMIO_WRITES,
  ON_ERRORS,
  PA_BITS,
  PHYS_TYPES,
  PROTS,
  RACES,
  STEP_KINDS,
  TOUCH_ORDERS,
  UFFD_COPY_FROMS,
  UFFD_RESOLVES,
  USER_VA_LIMIT,
  VMA_FLAG_NAMES,
} from './types.js';
import type {
  CpuOptions,
  VmaInit,
  AccessKind,
  AddressSpace,
  Backing,
  CpuFeatures,
  Granule,
  GuestConfig,
  GuestMapping,
  GuestStage1,
  Memslot,
  PhysicalRegion,
  Prot,
  Scenario,
  ScenarioCpu,
  Step,
  Userfaultfd,
  Vma,
  VmaFlags,
  VmConfig,
} from './types.js';
import { tryParseValue, VALUE_LIMIT } from './values.js';
import { NO_CPU_FEATURES, kvmIpaLimitBits, kvmLpa2IsEnabled } from '../mmu/cpu.js';
import { indexPath, keyPath, M, parentPath, ScenarioError } from './errors.js';
import { GuestStage1 as Stage1Builder, stage1StartLevel } from '../mmu/stage1.js';
import type { ScenarioIssue } from './errors.js';

/**
 * Validate and normalise a scenario given as a JSON value (the result of JSON.parse, or an
 * object built in code with the same shape as the file).
 *
 * Returns the Scenario; throws a ScenarioError listing every problem found.
 */
export function parseScenario(input: unknown): Scenario {
  const { scenario, issues } = check(input);
  if (issues.length > 0 || scenario === undefined) throw new ScenarioError(issues);
  return scenario;
}

/**
 * Parse the text of a scenario file. A JSON syntax error becomes a ScenarioError with the line and
 * column of the fault; validation issues carry the line and column of the key they name, and
 * a key given twice in one object (which JSON.parse would silently resolve) is an issue too.
 *
 * Returns the Scenario; throws a ScenarioError listing every problem found, in file order.
 */
export function parseScenarioText(text: string): Scenario {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let input: unknown;
  try {
    input = JSON.parse(source);
  } catch (e) {
    const scan = scanJson(source, false);
    if (scan.ok) throw new ScenarioError([{ path: '', message: M.jsonSyntax((e as Error).message) }]);
    throw new ScenarioError([
      { path: '', message: M.jsonSyntax(scan.message), ...lineColumns(source)(scan.offset) },
    ]);
  }
  const scan = scanJson(source, true);
  const { scenario, issues } = check(input);
  const all: ScenarioIssue[] = [];
  const lineColumn = lineColumns(source);
  if (scan.ok) {
    for (const d of scan.duplicates)
      all.push({ path: d.path, message: M.duplicateKey, ...lineColumn(d.offset) });
    for (const issue of issues) {
      const offset = findOffset(scan.positions, issue.path);
      all.push(offset === undefined ? issue : { ...issue, ...lineColumn(offset) });
    }
    // Stable sort into file order; issues about the whole file (no position) stay first.
    all.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  } else {
    all.push(...issues);
  }
  if (all.length > 0 || scenario === undefined) throw new ScenarioError(all);
  return scenario;
}

// ---------------------------------------------------------------------------------------------
// Primitive readers. Each returns undefined exactly when it has reported an issue, or when the
// value is absent because it is a required key that Checker.object() already reported missing.

type Obj = Readonly<Record<string, unknown>>;

/** A record whose fields may still be undefined while its parts are checked. */
type Maybe<T> = { -readonly [K in keyof T]: T[K] | undefined };

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function get(obj: Obj, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** Returns `o` once none of its fields is undefined, else undefined (an issue was reported). */
function complete<T extends object>(o: Maybe<T>): T | undefined {
  return Object.values(o).some((x) => x === undefined) ? undefined : (o as T);
}

function includes<T>(options: readonly T[], v: unknown): v is T {
  return (options as readonly unknown[]).includes(v);
}

interface Shape {
  readonly required: readonly string[];
  readonly optional?: readonly string[];
}

class Checker {
  readonly issues: ScenarioIssue[] = [];

  report(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  object(v: unknown, path: string, shape: Shape, notObject: string = M.expectedObject): Obj | undefined {
    if (v === undefined) return undefined;
    if (!isObject(v)) {
      this.report(path, notObject);
      return undefined;
    }
    const allowed = [...shape.required, ...(shape.optional ?? [])];
    for (const key of Object.keys(v)) {
      if (!allowed.includes(key)) this.report(keyPath(path, key), M.unknownKey(key, allowed));
    }
    for (const key of shape.required) {
      if (!Object.hasOwn(v, key)) this.report(keyPath(path, key), M.missingKey);
    }
    return v;
  }

  array(v: unknown, path: string): readonly unknown[] | undefined {
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.report(path, M.expectedArray);
      return undefined;
    }
    return v;
  }

  oneOf<T extends string | number>(v: unknown, path: string, options: readonly T[]): T | undefined {
    if (v === undefined) return undefined;
    if (includes(options, v)) return v;
    this.report(path, M.oneOf(options));
    return undefined;
  }

  bool(v: unknown, path: string): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'boolean') return v;
    this.report(path, M.expectedBoolean);
    return undefined;
  }

  string(v: unknown, path: string): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'string' && v.length > 0) return v;
    this.report(path, M.expectedName);
    return undefined;
  }

  integer(v: unknown, path: string, min: number, max: number, why?: string): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    this.report(path, M.expectedInteger(min, max, why));
    return undefined;
  }

  /** An address or size (values.ts). */
  value(v: unknown, path: string): number | undefined {
    if (v === undefined) return undefined;
    const result = tryParseValue(v);
    if (result.ok) return result.value;
    this.report(path, result.message);
    return undefined;
  }

  /** A size: a value that is not zero. */
  size(v: unknown, path: string): number | undefined {
    const n = this.value(v, path);
    if (n === 0) {
      this.report(path, M.zero);
      return undefined;
    }
    return n;
  }

  /** Reports unless `n` is a multiple of `align`; `what` names the alignment ("4K granule"). */
  aligned(n: number | undefined, align: number | undefined, path: string, what: string): boolean {
    if (n === undefined || align === undefined || n % align === 0) return true;
    this.report(path, M.unaligned(n, what));
    return false;
  }

  /**
   * The end of `[start, start + size)`, or undefined (reported) if it ends beyond `limit`, which
   * `what` names (`M.paSpace(48)`); by default, 2^53.
   */
  end(
    start: number | undefined,
    size: number | undefined,
    path: string,
    limit = VALUE_LIMIT,
    what?: string,
  ): number | undefined {
    if (start === undefined || size === undefined) return undefined;
    // Compared this way round so that no intermediate result exceeds 2^53.
    if (start > limit || size > limit - start) {
      this.report(path, what === undefined ? M.rangeTooHigh(start, size) : M.rangeBeyond(start, size, what));
      return undefined;
    }
    return start + size;
  }

  /** A list of distinct names from `options`, reported per element. Returns the set given. */
  flags<T extends string>(v: unknown, path: string, options: readonly T[]): Set<T> | undefined {
    const list = this.array(v, path);
    if (list === undefined) return undefined;
    const set = new Set<T>();
    let ok = true;
    list.forEach((item, i) => {
      const flag = this.oneOf(item, indexPath(path, i), options);
      if (flag === undefined) ok = false;
      else if (set.has(flag)) {
        this.report(indexPath(path, i), M.flagTwice(flag));
        ok = false;
      } else set.add(flag);
    });
    return ok ? set : undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The scenario, section by section.

const TOP_REQUIRED = ['cpu', 'granule', 'physical', 'vmas', 'memslots', 'steps'] as const;
const TOP_OPTIONAL = ['description', 'kernel', 'paBits', 'vm', 'guest', 'onError'] as const;

/** What is known about the scenario while its later sections are checked. */
interface Context {
  readonly c: Checker;
  readonly granule: Granule | undefined;
  /** Bytes per host page, when the granule is valid. */
  readonly page: number | undefined;
  readonly paBits: number | undefined;
  /** The CPU's MTE, when the file fixes it (explicitly, or as a profile override). */
  readonly cpuMte: boolean | undefined;
  /** Every VMA name declared, valid VMA or not (so one bad VMA does not cascade). */
  readonly vmaNames: Map<string, Vma | undefined>;
  /** True when guest stage 1 is on: accesses name VAs. */
  readonly stage1: boolean;
  /** The physical memory map once read (an `mmap` step's pfnmap VMA is checked against it). */
  physical?: readonly PhysicalRegion[] | undefined;
}

function check(input: unknown): { scenario: Scenario | undefined; issues: readonly ScenarioIssue[] } {
  const c = new Checker();
  const root = c.object(input, '', { required: TOP_REQUIRED, optional: TOP_OPTIONAL }, M.expectedScenario);
  if (root === undefined) return { scenario: undefined, issues: c.issues };

  const description = Object.hasOwn(root, 'description') ? readDescription(c, root.description) : null;
  const kernel = Object.hasOwn(root, 'kernel') ? c.oneOf(root.kernel, 'kernel', KERNELS) : '6.17';
  const granule = c.oneOf(get(root, 'granule'), 'granule', GRANULES);
  const paBits = Object.hasOwn(root, 'paBits') ? c.oneOf(root.paBits, 'paBits', PA_BITS) : 48;
  const cpu = readCpu(c, get(root, 'cpu'));
  const cpuMte = cpu === undefined ? undefined : cpu.mte;
  // kvm_set_ipa_limit(): beyond 48 bits with 4K/16K pages needs LPA2.
  const lpa2 = cpu !== undefined && cpu.lpa2 === true;
  const ipaLimit =
    paBits === undefined || granule === undefined
      ? paBits
      : kvmIpaLimitBits(
          paBits,
          GRANULE_BYTES[granule],
          kvmLpa2IsEnabled({ ...NO_CPU_FEATURES, lpa2 }, GRANULE_BYTES[granule]),
        );
  const vm = readVm(c, get(root, 'vm'), ipaLimit, cpuMte);
  const page = granule === undefined ? undefined : GRANULE_BYTES[granule];
  const guestValue = get(root, 'guest');
  const ctx: Context = {
    c,
    granule,
    page,
    paBits,
    cpuMte,
    vmaNames: new Map(),
    stage1: guestValue !== undefined,
  };
  const physical = readPhysical(ctx, get(root, 'physical'));
  ctx.physical = physical;
  const vmas = readVmas(ctx, get(root, 'vmas'), physical);
  const slots = new SlotTracker(ctx);
  const memslots = readMemslots(ctx, get(root, 'memslots'), slots);
  const guest = guestValue === undefined ? null : readGuest(ctx, guestValue, memslots, vm?.ipaBits);
  const steps = readSteps(ctx, get(root, 'steps'), slots);

  const scenario = complete<Scenario>({
    description,
    kernel,
    cpu,
    granule,
    paBits,
    physical,
    vmas,
    vm,
    memslots,
    guest,
    steps,
  });
  // onError is kept only when given (absent means "continue").
  const onError = Object.hasOwn(root, 'onError') ? c.oneOf(root.onError, 'onError', ON_ERRORS) : undefined;
  const cpuOptions = readCpuOptions(c, get(root, 'cpu'));
  if (scenario !== undefined && cpuOptions === undefined) return { scenario: undefined, issues: c.issues };
  if (scenario !== undefined && (onError !== undefined || cpuOptions !== null))
    return {
      scenario: {
        ...scenario,
        ...(onError !== undefined ? { onError } : {}),
        ...(cpuOptions !== null ? { cpuOptions } : {}),
      },
      issues: c.issues,
    };
  return { scenario, issues: c.issues };
}

function readDescription(c: Checker, v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  c.report('description', M.expectedString);
  return undefined;
}

function readCpu(c: Checker, v: unknown): ScenarioCpu | undefined {
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

function readVm(
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

function readPhysical(ctx: Context, v: unknown): readonly PhysicalRegion[] | undefined {
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

function readVmas(
  ctx: Context,
  v: unknown,
  physical: readonly PhysicalRegion[] | undefined,
): readonly Vma[] | undefined {
  const { c } = ctx;
  const list = c.array(v, 'vmas');
  if (list === undefined) return undefined;
  const out: (Vma | undefined)[] = [];
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

function readVma(
  ctx: Context,
  item: unknown,
  path: string,
  physical: readonly PhysicalRegion[] | undefined,
): Vma | undefined {
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
    return ok ? complete<Vma>({ ...common, backing, hugePage }) : undefined;
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
    return ok ? complete<Vma>({ ...common, backing, pa, hostMapping }) : undefined;
  }
  return ok && backing !== undefined ? complete<Vma>({ ...common, backing }) : undefined;
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

class SlotTracker {
  readonly ctx: Context;
  readonly live = new Map<number, SlotState>();
  /** Slots deleted so far, with the path of the step that deleted them. */
  readonly deleted = new Map<number, string>();

  constructor(ctx: Context) {
    this.ctx = ctx;
  }

  /** Add a slot if its id is free and its range overlaps no live slot. */
  add(id: number | undefined, memslot: Memslot | undefined, origin: string, logDirty: boolean): boolean {
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

function readMemslot(
  ctx: Context,
  v: unknown,
  path: string,
): { id: number | undefined; memslot: Memslot | undefined } {
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
      ? complete<Memslot>({
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

function readMemslots(ctx: Context, v: unknown, slots: SlotTracker): readonly Memslot[] | undefined {
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

// ---------------------------------------------------------------------------------------------
// Guest stage 1.

const STAGE1_SHAPE: Shape = {
  required: ['granule', 'tables', 'mair', 'mappings'],
  optional: ['ha', 'hd', 'vaBits', 'ips', 'blocks'],
};
const MAPPING_SHAPE: Shape = { required: ['va', 'ipa', 'size', 'attrIndx', 'ap'], optional: ['af', 'xn'] };
const ALIAS_SHAPE: Shape = { required: ['va', 'leafTableOf', 'attrIndx', 'ap'], optional: ['af', 'xn'] };
/** TCR_EL1.IPS sizes a stage-1 output may have without LPA (PARange codes 0 to 5). */
const STAGE1_IPS = [32, 36, 40, 42, 44, 48] as const;

function readGuest(
  ctx: Context,
  v: unknown,
  memslots: readonly Memslot[] | undefined,
  ipaBits: number | undefined,
): GuestConfig | undefined {
  const { c } = ctx;
  const obj = c.object(v, 'guest', { required: ['stage1'] });
  if (obj === undefined) return undefined;
  const s1 = c.object(get(obj, 'stage1'), 'guest.stage1', STAGE1_SHAPE);
  if (s1 === undefined) return undefined;
  const p = 'guest.stage1';
  const granule = c.oneOf(get(s1, 'granule'), `${p}.granule`, GRANULES);
  const align = granule === undefined ? undefined : GRANULE_BYTES[granule];
  const what = M.stage1GranuleWhat(granule);
  const tables = c.value(get(s1, 'tables'), `${p}.tables`);
  let ok = c.aligned(tables, align, `${p}.tables`, what);
  if (
    tables !== undefined &&
    memslots !== undefined &&
    !memslots.some((s) => s.gpa <= tables && tables < s.gpa + s.size)
  ) {
    c.report(`${p}.tables`, M.tablesOutsideMemslots(tables));
    ok = false;
  }
  const mair = readMair(c, get(s1, 'mair'), `${p}.mair`);
  const ha = Object.hasOwn(s1, 'ha') ? c.bool(s1.ha, `${p}.ha`) : false;
  const hd = Object.hasOwn(s1, 'hd') ? c.bool(s1.hd, `${p}.hd`) : false;
  const blocks = Object.hasOwn(s1, 'blocks') ? c.bool(s1.blocks, `${p}.blocks`) : false;
  const vaBits = Object.hasOwn(s1, 'vaBits') ? c.integer(s1.vaBits, `${p}.vaBits`, 25, 48, M.vaBits) : 48;
  const ipsLimit = Math.min(ipaBits ?? 48, 48);
  let ips: number | undefined = ipsLimit;
  if (Object.hasOwn(s1, 'ips')) {
    ips = includes(STAGE1_IPS, s1.ips) && s1.ips <= ipsLimit ? s1.ips : undefined;
    if (ips === undefined) c.report(`${p}.ips`, M.ips(ipsLimit));
  }
  if (blocks === undefined || vaBits === undefined || ips === undefined) ok = false;
  const vaLimit = 2 ** (vaBits ?? 48);
  const ipaLimit = 2 ** (ips ?? 48);
  const list = c.array(get(s1, 'mappings'), `${p}.mappings`);
  const out: (GuestMapping | undefined)[] = [];
  /** The VA range each valid entry maps (an alias maps one granule page). */
  const ranges: ({ va: number; end: number } | undefined)[] = [];
  list?.forEach((item, i) => {
    const path = indexPath(`${p}.mappings`, i);
    const alias = isObject(item) && Object.hasOwn(item, 'leafTableOf');
    const m = c.object(item, path, alias ? ALIAS_SHAPE : MAPPING_SHAPE);
    if (m === undefined) {
      ranges.push(undefined);
      return out.push(undefined);
    }
    const va = c.value(get(m, 'va'), `${path}.va`);
    const attrIndx = c.integer(get(m, 'attrIndx'), `${path}.attrIndx`, 0, 7, M.attrIndx);
    const ap = c.oneOf(get(m, 'ap'), `${path}.ap`, GUEST_APS);
    const af = Object.hasOwn(m, 'af') ? c.bool(m.af, `${path}.af`) : true;
    const xn = Object.hasOwn(m, 'xn') ? c.bool(m.xn, `${path}.xn`) : false;
    let mOk = c.aligned(va, align, `${path}.va`, what);
    let size: number | undefined;
    let target: { ipa: number } | { leafTableOf: number } | undefined;
    if (alias) {
      size = align;
      const of = c.value(get(m, 'leafTableOf'), `${path}.leafTableOf`);
      if (of !== undefined && !ranges.some((r) => r !== undefined && r.va <= of && of < r.end)) {
        c.report(`${path}.leafTableOf`, M.leafTableOfUnmapped(of));
        mOk = false;
      }
      target = of === undefined ? undefined : { leafTableOf: of };
    } else {
      const ipa = c.value(get(m, 'ipa'), `${path}.ipa`);
      size = c.size(get(m, 'size'), `${path}.size`);
      mOk = c.aligned(ipa, align, `${path}.ipa`, what) && mOk;
      mOk = c.aligned(size, align, `${path}.size`, what) && mOk;
      mOk = c.end(ipa, size, path, ipaLimit, M.stage1IpaSpace(ips ?? 48)) !== undefined && mOk;
      target = ipa === undefined ? undefined : { ipa };
    }
    const vaEnd = c.end(va, size, path, vaLimit, M.stage1VaSpace(vaBits ?? 48));
    if (va !== undefined && vaEnd !== undefined) {
      // The first overlap only: n copies of one mapping are n issues, not n^2.
      ranges.some((other, j) => {
        if (other !== undefined && va < other.end && other.va < vaEnd) {
          c.report(path, M.overlaps(va, vaEnd, indexPath('mappings', j), other.va, other.end));
          mOk = false;
          return true;
        }
        return false;
      });
    } else mOk = false;
    ranges.push(va !== undefined && vaEnd !== undefined ? { va, end: vaEnd } : undefined);
    const common = { va, attrIndx, ap, af, xn };
    if (!mOk || target === undefined) return out.push(undefined);
    out.push(
      'ipa' in target
        ? complete<GuestMapping>({ ...common, ipa: target.ipa, size })
        : complete<GuestMapping>({ ...common, leafTableOf: target.leafTableOf }),
    );
  });
  const mappings = list === undefined ? undefined : allDefined(out);
  // vaBits, ips and blocks appear in the result only when the file gives them (defaults applied
  // by stage1Builder), so a scenario without them parses as it did before they existed.
  const stage1 = ok
    ? complete<GuestStage1>({
        granule,
        tables,
        mair,
        ha,
        hd,
        mappings,
        ...(Object.hasOwn(s1, 'vaBits') ? { vaBits } : {}),
        ...(Object.hasOwn(s1, 'ips') ? { ips } : {}),
        ...(Object.hasOwn(s1, 'blocks') ? { blocks } : {}),
      })
    : undefined;
  if (stage1 === undefined) return undefined;
  // The builder writes every descriptor: a mapping of a terabyte in pages would take minutes
  // and gigabytes before any other check could refuse it.
  const leaves = stage1Leaves(stage1, MAX_STAGE1_LEAVES);
  if (leaves > MAX_STAGE1_LEAVES) {
    c.report(`${p}.mappings`, M.stage1TooLarge(MAX_STAGE1_LEAVES));
    return undefined;
  }
  // The builder's layout is deterministic: every table page it will allocate must be guest
  // memory (a memslot), or the VMM could not write it there.
  if (memslots !== undefined) {
    const pages = stage1Builder(stage1).tablePages;
    const outside = pages.find((t) => !memslots.some((s) => s.gpa <= t.ipa && t.ipa < s.gpa + s.size));
    if (outside !== undefined) {
      c.report(`${p}.tables`, M.stage1TablesOutsideMemslots(outside.ipa, pages.length));
      return undefined;
    }
  }
  return { stage1 };
}

/** The most leaf descriptors a guest stage 1 may need (2^20: 4 GiB in 4K pages, or far more with blocks). */
const MAX_STAGE1_LEAVES = 2 ** 20;

/**
 * The leaf descriptors the stage-1 builder writes for `g`, counted as it chooses them (a block
 * where `blocks` allows one and the range is aligned, else a page), stopping once past `limit`.
 */
function stage1Leaves(g: GuestStage1, limit: number): number {
  const granule = GRANULE_BYTES[g.granule];
  const shift = Math.log2(granule);
  const size = (level: number): number => 2 ** ((shift - 3) * (3 - level) + shift);
  const start = stage1StartLevel(granule, g.vaBits ?? 48);
  const blockLevels = (shift === 12 ? [1, 2] : [2]).filter((l) => l >= start);
  let n = 0;
  for (const m of g.mappings) {
    if (!('ipa' in m)) {
      n++;
      continue;
    }
    let va = m.va;
    let ipa = m.ipa;
    const end = m.va + m.size;
    while (va < end && n <= limit) {
      let step = granule;
      if (g.blocks === true) {
        for (const l of blockLevels) {
          const b = size(l);
          if (va % b === 0 && ipa % b === 0 && end - va >= b) {
            step = b;
            break;
          }
        }
      }
      // Pages until the next block boundary come in one go.
      if (step === granule) {
        const next = g.blocks === true ? Math.min(end, (Math.floor(va / size(2)) + 1) * size(2)) : end;
        const pages = Math.max(1, Math.floor((next - va) / granule));
        n += pages;
        va += pages * granule;
        ipa += pages * granule;
      } else {
        n++;
        va += step;
        ipa += step;
      }
    }
    if (n > limit) break;
  }
  return n;
}

/** The stage-1 builder (src/mmu/stage1.ts) for a validated guest stage 1. Returns it, tables built. */
export function stage1Builder(g: GuestStage1, ips?: number): Stage1Builder {
  return new Stage1Builder({
    granule: GRANULE_BYTES[g.granule] as 4096 | 16384 | 65536,
    tables: g.tables,
    mair: g.mair,
    ha: g.ha,
    hd: g.hd,
    vaBits: g.vaBits ?? 48,
    ips: g.ips ?? ips ?? 48,
    blocks: g.blocks ?? false,
    mappings: g.mappings,
  });
}

// ---------------------------------------------------------------------------------------------
// Values written by the VMM and by the guest (issue 8).

/** A 64-bit value: a hex string of up to 16 digits or a decimal string (underscores allowed), or a safe integer. */
function readU64(c: Checker, v: unknown, path: string): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string' && /^0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*$/.test(v)) {
    const digits = v
      .slice(2)
      .replaceAll('_', '')
      .replace(/^0+(?=.)/, '');
    if (digits.length <= 16) return BigInt('0x' + digits);
  } else if (typeof v === 'string' && /^[0-9]+(?:_[0-9]+)*$/.test(v)) {
    const x = BigInt(v.replaceAll('_', ''));
    if (x < 2n ** 64n) return x;
  } else if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
    return BigInt(v);
  }
  c.report(path, M.u64);
  return undefined;
}

/** Bytes as hex digit pairs (`"a1b2"` is 0xa1 then 0xb2). */
function readHexBytes(c: Checker, v: unknown, path: string): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string' && v.length > 0 && v.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(v)) {
    return Uint8Array.from({ length: v.length / 2 }, (_, i) => parseInt(v.slice(2 * i, 2 * i + 2), 16));
  }
  c.report(path, M.hexBytes);
  return undefined;
}

/** The 8 bytes of a u64, little-endian. */
function u64Bytes(x: bigint): Uint8Array {
  const b = new Uint8Array(8);
  for (let i = 0; i < 8; i++) b[i] = Number((x >> BigInt(8 * i)) & 0xffn);
  return b;
}

/** `{ "u64" }` or `{ "hex" }` of an object already checked for shape: its bytes. */
function readWriteBytes(c: Checker, obj: Obj, path: string): Uint8Array | undefined {
  const hasU64 = Object.hasOwn(obj, 'u64');
  if (hasU64 === Object.hasOwn(obj, 'hex')) {
    c.report(path, M.initOneOf);
    return undefined;
  }
  if (hasU64) {
    const x = readU64(c, obj.u64, `${path}.u64`);
    return x === undefined ? undefined : u64Bytes(x);
  }
  return readHexBytes(c, obj.hex, `${path}.hex`);
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

/** Step `{ "hostWrite": { "vma", "offset", "u64" | "hex" } }`. */
function readHostWrite(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const { c } = ctx;
  const obj = c.object(v, path, { required: ['vma', 'offset'], optional: ['u64', 'hex'] });
  if (obj === undefined) return undefined;
  const name = c.string(get(obj, 'vma'), `${path}.vma`);
  const offset = c.value(get(obj, 'offset'), `${path}.offset`);
  const bytes = readWriteBytes(c, obj, path);
  const vma = findVma(ctx, name, `${path}.vma`);
  if (vma === undefined || name === undefined || offset === undefined || bytes === undefined)
    return undefined;
  if (!vma.prot.includes('w')) {
    c.report(`${path}.vma`, M.vmmWriteNeedsWrite(vma.name));
    return undefined;
  }
  if (offset > vma.size || bytes.length > vma.size - offset) {
    c.report(`${path}.offset`, M.bytesBeyondVma(offset, bytes.length, vma.name, vma.size));
    return undefined;
  }
  return { kind: 'hostWrite', index, vma: name, offset, bytes };
}

/**
 * An access's `value` (write, st-preidx, cas) and `expect` (cas). Returns the fields to add to
 * the step ({} when neither is given), or undefined after reporting.
 */
function readAccessValues(
  c: Checker,
  item: Obj,
  path: string,
  access: AccessKind | undefined,
  address: number | undefined,
): { value?: bigint; expect?: bigint } | undefined {
  const out: { value?: bigint; expect?: bigint } = {};
  let ok = true;
  for (const key of ['value', 'expect'] as const) {
    if (!Object.hasOwn(item, key)) continue;
    const allowed =
      key === 'expect' ? access === 'cas' : access === 'write' || access === 'st-preidx' || access === 'cas';
    if (access !== undefined && !allowed) {
      c.report(keyPath(path, key), M.valueNotFor(key, access));
      ok = false;
      continue;
    }
    const x = readU64(c, item[key], keyPath(path, key));
    if (x === undefined) ok = false;
    else out[key] = x;
  }
  if (
    ok &&
    (out.value !== undefined || out.expect !== undefined) &&
    address !== undefined &&
    address % 8 !== 0
  ) {
    c.report(keyPath(path, Object.hasOwn(item, 'va') ? 'va' : 'ipa'), M.valueUnaligned);
    ok = false;
  }
  return ok ? out : undefined;
}

/**
 * The `cpu` keys that are not host features: `dczvaBytes`, `dzp`, `atUpdatesAf`. Returns null
 * when none is given, the options (defaults filled in) otherwise, or undefined after reporting.
 */
function readCpuOptions(c: Checker, v: unknown): CpuOptions | null | undefined {
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

/**
 * MAIR_EL1 is 64 bits, so beyond a safe-integer number it may be a hex string of up to 16 digits.
 * Returns its eight attribute bytes, Attr0 first.
 */
function readMair(c: Checker, v: unknown, path: string): readonly number[] | undefined {
  if (v === undefined) return undefined;
  let hex: string | undefined;
  if (typeof v === 'string' && /^0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*$/.test(v)) {
    hex = v
      .slice(2)
      .replaceAll('_', '')
      .replace(/^0+(?=.)/, '');
    if (hex.length > 16) hex = undefined;
  } else {
    const result = tryParseValue(v);
    if (result.ok) hex = result.value.toString(16);
  }
  if (hex === undefined) {
    c.report(path, M.mair);
    return undefined;
  }
  const padded = hex.padStart(16, '0');
  const bytes: number[] = [];
  for (let i = 7; i >= 0; i--) bytes.push(parseInt(padded.slice(2 * i, 2 * i + 2), 16));
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Steps.

function readSteps(ctx: Context, v: unknown, slots: SlotTracker): readonly Step[] | undefined {
  const list = ctx.c.array(v, 'steps');
  if (list === undefined) return undefined;
  return allDefined(list.map((item, i) => readStep(ctx, item, i, slots)));
}

function readStep(ctx: Context, item: unknown, index: number, slots: SlotTracker): Step | undefined {
  const { c } = ctx;
  const path = indexPath('steps', index);
  if (!isObject(item)) {
    c.report(path, M.expectedStep);
    return undefined;
  }
  const keys = Object.keys(item);
  const kinds = keys.filter((k) => includes(STEP_KINDS, k));
  if (kinds.length !== 1) {
    if (kinds.length > 1) c.report(path, M.severalStepKinds(kinds));
    else if (keys.length === 1) c.report(keyPath(path, keys[0]!), M.unknownStep(keys[0]!));
    else c.report(path, M.expectedStep);
    return undefined;
  }
  const kind = kinds[0]!;
  if (kind === 'access') return readAccess(ctx, item, index, path);
  const extra = keys.filter((k) => k !== kind);
  for (const k of extra) c.report(keyPath(path, k), M.extraStepKey(kind));
  const sub = keyPath(path, kind);
  const body = item[kind];
  let step: Step | undefined;
  switch (kind) {
    case 'touch':
      step = readTouch(ctx, body, index, sub);
      break;
    case 'hostUnmap':
      step = readHostUnmap(ctx, body, index, sub);
      break;
    case 'hostProtect':
      step = readHostProtect(ctx, body, index, sub);
      break;
    case 'age':
      step = readAge(ctx, body, index, sub);
      break;
    case 'dirtyLog':
      step = readDirtyLog(ctx, body, index, sub, slots);
      break;
    case 'memslot': {
      const { id, memslot } = readMemslot(ctx, body, sub);
      const added = slots.add(id, memslot, sub, memslot?.flags.logDirty ?? false);
      step = added && memslot !== undefined ? { kind, index, memslot } : undefined;
      break;
    }
    case 'deleteMemslot': {
      const id = c.integer(body, sub, 0, MAX_SLOT_ID, M.slotIdLimit);
      if (id !== undefined && slots.find(id, sub) !== undefined) {
        slots.live.delete(id);
        slots.deleted.set(id, path);
        step = { kind, index, slot: id };
      }
      break;
    }
    case 'mmap':
      step = readMmap(ctx, body, index, sub);
      break;
    case 'munmap': {
      // munmap takes the same range as hostUnmap (hugetlb: whole huge pages, as the split
      // of a hugetlb VMA must be, hugetlb_vm_op_split()).
      const range = readHostUnmap(ctx, body, index, sub);
      step = range?.kind === 'hostUnmap' ? { ...range, kind: 'munmap' } : undefined;
      break;
    }
    case 'poison':
      step = readPoison(ctx, body, index, sub);
      break;
    case 'hostWrite':
      step = readHostWrite(ctx, body, index, sub);
      break;
  }
  return extra.length === 0 ? step : undefined;
}

/** `{ "mmap": VMA }`: a new VMA mid-run, which may overlap (replace) existing ones. */
function readMmap(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const vma = readVma(ctx, v, path, ctx.physical);
  const name = isObject(v) && typeof v.name === 'string' ? v.name : undefined;
  if (name !== undefined) {
    if (ctx.vmaNames.has(name)) {
      ctx.c.report(`${path}.name`, M.duplicateVmaName(name, 'an earlier VMA'));
      return undefined;
    }
    ctx.vmaNames.set(name, vma);
  }
  return vma === undefined ? undefined : { kind: 'mmap', index, vma };
}

/** `{ "poison": { "vma", "offset" } }`: memory_failure() on the page backing that byte. */
function readPoison(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const { c } = ctx;
  const obj = c.object(v, path, { required: ['vma', 'offset'] });
  if (obj === undefined) return undefined;
  const name = c.string(get(obj, 'vma'), `${path}.vma`);
  const offset = c.value(get(obj, 'offset'), `${path}.offset`);
  const vma = findVma(ctx, name, `${path}.vma`);
  if (vma === undefined || offset === undefined || name === undefined) return undefined;
  if (vma.backing === 'pfnmap' || vma.backing === 'mixedmap') {
    c.report(`${path}.vma`, M.poisonRawPfn(vma.backing));
    return undefined;
  }
  if (offset >= vma.size) {
    c.report(`${path}.offset`, M.beyondVmaAt(offset, vma.name, vma.size));
    return undefined;
  }
  return { kind: 'poison', index, vma: name, offset };
}

/** The address space accesses use, and the access kind, checked against guest stage 1. */
function readAccessKind(ctx: Context, v: unknown, path: string): AccessKind | undefined {
  const access = ctx.c.oneOf(v, path, ACCESS_KINDS);
  if (access === 'at' && !ctx.stage1) {
    ctx.c.report(path, M.atWithoutStage1);
    return undefined;
  }
  return access;
}

function readAccess(ctx: Context, item: Obj, index: number, path: string): Step | undefined {
  const { c } = ctx;
  const space: AddressSpace = ctx.stage1 ? 'va' : 'ipa';
  const wrong: AddressSpace = ctx.stage1 ? 'ipa' : 'va';
  let ok = true;
  for (const key of Object.keys(item)) {
    if (key === 'access' || key === space || key === 'race' || key === 'value' || key === 'expect') continue;
    c.report(
      keyPath(path, key),
      key === wrong
        ? M.wrongSpace(key, ctx.stage1)
        : M.unknownKey(key, ['access', space, 'race', 'value', 'expect']),
    );
    ok = false;
  }
  const access = readAccessKind(ctx, item.access, `${path}.access`);
  let address: number | undefined;
  if (!Object.hasOwn(item, space)) {
    if (ok) c.report(keyPath(path, space), M.missingKey);
    ok = false;
  } else address = c.value(item[space], keyPath(path, space));
  const race = Object.hasOwn(item, 'race') ? c.oneOf(item.race, `${path}.race`, RACES) : undefined;
  if (Object.hasOwn(item, 'race') && race === undefined) ok = false;
  const values = readAccessValues(c, item, path, access, address);
  if (values === undefined) ok = false;
  return ok && access !== undefined && address !== undefined
    ? { kind: 'access', index, access, space, address, ...(race !== undefined ? { race } : {}), ...values }
    : undefined;
}

function readTouch(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const { c } = ctx;
  const obj = c.object(v, path, {
    required: ['from', 'size', 'stride', 'access'],
    optional: ['order', 'seed'],
  });
  if (obj === undefined) return undefined;
  const from = c.value(get(obj, 'from'), `${path}.from`);
  const size = c.size(get(obj, 'size'), `${path}.size`);
  const stride = c.size(get(obj, 'stride'), `${path}.stride`);
  const access = readAccessKind(ctx, get(obj, 'access'), `${path}.access`);
  const order = Object.hasOwn(obj, 'order')
    ? c.oneOf(obj.order, `${path}.order`, TOUCH_ORDERS)
    : 'sequential';
  const seed = Object.hasOwn(obj, 'seed') ? readSeed(c, obj.seed, `${path}.seed`) : 0;
  const end = c.end(from, size, path);
  if (end === undefined) return undefined;
  const space: AddressSpace = ctx.stage1 ? 'va' : 'ipa';
  return complete<Step>({ kind: 'touch', index, space, from, size, stride, access, order, seed });
}

function readSeed(c: Checker, v: unknown, path: string): number | undefined {
  const n = c.value(v, path);
  if (n === undefined || n <= 0xffff_ffff) return n;
  c.report(path, M.seed);
  return undefined;
}

/** The named VMA, or undefined after reporting that there is none. */
function findVma(ctx: Context, name: string | undefined, path: string): Vma | undefined {
  if (name === undefined) return undefined;
  if (!ctx.vmaNames.has(name)) ctx.c.report(path, M.noSuchVma(name, [...ctx.vmaNames.keys()]));
  return ctx.vmaNames.get(name);
}

function readHostUnmap(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const { c, page, granule } = ctx;
  const obj = c.object(v, path, { required: ['vma', 'offset', 'size'] });
  if (obj === undefined) return undefined;
  const name = c.string(get(obj, 'vma'), `${path}.vma`);
  const offset = c.value(get(obj, 'offset'), `${path}.offset`);
  const size = c.size(get(obj, 'size'), `${path}.size`);
  const vma = findVma(ctx, name, `${path}.vma`);
  if (vma === undefined) return undefined;
  const [align, what] =
    vma.backing === 'hugetlb' ? [vma.hugePage, M.hugePageWhat(vma.hugePage)] : [page, M.granuleWhat(granule)];
  let ok = c.aligned(offset, align, `${path}.offset`, what);
  ok = c.aligned(size, align, `${path}.size`, what) && ok;
  if (offset !== undefined && size !== undefined && (offset > vma.size || size > vma.size - offset)) {
    c.report(`${path}.size`, M.beyondVma(offset, size, vma.name, vma.size));
    ok = false;
  }
  return ok ? complete<Step>({ kind: 'hostUnmap', index, vma: name, offset, size }) : undefined;
}

function readHostProtect(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const { c } = ctx;
  const obj = c.object(v, path, { required: ['vma', 'prot'] });
  if (obj === undefined) return undefined;
  const name = c.string(get(obj, 'vma'), `${path}.vma`);
  const prot = c.oneOf(get(obj, 'prot'), `${path}.prot`, PROTS);
  const vma = findVma(ctx, name, `${path}.vma`);
  if (vma === undefined || prot === undefined) return undefined;
  if (prot.includes('w') && !vma.flags.maywrite) {
    c.report(`${path}.prot`, M.protectNeedsMaywrite(prot, vma.name));
    return undefined;
  }
  return complete<Step>({ kind: 'hostProtect', index, vma: name, prot });
}

function readAge(ctx: Context, v: unknown, index: number, path: string): Step | undefined {
  const { c, page, granule } = ctx;
  const obj = c.object(v, path, { required: ['ipa', 'size'] });
  if (obj === undefined) return undefined;
  const ipa = c.value(get(obj, 'ipa'), `${path}.ipa`);
  const size = c.size(get(obj, 'size'), `${path}.size`);
  let ok = c.aligned(ipa, page, `${path}.ipa`, M.granuleWhat(granule));
  ok = c.aligned(size, page, `${path}.size`, M.granuleWhat(granule)) && ok;
  ok = c.end(ipa, size, path) !== undefined && ok;
  return ok ? complete<Step>({ kind: 'age', index, ipa, size }) : undefined;
}

function readDirtyLog(
  ctx: Context,
  v: unknown,
  index: number,
  path: string,
  slots: SlotTracker,
): Step | undefined {
  const { c } = ctx;
  const obj = c.object(v, path, { required: ['slot', 'op'] });
  if (obj === undefined) return undefined;
  const slot = c.integer(get(obj, 'slot'), `${path}.slot`, 0, MAX_SLOT_ID, M.slotIdLimit);
  const op = c.oneOf(get(obj, 'op'), `${path}.op`, DIRTY_LOG_OPS);
  if (slot === undefined) return undefined;
  const state = slots.find(slot, `${path}.slot`);
  if (state === undefined || op === undefined) return undefined;
  if (op === 'get-and-clear' && !state.logDirty) {
    c.report(`${path}.op`, M.notLogging(slot));
    return undefined;
  }
  if (op !== 'get-and-clear') state.logDirty = op === 'enable';
  return { kind: 'dirtyLog', index, slot, op };
}

/** Returns the list when every element is defined, else undefined (an issue was reported). */
function allDefined<T>(list: readonly (T | undefined)[]): readonly T[] | undefined {
  return list.every((x) => x !== undefined) ? (list as readonly T[]) : undefined;
}

// ---------------------------------------------------------------------------------------------
// JSON positions. JSON.parse gives the value but neither where a syntax error is (portably) nor
// where each key is, nor whether a key was given twice; this scanner finds all three. It runs
// only on text JSON.parse has already judged, so it never decides what the value is.

type JsonScan =
  | {
      readonly ok: true;
      /** Offset of each member's key, or of each array element, by key path; the root value's under "". */
      readonly positions: ReadonlyMap<string, number>;
      readonly duplicates: readonly { readonly path: string; readonly offset: number }[];
    }
  | { readonly ok: false; readonly offset: number; readonly message: string };

/** A syntax error found by the scanner, thrown to unwind it. */
class JsonSyntax {
  readonly offset: number;
  readonly message: string;
  constructor(offset: number, message: string) {
    this.offset = offset;
    this.message = message;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const MAX_DEPTH = 512;

/**
 * Scans JSON text for key positions and duplicate keys (`valid`: JSON.parse accepted it, so
 * values nested past MAX_DEPTH are skipped, not refused), or for where a syntax error is.
 */
function scanJson(text: string, valid: boolean): JsonScan {
  const positions = new Map<string, number>();
  const duplicates: { path: string; offset: number }[] = [];
  let i = 0;

  const skipSpace = (): void => {
    while (i < text.length) {
      const ch = text.charCodeAt(i);
      if (ch !== 0x20 && ch !== 0x09 && ch !== 0x0a && ch !== 0x0d) break;
      i++;
    }
  };
  const fail = (expected: string): never => {
    throw new JsonSyntax(i, i >= text.length ? M.jsonEnd(expected) : M.jsonUnexpected(text[i]!, expected));
  };
  const string = (): string => {
    const start = i++;
    while (true) {
      if (i >= text.length) throw new JsonSyntax(start, M.jsonUnterminated);
      const ch = text.charCodeAt(i);
      if (ch === 0x22) return text.slice(start, ++i);
      if (ch < 0x20) throw new JsonSyntax(i, M.jsonControl);
      if (ch === 0x5c) {
        const esc = text[i + 1];
        if (esc === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else if (esc !== undefined && '"\\/bfnrt'.includes(esc)) i += 2;
        else throw new JsonSyntax(i, M.jsonEscape);
      } else i++;
    }
  };
  /**
   * Skips a value nested past MAX_DEPTH, without recursion and without recording positions
   * (issues inside it are placed at its nearest recorded ancestor). Only for text JSON.parse
   * has accepted.
   */
  const skipDeep = (): void => {
    let nesting = 0;
    do {
      skipSpace();
      const ch = text[i];
      if (ch === undefined) return;
      if (ch === '"') string();
      else if (ch === '{' || ch === '[') {
        nesting++;
        i++;
      } else if (ch === '}' || ch === ']') {
        nesting--;
        i++;
      } else if (ch === ',' || ch === ':') i++;
      else while (i < text.length && !',:]} \t\n\r'.includes(text[i]!)) i++;
    } while (nesting > 0);
  };
  const value = (path: string, depth: number): void => {
    if (depth > MAX_DEPTH) {
      if (!valid) throw new JsonSyntax(i, M.jsonDepth);
      return skipDeep();
    }
    skipSpace();
    const ch = text[i];
    if (ch === '{') {
      i++;
      skipSpace();
      if (text[i] === '}') return void i++;
      const seen = new Set<string>();
      while (true) {
        skipSpace();
        if (text[i] !== '"') fail('a key in double quotes');
        const at = i;
        const key = JSON.parse(string()) as string;
        const p = keyPath(path, key);
        if (seen.has(key)) duplicates.push({ path: p, offset: at });
        seen.add(key);
        positions.set(p, at);
        skipSpace();
        if (text[i] !== ':') fail('":"');
        i++;
        value(p, depth + 1);
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail('"," or "}"');
      }
    }
    if (ch === '[') {
      i++;
      skipSpace();
      if (text[i] === ']') return void i++;
      for (let n = 0; ; n++) {
        skipSpace();
        positions.set(indexPath(path, n), i);
        value(indexPath(path, n), depth + 1);
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail('"," or "]"');
      }
    }
    if (ch === '"') return void string();
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) return void (i += literal.length);
    }
    NUMBER.lastIndex = i;
    if (NUMBER.test(text)) return void (i = NUMBER.lastIndex);
    fail('a value');
  };

  try {
    skipSpace();
    positions.set('', i);
    value('', 0);
    skipSpace();
    if (i < text.length) fail('the end of the text');
    return { ok: true, positions, duplicates };
  } catch (e) {
    if (e instanceof JsonSyntax) return { ok: false, offset: e.offset, message: e.message };
    throw e;
  }
}

/**
 * The 1-based line and column (in UTF-16 code units) of an offset in `text`: a function that
 * finds it by binary search over the line starts, found once (each issue of thousands would
 * otherwise scan the file from its start).
 */
function lineColumns(text: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) starts.push(at + 1);
  return (offset) => {
    // The last line start at or before offset.
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}

/**
 * The offset of `path`, or of its nearest ancestor that has one (a missing key points at its
 * object; the root value's offset is under `""`).
 */
function findOffset(positions: ReadonlyMap<string, number>, path: string): number | undefined {
  for (let p = path; p !== ''; p = parentPath(p)) {
    const offset = positions.get(p);
    if (offset !== undefined) return offset;
  }
  // A missing top-level key, or the file as a whole: where the root value starts.
  return positions.get('');
}
