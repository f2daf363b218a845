/**
 * Issue 9: the fused fast path of the commonest fault (src/mmu/fastfault.ts) against the
 * general path (kvm_handle_guest_abort() → user_mem_abort(), src/mmu/abort.ts and fault.ts).
 * Random scenarios (every backing, kernel and a few CPUs, host events, dirty logging, MTE,
 * races) run twice, with the fused path on and off, and must agree on everything observable:
 * each access's output line and statistics, the fault object after each access, the order
 * and operands of every TLBI and cache-maintenance call, the final stage-2 table, the host's
 * page table, page states and counters, the locks, the notifier and the summary with its
 * modelled costs, the journal of descriptor writes and the provenance records. The fused path
 * must also have handled faults (it is not vacuous).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { MaintenanceOp, Stage2Events } from '../src/pgtable/pool.js';
import { dumpTable } from '../src/replay/replay.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunError, ScenarioRunner, accessJson } from '../src/scenario/run.js';
import type { RunOptions } from '../src/scenario/run.js';
import { scenarioOf, worldGen } from './helpers/random-scenarios.js';
import type { Json } from './helpers/scenarios.js';

/** Records every TLBI and CMO with its operands, in order, and forwards it. */
function recorder(inner: Stage2Events, log: string[]): Stage2Events {
  const op = (name: string, o: Readonly<MaintenanceOp>): string => `${name} ${o.addr} ${o.size} ${o.level}`;
  return {
    tlbiVmidIpa(o) {
      log.push(op('tlbiVmidIpa', o));
      inner.tlbiVmidIpa(o);
    },
    tlbiVmidIpaNsh(o) {
      log.push(op('tlbiVmidIpaNsh', o));
      inner.tlbiVmidIpaNsh(o);
    },
    tlbiVmidRange(o) {
      log.push(op('tlbiVmidRange', o));
      inner.tlbiVmidRange(o);
    },
    tlbiVmid() {
      log.push('tlbiVmid');
      inner.tlbiVmid();
    },
    dcacheCleanInvalPoc(o) {
      log.push(op('dcache', o));
      inner.dcacheCleanInvalPoc(o);
    },
    icacheInvalPou(o) {
      log.push(op('icache', o));
      inner.icacheInvalPou(o);
    },
  };
}

/** The fault object's fields (what a debugger or provenance reads after a fault). */
function faultState(runner: ScenarioRunner): unknown {
  const f = runner.vcpu.fault;
  return {
    faultIpa: f.faultIpa,
    ipa: f.ipa,
    gfn: f.gfn,
    hva: f.hva,
    slot: f.memslot?.id ?? null,
    isPerm: f.isPerm,
    write: f.write,
    exec: f.exec,
    faultGranule: f.faultGranule,
    loggingActive: f.loggingActive,
    vmaShift: f.vmaShift,
    vmaPagesize: f.vmaPagesize,
    vmFlags: f.vmFlags,
    mteAllowed: f.mteAllowed,
    vfioAllowAnyUc: f.vfioAllowAnyUc,
    isVmaCacheable: f.isVmaCacheable,
    cacheablePfnmap: f.cacheablePfnmap,
    mmuSeq: f.mmuSeq,
    forcePte: f.forcePte,
    s2ForceNoncacheable: f.s2ForceNoncacheable,
    pfn: f.pfn,
    page: f.page,
    writable: f.writable,
    prot: f.prot,
    follow: { ...f.follow },
    install: { addr: f.install.addr, size: f.install.size, phys: f.install.phys },
    handler: runner.vcpu.handler,
    handlerRet: runner.vcpu.handlerRet,
  };
}

interface Outcome {
  lines: unknown[];
  events: string[];
  table: string[];
  host: unknown;
  summary: unknown;
  provenance: unknown[];
  writes: unknown[];
  fused: number;
}

/** Runs a scenario with the fused path on or off and collects everything observable. */
function observe(s: Json, fused: boolean): Outcome | string {
  // The journal and the provenance records on too: both must see the same writes and reasons.
  const opts: RunOptions = { fusedFaults: fused, auditHost: 'incremental', journal: true, provenance: true };
  const runner = new ScenarioRunner(parseScenario(s), opts);
  const events: string[] = [];
  const pgt = runner.kvm.pgt;
  pgt.events = recorder(pgt.events, events);
  const lines: unknown[] = [];
  let summary: unknown;
  try {
    summary = runner.run({
      access: (step, r, extra) => {
        lines.push({
          line: accessJson(step, r, runner.accessCost(r).total, extra),
          stats: { ...r.stats },
          fault: faultState(runner),
        });
      },
      memslotRefused: (slot, errno, step) => lines.push({ refused: [slot, errno, step] }),
      dirtyLog: (step, slot, gfns) => lines.push({ dirty: [step, slot, [...gfns]] }),
    });
  } catch (e) {
    if (e instanceof ScenarioRunError) return `stopped: ${e.message}`;
    throw e;
  }
  const table: string[] = [];
  if (pgt.pgd >= 0) dumpTable(pgt, (l) => table.push(l));
  const kvm = runner.kvm;
  const mm = kvm.mm;
  const hostPt: string[] = [];
  mm.pt.forEach(0, 2 ** 48, (level, base, pfn, flags) => hostPt.push(`${level} ${base} ${pfn} ${flags}`));
  const pageStates: string[] = [];
  for (const line of table) {
    const m = /^leaf L\d 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]{16})$/.exec(line);
    if (m === null) continue;
    // The state word of the page behind the start of each leaf (allocated, dirty, head, ...).
    const desc = BigInt(`0x${m[3]!}`);
    const pfn = Number((desc & 0x0000_ffff_ffff_f000n) >> BigInt(kvm.pageShift));
    pageStates.push(`${pfn} ${kvm.phys.state(pfn)}`);
  }
  const host = {
    hostPt,
    pageStates,
    physStats: { ...kvm.phys.stats },
    mmStats: { ...mm.stats },
    pagesHeld: mm.pagesHeld,
    seq: kvm.notifier.seq,
    notifier: { ...kvm.notifier.stats },
    locks: [...kvm.locks.acquires],
    diagnostics: [...kvm.diagnostics],
    tablePages: kvm.tablePages,
  };
  const prov = kvm.provenance!;
  const provenance = Array.from({ length: prov.length }, (_, r) => prov.get(r));
  const journal = kvm.pgt.journal!;
  const writes = Array.from({ length: journal.length }, (_, i) => ({ ...journal.entry(i) }));
  return { lines, events, table, host, summary, provenance, writes, fused: runner.vcpu.fusedHandled };
}

/**
 * One scenario both ways: everything equal. Returns the faults the fused path handled and the
 * run's stage-2 faults in all.
 */
function compare(s: Json): { fused: number; faults: number } {
  const on = observe(s, true);
  const off = observe(s, false);
  if (typeof on === 'string' || typeof off === 'string') {
    expect(on).toEqual(off);
    return { fused: 0, faults: 0 };
  }
  expect(off.fused).toBe(0);
  expect(on.lines).toEqual(off.lines);
  expect(on.events).toEqual(off.events);
  expect(on.table).toEqual(off.table);
  expect(on.host).toEqual(off.host);
  expect(on.summary).toEqual(off.summary);
  expect(on.provenance).toEqual(off.provenance);
  expect(on.writes).toEqual(off.writes);
  return { fused: on.fused, faults: (on.summary as { faults: number }).faults };
}

/**
 * Scenarios around the fused path's case: two anonymous or THP VMAs (now and then shared,
 * read-only, MTE-tagged, or PROT_NONE-ish), memslots that may log or be read-only, and steps
 * that interleave accesses of every kind with the host events and KVM operations that change
 * what the fast path may do (unmaps, mprotect, aging, dirty logging, poison, races).
 */
const plainWorld = fc.record({
  kernel: fc.constantFrom('6.16', 'seed', 'v7', '6.17'),
  cpu: fc.constantFrom('grace', 'kunpeng-920', 'neoverse-n1'),
  mteVm: fc.nat(9).map((n) => n === 0),
  vmas: fc.array(
    fc.record({
      backing: fc.constantFrom('anon', 'anon', 'thp'),
      prot: fc.constantFrom('rw', 'rw', 'rw', 'r', 'rwx'),
      shared: fc.nat(5).map((n) => n === 0),
      logDirty: fc.nat(4).map((n) => n === 0),
      readonly: fc.nat(6).map((n) => n === 0),
      populate: fc.nat(4).map((n) => n === 0),
    }),
    { minLength: 1, maxLength: 2 },
  ),
  steps: fc.array(
    fc.oneof(
      {
        weight: 8,
        arbitrary: fc.record({
          k: fc.constant('access' as const),
          v: fc.nat(1),
          page: fc.nat(1023),
          access: fc.constantFrom('write', 'write', 'read', 'exec', 'cas', 'st-preidx', 'dc-zva', 'dc-civac'),
          race: fc.nat(12),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          k: fc.constant('touch' as const),
          v: fc.nat(1),
          page: fc.nat(1023),
          n: fc.integer({ min: 1, max: 64 }),
          stride: fc.constantFrom(1, 7, 512),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          k: fc.constant('hostUnmap' as const),
          v: fc.nat(1),
          page: fc.nat(1023),
          n: fc.integer({ min: 1, max: 600 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          k: fc.constant('hostProtect' as const),
          v: fc.nat(1),
          prot: fc.constantFrom('r', 'rw'),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          k: fc.constant('age' as const),
          v: fc.nat(1),
          page: fc.nat(1023),
          n: fc.integer({ min: 1, max: 600 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          k: fc.constant('dirtyLog' as const),
          v: fc.nat(1),
          op: fc.constantFrom('enable', 'disable', 'get-and-clear'),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ k: fc.constant('poison' as const), v: fc.nat(1), page: fc.nat(1023) }),
      },
    ),
    { minLength: 1, maxLength: 40 },
  ),
});

type PlainWorld = typeof plainWorld extends fc.Arbitrary<infer T> ? T : never;

const RACE_NAMES = ['invalidate', 'zap-host-pte', 'other-vcpu'];
const VMA_SIZE = 4 * 2 ** 20;

/** The scenario of a plainWorld draw (steps naming a missing VMA or slot are dropped). */
function plainScenario(w: PlainWorld): Json {
  const hx = (n: number): string => `0x${n.toString(16)}`;
  const vmas = w.vmas.map((v, i) => ({
    name: `v${i}`,
    start: hx(0x7f00_0000_0000 + i * 2 ** 32),
    size: hx(VMA_SIZE),
    backing: v.backing,
    prot: v.prot,
    ...(w.mteVm && i === 0 ? { memType: 'normal-tagged' } : {}),
    ...(v.shared ? { flags: ['shared'] } : {}),
    ...(v.populate ? { populate: true } : {}),
  }));
  const gpa = (i: number): number => 0x4000_0000 + i * 0x1000_0000;
  const memslots = w.vmas.map((v, i) => ({
    slot: i,
    gpa: hx(gpa(i)),
    size: hx(VMA_SIZE),
    vma: `v${i}`,
    ...(v.logDirty || v.readonly
      ? { flags: [...(v.logDirty ? ['log-dirty'] : []), ...(v.readonly ? ['readonly'] : [])] }
      : {}),
  }));
  const n = w.vmas.length;
  const logging = w.vmas.map((v) => v.logDirty && !v.readonly);
  const steps: Json[] = [];
  for (const st of w.steps) {
    const v = st.v % n;
    switch (st.k) {
      case 'access':
        steps.push({
          access: st.access,
          ipa: hx(gpa(v) + st.page * 4096 + 8),
          ...(st.race < RACE_NAMES.length ? { race: RACE_NAMES[st.race] } : {}),
        });
        break;
      case 'touch': {
        const size = Math.min(st.n * st.stride * 4096, VMA_SIZE - st.page * 4096);
        steps.push({
          touch: {
            from: hx(gpa(v) + st.page * 4096),
            size: hx(size),
            stride: hx(st.stride * 4096),
            access: 'write',
          },
        });
        break;
      }
      case 'hostUnmap':
      case 'age': {
        const size = Math.min(st.n, 1024 - st.page) * 4096;
        if (st.k === 'hostUnmap')
          steps.push({ hostUnmap: { vma: `v${v}`, offset: hx(st.page * 4096), size: hx(size) } });
        else steps.push({ age: { ipa: hx(gpa(v) + st.page * 4096), size: hx(size) } });
        break;
      }
      case 'hostProtect':
        if (w.vmas[v]!.prot.includes('w') || st.prot === 'r')
          steps.push({ hostProtect: { vma: `v${v}`, prot: st.prot } });
        break;
      case 'dirtyLog':
        if (w.vmas[v]!.readonly) break;
        if (st.op === 'get-and-clear' && !logging[v]) break;
        logging[v] = st.op === 'enable' ? true : st.op === 'disable' ? false : logging[v]!;
        steps.push({ dirtyLog: { slot: v, op: st.op } });
        break;
      case 'poison':
        steps.push({ poison: { vma: `v${v}`, offset: hx(st.page * 4096) } });
        break;
    }
  }
  return {
    kernel: w.kernel,
    cpu: { profile: w.cpu, ...(w.mteVm ? { mte: true } : {}) },
    granule: '4K',
    physical: [{ base: '0x100000000', size: hx(2 ** 30), type: 'ram' }],
    vmas,
    vm: { ipaBits: 40, ...(w.mteVm ? { mte: true } : {}) },
    memslots,
    steps,
  };
}

const GIB = 2 ** 30;

/** A bench-like scenario: one VMA of `backing`, writes (and reads) at a stride. */
function workload(
  backing: string,
  cpu: string,
  kernel: string,
  pattern: 'write' | 'read-write' | 'random',
): Json {
  const size = 64 * 2 ** 20;
  const stride = backing === 'thp' ? 2 ** 21 : 4096;
  const n = size / stride;
  const order = Array.from({ length: n }, (_, i) => i);
  if (pattern === 'random') {
    let x = 0x5eed;
    for (let i = n - 1; i > 0; i--) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const j = x % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
  }
  const steps: Json[] = [];
  for (const i of order) {
    const ipa = `0x${(0x40_0000_0000 + i * stride).toString(16)}`;
    if (pattern === 'read-write') steps.push({ access: 'read', ipa });
    steps.push({ access: 'write', ipa });
  }
  // Drop it all and fault it in again: the freed pages come back from the free lists.
  steps.push({ hostUnmap: { vma: 'm', offset: '0', size: String(size) } });
  for (const i of order)
    steps.push({ access: 'write', ipa: `0x${(0x40_0000_0000 + i * stride).toString(16)}` });
  return {
    kernel,
    cpu: { profile: cpu },
    granule: '4K',
    physical: [{ base: '0x100000000', size: String(4 * GIB), type: 'ram' }],
    vmas: [{ name: 'm', start: '0x7f0000000000', size: String(size), prot: 'rw', backing }],
    vm: { ipaBits: 40 },
    memslots: [{ slot: 0, gpa: '0x4000000000', size: String(size), vma: 'm' }],
    steps,
  };
}

describe('the fused fault path (fastfault.ts) against the general path', () => {
  for (const [backing, cpu, kernel, pattern] of [
    ['anon', 'grace', '6.17', 'write'],
    ['anon', 'kunpeng-920', '6.16', 'random'],
    ['anon', 'neoverse-n1', 'seed', 'read-write'],
    ['thp', 'grace', '6.17', 'write'],
    ['thp', 'kunpeng-920', 'v7', 'random'],
    ['shmem', 'grace', '6.17', 'write'],
  ] as const) {
    it(`${backing} ${pattern} on ${cpu}, kernel ${kernel}: identical results`, () => {
      const { fused, faults } = compare(workload(backing, cpu, kernel, pattern));
      // v7 refuses cacheable VMAs without FWB+DIC (the general path's -EINVAL); shmem is not
      // the fused path's case.
      if (backing === 'shmem' || (kernel === 'v7' && cpu === 'kunpeng-920')) expect(fused).toBe(0);
      // A page of the first pass takes three faults: the read (the zero page) and the CoW
      // write's permission fault are the general path's; the translation fault the write
      // retries into after the CoW's invalidation is the fused path's. The second pass,
      // writes of dropped pages, is all the fused path's.
      else if (pattern === 'read-write') {
        const pages = (64 * 2 ** 20) / 4096;
        expect([fused, faults]).toEqual([2 * pages, 4 * pages]);
      }
      // Every fault is a write to missing anonymous memory: the fused path takes each one,
      // the first page of the memslot and the last included.
      else expect(fused).toBe(faults);
    });
  }

  it('takes the memslot a fault is in, at the edges of memslots that touch in IPA space', () => {
    // Two memslots back to back in IPA space over two halves of one VMA, in the other order:
    // slot 0 maps the VMA's second half, slot 1 its first. The page past slot 0's end is slot
    // 1's first page, whose host page is the VMA's first; the host page past slot 0's own
    // range is a different one. A memslot search that let a slot claim its end would map that.
    const hx = (n: number): string => `0x${n.toString(16)}`;
    const half = 4 * 2 ** 20;
    const gpa = 0x4000_0000;
    const edges = [gpa, gpa + half - 4096, gpa + half, gpa + 2 * half - 4096];
    const s: Json = {
      kernel: '6.17',
      cpu: { profile: 'grace' },
      granule: '4K',
      physical: [{ base: '0x100000000', size: hx(2 ** 30), type: 'ram' }],
      vmas: [{ name: 'm', start: '0x7f0000000000', size: hx(2 * half), prot: 'rw', backing: 'anon' }],
      vm: { ipaBits: 40 },
      memslots: [
        { slot: 0, gpa: hx(gpa), size: hx(half), vma: 'm', offset: hx(half) },
        { slot: 1, gpa: hx(gpa + half), size: hx(half), vma: 'm', offset: '0' },
      ],
      steps: [
        ...edges.map((ipa) => ({ access: 'write', ipa: hx(ipa) })),
        ...edges.map((ipa) => ({ access: 'read', ipa: hx(ipa + 8) })),
      ],
    };
    expect(compare(s)).toEqual({ fused: 4, faults: 4 });
  });

  it('takes the VMA a fault is in, at the edge of VMAs that touch in host space', () => {
    // One memslot over two VMAs back to back: a writable one, then a read-only one. A write
    // to the read-only VMA's first page is the general path's -EFAULT (hva_to_pfn()'s
    // protection check); a VMA search that let the writable VMA claim its end would map it.
    const hx = (n: number): string => `0x${n.toString(16)}`;
    const half = 4 * 2 ** 20;
    const gpa = 0x4000_0000;
    const hva = 0x7f00_0000_0000;
    const s: Json = {
      kernel: '6.17',
      cpu: { profile: 'grace' },
      granule: '4K',
      physical: [{ base: '0x100000000', size: hx(2 ** 30), type: 'ram' }],
      vmas: [
        { name: 'rw', start: hx(hva), size: hx(half), prot: 'rw', backing: 'anon' },
        { name: 'ro', start: hx(hva + half), size: hx(half), prot: 'r', backing: 'anon' },
      ],
      vm: { ipaBits: 40 },
      memslots: [{ slot: 0, gpa: hx(gpa), size: hx(2 * half), hva: hx(hva) }],
      steps: [
        { access: 'write', ipa: hx(gpa + half - 4096) },
        { access: 'write', ipa: hx(gpa + half) },
        { access: 'read', ipa: hx(gpa + half + 8) },
      ],
    };
    // The first write is the fused path's; the write that the read-only VMA refuses and the
    // read (the zero page) are the general path's.
    expect(compare(s)).toEqual({ fused: 1, faults: 3 });
  });

  it('random scenarios around its case: identical tables, host state, events, costs and outputs', () => {
    let fused = 0;
    fc.assert(
      fc.property(plainWorld, (w) => {
        fused += compare(plainScenario(w)).fused;
      }),
      { numRuns: 200, seed: 0x9f, endOnFailure: true },
    );
    // The property exercised the fused path, not only its declines.
    expect(fused).toBeGreaterThan(500);
  }, 240_000);

  it('random scenarios of every kind (the host-consistency worlds): identical results', () => {
    fc.assert(
      fc.property(worldGen, (w) => {
        compare(scenarioOf(w));
      }),
      { numRuns: 150, seed: 0x9f, endOnFailure: true },
    );
  }, 240_000);
});
