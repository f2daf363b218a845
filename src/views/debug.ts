/**
 * What the core's objects show in a debugger: the short decoded summaries behind
 * `console.log(pgt)`, `util.inspect(kvm)` and VS Code's variables pane, and the helpers
 * `pgt.ptdump()`, `pgt.explain(ipa)`, `pgt.leafView(ipa)` and `vcpu.explain()`. Loading this
 * module registers them in the core's hook registry (pgtable/debughooks.ts); the core never
 * imports the views. Cold path only.
 */

import { debugHooks } from '../pgtable/debughooks.js';
import { hex64 } from '../pgtable/descriptor.js';
import type { LeafResult, Stage2PageTable } from '../pgtable/stage2.js';
import { esrFaultLevel, esrIsIabt, esrIsS1ptw, faultClassName, kvmIsWriteFault } from '../mmu/esr.js';
import type { AccessResult, Vcpu } from '../mmu/vcpu.js';
import { OUTCOME_NAMES } from '../mmu/vcpu.js';
import { ACCESS_NAMES } from '../mmu/access.js';
import type { Kvm } from '../mmu/vm.js';
import { explainIpa, explainStage1 } from './explain.js';
import { hexShort, levelName } from './hooks.js';
import { ptdump } from './ptdump.js';
import { DescriptorView } from './descriptor.js';

/** How many leaves a table summary lists. */
const SUMMARY_LEAVES = 3;

/** The one-line shape of a table: granule, IPA size, start level, PGD pages, FWB. */
function shape(pgt: Stage2PageTable): string {
  const g = pgt.geo;
  return (
    `${g.pageSize / 1024}K granule, ${g.iaBits}-bit IPA, start level ${g.startLevel}` +
    `${g.pgdPages > 1 ? ` (${g.pgdPages} PGD pages)` : ''}, ${pgt.fwb ? 'FWB' : 'no FWB'}${pgt.lpa2 ? ', LPA2' : ''}`
  );
}

/**
 * Counts of the table's valid leaves, and the first few decoded. A debugger asks for this at
 * every stop, so only those few are decoded (a fully 4K-mapped gigabyte has 262144 leaves).
 */
function leafSummary(pgt: Stage2PageTable): string {
  if (pgt.pgd < 0) return 'destroyed';
  let leaves = 0;
  let blocks = 0;
  const head: string[] = [];
  pgt.forEachValid((kind, level, ipa, lo, hi) => {
    if (kind !== 'leaf') return;
    leaves++;
    if (level < 3) blocks++;
    if (head.length < SUMMARY_LEAVES) head.push(new DescriptorView(lo, hi, level, pgt, ipa).text);
  });
  if (leaves > SUMMARY_LEAVES) head.push(`... ${leaves - SUMMARY_LEAVES} more (pgt.ptdump())`);
  return (
    `${pgt.countTables()} table pages, ${leaves} leaves (${blocks} blocks, ${leaves - blocks} pages)` +
    (head.length ? `: ${head.join('; ')}` : '')
  );
}

/** Stage2PageTable { ... }. */
export function describePgt(pgt: Stage2PageTable): string {
  return `Stage2PageTable { ${shape(pgt)}, ${leafSummary(pgt)} }`;
}

/** Kvm { ... }. */
export function describeKvm(kvm: Kvm): string {
  const t = kvm.totals;
  return (
    `Kvm { kernel ${kvm.kernel.name}, ${shape(kvm.pgt)}, ${kvm.memslots.current.slots.length} memslots, ` +
    `${leafSummary(kvm.pgt)}; ${t.faults} faults, ${kvm.diagnostics.length} diagnostics }`
  );
}

/** The last abort a vCPU took, decoded from its syndrome registers. Returns the text. */
function lastAbort(vcpu: Vcpu): string {
  if (vcpu.esr === 0) return 'no abort taken yet';
  const esr = vcpu.esr >>> 0;
  const kind = esrIsIabt(esr)
    ? 'instruction abort'
    : kvmIsWriteFault(esr)
      ? 'data abort (write)'
      : 'data abort (read)';
  return (
    `last abort: ESR 0x${esr.toString(16)} ${kind}, ${faultClassName(esr)} fault at ${levelName(esrFaultLevel(esr))}` +
    `${esrIsS1ptw(esr) ? ' on a stage-1 walk' : ''}, ipa ${hexShort(vcpu.faultIpa)} (far ${hexShort(vcpu.far)}), ` +
    `handled by ${vcpu.handler} -> ${vcpu.handlerRet}`
  );
}

/** Vcpu { ... }. */
export function describeVcpu(vcpu: Vcpu): string {
  return `Vcpu { ${vcpu.stage1 === null ? 'stage 1 off' : 'guest stage 1 on'}, ${lastAbort(vcpu)} }`;
}

/** AccessResult { ... }. */
export function describeAccessResult(r: AccessResult): string {
  const faults: string[] = [];
  for (let i = 0; i < r.nFaults; i++) {
    const f = r.fault(i);
    faults.push(
      `${faultClassName(f.esr)} L${f.level}${f.s1ptw ? ' s1ptw' : ''} ${f.handler} ${f.ret} (ESR 0x${f.esr.toString(16)})`,
    );
  }
  const addr = r.va >= 0 ? `va ${hexShort(r.va)} -> ipa ${hexShort(r.ipa)}` : `ipa ${hexShort(r.ipa)}`;
  const leaf = r.leafValid
    ? `leaf L${r.leafLevel} ${hex64(r.leafLo, r.leafHi)} at ipa ${hexShort(r.leafIpa)} (${hexShort(r.leafSize)} bytes)`
    : 'no leaf';
  return (
    `AccessResult { ${ACCESS_NAMES[r.access] ?? r.access} ${addr}: ${OUTCOME_NAMES[r.outcome] ?? r.outcome}` +
    `${r.errnoName !== null ? ` ${r.errnoName}` : ''}, ${r.nFaults} fault(s)${faults.length ? ` [${faults.join('; ')}]` : ''}, ${leaf} }`
  );
}

/** LeafResult { ... }: the level and the descriptor in hex, and what kind it is. */
export function describeLeafResult(r: LeafResult): string {
  const valid = (r.lo & 1) !== 0;
  const kind = !valid
    ? r.lo === 0 && r.hi === 0
      ? 'empty'
      : 'invalid'
    : r.level === 3
      ? 'page'
      : (r.lo & 2) !== 0
        ? 'table'
        : 'block';
  return `LeafResult { ${levelName(r.level)} ${hex64(r.lo, r.hi)} ${kind} }`;
}

/**
 * vcpu.explain(): the vCPU's last abort and the walk of its IPA as the vCPU's MMU sees it
 * (hardware AF as the VM has it), with the guest's stage-1 walk of FAR when stage 1 is on.
 * Returns the text.
 */
export function explainVcpu(vcpu: Vcpu): string {
  const kvm = vcpu.kvm;
  const head = describeVcpu(vcpu);
  if (vcpu.esr === 0) return head;
  const stage1 =
    vcpu.stage1 === null || esrIsS1ptw(vcpu.esr)
      ? null
      : explainStage1(vcpu.stage1, vcpu.far, (ipa) => kvm.readGuestPhys(ipa, 8), kvm.pgt);
  // HPFAR holds the IPA's page; with stage 1 off FAR is the IPA itself.
  const ipa = vcpu.stage1 === null ? vcpu.far : vcpu.faultIpa;
  return `${head}\n${explainIpa(kvm.pgt, ipa, { ha: kvm.hwAf, stage1 }).text}`;
}

/** Registers the summaries and helpers in the core's hook registry. Idempotent. */
export function installDebugHooks(): void {
  debugHooks.describe = (kind, obj) => {
    switch (kind) {
      case 'pgt':
        return describePgt(obj as Stage2PageTable);
      case 'kvm':
        return describeKvm(obj as Kvm);
      case 'vcpu':
        return describeVcpu(obj as Vcpu);
      case 'access-result':
        return describeAccessResult(obj as AccessResult);
      case 'leaf-result':
        return describeLeafResult(obj as LeafResult);
      default:
        return `[${kind}]`;
    }
  };
  debugHooks.ptdump = (pgt) => ptdump(pgt as Stage2PageTable);
  debugHooks.explain = (pgt, ipa) => explainIpa(pgt as Stage2PageTable, ipa).text;
  debugHooks.leafView = (pgt, ipa) => {
    const e = explainIpa(pgt as Stage2PageTable, ipa);
    return e.leaf;
  };
  debugHooks.vcpuExplain = (vcpu) => explainVcpu(vcpu as Vcpu);
}

installDebugHooks();
