/**
 * Runs a validated scenario: builds the host (physical memory, VMAs), the VM and its
 * memslots, then the steps, reporting each access, each refused memslot and each dirty-log
 * harvest to a sink, and a summary at the end (docs/scenario.md).
 */

import { hex64 } from '../pgtable/descriptor.js';
import { cpuCostParams, resolveCpu } from '../mmu/cpu.js';
import type { CpuFeatures } from '../mmu/cpu.js';
import { CostBreakdown, costShapeOf, modelledCost } from '../mmu/cost.js';
import type { CostCause, CostParams, CostShape } from '../mmu/cost.js';
import {
  MT_DEVICE_nGnRE,
  MT_DEVICE_nGnRnE,
  MT_NORMAL,
  MT_NORMAL_NC,
  MT_NORMAL_TAGGED,
  VM_ALLOW_ANY_UNCACHED,
  VM_EXEC,
  VM_IO,
  VM_MAYWRITE,
  VM_MTE_ALLOWED,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
  vmaByName,
} from '../mmu/host/vma.js';
import type { Vma as HostVma } from '../mmu/host/vma.js';
import type { KernelName } from '../mmu/kernel.js';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../mmu/memslots.js';
import { auditHostConsistency, explainedBy, formatHostViolation } from '../mmu/hostaudit.js';
import type { HostViolation } from '../mmu/hostaudit.js';
import { S1_FAULT_NAMES } from '../mmu/stage1.js';
import { stage1Builder } from './parse.js';
import { mairText } from '../pgtable/memattr.js';
import { permutation } from './permutation.js';
import {
  AccessResult,
  OUT_DABT,
  OUT_ERROR,
  OUT_IABT,
  OUT_MMIO,
  OUT_NISV,
  OUT_SERROR,
  OUT_SIGBUS,
  S1R_FAULT,
  S1R_LEAF,
  Vcpu,
} from '../mmu/vcpu.js';
import { ACCESS_KIND_BY_NAME, ACCESS_NAMES, ACC_AT, ACC_DC_CIVAC, ACC_DC_ZVA } from '../mmu/access.js';
import { Kvm } from '../mmu/vm.js';
import { AccessStats } from '../mmu/stats.js';
import type { AccessKind, MemType, Prot, Scenario, ScenarioMemslot, Step } from './types.js';
import type { Race, ScenarioVma } from './types.js';
import { GRANULE_BYTES, vmaMteAllowed } from './types.js';
import { memoryFailure, mmapFixed, munmapRange, uffdRegister, uffdSnapshot } from '../mmu/host/events.js';
import type { VmaSpec } from '../mmu/host/mm.js';
import type { UffdEvent } from '../mmu/host/uffd.js';
import { ESR_ELx_WNR } from '../mmu/esr.js';
import { RACE_INVALIDATE, RACE_NONE, RACE_OTHER_VCPU, RACE_ZAP_HOST_PTE } from '../mmu/races.js';

/** RACE_* by the scenario's race names. */
const RACE_CODE: Record<Race, number> = {
  invalidate: RACE_INVALIDATE,
  'zap-host-pte': RACE_ZAP_HOST_PTE,
  'other-vcpu': RACE_OTHER_VCPU,
};

/** Where a run's results go. The AccessResult is borrowed: copy what you keep. */
export interface RunSink {
  /** A memslot creation kvm_arch_prepare_memory_region() (or KVM) refused. */
  memslotRefused?(slot: number, errno: string, step: number | null): void;
  /** One `dirtyLog get-and-clear` step: the dirty gfns, ascending. */
  dirtyLog?(step: number, slot: number, gfns: readonly number[]): void;
  /** One guest access; `extra` carries what the runner knows beyond the AccessResult. */
  access?(step: number, r: AccessResult, extra?: AccessExtra): void;
  /** One `hostWrite` step in a run with userfaultfd registrations: the events it raised. */
  hostWrite?(
    step: number,
    write: { vma: string; offset: number; size: number },
    uffdEvents: UffdEvent[],
  ): void;
}

/** What an access line reports beyond its AccessResult (host events, issue 8). */
export interface AccessExtra {
  /** The userfaultfd events the access raised, in order; null when no VMA is registered. */
  uffdEvents: UffdEvent[] | null;
  /** For a `sigbus` outcome: the hva kvm_send_hwpoison_signal() reported. */
  sigbusAddr: number;
}

/** The run's totals (the `summary` line). */
export interface RunSummary {
  accesses: number;
  faults: number;
  maps: number;
  relaxes: number;
  mmioExits: number;
  uffdEvents: number;
  errors: Record<string, number>;
  injected: number;
  tablePages: number;
  dcacheBytes: number;
  icacheBytes: number;
  tlbi: number;
  dirtyPages: number;
  diagnostics: string[];
  /** Outcomes by name (an s2emu addition, useful in reports). */
  outcomes: Record<string, number>;
  /** Access-flag faults handled. */
  mkyoungs: number;
  /** Stage-2 access flags the MMU set itself (VTCR_EL2.HA on a CPU with FEAT_HAFDBS): no fault. */
  hwAfUpdates: number;
  /** Whole-I-cache invalidations (ranges too large to walk). */
  icacheInvalAll: number;
  /** Host pages allocated (and zeroed) by faults. */
  hostPagesZeroed: number;
  /** Pages whose MTE tags were cleared. */
  mtePagesCleared: number;
  /** Modelled hardware time of the whole run, ns (cost.ts; host-side steps included). */
  modelledNs: number;
  /** The same split by cause, ns. */
  modelledByCause: Record<CostCause, number>;
  /** The preset whose unit costs priced the run (generic-v8 without a profile). */
  costModel: string;
  /** With `onError: "stop"`: the step whose KVM_RUN failed and ended the run. */
  stoppedAtStep?: number;
}

/** A run-time error in a scenario that passed validation (e.g. the host ran out of RAM). */
export class ScenarioRunError extends Error {
  override name = 'ScenarioRunError';
}

/** The vCPU's ACC_* kind of each scenario access name (derived from the one table, mmu/access.ts). */
const ACCESS_KIND: Readonly<Record<AccessKind, number>> = ACCESS_KIND_BY_NAME;

const MEM_TYPE: Record<MemType, number> = {
  normal: MT_NORMAL,
  'normal-tagged': MT_NORMAL_TAGGED,
  'normal-nc': MT_NORMAL_NC,
  'device-nGnRE': MT_DEVICE_nGnRE,
  'device-nGnRnE': MT_DEVICE_nGnRnE,
};

/** VM_READ/VM_WRITE/VM_EXEC for a prot string. Returns the bits. */
export function protBits(p: Prot): number {
  return VM_READ | (p.includes('w') ? VM_WRITE : 0) | (p.includes('x') ? VM_EXEC : 0);
}

/** Options of a run. */
export interface RunOptions {
  /** Overrides the scenario's `kernel`. */
  kernel?: KernelName;
  /** Called every `progressEvery` accesses with (done, total), for progress bars. */
  progress?: (done: number, total: number) => void;
  progressEvery?: number;
  /**
   * Audit the host consistency of stage 2 after the memslots and after every step
   * (src/mmu/hostaudit.ts): each violation no modelled kernel behaviour explains becomes a
   * diagnostic (once) and an entry of `hostAuditFailures`. Off by default in the library.
   * `true` or `'full'` audits every leaf after every step; `'incremental'` (the CLI's
   * default) audits, after an access, touch or age step, only the leaves its accesses ended
   * on and the ranges its MMU-notifier invalidations unmapped, and every leaf after any other
   * step (host events, memslots, dirty logging): work per access instead of work per leaf per
   * step.
   */
  auditHost?: boolean | 'full' | 'incremental';
  /**
   * Handle the commonest fault on the fused fast path (VcpuOptions.fusedFaults; default
   * true). The results are the same either way; false is for tests that patch the general
   * path's internals and for the differential test of the two.
   */
  fusedFaults?: boolean;
  /**
   * Journal every stage-2 descriptor write (kvm.pgt.journal), one unit per access and per
   * other step, so the table can be rebuilt as it was after any of them (src/views/timetravel.ts).
   * Off by default in the library; on in the CLI.
   */
  journal?: boolean;
  /** Record the fault path's provenance of each leaf (kvm.provenance). Off by default. */
  provenance?: boolean;
  /** Called as each step starts, with its index (a debugger's "which step am I in"). */
  stepStart?: (step: number) => void;
}

/**
 * Step kinds an incremental audit audits by their dirty ranges: guest accesses and aging.
 * After any other step (a host event, a memslot or dirty-logging change) it audits every
 * leaf, so that a host change the model failed to invalidate is still caught.
 */
const INCREMENTAL_AUDIT_STEPS: ReadonlySet<string> = new Set(['access', 'touch', 'age']);

/** More dirty ranges than this in one step: the incremental audit audits every leaf instead. */
const MAX_DIRTY_RANGES = 4096;

/** Counts the accesses a scenario will make (for progress reporting). */
export function countAccesses(s: Scenario): number {
  let n = 0;
  for (const st of s.steps) {
    if (st.kind === 'access') n++;
    else if (st.kind === 'touch') n += Math.ceil(st.size / st.stride);
  }
  return n;
}

/**
 * A scenario run: the host and VM it builds, and the steps. Use run() once.
 */
export class ScenarioRunner {
  readonly scenario: Scenario;
  readonly cpu: CpuFeatures;
  readonly kvm: Kvm;
  readonly vcpu: Vcpu;
  private readonly result = new AccessResult();
  private readonly summary: RunSummary;
  private readonly opts: RunOptions;
  /** The cost model's unit costs (the CPU profile's) and the VM's shape. */
  readonly costParams: CostParams;
  readonly costShape: CostShape;
  private readonly costScratch = new CostBreakdown();
  /** Where each VMA name's mapping starts (file VMAs and mmap steps): `name + offset` addressing. */
  private readonly nameStart = new Map<string, number>();
  /** Whether any VMA has been registered with userfaultfd (access lines then list events). */
  private uffdRegistered = false;
  /** With `auditHost`: the violations no kernel behaviour explains (model bugs), by step. */
  readonly hostAuditFailures: { step: number | null; violation: HostViolation }[] = [];
  private readonly hostAuditSeen = new Set<string>();
  /**
   * The incremental audit's IPA ranges changed during the current step, as [start, end) pairs
   * (merged when they touch): the leaves the step's accesses ended on and the ranges MMU
   * notifiers unmapped. `dirtyAll` when there were too many to list.
   */
  private readonly dirty: number[] = [];
  private dirtyAll = false;

  constructor(scenario: Scenario, opts: RunOptions = {}) {
    this.scenario = scenario;
    this.opts = opts;
    const cpu = resolveCpu(scenario.cpu);
    if (typeof cpu === 'string') throw new ScenarioRunError(`cpu: ${cpu}`);
    this.cpu = cpu;
    this.kvm = new Kvm({
      cpu,
      granule: GRANULE_BYTES[scenario.granule] as 4096 | 16384 | 65536,
      paBits: scenario.paBits,
      physical: scenario.physical,
      ipaBits: scenario.vm.ipaBits,
      mte: scenario.vm.mte,
      nisvToUser: scenario.vm.nisvToUser,
      kernel: opts.kernel ?? scenario.kernel,
      ...(scenario.vm.tablePagesMax !== undefined ? { tablePagesMax: scenario.vm.tablePagesMax } : {}),
      journal: opts.journal ?? false,
      provenance: opts.provenance ?? false,
    });
    const g = scenario.guest?.stage1;
    // The guest's tables are built here and written into guest memory by run()'s set-up.
    this.vcpu = new Vcpu(this.kvm, g ? stage1Builder(g, Math.min(scenario.vm.ipaBits, 48)) : null, {
      ...scenario.cpuOptions,
      fusedFaults: opts.fusedFaults ?? true,
    });
    this.summary = {
      accesses: 0,
      faults: 0,
      maps: 0,
      relaxes: 0,
      mmioExits: 0,
      uffdEvents: 0,
      errors: {},
      injected: 0,
      tablePages: 0,
      dcacheBytes: 0,
      icacheBytes: 0,
      tlbi: 0,
      dirtyPages: 0,
      diagnostics: [],
      outcomes: {},
      mkyoungs: 0,
      hwAfUpdates: 0,
      icacheInvalAll: 0,
      hostPagesZeroed: 0,
      mtePagesCleared: 0,
      modelledNs: 0,
      modelledByCause: new CostBreakdown().toRecord(),
      costModel: '',
    };
    this.costParams = cpuCostParams('profile' in scenario.cpu ? scenario.cpu.profile : undefined);
    this.costShape = costShapeOf(this.kvm);
    this.summary.costModel = this.costParams.name;
    for (const v of scenario.vmas) {
      const r = this.kvm.mm.mmap(this.vmaSpec(v));
      if (typeof r === 'string') throw new ScenarioRunError(`vmas: ${v.name}: ${r}`);
      this.nameStart.set(v.name, v.start);
    }
  }

  /** What mmap() takes for a scenario VMA (registered with userfaultfd later, not here). */
  private vmaSpec(v: ScenarioVma): VmaSpec {
    let flags = protBits(v.prot);
    if (v.flags.shared) flags |= VM_SHARED;
    if (v.flags.maywrite) flags |= VM_MAYWRITE;
    if (vmaMteAllowed(v, this.cpu.mte)) flags |= VM_MTE_ALLOWED;
    if (v.flags.allowAnyUncached) flags |= VM_ALLOW_ANY_UNCACHED;
    if (v.flags.io) flags |= VM_IO;
    return {
      name: v.name,
      start: v.start,
      size: v.size,
      vmFlags: flags,
      memType: MEM_TYPE[v.memType],
      backing: v.backing,
      ...(v.backing === 'hugetlb' ? { hugePage: v.hugePage } : {}),
      ...(v.backing === 'pfnmap' || v.backing === 'mixedmap' ? { pa: v.pa, hostMapping: v.hostMapping } : {}),
    };
  }

  /**
   * The pieces of the mapping `name` still in the address space that intersect `name + offset`
   * and the `size` bytes after it, each with the part of the range it holds (hvas). A name keeps
   * naming the addresses it was mapped at, after munmap or MAP_FIXED split it.
   */
  private namedRange(
    name: string,
    offset: number,
    size: number,
  ): { vma: HostVma; start: number; end: number }[] {
    const base = this.nameStart.get(name);
    if (base === undefined) throw new ScenarioRunError(`no VMA named ${name}`);
    const start = base + offset;
    const end = start + size;
    const out: { vma: HostVma; start: number; end: number }[] = [];
    for (const v of this.kvm.mm.vmas.vmas) {
      if (v.name !== name || v.end <= start || v.start >= end) continue;
      out.push({ vma: v, start: Math.max(v.start, start), end: Math.min(v.end, end) });
    }
    return out;
  }

  /**
   * UFFDIO_REGISTER of every scenario VMA that asks for it, the last step of set-up: memslots,
   * stage-1 tables and each VMA's `init` precede it, so those writes raise no missing-page
   * events. With copyFrom "registration" the VMM keeps what the range holds now, for its later
   * UFFDIO_COPYs.
   */
  private registerUserfaultfd(): void {
    for (const v of this.scenario.vmas) this.registerOne(v);
  }

  private registerOne(v: ScenarioVma): void {
    if (v.userfaultfd === null) return;
    const mm = this.kvm.mm;
    for (const piece of mm.vmas.vmas) {
      if (piece.name !== v.name) continue;
      uffdRegister(mm, piece, v.userfaultfd.resolve, v.userfaultfd.copyFrom);
      if (v.userfaultfd.copyFrom === 'registration') uffdSnapshot(mm, piece.start, piece.end);
    }
    this.uffdRegistered = true;
  }

  private hostVma(name: string): HostVma {
    const v = vmaByName(this.kvm.mm.vmas, name);
    if (!v) throw new ScenarioRunError(`no VMA named ${name}`);
    return v;
  }

  private createSlot(m: ScenarioMemslot, step: number | null, sink: RunSink): void {
    const ps = this.kvm.pageSize;
    const ret = this.kvm.createMemslot({
      id: m.slot,
      baseGfn: m.gpa / ps,
      npages: m.size / ps,
      userspaceAddr: m.userspaceAddr,
      flags: (m.flags.logDirty ? KVM_MEM_LOG_DIRTY_PAGES : 0) | (m.flags.readonly ? KVM_MEM_READONLY : 0),
    });
    if (ret) sink.memslotRefused?.(m.slot, errName(ret), step);
  }

  /**
   * vm.mmioWrites "store-readonly-slot": the VMM completes a write MMIO exit whose IPA is in a
   * read-only memslot by storing the 8 bytes into the slot's backing through its own mapping
   * (a hostWrite, as page_fault_test's MMIO handler does). Its host faults and userfaultfd
   * events belong to the access that exited.
   */
  private storeMmioWrite(r: AccessResult): void {
    const last = r.nFaults > 0 ? r.fault(r.nFaults - 1) : undefined;
    if (last === undefined || (last.esr & ESR_ELx_WNR) === 0) return;
    const kvm = this.kvm;
    const ps = kvm.pageSize;
    const slot = kvm.gfnToMemslot(Math.floor(r.mmioIpa / ps));
    if (slot === undefined || (slot.flags & KVM_MEM_READONLY) === 0) return;
    const hva = slot.userspaceAddr + (r.mmioIpa - slot.baseGfn * ps);
    const bytes = new Uint8Array(8);
    const dv = new DataView(bytes.buffer);
    dv.setUint32(0, this.vcpu.valueLo >>> 0, true);
    dv.setUint32(4, this.vcpu.valueHi >>> 0, true);
    const before = kvm.mm.stats.uffdEvents;
    const ret = kvm.mm.hostWrite(hva, bytes);
    const raised = kvm.mm.stats.uffdEvents - before;
    r.stats.uffdEvents += raised;
    kvm.totals.uffdEvents += raised;
    if (ret)
      kvm.diagnose(
        `MMIO write at 0x${r.mmioIpa.toString(16)}: storing it into the read-only slot failed: ${errName(ret)}`,
      );
  }

  /** One access and its line. Returns true when the run must stop there (onError "stop"). */
  private doAccess(step: number, kind: number, ipa: number, sink: RunSink, race?: Race): boolean {
    const r = this.result;
    const races = this.kvm.races;
    const log = this.kvm.mm.uffdLog;
    log.reset();
    if (race !== undefined) races.arm(RACE_CODE[race]);
    if (this.kvm.pgt.journal !== null || this.kvm.provenance !== null) this.markUnit('access', step);
    this.vcpu.access(kind, ipa, r);
    if (this.opts.auditHost === 'incremental' && r.leafValid) this.markDirty(r.leafIpa, r.leafSize);
    if (race !== undefined && races.disarm() !== RACE_NONE)
      this.kvm.diagnose(
        `steps[${step}]: race "${race}" did not happen: the access's first fault never reached its window`,
      );
    if (r.outcome === OUT_MMIO && this.scenario.vm.mmioWrites === 'store-readonly-slot')
      this.storeMmioWrite(r);
    const extra: AccessExtra = {
      uffdEvents: this.uffdRegistered ? log.since(0) : null,
      sigbusAddr: r.outcome === OUT_SIGBUS ? this.vcpu.fault.hva : 0,
    };
    const s = this.summary;
    s.accesses++;
    s.outcomes[r.outcomeName] = (s.outcomes[r.outcomeName] ?? 0) + 1;
    if (r.outcome === OUT_ERROR) {
      const e = r.errnoName!;
      s.errors[e] = (s.errors[e] ?? 0) + 1;
    } else if (
      (r.outcome === OUT_IABT || r.outcome === OUT_DABT || r.outcome === OUT_SERROR) &&
      !r.stage1Fault
    ) {
      s.injected++;
    } else if (r.outcome === OUT_MMIO) {
      s.mmioExits++;
    }
    sink.access?.(step, r, extra);
    const every = this.opts.progressEvery ?? 65536;
    if (this.opts.progress && s.accesses % every === 0) this.opts.progress(s.accesses, 0);
    return r.outcome === OUT_ERROR && this.scenario.onError === 'stop';
  }

  /**
   * Starts the journal's and the provenance's unit of work: an access (the run's access index)
   * or another step. Cold when both are off (the caller tests).
   */
  private markUnit(kind: string, step: number): void {
    const access = kind === 'access' ? this.summary.accesses : -1;
    const j = this.kvm.pgt.journal;
    if (j !== null) j.beginUnit(j.opCode(kind), step, access);
    const p = this.kvm.provenance;
    if (p !== null) {
      p.step = step;
      p.access = access;
    }
  }

  /** Runs one step. Returns true when the run must stop there (onError "stop"). */
  private runStep(st: Step, sink: RunSink): boolean {
    const kvm = this.kvm;
    switch (st.kind) {
      case 'access': {
        const k = ACCESS_KIND[st.access];
        const v = this.vcpu;
        if (st.value !== undefined) [v.valueLo, v.valueHi] = u64Halves(st.value);
        if (st.expect !== undefined) [v.expectLo, v.expectHi] = u64Halves(st.expect);
        const stop = this.doAccess(st.index, k, st.address, sink, st.race);
        v.valueLo = v.valueHi = v.expectLo = v.expectHi = 0;
        return stop;
      }
      case 'hostWrite': {
        // name + offset: the address the name was mapped at (after splits too).
        const at = (this.nameStart.get(st.vma) ?? this.hostVma(st.vma).start) + st.offset;
        kvm.mm.uffdLog.reset();
        const ret = this.withStats(() => kvm.mm.hostWrite(at, st.bytes));
        if (ret) kvm.diagnose(`steps[${st.index}]: hostWrite to VMA "${st.vma}" failed: ${errName(ret)}`);
        if (this.uffdRegistered)
          sink.hostWrite?.(
            st.index,
            { vma: st.vma, offset: st.offset, size: st.bytes.length },
            kvm.mm.uffdLog.since(0),
          );
        return false;
      }
      case 'touch': {
        const k = ACCESS_KIND[st.access];
        const n = Math.ceil(st.size / st.stride);
        const p = st.order === 'random' ? permutation(n, st.seed) : null;
        for (let i = 0; i < n; i++) {
          if (this.doAccess(st.index, k, st.from + (p === null ? i : p[i]!) * st.stride, sink)) return true;
        }
        return false;
      }
      case 'hostUnmap':
        // Over every piece of the named mapping (munmap or MAP_FIXED may have split it).
        this.withStats(() => {
          for (const r of this.namedRange(st.vma, st.offset, st.size))
            kvm.mm.hostUnmap(r.vma, r.start - r.vma.start, r.end - r.start);
        });
        return false;
      case 'hostProtect':
        this.withStats(() => {
          for (const piece of kvm.mm.vmas.vmas.filter((v) => v.name === st.vma))
            kvm.mm.hostProtect(piece, protBits(st.prot));
        });
        return false;
      case 'age':
        this.withStats(() => kvm.ageIpaRange(st.ipa, st.size));
        return false;
      case 'dirtyLog': {
        if (st.op === 'get-and-clear') {
          let r: number[] | number = [];
          this.withStats(() => {
            r = kvm.getAndClearDirtyLog(st.slot);
          });
          const gfns = typeof r === 'number' ? [] : r;
          this.summary.dirtyPages += gfns.length;
          sink.dirtyLog?.(st.index, st.slot, gfns);
        } else {
          const ret = this.withStats(() => kvm.setDirtyLogging(st.slot, st.op === 'enable'));
          if (ret)
            kvm.diagnose(`steps[${st.index}]: dirtyLog ${st.op} on slot ${st.slot} failed: ${errName(ret)}`);
        }
        return false;
      }
      case 'memslot':
        this.withStats(() => this.createSlot(st.memslot, st.index, sink));
        return false;
      case 'deleteMemslot':
        this.withStats(() => kvm.deleteMemslot(st.slot));
        return false;
      case 'mmap': {
        const v = st.vma;
        const r = this.withStats(() => mmapFixed(kvm.mm, this.vmaSpec(v)));
        if (typeof r === 'string') {
          kvm.diagnose(`steps[${st.index}]: mmap of "${v.name}" failed: ${r}`);
          return false;
        }
        this.nameStart.set(v.name, v.start);
        // Registered right after the mmap, as a VMM registers a new mapping.
        this.registerOne(v);
        return false;
      }
      case 'munmap': {
        const base = this.nameStart.get(st.vma)!;
        const ret = this.withStats(() => munmapRange(kvm.mm, base + st.offset, base + st.offset + st.size));
        if (ret) kvm.diagnose(`steps[${st.index}]: munmap failed: ${errName(ret)}`);
        return false;
      }
      case 'poison': {
        const hva = this.nameStart.get(st.vma)! + st.offset;
        const r = this.withStats(() => memoryFailure(kvm.mm, hva));
        if (r.pfn < 0) kvm.diagnose(`steps[${st.index}]: memory_failure() did nothing: ${r.reason ?? ''}`);
        return false;
      }
    }
    return false;
  }

  /**
   * The host-consistency audit after `step` (null: after the initial memslots). A violation a
   * KernelViolation record explains was already reported by the fault path, naming the kernel
   * function; any other is a model bug, reported once per (rule, IPA, output address).
   */
  private auditHost(step: number | null, kind: string | null): void {
    const kvm = this.kvm;
    const d = this.dirty;
    let found: HostViolation[];
    if (
      this.opts.auditHost !== 'incremental' ||
      this.dirtyAll ||
      kind === null ||
      !INCREMENTAL_AUDIT_STEPS.has(kind)
    ) {
      found = auditHostConsistency(kvm);
    } else {
      found = [];
      for (let i = 0; i < d.length; i += 2) found.push(...auditHostConsistency(kvm, d[i]!, d[i + 1]!));
    }
    d.length = 0;
    this.dirtyAll = false;
    this.reportHostViolations(step, found);
  }

  /** Adds [ipa, ipa + size) to the step's dirty ranges (incremental audit). */
  private markDirty(ipa: number, size: number): void {
    if (this.dirtyAll) return;
    const d = this.dirty;
    const n = d.length;
    // Merge with the last range when they touch (a sequential touch keeps one range).
    if (n > 0 && ipa <= d[n - 1]! && ipa + size >= d[n - 2]!) {
      if (ipa < d[n - 2]!) d[n - 2] = ipa;
      if (ipa + size > d[n - 1]!) d[n - 1] = ipa + size;
      return;
    }
    if (n >= 2 * MAX_DIRTY_RANGES) {
      this.dirtyAll = true;
      d.length = 0;
      return;
    }
    d.push(ipa, ipa + size);
  }

  private reportHostViolations(step: number | null, found: readonly HostViolation[]): void {
    const kvm = this.kvm;
    for (const v of found) {
      if (explainedBy(kvm, v) !== undefined) continue;
      const key = `${v.rule}:${v.ipa}:${v.pa}`;
      if (this.hostAuditSeen.has(key)) continue;
      this.hostAuditSeen.add(key);
      this.hostAuditFailures.push({ step, violation: v });
      const where = step === null ? 'the initial memslots' : `steps[${step}]`;
      kvm.diagnose(
        `host-consistency audit after ${where}: ${formatHostViolation(v)}: no modelled kernel behaviour explains it (a model bug)`,
      );
    }
  }

  /**
   * Set-up after the memslots (docs/scenario.md, "Guest memory, values, and stage 1 in the output"): the VMM writes
   * the guest's stage-1 tables into guest memory, then each VMA is populated (MAP_POPULATE) and
   * gets its `init` bytes, in file order. All through the host's own page tables (private
   * writable pages, copy-on-write broken where needed), never a dirty-log mark.
   */
  private writeGuestMemory(): void {
    const kvm = this.kvm;
    const s1 = this.vcpu.stage1;
    if (s1 !== null) {
      const bytes = new Uint8Array(s1.granule);
      for (const t of s1.tablePages) {
        const words = t.words;
        for (let i = 0; i < words.length; i++) {
          const w = words[i]!;
          bytes[4 * i] = w & 0xff;
          bytes[4 * i + 1] = (w >>> 8) & 0xff;
          bytes[4 * i + 2] = (w >>> 16) & 0xff;
          bytes[4 * i + 3] = w >>> 24;
        }
        const ret = kvm.writeGuestPhys(t.ipa, bytes);
        if (ret)
          throw new ScenarioRunError(
            `guest.stage1: the VMM could not write the table page at 0x${t.ipa.toString(16)} (${errName(ret)})`,
          );
      }
    }
    for (const v of this.scenario.vmas) {
      const vma = this.hostVma(v.name);
      if (v.populate === true) {
        const ret = kvm.mm.populateVma(vma);
        if (ret) kvm.diagnose(`vmas: ${v.name}: MAP_POPULATE failed: ${errName(ret)}`);
      }
      for (const e of v.init ?? []) {
        const ret = kvm.mm.hostWrite(vma.start + e.offset, e.bytes);
        if (ret)
          throw new ScenarioRunError(
            `vmas: ${v.name}: init at offset 0x${e.offset.toString(16)} failed (${errName(ret)})`,
          );
      }
    }
  }

  /** Runs host-side work with its TLBIs and CMOs counted into the run's totals. */
  private withStats<T>(fn: () => T): T {
    const st = new AccessStats();
    this.kvm.setStats(st);
    const r = fn();
    this.kvm.totals.add(st);
    return r;
  }

  /**
   * The modelled hardware time of one access (its AccessResult's stats), by cause. Returns
   * a breakdown the runner reuses: copy what you keep.
   */
  accessCost(r: AccessResult): CostBreakdown {
    modelledCost(r.stats, this.costParams, this.costScratch, this.costShape);
    return this.costScratch;
  }

  /** Runs the scenario. Returns the summary. */
  run(sink: RunSink = {}): RunSummary {
    for (const m of this.scenario.memslots) this.withStats(() => this.createSlot(m, null, sink));
    this.withStats(() => this.writeGuestMemory());
    this.registerUserfaultfd();
    if (this.opts.auditHost === 'incremental')
      this.kvm.invalidateHook = (ipa, size) => this.markDirty(ipa, size);
    if (this.opts.auditHost) this.auditHost(null, null);
    for (const st of this.scenario.steps) {
      this.opts.stepStart?.(st.index);
      if (st.kind !== 'access' && st.kind !== 'touch') this.markUnit(st.kind, st.index);
      const stop = this.runStep(st, sink);
      if (this.opts.auditHost) this.auditHost(st.index, st.kind);
      if (stop) {
        this.summary.stoppedAtStep = st.index;
        break;
      }
    }
    const s = this.summary;
    const t = this.kvm.totals;
    s.faults = t.faults;
    s.maps = t.maps;
    s.relaxes = t.relaxes;
    s.uffdEvents = t.uffdEvents;
    s.tablePages = this.kvm.tablePages;
    s.dcacheBytes = t.dcacheBytes;
    s.icacheBytes = t.icacheBytes;
    s.tlbi = t.tlbi;
    s.mkyoungs = t.mkyoungs;
    s.hwAfUpdates = t.hwAfUpdates;
    s.icacheInvalAll = t.icacheInvalAll;
    s.hostPagesZeroed = t.hostPagesZeroed;
    s.mtePagesCleared = t.mtePagesCleared;
    const cost = new CostBreakdown();
    s.modelledNs = Math.round(modelledCost(t, this.costParams, cost, this.costShape));
    s.modelledByCause = cost.toRecord();
    // Dirty pages still marked in the bitmaps count too.
    for (const slot of this.kvm.memslots.current.slots) {
      if (slot.dirtyBitmap) for (const w of slot.dirtyBitmap) s.dirtyPages += popcount(w);
    }
    if (this.kvm.mm.pagesHeld !== 0)
      this.kvm.diagnose(`${this.kvm.mm.pagesHeld} host page reference(s) never released`);
    for (const w of this.kvm.phys.warnings) this.kvm.diagnose(w);
    s.diagnostics = [...this.kvm.diagnostics];
    return s;
  }
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** A u64 as unsigned 32-bit halves [lo, hi]. */
function u64Halves(x: bigint): [number, number] {
  return [Number(x & 0xffff_ffffn), Number((x >> 32n) & 0xffff_ffffn)];
}

function errName(ret: number): string {
  const names: Record<number, string> = {
    [-22]: 'EINVAL',
    [-14]: 'EFAULT',
    [-133]: 'EHWPOISON',
    [-17]: 'EEXIST',
    [-12]: 'ENOMEM',
  };
  return names[ret] ?? `E${-ret}`;
}

/** One userfaultfd event as the output lists it: `{ vma, offset, write }`. */
export function uffdEventJson(e: UffdEvent): Record<string, unknown> {
  return { vma: e.vma, offset: hx(e.offset), write: e.write };
}

/**
 * The exit's `mmio` object: the IPA KVM reports (kvm_run->mmio.phys_addr, or arm_nisv.fault_ipa),
 * the access length and whether it was a write (ESR.WnR). The model's single loads and stores
 * are 64-bit (SAS = 3: 8 bytes); without a valid syndrome KVM reports no length, and the line
 * gives the instruction's own (8, or the 64-byte block of DC ZVA / line of DC CIVAC).
 */
function mmioJson(r: AccessResult): Record<string, unknown> {
  const last = r.nFaults > 0 ? r.fault(r.nFaults - 1) : undefined;
  const write = last !== undefined && (last.esr & ESR_ELx_WNR) !== 0;
  const len = r.access === ACC_DC_ZVA || r.access === ACC_DC_CIVAC ? 64 : 8;
  return { ipa: hx(r.mmioIpa), len, write };
}

/** Formats a number as 0x-hex (addresses in the JSON output). */
function hx(n: number): string {
  return '0x' + n.toString(16);
}

/**
 * The JSON object of one access line (docs/scenario.md). With `costNs` (the runner's
 * accessCost(r).total), the line ends with the modelled hardware time. Returns a fresh object.
 */
export function accessJson(
  step: number,
  r: AccessResult,
  costNs?: number,
  extra?: AccessExtra,
): Record<string, unknown> {
  const o: Record<string, unknown> = {
    step,
    access: ACCESS_NAMES[r.access],
    ipa: hx(r.ipa),
    outcome: r.outcomeName,
  };
  if (r.outcome === OUT_ERROR) o['errno'] = r.errnoName;
  if (r.outcome === OUT_MMIO || r.outcome === OUT_NISV) o['mmio'] = mmioJson(r);
  if (r.outcome === OUT_SIGBUS)
    o['sigbus'] = { addr: hx(extra?.sigbusAddr ?? 0), lsb: r.sigbusLsb, code: 'BUS_MCEERR_AR' };
  const faults = [];
  for (let i = 0; i < r.nFaults; i++) {
    const f = r.fault(i);
    faults.push({
      fsc: f.fsc === 1 ? 'translation' : f.fsc === 2 ? 'access-flag' : f.fsc === 3 ? 'permission' : 'other',
      level: f.level,
      s1ptw: f.s1ptw,
      handler: f.handler,
      ret: f.ret,
    });
  }
  o['faults'] = faults;
  o['leaf'] = r.leafValid
    ? { ipa: hx(r.leafIpa), level: r.leafLevel, size: hx(r.leafSize), desc: hex64(r.leafLo, r.leafHi) }
    : null;
  o['uffd'] = r.stats.uffdEvents;
  if (extra?.uffdEvents) o['uffdEvents'] = extra.uffdEvents.map((e) => uffdEventJson(e));
  o['dcacheBytes'] = r.stats.dcacheBytes;
  o['icacheBytes'] = r.stats.icacheBytes;
  o['tlbi'] = r.stats.tlbi;
  if (r.va >= 0) {
    o['va'] = hx(r.va);
    if (r.stage1Fault) o['stage1Fault'] = true;
    if (r.s1Result === S1R_LEAF) {
      o['s1'] = {
        va: hx(r.va),
        desc: hex64(r.s1DescLo, r.s1DescHi),
        level: r.s1Level,
        tableIpa: hx(r.s1TableIpa),
      };
    } else if (r.s1Result === S1R_FAULT) {
      o['s1'] = { va: hx(r.va), fault: S1_FAULT_NAMES[r.s1Fault - 2], level: r.s1Level };
    }
    if (r.memTypeValid) o['memType'] = mairText(r.memAttr);
  }
  if (r.access === ACC_AT) o['par'] = r.parValid ? hex64(r.parLo, r.parHi) : null;
  if (r.hasValue) o['value'] = hex64(r.valueLo, r.valueHi);
  if (r.undef) o['undef'] = true;
  if (costNs !== undefined) o['costNs'] = Math.round(costNs);
  return o;
}
