/**
 * Runs a validated scenario: builds the host (physical memory, VMAs), the VM and its
 * memslots, then the steps, reporting each access, each refused memslot and each dirty-log
 * harvest to a sink, and a summary at the end (scenario-format.md, Output).
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
import { GuestStage1 } from '../mmu/stage1.js';
import { permutation } from './permutation.js';
import {
  ACCESS_NAMES,
  ACC_AT,
  ACC_CAS,
  ACC_DC_CIVAC,
  ACC_DC_ZVA,
  ACC_EXEC,
  ACC_LD_PREIDX,
  ACC_READ,
  ACC_ST_PREIDX,
  ACC_WRITE,
  AccessResult,
  OUT_DABT,
  OUT_ERROR,
  OUT_IABT,
  OUT_MMIO,
  OUT_SERROR,
  Vcpu,
} from '../mmu/vcpu.js';
import { AccessStats, Kvm } from '../mmu/vm.js';
import type { AccessKind, Memslot, MemType, Prot, Scenario, Step } from './types.js';
import { GRANULE_BYTES, vmaMteAllowed } from './types.js';

/** Where a run's results go. The AccessResult is borrowed: copy what you keep. */
export interface RunSink {
  /** A memslot creation kvm_arch_prepare_memory_region() (or KVM) refused. */
  memslotRefused?(slot: number, errno: string, step: number | null): void;
  /** One `dirtyLog get-and-clear` step: the dirty gfns, ascending. */
  dirtyLog?(step: number, slot: number, gfns: readonly number[]): void;
  /** One guest access. */
  access?(step: number, r: AccessResult): void;
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
  /** Outcomes by name (not in the spec's minimum; useful in reports). */
  outcomes: Record<string, number>;
  /** Access-flag faults handled. */
  mkyoungs: number;
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
}

/** A run-time error in a scenario that passed validation (e.g. the host ran out of RAM). */
export class ScenarioRunError extends Error {
  override name = 'ScenarioRunError';
}

const ACCESS_KIND: Record<AccessKind, number> = {
  read: ACC_READ,
  write: ACC_WRITE,
  exec: ACC_EXEC,
  cas: ACC_CAS,
  'ld-preidx': ACC_LD_PREIDX,
  'st-preidx': ACC_ST_PREIDX,
  'dc-zva': ACC_DC_ZVA,
  'dc-civac': ACC_DC_CIVAC,
  at: ACC_AT,
};

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
}

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
    });
    const g = scenario.guest?.stage1;
    this.vcpu = new Vcpu(
      this.kvm,
      g
        ? new GuestStage1({
            granule: GRANULE_BYTES[g.granule] as 4096 | 16384 | 65536,
            tables: g.tables,
            mair: g.mair,
            ha: g.ha,
            hd: g.hd,
            mappings: g.mappings,
          })
        : null,
    );
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
      let flags = protBits(v.prot);
      if (v.flags.shared) flags |= VM_SHARED;
      if (v.flags.maywrite) flags |= VM_MAYWRITE;
      if (vmaMteAllowed(v, cpu.mte)) flags |= VM_MTE_ALLOWED;
      if (v.flags.allowAnyUncached) flags |= VM_ALLOW_ANY_UNCACHED;
      if (v.flags.io) flags |= VM_IO;
      const r = this.kvm.mm.mmap({
        name: v.name,
        start: v.start,
        size: v.size,
        vmFlags: flags,
        memType: MEM_TYPE[v.memType],
        backing: v.backing,
        ...(v.backing === 'hugetlb' ? { hugePage: v.hugePage } : {}),
        ...(v.backing === 'pfnmap' || v.backing === 'mixedmap'
          ? { pa: v.pa, hostMapping: v.hostMapping }
          : {}),
        uffdMissing: v.userfaultfd === 'missing',
      });
      if (typeof r === 'string') throw new ScenarioRunError(`vmas: ${v.name}: ${r}`);
    }
  }

  private hostVma(name: string): HostVma {
    const v = vmaByName(this.kvm.mm.vmas, name);
    if (!v) throw new ScenarioRunError(`no VMA named ${name}`);
    return v;
  }

  private createSlot(m: Memslot, step: number | null, sink: RunSink): void {
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

  private doAccess(step: number, kind: number, ipa: number, sink: RunSink): void {
    const r = this.result;
    this.vcpu.access(kind, ipa, r);
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
    sink.access?.(step, r);
    const every = this.opts.progressEvery ?? 65536;
    if (this.opts.progress && s.accesses % every === 0) this.opts.progress(s.accesses, 0);
  }

  private runStep(st: Step, sink: RunSink): void {
    const kvm = this.kvm;
    switch (st.kind) {
      case 'access': {
        const k = ACCESS_KIND[st.access];
        this.doAccess(st.index, k, st.address, sink);
        return;
      }
      case 'touch': {
        const k = ACCESS_KIND[st.access];
        const n = Math.ceil(st.size / st.stride);
        if (st.order === 'random') {
          const p = permutation(n, st.seed);
          for (let i = 0; i < n; i++) this.doAccess(st.index, k, st.from + p[i]! * st.stride, sink);
        } else {
          for (let i = 0; i < n; i++) this.doAccess(st.index, k, st.from + i * st.stride, sink);
        }
        return;
      }
      case 'hostUnmap':
        this.withStats(() => kvm.mm.hostUnmap(this.hostVma(st.vma), st.offset, st.size));
        return;
      case 'hostProtect':
        this.withStats(() => kvm.mm.hostProtect(this.hostVma(st.vma), protBits(st.prot)));
        return;
      case 'age':
        this.withStats(() => kvm.ageIpaRange(st.ipa, st.size));
        return;
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
        return;
      }
      case 'memslot':
        this.withStats(() => this.createSlot(st.memslot, st.index, sink));
        return;
      case 'deleteMemslot':
        this.withStats(() => kvm.deleteMemslot(st.slot));
        return;
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
    for (const st of this.scenario.steps) this.runStep(st, sink);
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

function errName(ret: number): string {
  const names: Record<number, string> = {
    [-22]: 'EINVAL',
    [-14]: 'EFAULT',
    [-17]: 'EEXIST',
    [-12]: 'ENOMEM',
  };
  return names[ret] ?? `E${-ret}`;
}

/** Formats a number as 0x-hex (addresses in the JSON output). */
function hx(n: number): string {
  return '0x' + n.toString(16);
}

/**
 * The JSON object of one access line (scenario-format.md). With `costNs` (the runner's
 * accessCost(r).total), the line ends with the modelled hardware time. Returns a fresh object.
 */
export function accessJson(step: number, r: AccessResult, costNs?: number): Record<string, unknown> {
  const o: Record<string, unknown> = {
    step,
    access: ACCESS_NAMES[r.access],
    ipa: hx(r.ipa),
    outcome: r.outcomeName,
  };
  if (r.outcome === OUT_ERROR) o['errno'] = r.errnoName;
  const faults = [];
  for (let i = 0; i < r.nFaults; i++) {
    const f = r.faults[i]!;
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
  o['dcacheBytes'] = r.stats.dcacheBytes;
  o['icacheBytes'] = r.stats.icacheBytes;
  o['tlbi'] = r.stats.tlbi;
  if (r.va >= 0) {
    o['va'] = hx(r.va);
    if (r.stage1Fault) o['stage1Fault'] = true;
  }
  if (costNs !== undefined) o['costNs'] = Math.round(costNs);
  return o;
}
