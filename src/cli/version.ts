/**
 * The package's own version, read from its package.json (two directories up from this module
 * in both the source tree and dist/), for `--version`, internal-error lines and the JSON
 * summary's record of what produced it.
 */

import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** s2emu's version, e.g. "0.1.0" ("unknown" if package.json cannot be read). */
export function s2emuVersion(): string {
  if (cached !== undefined) return cached;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}
