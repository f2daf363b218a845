/**
 * The examples in examples/: each one is run and the facts it exists to show are asserted
 * (outcomes, errnos, leaves, refused memslots, dirty gfns, summary counters). Expected
 * descriptors are derived by hand from stage2_set_prot_attr() (see desc() below), not taken
 * from the emulator's output. Every file is also run through the CLI with --json (exit 0, one
 * JSON object per line, a summary last) and without it (the report shows the description),
 * in process through the CLI's main(), and one example through the real executable.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/app.js';
import type { KernelName } from '../src/mmu/kernel.js';
import { parseScenario, parseScenarioText } from '../src/scenario/parse.js';
import { ScenarioRunner, accessJson } from '../src/scenario/run.js';
import type { RunSummary } from '../src/scenario/run.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const examplesDir = join(root, 'examples');
const exampleFiles = readdirSync(examplesDir)
  .filter((f) => f.endsWith('.json'))
  .sort();

interface Fault {
  fsc: string;
  level: number;
  s1ptw: boolean;
  handler: string;
  ret: number;
}
interface Leaf {
  ipa: string;
  level: number;
  size: string;
  desc: string;
}
interface Access {
  step: number;
  access: string;
  ipa: string;
  outcome: string;
  errno?: string;
  faults: Fault[];
  leaf: Leaf | null;
  uffd: number;
  dcacheBytes: number;
  icacheBytes: number;
  tlbi: number;
}
interface Run {
  refused: { slot: number; errno: string }[];
  dirty: { step: number; slot: number; gfns: number[] }[];
  accesses: Access[];
  summary: RunSummary;
  /** The accesses of one step (a touch gives several). */
  step(n: number): Access[];
  /** The only access of a single-access step. */
  one(n: number): Access;
}

/** The examples that have a describe() of their own in this file. */
const tested = new Set<string>();

/** Runs examples/NAME through the library. `keep` filters the access lines kept (big runs). */
function run(name: string, kernel?: KernelName, keep?: (step: number, n: number) => boolean): Run {
  tested.add(name);
  const scenario = parseScenarioText(readFileSync(join(examplesDir, name), 'utf8'));
  const runner = new ScenarioRunner(scenario, kernel ? { kernel } : {});
  const refused: Run['refused'] = [];
  const dirty: Run['dirty'] = [];
  const accesses: Access[] = [];
  let n = 0;
  const summary = runner.run({
    memslotRefused: (slot, errno) => refused.push({ slot, errno }),
    dirtyLog: (step, slot, gfns) => dirty.push({ step, slot, gfns: [...gfns] }),
    access: (step, r, extra) => {
      if (!keep || keep(step, n)) accesses.push(accessJson(step, r, undefined, extra) as unknown as Access);
      n++;
    },
  });
  const step = (s: number) => accesses.filter((a) => a.step === s);
  const one = (s: number) => {
    const a = step(s);
    expect(a).toHaveLength(1);
    return a[0]!;
  };
  return { refused, dirty, accesses, summary, step, one };
}

/**
 * A stage-2 leaf descriptor, built as stage2_set_prot_attr() (arch/arm64/kvm/hyp/pgtable.c)
 * builds it (4K granule, no LPA2): bits 1:0 = 01 for a level-1/2 block, 11 for a level-3 page;
 * MemAttr in bits 5:2 (arch/arm64/include/asm/memory.h:
 * Normal-WB 0x6 with FWB, 0xF without; Normal-NC 0x5; Device-nGnRE 0x1); S2AP_R bit 6,
 * S2AP_W bit 7; SH = 0b11 (bits 9:8); AF bit 10; XN bit 54 when not executable.
 */
function desc(
  pa: bigint,
  o: { level: number; attr: number; r?: boolean; w?: boolean; x?: boolean; af?: boolean },
): string {
  let d = pa | (o.level === 3 ? 3n : 1n) | (BigInt(o.attr) << 2n) | (3n << 8n);
  if (o.r !== false) d |= 1n << 6n;
  if (o.w) d |= 1n << 7n;
  if (o.af !== false) d |= 1n << 10n;
  if (!o.x) d |= 1n << 54n;
  return '0x' + d.toString(16).padStart(16, '0');
}
/** The output address of a descriptor (bits 47:12), for pages whose PA is the allocator's choice. */
function paOf(d: string): bigint {
  return BigInt(d) & 0xfffffffff000n;
}
const WB_FWB = 0x6;
const WB = 0xf;
const NC = 0x5;
const DEV = 0x1;
const M2 = '0x200000';
const G1 = '0x40000000';
const K4 = '0x1000';

function noDiagnostics(r: Run): void {
  expect(r.summary.diagnostics).toEqual([]);
}

describe('desc() agrees with worked descriptors of stage2_set_prot_attr()', () => {
  it('reproduces the table', () => {
    expect(desc(0x80000000n, { level: 3, attr: WB, w: true, x: true })).toBe('0x00000000800007ff');
    expect(desc(0x80000000n, { level: 3, attr: WB_FWB, w: true, x: true })).toBe('0x00000000800007db');
    expect(desc(0x80000000n, { level: 3, attr: WB, w: true })).toBe('0x00400000800007ff');
    expect(desc(0x80000000n, { level: 3, attr: WB_FWB })).toBe('0x004000008000075b');
    expect(desc(0x80000000n, { level: 3, attr: DEV, w: true })).toBe('0x00400000800007c7');
    expect(desc(0x80000000n, { level: 3, attr: NC, w: true })).toBe('0x00400000800007d7');
    expect(desc(0x40200000n, { level: 2, attr: WB, w: true, x: true })).toBe('0x00000000402007fd');
  });
});

describe('grace-gpu-passthrough.json', () => {
  // 34822 accesses: keep the first of each RAM touch and everything after.
  const r = run('grace-gpu-passthrough.json', undefined, (step, n) => step >= 2 || n % 2048 === 0);

  it('maps RAM reads to the huge zero page read-only (executable: DIC), then writes break CoW', () => {
    const read = r.step(0)[0]!;
    expect(read.outcome).toBe('done');
    expect(read.leaf).toMatchObject({ ipa: '0x40000000', level: 2, size: M2 });
    const zero = paOf(read.leaf!.desc);
    expect(read.leaf!.desc).toBe(desc(zero, { level: 2, attr: WB_FWB, x: true }));
    const write = r.step(1)[0]!;
    expect(write.faults.map((f) => [f.fsc, f.level])).toEqual([
      ['permission', 2],
      ['translation', 2],
    ]);
    expect(write.tlbi).toBeGreaterThan(0);
    const pa = paOf(write.leaf!.desc);
    expect(pa).not.toBe(zero);
    expect(write.leaf!.desc).toBe(desc(pa, { level: 2, attr: WB_FWB, w: true, x: true }));
    expect(r.one(2).faults).toEqual([]); // exec: already executable
  });

  it('maps HBM Normal-WB in 1G blocks, executable; Normal-NC in 2M blocks, exec injected', () => {
    expect(r.step(3)[0]!.leaf).toEqual({
      ipa: '0x400000000000',
      level: 1,
      size: G1,
      desc: desc(0x400000000000n, { level: 1, attr: WB_FWB, w: true, x: true }),
    });
    expect(r.one(4)).toMatchObject({ outcome: 'done', faults: [] });
    expect(r.one(5).leaf).toEqual({
      ipa: '0x500000000000',
      level: 2,
      size: M2,
      desc: desc(0x500000000000n, { level: 2, attr: NC, w: true }),
    });
    expect(r.one(7).outcome).toBe('iabt');
    expect(r.one(7).faults).toMatchObject([{ fsc: 'permission', handler: 'user_mem_abort', ret: -8 }]);
    expect(r.one(8)).toMatchObject({ outcome: 'mmio', leaf: null });
  });

  it('counts as the run should', () => {
    expect(r.summary).toMatchObject({
      accesses: 34822,
      outcomes: { done: 34820, iabt: 1, mmio: 1 },
      dcacheBytes: 0,
      icacheBytes: 0,
      mmioExits: 1,
      injected: 1,
      errors: {},
    });
    noDiagnostics(r);
  });
});

describe('no-fwb-gpu-passthrough.json', () => {
  const r = run('no-fwb-gpu-passthrough.json');

  it('refuses the cacheable PFNMAP slot with EINVAL and only that one', () => {
    expect(r.refused).toEqual([{ slot: 1, errno: 'EINVAL' }]);
    expect(r.one(4)).toMatchObject({ outcome: 'mmio', leaf: null });
  });

  it('fails faults on the cacheable MIXEDMAP with EFAULT', () => {
    for (const s of [8, 9]) {
      expect(r.one(s)).toMatchObject({ outcome: 'error', errno: 'EFAULT', leaf: null });
      expect(r.one(s).faults).toMatchObject([{ handler: 'user_mem_abort', ret: -14 }]);
    }
    expect(r.summary.errors).toEqual({ EFAULT: 2 });
  });

  it('cleans RAM to the PoC on every map and maps it non-executable until an exec relaxes it', () => {
    const read = r.one(0);
    expect(read.dcacheBytes).toBe(2 * 1024 * 1024);
    expect(read.leaf!.desc).toBe(desc(paOf(read.leaf!.desc), { level: 2, attr: WB }));
    for (const a of r.step(2)) {
      if (a.faults.length) expect(a.dcacheBytes).toBe(2 * 1024 * 1024);
      expect(a.leaf!.desc).toBe(desc(paOf(a.leaf!.desc), { level: 2, attr: WB, w: true }));
    }
    expect(r.step(2).filter((a) => a.faults.length)).toHaveLength(4);
    const exec = r.one(3);
    expect(exec.faults).toMatchObject([{ fsc: 'permission', level: 2, ret: 0 }]);
    expect(exec.dcacheBytes).toBe(0);
    expect(exec.leaf!.desc).toBe(desc(0x80400000n, { level: 2, attr: WB, w: true, x: true }));
    expect(r.summary.relaxes).toBe(1);
    expect(r.summary.icacheInvalAll + r.summary.icacheBytes).toBeGreaterThan(0);
  });

  it('maps the Normal-NC PFNMAP (no cache maintenance needed), never executable', () => {
    expect(r.one(5).leaf!.desc).toBe(desc(0x500000000000n, { level: 2, attr: NC, w: true }));
    expect(r.one(5).dcacheBytes).toBe(0);
    expect(r.one(7).outcome).toBe('iabt');
    noDiagnostics(r);
  });
});

describe('vfio-bar.json', () => {
  const r = run('vfio-bar.json');

  it('maps BAR0 in 2M Device blocks and BAR2 in 4K Device pages, read and write', () => {
    expect(r.one(0).leaf).toEqual({
      ipa: '0x8000000000',
      level: 2,
      size: M2,
      desc: desc(0x600000000000n, { level: 2, attr: DEV, w: true }),
    });
    expect(r.one(1)).toMatchObject({ outcome: 'done', faults: [] });
    expect(r.one(2).leaf!.desc).toBe(desc(0x600001200000n, { level: 2, attr: DEV, w: true }));
    expect(r.one(4).leaf).toEqual({
      ipa: '0x8010000000',
      level: 3,
      size: K4,
      desc: desc(0x600002000000n, { level: 3, attr: DEV, w: true }),
    });
    expect(r.one(5).leaf!.desc).toBe(desc(0x60000200f000n, { level: 3, attr: DEV, w: true }));
  });

  it('turns an instruction fetch from a BAR into an injected iabt (-ENOEXEC)', () => {
    for (const s of [3, 6]) {
      expect(r.one(s).outcome).toBe('iabt');
      expect(r.one(s).faults).toMatchObject([{ handler: 'user_mem_abort', ret: -8 }]);
    }
  });

  it('sends accesses beyond the BARs to the VMM', () => {
    expect(r.one(7).outcome).toBe('mmio');
    expect(r.one(8).outcome).toBe('mmio');
    expect(r.one(9)).toMatchObject({ outcome: 'error', errno: 'ENOSYS' }); // no ISV, no NISV exit
    expect(r.one(10)).toMatchObject({ outcome: 'done', leaf: null }); // DC CIVAC skipped
    expect(r.one(11).outcome).toBe('iabt');
  });

  it('refuses dirty logging on a PFNMAP slot', () => {
    expect(r.refused).toEqual([{ slot: 3, errno: 'EINVAL' }]);
    expect(r.one(12).outcome).toBe('mmio');
    expect(r.summary).toMatchObject({ mmioExits: 3, injected: 3, maps: 4, hostPagesZeroed: 0 });
    noDiagnostics(r);
  });
});

describe('mte-thp.json', () => {
  const r = run('mte-thp.json');

  it('refuses the non-MTE-allowed anon VMA and the PFNMAP with EINVAL', () => {
    expect(r.refused).toEqual([
      { slot: 1, errno: 'EINVAL' },
      { slot: 2, errno: 'EINVAL' },
    ]);
    expect(r.one(8).outcome).toBe('mmio');
    expect(r.one(9).outcome).toBe('mmio');
  });

  it('clears the tags of each fresh 2M folio once, and not again for an alias', () => {
    expect(r.one(0).leaf).toMatchObject({ level: 2, size: M2 });
    expect(r.one(7).leaf!.desc).toBe(r.one(6).leaf!.desc); // the alias maps the same folio
    // Folios mapped: 0x40000000, three more, the huge zero page, its CoW copy, the re-populated one.
    expect(r.summary.maps).toBe(8);
    expect(r.summary.mtePagesCleared).toBe(7 * 512);
    noDiagnostics(r);
  });
});

describe('mte-hugetlb.json', () => {
  const r = run('mte-hugetlb.json');

  it('refuses the hugetlb VMA without VM_MTE_ALLOWED', () => {
    expect(r.refused).toEqual([{ slot: 2, errno: 'EINVAL' }]);
    expect(r.one(6).outcome).toBe('mmio');
  });

  it('maps the aliased slot with pages and the aligned one with blocks', () => {
    expect(r.one(0).leaf).toMatchObject({ level: 2, size: M2 });
    expect(r.one(2).leaf).toMatchObject({ ipa: '0x100201000', level: 3, size: K4 });
    expect(r.one(3).leaf).toMatchObject({ ipa: '0x40400000', level: 2, size: M2 });
    // Slot 1's page and slot 0's block are the same hugetlb folio.
    expect(paOf(r.one(3).leaf!.desc)).toBe(paOf(r.one(2).leaf!.desc));
  });

  it('marks a whole folio tagged after clearing one page (sanitise_mte_tags())', () => {
    // 512 (block, folio A) + 1 (page, folio B) + 0 (block, folio B) + 512 (block, folio C) + 0.
    expect(r.summary.mtePagesCleared).toBe(1025);
    noDiagnostics(r);
  });
});

describe('dirty-logging-migration.json', () => {
  const r = run('dirty-logging-migration.json');

  it('splits a write-protected block into pages on the first write', () => {
    const w = r.one(2);
    expect(w.faults).toMatchObject([{ fsc: 'permission', level: 2, ret: 0 }]);
    expect(w.leaf).toEqual({
      ipa: '0x40000000',
      level: 3,
      size: K4,
      desc: desc(0x80200000n, { level: 3, attr: WB_FWB, w: true, x: true }),
    });
    expect(w.tlbi).toBe(1);
    // The rest of the block is not mapped by the split: the next page takes a translation fault.
    expect(r.one(3).faults).toMatchObject([{ fsc: 'translation', level: 3 }]);
    expect(r.one(4).faults).toEqual([]);
  });

  it('maps a read during logging read-only, and a write-protected block stays a block on reads', () => {
    expect(r.one(5).leaf!.desc).toBe(desc(0x80201000n, { level: 3, attr: WB_FWB, x: true }));
    expect(r.one(7).faults).toEqual([]);
    expect(r.one(7).leaf!.desc).toBe(desc(0x80600000n, { level: 2, attr: WB_FWB, x: true }));
  });

  it('reports exactly the written gfns at each harvest', () => {
    expect(r.dirty).toEqual([
      { step: 8, slot: 0, gfns: [0x40000, 0x40003, 0x40200, 0x40201, 0x40202, 0x40203] },
      { step: 12, slot: 0, gfns: [0x40003, 0x40600] },
    ]);
    expect(r.summary.dirtyPages).toBe(8);
  });

  it('relaxes a harvested page in place while logging, and collapses to a block after', () => {
    expect(r.one(9).faults).toMatchObject([{ fsc: 'permission', level: 3 }]);
    expect(r.one(9).leaf).toMatchObject({ level: 3 });
    expect(r.summary.relaxes).toBe(1);
    expect(r.one(14).faults).toMatchObject([{ fsc: 'permission', level: 3 }]);
    expect(r.one(14).leaf).toEqual({
      ipa: '0x40000000',
      level: 2,
      size: M2,
      desc: desc(0x80200000n, { level: 2, attr: WB_FWB, w: true, x: true }),
    });
    expect(r.one(15).faults).toEqual([]);
    noDiagnostics(r);
  });
});

describe('hugetlb-1g.json', () => {
  const r = run('hugetlb-1g.json');

  it('maps a 1G hugetlb page as a level-1 block, with one fault per gigabyte', () => {
    expect(r.one(0).leaf).toEqual({
      ipa: '0x40000000',
      level: 1,
      size: G1,
      desc: desc(0x140000000n, { level: 1, attr: WB_FWB, w: true, x: true }),
    });
    expect(r.step(1)).toHaveLength(512);
    expect(r.step(1).every((a) => a.faults.length === 0)).toBe(true);
    expect(r.one(2).leaf).toMatchObject({ ipa: '0x80000000', level: 1, size: G1 });
  });

  it('falls back to 2M blocks when only 2M-aligned, to pages when only 4K-aligned', () => {
    expect(r.one(3).leaf).toEqual({
      ipa: '0x1000200000',
      level: 2,
      size: M2,
      desc: desc(0x140000000n, { level: 2, attr: WB_FWB, w: true, x: true }),
    });
    expect(r.one(4).leaf!.desc).toBe(desc(0x152000000n, { level: 2, attr: WB_FWB, w: true, x: true }));
    expect(r.one(5).leaf).toMatchObject({ level: 3, size: K4 });
    expect(r.one(6).leaf!.desc).toBe(desc(0x180002000n, { level: 3, attr: WB_FWB, w: true, x: true }));
    expect(r.summary).toMatchObject({ faults: 6, maps: 6, accesses: 518 });
    noDiagnostics(r);
  });
});

describe('hugetlb-contig.json', () => {
  const r = run('hugetlb-contig.json');

  it('maps 32M (CONT_PMD) pages as 2M blocks and 64K (CONT_PTE) pages as 4K pages', () => {
    const blocks = r.step(0).filter((a) => a.faults.length > 0);
    expect(blocks).toHaveLength(16);
    expect(blocks.every((a) => a.leaf!.level === 2 && a.leaf!.size === M2)).toBe(true);
    const pages = r.step(1).filter((a) => a.faults.length > 0);
    expect(pages).toHaveLength(16);
    expect(pages.every((a) => a.leaf!.level === 3 && a.leaf!.size === K4)).toBe(true);
    noDiagnostics(r);
  });
});

describe('anon-1g-touch.json', () => {
  // 278528 accesses: keep one in 512 plus the first and last few of each touch.
  const r = run('anon-1g-touch.json', undefined, (_s, n) => n % 512 === 0 || n < 4 || n === 16384);

  it('maps never-written pages to the shared zero page, read-only', () => {
    const [a, b] = r.step(0);
    const zero = paOf(a!.leaf!.desc);
    expect(a!.leaf!.desc).toBe(desc(zero, { level: 3, attr: WB_FWB, x: true }));
    expect(paOf(b!.leaf!.desc)).toBe(zero);
  });

  it('breaks CoW on the read part, one translation fault per page elsewhere', () => {
    const first = r.step(1)[0]!;
    expect(first.faults.map((f) => f.fsc)).toEqual(['permission', 'translation']);
    expect(first.tlbi).toBe(1);
    expect(first.leaf!.desc).toMatch(/7db$/);
    expect(r.summary).toMatchObject({
      accesses: 16384 + 262144,
      faults: 16384 + 262144 + 16384,
      maps: 16384 + 262144,
      hostPagesZeroed: 262144,
      tlbi: 16384,
      tablePages: 2 + 1 + 512,
      errors: {},
    });
    noDiagnostics(r);
  });
});

describe('uffd-postcopy.json', () => {
  const r = run('uffd-postcopy.json');

  it('raises one userfaultfd event per missing page, on the first touch only', () => {
    expect(r.one(0).uffd).toBe(1);
    expect(r.one(1).uffd).toBe(0);
    const touch = r.step(2);
    expect(touch).toHaveLength(32);
    expect(touch.filter((a) => a.uffd === 1)).toHaveLength(16);
    expect(r.one(4).uffd).toBe(1);
    expect(r.summary.uffdEvents).toBe(18);
    noDiagnostics(r);
  });
});

describe('page-aging.json', () => {
  const r = run('page-aging.json');

  it('on Grace (FEAT_HAFDBS, VTCR_EL2.HA) the walk sets AF on each aged leaf: no fault, nothing remapped', () => {
    const before = r.step(0);
    for (const s of [2, 4]) {
      expect(r.one(s).faults).toEqual([]);
      expect(r.one(s).leaf!.desc).toBe(before.find((a) => a.leaf!.ipa === r.one(s).leaf!.ipa)!.leaf!.desc);
    }
    expect(r.one(3).faults).toEqual([]);
    expect(r.one(5).faults).toEqual([]); // outside the aged range
    expect(r.summary).toMatchObject({ mkyoungs: 0, hwAfUpdates: 2, maps: 4 });
    noDiagnostics(r);
  });

  it('without HAFDBS each aged leaf takes one access-flag fault, handled without user_mem_abort', () => {
    const json = JSON.parse(readFileSync(join(examplesDir, 'page-aging.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const scenario = parseScenario({ ...json, cpu: { profile: 'grace', hafdbs: false } });
    const lines: Record<number, Access> = {};
    const runner = new ScenarioRunner(scenario);
    const summary = runner.run({
      access: (step, a) => (lines[step] = accessJson(step, a) as unknown as Access),
    });
    for (const s of [2, 4]) {
      expect(lines[s]!.faults).toEqual([
        { fsc: 'access-flag', level: 2, s1ptw: false, handler: 'handle_access_fault', ret: 1 },
      ]);
    }
    expect(lines[3]!.faults).toEqual([]);
    expect(summary).toMatchObject({ mkyoungs: 2, hwAfUpdates: 0, maps: 4 });
  });
});

describe('abort-routing.json', () => {
  const r = run('abort-routing.json');

  it('refuses a memslot beyond the IPA space with EFAULT', () => {
    expect(r.refused).toEqual([{ slot: 2, errno: 'EFAULT' }]);
  });

  it('takes three faults for a CAS to never-touched memory (read first, then CoW)', () => {
    expect(r.one(0).faults.map((f) => f.fsc)).toEqual(['translation', 'permission', 'translation']);
    expect(r.one(0).leaf!.desc).toBe(
      desc(paOf(r.one(0).leaf!.desc), { level: 3, attr: WB_FWB, w: true, x: true }),
    );
  });

  it('maps a read-only slot read-only and sends writes to it to the VMM', () => {
    expect(r.one(1).leaf!.desc).toBe(desc(paOf(r.one(1).leaf!.desc), { level: 3, attr: WB_FWB, x: true }));
    expect(r.one(2).outcome).toBe('mmio');
    expect(r.one(2).faults).toMatchObject([{ fsc: 'permission', level: 3, handler: 'io_mem_abort' }]);
    for (const s of [3, 4]) expect(r.one(s)).toMatchObject({ outcome: 'error', errno: 'ENOSYS' });
  });

  it('injects an external abort beyond the VM IPA space and a size fault beyond the host limit', () => {
    expect(r.one(5).outcome).toBe('dabt');
    expect(r.one(6).outcome).toBe('iabt');
    expect(r.one(7).outcome).toBe('dabt');
    expect(r.one(5).faults[0]!.handler).not.toBe(r.one(7).faults[0]!.handler);
  });

  it('handles no-syndrome accesses to RAM like any fault', () => {
    expect(r.one(8)).toMatchObject({ outcome: 'done', leaf: { level: 3 } });
    expect(r.one(9)).toMatchObject({ outcome: 'done', leaf: { level: 3 } });
    expect(r.summary).toMatchObject({ injected: 3, mmioExits: 1, errors: { ENOSYS: 2 } });
    noDiagnostics(r);
  });
});

describe('kernel-versions.json', () => {
  const hbm = desc(0x400000000000n, { level: 1, attr: WB_FWB, w: true, x: true });

  it('6.16 maps HBM Device-nGnRE, whatever the VMA says', () => {
    const r = run('kernel-versions.json', '6.16');
    expect(r.one(2).leaf!.desc).toBe(desc(0x400000000000n, { level: 1, attr: DEV, w: true }));
    expect(r.one(3).outcome).toBe('iabt');
    expect(r.one(4).leaf!.desc).toBe(desc(0x400040000000n, { level: 1, attr: DEV }));
    // The host maps that memory cacheable: the audit names the rule 6.16 breaks.
    expect(r.summary.diagnostics.length).toBeGreaterThan(0);
    expect(r.summary.diagnostics.every((d) => d.startsWith('host-consistency: memtype'))).toBe(true);
  });

  for (const k of ['seed', 'v7'] as const) {
    it(`${k} maps HBM cacheable but refuses the COW PFNMAP at fault time`, () => {
      const r = run('kernel-versions.json', k);
      expect(r.one(2).leaf!.desc).toBe(hbm);
      expect(r.one(3)).toMatchObject({ outcome: 'done', faults: [] });
      expect(r.one(4)).toMatchObject({ outcome: 'error', errno: 'EINVAL' });
      expect(r.summary.diagnostics.some((d) => d.includes('mmap_lock'))).toBe(true);
    });
  }

  it('6.17 maps both cacheable and executable', () => {
    const r = run('kernel-versions.json');
    expect(r.one(2).leaf!.desc).toBe(hbm);
    expect(r.one(3).outcome).toBe('done');
    expect(r.one(4).leaf!.desc).toBe(desc(0x400040000000n, { level: 1, attr: WB_FWB, x: true }));
    expect(r.refused).toEqual([]);
    noDiagnostics(r);
  });
});

describe('kernel-versions-no-fwb.json', () => {
  it('6.16 creates both PFNMAP slots and maps HBM Device; RAM is cleaned', () => {
    const r = run('kernel-versions-no-fwb.json', '6.16');
    expect(r.refused).toEqual([]);
    expect(r.one(0).dcacheBytes).toBe(2 * 1024 * 1024);
    expect(r.one(2).leaf!.desc).toBe(desc(0x400000000000n, { level: 1, attr: DEV, w: true }));
  });

  it('the seed refuses the PFNMAP slots but faults RAM exactly as 6.16 does', () => {
    const r = run('kernel-versions-no-fwb.json', 'seed');
    expect(r.refused).toEqual([
      { slot: 1, errno: 'EINVAL' },
      { slot: 2, errno: 'EINVAL' },
    ]);
    const old = run('kernel-versions-no-fwb.json', '6.16');
    expect(r.one(0)).toEqual(old.one(0));
    expect(r.one(0).dcacheBytes).toBe(2 * 1024 * 1024);
    expect(r.one(2).outcome).toBe('mmio');
  });

  it('v7 refuses the PFNMAP slots and even ordinary RAM faults (EINVAL)', () => {
    const r = run('kernel-versions-no-fwb.json', 'v7');
    expect(r.refused).toEqual([
      { slot: 1, errno: 'EINVAL' },
      { slot: 2, errno: 'EINVAL' },
    ]);
    expect(r.one(0)).toMatchObject({ outcome: 'error', errno: 'EINVAL', leaf: null, dcacheBytes: 0 });
    expect(r.one(2).outcome).toBe('mmio');
  });

  it('6.17 refuses the PFNMAP slots but maps RAM', () => {
    const r = run('kernel-versions-no-fwb.json');
    expect(r.refused.map((x) => x.slot)).toEqual([1, 2]);
    expect(r.one(0).leaf!.desc).toBe(desc(0x80200000n, { level: 2, attr: WB, w: true, x: true }));
    expect(r.one(2).outcome).toBe('mmio');
    noDiagnostics(r);
  });
});

/**
 * Runs the CLI's main() in this process (as `s2emu ARGS` would, without the start-up cost of a
 * process per run), capturing what it writes to standard output.
 */
function cliInProcess(args: string[]): { code: number; stdout: string } {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  });
  try {
    const code = main(args);
    return { code, stdout: chunks.join('') };
  } finally {
    spy.mockRestore();
  }
}

/** Checks --json output: one JSON object per line, a summary last and only last. */
function checkJsonLines(stdout: string): void {
  const objs = stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(objs.at(-1)).toHaveProperty('summary');
  expect(objs.slice(0, -1).every((o) => !('summary' in o))).toBe(true);
}

function description(file: string): string {
  const { description } = JSON.parse(readFileSync(join(examplesDir, file), 'utf8')) as {
    description?: string;
  };
  expect(typeof description).toBe('string');
  expect(description!.length).toBeGreaterThan(80);
  return description!;
}

describe('guest-page-tables.json', () => {
  // Stage-1 descriptors (VMSAv8-64): a table is its address | 0b11; a page is OA | AF (0x400) |
  // SH 0b11 (0x300) | AttrIndx << 2 | 0b11. Tables: L0 at 0x43000000, L1 +0x1000, L2 +0x2000,
  // and the L3 table of VA 0x40_0000_0000 at 0x43003000 (docs/scenario.md, "Guest stage 1").
  const r = run('guest-page-tables.json');
  const line = (n: number) => r.one(n) as unknown as Record<string, unknown>;

  it('walks tables the VMM wrote: four S1PTW translation faults, and the AF update needs no permission fault', () => {
    // The AT walks first: one stage-2 translation fault per table page, reads (S1PTW).
    expect(r.one(0).faults.map((f) => [f.fsc, f.s1ptw])).toEqual([
      ['translation', true],
      ['translation', true],
      ['translation', true],
      ['translation', true],
    ]);
    // The load's AF update writes a table page stage 2 already maps writable: only the data fault.
    expect(r.one(1).faults.map((f) => [f.fsc, f.s1ptw])).toEqual([['translation', false]]);
    expect(line(1)['s1']).toEqual({
      va: '0x4000000000',
      desc: '0x0000000040100703',
      level: 3,
      tableIpa: '0x43003000',
    });
    expect(line(1)['value']).toBe('0x0123456789abcdef');
    expect(line(1)['memType']).toBe('Normal-WB');
  });

  it('AT reports PAR_EL1 and leaves AF clear (cpu.atUpdatesAf false)', () => {
    // F = 0: PA 0x40100000 | SH 0b11 << 7 | RES1 bit 11; ATTR 0xff (MAIR.Attr0).
    expect(line(0)['par']).toBe('0xff00000040100980');
    expect(line(0)['s1']).toMatchObject({ desc: '0x0000000040100303' });
    // F = 1 after the guest cleared the PTE: level-3 translation fault, FST 0b000111.
    expect(line(11)['par']).toBe('0x000000000000080f');
  });

  it('reads its own PTE through the alias and unmaps a page by storing zero there', () => {
    expect(line(2)).toMatchObject({ ipa: '0x43003000', value: '0x0000000040100703' });
    expect(line(9)).toMatchObject({ ipa: '0x43003008', outcome: 'done' });
    expect(line(10)).toMatchObject({
      outcome: 'dabt',
      stage1Fault: true,
      faults: [],
      s1: { fault: 'translation', level: 3 },
    });
  });

  it('round-trips values through write, cas and dc-zva', () => {
    expect([4, 5, 7].map((n) => line(n)['value'])).toEqual([
      '0x00000000feedface',
      '0x0000000000000001',
      '0x0000000000000000',
    ]);
  });

  it('a Normal-NC stage-1 alias of RAM is Normal-WB under FWB', () => {
    expect(line(8)).toMatchObject({ memType: 'Normal-WB', value: '0x0123456789abcdef' });
  });

  it('the init value dies with the host page', () => {
    expect(line(13)).toMatchObject({ outcome: 'done', value: '0x0000000000000000' });
    noDiagnostics(r);
  });
});

describe('fault-races.json', () => {
  // Grace (FWB, DIC), THP RAM: every write maps a 2M Normal-WB block, RWX (0x7d9 | PA).
  const r = run('fault-races.json');
  const faults = (n: number) => r.one(n).faults.map((f) => `${f.fsc} L${f.level} ${f.ret}`);

  it('invalidate: mmu_invalidate_retry() sends the first fault back (ret 0), the replay maps', () => {
    expect(faults(0)).toEqual(['translation L1 0', 'translation L1 0']);
    expect(r.one(0).leaf).toEqual({
      ipa: G1,
      level: 2,
      size: M2,
      desc: desc(paOf(r.one(0).leaf!.desc), { level: 2, attr: WB_FWB, w: true, x: true }),
    });
  });

  it('zap-host-pte: get_user_mapping_size() finds no leaf (-EAGAIN), the replay faults a new folio in', () => {
    expect(faults(1)).toEqual(['translation L2 0', 'translation L2 0']);
    expect(r.one(1).leaf!.size).toBe(M2);
    // 2M folios, in 4K pages: one each for steps 0 and 2, two for step 1.
    expect(r.summary.hostPagesZeroed).toBe(4 * 512);
  });

  it('other-vcpu: the map finds the same block present (-EAGAIN), the retried access completes', () => {
    expect(faults(2)).toEqual(['translation L2 0']);
    expect(r.one(3).faults).toEqual([]);
    expect(r.one(3).leaf).toEqual(r.one(2).leaf);
    // Only this vCPU's maps count: the replays of steps 0 and 1, and step 2's own.
    expect(r.summary.maps).toBe(3);
    noDiagnostics(r);
  });
});

describe('vma-replaced.json', () => {
  const r = run('vma-replaced.json');

  it('a fault in the munmapped range finds no VMA: EFAULT; the rest of the slot still faults in', () => {
    expect(r.one(3)).toMatchObject({ outcome: 'error', errno: 'EFAULT', leaf: null });
    expect(r.one(3).faults.map((f) => f.ret)).toEqual([-14]);
    expect(r.one(4).outcome).toBe('done');
  });

  it('the cacheable PFNMAP mapped over RAM is a 2M Normal-WB block of device memory', () => {
    expect(r.one(1).leaf!.level).toBe(3);
    expect(r.one(6).leaf).toEqual({
      ipa: '0x40200000',
      level: 2,
      size: M2,
      desc: desc(0x40_0000_0000n, { level: 2, attr: WB_FWB, w: true, x: true }),
    });
  });

  it('the refilled hole maps the zero page on a read', () => {
    expect(r.one(8).leaf!.desc).toBe(desc(paOf(r.one(8).leaf!.desc), { level: 3, attr: WB_FWB, x: true }));
    expect(r.summary.errors).toEqual({ EFAULT: 1 });
    noDiagnostics(r);
  });
});

describe('postcopy-page-tables.json', () => {
  const r = run('postcopy-page-tables.json');
  const line = (n: number) => r.one(n) as unknown as Record<string, unknown>;

  it('each missing table page is an S1PTW fault whose host fault is a read, answered from the registration', () => {
    expect(r.one(2).faults.map((f) => [f.s1ptw, f.ret])).toEqual([
      [true, 0],
      [true, 0],
      [true, 0],
      [true, 0],
      [false, 0],
    ]);
    // The L0..L3 table pages at offsets 0x300_0000.. of the VMA, then the data page.
    expect(line(2)['uffdEvents']).toEqual([
      { vma: 'ram', offset: '0x3000000', write: false },
      { vma: 'ram', offset: '0x3001000', write: false },
      { vma: 'ram', offset: '0x3002000', write: false },
      { vma: 'ram', offset: '0x3003000', write: false },
      { vma: 'ram', offset: '0x100000', write: false },
    ]);
    expect(line(2)['value']).toBe('0x0123456789abcdef');
    expect(line(2)['s1']).toMatchObject({ level: 3, tableIpa: '0x43003000' });
  });

  it('once restored, the walk takes no fault and raises no event', () => {
    expect(r.one(3).faults).toEqual([]);
    expect(line(3)['uffdEvents']).toEqual([]);
    expect(r.summary.uffdEvents).toBe(5);
    noDiagnostics(r);
  });
});

describe('every example runs through the CLI', () => {
  it('covers every example with its own assertions above', () => {
    expect(exampleFiles).toEqual([...tested].sort());
  });

  /** The exit status a run's summary calls for: 1 when KVM_RUN failed or a diagnostic fired. */
  const wantStatus = (stdout: string): number => {
    const { summary } = JSON.parse(stdout.trimEnd().split('\n').at(-1)!) as {
      summary: { errors: Record<string, number>; diagnostics: string[] };
    };
    return Object.keys(summary.errors).length > 0 || summary.diagnostics.length > 0 ? 1 : 0;
  };

  for (const file of exampleFiles) {
    it(`${file}: run --json exits 0 (1 if KVM_RUN failed or a diagnostic fired) with JSON lines and a summary last`, () => {
      const { code, stdout } = cliInProcess(['run', join(examplesDir, file), '--json']);
      checkJsonLines(stdout);
      expect(code).toBe(wantStatus(stdout));
      // --allow-errors keeps 0 for scenarios that are meant to fail.
      expect(cliInProcess(['run', join(examplesDir, file), '--json', '--allow-errors']).code).toBe(0);
    });

    it(`${file}: the report shows its description, with the same exit status`, () => {
      const json = cliInProcess(['run', join(examplesDir, file), '--json']);
      const { code, stdout } = cliInProcess(['run', join(examplesDir, file), '--no-color']);
      expect(code).toBe(wantStatus(json.stdout));
      expect(stdout.replace(/\s+/g, ' ')).toContain(description(file).replace(/\s+/g, ' '));
    });
  }

  it('the main job (npm start) exits 0: grace-gpu-passthrough.json runs clean', () => {
    expect(cliInProcess(['run', join(examplesDir, 'grace-gpu-passthrough.json'), '--no-color']).code).toBe(0);
  });

  it('the s2emu executable itself runs an example both ways', () => {
    const file = join('examples', 'vfio-bar.json');
    const exe = (args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
        cwd: root,
        encoding: 'utf8',
      });
    const json = exe(['run', file, '--json']);
    checkJsonLines(json.stdout);
    expect(json.status).toBe(wantStatus(json.stdout));
    const text = exe(['run', file, '--no-color']);
    expect(text.status).toBe(json.status);
    expect(text.stdout).toContain(description('vfio-bar.json'));
  });
});
