/**
 * The API boundary (issue 11, docs/decisions.md "API boundary (issue 11)"): a public,
 * argument-taking entry point given an argument no kernel caller could pass throws a
 * RangeError (a TypeError for a value of the wrong type) naming the argument and the rule,
 * before anything changes; what the modelled kernel decides stays a return value.
 */

import { describe, expect, it } from 'vitest';
import { AccessResult, Vcpu } from '../src/mmu/vcpu.js';
import { ACC_AT, ACC_WRITE } from '../src/mmu/access.js';
import { CPU_PRESETS } from '../src/mmu/cpu.js';
import { Kvm } from '../src/mmu/vm.js';
import type { KvmOptions } from '../src/mmu/vm.js';
import { VM_MAYWRITE, VM_READ, VM_WRITE } from '../src/mmu/host/vma.js';
import { KVM_PGTABLE_PROT_RWX } from '../src/pgtable/descriptor.js';
import { ERANGE } from '../src/pgtable/errno.js';
import { MemCache } from '../src/pgtable/pool.js';
import { LeafResult, Stage2PageTable } from '../src/pgtable/stage2.js';

type ErrorClass = typeof RangeError | typeof TypeError;

/** Expects `f` to throw an `E` whose message names `fn` and `arg`. */
function rejects(f: () => unknown, E: ErrorClass, fn: string, arg: string): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, `${fn} ${arg}`).toBeInstanceOf(E);
  const message = (err as Error).message;
  expect(message.startsWith(`${fn}: ${arg} must be `), message).toBe(true);
  expect(message).toMatch(/, got /);
}

const any = <T>(v: unknown): T => v as T;

function table(): { pgt: Stage2PageTable; mc: MemCache } {
  const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false });
  const mc = MemCache.unlimited(pgt.pool);
  return { pgt, mc };
}

const kvmOptions = (): KvmOptions => ({
  cpu: CPU_PRESETS.grace.features,
  granule: 4096,
  physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' }],
});

function vm(): { kvm: Kvm; vcpu: Vcpu } {
  const kvm = new Kvm(kvmOptions());
  const vma = kvm.mm.mmap({
    name: 'ram',
    start: 0x7f00_0000_0000,
    size: 0x4000_0000,
    vmFlags: VM_READ | VM_WRITE | VM_MAYWRITE,
    backing: 'thp',
  });
  if (typeof vma === 'string') throw new Error(vma);
  expect(
    kvm.createMemslot({
      id: 0,
      baseGfn: 0x40000,
      npages: 0x40000,
      userspaceAddr: 0x7f00_0000_0000,
      flags: 0,
    }),
  ).toBe(0);
  return { kvm, vcpu: new Vcpu(kvm) };
}

describe('Vcpu.access', () => {
  const { vcpu } = vm();
  const r = new AccessResult();

  it('refuses an address that is negative, fractional, NaN, not exact (2^53 or more) or not a number', () => {
    rejects(() => vcpu.access(ACC_WRITE, -4096, r), RangeError, 'vcpu.access', 'addr');
    expect(() => vcpu.access(ACC_WRITE, -4096, r)).toThrow(
      'vcpu.access: addr must be a whole number from 0 to 2^53 - 1, got -4096',
    );
    for (const bad of [0.5, NaN, Infinity, 2 ** 53, 2 ** 60])
      rejects(() => vcpu.access(ACC_WRITE, bad, r), RangeError, 'vcpu.access', 'addr');
    for (const bad of ['0x1000', 4096n, null, undefined, {}])
      rejects(() => vcpu.access(ACC_WRITE, any(bad), r), TypeError, 'vcpu.access', 'addr');
  });

  it('refuses a kind that is not an ACC_* value', () => {
    for (const bad of [-1, ACC_AT + 1, 1.5, NaN])
      rejects(() => vcpu.access(bad, 0x4000_0000, r), RangeError, 'vcpu.access', 'kind');
    rejects(() => vcpu.access(any('write'), 0x4000_0000, r), TypeError, 'vcpu.access', 'kind');
  });

  it('refuses a result that is not an AccessResult', () => {
    for (const bad of [undefined, null, {}, { stats: {} }])
      rejects(() => vcpu.access(ACC_WRITE, 0x4000_0000, any(bad)), TypeError, 'vcpu.access', 'out');
  });

  it('still runs good accesses, and an address outside every memslot is a guest outcome, not an error', () => {
    expect(vcpu.access(ACC_WRITE, 0x4000_1000, r)).toBe(r.outcome);
    expect(r.outcomeName).toBe('done');
    expect(() => vcpu.access(ACC_WRITE, 2 ** 52 - 4096, r)).not.toThrow();
    expect(() => vcpu.access(ACC_WRITE, 2 ** 53 - 1, r)).not.toThrow(); // a fault, not an argument error
  });
});

describe('Stage2PageTable', () => {
  it('map: addr, size, phys, prot, mc and flags', () => {
    const { pgt, mc } = table();
    const before = pgt.pool.inUse;
    rejects(() => pgt.map(NaN, 0x1000, 0x8000_0000, KVM_PGTABLE_PROT_RWX, mc), RangeError, 'pgt.map', 'addr');
    expect(pgt.pool.inUse, 'nothing allocated').toBe(before);
    rejects(() => pgt.map(-0x1000, 0x1000, 0, 7, mc), RangeError, 'pgt.map', 'addr');
    rejects(() => pgt.map(2 ** 52, 0x1000, 0, 7, mc), RangeError, 'pgt.map', 'addr');
    rejects(() => pgt.map(any('0x1000'), 0x1000, 0, 7, mc), TypeError, 'pgt.map', 'addr');
    for (const bad of [0, -1, 0.5, 2 ** 52 + 1])
      rejects(() => pgt.map(0x1000, bad, 0x8000_0000, 7, mc), RangeError, 'pgt.map', 'size');
    for (const bad of [-0x1000, 4096.5, NaN, 2 ** 53])
      rejects(() => pgt.map(0x1000, 0x1000, bad, 7, mc), RangeError, 'pgt.map', 'phys');
    for (const bad of [-1, 0x200, 1.5, NaN])
      rejects(() => pgt.map(0x1000, 0x1000, 0x8000_0000, bad, mc), RangeError, 'pgt.map', 'prot');
    rejects(() => pgt.map(0x1000, 0x1000, 0x8000_0000, any('RWX'), mc), TypeError, 'pgt.map', 'prot');
    rejects(() => pgt.map(0x1000, 0x1000, 0x8000_0000, 7, any({})), TypeError, 'pgt.map', 'mc');
    rejects(() => pgt.map(0x1000, 0x1000, 0x8000_0000, 7, mc, -1), RangeError, 'pgt.map', 'flags');
    expect(pgt.pool.inUse).toBe(before);
  });

  it('the kernel’s own answers stay return values: −ERANGE past the IPA space', () => {
    const { pgt, mc } = table();
    expect(pgt.map(2 ** 40, 0x1000, 0x8000_0000, KVM_PGTABLE_PROT_RWX, mc)).toBe(ERANGE);
    expect(pgt.map(0x4000_0000, 0x1000, 0x8000_0000, KVM_PGTABLE_PROT_RWX, mc)).toBe(0);
  });

  it('unmap, wrprotect, flush, testClearYoung (mkold) and split: addr and size', () => {
    const { pgt, mc } = table();
    const ranged: [string, (a: number, s: number) => unknown][] = [
      ['pgt.unmap', (a, s) => pgt.unmap(a, s)],
      ['pgt.wrprotect', (a, s) => pgt.wrprotect(a, s)],
      ['pgt.flush', (a, s) => pgt.flush(a, s)],
      ['pgt.testClearYoung', (a, s) => pgt.testClearYoung(a, s, true)],
      ['pgt.split', (a, s) => pgt.split(a, s, mc)],
    ];
    for (const [fn, f] of ranged) {
      rejects(() => f(-1, 0x1000), RangeError, fn, 'addr');
      rejects(() => f(NaN, 0x1000), RangeError, fn, 'addr');
      rejects(() => f(any('1'), 0x1000), TypeError, fn, 'addr');
      rejects(() => f(0x1000, 0), RangeError, fn, 'size');
      rejects(() => f(0x1000, Infinity), RangeError, fn, 'size');
      expect(() => f(0x1000, 0x1000)).not.toThrow();
    }
    rejects(() => pgt.testClearYoung(0, 0x1000, any(1)), TypeError, 'pgt.testClearYoung', 'mkold');
    rejects(() => pgt.split(0, 0x1000, any(null)), TypeError, 'pgt.split', 'mc');
  });

  it('relaxPerms, mkyoung and getLeaf: addr, prot, flags and out', () => {
    const { pgt } = table();
    rejects(() => pgt.relaxPerms(-1, 7), RangeError, 'pgt.relaxPerms', 'addr');
    rejects(() => pgt.relaxPerms(0, 0x400), RangeError, 'pgt.relaxPerms', 'prot');
    rejects(() => pgt.relaxPerms(0, 7, 0.5), RangeError, 'pgt.relaxPerms', 'flags');
    rejects(() => pgt.mkyoung(2 ** 53), RangeError, 'pgt.mkyoung', 'addr');
    rejects(() => pgt.mkyoung(0, any('x')), TypeError, 'pgt.mkyoung', 'flags');
    rejects(() => pgt.getLeaf(-0.5), RangeError, 'pgt.getLeaf', 'addr');
    rejects(() => pgt.getLeaf(0, any({})), TypeError, 'pgt.getLeaf', 'out');
    expect(pgt.getLeaf(0x1000, new LeafResult())).toBe(0);
  });
});

describe('Kvm', () => {
  it('the constructor names the bad option', () => {
    const o = kvmOptions();
    rejects(() => new Kvm(any(undefined)), TypeError, 'new Kvm', 'opts');
    rejects(() => new Kvm({ ...o, cpu: any(null) }), TypeError, 'new Kvm', 'opts.cpu');
    rejects(() => new Kvm({ ...o, cpu: { ...o.cpu, fwb: any(1) } }), TypeError, 'new Kvm', 'opts.cpu.fwb');
    rejects(() => new Kvm({ ...o, granule: any(8192) }), RangeError, 'new Kvm', 'opts.granule');
    rejects(() => new Kvm({ ...o, granule: any('4K') }), TypeError, 'new Kvm', 'opts.granule');
    rejects(() => new Kvm({ ...o, paBits: 60 }), RangeError, 'new Kvm', 'opts.paBits');
    rejects(() => new Kvm({ ...o, ipaBits: 40.5 }), RangeError, 'new Kvm', 'opts.ipaBits');
    rejects(() => new Kvm({ ...o, physical: any('ram') }), TypeError, 'new Kvm', 'opts.physical');
    rejects(
      () => new Kvm({ ...o, physical: [{ base: -1, size: 0x1000, type: 'ram' }] }),
      RangeError,
      'new Kvm',
      'opts.physical[0].base',
    );
    rejects(
      () => new Kvm({ ...o, physical: [{ base: 0, size: 0, type: 'ram' }] }),
      RangeError,
      'new Kvm',
      'opts.physical[0].size',
    );
    rejects(
      () => new Kvm({ ...o, physical: [{ base: 0, size: 0x1000, type: any('rom') }] }),
      RangeError,
      'new Kvm',
      'opts.physical[0].type',
    );
    rejects(
      () => new Kvm({ ...o, physical: [{ base: 0x800, size: 0x1000, type: 'ram' }] }),
      RangeError,
      'new Kvm',
      'opts.physical[0]',
    );
    rejects(
      () =>
        new Kvm({
          ...o,
          physical: [
            { base: 0x10_0000, size: 0x1000, type: 'ram' },
            { base: 0, size: 0x20_0000, type: 'nomap' },
          ],
        }),
      RangeError,
      'new Kvm',
      'opts.physical[0].base',
    );
    rejects(() => new Kvm({ ...o, mte: any('yes') }), TypeError, 'new Kvm', 'opts.mte');
    rejects(() => new Kvm({ ...o, kernel: any('6.18') }), RangeError, 'new Kvm', 'opts.kernel');
    rejects(() => new Kvm({ ...o, memcacheCapacity: 0 }), RangeError, 'new Kvm', 'opts.memcacheCapacity');
    rejects(() => new Kvm({ ...o, tablePagesMax: NaN }), RangeError, 'new Kvm', 'opts.tablePagesMax');
  });

  it('createMemslot names the bad field; KVM’s refusals stay negative errnos', () => {
    const { kvm } = vm();
    const good = { id: 1, baseGfn: 0x100000, npages: 0x100, userspaceAddr: 0x7f00_0000_0000, flags: 0 };
    rejects(() => kvm.createMemslot(any(null)), TypeError, 'kvm.createMemslot', 'spec');
    rejects(() => kvm.createMemslot({ ...good, id: -1 }), RangeError, 'kvm.createMemslot', 'spec.id');
    rejects(
      () => kvm.createMemslot({ ...good, baseGfn: NaN }),
      RangeError,
      'kvm.createMemslot',
      'spec.baseGfn',
    );
    rejects(
      () => kvm.createMemslot({ ...good, npages: 2 ** 41 }),
      RangeError,
      'kvm.createMemslot',
      'spec.npages',
    );
    rejects(
      () => kvm.createMemslot({ ...good, userspaceAddr: any('0x7f') }),
      TypeError,
      'kvm.createMemslot',
      'spec.userspaceAddr',
    );
    rejects(() => kvm.createMemslot({ ...good, flags: 0.5 }), RangeError, 'kvm.createMemslot', 'spec.flags');
    expect(kvm.createMemslot({ ...good, npages: 0 })).toBeLessThan(0); // -EINVAL, as KVM
  });

  it('mm.mmap names the bad field, and returns a message for what mmap() refuses', () => {
    const { kvm } = vm();
    const good = {
      name: 'more',
      start: 0x7e00_0000_0000,
      size: 0x20_0000,
      vmFlags: VM_READ | VM_WRITE,
      backing: 'anon' as const,
    };
    rejects(() => kvm.mm.mmap(any(undefined)), TypeError, 'mm.mmap', 'spec');
    rejects(() => kvm.mm.mmap({ ...good, name: '' }), TypeError, 'mm.mmap', 'spec.name');
    rejects(() => kvm.mm.mmap({ ...good, start: -0x1000 }), RangeError, 'mm.mmap', 'spec.start');
    rejects(() => kvm.mm.mmap({ ...good, size: 0 }), RangeError, 'mm.mmap', 'spec.size');
    rejects(() => kvm.mm.mmap({ ...good, vmFlags: any(undefined) }), TypeError, 'mm.mmap', 'spec.vmFlags');
    rejects(() => kvm.mm.mmap({ ...good, backing: any('file') }), RangeError, 'mm.mmap', 'spec.backing');
    rejects(() => kvm.mm.mmap({ ...good, hugePage: 0.5 }), RangeError, 'mm.mmap', 'spec.hugePage');
    rejects(() => kvm.mm.mmap({ ...good, pa: NaN }), RangeError, 'mm.mmap', 'spec.pa');
    rejects(
      () => kvm.mm.mmap({ ...good, hostMapping: any('pgd') }),
      RangeError,
      'mm.mmap',
      'spec.hostMapping',
    );
    rejects(() => kvm.mm.mmap({ ...good, uffdMissing: any(1) }), TypeError, 'mm.mmap', 'spec.uffdMissing');
    // mmap()'s own refusals are a message (documented), and a good spec gives the VMA.
    expect(typeof kvm.mm.mmap({ ...good, start: good.start + 0x800 })).toBe('string');
    expect(typeof kvm.mm.mmap(good)).toBe('object');
    expect(kvm.mm.mmap(good)).toMatch(/duplicate VMA name/);
  });
});
