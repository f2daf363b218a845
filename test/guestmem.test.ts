/**
 * Guest memory has contents (issue 8): the sparse per-pfn store (src/mmu/host/contents.ts), its
 * lifetime (freed with the folio, copied on copy-on-write, the zero page reads as zeroes) and
 * the VMM's writes through its own page tables (Mm.hostWrite): private writable pages, COW
 * broken with its MMU-notifier invalidation, never a dirty-log mark.
 */
import { describe, expect, it } from 'vitest';
import { PageContents } from '../src/mmu/host/contents.js';
import { GRANULE_4K } from '../src/mmu/host/granule.js';
import { HPTE_WRITE, HPTE_ZERO, newHostLeaf } from '../src/mmu/host/hostpt.js';
import { FollowPfn, Mm } from '../src/mmu/host/mm.js';
import { MmuNotifier } from '../src/mmu/host/notifier.js';
import { PhysMem } from '../src/mmu/host/physmem.js';
import { VM_MAYWRITE, VM_READ, VM_WRITE, type Vma } from '../src/mmu/host/vma.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner, accessJson } from '../src/scenario/run.js';

const RAM_BASE = 0x8000_0000;
const HVA = 0x7f00_0000_0000;
const RW = VM_READ | VM_WRITE | VM_MAYWRITE;

function setup() {
  const phys = new PhysMem(GRANULE_4K, [{ base: RAM_BASE, size: 0x4000_0000, type: 'ram' }]);
  const notifier = new MmuNotifier();
  const calls: [number, number][] = [];
  notifier.subscribe({ invalidateRange: (r) => void calls.push([r.start, r.end]), clearYoung: () => false });
  const mm = new Mm(phys, notifier);
  return { phys, mm, calls };
}

function vma(mm: Mm, backing: 'anon' | 'thp' | 'shmem', size = 0x40_0000, flags = RW): Vma {
  const v = mm.mmap({ name: backing, start: HVA, size, vmFlags: flags, backing });
  if (typeof v === 'string') throw new Error(v);
  return v;
}

/** The pfn the host maps at hva, and its entry's flags. */
function hostPte(mm: Mm, hva: number): { pfn: number; flags: number } {
  const l = newHostLeaf();
  mm.pt.lookup(hva, l);
  return { pfn: l.pfn + Math.floor((hva - l.base) / 4096), flags: l.flags };
}

const bytes = (...b: number[]) => Uint8Array.from(b);

describe('PageContents', () => {
  it('reads zeroes where nothing was written, and stores only non-zero writes', () => {
    const c = new PageContents(4096);
    expect(c.read64(0x1234_5000)).toEqual([0, 0]);
    const op = { pfn: 0x12345 };
    c.write64Op(op, 8, 0, 0);
    expect(c.pagesStored).toBe(0);
    c.write64Op(op, 8, 0x89ab_cdef, 0x0123_4567);
    expect(c.pagesStored).toBe(1);
    expect(c.read64(0x1234_5008)).toEqual([0x89ab_cdef, 0x0123_4567]);
    // Little-endian bytes: the low byte of `lo` first.
    expect([...c.readBytes(0x12345, 8, 8)]).toEqual([0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
  });

  it('writes bytes at any offset and reads them back as 64-bit halves', () => {
    const c = new PageContents(4096);
    c.writeBytes(7, 0x11, bytes(0xaa, 0xbb, 0xcc));
    // Bytes 0x11..0x13 of the doubleword at 0x10: value 0x00000000_ccbbaa00.
    expect(c.read64(7 * 4096 + 0x10)).toEqual([0xccbb_aa00, 0]);
  });

  it('drop() forgets a folio and copy() duplicates a page', () => {
    const c = new PageContents(4096);
    c.writeBytes(100, 0, bytes(1));
    c.writeBytes(101, 0, bytes(2));
    c.copy(101, 200, 1);
    c.drop(100, 2);
    expect(c.has(100)).toBe(false);
    expect(c.has(101)).toBe(false);
    expect(c.read64(200 * 4096)).toEqual([2, 0]);
    // Copying from a page without storage leaves the destination without storage.
    c.copy(300, 200, 1);
    expect(c.has(200)).toBe(false);
  });

  it('zeroOp() clears a block and leaves the rest', () => {
    const c = new PageContents(4096);
    c.writeBytes(5, 0x38, bytes(1, 2, 3, 4, 5, 6, 7, 8, 9));
    c.zeroOp({ pfn: 5 }, 0, 64);
    expect(c.read64(5 * 4096 + 0x38)).toEqual([0, 0]);
    expect(c.read64(5 * 4096 + 0x40)).toEqual([9, 0]);
  });
});

describe('Mm.hostWrite and the contents lifetime', () => {
  it('populates a private writable page for the VMM, with the bytes in it', () => {
    const { mm, phys, calls } = setup();
    vma(mm, 'anon');
    expect(mm.hostWrite(HVA + 0x1008, bytes(0x11, 0x22))).toBe(0);
    const pte = hostPte(mm, HVA + 0x1000);
    expect(pte.flags & HPTE_WRITE).not.toBe(0);
    expect(pte.flags & HPTE_ZERO).toBe(0);
    expect(phys.contents.read64(pte.pfn * 4096 + 8)).toEqual([0x2211, 0]);
    expect([...mm.hostRead(HVA + 0x1007, 4)]).toEqual([0, 0x11, 0x22, 0]);
    // A fresh page, not a copy: no invalidation was needed.
    expect(mm.stats.cowBreaks).toBe(0);
    expect(calls).toEqual([]);
    expect(mm.pagesHeld).toBe(0);
  });

  it('hostUnmap frees the page and its bytes: the range reads as zeroes again', () => {
    const { mm, phys } = setup();
    const v = vma(mm, 'anon');
    mm.hostWrite(HVA, bytes(0xff, 0xee));
    const pfn = hostPte(mm, HVA).pfn;
    mm.hostUnmap(v, 0, 0x1000);
    expect(phys.contents.has(pfn)).toBe(false);
    expect([...mm.hostRead(HVA, 2)]).toEqual([0, 0]);
    // The freed page is handed out again zeroed.
    mm.hostWrite(HVA + 0x8, bytes(1));
    const again = hostPte(mm, HVA);
    expect(phys.contents.read64(again.pfn * 4096)).toEqual([0, 0]);
  });

  it('a write over the zero page breaks copy-on-write, with its invalidation; the zero page keeps reading zero', () => {
    const { mm, phys, calls } = setup();
    vma(mm, 'anon');
    const r = new FollowPfn();
    mm.faultinPfn(HVA + 0x3000, false, r);
    mm.releaseFaultinPage(r, true, false);
    expect(r.pfn).toBe(phys.zeroPfn);
    expect(mm.hostWrite(HVA + 0x3010, bytes(7))).toBe(0);
    const pte = hostPte(mm, HVA + 0x3000);
    expect(pte.pfn).not.toBe(phys.zeroPfn);
    expect(mm.stats.cowBreaks).toBe(1);
    expect(calls).toEqual([[HVA + 0x3000, HVA + 0x4000]]);
    expect(phys.contents.has(phys.zeroPfn)).toBe(false);
    expect(phys.contents.read64(pte.pfn * 4096 + 0x10)).toEqual([7, 0]);
  });

  it('copy-on-write of a private file page copies its bytes into the new page', () => {
    const { mm, phys } = setup();
    vma(mm, 'shmem');
    const r = new FollowPfn();
    mm.faultinPfn(HVA, false, r); // a read maps the file page read-only
    mm.releaseFaultinPage(r, true, false);
    const filePfn = r.pfn;
    phys.contents.writeBytes(filePfn, 0x100, bytes(0xab, 0xcd));
    mm.hostWrite(HVA + 0x200, bytes(0x01));
    const copy = hostPte(mm, HVA).pfn;
    expect(copy).not.toBe(filePfn);
    expect(mm.stats.cowBreaks).toBe(1);
    expect(phys.contents.read64(copy * 4096 + 0x100)).toEqual([0xcdab, 0]);
    expect(phys.contents.read64(copy * 4096 + 0x200)).toEqual([1, 0]);
    // The file page itself is unchanged.
    expect(phys.contents.read64(filePfn * 4096 + 0x200)).toEqual([0, 0]);
  });

  it('a write into the huge zero page gets a PMD folio that reads zero except for the bytes written', () => {
    const { mm, phys } = setup();
    vma(mm, 'thp');
    const r = new FollowPfn();
    mm.faultinPfn(HVA, false, r);
    mm.releaseFaultinPage(r, true, false);
    expect(phys.isZeroPfn(r.pfn)).toBe(true);
    mm.hostWrite(HVA + 0x1_0000, bytes(0x5a));
    const pte = hostPte(mm, HVA + 0x1_0000);
    expect(phys.isZeroPfn(pte.pfn)).toBe(false);
    expect(phys.contents.read64(pte.pfn * 4096)).toEqual([0x5a, 0]);
    expect(phys.contents.pagesStored).toBe(1);
  });

  it('refuses a VMA the VMM cannot write (SIGSEGV): -EFAULT, nothing stored', () => {
    const { mm, phys } = setup();
    vma(mm, 'anon', 0x40_0000, VM_READ);
    expect(mm.hostWrite(HVA, bytes(1))).toBe(-14);
    expect(mm.hostWrite(HVA - 0x1000, bytes(1))).toBe(-14);
    expect(phys.contents.pagesStored).toBe(0);
  });
});

describe('VMM writes in scenarios (init, populate, hostWrite)', () => {
  const scenario = (extra: Record<string, unknown> = {}, steps: unknown[] = []) => ({
    cpu: { profile: 'grace' },
    granule: '4K',
    physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
    vmas: [
      {
        name: 'ram',
        start: '0x7f00_0000_0000',
        size: '2M',
        backing: 'anon',
        prot: 'rw',
        init: [
          { offset: '0x1000', u64: '0x0102_0304_0506_0708' },
          { offset: '0x2003', hex: 'a1b2' },
        ],
        ...extra,
      },
    ],
    memslots: [{ slot: 0, gpa: '0x4000_0000', size: '2M', vma: 'ram', flags: ['log-dirty'] }],
    steps,
  });

  it('init bytes reach guest reads; the VMM writes are never dirty-log marks', () => {
    const lines: Record<string, unknown>[] = [];
    const dirty: number[][] = [];
    new ScenarioRunner(
      parseScenario(
        scenario({}, [
          { access: 'read', ipa: '0x4000_1000' },
          { access: 'read', ipa: '0x4000_2000' },
          { hostWrite: { vma: 'ram', offset: '0x3000', u64: '0xfeed' } },
          { access: 'read', ipa: '0x4000_3000' },
          { dirtyLog: { slot: 0, op: 'get-and-clear' } },
        ]),
      ),
    ).run({ access: (s, r) => lines.push(accessJson(s, r)), dirtyLog: (_s, _slot, g) => dirty.push([...g]) });
    expect(lines.map((l) => l['value'])).toEqual([
      '0x0102030405060708',
      // Byte 3 = 0xa1, byte 4 = 0xb2.
      '0x000000b2a1000000',
      '0x000000000000feed',
    ]);
    // Reads during logging mark nothing; the VMM's own writes (init, hostWrite) never do.
    expect(dirty).toEqual([[]]);
  });

  it('populate: true faults every page in for write before the run (no fault on first touch)', () => {
    const lines: Record<string, unknown>[] = [];
    const sc = scenario({ populate: true }, [{ access: 'read', ipa: '0x4000_5000' }]);
    (sc.memslots[0] as Record<string, unknown>)['flags'] = [];
    const runner = new ScenarioRunner(parseScenario(sc));
    runner.run({ access: (s, r) => lines.push(accessJson(s, r)) });
    // The page is private and writable in the host, so the read fault maps it writable.
    const leaf = lines[0]!['leaf'] as { desc: string };
    expect((BigInt(leaf.desc) >> 7n) & 1n).toBe(1n); // S2AP[1], write
    expect(runner.kvm.mm.stats.cowBreaks).toBe(0);
    expect(runner.kvm.phys.stats.allocatedPages).toBeGreaterThanOrEqual(512);
  });
});
