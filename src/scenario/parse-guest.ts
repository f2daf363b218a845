/**
 * The scenario's `guest` section (docs/scenario.md): guest stage 1, checked against the memslots
 * and the IPA size, and the stage-1 builder that a validated one configures.
 */

import { GRANULE_BYTES, GRANULES, GUEST_APS } from './types.js';
import type { GuestConfig, GuestMapping, ScenarioGuestStage1, ScenarioMemslot } from './types.js';
import { allDefined, complete, get, includes, isObject } from './check.js';
import type { Checker, Context, Shape } from './check.js';
import { tryParseValue } from './values.js';
import { indexPath, M } from './errors.js';
import { GuestStage1 as Stage1Builder, stage1StartLevel } from '../mmu/stage1.js';

const STAGE1_SHAPE: Shape = {
  required: ['granule', 'tables', 'mair', 'mappings'],
  optional: ['ha', 'hd', 'vaBits', 'ips', 'blocks'],
};
const MAPPING_SHAPE: Shape = { required: ['va', 'ipa', 'size', 'attrIndx', 'ap'], optional: ['af', 'xn'] };
const ALIAS_SHAPE: Shape = { required: ['va', 'leafTableOf', 'attrIndx', 'ap'], optional: ['af', 'xn'] };
/** TCR_EL1.IPS sizes a stage-1 output may have without LPA (PARange codes 0 to 5). */
const STAGE1_IPS = [32, 36, 40, 42, 44, 48] as const;

/**
 * `guest`: stage 1's granule, tables, MAIR and mappings, checked against the memslots (every table
 * page the builder will allocate must be guest memory) and against `ipaBits`. Returns the
 * GuestConfig, or undefined after reporting.
 */
export function readGuest(
  ctx: Context,
  v: unknown,
  memslots: readonly ScenarioMemslot[] | undefined,
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
    ? complete<ScenarioGuestStage1>({
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
function stage1Leaves(g: ScenarioGuestStage1, limit: number): number {
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
export function stage1Builder(g: ScenarioGuestStage1, ips?: number): Stage1Builder {
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
