/**
 * kvm_handle_guest_abort() (arch/arm64/kvm/mmu.c; steps 1-12 in docs/decisions.md): the steps, the MMIO / read-only-slot
 * table, io_mem_abort() outcomes, the access-flag path and the injected aborts.
 */
import { describe, expect, it } from 'vitest';
import { kvmHandleGuestAbort } from '../src/mmu/abort.js';
import { makeEsr } from '../src/mmu/esr.js';
import { INJECTED_SERROR } from '../src/mmu/exits.js';
import { userMemAbort } from '../src/mmu/fault.js';
import { hex64 } from '../src/pgtable/descriptor.js';
import { LeafResult } from '../src/pgtable/stage2.js';
import { CPU_FWB_DIC, accesses, faults, leaf, more, run, scenario } from './helpers/scenarios.js';

/** A page IPA with no memslot (MMIO) in the default scenario. */
const HOLE = 0x5000_0000;

describe('step 8: no memslot (error hva)', () => {
  const r = run(
    scenario({
      steps: accesses(
        ['read', HOLE + 0x18],
        ['write', HOLE],
        ['exec', HOLE],
        ['ld-preidx', HOLE],
        ['dc-civac', HOLE],
      ),
    }),
  );
  const [read, write, exec, ldp, dc] = r.lines;

  it('a load with a valid syndrome exits with KVM_EXIT_MMIO (handler returns 0)', () => {
    expect(read!.outcome).toBe('mmio');
    expect(faults(read!)).toEqual(['translation L1 io_mem_abort 0']);
    expect(read!.leaf).toBeNull();
    expect(write!.outcome).toBe('mmio');
    expect(faults(write!)).toEqual(['translation L1 io_mem_abort 0']);
    expect(r.summary.mmioExits).toBe(2);
  });

  it('the IPA the VMM sees includes HFAR[11:0]', () => {
    const extra = more(r, 'read', HOLE + 0x2a8);
    expect(extra.outcome).toBe('mmio');
    expect(r.runner.vcpu.mmioIpa).toBe(HOLE + 0x2a8);
  });

  it('an instruction fetch gets -ENOEXEC, turned into an injected instruction abort', () => {
    expect(exec!.outcome).toBe('iabt');
    expect(faults(exec!)).toEqual(['translation L1 kvm_inject_sea_iabt -8']);
    expect(r.summary.injected).toBe(1);
  });

  it('no valid syndrome and no KVM_CAP_ARM_NISV_TO_USER: KVM_RUN fails with -ENOSYS', () => {
    expect(ldp!.outcome).toBe('error');
    expect(ldp!.errno).toBe('ENOSYS');
    expect(faults(ldp!)).toEqual(['translation L1 io_mem_abort -38']);
    expect(r.summary.errors).toEqual({ ENOSYS: 1 });
  });

  it('a cache-maintenance instruction on no memory is skipped (ret 1, guest resumes)', () => {
    expect(dc!.outcome).toBe('done');
    expect(faults(dc!)).toEqual(['translation L1 kvm_incr_pc 1']);
    expect(dc!.leaf).toBeNull();
  });
});

describe('step 8: NISV to userspace', () => {
  it('each access without a valid syndrome exits KVM_EXIT_ARM_NISV when userspace asked', () => {
    const r = run(
      scenario({
        vm: { ipaBits: 40, nisvToUser: true },
        steps: accesses(
          ['ld-preidx', HOLE],
          ['st-preidx', HOLE],
          ['dc-zva', HOLE],
          ['cas', HOLE],
          ['read', HOLE],
        ),
      }),
    );
    expect(r.lines.map((l) => l.outcome)).toEqual(['nisv', 'nisv', 'nisv', 'nisv', 'mmio']);
    expect(r.lines.every((l) => l.faults[0]!.handler === 'io_mem_abort' && l.faults[0]!.ret === 0)).toBe(
      true,
    );
    expect(r.summary.errors).toEqual({});
  });
});

describe('step 8: read-only memslot', () => {
  const r = run(
    scenario({
      memslots: [{ slot: 0, gpa: 0x4000_0000, size: '64M', vma: 'ram', flags: ['readonly'] }],
      steps: accesses(
        ['read', 0x4000_1000],
        ['write', 0x4000_1000],
        ['write', 0x4000_3000],
        ['dc-civac', 0x4000_2000],
        ['exec', 0x4000_4000],
      ),
    }),
  );
  const [read, wMapped, wUnmapped, dc, exec] = r.lines;

  it('a read maps the page without W (writable is false for a read-only slot)', () => {
    expect(read!.outcome).toBe('done');
    expect(faults(read!)).toEqual(['translation L1 user_mem_abort 0']);
    // zero page at PA 0x80000000: L3 page, R, X (DIC), Normal-WB FWB (6<<2), SH IS, AF.
    expect(leaf(read!)).toBe('L3 0x40001000 0x1000 0x000000008000075b');
  });

  it('a write to a mapped read-only page is a permission fault that becomes MMIO', () => {
    expect(wMapped!.outcome).toBe('mmio');
    expect(faults(wMapped!)).toEqual(['permission L3 io_mem_abort 0']);
    expect(wMapped!.leaf!.desc).toBe('0x000000008000075b');
  });

  it('a write to an unmapped read-only page is MMIO too', () => {
    expect(wUnmapped!.outcome).toBe('mmio');
    expect(faults(wUnmapped!)).toEqual(['translation L3 io_mem_abort 0']);
    expect(wUnmapped!.leaf).toBeNull();
  });

  it('a write-CMO to a read-only slot is not skipped: it reaches io_mem_abort (no ISV → -ENOSYS)', () => {
    expect(dc!.outcome).toBe('error');
    expect(dc!.errno).toBe('ENOSYS');
    expect(faults(dc!)).toEqual(['translation L3 io_mem_abort -38']);
  });

  it('an instruction fetch is never a write: it maps normally', () => {
    expect(exec!.outcome).toBe('done');
    expect(faults(exec!)).toEqual(['translation L3 user_mem_abort 0']);
  });
});

describe('step 7: write_fault for an atomic (WnR=0 on translation, 1 on permission)', () => {
  it('CAS on a read-only slot: the read maps, the write half reaches io_mem_abort (no ISV → -ENOSYS)', () => {
    const r = run(
      scenario({
        memslots: [{ slot: 0, gpa: 0x4000_0000, size: '64M', vma: 'ram', flags: ['readonly'] }],
        steps: accesses(['cas', 0x4000_1000]),
      }),
    );
    expect(r.lines[0]!.errno).toBe('ENOSYS');
    expect(faults(r.lines[0]!)).toEqual([
      'translation L1 user_mem_abort 0',
      'permission L3 io_mem_abort -38',
    ]);
  });
  it('CAS on RAM: zero page first, then the write permission fault breaks CoW and remaps', () => {
    const r = run(scenario({ steps: accesses(['cas', 0x4000_1000]) }));
    expect(faults(r.lines[0]!)).toEqual([
      'translation L1 user_mem_abort 0',
      'permission L3 user_mem_abort 0',
      'translation L1 user_mem_abort 0',
    ]);
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
  });
});

describe('step 3: translation faults beyond the IPA space', () => {
  const r = run(
    scenario({
      paBits: 40,
      vm: { ipaBits: 36 },
      memslots: [],
      steps: accesses(
        ['read', 0x10_0000_0000],
        ['exec', 0x10_0000_0000],
        ['write', 0x100_0000_0000],
        ['exec', 0x100_0000_0000],
      ),
    }),
  );
  it('beyond the VM IPA size (VTCR) but inside the host limit: injected external abort', () => {
    expect(r.lines[0]!.outcome).toBe('dabt');
    expect(faults(r.lines[0]!)).toEqual(['translation L0 kvm_inject_sea 1']);
    expect(r.lines[1]!.outcome).toBe('iabt');
    expect(faults(r.lines[1]!)).toEqual(['translation L0 kvm_inject_sea 1']);
  });
  it('beyond get_kvm_ipa_limit(): injected size fault', () => {
    expect(r.lines[2]!.outcome).toBe('dabt');
    expect(faults(r.lines[2]!)).toEqual(['translation L0 kvm_inject_size_fault 1']);
    expect(r.lines[3]!.outcome).toBe('iabt');
    expect(faults(r.lines[3]!)).toEqual(['translation L0 kvm_inject_size_fault 1']);
    expect(r.summary.injected).toBe(4);
  });
});

describe('step 10: access-flag faults', () => {
  it('after aging, the access takes an access-flag fault, handled by mkyoung (ret 1), AF set again', () => {
    // A CPU without FEAT_HAFDBS: VTCR_EL2.HA is RES0, so the MMU does not set AF itself.
    const r = run(
      scenario({
        cpu: { ...CPU_FWB_DIC, hafdbs: false },
        steps: [
          ...accesses(['write', 0x4000_1000]),
          { age: { ipa: 0x4000_0000, size: '2M' } },
          ...accesses(['write', 0x4000_1000]),
        ],
      }),
    );
    expect(leaf(r.lines[0]!)).toBe('L3 0x40001000 0x1000 0x00000000800017db');
    expect(faults(r.lines[1]!)).toEqual(['access-flag L3 handle_access_fault 1']);
    expect(r.lines[1]!.outcome).toBe('done');
    expect(r.lines[1]!.leaf!.desc).toBe('0x00000000800017db');
    expect(r.summary.mkyoungs).toBe(1);
    expect(r.summary.maps).toBe(1);
    // Between the two: the aged leaf has AF (bit 10) clear and is otherwise unchanged.
    const r2 = run(
      scenario({ steps: [...accesses(['write', 0x4000_1000]), { age: { ipa: 0x4000_0000, size: '2M' } }] }),
    );
    const l = new LeafResult();
    expect(r2.runner.kvm.pgt.getLeaf(0x4000_1000, l)).toBe(0);
    expect(hex64(l.lo, l.hi)).toBe('0x00000000800013db');
  });

  it('with FEAT_HAFDBS (kvm_get_vtcr() sets VTCR_EL2.HA) the walk sets AF: no fault, no mkyoung', () => {
    const r = run(
      scenario({
        steps: [
          ...accesses(['write', 0x4000_1000]),
          { age: { ipa: 0x4000_0000, size: '2M' } },
          ...accesses(['write', 0x4000_1000]),
        ],
      }),
    );
    expect(faults(r.lines[1]!)).toEqual([]);
    expect(r.lines[1]!.leaf!.desc).toBe('0x00000000800017db');
    expect(r.summary.mkyoungs).toBe(0);
  });
});

describe('steps 1 and 4: syndromes a stage-1-off guest cannot raise (driven directly)', () => {
  function prepared() {
    const r = run(scenario({ steps: accesses(['write', 0x4000_1000]) }));
    return r;
  }

  it('a synchronous external abort goes to kvm_handle_guest_sea: SError injected, ret 1', () => {
    const r = prepared();
    const v = r.runner.vcpu;
    v.esr = makeEsr(false, 0x10, false, true, false, false);
    v.faultIpa = 0x4000_1000;
    v.far = 0x4000_1000;
    expect(kvmHandleGuestAbort(v)).toBe(1);
    expect(v.handler).toBe('kvm_handle_guest_sea');
    expect(v.injected).toBe(INJECTED_SERROR);
    // Checked before anything else: even an IPA beyond the VM's space.
    v.faultIpa = 2 ** 45;
    v.esr = makeEsr(false, 0x15, false, true, false, false);
    expect(kvmHandleGuestAbort(v)).toBe(1);
    expect(v.handler).toBe('kvm_handle_guest_sea');
  });

  it('an FSC that is none of translation/permission/access flag: -EFAULT with "Unsupported FSC"', () => {
    const r = prepared();
    const v = r.runner.vcpu;
    v.esr = makeEsr(false, 0x21, false, true, false, false); // alignment fault
    v.faultIpa = 0x4000_1000;
    expect(kvmHandleGuestAbort(v)).toBe(-14);
    expect(r.runner.kvm.diagnostics.some((d) => d.startsWith('Unsupported FSC'))).toBe(true);
    expect(r.runner.kvm.locks.isBalanced()).toBe(true);
  });

  it('6.17: a permission fault that is neither write nor exec is -EFAULT (S1)', () => {
    const r = prepared();
    const v = r.runner.vcpu;
    v.esr = makeEsr(false, 0x0f, false, true, false, false); // permission L3, WnR = 0
    v.faultIpa = 0x4000_1000;
    v.far = 0x4000_1000;
    expect(kvmHandleGuestAbort(v)).toBe(-14);
    expect(v.handler).toBe('user_mem_abort');
    expect(r.runner.kvm.diagnostics).toContain('Unexpected L2 read permission error');
    // Returned before any lock or memcache work.
    expect(r.runner.kvm.locks.isBalanced()).toBe(true);
    const slot = r.runner.kvm.gfnToMemslot(0x40001)!;
    const f = v.fault;
    f.reset();
    f.faultIpa = 0x4000_1000;
    f.hva = 0x7f00_0000_1000;
    f.memslot = slot;
    f.isPerm = true;
    expect(userMemAbort(v, f)).toBe(-14);
  });
});
