/**
 * The replay format (docs/replay.md): page-table operations in, side effects and dumps out,
 * line for line. The whole input is parsed and checked before anything runs, so a bad line
 * leaves nothing half-done.
 */

import { hex64, hexAddr, parseProt } from '../pgtable/descriptor.js';
import { errnoName } from '../pgtable/errno.js';
import type { GranuleSize } from '../pgtable/geometry.js';
import { MemCache, TLBI_TTL_UNKNOWN } from '../pgtable/pool.js';
import { S2Op } from '../pgtable/op.js';
import type { MaintenanceOp, Stage2Events } from '../pgtable/pool.js';
import { Stage2PageTable } from '../pgtable/stage2.js';
import { Journal } from '../pgtable/journal.js';
import { KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED } from '../pgtable/walker.js';

/** One parsed replay line. */
export type ReplayOp =
  | {
      op: 'init';
      line: number;
      ipaBits: number;
      granule: GranuleSize;
      fwb: boolean;
      startLevel?: number;
      tlbiRange: boolean;
      /** kvm_lpa2_is_enabled() (4K/16K only; `lpa2=1`). */
      lpa2: boolean;
    }
  | { op: 'map'; line: number; ipa: number; size: number; pa: number; prot: number }
  | { op: 'unmap' | 'wrprotect' | 'mkold' | 'flush' | 'split'; line: number; ipa: number; size: number }
  | { op: 'relax'; line: number; ipa: number; prot: number }
  | { op: 'mkyoung'; line: number; ipa: number }
  | { op: 'dump'; line: number };

/** Options of a replay run. */
export interface ReplayOptions {
  /** Use the walker's single-page walk cache (default true); the output must not change. */
  walkCache?: boolean;
  /** Use the page table's single-leaf fast paths (default true); the output must not change. */
  fastPaths?: boolean;
  /**
   * Journal each table's descriptor writes (pgt.journal), one unit per operation after its
   * `init`, whose step is the operation's line number; default false.
   */
  journal?: boolean;
}

/** A replay input error: the 1-based line number and what is wrong with it. */
export class ReplayError extends Error {
  readonly line: number;
  /** The message without its line number. */
  readonly detail: string;
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = 'ReplayError';
    this.line = line;
    this.detail = message;
  }
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** A field of the script for a message: quoted, and cut short when long (never the whole of a huge field). */
function q(text: string): string {
  return `'${text.length > 40 ? `${text.slice(0, 40)}...` : text}'`;
}

/** Parses a replay number (hex with 0x, or decimal). Returns it, or throws ReplayError. */
function parseNum(text: string, line: number, what: string): number {
  const hex = /^0x[0-9a-fA-F]+$/.test(text);
  if (!hex && !/^[0-9]+$/.test(text))
    throw new ReplayError(line, `${what}: expected a number (hex with 0x, or decimal), got ${q(text)}`);
  // Past 20 significant digits it is past 2^53 whatever the base: no BigInt of a huge field.
  const digits = (hex ? text.slice(2) : text).replace(/^0+(?=.)/, '');
  if (digits.length > 20 || BigInt(hex ? `0x${digits}` : digits) > BigInt(MAX_SAFE))
    throw new ReplayError(line, `${what}: ${q(text)} is beyond 2^53 and cannot be an address here`);
  return Number(BigInt(hex ? `0x${digits}` : digits));
}

function parseProtArg(text: string, line: number): number {
  const p = parseProt(text);
  if (typeof p === 'string')
    throw new ReplayError(
      line,
      text.length <= 40
        ? `PROT: ${p}`
        : `PROT: ${q(text)} is not R, W, X, DEVICE, NORMAL_NC, SW0..SW3 or NONE joined by |`,
    );
  return p;
}

const ARITY: Record<string, number> = {
  map: 4,
  unmap: 2,
  wrprotect: 2,
  mkold: 2,
  flush: 2,
  split: 2,
  relax: 2,
  mkyoung: 1,
  dump: 0,
};

const USAGE: Record<string, string> = {
  map: 'map IPA SIZE PA PROT',
  unmap: 'unmap IPA SIZE',
  wrprotect: 'wrprotect IPA SIZE',
  mkold: 'mkold IPA SIZE',
  flush: 'flush IPA SIZE',
  split: 'split IPA SIZE',
  relax: 'relax IPA PROT',
  mkyoung: 'mkyoung IPA',
  dump: 'dump',
};

function parseInit(fields: string[], line: number): ReplayOp {
  const kv = new Map<string, string>();
  for (const f of fields.slice(1)) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new ReplayError(line, `init: expected key=value, got ${q(f)}`);
    const k = f.slice(0, eq);
    if (!['ipa_bits', 'granule', 'fwb', 'start_level', 'tlbi_range', 'lpa2'].includes(k)) {
      throw new ReplayError(
        line,
        `init: unknown key ${q(k)} (expected ipa_bits, granule, fwb, start_level, tlbi_range, lpa2)`,
      );
    }
    if (kv.has(k)) throw new ReplayError(line, `init: ${q(k)} given twice`);
    kv.set(k, f.slice(eq + 1));
  }
  for (const k of ['ipa_bits', 'granule', 'fwb']) {
    if (!kv.has(k)) throw new ReplayError(line, `init: missing ${k}= (init ipa_bits=40 granule=4K fwb=1)`);
  }
  const ipaBits = parseNum(kv.get('ipa_bits')!, line, 'ipa_bits');
  if (ipaBits < 32 || ipaBits > 52)
    throw new ReplayError(line, `ipa_bits: expected 32 to 52, got ${ipaBits}`);
  const g = kv.get('granule')!;
  const granule = g === '4K' ? 4096 : g === '16K' ? 16384 : g === '64K' ? 65536 : 0;
  if (granule === 0) throw new ReplayError(line, `granule: expected 4K, 16K or 64K, got ${q(g)}`);
  const bool = (k: string, dflt: boolean): boolean => {
    const v = kv.get(k);
    if (v === undefined) return dflt;
    if (v !== '0' && v !== '1') throw new ReplayError(line, `${k}: expected 0 or 1, got ${q(v)}`);
    return v === '1';
  };
  const op: ReplayOp = {
    op: 'init',
    line,
    ipaBits,
    granule,
    fwb: bool('fwb', false),
    tlbiRange: bool('tlbi_range', true),
    lpa2: bool('lpa2', false),
  };
  if (op.lpa2 && granule === 65536) throw new ReplayError(line, 'lpa2: not available with 64K pages');
  const sl = kv.get('start_level');
  if (sl !== undefined) {
    if (!/^-?[0-3]$/.test(sl) || sl === '-0' || Number(sl) < -1) {
      throw new ReplayError(line, `start_level: expected -1 to 3, got ${q(sl)}`);
    }
    op.startLevel = Number(sl);
  }
  return op;
}

/**
 * Parses a replay script. Blank lines and `#` comments are skipped. Returns the operations,
 * or throws a ReplayError naming the first bad line.
 */
export function parseReplay(text: string): ReplayOp[] {
  const ops: ReplayOp[] = [];
  const lines = text.split('\n');
  let haveInit = false;
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const raw = lines[i]!.replace(/\r$/, '');
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const fields = raw.split(' ');
    if (fields.some((f) => f === ''))
      throw new ReplayError(line, 'fields must be separated by single spaces');
    const word = fields[0]!;
    if (word === 'init') {
      ops.push(parseInit(fields, line));
      haveInit = true;
      continue;
    }
    const arity = ARITY[word];
    if (arity === undefined) {
      throw new ReplayError(
        line,
        `unknown operation ${q(word)} (expected init, map, unmap, relax, wrprotect, mkyoung, mkold, flush, split, dump)`,
      );
    }
    if (fields.length - 1 !== arity) {
      throw new ReplayError(
        line,
        `${word}: expected ${arity} argument${arity === 1 ? '' : 's'}, found ${fields.length - 1}: ${USAGE[word]}`,
      );
    }
    if (!haveInit) throw new ReplayError(line, `${word} before any init`);
    const ipa = arity > 0 ? parseNum(fields[1]!, line, 'IPA') : 0;
    switch (word) {
      case 'map':
        ops.push({
          op: 'map',
          line,
          ipa,
          size: parseNum(fields[2]!, line, 'SIZE'),
          pa: parseNum(fields[3]!, line, 'PA'),
          prot: parseProtArg(fields[4]!, line),
        });
        break;
      case 'relax':
        ops.push({ op: 'relax', line, ipa, prot: parseProtArg(fields[2]!, line) });
        break;
      case 'mkyoung':
        ops.push({ op: 'mkyoung', line, ipa });
        break;
      case 'dump':
        ops.push({ op: 'dump', line });
        break;
      default:
        ops.push({
          op: word as 'unmap' | 'wrprotect' | 'mkold' | 'flush' | 'split',
          line,
          ipa,
          size: parseNum(fields[2]!, line, 'SIZE'),
        });
    }
  }
  return ops;
}

/** A Stage2Events that writes replay output lines. */
export class PrintingEvents implements Stage2Events {
  private readonly out: (line: string) => void;
  constructor(out: (line: string) => void) {
    this.out = out;
  }
  private static lvl(level: number): string {
    return level === TLBI_TTL_UNKNOWN ? 'unknown' : String(level);
  }
  tlbiVmidIpa(op: Readonly<MaintenanceOp>): void {
    this.out(`tlbi vmid_ipa ${hexAddr(op.addr)} ${PrintingEvents.lvl(op.level)}`);
  }
  tlbiVmidIpaNsh(op: Readonly<MaintenanceOp>): void {
    this.out(`tlbi vmid_ipa_nsh ${hexAddr(op.addr)} ${PrintingEvents.lvl(op.level)}`);
  }
  tlbiVmidRange(op: Readonly<MaintenanceOp>): void {
    this.out(`tlbi vmid_range ${hexAddr(op.addr)} ${hexAddr(op.size)}`);
  }
  tlbiVmid(): void {
    this.out('tlbi vmid');
  }
  dcacheCleanInvalPoc(op: Readonly<MaintenanceOp>): void {
    this.out(`dcache ${hexAddr(op.addr)} ${hexAddr(op.size)}`);
  }
  icacheInvalPou(op: Readonly<MaintenanceOp>): void {
    this.out(`icache ${hexAddr(op.addr)} ${hexAddr(op.size)}`);
  }
}

/** Writes a `dump` of the table: tables and leaves in IPA order, then `end tables=N`. */
export function dumpTable(pgt: Stage2PageTable, out: (line: string) => void): void {
  pgt.forEachValid((kind, level, ipa, lo, hi) => {
    if (kind === 'table') out(`table L${level} ${hexAddr(ipa)}`);
    else out(`leaf L${level} ${hexAddr(ipa)} ${hexAddr(pgt.geo.granuleSize(level))} ${hex64(lo, hi)}`);
  });
  out(`end tables=${pgt.countTables()}`);
}

/**
 * Runs parsed replay operations, writing each output line through `out`. Each `init`
 * starts a fresh table (with its own page arena). Returns the last table.
 */
export function runReplay(
  ops: readonly ReplayOp[],
  out: (line: string) => void,
  opts: ReplayOptions = {},
): Stage2PageTable | null {
  const events = new PrintingEvents(out);
  let pgt: Stage2PageTable | null = null;
  let mc: MemCache | null = null;
  // The unchecked `...Op` forms: a replay hands the kernel's functions any u64 below 2^53
  // (a zero size, an address past 2^52), and their result is part of the output.
  const o = new S2Op();
  for (const op of ops) {
    if (op.op === 'init') {
      pgt = new Stage2PageTable({
        granule: op.granule,
        ipaBits: op.ipaBits,
        fwb: op.fwb,
        ...(op.startLevel !== undefined ? { startLevel: op.startLevel } : {}),
        tlbiRange: op.tlbiRange,
        lpa2: op.lpa2,
        fastPaths: opts.fastPaths ?? true,
        events,
      });
      if (opts.walkCache === false) pgt.walker.useCache = false;
      mc = MemCache.unlimited(pgt.pool);
      if (opts.journal === true) pgt.journal = new Journal(pgt);
      continue;
    }
    if (pgt === null || mc === null) throw new ReplayError(op.line, `${op.op} before any init`);
    let ret: number;
    if (pgt.journal !== null) pgt.journal.beginUnit(pgt.journal.opCode(op.op), op.line, -1);
    if (op.op !== 'dump') {
      o.addr = op.ipa;
      o.size = 'size' in op ? op.size : 1;
      o.phys = op.op === 'map' ? op.pa : 0;
    }
    switch (op.op) {
      case 'map':
        ret = pgt.mapOp(o, op.prot, mc, 0);
        break;
      case 'unmap':
        ret = pgt.unmapOp(o);
        break;
      case 'relax':
        // The fault path's flags: HANDLE_FAULT | SHARED.
        ret = pgt.relaxPermsOp(o, op.prot, KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED);
        break;
      case 'wrprotect':
        ret = pgt.wrprotectOp(o);
        break;
      case 'mkyoung':
        pgt.mkyoungOp(o, KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED);
        ret = 0;
        break;
      case 'mkold':
        pgt.testClearYoungOp(o, true);
        ret = 0;
        break;
      case 'flush':
        ret = pgt.flushOp(o);
        break;
      case 'split':
        ret = pgt.splitOp(o, mc);
        break;
      case 'dump':
        dumpTable(pgt, out);
        continue;
    }
    out(`ret ${op.op} ${ret === 0 ? '0' : '-' + errnoName(ret)}`);
  }
  return pgt;
}

/**
 * Parses and runs a replay script. Returns the output text (one line each, newline-ended),
 * or throws a ReplayError before anything runs.
 */
export function replayText(text: string, opts: ReplayOptions = {}): string {
  const ops = parseReplay(text);
  const lines: string[] = [];
  runReplay(ops, (l) => lines.push(l), opts);
  return lines.length ? lines.join('\n') + '\n' : '';
}
