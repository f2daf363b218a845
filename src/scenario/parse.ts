/**
 * Scenario validation (docs/scenario.md): from the JSON value of a scenario file to a Scenario
 * with every default applied.
 *
 * All checking happens here, before anything runs. The checker never stops at the first problem:
 * it collects every issue with its key path (`vmas[2].backing`) and throws one ScenarioError.
 * The rule for what is rejected here and what is left to the run: what the file itself gets
 * wrong (types, enum values, alignment, overlaps, references to names that do not exist, and the
 * checks KVM's generic kvm_set_memory_region() would make) is rejected here; what the modelled
 * arm64 code decides (kvm_arch_prepare_memory_region() refusals, fault outcomes) is an output of
 * the run, so a file that provokes it is valid.
 *
 * This file holds the entry points and the top level; the checker's primitives are in check.ts,
 * the sections in parse-host.ts (cpu, vm, physical, vmas, memslots), parse-guest.ts and
 * parse-steps.ts, and the positions of keys in the text in jsonpos.ts.
 */

import { GRANULE_BYTES, GRANULES, KERNELS, ON_ERRORS, PA_BITS } from './types.js';
import type { Scenario } from './types.js';
import { NO_CPU_FEATURES, kvmIpaLimitBits, kvmLpa2IsEnabled } from '../mmu/cpu.js';
import { Checker, complete, get } from './check.js';
import type { Context } from './check.js';
import { M, ScenarioError } from './errors.js';
import type { ScenarioIssue } from './errors.js';
import { findOffset, lineColumns, scanJson } from './jsonpos.js';
import {
  readCpu,
  readCpuOptions,
  readMemslots,
  readPhysical,
  readVm,
  readVmas,
  SlotTracker,
} from './parse-host.js';
import { readGuest } from './parse-guest.js';
import { readSteps } from './parse-steps.js';

export { stage1Builder } from './parse-guest.js';

/**
 * Validate and normalise a scenario given as a JSON value (the result of JSON.parse, or an
 * object built in code with the same shape as the file).
 *
 * Returns the Scenario; throws a ScenarioError listing every problem found.
 */
export function parseScenario(input: unknown): Scenario {
  const { scenario, issues } = check(input);
  if (issues.length > 0 || scenario === undefined) throw new ScenarioError(issues);
  return scenario;
}

/**
 * Parse the text of a scenario file. A JSON syntax error becomes a ScenarioError with the line and
 * column of the fault; validation issues carry the line and column of the key they name, and
 * a key given twice in one object (which JSON.parse would silently resolve) is an issue too.
 *
 * Returns the Scenario; throws a ScenarioError listing every problem found, in file order.
 */
export function parseScenarioText(text: string): Scenario {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let input: unknown;
  try {
    input = JSON.parse(source);
  } catch (e) {
    const scan = scanJson(source, false);
    if (scan.ok) throw new ScenarioError([{ path: '', message: M.jsonSyntax((e as Error).message) }]);
    throw new ScenarioError([
      { path: '', message: M.jsonSyntax(scan.message), ...lineColumns(source)(scan.offset) },
    ]);
  }
  const scan = scanJson(source, true);
  const { scenario, issues } = check(input);
  const all: ScenarioIssue[] = [];
  const lineColumn = lineColumns(source);
  if (scan.ok) {
    for (const d of scan.duplicates)
      all.push({ path: d.path, message: M.duplicateKey, ...lineColumn(d.offset) });
    for (const issue of issues) {
      const offset = findOffset(scan.positions, issue.path);
      all.push(offset === undefined ? issue : { ...issue, ...lineColumn(offset) });
    }
    // Stable sort into file order; issues about the whole file (no position) stay first.
    all.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  } else {
    all.push(...issues);
  }
  if (all.length > 0 || scenario === undefined) throw new ScenarioError(all);
  return scenario;
}

// ---------------------------------------------------------------------------------------------
// The scenario, section by section.

const TOP_REQUIRED = ['cpu', 'granule', 'physical', 'vmas', 'memslots', 'steps'] as const;
const TOP_OPTIONAL = ['description', 'kernel', 'paBits', 'vm', 'guest', 'onError'] as const;

function check(input: unknown): { scenario: Scenario | undefined; issues: readonly ScenarioIssue[] } {
  const c = new Checker();
  const root = c.object(input, '', { required: TOP_REQUIRED, optional: TOP_OPTIONAL }, M.expectedScenario);
  if (root === undefined) return { scenario: undefined, issues: c.issues };

  const description = Object.hasOwn(root, 'description') ? readDescription(c, root.description) : null;
  const kernel = Object.hasOwn(root, 'kernel') ? c.oneOf(root.kernel, 'kernel', KERNELS) : '6.17';
  const granule = c.oneOf(get(root, 'granule'), 'granule', GRANULES);
  const paBits = Object.hasOwn(root, 'paBits') ? c.oneOf(root.paBits, 'paBits', PA_BITS) : 48;
  const cpu = readCpu(c, get(root, 'cpu'));
  const cpuMte = cpu === undefined ? undefined : cpu.mte;
  // kvm_set_ipa_limit(): beyond 48 bits with 4K/16K pages needs LPA2.
  const lpa2 = cpu !== undefined && cpu.lpa2 === true;
  const ipaLimit =
    paBits === undefined || granule === undefined
      ? paBits
      : kvmIpaLimitBits(
          paBits,
          GRANULE_BYTES[granule],
          kvmLpa2IsEnabled({ ...NO_CPU_FEATURES, lpa2 }, GRANULE_BYTES[granule]),
        );
  const vm = readVm(c, get(root, 'vm'), ipaLimit, cpuMte);
  const page = granule === undefined ? undefined : GRANULE_BYTES[granule];
  const guestValue = get(root, 'guest');
  const ctx: Context = {
    c,
    granule,
    page,
    paBits,
    cpuMte,
    vmaNames: new Map(),
    stage1: guestValue !== undefined,
  };
  const physical = readPhysical(ctx, get(root, 'physical'));
  ctx.physical = physical;
  const vmas = readVmas(ctx, get(root, 'vmas'), physical);
  const slots = new SlotTracker(ctx);
  const memslots = readMemslots(ctx, get(root, 'memslots'), slots);
  const guest = guestValue === undefined ? null : readGuest(ctx, guestValue, memslots, vm?.ipaBits);
  const steps = readSteps(ctx, get(root, 'steps'), slots);

  const scenario = complete<Scenario>({
    description,
    kernel,
    cpu,
    granule,
    paBits,
    physical,
    vmas,
    vm,
    memslots,
    guest,
    steps,
  });
  // onError is kept only when given (absent means "continue").
  const onError = Object.hasOwn(root, 'onError') ? c.oneOf(root.onError, 'onError', ON_ERRORS) : undefined;
  const cpuOptions = readCpuOptions(c, get(root, 'cpu'));
  if (scenario !== undefined && cpuOptions === undefined) return { scenario: undefined, issues: c.issues };
  if (scenario !== undefined && (onError !== undefined || cpuOptions !== null))
    return {
      scenario: {
        ...scenario,
        ...(onError !== undefined ? { onError } : {}),
        ...(cpuOptions !== null ? { cpuOptions } : {}),
      },
      issues: c.issues,
    };
  return { scenario, issues: c.issues };
}

function readDescription(c: Checker, v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  c.report('description', M.expectedString);
  return undefined;
}
