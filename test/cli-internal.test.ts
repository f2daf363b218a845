/**
 * The CLI's last line of defence: an internal error (a bug, not bad input) prints one line
 * naming "internal error" and s2emu's version, exit status 1, and the stack only with --debug.
 * The run command is replaced by one that throws, as a bug would.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

vi.mock('../src/cli/run.js', () => ({
  runCommand: () => {
    throw new TypeError('boom: something the model did not expect');
  },
}));

const { cli } = await import('../src/cli/app.js');
const { s2emuVersion } = await import('../src/cli/version.js');

function captureStderr(argv: string[]): { err: string; code: number | string | undefined } {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    chunks.push(typeof c === 'string' ? c : Buffer.from(c).toString('utf8'));
    return true;
  });
  const before = process.exitCode;
  try {
    cli(argv);
    return { err: chunks.join(''), code: process.exitCode };
  } finally {
    spy.mockRestore();
    process.exitCode = before;
  }
}

describe('an internal error', () => {
  afterEach(() => vi.restoreAllMocks());

  it('is one line with "internal error" and the version, status 1, no stack', () => {
    const { err, code } = captureStderr(['run', 'examples/vfio-bar.json']);
    expect(code).toBe(1);
    expect(err.split('\n')[0]).toBe(
      `s2emu: internal error (s2emu ${s2emuVersion()}): boom: something the model did not expect`,
    );
    expect(err).not.toMatch(/\n\s+at /);
    expect(err).toContain('--debug');
  });

  it('shows the stack with --debug', () => {
    const { err, code } = captureStderr(['run', 'examples/vfio-bar.json', '--debug']);
    expect(code).toBe(1);
    expect(err).toMatch(/TypeError: boom[^\n]*\n\s+at /);
  });
});
