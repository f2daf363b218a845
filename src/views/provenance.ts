/**
 * Provenance as text and JSON (src/mmu/provenance.ts): why a leaf is what it is, one line
 * per record, for `explain`, `ptdump --wide`, `s2emu step` and debuggers.
 */

import type { Provenance, ProvenanceRecord } from '../mmu/provenance.js';
import { sizeUnit } from './hooks.js';
import { KVM_PTE_VALID } from '../pgtable/descriptor.js';
import { S2Op } from '../pgtable/op.js';
import { LeafResult } from '../pgtable/stage2.js';
import type { Stage2PageTable } from '../pgtable/stage2.js';

/** Shift as "21 (2M)". */
function shiftText(shift: number): string {
  return `${shift} (${sizeUnit(2 ** shift)})`;
}

/**
 * One record as one line, e.g. `map by access 3 (step 2): translation fault L1, write;
 * kernel 6.17; size 2M: VMA page shift 12 (4K), THP promoted to PMD; Normal (pfn in the
 * linear map); host anon pfn 0x80200, folio 2M, host leaf 2M`. Returns the text.
 */
export function formatProvenance(r: ProvenanceRecord): string {
  const who =
    r.access >= 0
      ? `access ${r.access}${r.step >= 0 ? ` (step ${r.step})` : ''}`
      : r.step >= 0
        ? `step ${r.step}`
        : 'a fault';
  const f = r.fault;
  const kind = [f.write ? 'write' : f.exec ? 'exec' : 'read', ...(f.s1ptw ? ['S1PTW'] : [])].join(', ');
  const parts = [`${r.action} by ${who}: ${f.class} fault L${f.level}, ${kind}`, `kernel ${r.kernel}`];
  if (r.action !== 'mkyoung') {
    const why = [`VMA page shift ${shiftText(r.vmaShift!)}`, ...r.clamps];
    parts.push(`size ${sizeUnit(r.size)}: ${why.join(', ')}`);
  } else parts.push(`AF set on the ${sizeUnit(r.size)} leaf`);
  if (r.memType !== null) parts.push(`${memTypeText(r.memType)} (${r.memTypeRule})`);
  if (r.mteSanitised) parts.push('MTE tags sanitised');
  if (r.backing !== null) {
    const host = [`host ${r.backing}`];
    if (r.pfn !== null) host.push(`pfn 0x${r.pfn.toString(16)}`);
    if (r.folioSize !== null && r.backing !== 'pfnmap' && r.backing !== 'mixedmap')
      host.push(`folio ${sizeUnit(r.folioSize)}`);
    if (r.hostLeafSize !== null) host.push(`host leaf ${sizeUnit(r.hostLeafSize)}`);
    parts.push(host.join(', '));
  }
  return parts.join('; ');
}

function memTypeText(t: string): string {
  return t === 'normal' ? 'Normal' : t === 'normal-nc' ? 'Normal-NC' : 'Device';
}

/**
 * The provenance of the leaf covering `ipa`, oldest record first, one line each; empty when
 * there is none (or `prov` is null: provenance off). Returns the lines.
 */
export function provenanceLines(prov: Provenance | null, ipa: number): string[] {
  if (prov === null) return [];
  return prov.history(ipa).map(formatProvenance);
}

/** The latest record of the leaf covering `ipa` as one line, or null. */
export function provenanceLine(prov: Provenance | null, ipa: number): string | null {
  if (prov === null) return null;
  const r = prov.covering(ipa);
  return r < 0 ? null : formatProvenance(prov.get(r));
}

/**
 * The latest record of the leaf `pgt` has at `ipa` now, matched by the leaf's own IPA and
 * level (a block split into pages since its fault has no record for the pages), as one line;
 * null when there is no leaf, no record, or `prov` is null. For the `why:` hooks of explain
 * and ptdump --wide. Returns the line.
 */
export function leafProvenance(prov: Provenance | null, pgt: Stage2PageTable, ipa: number): string | null {
  if (prov === null) return null;
  const leaf = new LeafResult();
  pgt.getLeafOp(Object.assign(new S2Op(), { addr: ipa }), leaf);
  if ((leaf.lo & KVM_PTE_VALID) === 0) return null;
  const size = pgt.geo.granuleSize(leaf.level);
  const r = prov.forLeaf(Math.floor(ipa / size) * size, leaf.level);
  return r < 0 ? null : formatProvenance(prov.get(r));
}
