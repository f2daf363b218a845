/**
 * The CLI as a user runs it, from the sources: a child process running src/cli/main.ts under
 * tsx, in the repository root, with `input` on its standard input. Returns the exit status and
 * what it printed.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vi } from 'vitest';
import { cli } from '../../src/cli/app.js';

/** The repository root. */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * How long one CLI run may take before it is killed: far beyond any test's run, so that a
 * command that hangs (a sweep waiting on a worker, say) fails its test instead of the suite.
 */
const CLI_TIMEOUT_MS = 120_000;

/** Runs `s2emu ARGS` (from the sources). A run killed at CLI_TIMEOUT_MS has status null. */
export function s2emu(
  args: string[],
  input?: string,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    input,
    encoding: 'utf8',
    timeout: CLI_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const killed = r.error !== undefined ? `\n[test helper: s2emu ${args.join(' ')}: ${r.error.message}]` : '';
  return { status: r.status, stdout: r.stdout, stderr: r.stderr + killed };
}

/**
 * Runs `s2emu ARGS` in this process (cli(): the same parsing, output and exit status as the
 * executable, much faster than a process per case), capturing what it writes. Output is plain
 * whatever the environment (picocolors turns colour on under CI=true).
 */
export function s2emuHere(args: string[]): {
  status: number | string | undefined;
  stdout: string;
  stderr: string;
} {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    stdout += String(c);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    stderr += String(c);
    return true;
  });
  try {
    cli([...args, '--no-color']);
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  const status = process.exitCode;
  process.exitCode = 0;
  return { status, stdout, stderr };
}

/**
 * Captures what is written to standard output from now on (restore with vi.restoreAllMocks()).
 * Returns a reader of the text so far.
 */
export function captureStdout(): { text: () => string } {
  let buf = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    buf += String(s);
    return true;
  });
  return { text: () => buf };
}
