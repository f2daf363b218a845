/**
 * Fault-path benchmarks, end to end: Vcpu.access() → hardware walk → abort →
 * kvm_handle_guest_abort() → user_mem_abort() (or the access-flag path) → install → retry.
 * Each case builds its host and VM once through the scenario runner, times one batch of
 * accesses, and brings the VM back between batches untimed (the host drops the memory,
 * which invalidates stage 2 through the MMU notifier; or the dirty log is harvested, or the
 * range aged). One op is one stage-2 fault (checked when the case is built). Next to each
 * throughput: the modelled hardware time for the same work (src/mmu/cost.ts).
 */

import {
  COST_CAUSES,
  CostBreakdown,
  costShapeOf,
  formatBreakdown,
  formatNs,
  modelledCost,
} from '../src/mmu/cost.js';
import type { Vma } from '../src/mmu/host/vma.js';
import { vmaByName } from '../src/mmu/host/vma.js';
import { AccessOp, AccessResult, OUT_DONE, Vcpu } from '../src/mmu/vcpu.js';
import { ACC_READ, ACC_WRITE } from '../src/mmu/access.js';
import type { Kvm } from '../src/mmu/vm.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import type { BenchCase } from './harness.js';
import { permutation } from './harness.js';

const KIB = 1024;
const MIB = 2 ** 20;
const GIB = 2 ** 30;
/** Guest RAM's IPA and the VMM's hva for it. */
const IPA = 0x40_0000_0000;
/** Where the guest sees a Grace GPU's memory (as in examples/grace-gpu-passthrough.json). */
const GPU_GPA = 0x4000_0000_0000;
const HVA = 0x7f00_0000_0000;
/** Host physical memory: RAM (linear map) and a device window (nomap, for PFNMAP). */
const RAM_BASE = 0x1_0000_0000;
const DEV_BASE = 0x800_0000_0000;

/** How the timed batch touches memory. */
type Pattern =
  | 'write' // one write per stride, in IPA order
  | 'write-random' // one write per stride, in a fixed random order
  | 'read-then-write' // per page: a read (zero page), then a write (CoW break): three faults
  | 'read'; // one read per stride

/** How the state goes back to where a batch starts (untimed). */
type ResetKind =
  | 'unmap' // the host drops the whole VMA (MADV_DONTNEED / hole punch / zap)
  | 'dirty-log' // KVM_GET_DIRTY_LOG: write-protect the dirty pages again
  | 'dirty-log-blocks' // disable logging, drop the memory, fault it in as blocks, enable logging
  | 'age'; // MMU-notifier clear_young over the range (stage-2 mkold)

interface FaultSpec {
  name: string;
  /** Scenario `cpu`. */
  cpu: Record<string, unknown>;
  /** Label of the CPU in the modelled line. */
  cpuLabel: string;
  /** Scenario VMA fields (name, start, size and prot are filled in). */
  vma: Record<string, unknown>;
  size: number;
  stride: number;
  pattern: Pattern;
  reset: ResetKind;
  /** Faults per stride-step (read-then-write takes three). */
  faultsPerStep?: number;
  /**
   * Each step is an access that takes no fault (the hardware sets AF): an op is an access,
   * and the dry run checks that the batch took no fault and one hardware AF update a step.
   */
  noFaults?: boolean;
  vm?: Record<string, unknown>;
  prot?: string;
  /** What one fault is, for the modelled line ("a 1G hugetlbfs fault"). */
  what: string;
  /** Scenario `granule` (default 4K). */
  granule?: '4K' | '16K' | '64K';
  /** The memslot's guest address (default IPA, 256 GiB). */
  gpa?: number;
  /** Where the host's RAM starts (default RAM_BASE, 4 GiB). */
  ramBase?: number;
  /** Run with the stage-2 write journal on (src/pgtable/journal.ts); reset untimed per batch. */
  journal?: boolean;
  /** Run every fault through the general path (RunOptions.fusedFaults false): what the fused path saves. */
  general?: boolean;
}

/**
 * A case's state. The timed loop reads only `pattern`, `base`, `stride`, `steps`, `order`,
 * `vcpu` and `r`, which every case has, so that its property loads see one shape whatever the
 * case (the specs differ in their optional fields, and a loop shared by all the cases would
 * otherwise go polymorphic and be deoptimized when a case with a new shape runs).
 */
interface FaultState {
  spec: FaultSpec;
  pattern: Pattern;
  /** The memslot's first IPA. */
  base: number;
  stride: number;
  runner: ScenarioRunner;
  kvm: Kvm;
  vcpu: Vcpu;
  vma: Vma;
  r: AccessResult;
  /** The address carrier of the accesses (reused: see Vcpu.accessOp). */
  op: AccessOp;
  order: Int32Array | null;
  steps: number;
  cost: CostBreakdown;
}

function buildScenario(spec: FaultSpec): ScenarioRunner {
  const physical = [
    { base: spec.ramBase ?? RAM_BASE, size: Math.max(8 * GIB, 2 * spec.size), type: 'ram' },
    { base: DEV_BASE, size: 256 * GIB, type: 'nomap' },
  ];
  const s = parseScenario({
    kernel: '6.17',
    cpu: spec.cpu,
    granule: spec.granule ?? '4K',
    physical: physical.map((p) => ({ ...p, base: '0x' + p.base.toString(16), size: String(p.size) })),
    vmas: [
      {
        name: 'm',
        start: '0x' + HVA.toString(16),
        size: String(spec.size),
        prot: spec.prot ?? 'rw',
        ...spec.vma,
      },
    ],
    vm: { ipaBits: 40, ...spec.vm },
    memslots: [{ slot: 0, gpa: '0x' + (spec.gpa ?? IPA).toString(16), size: String(spec.size), vma: 'm' }],
    steps: [],
  });
  const runner = new ScenarioRunner(s, {
    journal: spec.journal ?? false,
    fusedFaults: !(spec.general ?? false),
  });
  runner.run(); // creates the memslot
  return runner;
}

/**
 * One batch: the timed loop. Accesses go through a reused address carrier (`op.addr`, then
 * `accessOp(kind, op, r)`), the form a hot caller uses: `access(kind, addr, out)` takes the
 * address as an argument, which V8 boxes wherever it does not inline the call.
 */
function runBatch(s: FaultState): void {
  const vcpu = s.vcpu;
  const r = s.r;
  const stride = s.stride;
  const n = s.steps;
  const base = s.base;
  const op = s.op;
  switch (s.pattern) {
    case 'write':
      for (let i = 0; i < n; i++) {
        op.addr = base + i * stride;
        vcpu.accessOp(ACC_WRITE, op, r);
      }
      return;
    case 'write-random': {
      const p = s.order!;
      for (let i = 0; i < n; i++) {
        op.addr = base + p[i]! * stride;
        vcpu.accessOp(ACC_WRITE, op, r);
      }
      return;
    }
    case 'read-then-write':
      for (let i = 0; i < n; i++) {
        op.addr = base + i * stride;
        vcpu.accessOp(ACC_READ, op, r);
        op.addr = base + i * stride;
        vcpu.accessOp(ACC_WRITE, op, r);
      }
      return;
    case 'read':
      for (let i = 0; i < n; i++) {
        op.addr = base + i * stride;
        vcpu.accessOp(ACC_READ, op, r);
      }
      return;
  }
}

/** Untimed: brings the VM back to where a batch starts, then zeroes the run totals. */
function resetState(s: FaultState): void {
  const kvm = s.kvm;
  const r = s.r;
  // Host-side work counts into the result's stats (reset by the next access), not the totals.
  kvm.setStats(r.stats);
  switch (s.spec.reset) {
    case 'unmap':
      kvm.mm.hostUnmap(s.vma, 0, s.spec.size);
      break;
    case 'dirty-log':
      kvm.getAndClearDirtyLog(0);
      break;
    case 'dirty-log-blocks': {
      kvm.getAndClearDirtyLog(0);
      kvm.setDirtyLogging(0, false);
      kvm.mm.hostUnmap(s.vma, 0, s.spec.size);
      for (let a = 0; a < s.spec.size; a += 2 * MIB) s.vcpu.access(ACC_WRITE, s.base + a, r);
      kvm.setDirtyLogging(0, true);
      break;
    }
    case 'age':
      kvm.ageIpaRange(s.base, s.spec.size);
      break;
  }
  kvm.totals.reset();
  // The journal keeps every write: start each batch empty (its growth is not what is timed).
  if (kvm.pgt.journal !== null) kvm.pgt.journal.reset();
}

/** Prepares the state a case's first reset expects (memory faulted in, logging on). */
function prepare(s: FaultState): void {
  const r = s.r;
  if (s.spec.reset === 'dirty-log') {
    for (let a = 0; a < s.spec.size; a += s.stride) s.vcpu.access(ACC_WRITE, s.base + a, r);
    s.kvm.setDirtyLogging(0, true);
  } else if (s.spec.reset === 'age') {
    for (let a = 0; a < s.spec.size; a += s.stride) s.vcpu.access(ACC_WRITE, s.base + a, r);
  }
}

function modelledLine(s: FaultState, ops: number): string {
  const kvm = s.kvm;
  const t = kvm.totals;
  modelledCost(t, s.runner.costParams, s.cost, costShapeOf(kvm));
  const per = new CostBreakdown();
  for (const c of COST_CAUSES) per[c] = s.cost[c] / ops;
  per.total = s.cost.total / ops;
  let line = `modelled on ${s.spec.cpuLabel}: ${formatNs(per.total)} per fault (${formatBreakdown(per, 4)})`;
  if (per.dcache > 0)
    line += `; ${s.spec.what} spends ${formatNs(per.dcache)} cleaning ${formatBytes(t.dcacheBytes / ops)} to PoC`;
  line += `; batch of ${ops}: ${formatNs(s.cost.total)} on hardware`;
  return line;
}

function formatBytes(b: number): string {
  if (b >= GIB) return `${+(b / GIB).toFixed(2)} GiB`;
  if (b >= MIB) return `${+(b / MIB).toFixed(2)} MiB`;
  return `${+(b / KIB).toFixed(2)} KiB`;
}

function makeCase(spec: FaultSpec): BenchCase<FaultState> {
  const steps = spec.size / spec.stride;
  const ops = steps * (spec.faultsPerStep ?? 1);
  return {
    name: spec.name,
    opsPerCall: ops,
    setup() {
      const runner = buildScenario(spec);
      const vma = vmaByName(runner.kvm.mm.vmas, 'm');
      if (!vma) throw new Error(`${spec.name}: no VMA`);
      const s: FaultState = {
        spec,
        pattern: spec.pattern,
        base: spec.gpa ?? IPA,
        stride: spec.stride,
        runner,
        kvm: runner.kvm,
        vcpu: runner.vcpu,
        vma,
        r: new AccessResult(),
        op: new AccessOp(),
        order: spec.pattern === 'write-random' ? permutation(steps, 0x5eed) : null,
        steps,
        cost: new CostBreakdown(),
      };
      prepare(s);
      // A dry run: every access must complete, and the batch must take `ops` faults.
      resetState(s);
      runBatch(s);
      const faults = s.kvm.totals.faults;
      if (s.r.outcome !== OUT_DONE) throw new Error(`${spec.name}: access ended ${s.r.outcomeName}`);
      const wantFaults = spec.noFaults ? 0 : ops;
      if (faults !== wantFaults)
        throw new Error(`${spec.name}: a batch took ${faults} faults, expected ${wantFaults}`);
      if (spec.noFaults && s.kvm.totals.hwAfUpdates !== ops)
        throw new Error(`${spec.name}: ${s.kvm.totals.hwAfUpdates} hardware AF updates, expected ${ops}`);
      // The notes of kernel behaviours (src/mmu/hostaudit.ts: a 1G PFNMAP block mapped over a
      // range the host zapped and the driver refills page by page) are part of what is measured.
      const diags = s.kvm.diagnostics.filter((d) => !d.startsWith('host-consistency:'));
      if (diags.length) throw new Error(`${spec.name}: ${diags.join('; ')}`);
      return s;
    },
    run: runBatch,
    reset: resetState,
    tableBytesPerGiB: (s) => (s.kvm.tablePages * s.kvm.pageSize * GIB) / spec.size,
    modelled: (s) => modelledLine(s, ops),
  };
}

/** The fault-path cases. `quick` uses smaller batches. */
export function faultCases(quick: boolean): BenchCase<FaultState>[] {
  const q = (full: number, small: number): number => (quick ? small : full);
  const grace = { profile: 'grace' };
  const kunpeng = { profile: 'kunpeng-920' };
  const anon = { backing: 'anon' };
  const thp = { backing: 'thp' };
  const huge2m = { backing: 'hugetlb', hugePage: '2M', flags: ['shared'] };
  const huge1g = { backing: 'hugetlb', hugePage: '1G', flags: ['shared'] };
  const anonSize = q(256 * MIB, 64 * MIB);
  /** 2M leaves: 8192 faults per batch (2048 quick). 1G leaves: 128 (16 quick); PFNMAP gets 1G blocks where aligned. */
  const bigSize = q(16 * GIB, 4 * GIB);
  const gigSize = q(128 * GIB, 16 * GIB);
  const specs: FaultSpec[] = [
    // RAM on a Grace-class host (FWB, DIC: no cache maintenance).
    {
      name: 'fault/grace/anon-4K-write-in-order',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 4K anonymous write fault',
    },
    // The same faults on the general path only (kvm_handle_guest_abort → user_mem_abort):
    // what the fused fast path (src/mmu/fastfault.ts) saves.
    {
      name: 'fault/grace/anon-4K-write-in-order-general',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 4K anonymous write fault, general path',
      general: true,
    },
    // The same faults with the write journal on (time travel; docs/time-travel.md): its cost.
    {
      name: 'fault/grace/anon-4K-write-in-order-journal',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 4K anonymous write fault, journaled',
      journal: true,
    },
    {
      name: 'fault/grace/anon-4K-write-random',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write-random',
      reset: 'unmap',
      what: 'a 4K anonymous write fault',
    },
    {
      name: 'fault/grace/anon-4K-read-then-write',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize / 2,
      stride: 4 * KIB,
      pattern: 'read-then-write',
      // The read maps the zero page; the write's permission fault breaks CoW in the host,
      // whose notifier unmaps stage 2 under the handler (retry), then a translation fault.
      faultsPerStep: 3,
      reset: 'unmap',
      what: 'a zero-page read or CoW write fault',
    },
    {
      name: 'fault/grace/thp-2M-write',
      cpu: grace,
      cpuLabel: 'grace',
      vma: thp,
      size: bigSize,
      stride: 2 * MIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 2M THP fault',
    },
    {
      name: 'fault/grace/hugetlb-2M-write',
      cpu: grace,
      cpuLabel: 'grace',
      vma: huge2m,
      size: bigSize,
      stride: 2 * MIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 2M hugetlbfs fault',
    },
    {
      name: 'fault/grace/hugetlb-1G-write',
      cpu: grace,
      cpuLabel: 'grace',
      vma: huge1g,
      size: gigSize,
      stride: GIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 1G hugetlbfs fault',
    },
    // PFNMAP on Grace: cacheable (FWB + DIC), Normal-NC, Device; 1G-aligned, so 1G blocks.
    {
      name: 'fault/grace/pfnmap-cacheable-1G',
      cpu: grace,
      cpuLabel: 'grace',
      vma: { backing: 'pfnmap', pa: '0x' + DEV_BASE.toString(16), flags: ['shared'] },
      size: gigSize,
      stride: GIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a cacheable PFNMAP fault',
    },
    // The same device memory where it cannot be mapped in blocks (the BAR's physical address
    // is not congruent with the hva at 2M): one 4K cacheable PFNMAP fault per page, each
    // refilled by the driver's fault handler after the host zapped the range. The guest sees
    // it at 64 TiB, where QEMU puts a Grace GPU's memory: gfns and pfns both past 2^31.
    {
      name: 'fault/grace/pfnmap-cacheable-4K',
      cpu: grace,
      cpuLabel: 'grace',
      vma: { backing: 'pfnmap', pa: '0x' + (DEV_BASE + 4 * KIB).toString(16), flags: ['shared'] },
      vm: { ipaBits: 48 },
      gpa: GPU_GPA,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 4K cacheable PFNMAP fault',
    },
    {
      name: 'fault/grace/pfnmap-normal-nc-1G',
      cpu: grace,
      cpuLabel: 'grace',
      vma: {
        backing: 'pfnmap',
        pa: '0x' + DEV_BASE.toString(16),
        memType: 'normal-nc',
        flags: ['shared', 'allow-any-uncached'],
      },
      size: gigSize,
      stride: GIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a Normal-NC PFNMAP fault',
    },
    {
      name: 'fault/grace/pfnmap-device-1G',
      cpu: grace,
      cpuLabel: 'grace',
      vma: {
        backing: 'pfnmap',
        pa: '0x' + DEV_BASE.toString(16),
        memType: 'device-nGnRE',
        flags: ['shared', 'io'],
      },
      size: gigSize,
      stride: GIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a Device PFNMAP fault',
    },
    // The same RAM faults on a host without FWB (D-cache clean to PoC on every map).
    {
      name: 'fault/kunpeng-920/anon-4K-write-in-order',
      cpu: kunpeng,
      cpuLabel: 'kunpeng-920 (no FWB, no DIC)',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 4K anonymous fault',
    },
    {
      name: 'fault/kunpeng-920/thp-2M-write',
      cpu: kunpeng,
      cpuLabel: 'kunpeng-920 (no FWB, no DIC)',
      vma: thp,
      size: bigSize,
      stride: 2 * MIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 2M THP fault',
    },
    {
      name: 'fault/kunpeng-920/hugetlb-2M-write',
      cpu: kunpeng,
      cpuLabel: 'kunpeng-920 (no FWB, no DIC)',
      vma: huge2m,
      size: bigSize,
      stride: 2 * MIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 2M hugetlbfs fault',
    },
    {
      name: 'fault/kunpeng-920/hugetlb-1G-write',
      cpu: kunpeng,
      cpuLabel: 'kunpeng-920 (no FWB, no DIC)',
      vma: huge1g,
      size: gigSize,
      stride: GIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 1G hugetlbfs fault on a CPU without FWB',
    },
    // Dirty logging: write-protected 4K pages (permission faults, relax), and 2M blocks split
    // by the first write under logging (then translation faults for the rest of the block).
    {
      name: 'fault/grace/dirty-log-4K-write-permission',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'dirty-log',
      what: 'a dirty-logging permission fault',
    },
    {
      name: 'fault/grace/dirty-log-thp-split-4K-write',
      cpu: grace,
      cpuLabel: 'grace',
      vma: thp,
      size: q(256 * MIB, 64 * MIB),
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'dirty-log-blocks',
      what: 'a dirty-logging fault on a 2M block',
    },
    // Host RAM at 16 TiB (a second socket's memory, CXL): every pfn is past 2^32.
    {
      name: 'fault/grace/anon-4K-write-ram-at-16T',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      ramBase: 0x1000_0000_0000,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 4K anonymous write fault',
    },
    // The same anonymous faults with the other granules (64K is what several arm64 server
    // distributions ship): a 64K page per fault, and 32M THP blocks with 16K pages.
    {
      name: 'fault/grace-64K/anon-64K-write-in-order',
      granule: '64K',
      cpu: grace,
      cpuLabel: 'grace, 64K pages',
      vma: anon,
      size: q(1024 * MIB, 256 * MIB),
      stride: 64 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 64K anonymous write fault',
    },
    {
      name: 'fault/grace-16K/thp-32M-write',
      granule: '16K',
      cpu: grace,
      cpuLabel: 'grace, 16K pages',
      vma: thp,
      size: bigSize,
      stride: 32 * MIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'a 32M THP fault',
    },
    // Access-flag faults after the host aged the range (mkold), on a CPU without FEAT_HAFDBS
    // (VTCR_EL2.HA has no effect there; an AmpereOne with erratum AC03_CPU_38 is the same).
    {
      name: 'fault/grace-no-hafdbs/access-flag-4K-read-after-age',
      cpu: { profile: 'grace', hafdbs: false },
      cpuLabel: 'grace without HAFDBS',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'read',
      reset: 'age',
      what: 'an access-flag fault',
    },
    // The same with FEAT_HAFDBS: the walk sets AF itself (no fault); an access, not a fault.
    {
      name: 'fault/grace/hw-af-4K-read-after-age',
      cpu: grace,
      cpuLabel: 'grace',
      vma: anon,
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'read',
      reset: 'age',
      what: 'an access whose walk sets AF (no fault)',
      noFaults: true,
    },
    // An MTE guest (Grace has MTE off: the feature is overridden on).
    {
      name: 'fault/grace+mte/anon-4K-write',
      cpu: { profile: 'grace', mte: true },
      cpuLabel: 'grace with MTE',
      vma: anon,
      vm: { mte: true },
      size: anonSize,
      stride: 4 * KIB,
      pattern: 'write',
      reset: 'unmap',
      what: 'an MTE guest fault',
    },
  ];
  return specs.map(makeCase);
}
