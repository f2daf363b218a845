/**
 * Shared pieces of the decoded views: the inspection hooks (looked up with Symbol.for, so no
 * Node import is needed) and small formatters.
 */

/** Node's `util.inspect.custom`: a view returns its one-line text. */
export const INSPECT_CUSTOM = Symbol.for('nodejs.util.inspect.custom');
/** The debugger description hook (VS Code js-debug): a view returns its one-line text. */
export const DEBUG_DESCRIPTION = Symbol.for('debug.description');

/**
 * A decoded view that prints as one line of text everywhere: `String(view)`, Node's inspect
 * (console.log) and a debugger's variables pane.
 */
export abstract class TextView {
  /** The one-line text. */
  abstract readonly text: string;

  /** Returns the one-line text. */
  toString(): string {
    return this.text;
  }

  /** Node's util.inspect hook. Returns the one-line text. */
  [INSPECT_CUSTOM](): string {
    return this.text;
  }

  /** The debugger's description hook. Returns the one-line text. */
  [DEBUG_DESCRIPTION](): string {
    return this.text;
  }
}

/** Formats a non-negative address below 2^53 as `0x` and minimal lower-case hex. Returns the text. */
export function hexShort(a: number): string {
  return '0x' + a.toString(16);
}

const UNITS = 'KMGTPE';

/**
 * Formats a byte count as the kernel's ptdump does: in KiB, then divided by 1024 while it
 * stays whole and a larger unit exists (4096 → "4K", 2^21 → "2M", 1.5 GiB → "1536M").
 * Returns the number and its unit letter.
 */
export function sizeUnit(bytes: number): string {
  let delta = Math.floor(bytes / 1024);
  let u = 0;
  while (delta % 1024 === 0 && u < UNITS.length - 1) {
    delta /= 1024;
    u++;
  }
  return `${delta}${UNITS[u]!}`;
}

/** The name of a level for text: `L3`, `L-1`. Returns the text. */
export function levelName(level: number): string {
  return `L${level}`;
}
