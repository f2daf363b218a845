/**
 * Numbers as scenario messages and reports show them: hex addresses and sizes with binary
 * suffixes (docs/scenario.md, "Values"). Parsing is in values.ts, which reports through the
 * messages in errors.ts; these sit below both, so that the messages can format numbers without
 * errors.ts and values.ts importing each other.
 */

/**
 * Format a non-negative safe integer as lower-case hex with a `0x` prefix, zero-padded to at least
 * `minDigits` digits (`formatHex(0x802007fd, 16)` is `"0x00000000802007fd"`, as the output's `desc`).
 *
 * Returns the hex string; throws a RangeError for negative, fractional or unsafe numbers.
 */
export function formatHex(n: number, minDigits = 0): string {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`formatHex: ${n} is not a non-negative safe integer`);
  return '0x' + n.toString(16).padStart(minDigits, '0');
}

/**
 * Format a size for people: the largest binary suffix that divides it exactly (`"2M"`, `"64K"`),
 * or hex when none does.
 *
 * Returns the string; parsing it with tryParseValue() gives `n` back.
 */
export function formatSize(n: number): string {
  if (n > 0) {
    for (const [suffix, unit] of [
      ['P', 2 ** 50],
      ['T', 2 ** 40],
      ['G', 2 ** 30],
      ['M', 2 ** 20],
      ['K', 2 ** 10],
    ] as const) {
      if (n % unit === 0) return `${n / unit}${suffix}`;
    }
  }
  return formatHex(n);
}
