/**
 * Scenario errors: the error type, key paths, and every message the scenario parser reports.
 *
 * A rejected scenario gets a message that names the key path (`vmas[2].backing: expected one
 * of ...`), never a stack trace (docs/scenario.md). Each issue is one problem at one path; a
 * ScenarioError carries all of them, so a user fixes a file in one pass.
 */

import { STEP_KINDS } from './types.js';
import { formatHex, formatSize } from './format.js';

/** One problem in a scenario: where (a key path such as `vmas[2].backing`) and what. */
export interface ScenarioIssue {
  /** Key path of the offending value; `""` for the file as a whole. */
  readonly path: string;
  readonly message: string;
  /** 1-based line of the key in the file, when the scenario was parsed from text. */
  readonly line?: number;
  /** 1-based column (UTF-16 code units) of the key in the file, with `line`. */
  readonly column?: number;
}

/** A scenario rejected before running. Its message lists every issue, one per line. */
export class ScenarioError extends Error {
  readonly issues: readonly ScenarioIssue[];

  constructor(issues: readonly ScenarioIssue[]) {
    super(issues.map((issue) => formatIssue(issue)).join('\n'));
    this.name = 'ScenarioError';
    this.issues = issues;
  }
}

/**
 * Format one issue as `path: message`, with its position: `file:line:column: path: message` when a
 * file name is given, else `path: message (line L, column C)`.
 *
 * Returns the line of text.
 */
export function formatIssue(issue: ScenarioIssue, file?: string): string {
  const text = issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`;
  if (issue.line === undefined) return file === undefined ? text : `${file}: ${text}`;
  if (file !== undefined) return `${file}:${issue.line}:${issue.column ?? 1}: ${text}`;
  return `${text} (line ${issue.line}, column ${issue.column ?? 1})`;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/**
 * The path of member `key` of the value at `parent`: `vmas[0].name`, or `x["odd key"]` for keys
 * that are not identifiers. Returns the path.
 */
export function keyPath(parent: string, key: string): string {
  if (!IDENTIFIER.test(key)) return `${parent}[${JSON.stringify(key)}]`;
  return parent === '' ? key : `${parent}.${key}`;
}

/** The path of element `index` of the array at `parent`. Returns the path. */
export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** The path of the value containing `path` (`""` for a top-level key). Returns the path. */
export function parentPath(path: string): string {
  const last = /(?:\.[A-Za-z_$][\w$]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])$/.exec(path);
  return last === null ? '' : path.slice(0, last.index);
}

/** `"a", "b", "c"`. */
function quoted(options: readonly (string | number)[]): string {
  return options.map((o) => JSON.stringify(o)).join(', ');
}

/** `[0x1000, 0x2000)`, or `0x1000 + 0x1000` when the end is not a safe integer. */
function range(start: number, size: number): string {
  const end = start + size;
  return Number.isSafeInteger(end)
    ? `[${formatHex(start)}, ${formatHex(end)})`
    : `${formatHex(start)} + ${formatHex(size)}`;
}

/** Edit distance counting a swap of neighbours as one edit (optimal string alignment), for "did you mean". */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The option `word` was most likely meant to be, if any is close. Returns it or undefined. */
export function suggest(word: string, options: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = word.length < 5 ? 1 : 2;
  for (const option of options) {
    // The distance is at least the difference in length: no table for a word far longer (a
    // huge key in a hostile file would cost time and memory in proportion to its length).
    if (Math.abs(option.length - word.length) > bestDistance) continue;
    const d = option.toLowerCase() === word.toLowerCase() ? 0 : distance(word, option);
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = option;
      bestDistance = d;
    }
  }
  return best;
}

const SPACES =
  'write hex ("0x8000_0000"), decimal ("4096") or a size with a binary suffix ("4K", "2M", "1G", "1T")';

/** Every message the scenario parser reports, by name. */
export const M = {
  // Types.
  expectedScenario: 'expected a JSON object: the whole scenario',
  expectedObject: 'expected an object',
  expectedArray: 'expected an array',
  expectedBoolean: 'expected true or false',
  expectedString: 'expected a string',
  expectedName: 'expected a non-empty string',
  expectedInteger: (min: number, max: number, why?: string): string =>
    `expected an integer from ${min} to ${max}` + (why === undefined ? '' : ` (${why})`),
  oneOf: (options: readonly (string | number)[]): string => `expected one of ${quoted(options)}`,
  expectedCpu:
    'expected an object: the features "fwb", "dic", "idc", "mte", "tlbiRange", "hafdbs" and "lse" as booleans, ' +
    'or a "profile" with any of them overriding it',
  expectedStep: `expected a step: an object with one of ${quoted(STEP_KINDS)}`,

  // Keys.
  missingKey: 'missing required key',
  missingCpuFeatures: (missing: readonly string[]): string =>
    `missing ${quoted(missing)}: without a "profile", all seven features are required`,
  missingFor: (backing: string): string => `missing required key (a "${backing}" VMA needs it)`,
  unknownKey: (key: string, allowed: readonly string[]): string => {
    const guess = suggest(key, allowed);
    if (guess !== undefined) return `unknown key; did you mean "${guess}"?`;
    return allowed.length === 0 ? 'unknown key' : `unknown key; expected one of ${quoted(allowed)}`;
  },
  duplicateKey: 'key given more than once (JSON.parse would silently keep the last)',
  keyOnlyFor: (key: string, backings: readonly string[], backing: string): string =>
    `"${key}" belongs only to ${backings.map((b) => `"${b}"`).join(' and ')} VMAs, not "${backing}"`,

  // Values (values.ts).
  valueType: `expected an address or size: a number, or a string (${SPACES})`,
  valueNotInteger: (n: number): string => `expected a whole, non-negative number, not ${n}`,
  valueNegative: (text: string): string => `expected a non-negative value, not ${text}`,
  valueTooLarge: (text: string): string => `${text} is 2^53 or more; addresses and sizes must be below 2^53`,
  valueSyntax: (s: string): string => `${JSON.stringify(s)} is not an address or size: ${SPACES}`,
  zero: 'must not be zero',
  unaligned: (n: number, what: string): string => `${formatHex(n)} is not aligned to the ${what}`,
  granuleWhat: (granule: string | undefined): string => `${granule} granule`,
  stage1GranuleWhat: (granule: string | undefined): string => `${granule} stage-1 granule`,
  hugePageWhat: (size: number): string => `${formatSize(size)} hugePage`,
  rangeTooHigh: (start: number, size: number): string => `the range ${range(start, size)} ends beyond 2^53`,
  rangeBeyond: (start: number, size: number, what: string): string =>
    `the range ${range(start, size)} ends beyond ${what}`,
  paSpace: (paBits: number): string => `the ${paBits}-bit physical address space (paBits)`,
  userVaSpace: 'the 48-bit host user address space',
  guestVaSpace: 'the 48-bit guest virtual address space (TTBR0_EL1)',
  overlaps: (start: number, end: number, other: string, otherStart: number, otherEnd: number): string =>
    `[${formatHex(start)}, ${formatHex(end)}) overlaps ${other} [${formatHex(otherStart)}, ${formatHex(otherEnd)})`,

  // The host and the VM.
  ipaLimit: (limit: number): string =>
    `KVM_CREATE_VM accepts 32 bits up to the host's IPA limit, ${limit} bits ` +
    '(kvm_set_ipa_limit(): paBits, capped at 48 with a 4K or 16K granule unless cpu.lpa2)',
  defaultIpaBits: (paBits: number): string =>
    `the default of 40 bits is more than paBits (${paBits}); give an ipaBits from 32 to ${paBits}`,
  vmMteWithoutCpuMte: 'the CPU has no MTE (cpu.mte is false), so KVM does not offer KVM_CAP_ARM_MTE',
  duplicateVmaName: (name: string, first: string): string => `"${name}" is already the name of ${first}`,
  hugePageSize: (granule: string, sizes: readonly number[]): string =>
    `expected one of ${quoted(sizes.map(formatSize))} (the hugetlb sizes for the ${granule} granule)`,
  paNotCovered: (start: number, end: number): string =>
    `[${formatHex(start)}, ${formatHex(end)}) is not all in the physical memory map; ` +
    'describe device memory as a "nomap" region',
  flagTwice: (flag: string): string => `"${flag}" is listed twice`,
  flagsContradict: (yes: string, no: string): string => `"${yes}" and "${no}" contradict each other`,
  userfaultfdBacking: (backing: string): string =>
    `userfaultfd registers only anon, thp, shmem and hugetlb VMAs (UFFDIO_REGISTER fails with EINVAL on "${backing}")`,
  taggedWithoutMte: (becauseCpu: boolean): string =>
    '"normal-tagged" (PROT_MTE) needs VM_MTE_ALLOWED, ' +
    (becauseCpu
      ? 'which Linux does not set when the CPU has no MTE'
      : 'which this VMA does not have (mmap would fail with EINVAL)'),

  // Memslots.
  slotIdLimit: 'KVM_USER_MEM_SLOTS is 32767',
  noSuchVma: (name: string, known: readonly string[]): string => {
    const guess = suggest(name, known);
    return `no VMA is named "${name}"` + (guess === undefined ? '' : `; did you mean "${guess}"?`);
  },
  beyondVma: (offset: number, size: number, name: string, vmaSize: number): string =>
    `offset ${formatHex(offset)} + size ${formatHex(size)} runs past the end of VMA "${name}" ` +
    `(${formatHex(vmaSize)} bytes)`,
  slotExists: (id: number, origin: string): string =>
    `slot ${id} already exists (${origin}); delete it first`,
  noSuchSlot: (id: number, deletedBy: string | undefined): string =>
    `slot ${id} does not exist at this point` + (deletedBy === undefined ? '' : ` (${deletedBy} deleted it)`),
  notLogging: (id: number): string =>
    `slot ${id} is not logging dirty pages at this point (KVM_GET_DIRTY_LOG would fail); ` +
    'create it with "log-dirty" or enable logging first',

  // Guest stage 1.
  tablesOutsideMemslots: (tables: number): string =>
    `${formatHex(tables)} is in no memslot that exists at the start, and the stage-1 tables live in guest memory`,
  attrIndx: 'an index into MAIR_EL1',
  mair: 'expected MAIR_EL1: a number, or a hex string of up to 16 digits such as "0x0000_0004_0044_f0ff"',

  // Steps.
  unknownStep: (key: string): string => {
    const guess = suggest(key, STEP_KINDS);
    return `unknown step; ${guess === undefined ? `expected one of ${quoted(STEP_KINDS)}` : `did you mean "${guess}"?`}`;
  },
  severalStepKinds: (kinds: readonly string[]): string =>
    `a step does one thing, but this one has ${quoted(kinds)}; split it into several steps`,
  extraStepKey: (kind: string): string => `unknown key; "${kind}" steps have no other keys`,
  wrongSpace: (key: string, stage1: boolean): string =>
    stage1
      ? `the guest has stage 1 on (guest.stage1 is given), so accesses name a "va", not an "${key}"`
      : `the guest runs with stage 1 off (no guest.stage1), so accesses name an "ipa", not a "${key}"`,
  atWithoutStage1: '"at" (AT S1E1R) is a stage-1 walk, and this guest has no stage 1 (add guest.stage1)',
  seed: 'expected a seed from 0 to 0xffff_ffff',
  protectNeedsMaywrite: (prot: string, name: string): string =>
    `"${prot}" adds write permission, but VMA "${name}" lacks VM_MAYWRITE (mprotect would fail with EACCES); ` +
    'give it the "maywrite" flag',

  // Host events (mmap, munmap, poison, races, hva memslots).
  userfaultfdShape:
    'expected "missing" or an object { "mode": "missing", "resolve": "page" | "range", ' +
    '"copyFrom": "registration" | "zero" }',
  memslotVmaOrHva: 'give either "vma" (with an optional "offset") or "hva", not both',
  memslotNeedsVmaOrHva: 'missing required key: a memslot names a "vma" or an "hva"',
  tablePagesMax: 'at least the stage-2 PGD (one page or a few concatenated ones)',
  poisonRawPfn: (backing: string): string =>
    `memory_failure() finds no rmap to unmap in a "${backing}" VMA (raw pfns, no struct page mapping); ` +
    'poison an anon, thp, shmem or hugetlb VMA',
  beyondVmaAt: (offset: number, name: string, vmaSize: number): string =>
    `offset ${formatHex(offset)} is past the end of VMA "${name}" (${formatHex(vmaSize)} bytes)`,

  // Guest memory contents and stage 1 (issue 8).
  u64: 'expected a 64-bit value: a hex string of up to 16 digits such as "0x0123_4567_89ab_cdef", a decimal string, or a number below 2^53',
  hexBytes: 'expected bytes as a non-empty string of hex digit pairs, such as "a1b2c3"',
  initShape: 'expected { "offset", "u64" } or { "offset", "hex" }',
  initOneOf: 'give exactly one of "u64" and "hex"',
  vmmWriteNeedsWrite: (name: string): string =>
    `VMA "${name}" is not writable: the VMM's write through its own mapping would take SIGSEGV (give it "w" in prot)`,
  bytesBeyondVma: (offset: number, n: number, name: string, vmaSize: number): string =>
    `${n} byte(s) at offset ${formatHex(offset)} run past the end of VMA "${name}" (${formatHex(vmaSize)} bytes)`,
  valueNotFor: (key: string, access: string): string =>
    `"${key}" is not used by a "${access}" access (` +
    (key === 'expect' ? 'only "cas" compares' : 'only "write", "st-preidx" and "cas" store a value') +
    ')',
  valueUnaligned:
    'an access that stores or compares a value works on 8 aligned bytes: the address must be a multiple of 8',
  vaBits: 'TCR_EL1.T0SZ from 16 to 39',
  ips: (limit: number): string =>
    `expected one of 32, 36, 40, 42, 44, 48, at most ${limit} (vm.ipaBits, and 48 without LPA)`,
  stage1VaSpace: (vaBits: number): string => `the guest's ${vaBits}-bit VA space (guest.stage1.vaBits)`,
  stage1IpaSpace: (ips: number): string => `the ${ips}-bit stage-1 output space (guest.stage1.ips)`,
  leafTableOfUnmapped: (va: number): string =>
    `${formatHex(va)} is not mapped by an earlier entry of mappings (leafTableOf names the VA whose leaf table to alias)`,
  stage1TablesOutsideMemslots: (ipa: number, n: number): string =>
    `the stage-1 builder needs ${n} table page(s) from "tables"; the one at ${formatHex(ipa)} lies in no memslot`,
  dczvaBytes: 'DCZID_EL0.BS: a power of two from 4 to 2048 bytes',
  stage1TooLarge: (limit: number): string =>
    `the mappings need more than ${limit} page and block descriptors, which the VMM writes one by one ` +
    'before the run; map fewer pages, or larger aligned ranges with "blocks": true',

  // JSON text.
  jsonSyntax: (detail: string): string => `invalid JSON: ${detail}`,
  jsonEnd: (expected: string): string => `the text ends where ${expected} should be`,
  jsonUnexpected: (found: string, expected: string): string =>
    `found ${JSON.stringify(found)} where ${expected} should be`,
  jsonUnterminated: 'a string is not closed',
  jsonControl: 'a string contains a raw control character (write it as an escape such as \\n)',
  jsonEscape: 'invalid escape in a string',
  jsonDepth: 'nested too deeply',
} as const;
