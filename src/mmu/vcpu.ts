/**
 * A vCPU and its access loop: the guest touches an address, the hardware walks stage 2
 * (pgtable/hwwalk.ts); on a fault the syndrome goes to kvm_handle_guest_abort(), and the
 * access is retried until it completes, exits to the VMM, fails, or an exception is
 * injected. Nothing is allocated per access: results go into a reused AccessResult.
 */

import { errnoName } from '../pgtable/errno.js';
import { EXACT_RULE, badArgument, isWhole } from '../pgtable/argcheck.js';
import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  HwWalkResult,
  HwWalker,
} from '../pgtable/hwwalk.js';
import type { AccessKind, HwFaultClass } from '../pgtable/hwwalk.js';
import type { MemCache } from '../pgtable/pool.js';
import { LeafResult } from '../pgtable/stage2.js';
import {
  DESCRIPTION_HOOK,
  INSPECT_HOOK,
  VIEWS_NOT_LOADED,
  debugHooks,
  debugText,
} from '../pgtable/debughooks.js';
import { DOUBLE_FIELD, S2Op } from '../pgtable/op.js';
import { kvmHandleGuestAbort } from './abort.js';
import { FUSED_DECLINED, FusedFault } from './fastfault.js';
import { EXIT_ARM_NISV, EXIT_NONE, INJECTED_DABT, INJECTED_IABT, INJECTED_NONE } from './exits.js';
import { fscFor, makeEsr } from './esr.js';
import { S2Fault } from './fault.js';
import { HostOp } from './host/op.js';
import { S1_DESC, S1_DONE, S1_FAULT_TRANSLATION, Stage1Walk, s1FaultFsc } from './stage1.js';
import type { GuestStage1 } from './stage1.js';
import { SH_ISH, combineS1S2Attrs, combinedAttr, mairText } from '../pgtable/memattr.js';
import { AccessStats } from './stats.js';
import {
  ACC_AT,
  ACC_CAS,
  ACC_DC_CIVAC,
  ACC_DC_ZVA,
  ACC_EXEC,
  ACC_LD_PREIDX,
  ACC_READ,
  ACC_ST_PREIDX,
  ACC_WRITE,
  ACCESS_NAMES,
} from './access.js';
import type { Kvm } from './vm.js';

/** The vCPU's operands for the page table's get_leaf (reused: see S2Op). */
const leafOp = new S2Op();

/**
 * The in-carrier of Vcpu.accessOp(): the address the guest accesses (the IPA with stage 1
 * off, the VA with it). A hot caller owns one and reuses it, so that the address, usually past
 * 2^31, is never boxed as an argument.
 */
export class AccessOp {
  addr = DOUBLE_FIELD;
}

/** Outcomes of an access (docs/scenario.md). */
export const OUT_DONE = 0;
export const OUT_MMIO = 1;
export const OUT_NISV = 2;
export const OUT_ERROR = 3;
export const OUT_IABT = 4;
export const OUT_DABT = 5;
export const OUT_SERROR = 6;
export const OUT_SIGBUS = 7;
export const OUT_LIVELOCK = 8;
/** Outcome names, indexed by OUT_*. */
export const OUTCOME_NAMES = [
  'done',
  'mmio',
  'nisv',
  'error',
  'iabt',
  'dabt',
  'serror',
  'sigbus',
  'livelock',
] as const;

/** AccessResult.s1Result: no stage-1 result (stage 1 off, or the access never walked it). */
export const S1R_NONE = 0;
/** AccessResult.s1Result: the stage-1 leaf. */
export const S1R_LEAF = 1;
/** AccessResult.s1Result: the guest's own translation faulted. */
export const S1R_FAULT = 2;

/** What the vCPU's CPU reports to the guest beyond the host features (scenario `cpu` keys). */
export interface VcpuOptions {
  /** DCZID_EL0.BS as bytes: the block DC ZVA zeroes. Default 64. */
  dczvaBytes?: number;
  /** DCZID_EL0.DZP: DC ZVA is prohibited (the guest takes an UNDEF). Default false. */
  dzp?: boolean;
  /** AT with TCR_EL1.HA updates the access flag (IMPLEMENTATION DEFINED). Default false. */
  atUpdatesAf?: boolean;
  /**
   * Handle the commonest fault (a translation fault on anonymous or THP memory outside dirty
   * logging, MTE, userfaultfd and races) on the fused fast path (fastfault.ts). Default true;
   * false runs every fault through kvm_handle_guest_abort()'s general path. Either way the
   * results are identical (test/fastfault.props.test.ts).
   */
  fusedFaults?: boolean;
}

/** PAR_EL1 bit 11, RES1 in the 64-bit format. */
const PAR_RES1 = 1 << 11;

/** Faults one access may take before it is reported as a livelock. */
export const LIVELOCK_FAULTS = 16;

/** One stage-2 fault taken during an access. */
export interface FaultRecord {
  esr: number;
  /**
   * The fault's class (FAULT_TRANSLATION 1, FAULT_ACCESS_FLAG 2, FAULT_PERMISSION 3,
   * FAULT_EXTERNAL_ABORT 4; pgtable/hwwalk.ts), not the architectural FSC: that one, which adds
   * the level, is `esr & 0x3f`.
   */
  fsc: HwFaultClass;
  level: number;
  s1ptw: boolean;
  handler: string;
  ret: number;
}

/** The result of one access, reused between accesses (copy what you keep). */
export class AccessResult {
  access = 0;
  /** The IPA accessed (with a guest stage 1: the VA's translation, or the VA if it had none). */
  ipa = 0;
  /** With a guest stage 1: the VA the access named; −1 without. */
  va = -1;
  /** An abort the guest took from its own stage 1 (no stage-2 fault, KVM not involved). */
  stage1Fault = false;
  outcome = OUT_DONE;
  /** For OUT_ERROR: the negative errno. */
  errno = 0;
  /**
   * The records of every fault any access into this result has taken: reused, so that
   * nothing is allocated per fault. Only the first `nFaults` belong to the current access;
   * read them with fault(i), or take the `faults` copy.
   */
  private readonly faultPool: FaultRecord[] = [];
  /** Faults the current access took. */
  nFaults = 0;

  /**
   * The faults this access took, in order (a new array of the reused records: copy a record
   * to keep it past the next access). For a hot loop, use nFaults and fault(i) instead.
   */
  get faults(): readonly FaultRecord[] {
    return this.faultPool.slice(0, this.nFaults);
  }

  /** The i-th fault of this access (0 ≤ i < nFaults), without allocating. */
  fault(i: number): FaultRecord {
    if (!(i >= 0 && i < this.nFaults))
      throw new RangeError(`fault(${i}): this access took ${this.nFaults} fault(s)`);
    return this.faultPool[i]!;
  }
  /** The stage-2 leaf mapping the IPA afterwards (leafValid false: none). */
  leafValid = false;
  leafIpa = 0;
  leafLevel = 0;
  leafSize = 0;
  leafLo = 0;
  leafHi = 0;
  /** What this access cost (counters; see AccessStats). */
  readonly stats = new AccessStats();
  /** For OUT_MMIO/OUT_NISV: the IPA the VMM saw. */
  mmioIpa = 0;
  /** For OUT_SIGBUS: the signal's address lsb. */
  sigbusLsb = 0;
  /**
   * The access read (read, ld-preidx, exec) or compared (cas: the old value) 8 bytes: `valueLo`,
   * `valueHi` hold them (unsigned halves). An MMIO read completes with zero.
   */
  hasValue = false;
  valueLo = 0;
  valueHi = 0;
  /** DC ZVA while DCZID_EL0.DZP = 1: the guest took an UNDEF; nothing was translated or written. */
  undef = false;
  /**
   * The stage-1 result with a guest: S1R_NONE (stage 1 off, or not walked), S1R_LEAF (the leaf
   * after the access: s1DescLo/Hi at level s1Level in the table at s1TableIpa) or S1R_FAULT
   * (the guest's translation faulted: s1Fault, an S1_FAULT_*, at s1Level).
   */
  s1Result = S1R_NONE;
  s1DescLo = 0;
  s1DescHi = 0;
  s1Level = 0;
  s1TableIpa = 0;
  s1Fault = 0;
  /** With a guest, a completed data access: the effective attributes (a MAIR-form byte, memattr.ts combining). */
  memTypeValid = false;
  memAttr = 0;
  /** An AT that completed: PAR_EL1 as two unsigned halves. */
  parValid = false;
  parLo = 0;
  parHi = 0;

  /** The outcome's name. */
  get outcomeName(): string {
    return OUTCOME_NAMES[this.outcome]!;
  }

  /** The errno's name without the minus sign (`EFAULT`), or null. */
  get errnoName(): string | null {
    return this.outcome === OUT_ERROR ? errnoName(this.errno) : null;
  }

  /** @internal Records a fault, growing the record list only the first time it is needed. */
  pushFault(esr: number, fsc: number, level: number, s1ptw: boolean, handler: string, ret: number): void {
    let f = this.faultPool[this.nFaults];
    if (f === undefined) {
      f = { esr: 0, fsc: FAULT_TRANSLATION, level: 0, s1ptw: false, handler: '', ret: 0 };
      this.faultPool.push(f);
    }
    f.esr = esr >>> 0;
    // Only a walk that missed is recorded, so its fault is one of the classes, never FAULT_NONE.
    f.fsc = fsc as HwFaultClass;
    f.level = level;
    f.s1ptw = s1ptw;
    f.handler = handler;
    f.ret = ret;
    this.nFaults++;
  }

  /** Node's inspect hook (console.log): the access, its outcome, faults and leaf in hex. Returns the text. */
  [INSPECT_HOOK](): string {
    return debugText('access-result', this, `AccessResult { ${this.outcomeName}, ${this.nFaults} fault(s) }`);
  }

  /** The debugger's description hook (VS Code's variables pane): the same text. */
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }
}

/**
 * struct kvm_vcpu: the syndrome registers of the abort being handled (ESR, FAR, HPFAR), the
 * vCPU's memcache, its fault object (S2Fault, reset per fault), and what the last exit or
 * injection was.
 */
export class Vcpu {
  readonly kvm: Kvm;
  readonly memcache: MemCache;
  readonly hw: HwWalker;
  /** The guest's stage 1, or null when it runs with stage 1 off. */
  readonly stage1: GuestStage1 | null;
  private readonly s1walk = new Stage1Walk();
  /** The side-effect-free walk that reports the stage-1 leaf when the access's own walk did not finish. */
  private readonly peekWalk = new Stage1Walk();
  /** (stage-2 leaf IPA, attrIndx) pairs already reported by the attribute audit. */
  private readonly audited = new Set<number>();
  private readonly walk = new HwWalkResult();
  /** The last run() ended with a successful hardware walk (its result is the leaf). */
  private walkHit = false;
  private readonly leaf = new LeafResult();
  /** The carrier access() fills from its argument. */
  private readonly arg = new AccessOp();
  /** The address of the access being run (a copy of the carrier's, for the walk loop). */
  private addr = DOUBLE_FIELD;
  /** The pfn carrier of the data access (the host page behind the stage-2 output address). */
  private readonly dataPage = new HostOp();
  /** ESR_EL2 of the abort, as a signed 32-bit integer (see makeEsr; `>>> 0` for the register value). */
  esr = 0;
  /** The fault IPA from HPFAR_EL2 (the IPA's 4K page). */
  faultIpa = DOUBLE_FIELD;
  /** FAR_EL2: the faulting address (the IPA itself with stage 1 off). */
  far = DOUBLE_FIELD;
  /** The stage-2 fault being handled (struct kvm_s2_fault): kvm_handle_guest_abort() resets and fills it. */
  readonly fault = new S2Fault();
  /** Which path handled the last abort, and what that handler returned. */
  handler = 'none';
  handlerRet = 0;
  exitReason = EXIT_NONE;
  injected = INJECTED_NONE;
  pcSkipped = false;
  sigbus = false;
  sigbusLsb = 0;
  mmioIpa = 0;
  /**
   * What the next accesses store: `write`/`st-preidx` store valueLo/valueHi (8 bytes,
   * little-endian); `cas` compares with expectLo/expectHi and, if equal, stores the value.
   * Unsigned 32-bit halves; they stay as set until changed.
   */
  valueLo = 0;
  valueHi = 0;
  expectLo = 0;
  expectHi = 0;
  readonly dczvaBytes: number;
  readonly dzp: boolean;
  readonly atUpdatesAf: boolean;
  /** The fused fast path (VcpuOptions.fusedFaults), or null. */
  private readonly fused: FusedFault | null;

  /** @internal Faults the fused fast path handled so far (0 when it is off). */
  get fusedHandled(): number {
    return this.fused === null ? 0 : this.fused.handled;
  }

  constructor(kvm: Kvm, stage1: GuestStage1 | null = null, opts: VcpuOptions = {}) {
    this.kvm = kvm;
    this.memcache = kvm.newMemcache();
    this.hw = new HwWalker(kvm.pgt, { ha: kvm.hwAf });
    this.stage1 = stage1;
    this.dczvaBytes = opts.dczvaBytes ?? 64;
    this.dzp = opts.dzp ?? false;
    this.atUpdatesAf = opts.atUpdatesAf ?? false;
    this.fused = (opts.fusedFaults ?? true) ? new FusedFault(kvm) : null;
  }

  /**
   * One guest access at `ipa` (stage 1 off): walk, fault, handle, retry. Fills `out`
   * (which also receives this access's AccessStats). Returns the outcome. Throws a
   * RangeError or TypeError naming the argument for a kind that is not an ACC_*, an address
   * that is not a whole number below 2^53 (any the guest can name: past its spaces the
   * hardware answers with a fault), or an `out` that is not an AccessResult
   * (docs/decisions.md, "API boundary"); accessOp() is the unchecked form.
   */
  access(kind: number, addr: number, out: AccessResult): number {
    // The API boundary (argcheck.ts): a few comparisons; accessOp() is not checked.
    if (!isWhole(kind, ACC_READ, ACC_AT))
      badArgument('vcpu.access', 'kind', 'one of ACC_READ to ACC_AT (0 to 8)', kind);
    if (!isWhole(addr, 0, Number.MAX_SAFE_INTEGER)) badArgument('vcpu.access', 'addr', EXACT_RULE, addr);
    if (!(out instanceof AccessResult)) badArgument('vcpu.access', 'out', 'an AccessResult', out);
    // Addresses reach the large bodies in a carrier, not as arguments (docs/performance.md).
    this.arg.addr = addr;
    return this.accessOp(kind, this.arg, out);
  }

  /**
   * access() of `op.addr`: the form for a hot loop (the caller owns and reuses the AccessOp, so
   * no address is boxed). Returns the outcome.
   */
  accessOp(kind: number, op: AccessOp, out: AccessResult): number {
    const addr = op.addr;
    this.addr = addr;
    const kvm = this.kvm;
    const stats = out.stats;
    stats.reset();
    kvm.setStats(stats);
    const zeroedBefore = kvm.phys.stats.zeroedPages;
    const uffdBefore = kvm.mm.stats.uffdEvents;
    out.access = kind;
    out.ipa = addr;
    out.va = this.stage1 ? addr : -1;
    out.stage1Fault = false;
    out.nFaults = 0;
    out.errno = 0;
    out.hasValue = false;
    out.undef = false;
    out.s1Result = S1R_NONE;
    out.memTypeValid = false;
    out.parValid = false;
    out.outcome = this.run(kind, out);
    if (this.stage1 !== null && out.s1Result === S1R_NONE) this.peekStage1(addr, kind, out);
    const ipa = out.ipa;
    stats.hostPagesZeroed = kvm.phys.stats.zeroedPages - zeroedBefore;
    stats.uffdEvents = kvm.mm.stats.uffdEvents - uffdBefore;
    kvm.totals.add(stats);
    if (!kvm.locks.isBalanced()) {
      for (const d of kvm.locks.assertBalanced(`access ${ACCESS_NAMES[kind]} 0x${ipa.toString(16)}`))
        kvm.diagnose(d);
      kvm.locks.reset();
    }
    // The leaf that maps the IPA now: the completed access's own walk found it; otherwise
    // look it up (an exit or an injection may leave a leaf, or none).
    const w = this.walk;
    let lo: number;
    let hi: number;
    let level: number;
    if (this.walkHit && w.ipa === ipa) {
      lo = w.lo;
      hi = w.hi;
      level = w.level;
    } else {
      const l = this.leaf;
      leafOp.addr = ipa;
      const ok = kvm.pgt.getLeafOp(leafOp, l) === 0;
      lo = ok ? l.lo : 0;
      hi = l.hi;
      level = l.level;
    }
    out.leafValid = (lo & 1) !== 0;
    if (out.leafValid) {
      const geo = kvm.pgt.geo;
      const size = geo.sizes[level + 1]!;
      out.leafLevel = level;
      out.leafSize = size;
      out.leafIpa = Math.floor(ipa * geo.invSizes[level + 1]!) * size;
      out.leafLo = lo;
      out.leafHi = hi;
    }
    return out.outcome;
  }

  private run(kind: number, out: AccessResult): number {
    const addr = this.addr;
    const w = this.walk;
    this.walkHit = false;
    const s1 = this.stage1;
    const sw = this.s1walk;
    const iabt = kind === ACC_EXEC;
    const isv = kind === ACC_READ || kind === ACC_WRITE;
    const cm = kind === ACC_DC_CIVAC;
    const writeKind = kind === ACC_WRITE || kind === ACC_ST_PREIDX || kind === ACC_DC_ZVA || cm;
    if (kind === ACC_DC_ZVA && this.dzp) {
      // DCZID_EL0.DZP = 1: DC ZVA is prohibited and the guest takes an UNDEF at its own EL1
      // (Linux's guest kernel never issues it then). No translation, no memory access.
      out.undef = true;
      return OUT_DONE;
    }
    // AT with TCR_EL1.HA sets AF only where the implementation chooses to (cpu.atUpdatesAf).
    const updateAf = kind !== ACC_AT || this.atUpdatesAf;
    for (let n = 0; ; n++) {
      if (n >= LIVELOCK_FAULTS) {
        this.kvm.diagnose(`livelock: ${ACCESS_NAMES[kind]} at 0x${addr.toString(16)} faulted ${n} times`);
        return OUT_LIVELOCK;
      }
      let ipa = addr;
      if (s1 !== null) {
        // The guest's stage-1 walk: each descriptor read is a stage-2 access to its IPA, and
        // the descriptor is the 8 bytes at the stage-2 output address, in host memory.
        sw.va = addr;
        let st = s1.begin(sw);
        let ok = true;
        while (st === S1_DESC) {
          w.ipa = sw.descIpa;
          ok = this.s2Walk(sw.descWrite ? ACCESS_WRITE : ACCESS_READ, w);
          if (!ok) break;
          this.loadDesc(sw);
          st = s1.step(sw, writeKind || kind === ACC_CAS, iabt, updateAf);
          if (sw.writeBack) {
            // The hardware AF update lands in the page the stage-2 write walk reached.
            this.storeDesc(sw);
            sw.writeBack = false;
          }
        }
        if (!ok) {
          this.faultIpa = Math.floor(sw.descIpa / 4096) * 4096;
          this.far = addr;
          const o = this.takeAbort(out, iabt, sw.descWrite, false, true, false);
          if (o >= 0) return o;
          continue;
        }
        if (st !== S1_DONE) {
          out.s1Result = S1R_FAULT;
          out.s1Fault = st;
          out.s1Level = sw.faultLevel;
          // The guest's own translation fault: taken at its EL1, or reported in PAR_EL1 by AT.
          if (kind === ACC_AT) {
            out.parValid = true;
            out.parLo = (1 | (s1FaultFsc(st, sw.faultLevel) << 1) | PAR_RES1) >>> 0;
            out.parHi = 0;
            return OUT_DONE;
          }
          out.stage1Fault = true;
          return iabt ? OUT_IABT : OUT_DABT;
        }
        out.s1Result = S1R_LEAF;
        out.s1DescLo = sw.descLo;
        out.s1DescHi = sw.descHi;
        out.s1Level = sw.level;
        out.s1TableIpa = sw.tableIpa;
        ipa = sw.ipa;
        out.ipa = ipa;
        if (kind === ACC_AT) {
          this.setPar(out);
          return OUT_DONE;
        }
      }
      // The hardware: a read walk first for an atomic (its translation and access-flag
      // faults report a read), then the write permission check.
      const hwAccess: AccessKind = iabt ? ACCESS_EXEC : writeKind && !cm ? ACCESS_WRITE : ACCESS_READ;
      let wnr = writeKind;
      w.ipa = ipa;
      let ok = this.s2Walk(hwAccess, w);
      if (ok && kind === ACC_CAS) {
        ok = this.s2Walk(ACCESS_WRITE, w);
        wnr = !ok && w.fault === FAULT_PERMISSION;
      }
      if (ok) {
        if (s1 !== null) {
          this.auditAttributes(sw, w);
          out.memTypeValid = true;
          out.memAttr = combinedAttr(
            combineS1S2Attrs(s1.mairAttr(sw.attrIndx), sw.sh, w.memattr, w.sh, this.kvm.pgt.fwb),
          );
        }
        this.walkHit = true;
        this.dataAccess(kind, out);
        return OUT_DONE;
      }
      // HPFAR is the 4K page of the IPA; FAR the address the access named.
      this.faultIpa = Math.floor(ipa / 4096) * 4096;
      this.far = addr;
      const o = this.takeAbort(out, iabt, wnr, isv, false, cm);
      if (o >= 0) {
        if (o === OUT_MMIO && (kind === ACC_READ || kind === ACC_LD_PREIDX || kind === ACC_EXEC)) {
          // The VMM completes an MMIO read with zero.
          out.hasValue = true;
          out.valueLo = 0;
          out.valueHi = 0;
        }
        return o;
      }
    }
  }

  /** Loads the descriptor at the stage-2 output address of this.walk into the stage-1 walk. */
  private loadDesc(sw: Stage1Walk): void {
    const c = this.kvm.phys.contents;
    const pa = this.walk.pa;
    const ps = this.kvm.pageSize;
    const page = this.dataPage;
    page.pfn = Math.floor(pa / ps);
    c.read64Op(page, pa - page.pfn * ps);
    sw.descLo = c.lo;
    sw.descHi = c.hi;
  }

  /** Stores the stage-1 walk's descriptor at the stage-2 output address of this.walk. */
  private storeDesc(sw: Stage1Walk): void {
    const c = this.kvm.phys.contents;
    const pa = this.walk.pa;
    const ps = this.kvm.pageSize;
    const page = this.dataPage;
    page.pfn = Math.floor(pa / ps);
    c.write64Op(page, pa - page.pfn * ps, sw.descLo, sw.descHi);
  }

  /**
   * The memory side of a completed access, at the stage-2 output address in this.walk (the host
   * page behind the leaf): loads report the 8 bytes of the naturally aligned doubleword, stores
   * write valueLo/valueHi there, CAS compares with expectLo/expectHi, DC ZVA zeroes its block.
   */
  private dataAccess(kind: number, out: AccessResult): void {
    if (kind === ACC_DC_CIVAC) return;
    const c = this.kvm.phys.contents;
    const pa = this.walk.pa;
    const ps = this.kvm.pageSize;
    const page = this.dataPage;
    page.pfn = Math.floor(pa / ps);
    const off = pa - page.pfn * ps;
    if (kind === ACC_DC_ZVA) {
      const bs = this.dczvaBytes;
      c.zeroOp(page, off - (off % bs), bs);
      return;
    }
    const off8 = off - (off % 8);
    if (kind === ACC_WRITE || kind === ACC_ST_PREIDX) {
      c.write64Op(page, off8, this.valueLo, this.valueHi);
      return;
    }
    c.read64Op(page, off8);
    out.hasValue = true;
    out.valueLo = c.lo;
    out.valueHi = c.hi;
    if (kind === ACC_CAS && c.lo === this.expectLo && c.hi === this.expectHi) {
      c.write64Op(page, off8, this.valueLo, this.valueHi);
    }
  }

  /**
   * PAR_EL1 after a successful AT S1E1R (F = 0): the output address (the IPA), SH and the
   * stage-1 MAIR attribute. Bit 11 is RES1; NS (bit 9) is UNKNOWN for a Non-secure regime and
   * reported 0. SH reads Outer Shareable for Device and Normal Non-cacheable memory.
   */
  private setPar(out: AccessResult): void {
    const sw = this.s1walk;
    const attr = this.stage1!.mairAttr(sw.attrIndx) & 0xff;
    const uncached = (attr & 0xf0) === 0 || attr === 0x44 || attr === 0x40;
    const sh = uncached ? 2 : sw.sh;
    const ipa = sw.ipa;
    out.parValid = true;
    out.parLo = ((ipa % 2 ** 32) - (ipa % 4096) + (sh << 7) + PAR_RES1) >>> 0;
    out.parHi = ((Math.floor(ipa / 2 ** 32) & 0xffff) | (attr << 24)) >>> 0;
  }

  /**
   * The stage-1 leaf of `va` as guest memory holds it now, read as a debugger reads guest memory
   * (memslot → host mapping, nothing faulted in, no AF update): for accesses whose own walk did
   * not finish (a stage-2 abort on a table page ended them, or DC ZVA took an UNDEF). Cold path.
   */
  private peekStage1(va: number, kind: number, out: AccessResult): void {
    const s1 = this.stage1!;
    const sw = this.peekWalk;
    sw.va = va;
    let st = s1.begin(sw);
    while (st === S1_DESC) {
      const b = this.kvm.readGuestPhys(sw.descIpa, 8);
      sw.descLo = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
      sw.descHi = (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0;
      st = s1.step(sw, false, kind === ACC_EXEC, false);
    }
    if (st === S1_DONE) {
      out.s1Result = S1R_LEAF;
      out.s1DescLo = sw.descLo;
      out.s1DescHi = sw.descHi;
      out.s1Level = sw.level;
      out.s1TableIpa = sw.tableIpa;
    } else {
      out.s1Result = S1R_FAULT;
      out.s1Fault = st === S1_DESC ? S1_FAULT_TRANSLATION : st;
      out.s1Level = sw.faultLevel;
    }
  }

  /**
   * The MMU's stage-2 walk for one access of the guest (or of its stage-1 walk), with the
   * hardware access-flag update that VTCR_EL2.HA makes on a CPU with FEAT_HAFDBS: an aged
   * leaf is made young by the walk itself, without an access-flag fault. Returns true when
   * the access translates.
   */
  private s2Walk(access: AccessKind, w: HwWalkResult): boolean {
    const ok = this.hw.walkAt(access, w);
    if (ok && w.afWouldBeSet && this.hw.setAccessFlag(w)) this.kvm.stats.hwAfUpdates++;
    return ok;
  }

  /**
   * Takes a stage-2 abort for the fault in this.walk at this.faultIpa (FAR = this.far) and runs
   * kvm_handle_guest_abort(). Returns the access's outcome, or −1 to retry the access.
   */
  private takeAbort(
    out: AccessResult,
    iabt: boolean,
    wnr: boolean,
    isv: boolean,
    s1ptw: boolean,
    cm: boolean,
  ): number {
    const w = this.walk;
    // The syndrome; HPFAR (faultIpa) and FAR are already set.
    this.esr = makeEsr(iabt, fscFor(w.fault, w.level), wnr, isv, s1ptw, cm);
    this.exitReason = EXIT_NONE;
    this.injected = INJECTED_NONE;
    this.pcSkipped = false;
    this.sigbus = false;
    out.stats.faults++;
    // The fused fast path of the commonest fault first (fastfault.ts); it declines anything else.
    let ret = this.fused !== null ? this.fused.handle(this) : FUSED_DECLINED;
    if (ret === FUSED_DECLINED) ret = kvmHandleGuestAbort(this);
    out.pushFault(this.esr, w.fault, w.level, s1ptw, this.handler, this.handlerRet);
    if (ret < 0) {
      out.errno = ret;
      return OUT_ERROR;
    }
    if (ret === 0) {
      out.stats.exits++;
      out.mmioIpa = this.mmioIpa;
      return this.exitReason === EXIT_ARM_NISV ? OUT_NISV : OUT_MMIO;
    }
    if (this.injected !== INJECTED_NONE) {
      return this.injected === INJECTED_IABT
        ? OUT_IABT
        : this.injected === INJECTED_DABT
          ? OUT_DABT
          : OUT_SERROR;
    }
    if (this.sigbus) {
      out.sigbusLsb = this.sigbusLsb;
      return OUT_SIGBUS;
    }
    if (this.pcSkipped) return OUT_DONE;
    return -1;
  }

  /**
   * The attribute audit: a guest mapping whose stage-1 memory type and the stage-2 type
   * combine into something neither asked for in a way that matters (cacheable at stage 1
   * made non-cacheable or Device by stage 2; Device at stage 1 forced to Normal by FWB).
   * Reported once per stage-2 leaf and attribute index, as a diagnostic.
   */
  private auditAttributes(sw: Stage1Walk, w: HwWalkResult): void {
    const s1 = this.stage1!;
    const mair = s1.mairAttr(sw.attrIndx);
    const fwb = this.kvm.pgt.fwb;
    const combined = combinedAttr(combineS1S2Attrs(mair, SH_ISH, w.memattr, w.sh, fwb));
    const s1Device = (mair & 0xf0) === 0;
    const s1Cacheable = !s1Device && (mair & 0xf0) !== 0x40 && (mair & 0x0f) !== 0x04;
    const outDevice = (combined & 0xf0) === 0;
    const outNc = combined === 0x44;
    const mismatch = (s1Cacheable && (outDevice || outNc)) || (s1Device && !outDevice);
    if (!mismatch) return;
    const leafSize = this.kvm.pgt.geo.granuleSize(w.level);
    const key = Math.floor(w.pa / leafSize) * (leafSize / 4096) * 8 + sw.attrIndx;
    if (this.audited.has(key)) return;
    this.audited.add(key);
    this.kvm.diagnose(
      `attribute mismatch: VA 0x${sw.va.toString(16)} is ${mairText(mair)} at stage 1 (MAIR.Attr${sw.attrIndx}), ` +
        `stage 2 MemAttr 0x${w.memattr.toString(16)}${fwb ? ' (FWB)' : ''} makes it ${mairText(combined)}`,
    );
  }

  // ---- debugger helpers: cold; the text comes from src/views through pgtable/debughooks.ts ----

  /** The last abort (ESR, IPA, handler) and the walk of its IPA, stage 1 included. Returns the text. */
  explain(): string {
    return debugHooks.vcpuExplain?.(this) ?? VIEWS_NOT_LOADED;
  }

  /** Node's inspect hook (console.log): a short summary of the last abort. Returns the text. */
  [INSPECT_HOOK](): string {
    return debugText(
      'vcpu',
      this,
      `Vcpu { handler ${this.handler}, ESR 0x${(this.esr >>> 0).toString(16)} }`,
    );
  }

  /** The debugger's description hook (VS Code's variables pane): the same summary. */
  [DESCRIPTION_HOOK](): string {
    return this[INSPECT_HOOK]();
  }

  /** JSON.stringify: the summary, not the VM. Returns { summary }. */
  toJSON(): { summary: string } {
    return { summary: this[INSPECT_HOOK]() };
  }
}
