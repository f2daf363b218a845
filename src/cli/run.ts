/**
 * `s2emu run FILE [--json] [--kernel V]`: runs a scenario and prints a readable report, or
 * the JSON lines of scenario-format.md.
 */

import cliProgress from 'cli-progress';
import pc from 'picocolors';
import { CPU_PRESETS } from '../mmu/cpu.js';
import { COST_CAUSES, CostBreakdown, formatBreakdown, formatNs } from '../mmu/cost.js';
import type { KernelName } from '../mmu/kernel.js';
import type { AccessResult } from '../mmu/vcpu.js';
import { ScenarioError } from '../scenario/errors.js';
import { parseScenarioText } from '../scenario/parse.js';
import { ScenarioRunner, accessJson, countAccesses, uffdEventJson } from '../scenario/run.js';
import type { AccessExtra, RunSummary } from '../scenario/run.js';
import type { UffdEvent } from '../mmu/host/uffd.js';
import type { Scenario, Step } from '../scenario/types.js';
import { DescriptorView } from '../views/descriptor.js';
import { hexShort } from '../views/hooks.js';
import { formatSize } from '../scenario/values.js';
import { CliInputError, readInput } from './errors.js';
import { hex64 } from '../pgtable/descriptor.js';
import { mairText } from '../pgtable/memattr.js';
import { S1_FAULT_NAMES } from '../mmu/stage1.js';
import { S1R_FAULT, S1R_LEAF } from '../mmu/vcpu.js';

/** Options of the run command. */
export interface RunCommandOptions {
  json: boolean;
  kernel: string | undefined;
  color: boolean;
  /** The host-consistency audit after every step (default on; `--no-audit`). */
  audit?: boolean;
}

const KERNEL_NAMES = ['6.16', 'seed', '6.17'];

/** Bytes as 0 / 4K / 2M / 1G, or hex when not a whole unit. */
function size(b: number): string {
  return b === 0 ? '0' : formatSize(b);
}

/** Per-step aggregation for the readable report. */
class StepAgg {
  accesses = 0;
  outcomes = new Map<string, number>();
  errnos = new Map<string, number>();
  faults = new Map<string, number>();
  /** Distinct leaves (by IPA) per kind of leaf. */
  leaves = new Map<string, Set<number>>();
  /** A sample leaf per attribute class, for the report. */
  sampleLeaf = new Map<string, string>();
  dcacheBytes = 0;
  icacheBytes = 0;
  tlbi = 0;
  uffd = 0;
  /** Effective memory types seen (with a guest), with counts. */
  memTypes = new Map<string, number>();
  /** The last access's stage-1 result, value, PAR_EL1 and UNDEF, as report text (null: none). */
  s1: string | null = null;
  value: string | null = null;
  par: string | null = null;
  undef = false;
  /** Modelled hardware time of the step's accesses, by cause. */
  readonly cost = new CostBreakdown();
  /** The last access's host events as report lines: SIGBUS, the VMM's MMIO exit, userfaultfd events. */
  host: string[] = [];

  add(r: AccessResult, view: (r: AccessResult) => DescriptorView | null, extra?: AccessExtra): void {
    this.accesses++;
    this.host = hostNotes(r, extra);
    this.outcomes.set(r.outcomeName, (this.outcomes.get(r.outcomeName) ?? 0) + 1);
    if (r.errnoName) this.errnos.set(r.errnoName, (this.errnos.get(r.errnoName) ?? 0) + 1);
    for (let i = 0; i < r.nFaults; i++) {
      const f = r.faults[i]!;
      const k = `${f.fsc === 1 ? 'translation' : f.fsc === 2 ? 'access-flag' : 'permission'} L${f.level} → ${f.handler} ${f.ret}`;
      this.faults.set(k, (this.faults.get(k) ?? 0) + 1);
    }
    if (r.leafValid) {
      const v = view(r);
      if (v) {
        const text = v.toString();
        // Group by what the leaf is, not where: kind, size and attributes.
        const cls = text.replace(/^ipa 0x[0-9a-f]+: /, '').replace(/ 0x[0-9a-f]+ /, ' ');
        let set = this.leaves.get(cls);
        if (!set) {
          this.leaves.set(cls, (set = new Set()));
          this.sampleLeaf.set(cls, text);
        }
        set.add(r.leafIpa);
      }
    }
    this.dcacheBytes += r.stats.dcacheBytes;
    this.icacheBytes += r.stats.icacheBytes;
    this.tlbi += r.stats.tlbi;
    this.uffd += r.stats.uffdEvents;
    if (r.memTypeValid) {
      const t = mairText(r.memAttr);
      this.memTypes.set(t, (this.memTypes.get(t) ?? 0) + 1);
    }
    if (r.s1Result === S1R_LEAF)
      this.s1 = `L${r.s1Level} descriptor ${hex64(r.s1DescLo, r.s1DescHi)} in the table page at 0x${r.s1TableIpa.toString(16)}`;
    else if (r.s1Result === S1R_FAULT) this.s1 = `${S1_FAULT_NAMES[r.s1Fault - 2]} fault at L${r.s1Level}`;
    this.value = r.hasValue ? hex64(r.valueLo, r.valueHi) : null;
    this.par = r.parValid ? hex64(r.parLo, r.parHi) : null;
    this.undef = r.undef;
  }
}

const NO_NOTES: string[] = [];

/** Report lines for what the host did on an access: SIGBUS, the MMIO exit, userfaultfd events. */
function hostNotes(r: AccessResult, extra?: AccessExtra): string[] {
  const exit = r.outcomeName === 'sigbus' || r.outcomeName === 'mmio' || r.outcomeName === 'nisv';
  if (!exit && !extra?.uffdEvents?.length) return NO_NOTES;
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
function uffdText(events: readonly UffdEvent[]): string {
  const t = events
    .slice(0, 6)
    .map((e) => `${e.vma}+0x${e.offset.toString(16)} (${e.write ? 'write' : 'read'})`);
  return t.join(', ') + (events.length > 6 ? `, ... (${events.length})` : '');
}

function describeStep(st: Step): string {
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

/** Runs the command. Returns the exit status. */
export function runCommand(args: string[], opts: RunCommandOptions): number {
  if (args.length !== 1) throw new CliInputError('run: expected one scenario FILE (or - for standard input)');
  if (opts.kernel !== undefined && !KERNEL_NAMES.includes(opts.kernel)) {
    throw new CliInputError(
      `--kernel: expected one of ${KERNEL_NAMES.map((k) => `"${k}"`).join(', ')}, got "${opts.kernel}"`,
    );
  }
  const file = args[0]!;
  const text = readInput(file);
  let scenario: Scenario;
  try {
    scenario = parseScenarioText(text);
  } catch (e) {
    if (e instanceof ScenarioError) {
      const where = file === '-' ? '<stdin>' : file;
      throw new CliInputError(`${where}: scenario rejected:\n${e.message}`);
    }
    throw e;
  }
  const kernel = (opts.kernel ?? scenario.kernel) as KernelName;
  const total = countAccesses(scenario);
  const showProgress = !opts.json && process.stderr.isTTY === true && total >= 200_000;
  const bar = showProgress
    ? new cliProgress.SingleBar(
        {
          format: 'running [{bar}] {percentage}% {value}/{total} accesses',
          clearOnComplete: true,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
  let runner: ScenarioRunner;
  try {
    runner = new ScenarioRunner(scenario, {
      kernel,
      auditHost: opts.audit ?? true,
      ...(bar ? { progress: (done: number) => bar.update(done), progressEvery: 16384 } : {}),
    });
  } catch (e) {
    throw new CliInputError(`${file}: ${(e as Error).message}`);
  }
  bar?.start(total, 0);
  if (opts.json) {
    const lines: string[] = [];
    const flush = (): void => {
      if (lines.length) process.stdout.write(lines.join('\n') + '\n');
      lines.length = 0;
    };
    const summary = runner.run({
      memslotRefused: (slot, errno) => lines.push(JSON.stringify({ memslot: slot, errno })),
      dirtyLog: (step, slot, gfns) =>
        lines.push(
          JSON.stringify({ step, dirtyLog: { slot, gfns: gfns.map((g) => '0x' + g.toString(16)) } }),
        ),
      hostWrite: (step, w, events) =>
        lines.push(
          JSON.stringify({
            step,
            hostWrite: { vma: w.vma, offset: '0x' + w.offset.toString(16), size: w.size },
            uffdEvents: events.map((e) => uffdEventJson(e)),
          }),
        ),
      access: (step, r, extra) => {
        lines.push(JSON.stringify(accessJson(step, r, runner.accessCost(r).total, extra)));
        if (lines.length >= 4096) flush();
      },
    });
    lines.push(JSON.stringify({ summary }));
    flush();
    return 0;
  }

  // The readable report.
  const c = opts.color ? pc : pc.createColors(false);
  const aggs = new Map<number, StepAgg>();
  const refused: string[] = [];
  const dirty: string[] = [];
  const hostWrites = new Map<number, string>();
  const kvm = runner.kvm;
  const view = (r: AccessResult): DescriptorView | null =>
    new DescriptorView(r.leafLo, r.leafHi, r.leafLevel, kvm.pgt, r.leafIpa);
  const summary = runner.run({
    memslotRefused: (slot, errno, step) =>
      refused.push(`memslot ${slot}${step === null ? '' : ` (step ${step})`} refused: -${errno}`),
    dirtyLog: (step, slot, gfns) =>
      dirty.push(
        `step ${step}: slot ${slot} had ${gfns.length} dirty page(s)${
          gfns.length
            ? ` (${gfns
                .slice(0, 4)
                .map((g) => '0x' + g.toString(16))
                .join(', ')}${gfns.length > 4 ? ', ...' : ''})`
            : ''
        }`,
      ),
    hostWrite: (step, _w, events) => {
      if (events.length) hostWrites.set(step, `userfaultfd: ${uffdText(events)}`);
    },
    access: (step, r, extra) => {
      let a = aggs.get(step);
      if (!a) aggs.set(step, (a = new StepAgg()));
      a.add(r, view, extra);
      a.cost.add(runner.accessCost(r));
    },
  });
  bar?.stop();
  printReport(c, scenario, runner, kernel, aggs, refused, dirty, summary, hostWrites);
  return 0;
}

function printReport(
  c: ReturnType<typeof pc.createColors>,
  scenario: Scenario,
  runner: ScenarioRunner,
  kernel: string,
  aggs: Map<number, StepAgg>,
  refused: string[],
  dirty: string[],
  s: RunSummary,
  hostWrites: Map<number, string>,
): void {
  const out: string[] = [];
  const kvm = runner.kvm;
  const cpu = runner.cpu;
  const profile = 'profile' in scenario.cpu ? scenario.cpu.profile : null;
  const feats = (Object.keys(cpu) as (keyof typeof cpu)[]).filter((k) => cpu[k]).join(' ') || 'none';
  out.push(c.bold('s2emu run') + (scenario.description ? `: ${scenario.description}` : ''));
  out.push(
    `  host  ${profile ? `${profile} (${CPU_PRESETS[profile]?.description ?? ''}); ` : ''}features: ${feats}; ${scenario.granule} pages, PA ${scenario.paBits} bits`,
  );
  out.push(`  VM    ${kvm.describe()}${kvm.mte ? ', MTE' : ''}`);
  if (kernel !== scenario.kernel) out.push(`  (kernel overridden on the command line: ${kernel})`);
  for (const r of refused) out.push(c.yellow(`  ${r}`));
  out.push('');
  out.push(c.bold('Steps'));
  for (const st of scenario.steps) {
    const a = aggs.get(st.index);
    out.push(`  ${c.cyan(`[${st.index}]`)} ${describeStep(st)}`);
    const hw = hostWrites.get(st.index);
    if (hw !== undefined) out.push(`      ${hw}`);
    if (!a) continue;
    const oc = [...a.outcomes].map(([k, n]) => {
      const t = `${k}${a.accesses > 1 ? ` ×${n}` : ''}`;
      return k === 'done' ? c.green(t) : k === 'mmio' || k === 'nisv' ? c.blue(t) : c.red(t);
    });
    const errs = [...a.errnos].map(([k]) => `-${k}`);
    out.push(`      guest saw: ${oc.join(', ')}${errs.length ? ` (${errs.join(', ')})` : ''}`);
    for (const [k, n] of a.faults) out.push(`      fault: ${k}${n > 1 || a.accesses > 1 ? ` ×${n}` : ''}`);
    for (const [cls, set] of a.leaves) {
      const sample = a.sampleLeaf.get(cls)!;
      out.push(`      leaf: ${a.accesses > 1 ? `${set.size} × ${cls}` : sample}`);
    }
    const cost: string[] = [];
    if (a.dcacheBytes) cost.push(`cleaned ${size(a.dcacheBytes)} to PoC`);
    if (a.icacheBytes) cost.push(`invalidated ${size(a.icacheBytes)} of I-cache`);
    if (a.tlbi) cost.push(`${a.tlbi} TLBI`);
    if (a.uffd) cost.push(`${a.uffd} userfaultfd event(s)`);
    if (a.undef)
      out.push(`      UNDEF: DC ZVA is prohibited (DCZID_EL0.DZP); nothing was translated or written`);
    if (a.s1 !== null) out.push(`      stage 1: ${a.accesses > 1 ? 'last: ' : ''}${a.s1}`);
    for (const [t, n] of a.memTypes) out.push(`      memory type: ${t}${a.accesses > 1 ? ` ×${n}` : ''}`);
    if (a.value !== null) out.push(`      value: ${a.accesses > 1 ? 'last: ' : ''}${a.value}`);
    if (a.par !== null) out.push(`      PAR_EL1: ${a.par}`);
    for (const h of a.host) out.push(`      ${a.accesses > 1 ? 'last: ' : ''}${h}`);
    if (cost.length) out.push(`      cost: ${cost.join(', ')}`);
    if (a.cost.total > 0) {
      const per = a.accesses > 1 ? ` (${formatNs(a.cost.total / a.accesses)} per access)` : '';
      out.push(`      modelled: ${formatNs(a.cost.total)}${per}: ${formatBreakdown(a.cost, 4)}`);
    }
  }
  for (const d of dirty) out.push(`  ${d}`);
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
    for (const d of s.diagnostics) out.push(c.yellow(`    ${d}`));
  }
  process.stdout.write(out.join('\n') + '\n');
}
