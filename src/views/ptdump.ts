/**
 * The debugfs page-table dump of a VM: the text of `stage2_page_tables`,
 * `ipa_range` and `stage2_levels`, as Linux v6.17's arch/arm64/kvm/ptdump.c produces it with
 * the generic `note_page` formatter of arch/arm64/mm/ptdump.c (legacy XN bit table, "K").
 *
 * The walk visits every leaf and invalid entry over [0, 2^ia_bits) in order. Consecutive
 * entries with the same level and the same masked bits form one run, whatever their output
 * addresses; a run is printed when the next one starts. The walk never reports the end of
 * the IPA space, so the last run (usually the unmapped tail) is never printed.
 *
 * Line: "0x%016lx-0x%016lx   " start, end; "%9lu%c %s" size, unit, level; then, for a run
 * whose masked bits are non-zero, " %s" per bit entry (its set or clear string).
 */

import {
  KVM_PTE_LEAF_ATTR_HI_S2_XN,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  KVM_PTE_TYPE,
  KVM_PTE_VALID,
  hexAddr,
} from '../pgtable/descriptor.js';
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

/** The note_page state (struct ptdump_pg_state) for one dump. */
class NoteState {
  lines: string[] = [];
  started = false;
  level = -1;
  protLo = 0;
  protHi = 0;
  start = 0;

  /** note_page(addr, level, val). */
  note(addr: number, level: number, lo: number, hi: number): void {
    // The kernel masks only at levels it has names for (start_level..3, never −1 in KVM).
    const protLo = level >= 0 ? (lo & MASK_LO) >>> 0 : 0;
    const protHi = level >= 0 ? (hi & MASK_HI) >>> 0 : 0;
    if (!this.started) {
      this.started = true;
      this.lines.push('---[ Guest IPA ]---');
    } else if (protLo !== this.protLo || protHi !== this.protHi || level !== this.level) {
      let line = `${hexAddr(this.start)}-${hexAddr(addr)}   ${sizeUnit(addr - this.start).padStart(10)} ${this.level}`;
      if (this.protLo !== 0 || this.protHi !== 0) {
        for (const b of STAGE2_PTE_BITS_K) {
          const hit = (this.protLo & b.maskLo) === b.valLo && (this.protHi & b.maskHi) === b.valHi;
          line += ' ' + (hit ? b.set : b.clear);
        }
      }
      this.lines.push(line);
    } else {
      return;
    }
    this.start = addr;
    this.protLo = protLo;
    this.protHi = protHi;
    this.level = level;
  }
}

/**
 * The text of debugfs `stage2_page_tables` for `pgt`, one "\n"-terminated line per printed
 * run, starting with the "---[ Guest IPA ]---" marker. Returns "" for a destroyed table
 * (the kernel's walk fails with −EINVAL there).
 */
export function ptdump(pgt: Stage2PageTable): string {
  if (pgt.pgd < 0) return '';
  const st = new NoteState();
  const visit = (ctx: WalkCtx): number => {
    st.note(ctx.addr, ctx.level, ctx.oldLo, ctx.oldHi);
    return 0;
  };
  pgt.walker.walkRoot(pgt.pgd, 0, pgt.geo.ipaLimit, visit, null, KVM_PGTABLE_WALK_LEAF);
  return st.lines.map((l) => l + '\n').join('');
}

/** The text of debugfs `ipa_range`: "%2u\n" of ia_bits. Returns e.g. "40\n". */
export function ptdumpIpaRange(pgt: Stage2PageTable): string {
  return `${String(pgt.geo.iaBits).padStart(2)}\n`;
}

/** The text of debugfs `stage2_levels`: "%1d\n" of 4 − start_level. Returns e.g. "3\n". */
export function ptdumpStage2Levels(pgt: Stage2PageTable): string {
  return `${4 - pgt.geo.startLevel}\n`;
}
