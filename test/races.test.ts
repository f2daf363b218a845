/**
 * Races user_mem_abort() survives (docs/scenario.md, "Host events": "race" on an access, first
 * fault only).
 * Each expected fault list follows arch/arm64/kvm/mmu.c (v6.17): a lost race makes
 * user_mem_abort() return -EAGAIN internally and 0 to kvm_handle_guest_abort() ("ret" 0 in the
 * faults list); the guest re-executes the access and faults again if nothing was installed.
 */
import { describe, expect, it } from 'vitest';
import { RAM_HVA, oneVma, scenario } from './helpers/scenarios.js';
import { faultList, runLines, stepLine } from './helpers/lines.js';

type Json = Record<string, unknown>;
const w = (ipa: string, race?: string): Json => ({ access: 'write', ipa, ...(race ? { race } : {}) });

describe('race "invalidate": mmu_invalidate_retry() after the mmu_seq sample', () => {
  const out = runLines(scenario({ steps: [w('0x40001000', 'invalidate'), w('0x40002000')] }));

  it('the first fault returns -EAGAIN (0) before mapping; the replayed fault maps', () => {
    const l = stepLine(out, 0);
    expect(l['outcome']).toBe('done');
    // Both faults are translation faults from level 1 (nothing was installed by the first).
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort 0', 'translation L1 user_mem_abort 0']);
    // RW anon page (FWB, DIC): the first page the host allocated after the zero page.
    expect(l['leaf']).toEqual({ ipa: '0x40001000', level: 3, size: '0x1000', desc: '0x00000000800017db' });
  });

  it('only the replay reached kvm_pgtable_stage2_map(); the race happened once', () => {
    // maps: the replay of step 0 and step 1's single fault.
    expect(out.summary.maps).toBe(2);
    expect(out.summary.faults).toBe(3);
    expect(out.runner.kvm.notifier.stats.invalidations).toBe(1);
    expect(faultList(stepLine(out, 1))).toEqual(['translation L3 user_mem_abort 0']);
  });
});

describe('race "zap-host-pte": get_user_mapping_size() finds no valid host leaf', () => {
  it('anon page: transparent_hugepage_adjust() returns -EAGAIN; the replay faults the page in again', () => {
    const out = runLines(scenario({ steps: [w('0x40001000', 'zap-host-pte')] }));
    const l = stepLine(out, 0);
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort 0', 'translation L1 user_mem_abort 0']);
    // The zapped page was freed (MADV_DONTNEED); the replay's write allocates another.
    expect(out.summary.hostPagesZeroed).toBe(2);
    // The zap's own invalidation ran once the fault had dropped mmu_lock.
    expect(out.runner.kvm.notifier.stats.invalidations).toBe(1);
    expect(l['leaf']['level']).toBe(3);
  });

  it('THP: the whole PMD leaf goes; the replay maps a new 2M folio as a 2M block', () => {
    const out = runLines(
      oneVma({ start: RAM_HVA, size: '4M', backing: 'thp', prot: 'rw' }, '0x40000000', {
        steps: [w('0x40001000', 'zap-host-pte')],
      }),
    );
    const l = stepLine(out, 0);
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort 0', 'translation L1 user_mem_abort 0']);
    expect(l['leaf']['size']).toBe('0x200000');
    expect(out.summary.hostPagesZeroed).toBe(1024); // two 2M folios, in 4K pages
  });

  it('a hugetlb fault never reaches the check (vma_pagesize is 2M): the race does not happen, and the run says so', () => {
    const out = runLines(
      oneVma({ start: RAM_HVA, size: '4M', backing: 'hugetlb', hugePage: '2M', prot: 'rw' }, '0x40000000', {
        steps: [w('0x40001000', 'zap-host-pte')],
      }),
    );
    expect(faultList(stepLine(out, 0))).toEqual(['translation L1 user_mem_abort 0']);
    expect(out.summary.diagnostics).toEqual([
      'steps[0]: race "zap-host-pte" did not happen: the access\'s first fault never reached its window',
    ]);
  });
});

describe('race "other-vcpu": the map finds the same leaf already present', () => {
  it('stage2_map_walker_try_leaf(): no update needed → -EAGAIN → 0; the guest retries and hits', () => {
    const out = runLines(scenario({ steps: [w('0x40001000', 'other-vcpu'), w('0x40001008')] }));
    const l = stepLine(out, 0);
    // One fault: after the -EAGAIN the retried access walks the other vCPU's leaf.
    expect(faultList(l)).toEqual(['translation L1 user_mem_abort 0']);
    expect(l['leaf']).toEqual({ ipa: '0x40001000', level: 3, size: '0x1000', desc: '0x00000000800017db' });
    // The next access to the page takes no fault: the leaf is the one the other vCPU made.
    expect(faultList(stepLine(out, 1))).toEqual([]);
    expect(out.summary.diagnostics).toEqual([]);
  });

  it('a permission fault races a relax: the other vCPU relaxes first, the access completes', () => {
    // A read maps the zero page read-only; the write's permission fault breaks CoW (with its
    // invalidation and a replay), so race the relax of a page the host already maps writable.
    const out = runLines(
      scenario({
        steps: [w('0x40001000'), { dirtyLog: { slot: 0, op: 'enable' } }, w('0x40001000', 'other-vcpu')],
      }),
    );
    const l = stepLine(out, 2);
    expect(l['outcome']).toBe('done');
    expect(faultList(l)).toEqual(['permission L3 user_mem_abort 0']);
    expect(l['leaf']['desc']).toBe('0x00000000800017db');
  });
});
