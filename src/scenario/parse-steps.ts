/**
 * The scenario's `steps` section (docs/scenario.md): one reader per step kind, each checked
 * against what the host sections declared (VMA names, live memslots) and against guest stage 1
 * (accesses name VAs when it is on).
 */

import { ACCESS_KINDS, DIRTY_LOG_OPS, MAX_SLOT_ID, PROTS, RACES, STEP_KINDS, TOUCH_ORDERS } from './types.js';
import type { AccessKind, AddressSpace, Step, ScenarioVma } from './types.js';
import { allDefined, complete, get, includes, isObject, readU64, readWriteBytes } from './check.js';
import type { Checker, Context, Obj } from './check.js';
import { readMemslot, readVma } from './parse-host.js';
import type { SlotTracker } from './parse-host.js';
import { indexPath, keyPath, M } from './errors.js';

/**
 * `steps`: each step by its kind, in order, following the memslots it adds and deletes in `slots`.
 * Returns them, or undefined after reporting.
 */
export function readSteps(ctx: Context, v: unknown, slots: SlotTracker): readonly Step[] | undefined {
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
function findVma(ctx: Context, name: string | undefined, path: string): ScenarioVma | undefined {
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
