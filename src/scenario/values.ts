/**
 * Addresses and sizes in scenario files (docs/scenario.md, "Values").
 *
 * A value is a JSON number (a non-negative safe integer) or a string: hex `"0x8000_0000"`, decimal
 * `"4096"`, or a decimal count with a binary suffix `"4K"`, `"2M"`, `"1G"`, `"1T"`, `"1P"` (case
 * does not matter). Underscores may separate digits in any of them. Everything is a plain number,
 * so values of 2^53 or more are rejected rather than rounded.
 */

import { M, ScenarioError } from './errors.js';

/** The exclusive upper bound of a value: 2^53, the first integer a double cannot tell from its neighbour. */
export const VALUE_LIMIT = 2 ** 53;

/** The result of tryParseValue(): the number, or the reason it is not one. */
export type ValueResult =
  { readonly ok: true; readonly value: number } | { readonly ok: false; readonly message: string };

const HEX = /^0[xX]([0-9a-fA-F]+(?:_[0-9a-fA-F]+)*)$/;
const DECIMAL = /^([0-9]+(?:_[0-9]+)*)([kKmMgGtTpP]?)$/;

/** Binary suffix multipliers. */
const SUFFIX: Readonly<Record<string, number>> = {
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
};

/**
 * Parse a scenario address or size without throwing.
 *
 * Returns `{ ok: true, value }` for a valid value, or `{ ok: false, message }` with the message the
 * parser reports under the value's key path.
 */
export function tryParseValue(input: unknown): ValueResult {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || !Number.isInteger(input)) return fail(M.valueNotInteger(input));
    if (input < 0) return fail(M.valueNegative(String(input)));
    if (input >= VALUE_LIMIT) return fail(M.valueTooLarge(String(input)));
    return { ok: true, value: input };
  }
  if (typeof input !== 'string') return fail(M.valueType);
  const text = input.trim() === input ? input : '';
  if (text.startsWith('-') && tryParseValue(text.slice(1)).ok)
    return fail(M.valueNegative(JSON.stringify(input)));
  const hex = HEX.exec(text);
  if (hex) {
    // Exact: parseInt with radix 16 computes the mathematical value, and after dropping leading
    // zeros anything below 2^53 (13 digits, or 14 starting with 1) converts to a double exactly.
    const digits = hex[1]!.replaceAll('_', '').replace(/^0+(?=.)/, '');
    if (digits.length > 14 || (digits.length === 14 && digits[0] !== '1')) {
      return fail(M.valueTooLarge(JSON.stringify(input)));
    }
    return { ok: true, value: parseInt(digits, 16) };
  }
  const dec = DECIMAL.exec(text);
  if (dec) {
    // A rounded result is never a safe integer when the true value is 2^53 or more, and exact below.
    const value = Number(dec[1]!.replaceAll('_', '')) * (dec[2] ? SUFFIX[dec[2].toLowerCase()]! : 1);
    if (!Number.isSafeInteger(value)) return fail(M.valueTooLarge(JSON.stringify(input)));
    return { ok: true, value };
  }
  return fail(M.valueSyntax(input));
}

/**
 * Parse a scenario address or size, for code that builds scenarios by hand.
 *
 * Returns the number; throws a ScenarioError (with path `""`) if `input` is not a valid value.
 */
export function parseValue(input: unknown): number {
  const result = tryParseValue(input);
  if (!result.ok) throw new ScenarioError([{ path: '', message: result.message }]);
  return result.value;
}

function fail(message: string): ValueResult {
  return { ok: false, message };
}
