/**
 * userfaultfd as VMMs use it (docs/scenario.md, "Host events"): registration after set-up, the events of
 * each access and hostWrite, `resolve` and `copyFrom`. The events follow fs/userfaultfd.c
 * (handle_userfault(): one message per missing-page fault, UFFD_PAGEFAULT_FLAG_WRITE for a
 * write fault; hugetlb_fault() reports the huge-page-aligned address) and KVM's faultin: a guest
 * read faults the host page in as a read (__kvm_faultin_pfn() without FOLL_WRITE), even though
 * KVM then asks for a writable mapping.
 */
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../src/scenario/parse.js';
import { RAM_HVA, oneVma, scenario } from './helpers/scenarios.js';
import { runLines, stepLine } from './helpers/lines.js';

type Json = Record<string, unknown>;
const acc = (access: string, ipa: string): Json => ({ access, ipa });

/** A 1M anon VMA 'm' at RAM_HVA in slot 0 at IPA 0x4000_0000, registered as `uffd`. */
function registered(uffd: unknown, steps: Json[], vma: Json = {}): Json {
  return oneVma(
    { start: RAM_HVA, size: '1M', backing: 'anon', prot: 'rw', userfaultfd: uffd, ...vma },
    '0x40000000',
    {
      steps,
    },
  );
}

describe('the string "missing" is { mode: "missing", resolve: "page", copyFrom: "registration" }', () => {
  it('parses to the defaults', () => {
    const s = parseScenario(registered('missing', []));
    expect(s.vmas[0]!.userfaultfd).toEqual({ mode: 'missing', resolve: 'page', copyFrom: 'registration' });
    const o = parseScenario(registered({ mode: 'missing', resolve: 'range' }, []));
    expect(o.vmas[0]!.userfaultfd).toEqual({ mode: 'missing', resolve: 'range', copyFrom: 'registration' });
  });

  it('rejects other shapes with key paths', () => {
    expect(() => parseScenario(registered({ mode: 'wp' }, []))).toThrow(
      'vmas[0].userfaultfd.mode: expected one of "missing"',
    );
    expect(() => parseScenario(registered({ mode: 'missing', resolve: 'all' }, []))).toThrow(
      'vmas[0].userfaultfd.resolve: expected one of "page", "range"',
    );
    expect(() => parseScenario(registered({ mode: 'missing', copyFrom: 'disk' }, []))).toThrow(
      'vmas[0].userfaultfd.copyFrom: expected one of "registration", "zero"',
    );
    expect(() => parseScenario(registered(true, []))).toThrow(
      'vmas[0].userfaultfd: expected "missing" or an object',
    );
  });
});

describe('uffdEvents on access lines', () => {
  const out = runLines(
    registered('missing', [
      acc('write', '0x40001000'),
      acc('read', '0x40002000'),
      acc('read', '0x40001008'),
      { hostUnmap: { vma: 'm', offset: '0x1000', size: '4K' } },
      acc('read', '0x40001000'),
    ]),
  );

  it('one event per missing page, in order, with the host fault direction', () => {
    expect(stepLine(out, 0)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: true }]);
    // A guest read: KVM faults the page in as a read (no FOLL_WRITE).
    expect(stepLine(out, 1)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x2000', write: false }]);
    // Populated already: an empty list (the key is there whenever a VMA is registered).
    expect(stepLine(out, 2)['uffdEvents']).toEqual([]);
    expect(stepLine(out, 2)['uffd']).toBe(0);
    // Dropped by the host (MADV_DONTNEED), the page is missing again.
    expect(stepLine(out, 4)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: false }]);
    expect(out.summary.uffdEvents).toBe(3);
  });

  it('lines have no uffdEvents when no VMA is registered', () => {
    const plain = runLines(scenario({ steps: [acc('write', '0x40001000')] }));
    expect(plain.lines[0]).not.toHaveProperty('uffdEvents');
  });

  it('a hugetlb event names the huge page (hugetlb_fault aligns the address)', () => {
    const h = runLines(
      oneVma(
        {
          start: RAM_HVA,
          size: '4M',
          backing: 'hugetlb',
          hugePage: '2M',
          prot: 'rw',
          userfaultfd: 'missing',
        },
        '0x40000000',
        { steps: [acc('write', '0x40201000'), acc('write', '0x40300000')] },
      ),
    );
    expect(stepLine(h, 0)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x200000', write: true }]);
    expect(stepLine(h, 1)['uffdEvents']).toEqual([]);
  });
});

describe('registrations across VMA changes', () => {
  it("a registered VMA split by munmap stays registered on both pieces; offsets stay the name's", () => {
    const out = runLines(
      registered('missing', [
        { munmap: { vma: 'm', offset: '0x40000', size: '0x40000' } },
        acc('read', '0x40001000'),
        acc('read', '0x40081000'),
        acc('read', '0x40041000'),
      ]),
    );
    expect(stepLine(out, 1)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: false }]);
    expect(stepLine(out, 2)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x81000', write: false }]);
    // The hole: no VMA, so no event; the fault is -EFAULT.
    expect(stepLine(out, 3)['errno']).toBe('EFAULT');
    expect(stepLine(out, 3)['uffdEvents']).toEqual([]);
  });

  it('a VMA mapped by an mmap step is registered right after it; the VMA it replaced is gone', () => {
    const out = runLines(
      registered('missing', [
        {
          mmap: {
            name: 'n',
            start: RAM_HVA + 0x8_0000,
            size: '256K',
            backing: 'anon',
            prot: 'rw',
            userfaultfd: 'missing',
          },
        },
        acc('write', '0x40081000'),
        acc('write', '0x40001000'),
      ]),
    );
    expect(stepLine(out, 1)['uffdEvents']).toEqual([{ vma: 'n', offset: '0x1000', write: true }]);
    expect(stepLine(out, 2)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: true }]);
  });
});

describe('resolve "range": the first event fills every missing page of the range', () => {
  it('one event, then no more until the host drops a page', () => {
    const out = runLines(
      registered({ mode: 'missing', resolve: 'range' }, [
        acc('read', '0x40001000'),
        acc('write', '0x400ff000'),
        { hostUnmap: { vma: 'm', offset: '0x80000', size: '8K' } },
        acc('read', '0x40000000'),
        acc('read', '0x40081000'),
        acc('read', '0x40080000'),
      ]),
    );
    expect(stepLine(out, 0)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: false }]);
    // 1M of 4K pages: 256 pages copied in answer to the one event, and 2 for the hole later.
    expect(out.runner.kvm.mm.stats.faultAllocs).toBe(256 + 2);
    expect(stepLine(out, 1)['uffdEvents']).toEqual([]);
    expect(stepLine(out, 3)['uffdEvents']).toEqual([]);
    // The hole punched at 0x80000..0x82000: one event refills both pages.
    expect(stepLine(out, 4)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x81000', write: false }]);
    expect(stepLine(out, 5)['uffdEvents']).toEqual([]);
  });
});

describe('registration after set-up, and what UFFDIO_COPY copies', () => {
  const init = [{ offset: '0x1000', u64: '0x1122334455667788' }];
  const steps = [{ hostUnmap: { vma: 'm', offset: '0x1000', size: '4K' } }, acc('read', '0x40001000')];

  it('the VMA init is written before registration: no event for it', () => {
    const out = runLines(registered('missing', [acc('read', '0x40001000')], { init }));
    expect(stepLine(out, 0)['uffdEvents']).toEqual([]);
    expect(stepLine(out, 0)['value']).toBe('0x1122334455667788');
  });

  it('copyFrom "registration": the page comes back with what it held when registered', () => {
    const out = runLines(registered('missing', steps, { init }));
    const l = stepLine(out, 1);
    expect(l['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: false }]);
    expect(l['value']).toBe('0x1122334455667788');
  });

  it('copyFrom "zero": it comes back zeroed', () => {
    const out = runLines(registered({ mode: 'missing', copyFrom: 'zero' }, steps, { init }));
    expect(stepLine(out, 1)['value']).toBe('0x0000000000000000');
  });

  it('a hostWrite to a missing page raises a write event, reported on the hostWrite line', () => {
    const out = runLines(
      registered('missing', [
        { hostWrite: { vma: 'm', offset: '0x3008', u64: '0xab' } },
        acc('read', '0x40003008'),
      ]),
    );
    expect(out.lines[0]).toEqual({
      step: 0,
      hostWrite: { vma: 'm', offset: '0x3008', size: 8 },
      uffdEvents: [{ vma: 'm', offset: '0x3000', write: true }],
    });
    expect(stepLine(out, 1)['uffdEvents']).toEqual([]);
    expect(stepLine(out, 1)['value']).toBe('0x00000000000000ab');
  });
});
