/**
 * Hostile input (issue 11): generated and mutated scenario texts and replay scripts, fed to
 * the parsers (parseScenarioText, parseReplay) and to the CLI's front end (main(), in
 * process). Every input must end in a result or a clear, located error (a ScenarioError
 * whose issues name key paths and, for a JSON file, lines; a ReplayError naming a line of the
 * script; a CliInputError), never another exception, a hang or memory out of proportion to
 * the input.
 *
 * The seeds are the repository's own files (examples/*.json, test/vectors/*.ops); the
 * mutations drop, duplicate and retype keys and fields, put values at and past every limit,
 * nest deeply, add huge strings, control bytes and random bytes, and truncate. The runs are
 * seeded, so a failure reproduces; S2EMU_FUZZ_SEED and S2EMU_FUZZ_SCALE (a multiplier of the
 * run counts) explore further.
 */

import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/app.js';
import { CliInputError } from '../src/cli/errors.js';
import { ReplayError, parseReplay } from '../src/replay/replay.js';
import { ScenarioError } from '../src/scenario/errors.js';
import { parseScenarioText } from '../src/scenario/parse.js';
import { ScenarioRunError, ScenarioRunner } from '../src/scenario/run.js';
import type { Scenario } from '../src/scenario/types.js';

const root = join(import.meta.dirname, '..');
const SEED = Number(process.env.S2EMU_FUZZ_SEED ?? 0x5eed_0011);
const SCALE = Number(process.env.S2EMU_FUZZ_SCALE ?? 1);
/** Runs per property: at least 10^4 inputs in all. */
const RUNS = {
  scenarioParse: Math.round(5000 * SCALE),
  scenarioGenerated: Math.round(600 * SCALE),
  replayParse: Math.round(4000 * SCALE),
  cliRun: Math.round(500 * SCALE),
  cliReplay: Math.round(200 * SCALE),
};
/** The most one input may take (a 2-core machine running other tests beside). */
const CASE_MS = 4000;
/** The most one input may leave allocated beyond a fixed allowance, per byte of input. */
const BYTES_PER_INPUT_BYTE = 64;
const MEMORY_ALLOWANCE = 256 * 2 ** 20;

// ---------------------------------------------------------------------------------------------
// Seeds.

const exampleTexts = readdirSync(join(root, 'examples'))
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => readFileSync(join(root, 'examples', f), 'utf8'));
const exampleValues = exampleTexts.map((t) => JSON.parse(t) as unknown);
const vectorDir = join(root, 'test', 'vectors');
const vectorTexts = readdirSync(vectorDir)
  .filter((f) => f.endsWith('.ops'))
  .sort()
  .map((f) => readFileSync(join(vectorDir, f), 'utf8'));
/** The small vectors, which the CLI runs quickly (a mutated script that parses is run). */
const smallVectors = vectorTexts.filter((t) => t.length < 1200);

// ---------------------------------------------------------------------------------------------
// JSON mutation.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = readonly (string | number)[];
/** Raw text spliced into the output as it is (deep nesting, duplicate keys, bad tokens). */
class Raw {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}
type Value = Json | Raw | Value[] | { [key: string]: Value } | DupObject;
/** An object whose `key` appears twice, the second time with `second`. */
class DupObject {
  readonly obj: { [key: string]: Value };
  readonly key: string;
  readonly second: Value;
  constructor(obj: { [key: string]: Value }, key: string, second: Value) {
    this.obj = obj;
    this.key = key;
    this.second = second;
  }
}

function paths(v: unknown, at: Path = [], out: Path[] = []): Path[] {
  out.push(at);
  if (v instanceof Raw || v instanceof DupObject) return out;
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) paths(x, [...at, k], out);
  return out;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Replaces the value at `path` of `root` by `f(old)` (a new root when the path is empty). */
function update(
  rootValue: Value,
  path: Path,
  f: (old: Value, parent: Value | undefined) => Value | undefined,
): Value {
  if (path.length === 0) return f(rootValue, undefined) ?? null;
  let parent = rootValue as Record<string | number, Value>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, Value>;
  const last = path[path.length - 1]!;
  const next = f(parent[last]!, parent as Value);
  if (next === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else {
    // Defined, not assigned: a "__proto__" key (JSON.parse makes it an own property) stays a key.
    Object.defineProperty(parent, last, {
      value: next,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return rootValue;
}

function stringify(v: Value, indent: string, depth = 0): string {
  if (v instanceof Raw) return v.text;
  const nl = indent === '' ? '' : '\n' + indent.repeat(depth + 1);
  const end = indent === '' ? '' : '\n' + indent.repeat(depth);
  if (v instanceof DupObject) {
    const members = Object.entries(v.obj).map(
      ([k, x]) => `${JSON.stringify(k)}:${stringify(x, indent, depth + 1)}`,
    );
    members.push(`${JSON.stringify(v.key)}:${stringify(v.second, indent, depth + 1)}`);
    return `{${nl}${members.join(',' + nl)}${end}}`;
  }
  if (Array.isArray(v))
    return v.length ? `[${nl}${v.map((x) => stringify(x, indent, depth + 1)).join(',' + nl)}${end}]` : '[]';
  if (v !== null && typeof v === 'object') {
    const members = Object.entries(v).map(
      ([k, x]) => `${JSON.stringify(k)}:${stringify(x, indent, depth + 1)}`,
    );
    return members.length ? `{${nl}${members.join(',' + nl)}${end}}` : '{}';
  }
  return JSON.stringify(v) ?? 'null';
}

const limitNumbers = [
  0,
  -0,
  1,
  -1,
  0.5,
  1e-300,
  7,
  8,
  31,
  32,
  33,
  36,
  39,
  40,
  42,
  44,
  47,
  48,
  49,
  52,
  53,
  64,
  255,
  256,
  4095,
  4096,
  4097,
  16384,
  65536,
  0x1f_ffff,
  0x20_0000,
  0x4000_0000,
  32767,
  32768,
  65535,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 40,
  2 ** 47,
  2 ** 48,
  2 ** 48 - 4096,
  2 ** 52 - 1,
  2 ** 52,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 64,
  1e21,
  1e308,
  -(2 ** 53),
  Number.MIN_VALUE,
];
const limitStrings = [
  '',
  ' ',
  '0',
  '0x',
  '0x0',
  '0X1000',
  '0x_1000',
  '0x1000_',
  '1__0',
  '4K',
  '4k',
  '2M',
  '1G',
  '1T',
  '1P',
  '8P',
  '1E',
  '-4K',
  ' 4K',
  '4K ',
  '0x1f_ffff_ffff_ffff',
  '0x20_0000_0000_0000',
  '0x1_0000_0000_0000_0000',
  '0xffff_ffff_ffff_ffff',
  '9007199254740991',
  '9007199254740992',
  '18446744073709551615',
  '18446744073709551616',
  '00000000000000000000000000000001',
  'NaN',
  'Infinity',
  '-0',
  '0.5',
  '1e3',
  '\u0000',
  '\u001b[31mred\u001b[0m',
  '\ud800',
  'ram',
  'anon',
  'thp',
  'hugetlb',
  'pfnmap',
  'nomap',
  'rw',
  'rwx',
  'x',
  'log-dirty',
  'readonly',
  'grace',
  'constructor',
  '__proto__',
  'toString',
  'hasOwnProperty',
];
const hostile: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...limitNumbers) },
  { weight: 4, arbitrary: fc.constantFrom(...limitStrings) },
  { weight: 1, arbitrary: fc.constantFrom<Value>(true, false, null, [], {}, [[]], [{}], { a: 1 }) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Value> },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('a', '9', 'f', 'é', '\u0007', '0x'), fc.constantFrom(10_000, 100_000, 400_000))
      .map(([c, n]) => c.repeat(n)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('[', '{"a":', '{"steps":['), fc.constantFrom(50, 511, 512, 513, 5000, 30_000))
      .map(([open, n]) => {
        const close = open === '[' ? ']' : open === '{"a":' ? '}' : ']}';
        return new Raw(open.repeat(n) + (open === '[' ? '' : '0') + close.repeat(n));
      }),
  },
);

/** Values near `old`: one more, one less, doubled, a suffix, a sign. */
function nearby(old: Value, pick: number): Value {
  if (typeof old === 'number')
    return [old + 1, old - 1, old * 2, old * 4096, -old, old + 0.5, 2 ** 53 - old][pick % 7]!;
  if (typeof old === 'string')
    return [
      old + '0',
      old + '_0',
      old + 'K',
      '-' + old,
      old.toUpperCase(),
      old.slice(1),
      old + old,
      ' ' + old,
    ][pick % 8]!;
  if (Array.isArray(old)) return [...old, ...old];
  return old;
}

type Mutation =
  | {
      op: 'drop' | 'nearby' | 'retype' | 'dup' | 'hugeKey' | 'repeat';
      path: number;
      pick: number;
      value: Value;
    }
  | { op: 'none' };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    op: fc.constantFrom('drop', 'nearby', 'retype', 'retype', 'dup', 'hugeKey', 'repeat') as fc.Arbitrary<
      'drop' | 'nearby' | 'retype' | 'dup' | 'hugeKey' | 'repeat'
    >,
    path: fc.nat(),
    pick: fc.nat(),
    value: hostile,
  }),
);

/** A fresh copy of a generated value (fast-check may hand the same object to several runs). */
function fresh(x: Value): Value {
  return x instanceof Raw || x instanceof DupObject ? x : clone(x);
}

function applyMutation(v: Value, m: Mutation, all: Path[]): Value {
  if (m.op === 'none') return v;
  const path = all[m.path % all.length]!;
  switch (m.op) {
    case 'drop':
      return update(v, path, () => undefined);
    case 'nearby':
      return update(v, path, (old) => nearby(old, m.pick));
    case 'retype':
      return update(v, path, () => fresh(m.value));
    case 'dup':
      return update(v, path, (old) => {
        if (
          old === null ||
          typeof old !== 'object' ||
          Array.isArray(old) ||
          old instanceof Raw ||
          old instanceof DupObject
        )
          return old;
        const keys = Object.keys(old);
        if (keys.length === 0) return old;
        const key = keys[m.pick % keys.length]!;
        return new DupObject(old as { [key: string]: Value }, key, m.pick % 2 ? old[key]! : fresh(m.value));
      });
    case 'hugeKey':
      return update(v, path, (old) =>
        old !== null &&
        typeof old === 'object' &&
        !Array.isArray(old) &&
        !(old instanceof Raw) &&
        !(old instanceof DupObject)
          ? { ...old, ['k'.repeat(1 + (m.pick % 3) * 100_000)]: fresh(m.value) }
          : old,
      );
    case 'repeat':
      // An array element many times over (memslots, VMAs, steps): quadratic checks show.
      return update(v, path, (old, parent) => {
        if (!Array.isArray(parent)) return old;
        const n = [2, 100, 3000][m.pick % 3]!;
        (parent as Value[]).push(...Array.from({ length: n }, () => clone(old) as Value));
        return old;
      });
  }
}

type TextEdit =
  | { op: 'none' }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; text: string }
  | { op: 'bytes'; text: string }
  | { op: 'bom' | 'crlf' };

const junk = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.constantFrom('"', '{', '}', '[', ']', ',', ':', '\\', '\\u12', '/*', '\u0000', '\ud800', '\ufeff', '\r'),
);
const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ op: 'none' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: junk }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('bytes' as const),
      text: fc.oneof(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('latin1')),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constantFrom({ op: 'bom' as const }, { op: 'crlf' as const }) },
);

function applyTextEdit(text: string, e: TextEdit): string {
  switch (e.op) {
    case 'none':
      return text;
    case 'truncate':
      return text.slice(0, e.at % (text.length + 1));
    case 'insert': {
      const at = e.at % (text.length + 1);
      return text.slice(0, at) + e.text + text.slice(at);
    }
    case 'bytes':
      return e.text;
    case 'bom':
      return '\ufeff' + text;
    case 'crlf':
      return text.replaceAll('\n', '\r\n');
  }
}

/**
 * A mutated example scenario: `min` to `max` mutations of its JSON value, then (when `edits`)
 * a text edit.
 */
const mutatedScenario = (min: number, max: number, edits: boolean): fc.Arbitrary<string> =>
  fc
    .record({
      example: fc.nat(exampleValues.length - 1),
      mutations: fc.array(mutation, { minLength: min, maxLength: max }),
      indent: fc.constantFrom('', '  ', '\t'),
      edit: edits ? textEdit : fc.constant({ op: 'none' as const }),
    })
    .map(({ example, mutations, indent, edit }) => {
      let v = clone(exampleValues[example]) as Value;
      for (const m of mutations) v = applyMutation(v, m, paths(v));
      return applyTextEdit(stringify(v, indent), edit);
    });
/** For the parser: one to three mutations and a text edit. */
const scenarioText = mutatedScenario(1, 3, true);
/** For the CLI: at most one mutation, so that many of them run. */
const runnableScenarioText = mutatedScenario(0, 1, false);

// ---------------------------------------------------------------------------------------------
// Replay mutation.

const replayField = fc.oneof(
  fc.constantFrom(
    '',
    '0',
    '0x',
    '0x0',
    '-1',
    '-0x1000',
    '1.5',
    '1e3',
    '0x1000',
    '0x1f_ffff',
    '0x1fffffffffffff',
    '0x20000000000000',
    '9007199254740991',
    '9007199254740992',
    '0x' + 'f'.repeat(40),
    '9'.repeat(400),
    '0'.repeat(100_000) + '1',
    '9'.repeat(100_000),
    'R',
    'R|W|X',
    'RWX',
    'R||W',
    '|',
    'NONE',
    'NONE|R',
    'DEVICE|NORMAL_NC',
    'SW0|SW1|SW2|SW3',
    'r|w',
    'R|'.repeat(50_000),
    'ipa_bits=40',
    'granule=4K',
    'fwb=1',
    'start_level=-1',
    'start_level=4',
    'lpa2=1',
    'tlbi_range=2',
    'ipa_bits=',
    '=1',
    'granule=8K',
    'ipa_bits=0x34',
    'ipa_bits=99999999999999999999',
    '\u0000',
    '\u001b[2J',
    '\t',
    '\r',
    '\u0085',
    '\ud800',
    '#',
  ),
  fc.string({ maxLength: 10 }),
  fc.string({ unit: 'binary', maxLength: 10 }),
);

type LineEdit = {
  line: number;
  field: number;
  op: 'drop' | 'dup' | 'garble' | 'swap' | 'deleteLine' | 'dupLine';
  text: string;
};
const lineEdit: fc.Arbitrary<LineEdit> = fc.record({
  line: fc.nat(),
  field: fc.nat(),
  op: fc.constantFrom(
    'drop',
    'dup',
    'garble',
    'garble',
    'garble',
    'swap',
    'deleteLine',
    'dupLine',
  ) as fc.Arbitrary<LineEdit['op']>,
  text: replayField,
});

function applyLineEdit(lines: string[], e: LineEdit): string[] {
  if (lines.length === 0) return lines;
  const i = e.line % lines.length;
  const fields = lines[i]!.split(' ');
  const f = e.field % fields.length;
  switch (e.op) {
    case 'drop':
      fields.splice(f, 1);
      break;
    case 'dup':
      fields.splice(f, 0, fields[f]!);
      break;
    case 'garble':
      fields[f] = e.text;
      break;
    case 'swap':
      [fields[0], fields[f]] = [fields[f]!, fields[0]!];
      break;
    case 'deleteLine':
      return lines.filter((_, j) => j !== i);
    case 'dupLine':
      return [...lines.slice(0, i + 1), ...lines.slice(i)];
  }
  lines[i] = fields.join(' ');
  return lines;
}

function replayScript(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc
    .record({
      vector: fc.nat(seeds.length - 1),
      edits: fc.array(lineEdit, { minLength: 1, maxLength: 4 }),
      edit: textEdit,
    })
    .map(({ vector, edits, edit }) => {
      let lines = seeds[vector]!.split('\n');
      for (const e of edits) lines = applyLineEdit(lines, e);
      return applyTextEdit(lines.join('\n'), edit);
    });
}

// ---------------------------------------------------------------------------------------------
// The checks.

/** Runs `f` on `input`, bounding its time and the memory it leaves; returns what f returned. */
function bounded<T>(input: string, f: () => T): T {
  const before = process.memoryUsage();
  const t0 = performance.now();
  const result = f();
  const ms = performance.now() - t0;
  const after = process.memoryUsage();
  const grew = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
  const desc = `${JSON.stringify(input.slice(0, 300))}${input.length > 300 ? ` ... (${input.length} chars)` : ''}`;
  if (ms > CASE_MS) throw new Error(`took ${ms.toFixed(0)} ms: ${desc}`);
  if (grew > MEMORY_ALLOWANCE + BYTES_PER_INPUT_BYTE * input.length)
    throw new Error(`left ${(grew / 2 ** 20).toFixed(0)} MiB allocated: ${desc}`);
  return result;
}

/** A message a person can act on: not empty, no "undefined" or "[object Object]" in it. */
function clear(message: string): boolean {
  return message.length > 0 && !/(?<!")\b(?:undefined|NaN)\b(?!")|\[object Object\]/.test(message);
}

/** parseScenarioText: a Scenario, or a ScenarioError whose issues are located. */
function checkScenario(text: string): 'ok' | 'rejected' {
  return bounded(text, () => {
    try {
      parseScenarioText(text);
      return 'ok';
    } catch (e) {
      if (!(e instanceof ScenarioError)) throw e;
      expect(e.issues.length, 'a ScenarioError has issues').toBeGreaterThan(0);
      let json = true;
      try {
        JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
      } catch {
        json = false;
      }
      // Plain checks first (thousands of issues), one expect on the first bad one.
      const bad = e.issues.find(
        (issue) =>
          typeof issue.path !== 'string' ||
          !clear(issue.message) ||
          !(issue.line !== undefined && issue.line >= 1) ||
          (!json && (e.issues.length !== 1 || !issue.message.startsWith('invalid JSON: '))),
      );
      // Bad JSON is one issue at its line and column; in a JSON file every issue has a line and
      // column (a missing key its object's).
      expect(bad, bad && `${bad.path}: ${bad.message} (line ${bad.line})`.slice(0, 300)).toBeUndefined();
      return 'rejected';
    }
  });
}

/** parseReplay: the operations, or a ReplayError naming a line of the script. */
function checkReplay(text: string): 'ok' | 'rejected' {
  return bounded(text, () => {
    try {
      parseReplay(text);
      return 'ok';
    } catch (e) {
      if (!(e instanceof ReplayError)) throw e;
      expect(e.line).toBeGreaterThanOrEqual(1);
      expect(e.line).toBeLessThanOrEqual(text.split('\n').length);
      expect(clear(e.detail), e.detail.slice(0, 300)).toBe(true);
      expect(e.detail.length, 'the message does not echo a huge field').toBeLessThan(400);
      return 'rejected';
    }
  });
}

const dir = mkdtempSync(join(tmpdir(), 's2emu-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;

/** main() in process, output captured: an exit status, or an input error (CliInputError & co.). */
function checkCli(args: (file: string) => string[], text: string): number | 'rejected' {
  const file = join(dir, `case-${fileNo++ % 8}`);
  writeFileSync(file, text);
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    return bounded(text, () => {
      try {
        const code = main(args(file));
        expect([0, 1]).toContain(code);
        return code;
      } catch (e) {
        if (!(e instanceof CliInputError)) throw e;
        expect(clear(e.message), e.message.slice(0, 300)).toBe(true);
        // Located: the file (FILE:LINE:COL for a scenario's issues, FILE:LINE for a replay).
        expect(e.message.startsWith(file), e.message.slice(0, 300)).toBe(true);
        return 'rejected';
      }
    });
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

const params = (numRuns: number, salt: number): fc.Parameters<unknown> => ({ numRuns, seed: SEED + salt });

describe('hostile input (fast-check)', () => {
  it('the examples themselves parse (the seeds are good)', () => {
    for (const t of exampleTexts) expect(checkScenario(t)).toBe('ok');
    for (const t of vectorTexts) expect(checkReplay(t)).toBe('ok');
  });

  it(`parseScenarioText: ${RUNS.scenarioParse} mutated examples end in a Scenario or a located ScenarioError`, () => {
    const seen = { ok: 0, rejected: 0 };
    fc.assert(
      fc.property(scenarioText, (text) => {
        seen[checkScenario(text)]++;
      }),
      params(RUNS.scenarioParse, 1),
    );
    // The mutations must leave some scenarios valid, or the checks past the first are untested.
    expect(seen.ok).toBeGreaterThan(RUNS.scenarioParse / 50);
  }, 60_000);

  it(`parseScenarioText: ${RUNS.scenarioGenerated} generated JSON values and texts`, () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
          fc.json({ maxDepth: 4 }),
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc
            .record(
              Object.fromEntries(
                [
                  'cpu',
                  'granule',
                  'physical',
                  'vmas',
                  'memslots',
                  'steps',
                  'vm',
                  'guest',
                  'paBits',
                  'kernel',
                ].map((k) => [k, hostile]),
              ),
              { requiredKeys: [] },
            )
            .map((v) => stringify(v as Value, '')),
        ),
        (text) => void checkScenario(text),
      ),
      params(RUNS.scenarioGenerated, 2),
    );
  }, 60_000);

  it(`parseReplay: ${RUNS.replayParse} mutated vectors end in operations or a ReplayError with a line`, () => {
    const seen = { ok: 0, rejected: 0 };
    fc.assert(
      fc.property(replayScript(vectorTexts), (text) => {
        seen[checkReplay(text)]++;
      }),
      params(RUNS.replayParse, 3),
    );
    expect(seen.ok).toBeGreaterThan(RUNS.replayParse / 50);
  }, 60_000);

  it(`s2emu run: ${RUNS.cliRun} mutated examples through main(), at most 600 accesses each`, () => {
    const seen = { ran: 0, rejected: 0 };
    fc.assert(
      fc.property(runnableScenarioText, (text) => {
        // The CLI reports any failure to set the run up as bad input; the runner itself may
        // refuse only with its own ScenarioRunError, never another exception.
        let scenario: Scenario | undefined;
        try {
          scenario = parseScenarioText(text);
        } catch {
          scenario = undefined;
        }
        if (scenario !== undefined) {
          try {
            bounded(text, () => new ScenarioRunner(scenario));
          } catch (e) {
            if (!(e instanceof ScenarioRunError)) throw e;
          }
        }
        const r = checkCli((f) => ['run', f, '--json', '--quiet', '--max-accesses', '600'], text);
        seen[r === 'rejected' ? 'rejected' : 'ran']++;
      }),
      params(RUNS.cliRun, 4),
    );
    console.log('cli run', seen);
    expect(seen.ran).toBeGreaterThan(RUNS.cliRun / 20);
  }, 60_000);

  it(`s2emu replay: ${RUNS.cliReplay} mutated small vectors through main()`, () => {
    const seen = { ran: 0, rejected: 0 };
    fc.assert(
      fc.property(replayScript(smallVectors), (text) => {
        seen[checkCli((f) => ['replay', f], text) === 'rejected' ? 'rejected' : 'ran']++;
      }),
      params(RUNS.cliReplay, 5),
    );
    console.log('cli replay', seen);
    expect(seen.ran).toBeGreaterThan(RUNS.cliReplay / 20);
  }, 60_000);
});
