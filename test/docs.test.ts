/**
 * The documentation as a user reads it: every example in README.md and docs/ runs as written,
 * what it says it returns is what it returns, and nothing points at files outside the
 * repository.
 *
 * - ```json blocks are whole scenarios, run through parseScenario() and a ScenarioRunner, unless
 *   an HTML comment `<!-- fragment -->` on the line before marks them as a fragment: those are
 *   parsed as JSON (a `"key": value` fragment inside braces) and, when they are top-level keys
 *   of a scenario, merged into the first whole scenario of the same file and validated.
 * - ```ts blocks run with tsx in a child process, `from 's2emu'` mapped to src/index.ts; a
 *   statement followed by a comment that gives a value (`// 'done'`, `// 2097152: ...`,
 *   `// { fsc: 1 (translation), ... }`) is checked against what it returns.
 * - ```sh blocks: every `npx s2emu ...` command names files that exist and ends with status 0
 *   or 1 (never 2, a rejected command line or input); other repository paths named must exist.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const docFiles = ['README.md', ...readdirSync(join(root, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
  f.endsWith('.md'),
);

interface Block {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  text: string;
  fragment: boolean;
}

function blocks(file: string): Block[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!m) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    let prev = start - 1;
    while (prev >= 0 && lines[prev]!.trim() === '') prev--;
    out.push({
      file,
      line: start + 1,
      lang: m[1]!,
      text: body.join('\n'),
      fragment: prev >= 0 && /^<!--\s*fragment\b.*-->\s*$/.test(lines[prev]!.trim()),
    });
  }
  return out;
}

const all = docFiles.flatMap(blocks);
const where = (b: Block) => `${b.file}:${b.line}`;

// ---- nothing points outside the repository ---------------------------------------------------

/** Every file under `dir` (relative to the root), skipping what the repository does not ship. */
function walk(dir: string): string[] {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  if (statSync(abs).isFile()) return [dir];
  return readdirSync(abs).flatMap((f) => (f === 'node_modules' ? [] : walk(join(dir, f))));
}

describe('no citation of files outside the repository', () => {
  // Built from parts so that this file does not match itself.
  const specNames = ['pgtable', 'fault-path', 'scenario-format', 'replay-format', 'native-bench'];
  const outside = new RegExp(
    [
      ...specNames.map((n) => `${n}\\.md`),
      ...['spec', 'guides'].map((d) => `shared/${d}`),
      '\\.\\./shared',
      '\u00a7', // a section sign: the specification's section numbers mean nothing to a reader
    ].join('|'),
  );
  // test/vectors.test.ts may read the upstream vectors beside the checkout when they are there
  // (code, not comments: a reader is never sent there).
  const allowed = (file: string, line: string) =>
    file === join('test', 'vectors.test.ts') && /vectors/.test(line) && !/^\s*(\/\/|\*|\/\*)/.test(line);

  it('src, test, bench, docs, README.md and examples cite only the kernel and the docs', () => {
    const hits: string[] = [];
    for (const file of ['src', 'test', 'bench', 'docs', 'README.md', 'examples'].flatMap(walk)) {
      if (/\.(ops|out)$/.test(file)) continue; // golden vectors: data, no prose
      if (/\.png$/.test(file)) continue; // screenshots (docs/img): binary, no prose
      readFileSync(join(root, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (outside.test(line) && !allowed(file, line)) hits.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(hits).toEqual([]);
  });
});

// ---- JSON --------------------------------------------------------------------------------------

/** A fragment as a JSON value: as it stands, or a `"key": value` list inside braces. */
function fragmentValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return JSON.parse(`{${text}}`);
  }
}

const topLevelKeys = new Set([
  'description',
  'kernel',
  'cpu',
  'granule',
  'paBits',
  'physical',
  'vmas',
  'vm',
  'memslots',
  'guest',
  'steps',
  'onError',
]);

function runScenario(value: unknown) {
  const scenario = parseScenario(value);
  const refused: string[] = [];
  const summary = new ScenarioRunner(scenario).run({
    memslotRefused: (slot, errno) => refused.push(`memslot ${slot}: ${errno}`),
  });
  return { summary, refused };
}

describe('JSON examples', () => {
  const json = all.filter((b) => b.lang === 'json');

  it('finds them', () => {
    expect(json.filter((b) => !b.fragment).length).toBeGreaterThan(0);
    expect(json.filter((b) => b.fragment).length).toBeGreaterThan(0);
  });

  for (const b of json.filter((b) => !b.fragment)) {
    it(`${where(b)}: a whole scenario that validates and runs cleanly`, () => {
      const { summary, refused } = runScenario(JSON.parse(b.text));
      expect(refused).toEqual([]);
      expect(summary.errors).toEqual({});
      expect(summary.diagnostics).toEqual([]);
      expect(summary.accesses).toBeGreaterThan(0);
    });
  }

  for (const b of json.filter((b) => b.fragment)) {
    it(`${where(b)}: a fragment that is JSON and fits the scenario it belongs to`, () => {
      const value = fragmentValue(b.text);
      expect(typeof value).toBe('object');
      const keys = Object.keys(value as object);
      if (!keys.every((k) => topLevelKeys.has(k))) return; // a piece of something smaller
      const base = json.find((w) => w.file === b.file && !w.fragment);
      expect(base, `${b.file} has no whole scenario to put the fragment in`).toBeDefined();
      const merged = { ...(JSON.parse(base!.text) as Record<string, unknown>), ...(value as object) };
      // With a guest stage 1, accesses name VAs: read each mapping's first byte instead.
      const stage1 = (value as { guest?: { stage1?: { mappings?: { va: unknown }[] } } }).guest?.stage1;
      if (stage1) merged['steps'] = (stage1.mappings ?? []).map((m) => ({ access: 'read', va: m.va }));
      // It validates and runs (another CPU may refuse the base's memslots: that is an outcome).
      const { summary } = runScenario(merged);
      expect(summary.diagnostics).toEqual([]);
    });
  }
});

// ---- TypeScript --------------------------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 's2emu-docs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A value a comment claims: a quoted string, a number, or `{ key: value, ... }` (those parts). */
type Claim =
  { kind: 'value'; value: string | number } | { kind: 'fields'; fields: [string, string | number][] };

function claimOf(comment: string): Claim | null {
  const s = /^'([^']*)'/.exec(comment);
  if (s) return { kind: 'value', value: s[1]! };
  const n = /^(-?\d+)(?![\w.])/.exec(comment);
  if (n) return { kind: 'value', value: Number(n[1]) };
  if (comment.startsWith('{')) {
    const fields: [string, string | number][] = [];
    for (const m of comment.matchAll(/(\w+): (?:'([^']*)'|(-?\d+)(?![\w.]))/g))
      fields.push([m[1]!, m[2] !== undefined ? m[2] : Number(m[3])]);
    return fields.length ? { kind: 'fields', fields } : null;
  }
  return null;
}

/**
 * The block as a module: imports from 's2emu' read src/index.ts, and each `expr; // claim`
 * statement becomes a check of the claim. Returns the module text and the number of checks.
 */
function instrument(text: string): { code: string; checks: number } {
  const entry = pathToFileURL(join(root, 'src', 'index.ts')).href;
  let checks = 0;
  const lines = text.split('\n').map((line) => {
    const m = /^(\s*)([^/]*?);\s*\/\/\s*(.*)$/.exec(line);
    if (!m || /^(import|const|let|var|export|return)\b/.test(m[2]!.trim())) return line;
    const claim = claimOf(m[3]!);
    if (!claim) return line;
    checks++;
    return `${m[1]}__check(${JSON.stringify(m[2])}, ${m[2]}, ${JSON.stringify(claim)});`;
  });
  const prelude = [
    `function __check(src: string, got: any, claim: any): void {`,
    `  const bad = (what: string, want: unknown, have: unknown) => {`,
    `    throw new Error(src + (what ? '.' + what : '') + ': the comment says ' + JSON.stringify(want) + ', got ' + String(have));`,
    `  };`,
    `  if (claim.kind === 'value') { if (got !== claim.value) bad('', claim.value, got); return; }`,
    `  for (const [k, v] of claim.fields) if (got?.[k] !== v) bad(k, v, got?.[k]);`,
    `}`,
  ];
  const code = [...lines, ...prelude, `console.log('checks: ${checks}');`]
    .join('\n')
    .replace(/from 's2emu'/g, `from '${entry}'`);
  return { code, checks };
}

describe('TypeScript examples', () => {
  const ts = all.filter((b) => b.lang === 'ts');

  it('finds them', () => {
    expect(ts.length).toBeGreaterThan(0);
  });

  for (const [i, b] of ts.entries()) {
    it(`${where(b)}: runs, and returns what its comments say`, () => {
      const { code, checks } = instrument(b.text);
      expect(checks, 'no comment states a value to check').toBeGreaterThan(0);
      const file = join(tmp, `block${i}.ts`);
      writeFileSync(file, code);
      const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: root, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`checks: ${checks}`);
    });
  }
});

// ---- shell -------------------------------------------------------------------------------------

/** The block's command lines, comments dropped. */
function commands(b: Block): string[] {
  return b.text
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

describe('shell examples', () => {
  const sh = all.filter((b) => b.lang === 'sh');
  const cli = `${JSON.stringify(process.execPath)} --import tsx src/cli/main.ts`;

  it('finds npx s2emu commands', () => {
    expect(sh.flatMap(commands).filter((c) => c.includes('npx s2emu')).length).toBeGreaterThan(3);
  });

  for (const b of sh) {
    it(`${where(b)}: names files that exist`, () => {
      for (const c of commands(b)) {
        for (const tok of c.split(/\s+/)) {
          const path = tok.replace(/^["']|["']$/g, '');
          if (/^(src|test|bench|examples|docs)\/[\w./-]+$/.test(path))
            expect(existsSync(join(root, path)), `${c}: ${path}`).toBe(true);
        }
      }
    });

    const runs = commands(b).filter((c) => c.includes('npx s2emu'));
    if (runs.length === 0) continue;
    it(`${where(b)}: every npx s2emu command ends with status 0 or 1`, () => {
      for (const c of runs) {
        const r = spawnSync('sh', ['-c', c.replace(/npx s2emu/g, cli)], {
          cwd: root,
          encoding: 'utf8',
          maxBuffer: 1 << 28,
        });
        expect([0, 1], `${c}: ${r.stderr}`).toContain(r.status);
        expect(r.stdout.length, c).toBeGreaterThan(0);
        expect(r.stderr, c).not.toMatch(/internal error|\n\s+at /);
      }
    });
  }
});

// ---- what the docs list ------------------------------------------------------------------------

/** The names src/index.ts exports (values and types). */
function exportedNames(): Set<string> {
  const src = readFileSync(join(root, 'src', 'index.ts'), 'utf8');
  const names = new Set<string>();
  for (const m of src.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g))
    for (const part of m[1]!.split(',')) {
      const name = part
        .trim()
        .split(/\s+as\s+/)
        .pop()!
        .trim();
      if (name) names.add(name);
    }
  for (const m of src.matchAll(
    /export\s+(?:declare\s+)?(?:const|function|class|type|interface|enum)\s+(\w+)/g,
  ))
    names.add(m[1]!);
  return names;
}

describe('docs/scenario.md, "Library use"', () => {
  it('lists only names that src/index.ts exports', () => {
    const text = readFileSync(join(root, 'docs', 'scenario.md'), 'utf8');
    const section = text.slice(
      text.indexOf('## Library use'),
      text.indexOf('\n## ', text.indexOf('## Library use') + 1),
    );
    const rows = section.split('\n').filter((l) => l.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(5);
    const exported = exportedNames();
    const missing: string[] = [];
    for (const row of rows) {
      const first = row.split('|')[1]!;
      for (const m of first.matchAll(/`([A-Za-z_$][\w$]*)/g)) if (!exported.has(m[1]!)) missing.push(m[1]!);
    }
    expect(missing).toEqual([]);
  });
});

describe('docs/examples.md', () => {
  const text = readFileSync(join(root, 'docs', 'examples.md'), 'utf8');

  it('runs the CLI as the README does', () => {
    expect(text).toContain('npx s2emu run');
    expect(text).not.toMatch(/tsx src\/cli/);
  });

  it('has an example with a guest stage 1 that uses `at`', () => {
    const withAt = readdirSync(join(root, 'examples'))
      .filter((f) => f.endsWith('.json'))
      .filter((f) => {
        const s = JSON.parse(readFileSync(join(root, 'examples', f), 'utf8')) as {
          guest?: { stage1?: unknown };
          steps: { access?: string }[];
        };
        return s.guest?.stage1 !== undefined && s.steps.some((st) => st.access === 'at');
      });
    expect(withAt.length).toBeGreaterThan(0);
  });

  it('describes every file in examples/, under a heading of its own', () => {
    const headings = [...text.matchAll(/^## (.*)$/gm)].map((m) => m[1]!);
    const described = new Set(headings.flatMap((h) => h.match(/[\w-]+\.json/g) ?? []));
    const files = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.json'));
    expect(files.filter((f) => !described.has(f))).toEqual([]);
    expect([...described].filter((f) => !files.includes(f))).toEqual([]);
  });
});

describe('README.md and docs/', () => {
  it('name only repository files that exist', () => {
    const missing: string[] = [];
    for (const file of docFiles) {
      const text = readFileSync(join(root, file), 'utf8');
      for (const m of text.matchAll(/(?<![\w/.])((?:src|test|bench|examples|docs|api)\/[\w./-]*\w)/g))
        if (!existsSync(join(root, m[1]!))) missing.push(`${file}: ${m[1]}`);
    }
    expect(missing).toEqual([]);
  });
});
