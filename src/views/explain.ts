/**
 * `explain`: one IPA walked level by level through a stage-2 table, each descriptor decoded
 * (level, index, the table page's PA, raw value, type, attributes), then what the MMU would
 * do for a read, a write and an instruction fetch (pgtable/hwwalk.ts: no side effects), and,
 * with a guest stage 1, its walk of a VA and the memory type stage 1 and stage 2 combine to.
 * A "why" line (provenance) comes from a caller-supplied function. Cold path.
 *
 * Text:
 *
 *   ipa 0x40001000 in a 40-bit IPA space, 4K granule, start level 1, no FWB
 *     L1[  1] table page 0x100000000000  0x0000100000001003  L1 table 0x100000001000
 *     L2[  0] table page 0x100000001000  0x00000000800007fd  L2 block 0x80000000 RWX Normal-WB AF
 *   leaf: ipa 0x40000000-0x40200000 -> pa 0x80000000-0x80200000 (2M at L2)
 *   read:  read ipa 0x40001000 -> pa 0x80001000 (L2 block ...)
 *   write: ...
 *   exec:  ...
 *   why:   <provenance>
 */

import { hex64 } from '../pgtable/descriptor.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, HwWalkResult, HwWalker } from '../pgtable/hwwalk.js';
import {
  combineS1S2Attrs,
  combinedAttr,
  combinedSh,
  describeS2MemAttr,
  mairText,
} from '../pgtable/memattr.js';
import type { Stage2PageTable } from '../pgtable/stage2.js';
import { S1_DESC, S1_DONE, S1_FAULT_NAMES, Stage1Walk } from '../mmu/stage1.js';
import type { GuestStage1 } from '../mmu/stage1.js';
import { DescriptorView } from './descriptor.js';
import type { DescriptorJson } from './descriptor.js';
import { TextView, hexShort, levelName, sizeUnit } from './hooks.js';
import { WalkView } from './walk.js';
import type { WalkJson } from './walk.js';

/** One descriptor the walk read. */
export interface ExplainLevel {
  level: number;
  /** The entry's index in its table page. */
  index: number;
  /** The physical address of the table page holding it (the concatenated PGD page at the start level). */
  tablePa: number;
  lo: number;
  hi: number;
  entry: DescriptorView;
}

/** The JSON form of an explanation. */
export interface ExplainJson {
  ipa: string;
  levels: { level: number; index: number; tablePa: string; raw: string; entry: DescriptorJson }[];
  leaf: { ipa: string; size: number; pa: string; entry: DescriptorJson } | null;
  read: WalkJson;
  write: WalkJson;
  exec: WalkJson;
  stage1: Stage1Explain | null;
  why: string | null;
  text: string;
}

/** The guest's stage-1 walk of a VA, as explain shows it. */
export interface Stage1Explain {
  va: string;
  steps: { level: number; descIpa: string; raw: string }[];
  /** The output IPA, or null when the walk faulted. */
  ipa: string | null;
  fault: string | null;
  faultLevel: number | null;
  /** MAIR_EL1.Attr<n> of the leaf (a MAIR byte), its text, and the leaf's SH. */
  mair: number | null;
  mairText: string | null;
  attrIndx: number | null;
  /** Stage 1 combined with the stage-2 leaf (when both exist). */
  combined: string | null;
}

/** Options of explainIpa. */
export interface ExplainOptions {
  /** VTCR_EL2.HA as the vCPU's walker has it (a leaf with AF = 0 then does not fault). */
  ha?: boolean;
  /** Why the leaf at `ipa` is what it is (provenance), or null when nothing is known. */
  provenance?: (ipa: number) => string | null;
  /** A guest stage-1 walk that led to this IPA, shown first. */
  stage1?: Stage1Explain | null;
}

/** Reads the descriptors the MMU reads for `ipa`, without side effects. Returns them in order. */
export function walkLevels(pgt: Stage2PageTable, ipa: number): ExplainLevel[] {
  const out: ExplainLevel[] = [];
  const geo = pgt.geo;
  if (pgt.pgd < 0 || !(ipa >= 0 && ipa < geo.ipaLimit)) return out;
  let page = pgt.pgd + geo.pgdPageIndex(ipa);
  for (let level = geo.startLevel; level <= 3; level++) {
    const words = pgt.pool.pages[page]!;
    const index = geo.index(ipa, level);
    const lo = words[2 * index]! >>> 0;
    const hi = words[2 * index + 1]! >>> 0;
    const entry = new DescriptorView(lo, hi, level, pgt);
    out.push({ level, index, tablePa: pgt.pool.phys(page), lo, hi, entry });
    if (entry.kind !== 'table') break;
    page = pgt.pool.pageOfTable(pgt.layout, lo, hi);
    if (page < 0) break;
  }
  return out;
}

/**
 * The guest's stage-1 walk of `va` as guest memory holds it now, read as a debugger reads
 * guest memory (`read(ipa)`: 8 bytes, nothing faulted in, no AF update). `s2` is the table
 * the leaf's IPA is then looked up in, for the combined memory type. Returns the walk.
 */
export function explainStage1(
  s1: GuestStage1,
  va: number,
  read: (ipa: number) => Uint8Array,
  s2: Stage2PageTable | null,
): Stage1Explain {
  const sw = new Stage1Walk();
  sw.va = va;
  const steps: Stage1Explain['steps'] = [];
  let st = s1.begin(sw);
  while (st === S1_DESC) {
    const b = read(sw.descIpa);
    sw.descLo = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
    sw.descHi = (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0;
    steps.push({ level: sw.level, descIpa: hexShort(sw.descIpa), raw: hex64(sw.descLo, sw.descHi) });
    st = s1.step(sw, false, false, false);
  }
  if (st !== S1_DONE) {
    return {
      va: hexShort(va),
      steps,
      ipa: null,
      fault: S1_FAULT_NAMES[st - 2] ?? 'translation',
      faultLevel: sw.faultLevel,
      mair: null,
      mairText: null,
      attrIndx: null,
      combined: null,
    };
  }
  const mair = s1.mairAttr(sw.attrIndx);
  let combined: string | null = null;
  if (s2 !== null) {
    const w = new HwWalkResult();
    const hw = new HwWalker(s2, { ha: true });
    if (hw.walk(sw.ipa, ACCESS_READ, w) || w.leafPage >= 0) {
      const c = combineS1S2Attrs(mair, sw.sh, w.memattr, w.sh, s2.fwb);
      combined =
        `${mairText(combinedAttr(c))} (stage 1 ${mairText(mair)}, stage 2 MemAttr 0x${w.memattr.toString(16)} ` +
        `${describeS2MemAttr(w.memattr, s2.fwb).text}${s2.fwb ? ', FWB' : ''}; SH ${['NSH', 'RES', 'OSH', 'ISH'][combinedSh(c)]!})`;
    }
  }
  return {
    va: hexShort(va),
    steps,
    ipa: hexShort(sw.ipa),
    fault: null,
    faultLevel: null,
    mair,
    mairText: mairText(mair),
    attrIndx: sw.attrIndx,
    combined,
  };
}

/** A decoded explanation of one IPA (see the module comment for its text). */
export class ExplainView extends TextView {
  readonly ipa: number;
  readonly levels: readonly ExplainLevel[];
  /** The valid leaf the walk ended on, or null. */
  readonly leaf: DescriptorView | null;
  readonly read: WalkView;
  readonly write: WalkView;
  readonly exec: WalkView;
  readonly stage1: Stage1Explain | null;
  readonly why: string | null;
  readonly text: string;

  constructor(pgt: Stage2PageTable, ipa: number, opts: ExplainOptions = {}) {
    super();
    this.ipa = ipa;
    this.stage1 = opts.stage1 ?? null;
    const levels = walkLevels(pgt, ipa);
    this.levels = levels;
    const last = levels[levels.length - 1];
    const leafKind = last?.entry.kind;
    const geo = pgt.geo;
    const leafIpa =
      last === undefined ? 0 : Math.floor(ipa / geo.granuleSize(last.level)) * geo.granuleSize(last.level);
    this.leaf =
      last !== undefined && (leafKind === 'block' || leafKind === 'page')
        ? new DescriptorView(last.lo, last.hi, last.level, pgt, leafIpa)
        : null;
    const hw = new HwWalker(pgt, { ha: opts.ha ?? false });
    const r = new HwWalkResult();
    const walk = (access: 0 | 1 | 2): WalkView => {
      if (pgt.pgd >= 0) hw.walk(ipa, access, r);
      return new WalkView(r, pgt);
    };
    this.read = walk(ACCESS_READ);
    this.write = walk(ACCESS_WRITE);
    this.exec = walk(ACCESS_EXEC);
    this.why = this.leaf !== null && opts.provenance ? opts.provenance(ipa) : null;

    const lines: string[] = [];
    if (this.stage1 !== null) lines.push(...stage1Lines(this.stage1));
    lines.push(
      `ipa ${hexShort(ipa)} in a ${geo.iaBits}-bit IPA space, ${geo.pageSize / 1024}K granule, ` +
        `start level ${geo.startLevel}${geo.pgdPages > 1 ? ` (${geo.pgdPages} concatenated PGD pages)` : ''}, ` +
        `${pgt.fwb ? 'FWB' : 'no FWB'}${pgt.lpa2 ? ', LPA2' : ''}`,
    );
    if (pgt.pgd < 0) lines.push('  the stage-2 table has been destroyed');
    else if (levels.length === 0)
      lines.push(`  beyond the IPA space (2^${geo.iaBits}): a level-0 translation fault`);
    const idxWidth = String(geo.ptrsPerPte - 1).length;
    for (const l of levels) {
      lines.push(
        `  ${levelName(l.level)}[${String(l.index).padStart(idxWidth)}] table page ${hexShort(l.tablePa)}  ` +
          `${hex64(l.lo, l.hi)}  ${l.entry.text}`,
      );
    }
    if (last !== undefined && last.entry.kind === 'table') {
      lines.push(
        `  the next-level table ${last.entry.oa!} is outside the table pool: an external abort on the walk`,
      );
    }
    if (this.leaf !== null) {
      const size = this.leaf.size;
      const oa = Number(this.leaf.oaBigInt!);
      lines.push(
        `leaf: ipa ${hexShort(leafIpa)}-${hexShort(leafIpa + size)} -> pa ${hexShort(oa)}-${hexShort(oa + size)} ` +
          `(${sizeUnit(size)} at ${levelName(this.leaf.level)}), memory type ${this.leaf.memattr!} ` +
          `(${pgt.fwb ? 'no FWB' : 'FWB'} would read MemAttr 0x${this.leaf.memattrValue!.toString(16)} as ` +
          `${describeS2MemAttr(this.leaf.memattrValue!, !pgt.fwb).text})`,
      );
    } else if (levels.length > 0) {
      lines.push('leaf: none (the walk ends on an entry that maps nothing)');
    }
    lines.push(`read:  ${this.read.text}`, `write: ${this.write.text}`, `exec:  ${this.exec.text}`);
    if (opts.provenance) lines.push(`why:   ${this.why ?? '(nothing recorded for this leaf)'}`);
    this.text = lines.join('\n');
  }

  /** Returns the plain-data form (addresses as hex text). */
  toJSON(): ExplainJson {
    const leaf = this.leaf;
    return {
      ipa: hexShort(this.ipa),
      levels: this.levels.map((l) => ({
        level: l.level,
        index: l.index,
        tablePa: hexShort(l.tablePa),
        raw: hex64(l.lo, l.hi),
        entry: l.entry.toJSON(),
      })),
      leaf:
        leaf === null
          ? null
          : { ipa: hexShort(leaf.ipa!), size: leaf.size, pa: leaf.oa!, entry: leaf.toJSON() },
      read: this.read.toJSON(),
      write: this.write.toJSON(),
      exec: this.exec.toJSON(),
      stage1: this.stage1,
      why: this.why,
      text: this.text,
    };
  }
}

/** The lines explain prints for a guest stage-1 walk. Returns them. */
export function stage1Lines(s: Stage1Explain): string[] {
  const lines = [`stage 1 (guest): va ${s.va}`];
  for (const st of s.steps) lines.push(`  ${levelName(st.level)} descriptor at ipa ${st.descIpa}  ${st.raw}`);
  if (s.ipa === null)
    lines.push(`  ${s.fault!} fault at ${levelName(s.faultLevel!)}: the guest takes it, KVM is not involved`);
  else {
    lines.push(
      `  -> ipa ${s.ipa}, MAIR_EL1.Attr${s.attrIndx!} = 0x${s.mair!.toString(16).padStart(2, '0')} ${s.mairText!}`,
    );
    if (s.combined !== null) lines.push(`combined memory type: ${s.combined}`);
  }
  return lines;
}

/**
 * Explains `ipa` in `pgt` (see ExplainView). Returns the view; `String(view)` is the text.
 */
export function explainIpa(pgt: Stage2PageTable, ipa: number, opts: ExplainOptions = {}): ExplainView {
  return new ExplainView(pgt, ipa, opts);
}
