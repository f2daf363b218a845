/**
 * The debugfs page-table dump of a VM: the text of `stage2_page_tables`, `ipa_range` and
 * `stage2_levels`, as Linux v6.17's arch/arm64/kvm/ptdump.c produces it with the generic
 * `note_page` formatter of arch/arm64/mm/ptdump.c (legacy XN bit table, "K"); and a wide
 * form that adds what the kernel leaves out.
 *
 * The walk (kvm_ptdump_guest_show: a LEAF-only kvm_pgtable_walk over [0, 2^ia_bits)) visits
 * every leaf and invalid entry in order. Consecutive entries with the same level and the
 * same masked bits form one run, whatever their output addresses; a run is printed when the
 * next one starts. The walk never reports the end of the IPA space, so the last run (usually
 * the unmapped tail) is never printed.
 *
 * Line: "0x%016lx-0x%016lx   " start, end; "%9lu%c %s" size, unit, level; then, for a run
 * whose masked bits are non-zero, " %s" per bit entry (its set or clear string).
 */

import {
  KVM_PTE_LEAF_ATTR_HI_CONT,
  KVM_PTE_LEAF_ATTR_HI_S2_XN,
  KVM_PTE_LEAF_ATTR_HI_SW,
  KVM_PTE_LEAF_ATTR_HI_SW_SHIFT,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  KVM_PTE_TYPE,
  KVM_PTE_VALID,
  hex64,
  hexAddr,
  pteMemAttr,
} from '../pgtable/descriptor.js';
import { describeS2MemAttr } from '../pgtable/memattr.js';
import type { Stage2PageTable } from '../pgtable/stage2.js';
import { KVM_PGTABLE_WALK_LEAF } from '../pgtable/walker.js';
import type { WalkCtx } from '../pgtable/walker.js';
import { sizeUnit } from './hooks.js';

/** One entry of a ptdump bit table (struct ptdump_prot_bits), masks split into halves. */
interface ProtBits {
  maskLo: number;
  maskHi: number;
  valLo: number;
  valHi: number;
  set: string;
  clear: string;
}

const V = KVM_PTE_VALID;
const R = KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R;
const W = KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
const AF = KVM_PTE_LEAF_ATTR_LO_S2_AF;
const XN = KVM_PTE_LEAF_ATTR_HI_S2_XN;

/** stage2_pte_bits in v6.17 (legacy XN): "X" means not executable (or invalid). */
const STAGE2_PTE_BITS_K: readonly ProtBits[] = [
  { maskLo: V, maskHi: 0, valLo: V, valHi: 0, set: ' ', clear: 'F' },
  { maskLo: R | V, maskHi: 0, valLo: R | V, valHi: 0, set: 'R', clear: ' ' },
  { maskLo: W | V, maskHi: 0, valLo: W | V, valHi: 0, set: 'W', clear: ' ' },
  { maskLo: V, maskHi: XN, valLo: V, valHi: 0, set: ' ', clear: 'X' },
  { maskLo: AF | V, maskHi: 0, valLo: AF | V, valHi: 0, set: 'AF', clear: '  ' },
  { maskLo: KVM_PTE_TYPE | V, maskHi: 0, valLo: V, valHi: 0, set: 'BLK', clear: '   ' },
];

/** The OR of every entry's mask (0x00400000000004C3), low and high halves. */
const MASK_LO = STAGE2_PTE_BITS_K.reduce((m, b) => m | b.maskLo, 0) >>> 0;
const MASK_HI = STAGE2_PTE_BITS_K.reduce((m, b) => m | b.maskHi, 0) >>> 0;

/** One run of the kernel's dump: entries of one level with the same masked bits. */
export interface PtdumpRun {
  /** IPA range [start, end). */
  start: number;
  end: number;
  level: number;
  /** The masked bits (val & 0x00400000000004C3) as halves. */
  protLo: number;
  protHi: number;
  /**
   * The line debugfs prints for it (without "\n"). The last run has a line too, though the
   * kernel never prints it (`printed` is false).
   */
  line: string;
  printed: boolean;
}

/** The kernel's line for a finished run (note_page's printing branch). */
function runLine(start: number, end: number, level: number, protLo: number, protHi: number): string {
  let line = `${hexAddr(start)}-${hexAddr(end)}   ${sizeUnit(end - start).padStart(10)} ${level}`;
  if (protLo !== 0 || protHi !== 0) {
    for (const b of STAGE2_PTE_BITS_K) {
      const hit = (protLo & b.maskLo) === b.valLo && (protHi & b.maskHi) === b.valHi;
      line += ' ' + (hit ? b.set : b.clear);
    }
  }
  return line;
}

/**
 * Visits every entry kvm_ptdump_guest_show's LEAF walk visits, in IPA order: (addr, level,
 * lo, hi). Nothing is changed. Returns false for a destroyed table (no walk).
 */
function walkLeaves(
  pgt: Stage2PageTable,
  fn: (addr: number, level: number, lo: number, hi: number) => void,
): boolean {
  if (pgt.pgd < 0) return false;
  const visit = (ctx: WalkCtx): number => {
    fn(ctx.addr, ctx.level, ctx.oldLo >>> 0, ctx.oldHi >>> 0);
    return 0;
  };
  pgt.walker.walkRoot(pgt.pgd, 0, pgt.geo.ipaLimit, visit, null, KVM_PGTABLE_WALK_LEAF);
  return true;
}

/**
 * The kernel's runs of `pgt` in IPA order (note_page's state machine), the last one
 * included with `printed: false`. Returns [] for a destroyed table.
 */
export function ptdumpRuns(pgt: Stage2PageTable): PtdumpRun[] {
  const runs: PtdumpRun[] = [];
  let cur: { start: number; level: number; protLo: number; protHi: number } | null = null;
  const close = (end: number, printed: boolean): void => {
    const c = cur!;
    runs.push({ ...c, end, line: runLine(c.start, end, c.level, c.protLo, c.protHi), printed });
  };
  walkLeaves(pgt, (addr, level, lo, hi) => {
    // note_page masks only at levels it has names for (start_level..3, never −1 in KVM).
    const protLo = level >= 0 ? (lo & MASK_LO) >>> 0 : 0;
    const protHi = level >= 0 ? (hi & MASK_HI) >>> 0 : 0;
    if (cur !== null && protLo === cur.protLo && protHi === cur.protHi && level === cur.level) return;
    if (cur !== null) close(addr, true);
    cur = { start: addr, level, protLo, protHi };
  });
  if (cur !== null) close(pgt.geo.ipaLimit, false);
  return runs;
}

/**
 * Why the kernel prints no `stage2_page_tables` for `pgt`, or null when it prints one:
 * a destroyed table (the walk fails with −EINVAL), or a start level of −1 (LPA2, 52-bit
 * IPA), which kvm_ptdump_build_levels() rejects with −EINVAL when the file is opened: it
 * takes the start level as a u32, so −1 is past KVM_PGTABLE_LAST_LEVEL.
 * Returns the reason as text.
 */
export function ptdumpUnavailable(pgt: Stage2PageTable): string | null {
  if (pgt.pgd < 0) return 'the stage-2 table has been destroyed (-EINVAL)';
  if (pgt.geo.startLevel < 0)
    return 'open fails with -EINVAL: kvm_ptdump_build_levels() rejects start level -1';
  return null;
}

/**
 * The text of debugfs `stage2_page_tables` for `pgt`, one "\n"-terminated line per printed
 * run, starting with the "---[ Guest IPA ]---" marker. Returns "" when the kernel prints
 * nothing (ptdumpUnavailable() says why).
 */
export function ptdump(pgt: Stage2PageTable): string {
  if (ptdumpUnavailable(pgt) !== null) return '';
  const lines = ['---[ Guest IPA ]---'];
  for (const r of ptdumpRuns(pgt)) if (r.printed) lines.push(r.line);
  return lines.map((l) => l + '\n').join('');
}

/** The text of debugfs `ipa_range`: "%2u\n" of ia_bits. Returns e.g. "40\n". */
export function ptdumpIpaRange(pgt: Stage2PageTable): string {
  return `${String(pgt.geo.iaBits).padStart(2)}\n`;
}

/** The text of debugfs `stage2_levels`: "%1d\n" of 4 − start_level. Returns e.g. "3\n". */
export function ptdumpStage2Levels(pgt: Stage2PageTable): string {
  return `${4 - pgt.geo.startLevel}\n`;
}

// ---- the wide form ------------------------------------------------------------------------

/**
 * One run of the wide dump: entries of one level whose descriptors are equal but for the
 * output address, which continues from one entry to the next (for valid leaves). A kernel
 * run splits into several wide runs where the output addresses jump or attributes the kernel
 * does not print differ.
 */
export interface PtdumpWideRun {
  start: number;
  end: number;
  level: number;
  /** Entries in the run, and the first one's descriptor. */
  entries: number;
  lo: number;
  hi: number;
  /** Valid leaf (block or page) or not (empty, or KVM's invalid encodings). */
  valid: boolean;
  /** Output address range of a valid run, else null. */
  oaStart: number | null;
  oaEnd: number | null;
  /** MemAttr[3:0] read with the table's FWB setting, and read the other way. */
  memattr: number | null;
  memType: string | null;
  memTypeFwb: string | null;
  memTypeNoFwb: string | null;
  /** SH[1:0] name (Inner with LPA2, where those bits are OA). */
  sh: string | null;
  cont: boolean;
  /** Software bits [58:55]. */
  sw: number;
  /** The kernel's columns for this run (same format as a debugfs line). */
  kernelLine: string;
}

const SH_NAMES = ['NSH', 'RES', 'OSH', 'ISH'];
/** The descriptor bits that are output address: every bit the layout decodes as OA. */
function oaOf(pgt: Stage2PageTable, lo: number, hi: number): number {
  return pgt.layout.toPhys(lo, hi);
}

/** Descriptor halves with the OA field cleared, for comparing attributes. */
function attrsOf(pgt: Stage2PageTable, lo: number, hi: number): [number, number] {
  const oa = oaOf(pgt, lo, hi);
  const oaLo = pgt.layout.physLo(oa);
  const oaHi = pgt.layout.physHi(oa);
  return [(lo & ~oaLo) >>> 0, (hi & ~oaHi) >>> 0];
}

/** Returns the wide runs of `pgt` in IPA order, the last (unprinted by the kernel) included. */
export function ptdumpWideRuns(pgt: Stage2PageTable): PtdumpWideRun[] {
  const runs: PtdumpWideRun[] = [];
  let cur: (PtdumpWideRun & { aLo: number; aHi: number; nextOa: number }) | null = null;
  const geo = pgt.geo;
  walkLeaves(pgt, (addr, level, lo, hi) => {
    const valid = (lo & V) !== 0;
    const size = geo.granuleSize(level);
    const [aLo, aHi] = valid ? attrsOf(pgt, lo, hi) : [lo, hi];
    const oa = valid ? oaOf(pgt, lo, hi) : 0;
    if (
      cur !== null &&
      cur.level === level &&
      cur.valid === valid &&
      cur.aLo === aLo &&
      cur.aHi === aHi &&
      (!valid || cur.nextOa === oa)
    ) {
      cur.end = addr + size;
      cur.entries++;
      cur.nextOa = oa + size;
      if (valid) cur.oaEnd = oa + size;
      return;
    }
    if (cur !== null) runs.push(cur);
    const m = valid ? pteMemAttr(lo) : null;
    cur = {
      start: addr,
      end: addr + size,
      level,
      entries: 1,
      lo,
      hi,
      valid,
      oaStart: valid ? oa : null,
      oaEnd: valid ? oa + size : null,
      memattr: m,
      memType: m === null ? null : describeS2MemAttr(m, pgt.fwb).text,
      memTypeFwb: m === null ? null : describeS2MemAttr(m, true).text,
      memTypeNoFwb: m === null ? null : describeS2MemAttr(m, false).text,
      sh: valid ? (pgt.layout.lpa2 ? 'ISH' : SH_NAMES[(lo >>> 8) & 3]!) : null,
      cont: valid && (hi & KVM_PTE_LEAF_ATTR_HI_CONT) !== 0,
      sw: valid ? (hi & KVM_PTE_LEAF_ATTR_HI_SW) >>> KVM_PTE_LEAF_ATTR_HI_SW_SHIFT : 0,
      kernelLine: '',
      aLo,
      aHi,
      nextOa: oa + size,
    };
  });
  if (cur !== null) runs.push(cur);
  return runs.map((r) => {
    const {
      aLo: _a,
      aHi: _b,
      nextOa: _c,
      ...run
    } = r as PtdumpWideRun & { aLo: number; aHi: number; nextOa: number };
    const protLo = run.level >= 0 ? (run.lo & MASK_LO) >>> 0 : 0;
    const protHi = run.level >= 0 ? (run.hi & MASK_HI) >>> 0 : 0;
    run.kernelLine = runLine(run.start, run.end, run.level, protLo, protHi);
    return run;
  });
}

/** Options of the wide dump. */
export interface PtdumpWideOptions {
  /**
   * Why the leaf at `ipa` is what it is (provenance), or null when nothing is known: printed
   * under the run as an indented "why:" line. Asked once per valid run, with its start.
   */
  provenance?: (ipa: number) => string | null;
}

/** The kernel's columns are padded to this width so the additions line up. */
const KERNEL_COLUMNS = 62;

/** The text after the kernel's columns of a wide line. */
function wideDetail(pgt: Stage2PageTable, r: PtdumpWideRun): string {
  if (!r.valid) {
    return r.lo === 0 && r.hi === 0 ? 'empty' : `invalid ${hex64(r.lo, r.hi)}`;
  }
  const other = pgt.fwb ? r.memTypeNoFwb : r.memTypeFwb;
  const parts = [
    `-> ${hexAddr(r.oaStart!)}-${hexAddr(r.oaEnd!)}`,
    `memattr 0x${r.memattr!.toString(16)} ${r.memType!} (${pgt.fwb ? 'FWB' : 'no FWB'}; ${pgt.fwb ? 'no FWB' : 'FWB'}: ${other!})`,
    r.sh!,
  ];
  if (r.cont) parts.push('CONT');
  parts.push(`SW 0x${r.sw.toString(16)}`);
  return parts.join('  ');
}

/**
 * The wide dump: a header (ipa_range and stage2_levels, granule, FWB), then one line per
 * wide run (ptdumpWideRuns), the last run included: the kernel's columns, then the output
 * address range, the memory type read with the table's FWB setting and the other way, the
 * shareability, CONT and the software bits. With `opts.provenance`, a "why:" line follows a
 * valid run it knows about. Returns the text, "\n"-terminated lines.
 */
export function ptdumpWide(pgt: Stage2PageTable, opts: PtdumpWideOptions = {}): string {
  if (pgt.pgd < 0) return '(the stage-2 table has been destroyed)\n';
  const g = pgt.geo;
  const lines = [
    `# ipa_range ${g.iaBits}, stage2_levels ${4 - g.startLevel} (start level ${g.startLevel}), ` +
      `granule ${g.pageSize / 1024}K, ${pgt.fwb ? 'FWB' : 'no FWB'}${pgt.lpa2 ? ', LPA2' : ''}`,
  ];
  for (const r of ptdumpWideRuns(pgt)) {
    lines.push(`${r.kernelLine.padEnd(KERNEL_COLUMNS)} ${wideDetail(pgt, r)}`);
    if (r.valid && opts.provenance) {
      const why = opts.provenance(r.start);
      if (why !== null) lines.push(`    why: ${why}`);
    }
  }
  return lines.map((l) => l + '\n').join('');
}

/** The JSON form of a dump (`s2emu ptdump --json`). Addresses are hex text. */
export interface PtdumpJson {
  ipaRange: number;
  stage2Levels: number;
  startLevel: number;
  granule: number;
  fwb: boolean;
  lpa2: boolean;
  /** The debugfs text of stage2_page_tables ("" when the kernel prints none). */
  text: string;
  /** Why the kernel prints no stage2_page_tables (ptdumpUnavailable), or null. */
  unavailable: string | null;
  /** The kernel's runs, the last (never printed) included with printed: false. */
  runs: {
    start: string;
    end: string;
    size: number;
    level: number;
    prot: string;
    line: string;
    printed: boolean;
  }[];
  /** The wide runs. */
  entries: {
    start: string;
    end: string;
    level: number;
    count: number;
    raw: string;
    valid: boolean;
    oa: { start: string; end: string } | null;
    memattr: number | null;
    memType: string | null;
    memTypeFwb: string | null;
    memTypeNoFwb: string | null;
    sh: string | null;
    cont: boolean;
    sw: number;
    why?: string;
  }[];
}

/** Returns the JSON form of the dump of `pgt` (see PtdumpJson). */
export function ptdumpJson(pgt: Stage2PageTable, opts: PtdumpWideOptions = {}): PtdumpJson {
  const hx = (a: number): string => '0x' + a.toString(16);
  return {
    ipaRange: pgt.geo.iaBits,
    stage2Levels: 4 - pgt.geo.startLevel,
    startLevel: pgt.geo.startLevel,
    granule: pgt.geo.pageSize,
    fwb: pgt.fwb,
    lpa2: pgt.lpa2,
    text: ptdump(pgt),
    unavailable: ptdumpUnavailable(pgt),
    runs: ptdumpRuns(pgt).map((r) => ({
      start: hx(r.start),
      end: hx(r.end),
      size: r.end - r.start,
      level: r.level,
      prot: hex64(r.protLo, r.protHi),
      line: r.line,
      printed: r.printed,
    })),
    entries: ptdumpWideRuns(pgt).map((r) => {
      const why = r.valid && opts.provenance ? opts.provenance(r.start) : null;
      return {
        start: hx(r.start),
        end: hx(r.end),
        level: r.level,
        count: r.entries,
        raw: hex64(r.lo, r.hi),
        valid: r.valid,
        oa: r.valid ? { start: hx(r.oaStart!), end: hx(r.oaEnd!) } : null,
        memattr: r.memattr,
        memType: r.memType,
        memTypeFwb: r.memTypeFwb,
        memTypeNoFwb: r.memTypeNoFwb,
        sh: r.sh,
        cont: r.cont,
        sw: r.sw,
        ...(why !== null ? { why } : {}),
      };
    }),
  };
}
