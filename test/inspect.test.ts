/**
 * What the core's objects look like in a console and a debugger (src/views/debug.ts through
 * src/pgtable/debughooks.ts): util.inspect, the debug.description hook VS Code reads, toJSON,
 * and the helpers reachable at any breakpoint (pgt.ptdump(), pgt.explain(ipa),
 * pgt.leafView(ipa), vcpu.explain()). Never a typed-array dump.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ACC_WRITE,
  AccessResult,
  CPU_PRESETS,
  Kvm,
  LeafResult,
  VM_MAYWRITE,
  VM_READ,
  VM_WRITE,
  Vcpu,
} from '../src/index.js';
import { HwWalkResult, HwWalker } from '../src/pgtable/hwwalk.js';
import { parseScenarioText } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import { DescriptorView } from '../src/views/descriptor.js';
import { explainIpa } from '../src/views/explain.js';
import { ptdump } from '../src/views/ptdump.js';
import { WalkView } from '../src/views/walk.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEBUG_DESCRIPTION = Symbol.for('debug.description');

/** A typed array or a long list of numbers, as util.inspect prints them. */
const ARRAY_DUMP = /Uint32Array|Int32Array|Float64Array|Uint8Array|\[\s*\d+,\s*\d+,\s*\d+/;

/** A VM with THP RAM where one write has installed a 2M block at 0x40000000. */
function vm(): { kvm: Kvm; vcpu: Vcpu; r: AccessResult } {
  const kvm = new Kvm({
    cpu: CPU_PRESETS.grace.features,
    granule: 4096,
    physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' }],
  });
  const vma = kvm.mm.mmap({
    name: 'ram',
    start: 0x7f00_0000_0000,
    size: 0x4000_0000,
    vmFlags: VM_READ | VM_WRITE | VM_MAYWRITE,
    backing: 'thp',
  });
  expect(typeof vma).not.toBe('string');
  expect(
    kvm.createMemslot({
      id: 0,
      baseGfn: 0x40000,
      npages: 0x40000,
      userspaceAddr: 0x7f00_0000_0000,
      flags: 0,
    }),
  ).toBe(0);
  const vcpu = new Vcpu(kvm);
  const r = new AccessResult();
  vcpu.access(ACC_WRITE, 0x4000_1000, r);
  return { kvm, vcpu, r };
}

function shows(obj: object): string {
  const text = inspect(obj);
  expect(text).not.toMatch(ARRAY_DUMP);
  expect(text.length).toBeLessThan(800);
  // VS Code's variables pane reads the same text.
  expect((obj as Record<symbol, () => string>)[DEBUG_DESCRIPTION]!()).toBe(text);
  return text;
}

describe('inspect: short decoded summaries', () => {
  it('Stage2PageTable: granule, IPA size, start level, table pages, leaves', () => {
    const { kvm } = vm();
    const blockOa = 0x8020_0000; // the THP folio the fault took (first 2M of RAM is the zero page's)
    const text = shows(kvm.pgt);
    expect(text).toMatch(/^Stage2PageTable \{ 4K granule, 40-bit IPA, start level 1 \(2 PGD pages\), FWB, /);
    expect(text).toContain(`${kvm.pgt.countTables()} table pages, 1 leaves (1 blocks, 0 pages)`);
    expect(text).toContain(`ipa 0x40000000: L2 block 0x${blockOa.toString(16)} RWX Normal-WB AF`);
    expect(JSON.stringify(kvm.pgt)).toBe(JSON.stringify({ summary: text }));
  });

  it('Kvm: kernel, shape, memslots, leaves, faults', () => {
    const { kvm } = vm();
    const text = shows(kvm);
    expect(text).toMatch(/^Kvm \{ kernel 6\.17, 4K granule, 40-bit IPA, start level 1/);
    expect(text).toContain('1 memslots');
    expect(JSON.parse(JSON.stringify(kvm))).toEqual({ summary: text });
  });

  it('Vcpu: the last abort decoded', () => {
    const { vcpu } = vm();
    const text = shows(vcpu);
    expect(text).toBe(
      `Vcpu { stage 1 off, last abort: ESR 0x${(vcpu.esr >>> 0).toString(16)} data abort (write), translation fault at L1, ` +
        'ipa 0x40001000 (far 0x40001000), handled by user_mem_abort -> 0 }',
    );
  });

  it('AccessResult: the access, outcome, faults and leaf in hex', () => {
    const { r } = vm();
    const text = shows(r);
    expect(text).toMatch(
      /^AccessResult \{ write ipa 0x40001000: done, 1 fault\(s\) \[translation L1 user_mem_abort 0 \(ESR 0x9[0-9a-f]+\)\], /,
    );
    expect(text).toContain(
      `leaf L2 0x${r.leafHi.toString(16).padStart(8, '0')}${r.leafLo.toString(16).padStart(8, '0')} at ipa 0x40000000 (0x200000 bytes)`,
    );
  });

  it('LeafResult: level, descriptor, kind', () => {
    const { kvm } = vm();
    const l = new LeafResult();
    kvm.pgt.getLeaf(0x4000_1000, l);
    expect(shows(l)).toBe(
      `LeafResult { L2 0x${l.hi.toString(16).padStart(8, '0')}${l.lo.toString(16).padStart(8, '0')} block }`,
    );
    expect(shows(new LeafResult())).toBe('LeafResult { L0 0x0000000000000000 empty }');
  });

  it('the views print their text', () => {
    const { kvm } = vm();
    const w = new HwWalkResult();
    new HwWalker(kvm.pgt).walk(0x4000_1000, 0, w);
    expect(shows(new WalkView(w, kvm.pgt))).toMatch(/^read ipa 0x40001000 -> pa 0x80201000 \(L2 block/);
    expect(shows(new DescriptorView(w.lo, w.hi, w.level, kvm.pgt))).toMatch(
      /^L2 block 0x80200000 RWX Normal-WB AF$/,
    );
    const e = explainIpa(kvm.pgt, 0x4000_1000);
    expect(inspect(e)).toBe(e.text);
  });
});

describe('helpers at a breakpoint', () => {
  it('pgt.ptdump(), pgt.explain(ipa), pgt.leafView(ipa), vcpu.explain() return strings', () => {
    const { kvm, vcpu } = vm();
    expect(kvm.pgt.ptdump()).toBe(ptdump(kvm.pgt));
    expect(kvm.pgt.explain(0x4000_1234)).toBe(explainIpa(kvm.pgt, 0x4000_1234).text);
    expect(String(kvm.pgt.leafView(0x4000_1234))).toBe(
      'ipa 0x40000000: L2 block 0x80200000 RWX Normal-WB AF',
    );
    expect(kvm.pgt.leafView(0x5000_0000)).toBeNull();
    const ex = vcpu.explain().split('\n');
    expect(ex[0]).toBe(inspect(vcpu));
    expect(ex[1]).toMatch(/^ipa 0x40001000 in a 40-bit IPA space/);
    expect(ex).toContain(
      'write: write ipa 0x40001000 -> pa 0x80201000 (L2 block 0x80200000 RWX Normal-WB AF)',
    );
  });
});

describe('vcpu.explain() with a guest stage 1', () => {
  it("walks the guest's stage 1 of FAR, then stage 2 of the fault IPA, with the combined type", () => {
    const text = readFileSync(join(root, 'examples/guest-page-tables.json'), 'utf8');
    const runner = new ScenarioRunner(parseScenarioText(text));
    runner.run();
    const lines = runner.vcpu.explain().split('\n');
    expect(lines[0]).toMatch(/^Vcpu \{ guest stage 1 on, last abort: ESR 0x[0-9a-f]+ /);
    expect(lines[1]).toBe(`stage 1 (guest): va 0x${runner.vcpu.far.toString(16)}`);
    expect(lines.some((l) => l.startsWith('combined memory type: '))).toBe(true);
    expect(lines).toContain(
      `ipa 0x${runner.vcpu.faultIpa.toString(16)} in a 40-bit IPA space, 4K granule, start level 1 (2 concatenated PGD pages), FWB`,
    );
  });
});

describe('the core stays free of the views', () => {
  it('no file of src/pgtable or src/mmu imports from src/views or node:util', () => {
    for (const dir of ['src/pgtable', 'src/mmu', 'src/mmu/host']) {
      for (const f of readdirSync(join(root, dir)).filter((n) => n.endsWith('.ts'))) {
        const text = readFileSync(join(root, dir, f), 'utf8');
        expect(text, `${dir}/${f}`).not.toMatch(/from '(\.\.\/)+views\//);
        expect(text, `${dir}/${f}`).not.toMatch(/from 'node:/);
      }
    }
  });

  it('without the views loaded, inspect still prints a short summary, and the helpers say how to load them', () => {
    const code = [
      "import { inspect } from 'node:util';",
      "import { Stage2PageTable } from './src/pgtable/stage2.ts';",
      'const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });',
      'console.log(inspect(pgt));',
      'console.log(pgt.ptdump());',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      "Stage2PageTable { 4K granule, 40-bit IPA, start level 1 }\n(s2emu's views are not loaded: import 's2emu' or its dist/views/index.js once)\n",
    );
  });
});
