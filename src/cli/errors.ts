/**
 * CLI input errors and file reading: what the CLI reports as a message with exit status 2,
 * never as a stack trace.
 */

import { readFileSync } from 'node:fs';

/** A usage or input error: printed without a stack trace, exit status 2. */
export class CliInputError extends Error {
  override name = 'CliInputError';
}

/** Reads a file argument, or standard input for `-`. Returns the text. */
export function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    throw new CliInputError(
      `cannot read ${file === '-' ? 'standard input' : file}${code ? ` (${code})` : ''}`,
    );
  }
}
