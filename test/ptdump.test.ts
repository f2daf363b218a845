/**
 * The debugfs dump (src/views/ptdump.ts) byte for byte: against the specification's examples
 * (the kernel's debugfs format), and against the final table of every golden replay vector,
 * whose expected `dump` (its tables and leaves) is turned into the kernel's text here by a
 * small reference model written from the kernel's rules (arch/arm64/kvm/ptdump.c stage2_pte_bits and
 * kvm_ptdump_guest_show(); arch/arm64/mm/ptdump.c note_page()), in BigInt, sharing nothing
 * with the code under test.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MemCache } from '../src/pgtable/pool.js';
import { KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W, KVM_PGTABLE_PROT_X } from '../src/pgtable/descriptor.js';
import { Stage2PageTable } from '../src/pgtable/stage2.js';
import { parseReplay, runReplay } from '../src/replay/replay.js';
import {
  ptdump,
  ptdumpIpaRange,
  ptdumpJson,
  ptdumpRuns,
  ptdumpStage2Levels,
  ptdumpUnavailable,
  ptdumpWide,
  ptdumpWideRuns,
} from '../src/views/ptdump.js';

const here = dirname(fileURLToPath(import.meta.url));

// ---- the reference model --------------------------------------------------------------------

/** The table the spec gives for v6.17 (mask, val, set, clear), in BigInt. */
const BITS: [bigint, bigint, string, string][] = [
  [0x1n, 0x1n, ' ', 'F'],
  [0x41n, 0x41n, 'R', ' '],
  [0x81n, 0x81n, 'W', ' '],
  [(1n << 54n) | 1n, 1n, ' ', 'X'],
  [0x401n, 0x401n, 'AF', '  '],
  [0x3n, 0x1n, 'BLK', '   '],
];
const MASK = 0x00400000000004c3n;

function refSize(bytes: bigint): string {
  let d = bytes >> 10n;
  const units = 'KMGTPE';
  let u = 0;
  while (d % 1024n === 0n && u < 5) {
    d /= 1024n;
    u++;
  }
  return `${d}${units[u]}`.padStart(10);
}

const hex16 = (a: bigint): string => '0x' + a.toString(16).padStart(16, '0');

/** note_page over a list of visited entries: [addr, level, value]. */
function refNotePage(entries: [bigint, number, bigint][]): string {
  let out = '';
  let started = false;
  let start = 0n;
  let level = -1;
  let prot = 0n;
  for (const [addr, lvl, val] of entries) {
    const p = val & MASK;
    if (!started) {
      started = true;
      out += '---[ Guest IPA ]---\n';
    } else if (p !== prot || lvl !== level) {
      out += `${hex16(start)}-${hex16(addr)}   ${refSize(addr - start)} ${level}`;
      if (prot !== 0n) for (const [m, v, s, c] of BITS) out += ' ' + ((prot & m) === v ? s : c);
      out += '\n';
    } else continue;
    start = addr;
    level = lvl;
    prot = p;
  }
  return out;
}

/** Geometry as the spec gives it: level shift, and the start level KVM picks. */
function levelShift(pageShift: number, level: number): number {
  return pageShift + (pageShift - 3) * (3 - level);
}
function defaultStartLevel(pageShift: number, ipaBits: number): number {
  // stage2_pgtable_levels(ipa) = ARM64_HW_PGTABLE_LEVELS(ipa - 4) = (ipa - 8) / (PAGE_SHIFT - 3),
  // at least 2 (kvm_get_vtcr(): never fewer than two levels, so host PMD blocks fit).
  return 4 - Math.max(2, Math.floor((ipaBits - 8) / (pageShift - 3)));
}

interface InitLine {
  ipaBits: number;
  pageShift: number;
  startLevel: number;
}

function parseInit(line: string): InitLine {
  const kv = Object.fromEntries(
    line
      .split(/\s+/)
      .slice(1)
      .map((f) => f.split('=') as [string, string]),
  );
  const pageShift = { '4K': 12, '16K': 14, '64K': 16 }[kv.granule!]!;
  const ipaBits = Number(kv.ipa_bits);
  const startLevel =
    kv.start_level !== undefined ? Number(kv.start_level) : defaultStartLevel(pageShift, ipaBits);
  return { ipaBits, pageShift, startLevel };
}

/**
 * The expected stage2_page_tables text from a replay `dump` block (its `table` and `leaf`
 * lines): every entry the LEAF walk visits, in order, then note_page. Returns "" where the
 * kernel refuses to open the file (start level −1).
 */
function refPtdump(init: InitLine, dump: string[]): string {
  if (init.startLevel < 0) return '';
  const tables = new Set<string>();
  const leaves = new Map<string, bigint>();
  for (const l of dump) {
    const f = l.split(' ');
    if (f[0] === 'table') tables.add(`${f[1]} ${BigInt(f[2]!)}`);
    else if (f[0] === 'leaf') leaves.set(`${f[1]} ${BigInt(f[2]!)}`, BigInt(f[4]!));
  }
  const entries: [bigint, number, bigint][] = [];
  const limit = 1n << BigInt(init.ipaBits);
  const enumerate = (level: number, base: bigint, span: bigint): void => {
    const size = 1n << BigInt(levelShift(init.pageShift, level));
    // The walk covers [0, 2^ia_bits) only, even where one entry of a high start level spans more.
    for (let a = base; a < base + span && a < limit; a += size) {
      const key = `L${level} ${a}`;
      if (tables.has(key)) enumerate(level + 1, a, size);
      else entries.push([a, level, leaves.get(key) ?? 0n]);
    }
  };
  enumerate(init.startLevel, 0n, 1n << BigInt(init.ipaBits));
  return refNotePage(entries);
}

/** The last init line of a script and the last dump block of its output. */
function finalState(ops: string, out: string): { init: InitLine; dump: string[] } {
  const inits = ops.split('\n').filter((l) => l.startsWith('init '));
  const lines = out.split('\n');
  const end = lines.lastIndexOf(lines.filter((l) => l.startsWith('end tables=')).pop()!);
  let begin = end;
  while (begin > 0 && /^(table|leaf) /.test(lines[begin - 1]!)) begin--;
  return { init: parseInit(inits[inits.length - 1]!), dump: lines.slice(begin, end) };
}

function vectorDir(name: string, vendored: string | null): string | null {
  const shared = join(here, '..', '..', 'shared', name);
  if (existsSync(shared)) return shared;
  return vendored !== null && existsSync(vendored) ? vendored : null;
}

function names(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ops'))
    .map((f) => f.slice(0, -4))
    .sort();
}

function checkVector(dir: string, name: string): void {
  const ops = readFileSync(join(dir, `${name}.ops`), 'utf8');
  const out = readFileSync(join(dir, `${name}.out`), 'utf8');
  const { init, dump } = finalState(ops, out);
  const pgt = runReplay(parseReplay(ops), () => {})!;
  const want = refPtdump(init, dump);
  expect(ptdump(pgt)).toBe(want);
  expect(ptdumpIpaRange(pgt)).toBe(`${String(init.ipaBits).padStart(2)}\n`);
  expect(ptdumpStage2Levels(pgt)).toBe(`${4 - init.startLevel}\n`);
  if (want !== '') {
    // The last run is never printed: the last printed line ends before 2^ia_bits.
    const last = want.trimEnd().split('\n').pop()!;
    if (last.startsWith('0x')) expect(BigInt(last.slice(19, 37))).toBeLessThan(1n << BigInt(init.ipaBits));
  }
}

// ---- the tests ---------------------------------------------------------------------------

describe('ptdump: the examples of the debugfs format', () => {
  const make = (): { pgt: Stage2PageTable; mc: MemCache } => {
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
    const mc = MemCache.unlimited(pgt.pool);
    return { pgt, mc };
  };

  it('prints a valid non-exec RW 2M block at start level 1 as the spec spells it', () => {
    const { pgt, mc } = make();
    expect(pgt.map(0x4000_0000, 0x20_0000, 0x8000_0000, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W, mc)).toBe(0);
    const lines = ptdump(pgt).split('\n');
    expect(lines[0]).toBe('---[ Guest IPA ]---');
    // The empty region before it: the line ends after the level name.
    expect(lines[1]).toBe('0x0000000000000000-0x0000000040000000           1G 1');
    expect(lines[2]).toBe('0x0000000040000000-0x0000000040200000           2M 2   R W X AF BLK');
    // The rest of that 1G at level 2, then no final run: the unmapped tail 1G..1T is missing.
    expect(lines[3]).toBe('0x0000000040200000-0x0000000080000000        1022M 2');
    expect(lines.slice(4)).toEqual(['']);
    expect(ptdumpIpaRange(pgt)).toBe('40\n');
    expect(ptdumpStage2Levels(pgt)).toBe('3\n');
  });

  it('prints "X" for not executable and " " for executable; merges runs across output addresses', () => {
    const { pgt, mc } = make();
    const rwx = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X;
    // Two pages with unrelated PAs and the same masked bits: one run of 8K.
    expect(pgt.map(0x1000, 0x1000, 0x9_0000_0000, rwx, mc)).toBe(0);
    expect(pgt.map(0x2000, 0x1000, 0x1234_5000, rwx, mc)).toBe(0);
    expect(pgt.map(0x3000, 0x1000, 0x1235_0000, KVM_PGTABLE_PROT_R, mc)).toBe(0);
    const lines = ptdump(pgt).split('\n');
    expect(lines[1]).toBe('0x0000000000000000-0x0000000000001000           4K 3');
    expect(lines[2]).toBe('0x0000000000001000-0x0000000000003000           8K 3   R W   AF    ');
    expect(lines[3]).toBe('0x0000000000003000-0x0000000000004000           4K 3   R   X AF    ');
    // The wide form splits the merged run where the output addresses jump.
    const wide = ptdumpWideRuns(pgt).filter((r) => r.valid);
    expect(wide.map((r) => [r.start, r.end, r.oaStart])).toEqual([
      [0x1000, 0x2000, 0x9_0000_0000],
      [0x2000, 0x3000, 0x1234_5000],
      [0x3000, 0x4000, 0x1235_0000],
    ]);
  });

  it('sizes in the largest whole unit: 4K, 2M, 1536M', () => {
    const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
    const mc = MemCache.unlimited(pgt.pool);
    // 1.5G of 2M blocks from 0, then a page at 1.5G + 4K.
    expect(pgt.map(0, 0x6000_0000, 0, KVM_PGTABLE_PROT_R, mc)).toBe(0);
    expect(pgt.map(0x6000_1000, 0x1000, 0x1000, KVM_PGTABLE_PROT_R, mc)).toBe(0);
    const text = ptdump(pgt);
    // The first GiB is a level-1 block; 512M of level-2 blocks follow.
    expect(text).toContain('0x0000000000000000-0x0000000040000000           1G 1   R   X AF BLK\n');
    expect(text).toContain('0x0000000040000000-0x0000000060000000         512M 2   R   X AF BLK\n');
    expect(text).toContain('0x0000000060001000-0x0000000060002000           4K 3   R   X AF    \n');
    const big = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
    const mc2 = MemCache.unlimited(big.pool);
    expect(big.map(0x4000_0000, 0x6000_0000, 0, KVM_PGTABLE_PROT_R, mc2)).toBe(0);
    // 1G of level-1 block then 512M of level-2 blocks: no 1536M run (different levels) ...
    expect(ptdump(big)).toContain('           1G 1   R   X AF BLK\n');
    // ... but an empty region of 1.5G at level 2 does print as 1536M.
    const nc = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
    const mc3 = MemCache.unlimited(nc.pool);
    expect(nc.map(0x1000, 0x1000, 0x1000, KVM_PGTABLE_PROT_R, mc3)).toBe(0);
    expect(nc.map(0x4000_0000, 0x1000, 0x1000, KVM_PGTABLE_PROT_R, mc3)).toBe(0);
    expect(ptdump(nc)).toContain('0x0000000000200000-0x0000000040000000        1022M 2\n');
  });

  it('prints nothing for a destroyed table, and says why', () => {
    const { pgt } = make();
    pgt.destroy();
    expect(ptdump(pgt)).toBe('');
    expect(ptdumpUnavailable(pgt)).toMatch(/destroyed/);
  });

  it('the JSON form carries the text, every run (the last marked unprinted) and the entries', () => {
    const { pgt, mc } = make();
    expect(pgt.map(0x4000_0000, 0x20_0000, 0x8000_0000, KVM_PGTABLE_PROT_R, mc)).toBe(0);
    const j = ptdumpJson(pgt);
    expect(j.text).toBe(ptdump(pgt));
    expect(j.ipaRange).toBe(40);
    expect(j.stage2Levels).toBe(3);
    expect(j.runs.filter((r) => r.printed).map((r) => r.line + '\n')).toEqual(
      ptdump(pgt)
        .split(/(?<=\n)/)
        .slice(1),
    );
    expect(j.runs.at(-1)).toMatchObject({ printed: false, end: '0x10000000000' });
    const block = j.entries.find((e) => e.valid)!;
    expect(block).toMatchObject({
      start: '0x40000000',
      level: 2,
      oa: { start: '0x80000000', end: '0x80200000' },
    });
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it('the wide form prints OA, both memory-type readings, SH, CONT, SW, and a provenance line', () => {
    const { pgt, mc } = make();
    expect(pgt.map(0x4000_0000, 0x20_0000, 0x8000_0000, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W, mc)).toBe(0);
    const text = ptdumpWide(pgt, { provenance: (ipa) => (ipa === 0x4000_0000 ? 'test reason' : null) });
    const lines = text.split('\n');
    expect(lines[0]).toBe('# ipa_range 40, stage2_levels 3 (start level 1), granule 4K, no FWB');
    const block = lines.findIndex((l) => l.startsWith('0x0000000040000000-0x0000000040200000'));
    expect(lines[block]).toContain('2M 2   R W X AF BLK');
    expect(lines[block]).toContain('-> 0x0000000080000000-0x0000000080200000');
    expect(lines[block]).toMatch(/memattr 0xf Normal-WB \(no FWB; FWB: \S+\)/);
    expect(lines[block]).toContain('  ISH  ');
    expect(lines[block + 1]).toBe('    why: test reason');
    // The final run is shown here (the kernel leaves it out).
    expect(lines.at(-2)).toMatch(/^0x0000000080000000-0x0000010000000000 .* empty$/);
  });
});

const dir = vectorDir('vectors', join(here, 'vectors'))!;
describe('ptdump: the final table of every golden vector', () => {
  const list = names(dir);
  it('finds the vectors', () => expect(list.length).toBeGreaterThan(100));
  for (const name of list) it(`${name}`, () => checkVector(dir, name));
});

const lpa2 = vectorDir('vectors-lpa2', null);
describe.runIf(lpa2 !== null)('ptdump: the final table of every LPA2 vector', () => {
  for (const name of lpa2 === null ? [] : names(lpa2)) it(`${name}`, () => checkVector(lpa2!, name));
});

describe('ptdump: kernel runs and wide runs cover the IPA space', () => {
  it('the runs tile [0, 2^ia_bits) without gaps', () => {
    const ops = readFileSync(join(dir, `${names(dir)[0]}.ops`), 'utf8');
    const pgt = runReplay(parseReplay(ops), () => {})!;
    for (const runs of [ptdumpRuns(pgt), ptdumpWideRuns(pgt)]) {
      expect(runs[0]!.start).toBe(0);
      for (let i = 1; i < runs.length; i++) expect(runs[i]!.start).toBe(runs[i - 1]!.end);
      expect(runs.at(-1)!.end).toBe(pgt.geo.ipaLimit);
    }
  });
});
