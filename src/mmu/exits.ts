/**
 * How a handled abort leaves the vCPU: the exit to userspace KVM chose, or the exception it
 * injected into the guest.
 */

/** vcpu->run->exit_reason values that matter here: none (resume the guest). */
export const EXIT_NONE = 0;
/** KVM_EXIT_MMIO: the VMM emulates the access. */
export const EXIT_MMIO = 1;
/** KVM_EXIT_ARM_NISV: an MMIO access without a valid syndrome, for a VMM that asked. */
export const EXIT_ARM_NISV = 2;

/** No exception injected. */
export const INJECTED_NONE = 0;
/** An instruction abort (kvm_inject_sea_iabt, kvm_inject_size_fault on a fetch). */
export const INJECTED_IABT = 1;
/** A data abort (kvm_inject_sea_dabt, kvm_inject_size_fault on a load or store). */
export const INJECTED_DABT = 2;
/** An SError (kvm_inject_serror). */
export const INJECTED_SERROR = 3;
