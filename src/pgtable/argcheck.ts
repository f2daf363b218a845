/**
 * Argument checks of the public, argument-taking entry points (docs/decisions.md, "API
 * boundary (issue 11)").
 *
 * A call the modelled kernel could not even receive (an address that is NaN, negative,
 * fractional or past 2^52, a size of zero, a prot with bits that mean nothing, a string where
 * a number belongs) throws here, before anything changes: a RangeError for a number outside
 * the rule, a TypeError for a value of the wrong type, the message naming the function, the
 * argument and the rule (`vcpu.access: addr must be a whole number from 0 to 2^53 - 1, got
 * -4096`). What the kernel itself decides (−ERANGE past the VM's IPA space, −EINVAL for a
 * misaligned range, −ENOMEM) stays a return value, bit for bit.
 *
 * The checks are a few comparisons in the small wrappers (`map`, `access`, ...); the hot
 * `...Op` and `...Req` forms the fault path uses are not checked. The throwing half is kept
 * out of line so that the wrappers stay small enough to inline.
 */

/** Addresses and sizes at the API boundary are below 2^52, the architecture's largest IPA and VA. */
export const ADDR_LIMIT = 2 ** 52;

/** True when `v` is a number, a whole one, from `min` to `max` inclusive (NaN is not). */
export function isWhole(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && v >= min && v <= max && Math.floor(v) === v;
}

/** A value for a message: numbers as written (hex past 2^32), strings quoted and cut short. */
function shown(v: unknown): string {
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) && Math.abs(v) >= 2 ** 32
      ? `${v < 0 ? '-' : ''}0x${Math.abs(v).toString(16)}`
      : String(v);
  }
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'bigint') return `${v}n (a bigint)`;
  if (v === null) return 'null';
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'no prototype'})`;
  return typeof v === 'function' ? 'a function' : String(v);
}

/**
 * Throws the boundary error for argument `name` of `fn` that breaks `rule`: by default a
 * RangeError when `got` is a number, a TypeError otherwise.
 */
export function badArgument(
  fn: string,
  name: string,
  rule: string,
  got: unknown,
  type: typeof RangeError | typeof TypeError = typeof got === 'number' ? RangeError : TypeError,
): never {
  throw new type(`${fn}: ${name} must be ${rule}, got ${shown(got)}`);
}

/** The rule of an address argument. */
export const ADDR_RULE = 'a whole number from 0 to 2^52 - 1';
/** The rule of an address that may be anything a guest can name (`vcpu.access`): exact as a double. */
export const EXACT_RULE = 'a whole number from 0 to 2^53 - 1';
/** The rule of a size argument. */
export const SIZE_RULE = 'a whole number from 1 to 2^52';

/** Checks an address argument: a whole number in [0, 2^52). */
export function checkAddr(fn: string, name: string, v: unknown): void {
  if (!isWhole(v, 0, ADDR_LIMIT - 1)) badArgument(fn, name, ADDR_RULE, v);
}

/** Checks a size argument: a whole number in [1, 2^52]. */
export function checkSize(fn: string, name: string, v: unknown): void {
  if (!isWhole(v, 1, ADDR_LIMIT)) badArgument(fn, name, SIZE_RULE, v);
}

/** Checks a boolean argument. */
export function checkBool(fn: string, name: string, v: unknown): void {
  if (typeof v !== 'boolean') badArgument(fn, name, 'true or false', v, TypeError);
}
