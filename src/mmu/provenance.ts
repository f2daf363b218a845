/**
 * Provenance: why each stage-2 leaf the fault path installed or changed is what it is.
 *
 * One record per fault that mapped, relaxed or aged a leaf, in parallel growable typed arrays
 * (no object per fault), looked up by leaf (IPA and level) through a map of the latest record
 * per leaf, each record linking to the previous one of the same leaf (its history).
 *
 * The fault path calls record() once, at the end of user_mem_abort()'s decision, and
 * recordMkyoung() from handle_access_fault(); both read the fault object and the vCPU's
 * registers as they stand. What the fault object does not keep (the VMA's own page shift,
 * which clamp lowered it) is worked out again here from the same inputs: those are pure
 * functions of the VMA, the memslot and the fault's hva. Off by default (Kvm's `provenance`
 * option); the CLI turns it on.
 *
 * Record layout (index r):
 *   ipa[r], size[r], pfn[r]    Float64  the leaf's IPA and size, the host pfn it maps
 *   access[r]                  Float64  the run's access index (−1: unknown)
 *   step[r]                    Int32    the scenario step or replay line (−1: unknown)
 *   a[r]                       Int32    action (3 bits) | fault class << 3 (2 bits) |
 *                                       fault level + 1 << 5 (3 bits) | S1PTW << 8 | write << 9 |
 *                                       exec << 10 | level + 1 << 11 (3 bits) | MTE sanitised << 14 |
 *                                       memory type << 16 (2 bits) | type rule << 18 (3 bits) |
 *                                       backing << 21 (3 bits)
 *   b[r]                       Int32    VMA page shift | final shift << 8 | clamps << 16 (PROV_CLAMP_*)
 *   c[r]                       Int32    host folio order | host leaf shift << 8 | prot << 16
 *   prev[r]                    Int32    the leaf's previous record (−1: none)
 *   journal[r]                 Int32    the write journal's length after the change (−1: no journal)
 */

import { POW2 } from './host/granule.js';
import { KVM_PGTABLE_PROT_DEVICE, KVM_PGTABLE_PROT_NORMAL_NC } from '../pgtable/descriptor.js';
import {
  esrFaultLevel,
  esrFscIsAccessFlagFault,
  esrFscIsPermissionFault,
  esrIsS1ptw,
  kvmIsExecFault,
  kvmIsWriteFault,
} from './esr.js';
import { VM_PFNMAP } from './host/vma.js';
import { faultSupportsStage2HugeMapping } from './memslots.js';
import type { S2Fault } from './fault.js';
import { getVmaPageShift } from './fault.js';
import type { Kvm } from './vm.js';
import type { Vcpu } from './vcpu.js';
import { DESCRIPTION_HOOK, INSPECT_HOOK } from '../pgtable/debughooks.js';

/** Actions: what the fault path did to the leaf. */
export const PROV_MAP = 0;
export const PROV_RELAX = 1;
export const PROV_MKYOUNG = 2;
/** Action names, by PROV_* value. */
export const PROV_ACTION_NAMES: readonly string[] = ['map', 'relax', 'mkyoung'];

/** Fault classes (the ESR's FSC type). */
export const PROV_FAULT_NAMES: readonly string[] = ['translation', 'permission', 'access-flag'];

/** Memory types: the stage-2 MemAttr class the prot chose. */
export const PROV_MEMTYPE_NAMES: readonly string[] = ['normal', 'normal-nc', 'device'];

/**
 * The rule that chose the memory type: the pfn is in the linear map (cacheable, KVM can do
 * the CMOs); outside it a cacheable VMA (6.17, v7) or the seed's cacheable PFNMAP keeps it
 * cacheable; otherwise s2_force_noncacheable, Normal-NC with VM_ALLOW_ANY_UNCACHED (VFIO),
 * else Device; a permission or access-flag change keeps the leaf's type.
 */
export const PROV_RULE_NAMES: readonly string[] = [
  'pfn in the linear map',
  'cacheable VMA outside the linear map',
  'cacheable PFNMAP (seed)',
  'not cacheable: VM_ALLOW_ANY_UNCACHED gives Normal-NC',
  'not cacheable: Device',
  'unchanged',
];

/** Backings, by code (as the host VMA's `backing`). */
export const PROV_BACKING_NAMES: readonly string[] = [
  'anon',
  'thp',
  'hugetlb',
  'shmem',
  'pfnmap',
  'mixedmap',
  '?',
];

/** Size clamps (bits of b >> 16). */
/** Dirty logging forces page mappings. */
export const PROV_CLAMP_LOGGING = 1 << 0;
/** A PUD mapping did not fit the memslot's alignment or size: down to PMD. */
export const PROV_CLAMP_PUD_MEMSLOT = 1 << 1;
/** A PMD mapping did not fit the memslot's alignment or size: down to PAGE. */
export const PROV_CLAMP_PMD_MEMSLOT = 1 << 2;
/** force_pte (logging, a contiguous-PTE shift, or a memslot clamp to pages). */
export const PROV_CLAMP_FORCE_PTE = 1 << 3;
/** transparent_hugepage_adjust() promoted a page to a PMD block. */
export const PROV_CLAMP_THP = 1 << 4;
/** A permission fault reused the size of the block it hit. */
export const PROV_CLAMP_PERM_GRANULE = 1 << 5;
/** s2_force_noncacheable: no THP promotion for device memory. */
export const PROV_CLAMP_NONCACHEABLE = 1 << 6;
/** THP was tried and the host leaf (or memslot) kept pages. */
export const PROV_CLAMP_THP_NO = 1 << 7;
/** Clamp names, by bit position. */
export const PROV_CLAMP_NAMES: readonly string[] = [
  'dirty logging',
  'PUD does not fit the memslot',
  'PMD does not fit the memslot',
  'force_pte',
  'THP promoted to PMD',
  'permission fault keeps the block size',
  'non-cacheable: no THP',
  'THP not possible here',
];

const INITIAL = 256;

/** The latest record for each leaf, and the fault path's records. */
export class Provenance {
  /** Records made. */
  length = 0;
  /** The kernel variant of every record (the VM's). */
  readonly kernel: string;
  /** The context the driver sets before each access (scenario step, access index). */
  step = -1;
  access = -1;
  private ipa = new Float64Array(INITIAL);
  private size = new Float64Array(INITIAL);
  private pfn = new Float64Array(INITIAL);
  private acc = new Float64Array(INITIAL);
  private stp = new Int32Array(INITIAL);
  private a = new Int32Array(INITIAL);
  private b = new Int32Array(INITIAL);
  private c = new Int32Array(INITIAL);
  private prev = new Int32Array(INITIAL);
  private jrn = new Int32Array(INITIAL);
  /** Leaf key (IPA + level: IPAs are page-aligned) → its latest record. */
  private readonly latest = new Map<number, number>();
  private readonly kvm: Kvm;

  constructor(kvm: Kvm) {
    this.kvm = kvm;
    this.kernel = kvm.kernel.name;
  }

  /**
   * user_mem_abort()'s decision, after the install (`ret` its result: only 0, a change,
   * is recorded). Reads `fault` and the vCPU's ESR.
   */
  record(vcpu: Vcpu, fault: S2Fault, ret: number): void {
    if (ret !== 0) return;
    const kvm = this.kvm;
    const g = kvm.granule;
    const relax = fault.isPerm && fault.vmaPagesize === fault.faultGranule;
    const size = fault.vmaPagesize;
    const level = relax ? kvm.pgt.lastAttrLevel : levelOfSize(kvm, size);
    const leafSize = kvm.pgt.geo.granuleSize(level);
    const ipa = Math.floor(fault.faultIpa / leafSize) * leafSize;
    // The size decision, worked out again from the same inputs.
    const vma = kvm.mm.vmaLookupOp(fault);
    let clamps = 0;
    let rawShift = g.pageShift;
    if (fault.loggingActive) clamps |= PROV_CLAMP_LOGGING;
    else if (vma !== undefined) rawShift = getVmaPageShift(kvm, fault, vma);
    const slot = fault.memslot!;
    if (!fault.loggingActive && rawShift === g.pudShift) {
      if (!faultSupportsStage2HugeMapping(slot, fault, g.pudShift, g.pageShift, g.pmdShift))
        clamps |= PROV_CLAMP_PUD_MEMSLOT;
    }
    if (
      !fault.loggingActive &&
      (rawShift === g.pmdShift || (clamps & PROV_CLAMP_PUD_MEMSLOT) !== 0) &&
      !faultSupportsStage2HugeMapping(slot, fault, g.pmdShift, g.pageShift, g.pmdShift)
    )
      clamps |= PROV_CLAMP_PMD_MEMSLOT;
    if (fault.forcePte) clamps |= PROV_CLAMP_FORCE_PTE;
    if (fault.vmaShift === g.pageShift && !fault.forcePte) {
      if (fault.s2ForceNoncacheable) clamps |= PROV_CLAMP_NONCACHEABLE;
      else if (fault.isPerm && fault.faultGranule > kvm.pageSize) clamps |= PROV_CLAMP_PERM_GRANULE;
      else if (size > kvm.pageSize) clamps |= PROV_CLAMP_THP;
      else clamps |= PROV_CLAMP_THP_NO;
    }
    // The memory type and the rule that chose it.
    const prot = fault.prot;
    let memType = 0;
    let rule: number;
    if (relax) rule = 5;
    else if (prot & KVM_PGTABLE_PROT_DEVICE) {
      memType = 2;
      rule = 4;
    } else if (prot & KVM_PGTABLE_PROT_NORMAL_NC) {
      memType = 1;
      rule = 3;
    } else if (kvm.phys.pfnIsMapMemoryOp(fault)) rule = 0;
    else rule = kvm.kernel.cacheableOver === 'cacheable-pfnmap' ? 2 : 1;
    const mte = !fault.isPerm && !fault.s2ForceNoncacheable && kvm.mte && fault.mteAllowed;
    // The host page: the backing, its folio and the host's own leaf over the hva.
    const backing = vma === undefined ? 6 : backingCode(vma.backing, vma.vmFlags);
    const folio = fault.pfn >= 0 && kvm.phys.pfnIsMapMemoryOp(fault) ? kvm.phys.folioOrder(fault.pfn) : 0;
    const hostShift = kvm.mm.hostLeafShiftOp(fault);
    const r = this.push(ipa, leafSize, fault.pfn, level);
    this.a[r] = encodeA(vcpu.esr, relax ? PROV_RELAX : PROV_MAP, level, mte, memType, rule, backing);
    this.b[r] = (rawShift & 0xff) | ((fault.vmaShift & 0xff) << 8) | (clamps << 16);
    this.c[r] = (folio & 0xff) | ((hostShift & 0xff) << 8) | ((prot & 0xffff) << 16);
  }

  /** handle_access_fault(): the leaf at the vCPU's fault IPA got AF (kvm_pgtable_stage2_mkyoung). */
  recordMkyoung(vcpu: Vcpu): void {
    const kvm = this.kvm;
    const level = kvm.pgt.lastAttrLevel;
    const leafSize = kvm.pgt.geo.granuleSize(level);
    const ipa = Math.floor(vcpu.faultIpa / leafSize) * leafSize;
    const r = this.push(ipa, leafSize, -1, level);
    this.a[r] = encodeA(vcpu.esr, PROV_MKYOUNG, level, false, 0, 5, 6);
    this.b[r] = 0;
    this.c[r] = 0;
  }

  private push(ipa: number, size: number, pfn: number, level: number): number {
    const r = this.length;
    if (r === this.ipa.length) this.grow();
    this.ipa[r] = ipa;
    this.size[r] = size;
    this.pfn[r] = pfn;
    this.acc[r] = this.access;
    this.stp[r] = this.step;
    const key = ipa + level;
    this.prev[r] = this.latest.get(key) ?? -1;
    this.latest.set(key, r);
    const j = this.kvm.pgt.journal;
    this.jrn[r] = j === null ? -1 : j.length;
    this.length = r + 1;
    return r;
  }

  private grow(): void {
    const n = this.ipa.length * 2;
    const f = (x: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const y = new Float64Array(n);
      y.set(x);
      return y;
    };
    const i = (x: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const y = new Int32Array(n);
      y.set(x);
      return y;
    };
    this.ipa = f(this.ipa);
    this.size = f(this.size);
    this.pfn = f(this.pfn);
    this.acc = f(this.acc);
    this.stp = i(this.stp);
    this.a = i(this.a);
    this.b = i(this.b);
    this.c = i(this.c);
    this.prev = i(this.prev);
    this.jrn = i(this.jrn);
  }

  /** A one-line summary for console.log and debuggers (never the typed arrays). */
  [INSPECT_HOOK](): string {
    return `Provenance { ${this.length} records, ${this.latest.size} leaves, kernel ${this.kernel} }`;
  }
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }

  /** The latest record of the leaf at (ipa, level), or −1. */
  forLeaf(ipa: number, level: number): number {
    return this.latest.get(ipa + level) ?? -1;
  }

  /** The latest record of the leaf covering `ipa` (any level), or −1. */
  covering(ipa: number): number {
    const geo = this.kvm.pgt.geo;
    for (let level = 3; level >= geo.startLevel; level--) {
      const size = geo.granuleSize(level);
      const r = this.forLeaf(Math.floor(ipa / size) * size, level);
      if (r >= 0) return r;
    }
    return -1;
  }

  /** Record `r` decoded (a new object: cold path). */
  get(r: number): ProvenanceRecord {
    if (!(r >= 0 && r < this.length)) throw new RangeError(`provenance: no record ${r}`);
    const a = this.a[r]!;
    const b = this.b[r]!;
    const c = this.c[r]!;
    const clamps: string[] = [];
    for (let k = 0; k < PROV_CLAMP_NAMES.length; k++)
      if ((b >>> 16) & (1 << k)) clamps.push(PROV_CLAMP_NAMES[k]!);
    const action = a & 7;
    const faultLevel = ((a >>> 5) & 7) - 1;
    return {
      index: r,
      ipa: this.ipa[r]!,
      size: this.size[r]!,
      level: ((a >>> 11) & 7) - 1,
      action: PROV_ACTION_NAMES[action]!,
      step: this.stp[r]!,
      access: this.acc[r]!,
      fault: {
        class: PROV_FAULT_NAMES[(a >>> 3) & 3]!,
        level: faultLevel,
        s1ptw: (a & (1 << 8)) !== 0,
        write: (a & (1 << 9)) !== 0,
        exec: (a & (1 << 10)) !== 0,
      },
      kernel: this.kernel,
      vmaShift: action === PROV_MKYOUNG ? null : b & 0xff,
      finalShift: action === PROV_MKYOUNG ? null : (b >>> 8) & 0xff,
      clamps,
      memType: action === PROV_MAP ? PROV_MEMTYPE_NAMES[(a >>> 16) & 3]! : null,
      memTypeRule: PROV_RULE_NAMES[(a >>> 18) & 7]!,
      mteSanitised: (a & (1 << 14)) !== 0,
      backing: action === PROV_MKYOUNG ? null : PROV_BACKING_NAMES[(a >>> 21) & 7]!,
      pfn: this.pfn[r]! < 0 ? null : this.pfn[r]!,
      folioSize: action === PROV_MKYOUNG ? null : POW2[(c & 0xff) + this.kvm.pageShift]!,
      hostLeafSize: action === PROV_MKYOUNG || ((c >>> 8) & 0xff) === 0 ? null : POW2[(c >>> 8) & 0xff]!,
      prot: action === PROV_MKYOUNG ? null : (c >>> 16) & 0xffff,
      previous: this.prev[r]! < 0 ? null : this.prev[r]!,
      journalEnd: this.jrn[r]! < 0 ? null : this.jrn[r]!,
    };
  }

  /** The records of the leaf covering `ipa`, oldest first. */
  history(ipa: number): ProvenanceRecord[] {
    const out: ProvenanceRecord[] = [];
    for (let r = this.covering(ipa); r >= 0; r = this.prev[r]!) out.unshift(this.get(r));
    return out;
  }
}

/** One provenance record, decoded. */
export interface ProvenanceRecord {
  index: number;
  /** The leaf: its IPA, size and level. */
  ipa: number;
  size: number;
  level: number;
  /** 'map', 'relax' or 'mkyoung'. */
  action: string;
  /** The scenario step or replay line, and the run's access index (−1: unknown). */
  step: number;
  access: number;
  /** The stage-2 fault: class, ESR level, S1PTW, write, exec. */
  fault: { class: string; level: number; s1ptw: boolean; write: boolean; exec: boolean };
  /** The modelled kernel. */
  kernel: string;
  /** The VMA's page shift (get_vma_page_shift()) and the shift after the clamps (null for mkyoung). */
  vmaShift: number | null;
  finalShift: number | null;
  /** What lowered or raised the size (PROV_CLAMP_NAMES). */
  clamps: string[];
  /** The memory type a map chose, and the rule that chose it. */
  memType: string | null;
  memTypeRule: string;
  /** sanitise_mte_tags() ran. */
  mteSanitised: boolean;
  /** The host page: the VMA's backing, the pfn, its folio's size, the host leaf's size. */
  backing: string | null;
  pfn: number | null;
  folioSize: number | null;
  hostLeafSize: number | null;
  /** The KVM_PGTABLE_PROT_* bits mapped or relaxed to. */
  prot: number | null;
  /** The leaf's previous record. */
  previous: number | null;
  /** The write journal's length right after the change (null without a journal). */
  journalEnd: number | null;
}

function levelOfSize(kvm: Kvm, size: number): number {
  const geo = kvm.pgt.geo;
  for (let level = 3; level >= geo.startLevel; level--) if (geo.granuleSize(level) === size) return level;
  return 3;
}

function backingCode(backing: string, vmFlags: number): number {
  const i = PROV_BACKING_NAMES.indexOf(backing);
  if (i >= 0) return i;
  return vmFlags & VM_PFNMAP ? 4 : 6;
}

function encodeA(
  esr: number,
  action: number,
  level: number,
  mte: boolean,
  memType: number,
  rule: number,
  backing: number,
): number {
  const cls = esrFscIsPermissionFault(esr) ? 1 : esrFscIsAccessFlagFault(esr) ? 2 : 0;
  return (
    action |
    (cls << 3) |
    ((esrFaultLevel(esr) + 1) << 5) |
    (esrIsS1ptw(esr) ? 1 << 8 : 0) |
    (kvmIsWriteFault(esr) ? 1 << 9 : 0) |
    (kvmIsExecFault(esr) ? 1 << 10 : 0) |
    ((level + 1) << 11) |
    (mte ? 1 << 14 : 0) |
    (memType << 16) |
    (rule << 18) |
    (backing << 21)
  );
}
