/**
 * Host events the fault path must survive (docs/scenario.md, "Host events"): munmap
 * and MAP_FIXED mmap under a live memslot, memslots over several VMAs (`hva`), memory_failure(),
 * the stage-2 table-page budget, the VMM's view of MMIO exits and `onError`. Every expected
 * value is derived by hand from the kernel function named beside it (arch/arm64/kvm/mmu.c and
 * mm/ unless said otherwise).
 *
 * Descriptors (4K granule, FWB): a page is bits[1:0] = 0b11, a block 0b01; MemAttr Normal-WB
 * with FWB is 0b0110 in bits[5:2] (0x18); S2AP R = bit 6, W = bit 7; SH inner = 0x300; AF =
 * 0x400; with DIC every cacheable leaf is executable (XN clear). So an RW page is 0x7db, an R
 * page 0x75b, an RW block 0x7d9 (plus the output address).
 */
import { describe, expect, it } from 'vitest';
import { ScenarioError } from '../src/scenario/errors.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ScenarioRunner } from '../src/scenario/run.js';
import { CPU_BARE, CPU_FWB_DIC, RAM_HVA, oneVma, scenario } from './helpers/scenarios.js';
import { faultList, runLines, stepLine } from './helpers/lines.js';

type Json = Record<string, unknown>;

const w = (ipa: string): Json => ({ access: 'write', ipa });
const r = (ipa: string): Json => ({ access: 'read', ipa });

describe('munmap under a live memslot', () => {
  const out = runLines(
    scenario({
      steps: [
        w('0x40001000'),
        { munmap: { vma: 'ram', offset: '0x1000', size: '0x1000' } },
        w('0x40001000'),
        w('0x40002000'),
      ],
    }),
  );

  it('a later fault there finds no VMA: user_mem_abort() returns -EFAULT (vma_lookup() is NULL)', () => {
    const l = stepLine(out, 2);
    expect(l['outcome']).toBe('error');
    expect(l['errno']).toBe('EFAULT');
    // The munmap's invalidation unmapped the only leaf, and the unmap walker freed the emptied
    // L3 and L2 tables (stage2_unmap_walker puts a table whose count drops to one), so the
    // fault is reported at level 1.
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort -14']);
    expect(l['leaf']).toBeNull();
  });

  it('the pages around the hole still fault in', () => {
    const l = stepLine(out, 3);
    expect(l['outcome']).toBe('done');
    expect(l['leaf']['desc']).toMatch(/7db$/);
  });

  it('splits the VMA as __split_vma() does, the upper part keeping its name and offsets', () => {
    const vmas = out.runner.kvm.mm.vmas.vmas.map((v) => [
      v.name,
      v.start - RAM_HVA,
      v.end - RAM_HVA,
      v.nameOffset ?? 0,
    ]);
    expect(vmas).toEqual([
      ['ram', 0, 0x1000, 0],
      ['ram', 0x2000, 0x400_0000, 0x2000],
    ]);
    // One MMU-notifier invalidation: the munmap (unmap_region()).
    expect(out.runner.kvm.notifier.stats.invalidations).toBe(1);
  });

  it('hugetlb VMAs split only at a huge page boundary (hugetlb_vm_op_split: -EINVAL)', () => {
    const o = runLines(
      oneVma({ start: RAM_HVA, size: '4M', backing: 'hugetlb', hugePage: '2M', prot: 'rw' }, '0x40000000', {
        steps: [{ munmap: { vma: 'm', offset: '2M', size: '2M' } }, w('0x40200000'), w('0x40000000')],
      }),
    );
    expect(stepLine(o, 1)['errno']).toBe('EFAULT');
    expect(stepLine(o, 2)['leaf']['size']).toBe('0x200000');
  });
});

describe('MAP_FIXED mmap replacing memory under a live memslot', () => {
  const gpu = {
    name: 'gpu',
    start: '0x7f00_0020_0000',
    size: '2M',
    backing: 'pfnmap',
    pa: '0x40_0000_0000',
    prot: 'rw',
    flags: ['shared'],
  };

  it('a cacheable PFNMAP replacing anon maps a Normal-WB 2M block on FWB+DIC (6.17 S10)', () => {
    const out = runLines(scenario({ steps: [w('0x40200000'), { mmap: gpu }, r('0x40200000')] }));
    expect(stepLine(out, 0)['leaf']['level']).toBe(3);
    const l = stepLine(out, 2);
    expect(l['outcome']).toBe('done');
    // get_vma_page_shift(): hva ≡ pa (mod 2M) and the 2M window fits the VMA → PMD_SHIFT;
    // fault_supports_stage2_huge_mapping() holds (slot 2M-aligned on both sides); pfn outside
    // the linear map, VMA cacheable, FWB+DIC → Normal-WB, writable (shared+writable host
    // entry), executable (DIC): 0x40_0000_0000 | 0x7d9.
    expect(l['leaf']).toEqual({ ipa: '0x40200000', level: 2, size: '0x200000', desc: '0x00000040000007d9' });
    const vmas = out.runner.kvm.mm.vmas.vmas.map((v) => [v.name, v.start - RAM_HVA, v.end - RAM_HVA]);
    expect(vmas).toEqual([
      ['ram', 0, 0x20_0000],
      ['gpu', 0x20_0000, 0x40_0000],
      ['ram', 0x40_0000, 0x400_0000],
    ]);
  });

  it('without FWB+DIC the fault returns -EFAULT, though the slot passed kvm_arch_prepare_memory_region()', () => {
    const out = runLines(
      scenario({
        cpu: CPU_BARE,
        steps: [
          { mmap: gpu },
          r('0x40200000'),
          // The same range as a new slot is refused up front: a cacheable VM_PFNMAP VMA on a
          // CPU without FWB+DIC (kvm_arch_prepare_memory_region: -EINVAL).
          { memslot: { slot: 1, gpa: '0x80000000', size: '2M', vma: 'gpu' } },
        ],
      }),
    );
    const l = stepLine(out, 1);
    expect(l['outcome']).toBe('error');
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort -14']);
    expect(out.lines).toContainEqual({ memslot: 1, errno: 'EINVAL' });
  });
});

describe('memslots over several VMAs ("hva")', () => {
  const H = 0x7f00_0000_0000;
  const two = (over: Json = {}, bFlags: string[] = []): Json =>
    scenario({
      vmas: [
        { name: 'a', start: H, size: '2M', backing: 'anon', prot: 'rw' },
        { name: 'b', start: H + 0x20_0000, size: '2M', backing: 'thp', prot: 'rw', flags: bFlags },
      ],
      memslots: [{ slot: 0, gpa: '0x40000000', size: '8M', hva: '0x7f00_0000_0000' }],
      ...over,
    });

  it('each fault looks up the VMA at its own address (vma_lookup(hva))', () => {
    const out = runLines(two({ steps: [w('0x40001000'), w('0x40200000'), w('0x40400000')] }));
    expect(stepLine(out, 0)['leaf']['level']).toBe(3); // anon: 4K host pages
    // thp: a PMD folio, and transparent_hugepage_adjust() promotes to PMD_SIZE.
    expect(stepLine(out, 1)['leaf']['size']).toBe('0x200000');
    // The slot runs on past the VMAs: a hole, where the fault finds no VMA.
    expect(stepLine(out, 2)['errno']).toBe('EFAULT');
  });

  it('kvm_arch_prepare_memory_region() checks every VMA of the range (MTE: VM_MTE_ALLOWED)', () => {
    const out = runLines(
      two({ cpu: { ...CPU_FWB_DIC, mte: true }, vm: { ipaBits: 40, mte: true } }, ['no-mte-allowed']),
    );
    expect(out.lines).toEqual([{ memslot: 0, errno: 'EINVAL' }]);
    const ok = runLines(two({ cpu: { ...CPU_FWB_DIC, mte: true }, vm: { ipaBits: 40, mte: true } }));
    expect(ok.lines).toEqual([]);
  });
});

describe('memory_failure() (poison)', () => {
  it('anon page: unmapped with its invalidation; the next access is SIGBUS with lsb PAGE_SHIFT', () => {
    const out = runLines(
      scenario({
        steps: [
          w('0x40001000'),
          { poison: { vma: 'ram', offset: '0x1234' } },
          r('0x40001000'),
          r('0x40001000'),
        ],
      }),
    );
    expect(out.runner.kvm.notifier.stats.invalidations).toBe(1);
    const l = stepLine(out, 2);
    // __kvm_faultin_pfn() → KVM_PFN_ERR_HWPOISON → kvm_send_hwpoison_signal(hva, vma_shift),
    // return 0 (the handler's 1): the guest sees nothing, the VMM gets SIGBUS BUS_MCEERR_AR.
    expect(l['outcome']).toBe('sigbus');
    expect(l['sigbus']).toEqual({ addr: '0x7f0000001000', lsb: 12, code: 'BUS_MCEERR_AR' });
    // The invalidation emptied and freed the L3 and L2 tables: the fault comes from level 1.
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort 0']);
    expect(l['leaf']).toBeNull();
    expect(stepLine(out, 3)['outcome']).toBe('sigbus');
  });

  it('THP: split first (try_to_split_thp_page), so only the failed 4K page is lost', () => {
    const out = runLines(
      oneVma({ start: RAM_HVA, size: '4M', backing: 'thp', prot: 'rw' }, '0x40000000', {
        steps: [
          w('0x40000000'),
          { poison: { vma: 'm', offset: '0x5000' } },
          r('0x40001000'),
          r('0x40005000'),
        ],
      }),
    );
    expect(stepLine(out, 0)['leaf']['size']).toBe('0x200000');
    // The host now maps 4K pages: get_user_mapping_size() < PMD_SIZE → a page mapping.
    const ok = stepLine(out, 2);
    expect(ok['outcome']).toBe('done');
    expect(ok['leaf']['size']).toBe('0x1000');
    const bad = stepLine(out, 3);
    expect(bad['outcome']).toBe('sigbus');
    expect(bad['sigbus']['lsb']).toBe(12); // a THP VMA's vma_shift is PAGE_SHIFT
  });

  it('hugetlb 2M: the whole huge page goes, and lsb is the hstate shift (21)', () => {
    const out = runLines(
      oneVma({ start: RAM_HVA, size: '4M', backing: 'hugetlb', hugePage: '2M', prot: 'rw' }, '0x40000000', {
        steps: [
          w('0x40000000'),
          { poison: { vma: 'm', offset: '0x3000' } },
          r('0x40100000'),
          r('0x40200000'),
        ],
      }),
    );
    const l = stepLine(out, 2);
    expect(l['outcome']).toBe('sigbus');
    // The hva is user_mem_abort()'s own (the faulting page's), not rounded to the huge page.
    expect(l['sigbus']).toEqual({ addr: '0x7f0000100000', lsb: 21, code: 'BUS_MCEERR_AR' });
    expect(stepLine(out, 3)['outcome']).toBe('done');
  });

  it('the shared zero page is reserved: memory_failure() ignores it', () => {
    const out = runLines(
      oneVma({ start: RAM_HVA, size: '2M', backing: 'anon', prot: 'r' }, '0x40000000', {
        steps: [{ poison: { vma: 'm', offset: 0 } }, r('0x40000000')],
      }),
    );
    expect(out.summary.diagnostics.some((d) => d.includes('MF_IGNORED'))).toBe(true);
    expect(stepLine(out, 1)['outcome']).toBe('done');
  });
});

describe('vm.tablePagesMax: kvm_mmu_topup_memory_cache() fails past it', () => {
  // 40-bit IPA, 4K: stage 2 starts at level 1 with two concatenated PGD pages
  // (kvm_pgd_pages), and kvm_mmu_cache_min_pages() is levels − 1 = 2.
  const steps = [w('0x40001000'), w('0x40002000'), w('0x40201000')];
  const go = (max: number): string[] =>
    runLines(scenario({ vm: { ipaBits: 40, tablePagesMax: max }, steps })).lines.map(
      (l) => l['errno'] ?? l['outcome'],
    );

  it('4 pages: the PGD (2) and one top-up of 2, used by the first map; then -ENOMEM', () => {
    // The second write needs no new table, but the top-up comes first and wants 2 pages.
    expect(go(4)).toEqual(['done', 'ENOMEM', 'ENOMEM']);
  });
  it('5 pages: one page short of the minimum still fails', () => {
    expect(go(5)).toEqual(['done', 'ENOMEM', 'ENOMEM']);
  });
  it('6 pages: the second top-up gets its 2; the third write uses one of them for its L3 table', () => {
    // 2 + 2 (first fault) + 2 (second) = 6; the third fault holds 2 ≥ 2, so no top-up.
    expect(go(6)).toEqual(['done', 'done', 'done']);
  });
  it('fewer pages than the PGD cannot create the VM', () => {
    const s = parseScenario(scenario({ vm: { ipaBits: 40, tablePagesMax: 1 } }));
    expect(() => new ScenarioRunner(s)).toThrow(/tablePagesMax 1 .* 2 page\(s\) of the stage-2 PGD/);
  });
});

describe('the VMM side: MMIO details and onError', () => {
  it('mmio lines carry the IPA KVM reports (HPFAR | FAR[11:0]), the length and the direction', () => {
    const out = runLines(scenario({ steps: [w('0x10000010'), r('0x10000ff8')] }));
    expect(stepLine(out, 0)['mmio']).toEqual({ ipa: '0x10000010', len: 8, write: true });
    expect(stepLine(out, 1)['mmio']).toEqual({ ipa: '0x10000ff8', len: 8, write: false });
  });

  it('nisv lines too (a CAS: its translation fault reports WnR = 0)', () => {
    const out = runLines(
      scenario({ vm: { ipaBits: 40, nisvToUser: true }, steps: [{ access: 'cas', ipa: '0x10000020' }] }),
    );
    const l = stepLine(out, 0);
    expect(l['outcome']).toBe('nisv');
    expect(l['mmio']).toEqual({ ipa: '0x10000020', len: 8, write: false });
  });

  it('mmioWrites "store-readonly-slot": the VMM stores a write to a read-only slot into its backing', () => {
    const rom = (mmioWrites?: string, uffd?: unknown): Json =>
      oneVma(
        { start: RAM_HVA, size: '2M', backing: 'anon', prot: 'rw', ...(uffd ? { userfaultfd: uffd } : {}) },
        '0x40000000',
        {
          vm: { ipaBits: 40, ...(mmioWrites ? { mmioWrites } : {}) },
          steps: [{ access: 'write', ipa: '0x40001008', value: '0xcafe' }, r('0x40001008')],
        },
        { flags: ['readonly'] },
      );
    // kvm_handle_guest_abort(): write_fault && !writable → io_mem_abort() → KVM_EXIT_MMIO.
    const kept = runLines(rom('store-readonly-slot'));
    expect(stepLine(kept, 0)['outcome']).toBe('mmio');
    expect(stepLine(kept, 0)['mmio']).toEqual({ ipa: '0x40001008', len: 8, write: true });
    expect(stepLine(kept, 1)['value']).toBe('0x000000000000cafe');
    const dropped = runLines(rom());
    expect(stepLine(dropped, 1)['value']).toBe('0x0000000000000000');
    // A missing page in a registered range: the VMM's store raises a write event, listed on
    // the access whose exit it completed.
    const uffd = runLines(rom('store-readonly-slot', 'missing'));
    expect(stepLine(uffd, 0)['uffdEvents']).toEqual([{ vma: 'm', offset: '0x1000', write: true }]);
    expect(stepLine(uffd, 0)['uffd']).toBe(1);
    expect(stepLine(uffd, 1)['uffdEvents']).toEqual([]);
  });

  it('onError "stop": the run ends at the failed KVM_RUN, and the summary says where', () => {
    const steps = [
      w('0x40001000'),
      { munmap: { vma: 'ram', offset: 0, size: '4K' } },
      w('0x40000000'),
      w('0x40002000'),
    ];
    const stop = runLines(scenario({ onError: 'stop', steps }));
    expect(stop.lines.map((l) => l['step'])).toEqual([0, 2]);
    expect(stop.summary.stoppedAtStep).toBe(2);
    const cont = runLines(scenario({ steps }));
    expect(cont.lines.map((l) => l['step'])).toEqual([0, 2, 3]);
    expect(cont.summary.stoppedAtStep).toBeUndefined();
  });
});

describe('parser: host-event keys, with key paths', () => {
  function issues(s: Json): string[] {
    try {
      parseScenario(s);
    } catch (e) {
      if (e instanceof ScenarioError) return e.issues.map((i) => `${i.path}: ${i.message}`);
      throw e;
    }
    return [];
  }

  it('memslots name a vma or an hva, not both', () => {
    expect(
      issues(
        scenario({
          memslots: [{ slot: 0, gpa: '0x40000000', size: '2M', vma: 'ram', hva: '0x7f00_0000_0000' }],
        }),
      ),
    ).toEqual(['memslots[0].hva: give either "vma" (with an optional "offset") or "hva", not both']);
    expect(issues(scenario({ memslots: [{ slot: 0, gpa: '0x40000000', size: '2M' }] }))).toEqual([
      'memslots[0].vma: missing required key: a memslot names a "vma" or an "hva"',
    ]);
    expect(
      issues(
        scenario({ memslots: [{ slot: 0, gpa: '0x40000000', size: '2M', hva: '0x7f00_0000_0800' }] }),
      )[0],
    ).toMatch(/^memslots\[0\]\.hva: 0x7f0000000800 is not aligned to the 4K granule/);
  });

  it('vm.tablePagesMax, vm.mmioWrites, onError and race values', () => {
    expect(issues(scenario({ vm: { ipaBits: 40, tablePagesMax: 0 } }))[0]).toMatch(
      /^vm\.tablePagesMax: expected an integer from 1/,
    );
    expect(issues(scenario({ vm: { ipaBits: 40, mmioWrites: 'keep' } }))).toEqual([
      'vm.mmioWrites: expected one of "drop", "store-readonly-slot"',
    ]);
    expect(issues(scenario({ onError: 'abort' }))).toEqual(['onError: expected one of "continue", "stop"']);
    expect(issues(scenario({ steps: [{ access: 'read', ipa: 0, race: 'invalidated' }] }))).toEqual([
      'steps[0].race: expected one of "invalidate", "zap-host-pte", "other-vcpu"',
    ]);
  });

  it('mmap, munmap and poison steps', () => {
    const dup = { mmap: { name: 'ram', start: '0x7f00_1000_0000', size: '2M', backing: 'anon', prot: 'rw' } };
    expect(issues(scenario({ steps: [dup] }))).toEqual([
      'steps[0].mmap.name: "ram" is already the name of an earlier VMA',
    ]);
    expect(issues(scenario({ steps: [{ mmap: { ...dup.mmap, name: 'x', backing: 'pfnmap' } }] }))).toEqual([
      'steps[0].mmap.pa: missing required key (a "pfnmap" VMA needs it)',
    ]);
    expect(issues(scenario({ steps: [{ munmap: { vma: 'ram', offset: '64M', size: '4K' } }] }))[0]).toMatch(
      /^steps\[0\]\.munmap\.size: offset 0x4000000 \+ size 0x1000 runs past the end of VMA "ram"/,
    );
    expect(issues(scenario({ steps: [{ munmap: { vma: 'rom', offset: 0, size: '4K' } }] }))).toEqual([
      'steps[0].munmap.vma: no VMA is named "rom"; did you mean "ram"?',
    ]);
    const gpuVma = {
      name: 'gpu',
      start: '0x7e00_0000_0000',
      size: '2M',
      backing: 'pfnmap',
      pa: '0x40_0000_0000',
      prot: 'rw',
    };
    expect(
      issues(
        scenario({
          vmas: [{ name: 'ram', start: RAM_HVA, size: '64M', backing: 'anon', prot: 'rw' }, gpuVma],
          steps: [{ poison: { vma: 'gpu', offset: 0 } }],
        }),
      ),
    ).toEqual([
      'steps[0].poison.vma: memory_failure() finds no rmap to unmap in a "pfnmap" VMA (raw pfns, no struct page mapping); poison an anon, thp, shmem or hugetlb VMA',
    ]);
    expect(issues(scenario({ steps: [{ poison: { vma: 'ram', offset: '64M' } }] }))).toEqual([
      'steps[0].poison.offset: offset 0x4000000 is past the end of VMA "ram" (0x4000000 bytes)',
    ]);
  });

  it('a later step may name a VMA an mmap step created', () => {
    const s = parseScenario(
      scenario({
        steps: [
          { mmap: { name: 'new', start: '0x7f00_1000_0000', size: '2M', backing: 'anon', prot: 'rw' } },
          { munmap: { vma: 'new', offset: 0, size: '1M' } },
        ],
      }),
    );
    expect(s.steps[1]).toEqual({ kind: 'munmap', index: 1, vma: 'new', offset: 0, size: 0x10_0000 });
  });
});
