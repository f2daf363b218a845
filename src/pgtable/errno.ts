/**
 * Negative errno values: the return codes of the page-table code, the fault path and the host
 * model, as the kernel returns them (include/uapi/asm-generic/errno-base.h and errno.h give the
 * numbers). The hot path returns these, never throws; see docs/architecture.md, "The calling
 * convention".
 *
 * They live apart from the descriptor layout (descriptor.ts) because every layer returns them,
 * not only the code that builds descriptors.
 */

/** -EPERM: operation not permitted. */
export const EPERM = -1;
/** -ENOENT: no such entry. */
export const ENOENT = -2;
/** -E2BIG: the walker's "no leaf possible at this level: descend". */
export const E2BIG = -7;
/** -ENOEXEC: an exec fault KVM refuses (user_mem_abort()); becomes an injected instruction abort. */
export const ENOEXEC = -8;
/** -EAGAIN: lost a race or nothing to change; "retry the guest" in a fault, "keep going" in a walk. */
export const EAGAIN = -11;
/** -ENOMEM: the memcache (or a host allocation) ran out. */
export const ENOMEM = -12;
/** -EFAULT: bad address (no VMA, no usable pfn, a refused VMM write). */
export const EFAULT = -14;
/** -EINVAL: invalid argument (a misaligned range, an unsupported mapping). */
export const EINVAL = -22;
/** -ERANGE: out of range (past the VM's IPA space). */
export const ERANGE = -34;
/** -ENOSYS: not implemented (an abort KVM cannot handle and userspace did not ask for). */
export const ENOSYS = -38;

const ERRNO_NAMES: Record<number, string> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [E2BIG]: 'E2BIG',
  [ENOEXEC]: 'ENOEXEC',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [EINVAL]: 'EINVAL',
  [ERANGE]: 'ERANGE',
  [ENOSYS]: 'ENOSYS',
};

/** The name of a negative errno (`-22` → `"EINVAL"`); `"0"` for success. Returns the name. */
export function errnoName(err: number): string {
  if (err === 0) return '0';
  return ERRNO_NAMES[err] ?? `E${-err}`;
}
