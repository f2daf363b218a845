/**
 * The readable report of `s2emu run`: per-step aggregation of the access results, then the
 * text. Aggregation keeps constant memory per distinct class (a leaf's level and attribute
 * bits, a fault's class, level, handler and return) and formats nothing per access: numbers
 * are counted under small-integer keys and turned into text once, when the report is printed.
 * A touch of 72 GiB at 4K stride (2^34 accesses, 2^34 distinct leaves) therefore costs a few
 * map entries, not a Set of every leaf.
 */

import type pc from 'picocolors';
import { CPU_PRESETS } from '../mmu/cpu.js';
import { COST_CAUSES, CostBreakdown, formatBreakdown, formatNs } from '../mmu/cost.js';
import type { UffdEvent } from '../mmu/host/uffd.js';
import { S1_FAULT_NAMES } from '../mmu/stage1.js';
import { OUTCOME_NAMES, OUT_MMIO, OUT_NISV, OUT_SIGBUS, S1R_FAULT, S1R_LEAF } from '../mmu/vcpu.js';
import type { AccessResult } from '../mmu/vcpu.js';
import { hex64 } from '../pgtable/descriptor.js';
import { errnoName } from '../pgtable/errno.js';
import { mairText } from '../pgtable/memattr.js';
import type { DescriptorContext } from '../views/descriptor.js';
import { DescriptorView } from '../views/descriptor.js';
import { hexShort } from '../views/hooks.js';
import { accessJson } from '../scenario/run.js';
import type { AccessExtra, RunSummary, ScenarioRunner } from '../scenario/run.js';
import type { Scenario, Step } from '../scenario/types.js';
import { formatSize } from '../scenario/format.js';

/** Colour functions (picocolors, or its no-colour twin). */
export type Colors = ReturnType<typeof pc.createColors>;

/** Bytes as 0 / 4K / 2M / 1G, or hex when not a whole unit. */
function size(b: number): string {
  return b === 0 ? '0' : formatSize(b);
}

/** Fault status classes as the hardware walk reports them (FAULT_* of hwwalk.ts). */
const FSC_NAMES = ['none', 'translation', 'access-flag', 'permission', 'external abort'];

/** A handler's return as the kernel writes it: 0 or 1, or a negative errno by name. */
export function retText(ret: number): string {
  return ret < 0 ? `-${errnoName(ret)}` : String(ret);
}

/** Leaf class key: (level + 1) · 2^26 + descriptor bits [63:50] · 2^12 + bits [11:0]. */
function leafKey(lo: number, hi: number, level: number): number {
  return (level + 1) * 0x400_0000 + (hi >>> 18) * 0x1000 + (lo & 0xfff);
}

/** One leaf class: how many accesses ended on it, and one leaf of it to describe it by. */
interface LeafClass {
  count: number;
  lo: number;
  hi: number;
  level: number;
  ipa: number;
}

/** One fault class: how many faults of it, and what identifies it. */
interface FaultClass {
  count: number;
  fsc: number;
  level: number;
  s1ptw: boolean;
  handler: string;
  ret: number;
}

/** Handler names (the kernel functions) get small ids, so a fault's key is a number. */
const handlerIds = new Map<string, number>();

function handlerId(h: string): number {
  let id = handlerIds.get(h);
  if (id === undefined) handlerIds.set(h, (id = handlerIds.size));
  return id;
}

/** The last access's stage-1 result, value and PAR_EL1, kept raw (formatted when printed). */
interface LastAccess {
  s1Result: number;
  s1Level: number;
  s1Fault: number;
  s1DescLo: number;
  s1DescHi: number;
  s1TableIpa: number;
  hasValue: boolean;
  valueLo: number;
  valueHi: number;
  parValid: boolean;
  parLo: number;
  parHi: number;
  undef: boolean;
}

/**
 * What the accesses of one step did, aggregated. add() takes each access's result (reused by
 * the caller) and copies the few numbers it keeps.
 */
export class StepReport {
  accesses = 0;
  /** Outcomes by OUT_* value. */
  readonly outcomes: number[] = [];
  /** KVM_RUN errors by errno. */
  readonly errnos = new Map<number, number>();
  readonly faults = new Map<number, FaultClass>();
  readonly leaves = new Map<number, LeafClass>();
  /** Effective memory types (with a guest) by MAIR byte. */
  readonly memTypes = new Map<number, number>();
  dcacheBytes = 0;
  icacheBytes = 0;
  icacheInvalAll = 0;
  tlbi = 0;
  uffd = 0;
  hwAf = 0;
  readonly cost = new CostBreakdown();
  readonly last: LastAccess = {
    s1Result: 0,
    s1Level: 0,
    s1Fault: 0,
    s1DescLo: 0,
    s1DescHi: 0,
    s1TableIpa: 0,
    hasValue: false,
    valueLo: 0,
    valueHi: 0,
    parValid: false,
    parLo: 0,
    parHi: 0,
    undef: false,
  };
  /**
   * The last exit's or userfaultfd event's report lines (an exit to the VMM, a SIGBUS):
   * formatted when they happen, since each is a round trip to the VMM anyway.
   */
  host: readonly string[] = NO_NOTES;

  /** Adds one access (and its modelled cost, when priced). */
  add(r: AccessResult, cost: CostBreakdown | null, extra?: AccessExtra): void {
    this.accesses++;
    this.outcomes[r.outcome] = (this.outcomes[r.outcome] ?? 0) + 1;
    if (r.errno !== 0) this.errnos.set(r.errno, (this.errnos.get(r.errno) ?? 0) + 1);
    for (let i = 0; i < r.nFaults; i++) {
      const f = r.fault(i);
      const key =
        (((handlerId(f.handler) * 8 + f.fsc) * 8 + (f.level + 1)) * 2 + (f.s1ptw ? 1 : 0)) * 8192 +
        (f.ret + 4096);
      const c = this.faults.get(key);
      if (c) c.count++;
      else
        this.faults.set(key, {
          count: 1,
          fsc: f.fsc,
          level: f.level,
          s1ptw: f.s1ptw,
          handler: f.handler,
          ret: f.ret,
        });
    }
    if (r.leafValid) {
      const key = leafKey(r.leafLo, r.leafHi, r.leafLevel);
      const c = this.leaves.get(key);
      if (c) c.count++;
      else this.leaves.set(key, { count: 1, lo: r.leafLo, hi: r.leafHi, level: r.leafLevel, ipa: r.leafIpa });
    }
    const s = r.stats;
    this.dcacheBytes += s.dcacheBytes;
    this.icacheBytes += s.icacheBytes;
    this.icacheInvalAll += s.icacheInvalAll;
    this.tlbi += s.tlbi;
    this.uffd += s.uffdEvents;
    this.hwAf += s.hwAfUpdates;
    if (r.memTypeValid) this.memTypes.set(r.memAttr, (this.memTypes.get(r.memAttr) ?? 0) + 1);
    const l = this.last;
    l.s1Result = r.s1Result;
    l.s1Level = r.s1Level;
    l.s1Fault = r.s1Fault;
    l.s1DescLo = r.s1DescLo;
    l.s1DescHi = r.s1DescHi;
    l.s1TableIpa = r.s1TableIpa;
    l.hasValue = r.hasValue;
    l.valueLo = r.valueLo;
    l.valueHi = r.valueHi;
    l.parValid = r.parValid;
    l.parLo = r.parLo;
    l.parHi = r.parHi;
    l.undef = r.undef;
    const exit = r.outcome === OUT_SIGBUS || r.outcome === OUT_MMIO || r.outcome === OUT_NISV;
    this.host = exit || (extra?.uffdEvents?.length ?? 0) > 0 ? hostNotes(r, extra) : NO_NOTES;
    if (cost) this.cost.add(cost);
  }
}

const NO_NOTES: readonly string[] = [];

/** Report lines for what the host did on an access: SIGBUS, the MMIO exit, userfaultfd events. */
function hostNotes(r: AccessResult, extra?: AccessExtra): string[] {
  const o = accessJson(0, r, undefined, extra);
  const out: string[] = [];
  const sig = o['sigbus'] as { addr: string; lsb: number } | undefined;
  if (sig) out.push(`SIGBUS (BUS_MCEERR_AR) to the VMM: addr ${sig.addr}, lsb ${sig.lsb}`);
  const m = o['mmio'] as { ipa: string; len: number; write: boolean } | undefined;
  if (m) out.push(`VMM sees: ${m.write ? 'write' : 'read'} of ${m.len} bytes at IPA ${m.ipa}`);
  if (extra?.uffdEvents?.length) out.push(`userfaultfd: ${uffdText(extra.uffdEvents)}`);
  return out;
}

/** Events as `ram+0x1000 (read), ...`, at most six. */
export function uffdText(events: readonly UffdEvent[]): string {
  const t = events
    .slice(0, 6)
    .map((e) => `${e.vma}+0x${e.offset.toString(16)} (${e.write ? 'write' : 'read'})`);
  return t.join(', ') + (events.length > 6 ? `, ... (${events.length})` : '');
}

/** One step as a line of the report's step list. */
export function describeStep(st: Step): string {
  switch (st.kind) {
    case 'access':
      return `${st.access} ${st.space} ${hexShort(st.address)}`;
    case 'touch':
      return `touch ${st.access} ${hexShort(st.from)}+${size(st.size)} every ${size(st.stride)}${st.order === 'random' ? ' (random order)' : ''}`;
    case 'hostUnmap':
      return `host unmaps ${st.vma}+${hexShort(st.offset)} (${size(st.size)})`;
    case 'hostProtect':
      return `host mprotect(${st.vma}, ${st.prot})`;
    case 'age':
      return `age ${hexShort(st.ipa)}+${size(st.size)}`;
    case 'dirtyLog':
      return `dirty log ${st.op} slot ${st.slot}`;
    case 'memslot':
      return `add memslot ${st.memslot.slot}`;
    case 'deleteMemslot':
      return `delete memslot ${st.slot}`;
    case 'hostWrite':
      return `VMM writes ${st.bytes.length} byte(s) at ${st.vma}+${hexShort(st.offset)}`;
    case 'mmap':
      return `mmap(MAP_FIXED) ${st.vma.name} at ${hexShort(st.vma.start)}+${size(st.vma.size)} (${st.vma.backing})`;
    case 'munmap':
      return `munmap ${st.vma}+${hexShort(st.offset)} (${size(st.size)})`;
    case 'poison':
      return `memory_failure() on ${st.vma}+${hexShort(st.offset)}`;
  }
}

/** A fault class as report text: `translation L3 (S1PTW) → user_mem_abort -ENOEXEC`. */
function faultText(f: FaultClass): string {
  return `${FSC_NAMES[f.fsc] ?? `fsc ${f.fsc}`} L${f.level}${f.s1ptw ? ' (S1PTW)' : ''} → ${f.handler} ${retText(f.ret)}`;
}

/**
 * Wraps `text` to `width` columns, continuing lines with `indent`. Words longer than a line
 * are kept whole. Returns the lines.
 */
export function wrap(text: string, width: number, indent: string): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (word === '') continue;
    if (line !== '' && line.length + 1 + word.length > width) {
      out.push(line);
      line = indent + word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') out.push(line);
  return out;
}

/** What the report shows besides the steps. */
export interface ReportInput {
  scenario: Scenario;
  runner: ScenarioRunner;
  kernel: string;
  /** Step index → its aggregate (steps without accesses have none). */
  steps: Map<number, StepReport>;
  /** Step index → extra lines (refused memslots, dirty-log harvests, VMM writes). */
  notes: Map<number, string[]>;
  /** Memslots refused at set-up. */
  refused: string[];
  summary: RunSummary;
  /** Terminal width for wrapping long text (null: no wrapping). */
  width: number | null;
}

/** The report's lines. */
export function formatReport(c: Colors, input: ReportInput): string[] {
  const { scenario, runner, kernel, summary: s } = input;
  const out: string[] = [];
  const kvm = runner.kvm;
  const cpu = runner.cpu;
  const profile = 'profile' in scenario.cpu ? scenario.cpu.profile : null;
  const feats = (Object.keys(cpu) as (keyof typeof cpu)[]).filter((k) => cpu[k]).join(' ') || 'none';
  const head = c.bold('s2emu run') + (scenario.description ? `: ${scenario.description}` : '');
  if (input.width !== null) out.push(...wrap(head, input.width, '  '));
  else out.push(head);
  out.push(
    `  host  ${profile ? `${profile} (${CPU_PRESETS[profile]?.description ?? ''}); ` : ''}features: ${feats}; ${scenario.granule} pages, PA ${scenario.paBits} bits`,
  );
  out.push(`  VM    ${kvm.describe()}${kvm.mte ? ', MTE' : ''}`);
  if (kernel !== scenario.kernel) out.push(`  (kernel overridden on the command line: ${kernel})`);
  for (const r of input.refused) out.push(c.yellow(`  ${r}`));
  out.push('');
  out.push(c.bold('Steps'));
  const ctx: DescriptorContext = kvm.pgt;
  for (const st of scenario.steps) {
    const a = input.steps.get(st.index);
    out.push(`  ${c.cyan(`[${st.index}]`)} ${describeStep(st)}`);
    for (const n of input.notes.get(st.index) ?? []) out.push(`      ${n}`);
    if (!a) continue;
    const many = a.accesses > 1;
    const oc: string[] = [];
    a.outcomes.forEach((n, o) => {
      const k = OUTCOME_NAMES[o]!;
      const t = `${k}${many ? ` ×${n}` : ''}`;
      oc.push(k === 'done' ? c.green(t) : k === 'mmio' || k === 'nisv' ? c.blue(t) : c.red(t));
    });
    const errs = [...a.errnos.keys()].map((e) => `-${errnoName(e)}`);
    out.push(`      guest saw: ${oc.join(', ')}${errs.length ? ` (${errs.join(', ')})` : ''}`);
    for (const f of a.faults.values())
      out.push(`      fault: ${faultText(f)}${f.count > 1 || many ? ` ×${f.count}` : ''}`);
    for (const l of a.leaves.values()) {
      const text = new DescriptorView(l.lo, l.hi, l.level, ctx, l.ipa).toString();
      if (!many) out.push(`      leaf: ${text}`);
      else {
        // A class, not an address: drop the IPA prefix and the output address.
        const cls = text.replace(/^ipa 0x[0-9a-f]+: /, '').replace(/ 0x[0-9a-f]+ /, ' ');
        out.push(`      leaf: ${cls} ×${l.count}`);
      }
    }
    const cost: string[] = [];
    if (a.dcacheBytes) cost.push(`cleaned ${size(a.dcacheBytes)} to PoC`);
    if (a.icacheBytes) cost.push(`invalidated ${size(a.icacheBytes)} of I-cache`);
    if (a.icacheInvalAll) cost.push(`${a.icacheInvalAll} whole-I-cache invalidation(s)`);
    if (a.tlbi) cost.push(`${a.tlbi} TLBI`);
    if (a.uffd) cost.push(`${a.uffd} userfaultfd event(s)`);
    if (a.hwAf) cost.push(`${a.hwAf} AF set by the walk (no fault)`);
    const l = a.last;
    if (l.undef)
      out.push(`      UNDEF: DC ZVA is prohibited (DCZID_EL0.DZP); nothing was translated or written`);
    const last = many ? 'last: ' : '';
    if (l.s1Result === S1R_LEAF)
      out.push(
        `      stage 1: ${last}L${l.s1Level} descriptor ${hex64(l.s1DescLo, l.s1DescHi)} in the table page at 0x${l.s1TableIpa.toString(16)}`,
      );
    else if (l.s1Result === S1R_FAULT)
      out.push(`      stage 1: ${last}${S1_FAULT_NAMES[l.s1Fault - 2]} fault at L${l.s1Level}`);
    for (const [t, n] of a.memTypes) out.push(`      memory type: ${mairText(t)}${many ? ` ×${n}` : ''}`);
    if (l.hasValue) out.push(`      value: ${last}${hex64(l.valueLo, l.valueHi)}`);
    if (l.parValid) out.push(`      PAR_EL1: ${hex64(l.parLo, l.parHi)}`);
    for (const h of a.host) out.push(`      ${last}${h}`);
    if (cost.length) out.push(`      cost: ${cost.join(', ')}`);
    if (a.cost.total > 0) {
      const per = many ? ` (${formatNs(a.cost.total / a.accesses)} per access)` : '';
      out.push(`      modelled: ${formatNs(a.cost.total)}${per}: ${formatBreakdown(a.cost, 4)}`);
    }
  }
  out.push('');
  out.push(c.bold('Summary'));
  const outcomes = Object.entries(s.outcomes)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  out.push(
    `  accesses ${s.accesses} (${outcomes || 'none'}); faults ${s.faults}; maps ${s.maps}; relaxes ${s.relaxes}; access-flag faults ${s.mkyoungs}${s.hwAfUpdates ? `; AF set by hardware ${s.hwAfUpdates}` : ''}`,
  );
  out.push(
    `  stage-2 table pages ${s.tablePages}; host pages allocated ${s.hostPagesZeroed}; MMIO exits ${s.mmioExits}; injected ${s.injected}`,
  );
  out.push(
    `  cache maintenance: ${size(s.dcacheBytes)} cleaned to PoC, ${size(s.icacheBytes)} I-cache by range, ${s.icacheInvalAll} whole I-cache; ${s.tlbi} TLBI`,
  );
  if (s.uffdEvents) out.push(`  userfaultfd events ${s.uffdEvents}`);
  if (s.stoppedAtStep !== undefined)
    out.push(c.red(`  stopped at step ${s.stoppedAtStep}: KVM_RUN failed and onError is "stop"`));
  if (s.dirtyPages) out.push(`  dirty pages ${s.dirtyPages}`);
  if (s.mtePagesCleared) out.push(`  MTE tags cleared on ${s.mtePagesCleared} page(s)`);
  if (s.modelledNs > 0) {
    const by = new CostBreakdown();
    for (const k of COST_CAUSES) by[k] = s.modelledByCause[k];
    out.push(
      `  modelled hardware time (${s.costModel} unit costs): ${formatNs(s.modelledNs)}: ${formatBreakdown(by)}`,
    );
  }
  const errs = Object.entries(s.errors);
  if (errs.length) out.push(c.red(`  KVM_RUN errors: ${errs.map(([k, n]) => `-${k} ×${n}`).join(', ')}`));
  if (s.diagnostics.length) {
    out.push(c.yellow('  diagnostics:'));
    for (const d of s.diagnostics) {
      if (input.width !== null)
        for (const w of wrap(d, input.width - 4, '      ')) out.push(c.yellow(`    ${w}`));
      else out.push(c.yellow(`    ${d}`));
    }
  }
  return out;
}
