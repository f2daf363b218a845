/**
 * Shared builders for the fault-path tests: a small default host and VM as a scenario object
 * (the same shape as a scenario file), a runner that collects every output line in the
 * machine-readable form (`accessJson`), and a few descriptor constants derived by hand from
 * stage2_set_prot_attr() (arch/arm64/kvm/hyp/pgtable.c) and KVM's MemAttr values
 * (arch/arm64/include/asm/memory.h).
 */

import { parseScenario } from '../../src/scenario/parse.js';
import { ScenarioRunner, accessJson } from '../../src/scenario/run.js';
import type { RunOptions, RunSummary } from '../../src/scenario/run.js';
import { AccessResult } from '../../src/mmu/vcpu.js';
import { ACCESS_NAMES } from '../../src/mmu/access.js';

/** A JSON-shaped scenario (what parseScenario takes). */
export type Json = Record<string, unknown>;

/** One fault in an access line. */
export interface FaultLine {
  fsc: string;
  level: number;
  s1ptw: boolean;
  handler: string;
  ret: number;
}

/** One access line of the output, as accessJson produces it. */
export interface AccessLine {
  step: number;
  access: string;
  ipa: string;
  outcome: string;
  errno?: string;
  faults: FaultLine[];
  leaf: { ipa: string; level: number; size: string; desc: string } | null;
  uffd: number;
  dcacheBytes: number;
  icacheBytes: number;
  tlbi: number;
}

/** Everything a run reported. */
export interface RunOut {
  runner: ScenarioRunner;
  lines: AccessLine[];
  refused: { slot: number; errno: string; step: number | null }[];
  dirty: { step: number; slot: number; gfns: string[] }[];
  summary: RunSummary;
}

/** The CPU of most tests: FWB and DIC (a Grace-like host), no MTE. */
export const CPU_FWB_DIC = {
  fwb: true,
  dic: true,
  idc: true,
  mte: false,
  tlbiRange: true,
  hafdbs: true,
  lse: true,
};
/** A CPU with neither FWB nor DIC (cache maintenance is visible). */
export const CPU_BARE = {
  fwb: false,
  dic: false,
  idc: false,
  mte: false,
  tlbiRange: false,
  hafdbs: false,
  lse: true,
};

/** Host RAM at 0x8000_0000 (4 GiB, linear map) and a device window at 0x40_0000_0000 (4 GiB, nomap). */
export const RAM_BASE = 0x8000_0000;
export const DEV_BASE = 0x40_0000_0000;
export const PHYSICAL = [
  { base: '0x8000_0000', size: '4G', type: 'ram' },
  { base: '0x40_0000_0000', size: '4G', type: 'nomap' },
];

/** The VMM's RAM VMA and its memslot: IPA 0x4000_0000 ↔ hva 0x7f00_0000_0000, 64 MiB. */
export const RAM_HVA = 0x7f00_0000_0000;
export const RAM_IPA = 0x4000_0000;

/**
 * A scenario: 4K granule, FWB+DIC CPU, 6.17, host RAM and a device window, one anon VMA of
 * 64 MiB in slot 0 at IPA 0x4000_0000. `over` replaces top-level keys.
 */
export function scenario(over: Json = {}): Json {
  return {
    kernel: '6.17',
    cpu: CPU_FWB_DIC,
    granule: '4K',
    physical: PHYSICAL,
    vmas: [{ name: 'ram', start: RAM_HVA, size: '64M', backing: 'anon', prot: 'rw' }],
    vm: { ipaBits: 40 },
    memslots: [{ slot: 0, gpa: RAM_IPA, size: '64M', vma: 'ram' }],
    steps: [],
    ...over,
  };
}

/** A single VMA + slot 0 scenario over `vma` (name 'm', hva `hva`, IPA `gpa`). */
export function oneVma(vma: Json, gpa: number | string, over: Json = {}, slot: Json = {}): Json {
  const v: Json = { name: 'm', ...vma };
  return scenario({
    vmas: [v],
    memslots: [{ slot: 0, gpa, size: v['size'], vma: 'm', ...slot }],
    ...over,
  });
}

/** A step list of single accesses: [kind, ipa] pairs. */
export function accesses(...a: [string, number | string][]): Json[] {
  return a.map(([access, ipa]) => ({ access, ipa: typeof ipa === 'number' ? hex(ipa) : ipa }));
}

/** 0x-hex of a number. */
export function hex(n: number): string {
  return '0x' + n.toString(16);
}

/**
 * Parses and runs a scenario, collecting every output line. `before` runs after the host and
 * VM are built and before any memslot or step (to arm a race, poison a page, ...).
 */
export function run(s: Json, before?: (r: ScenarioRunner) => void, opts: RunOptions = {}): RunOut {
  const runner = new ScenarioRunner(parseScenario(s), opts);
  const out: RunOut = {
    runner,
    lines: [],
    refused: [],
    dirty: [],
    summary: undefined as unknown as RunSummary,
  };
  before?.(runner);
  out.summary = runner.run({
    access: (step, r) => out.lines.push(accessJson(step, r) as unknown as AccessLine),
    memslotRefused: (slot, errno, step) => out.refused.push({ slot, errno, step }),
    dirtyLog: (step, slot, gfns) => out.dirty.push({ step, slot, gfns: gfns.map(hex) }),
  });
  return out;
}

/** One more access on a finished run's vCPU (after run()). Returns its line. */
export function more(r: RunOut, kind: string, ipa: number): AccessLine {
  const k = (ACCESS_NAMES as readonly string[]).indexOf(kind);
  if (k < 0) throw new Error(`unknown access ${kind}`);
  const res = new AccessResult();
  r.runner.vcpu.access(k, ipa, res);
  return accessJson(-1, res) as unknown as AccessLine;
}

/** The faults of a line as compact strings: "translation L2 user_mem_abort 0". */
export function faults(l: AccessLine): string[] {
  return l.faults.map((f) => `${f.fsc} L${f.level} ${f.handler} ${f.ret}`);
}

/** The leaf of a line as "level size desc", or null. */
export function leaf(l: AccessLine): string | null {
  return l.leaf ? `L${l.leaf.level} ${l.leaf.ipa} ${l.leaf.size} ${l.leaf.desc}` : null;
}

/** The modelled kernels. */
export const KERNELS = ['6.16', 'seed', 'v7', '6.17'] as const;
