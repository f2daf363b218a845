/**
 * The write journal (src/pgtable/journal.ts) and time travel (src/views/timetravel.ts): the
 * table rebuilt from the journal after N units equals the table obtained by running only the
 * first N steps or operations, for random replay scripts (every page-table operation,
 * blocks over tables, splits, the attribute walker, the fast paths) and for the example
 * scenarios cut at random steps (faults, MMU-notifier unmaps, dirty logging, aging).
 */

import { readFileSync, readdirSync } from 'node:fs';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseReplay, runReplay } from '../src/replay/replay.js';
import { parseScenarioText } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import type { Stage2PageTable } from '../src/pgtable/stage2.js';
import { TimeTravel } from '../src/views/timetravel.js';
import { Journal, JOURNAL_SITE_FREE, JournalEntry } from '../src/pgtable/journal.js';
import { CPU_PRESETS } from '../src/mmu/cpu.js';
import { Kvm } from '../src/mmu/vm.js';

type Row = string;

/** Every valid descriptor reachable from the root, tables included (their child's PA). */
function rows(t: {
  forEachValid(fn: (k: 'table' | 'leaf', l: number, ipa: number, lo: number, hi: number) => void): void;
}): Row[] {
  const out: Row[] = [];
  t.forEachValid((k, l, ipa, lo, hi) =>
    out.push(`${k} L${l} ${ipa.toString(16)} ${hi.toString(16)}:${lo.toString(16)}`),
  );
  return out;
}

const GIB = 2 ** 30;

/** A random replay script (as text) over a 4K, 40-bit table. */
const replayOp = fc.oneof(
  fc
    .record({
      at: fc.integer({ min: 0, max: 15 }),
      size: fc.constantFrom(0x1000, 0x3000, 0x200000, 0x400000, 0x40000000),
      pa: fc.integer({ min: 0, max: 255 }),
      prot: fc.constantFrom('R', 'R|W', 'R|X', 'R|W|X', 'R|W|DEVICE', 'R|NORMAL_NC', 'R|SW0'),
    })
    .map(({ at, size, pa, prot }) => {
      const align = size >= 0x40000000 ? 0x40000000 : size >= 0x200000 ? 0x200000 : 0x1000;
      const ipa = GIB + Math.floor((at * 0x101000) / align) * align;
      return `map 0x${ipa.toString(16)} 0x${size.toString(16)} 0x${(0x80000000 + pa * 0x200000).toString(16)} ${prot}`;
    }),
  fc
    .record({
      op: fc.constantFrom('unmap', 'wrprotect', 'mkold', 'split', 'flush'),
      at: fc.integer({ min: 0, max: 15 }),
      size: fc.constantFrom(0x1000, 0x200000, 0x800000),
    })
    .map(({ op, at, size }) => `${op} 0x${(GIB + at * 0x101000).toString(16)} 0x${size.toString(16)}`),
  fc
    .record({ at: fc.integer({ min: 0, max: 15 }), prot: fc.constantFrom('R', 'R|W', 'R|W|X') })
    .map(({ at, prot }) => `relax 0x${(GIB + at * 0x101000).toString(16)} ${prot}`),
  fc.integer({ min: 0, max: 15 }).map((at) => `mkyoung 0x${(GIB + at * 0x101000).toString(16)}`),
);

function runScript(lines: string[], journal: boolean): Stage2PageTable {
  const ops = parseReplay(lines.join('\n') + '\n');
  const pgt = runReplay(ops, () => {}, { journal });
  if (pgt === null) throw new Error('no table');
  return pgt;
}

describe('journal: replay scripts', () => {
  it('the table rebuilt after unit k equals the table of the first k + 1 operations', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('fwb=0', 'fwb=1'),
        fc.array(replayOp, { minLength: 1, maxLength: 24 }),
        (fwb, body) => {
          const init = `init ipa_bits=40 granule=4K ${fwb}`;
          const full = runScript([init, ...body], true);
          const tt = new TimeTravel(full);
          expect(tt.units).toBe(body.length);
          for (let k = -1; k < body.length; k++) {
            const prefix = runScript([init, ...body.slice(0, k + 1)], false);
            expect(rows(tt.seek(k))).toEqual(rows(prefix));
            // The materialised table is the same table, with refcounts a walk accepts.
            const copy = tt.toPageTable();
            expect(rows(copy)).toEqual(rows(prefix));
            expect(copy.countTables()).toBe(prefix.countTables());
          }
          // Backwards too: undoing from the end gives the same tables.
          for (let k = body.length - 1; k >= -1; k--) {
            const prefix = runScript([init, ...body.slice(0, k + 1)], false);
            expect(rows(tt.seek(k))).toEqual(rows(prefix));
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('journals the free walker, so a block over a table leaves nothing stale behind', () => {
    const pgt = runScript(
      [
        'init ipa_bits=40 granule=4K fwb=0',
        'map 0x40200000 0x3000 0x80000000 R|W',
        'map 0x40200000 0x200000 0xa0200000 R|W|X',
        'map 0x40400000 0x1000 0x90000000 R',
      ],
      true,
    );
    const j = pgt.journal!;
    const e = new JournalEntry();
    const sites: number[] = [];
    for (let i = j.unitStart(1); i < j.unitEnd(1); i++) sites.push(j.entry(i, e).site);
    // The three L3 pages of the freed table are zeroed by put_page (site FREE).
    expect(sites.filter((s) => s === JOURNAL_SITE_FREE).length).toBe(3);
    // The third map reuses the freed table page: rebuilt after it, no stale leaf.
    const tt = new TimeTravel(pgt).seek(2);
    expect(rows(tt)).toEqual(
      rows(
        runScript(
          [
            'init ipa_bits=40 granule=4K fwb=0',
            'map 0x40200000 0x200000 0xa0200000 R|W|X',
            'map 0x40400000 0x1000 0x90000000 R',
          ],
          false,
        ),
      ),
    );
  });

  it('a changes() record is net per entry: break-before-make shows old → new, written twice', () => {
    const pgt = runScript(
      [
        'init ipa_bits=40 granule=4K fwb=0',
        'map 0x40000000 0x1000 0x80000000 R',
        'map 0x40000000 0x1000 0x81000000 R|W',
      ],
      true,
    );
    const ch = new TimeTravel(pgt).changes(1);
    const leaf = ch.find((c) => c.level === 3)!;
    expect(leaf.ipa).toBe(0x40000000);
    expect(leaf.writes).toBe(2); // LOCKED, then the new leaf
    expect((leaf.oldLo & ~0xfff) >>> 0).toBe(0x80000000);
    expect((leaf.newLo & ~0xfff) >>> 0).toBe(0x81000000);
  });

  it('costs nothing when off: no journal unless asked', () => {
    expect(
      runScript(['init ipa_bits=40 granule=4K fwb=0', 'map 0x40000000 0x1000 0x80000000 R'], false).journal,
    ).toBe(null);
    const pgt = runScript(['init ipa_bits=40 granule=4K fwb=0'], true);
    expect(pgt.journal).toBeInstanceOf(Journal);
  });
});

const EXAMPLES = readdirSync('examples').filter((f) => f.endsWith('.json'));

describe('journal: example scenarios cut at random steps', () => {
  for (const file of EXAMPLES) {
    it(`${file}: the table rebuilt before step N equals the run of the first N steps`, () => {
      const scenario = parseScenarioText(readFileSync(`examples/${file}`, 'utf8'));
      const full = new ScenarioRunner(scenario, { journal: true });
      full.run();
      const tt = new TimeTravel(full.kvm.pgt);
      const n = scenario.steps.length;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: n }), (cut) => {
          const part = new ScenarioRunner({ ...scenario, steps: scenario.steps.slice(0, cut) });
          part.run();
          expect(rows(tt.seekStep(cut))).toEqual(rows(part.kvm.pgt));
        }),
        { numRuns: Math.min(6, n + 1) },
      );
      // After every unit: the end state is the live table.
      expect(rows(tt.seek(tt.units - 1))).toEqual(rows(full.kvm.pgt));
    });
  }
});

describe('journal: reset', () => {
  it('forgets the writes and rebases on the table as it is', () => {
    const pgt = runScript(
      ['init ipa_bits=40 granule=4K fwb=1', 'map 0x40000000 0x200000 0x80000000 R|W'],
      true,
    );
    const j = pgt.journal!;
    expect(j.length).toBeGreaterThan(0);
    j.reset();
    expect(j.length).toBe(0);
    expect(j.units).toBe(0);
    expect(rows(new TimeTravel(pgt))).toEqual(rows(pgt));
  });
});

describe('journal: in a debugger and at the API boundary', () => {
  it('console.log shows a summary, never the typed arrays', () => {
    const pgt = runScript(['init ipa_bits=40 granule=4K fwb=1', 'map 0x40000000 0x1000 0x80000000 R'], true);
    expect(inspect(pgt.journal)).toBe('Journal { 5 writes in 1 units, 34304 bytes }');
    const tt = new TimeTravel(pgt).seek(0);
    expect(inspect(tt)).toBe('TimeTravel { after unit 0 of 1, write 5 of 5 }');
  });

  it('Kvm checks the journal and provenance options', () => {
    const base = {
      cpu: CPU_PRESETS['grace']!.features,
      granule: 4096 as const,
      physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' as const }],
    };
    expect(() => new Kvm({ ...base, journal: 'yes' as unknown as boolean })).toThrow(/opts\.journal/);
    expect(() => new Kvm({ ...base, provenance: 1 as unknown as boolean })).toThrow(/opts\.provenance/);
    const kvm = new Kvm({ ...base, journal: true, provenance: true });
    expect(kvm.pgt.journal).toBeInstanceOf(Journal);
    expect(inspect(kvm.provenance)).toBe('Provenance { 0 records, 0 leaves, kernel 6.17 }');
  });
});
