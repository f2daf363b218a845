/**
 * CLI input errors and file reading: what the CLI reports as a message with exit status 2,
 * never as a stack trace.
 */

import { readFileSync } from 'node:fs';
import { ScenarioError, formatIssue } from '../scenario/errors.js';
import { parseScenarioText } from '../scenario/parse.js';
import type { Scenario } from '../scenario/types.js';

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

/**
 * Parses scenario text read from `where` (a file name, or `<stdin>`). A rejected scenario
 * becomes a CliInputError listing every issue a line, in the editor's FILE:LINE:COL: format,
 * after `prefix` (default "WHERE: scenario rejected:"). Returns the scenario.
 */
export function parseScenarioInput(
  text: string,
  where: string,
  prefix = `${where}: scenario rejected:`,
): Scenario {
  try {
    return parseScenarioText(text);
  } catch (e) {
    if (e instanceof ScenarioError)
      throw new CliInputError(`${prefix}\n${e.issues.map((i) => formatIssue(i, where)).join('\n')}`);
    throw e;
  }
}
