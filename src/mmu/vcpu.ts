/**
 * A vCPU and its access loop: the guest touches an address, the hardware walks stage 2
 * (pgtable/hwwalk.ts); on a fault the syndrome goes to kvm_handle_guest_abort(), and the
 * access is retried until it completes, exits to the VMM, fails, or an exception is
 * injected. Nothing is allocated per access: results go into a reused AccessResult.
 */

import { errnoName } from '../pgtable/descriptor.js';
import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  FAULT_PERMISSION,
  HwWalkResult,
  HwWalker,
} from '../pgtable/hwwalk.js';
import type { AccessKind } from '../pgtable/hwwalk.js';
import type { MemCache } from '../pgtable/pool.js';
import { LeafResult } from '../pgtable/stage2.js';
import { kvmHandleGuestAbort } from './abort.js';
import { EXIT_ARM_NISV, EXIT_NONE, INJECTED_DABT, INJECTED_IABT, INJECTED_NONE } from './exits.js';
import { fscFor, makeEsr } from './esr.js';
import { newFaultinResult } from './host/mm.js';
import type { FaultinResult } from './host/mm.js';
import type { HvaProt } from './memslots.js';
import { AccessStats } from './vm.js';
import type { Kvm } from './vm.js';

/** Guest access kinds (scenario-format.md `access`). */
export const ACC_READ = 0;
export const ACC_WRITE = 1;
export const ACC_EXEC = 2;
/** An atomic read-modify-write: translation/AF faults report a read, a permission fault a write. */
export const ACC_CAS = 3;
/** Loads/stores whose data abort has no valid syndrome (ISV = 0). */
export const ACC_LD_PREIDX = 4;
export const ACC_ST_PREIDX = 5;
export const ACC_DC_ZVA = 6;
/** A cache-maintenance instruction (CM = 1, WnR = 1). */
export const ACC_DC_CIVAC = 7;

/** Access kind names, indexed by ACC_*. */
export const ACCESS_NAMES = [
  'read',
  'write',
  'exec',
  'cas',
  'ld-preidx',
  'st-preidx',
  'dc-zva',
  'dc-civac',
] as const;

/** Outcomes of an access (scenario-format.md). */
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

/** Faults one access may take before it is reported as a livelock. */
export const LIVELOCK_FAULTS = 16;

/** One stage-2 fault taken during an access. */
export interface FaultRecord {
  esr: number;
  /** 'translation' | 'access-flag' | 'permission' | 'other' */
  fsc: number;
  level: number;
  s1ptw: boolean;
  handler: string;
  ret: number;
}

/** The result of one access, reused between accesses (copy what you keep). */
export class AccessResult {
  access = 0;
  ipa = 0;
  outcome = OUT_DONE;
  /** For OUT_ERROR: the negative errno. */
  errno = 0;
  /** Faults taken, in order: the first `nFaults` records are valid. */
  readonly faults: FaultRecord[] = [];
  nFaults = 0;
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
    let f = this.faults[this.nFaults];
    if (f === undefined) {
      f = { esr: 0, fsc: 0, level: 0, s1ptw: false, handler: '', ret: 0 };
      this.faults.push(f);
    }
    f.esr = esr;
    f.fsc = fsc;
    f.level = level;
    f.s1ptw = s1ptw;
    f.handler = handler;
    f.ret = ret;
    this.nFaults++;
  }
}

/**
 * struct kvm_vcpu: the syndrome registers of the abort being handled, the vCPU's memcache,
 * the scratch user_mem_abort() uses, and what the last exit or injection was.
 */
export class Vcpu {
  readonly kvm: Kvm;
  readonly memcache: MemCache;
  readonly hw: HwWalker;
  private readonly walk = new HwWalkResult();
  private readonly leaf = new LeafResult();
  /** ESR_EL2 of the abort. */
  esr = 0;
  /** The fault IPA from HPFAR_EL2 (the IPA's 4K page). */
  faultIpa = 0;
  /** FAR_EL2: the faulting address (the IPA itself with stage 1 off). */
  far = 0;
  /** user_mem_abort's working fault_ipa (THP adjustment moves it). */
  ufFaultIpa = 0;
  readonly faultin: FaultinResult = newFaultinResult();
  readonly hvaProt: HvaProt = { writable: false };
  /** Which path handled the last abort, and what that handler returned. */
  handler = 'none';
  handlerRet = 0;
  exitReason = EXIT_NONE;
  injected = INJECTED_NONE;
  pcSkipped = false;
  sigbus = false;
  sigbusLsb = 0;
  mmioIpa = 0;

  constructor(kvm: Kvm) {
    this.kvm = kvm;
    this.memcache = kvm.newMemcache();
    this.hw = new HwWalker(kvm.pgt);
  }

  /**
   * One guest access at `ipa` (stage 1 off): walk, fault, handle, retry. Fills `out`
   * (which also receives this access's AccessStats). Returns the outcome.
   */
  access(kind: number, ipa: number, out: AccessResult): number {
    const kvm = this.kvm;
    const stats = out.stats;
    stats.reset();
    kvm.setStats(stats);
    const zeroedBefore = kvm.phys.stats.zeroedPages;
    const uffdBefore = kvm.mm.stats.uffdEvents;
    out.access = kind;
    out.ipa = ipa;
    out.nFaults = 0;
    out.errno = 0;
    out.outcome = this.run(kind, ipa, out);
    stats.hostPagesZeroed = kvm.phys.stats.zeroedPages - zeroedBefore;
    stats.uffdEvents = kvm.mm.stats.uffdEvents - uffdBefore;
    kvm.totals.add(stats);
    if (!kvm.locks.isBalanced()) {
      for (const d of kvm.locks.assertBalanced(`access ${ACCESS_NAMES[kind]} 0x${ipa.toString(16)}`))
        kvm.diagnose(d);
      kvm.locks.reset();
    }
    // The leaf that maps the IPA now.
    const l = this.leaf;
    out.leafValid = false;
    if (kvm.pgt.getLeaf(ipa, l) === 0 && (l.lo & 1) !== 0) {
      const size = kvm.pgt.geo.granuleSize(l.level);
      out.leafValid = true;
      out.leafLevel = l.level;
      out.leafSize = size;
      out.leafIpa = Math.floor(ipa / size) * size;
      out.leafLo = l.lo;
      out.leafHi = l.hi;
    }
    return out.outcome;
  }

  private run(kind: number, ipa: number, out: AccessResult): number {
    const kvm = this.kvm;
    const w = this.walk;
    const iabt = kind === ACC_EXEC;
    const isv = kind === ACC_READ || kind === ACC_WRITE;
    const cm = kind === ACC_DC_CIVAC;
    const writeKind = kind === ACC_WRITE || kind === ACC_ST_PREIDX || kind === ACC_DC_ZVA || cm;
    for (let n = 0; ; n++) {
      // The hardware: a read walk first for an atomic (its translation and access-flag
      // faults report a read), then the write permission check.
      let hwAccess: AccessKind = iabt ? ACCESS_EXEC : writeKind ? ACCESS_WRITE : ACCESS_READ;
      if (cm) hwAccess = ACCESS_READ;
      let wnr = writeKind;
      let ok = this.hw.walk(ipa, hwAccess, w);
      if (ok && kind === ACC_CAS) {
        ok = this.hw.walk(ipa, ACCESS_WRITE, w);
        wnr = !ok && w.fault === FAULT_PERMISSION;
      }
      if (ok) return OUT_DONE;
      if (n >= LIVELOCK_FAULTS) {
        kvm.diagnose(`livelock: ${ACCESS_NAMES[kind]} at 0x${ipa.toString(16)} faulted ${n} times`);
        return OUT_LIVELOCK;
      }
      // The abort: syndrome, HPFAR (the 4K page of the IPA) and FAR.
      this.esr = makeEsr(iabt, fscFor(w.fault, w.level), wnr, isv, false, cm);
      this.faultIpa = Math.floor(ipa / 4096) * 4096;
      this.far = ipa;
      this.exitReason = EXIT_NONE;
      this.injected = INJECTED_NONE;
      this.pcSkipped = false;
      this.sigbus = false;
      out.stats.faults++;
      const ret = kvmHandleGuestAbort(this);
      out.pushFault(this.esr, w.fault, w.level, false, this.handler, this.handlerRet);
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
    }
  }
}
