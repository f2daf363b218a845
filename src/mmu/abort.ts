/**
 * kvm_handle_guest_abort() (arch/arm64/kvm/mmu.c, v6.17): the stage-2 abort handler, the
 * MMIO / read-only-slot path and io_mem_abort(), the access-flag path, and the exceptions
 * KVM injects.
 */

import { EFAULT, ENOEXEC, ENOSYS } from '../pgtable/errno.js';
import { S2Op } from '../pgtable/op.js';
import {
  esrFscIsAccessFlagFault,
  esrFscIsPermissionFault,
  esrFscIsTranslationFault,
  esrIsCm,
  esrIsIabt,
  esrIsS1ptw,
  esrIsv,
  kvmIsWriteFault,
  kvmVcpuAbtIssea,
} from './esr.js';
import { FAULT_WALK_FLAGS, userMemAbort } from './fault.js';
import { gfnToHvaMemslotProtInto, kvmIsErrorHva } from './memslots.js';
import { EXIT_ARM_NISV, EXIT_MMIO, INJECTED_DABT, INJECTED_IABT, INJECTED_SERROR } from './exits.js';
import type { Vcpu } from './vcpu.js';

/** kvm_inject_sea(vcpu, iabt, addr): a synchronous external abort for the guest. Returns 1. */
function kvmInjectSea(vcpu: Vcpu, iabt: boolean): number {
  vcpu.injected = iabt ? INJECTED_IABT : INJECTED_DABT;
  return 1;
}

/**
 * io_mem_abort(vcpu, fault_ipa), with fault_ipa in vcpu.mmioIpa: an access to an address with
 * no memory behind it. With a valid syndrome KVM exits with KVM_EXIT_MMIO for the VMM to
 * emulate (no in-kernel device is modelled); without one, KVM_EXIT_ARM_NISV if userspace
 * asked for it, else −ENOSYS. Returns 0 for an exit to userspace or −ENOSYS.
 */
function ioMemAbort(vcpu: Vcpu): number {
  if (!esrIsv(vcpu.esr)) {
    if (vcpu.kvm.nisvToUser) {
      vcpu.exitReason = EXIT_ARM_NISV;
      return 0;
    }
    return ENOSYS;
  }
  vcpu.exitReason = EXIT_MMIO;
  return 0;
}

/** handleAccessFault()'s operands for the page table (reused: see S2Op). */
const mkyoungOp = new S2Op();

/**
 * handle_access_fault(): sets AF on the leaf (kvm_pgtable_stage2_mkyoung) under the
 * mmu_lock read side. Allocates nothing.
 */
function handleAccessFault(vcpu: Vcpu): void {
  const kvm = vcpu.kvm;
  kvm.locks.mmuReadLock();
  kvm.stats.mkyoungs++;
  mkyoungOp.addr = vcpu.faultIpa;
  kvm.pgt.mkyoungOp(mkyoungOp, FAULT_WALK_FLAGS);
  if (kvm.provenance !== null) kvm.provenance.recordMkyoung(vcpu);
  kvm.locks.mmuReadUnlock();
}

/**
 * kvm_handle_guest_abort(vcpu): handles the stage-2 abort described by vcpu.esr,
 * vcpu.faultIpa (HPFAR: the IPA's page, 4K-aligned) and vcpu.far (the faulting address).
 * Returns 1 to resume the guest (possibly with an injected exception), 0 to exit to
 * userspace, or a negative errno for KVM_RUN.
 */
export function kvmHandleGuestAbort(vcpu: Vcpu): number {
  const kvm = vcpu.kvm;
  const esr = vcpu.esr;
  const isIabt = esrIsIabt(esr);
  vcpu.handler = 'none';
  vcpu.handlerRet = 0;

  // Synchronous external aborts: not claimed by firmware here, so an SError.
  if (kvmVcpuAbtIssea(esr)) {
    vcpu.handler = 'kvm_handle_guest_sea';
    vcpu.injected = INJECTED_SERROR;
    vcpu.handlerRet = 1;
    return 1;
  }

  // The fault IPA from HPFAR_EL2.
  const faultIpa = vcpu.faultIpa;
  let ipa = faultIpa;

  // Translation faults beyond the IPA space.
  if (esrFscIsTranslationFault(esr)) {
    if (faultIpa >= kvm.ipaLimit) {
      // kvm_inject_size_fault()
      vcpu.handler = 'kvm_inject_size_fault';
      return (vcpu.handlerRet = kvmInjectSea(vcpu, isIabt));
    }
    if (faultIpa >= kvm.physSize) {
      // kvm_inject_sea(vcpu, is_iabt, fault_ipa | HFAR[11:0])
      vcpu.handler = 'kvm_inject_sea';
      return (vcpu.handlerRet = kvmInjectSea(vcpu, isIabt));
    }
  }

  // Only translation, permission and access-flag faults get this far.
  if (!esrFscIsTranslationFault(esr) && !esrFscIsPermissionFault(esr) && !esrFscIsAccessFlagFault(esr)) {
    kvm.diagnose(`Unsupported FSC: ESR 0x${(esr >>> 0).toString(16)}`);
    vcpu.handlerRet = EFAULT;
    return EFAULT;
  }

  // SRCU read side: every later exit goes through the unlock.
  const idx = kvm.locks.srcuReadLock();
  let ret: number;
  out: {
    // The memslot and its host address (gfn_to_hva_memslot_prot()), into the fault object.
    const fault = vcpu.fault;
    fault.reset();
    fault.faultIpa = faultIpa;
    fault.gfn = Math.floor(ipa / kvm.pageSize);
    const memslot = kvm.gfnToMemslotOp(fault);
    fault.memslot = memslot;
    gfnToHvaMemslotProtInto(memslot, kvm.pageShift, fault);
    const hva = fault.hva;
    const writable = memslot ? fault.writable : false;
    const writeFault = kvmIsWriteFault(esr);

    // No usable slot, or a write to a read-only one: MMIO, or an injected abort.
    if (kvmIsErrorHva(hva) || (writeFault && !writable)) {
      vcpu.handler = 'io_mem_abort';
      if (isIabt) {
        // No memory to fetch from: -ENOEXEC, which step 12 turns into an instruction abort.
        vcpu.handler = 'kvm_inject_sea_iabt';
        ret = vcpu.handlerRet = ENOEXEC;
        break out;
      }
      if (esrIsS1ptw(esr)) {
        vcpu.handler = 'kvm_inject_sea_dabt';
        ret = vcpu.handlerRet = kvmInjectSea(vcpu, false);
        break out;
      }
      if (kvmIsErrorHva(hva) && esrIsCm(esr)) {
        // A cache-maintenance instruction on no memory: skip it (kvm_incr_pc).
        vcpu.handler = 'kvm_incr_pc';
        vcpu.pcSkipped = true;
        ret = vcpu.handlerRet = 1;
        break out;
      }
      ipa += (vcpu.far >>> 0) & 0xfff;
      vcpu.mmioIpa = ipa;
      ret = vcpu.handlerRet = ioMemAbort(vcpu);
      break out;
    }

    // Access flag: mkyoung the leaf.
    if (esrFscIsAccessFlagFault(esr)) {
      vcpu.handler = 'handle_access_fault';
      handleAccessFault(vcpu);
      ret = vcpu.handlerRet = 1;
      break out;
    }

    // user_mem_abort(vcpu, fault_ipa, NULL, memslot, hva, fault_is_perm); 0 becomes 1.
    vcpu.handler = 'user_mem_abort';
    fault.isPerm = esrFscIsPermissionFault(esr);
    ret = vcpu.handlerRet = userMemAbort(vcpu, fault);
    if (ret === 0) ret = 1;
  }
  // -ENOEXEC becomes an injected instruction abort.
  if (ret === ENOEXEC) ret = kvmInjectSea(vcpu, true);
  kvm.locks.srcuReadUnlock(idx);
  return ret;
}
