import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { replayText } from '../src/replay/replay.js';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The golden vectors: test/vectors/, unless the project's upstream copy is checked out beside
 * the repository, which is then read instead (and is the only source of the LPA2 vectors).
 */
function vectorDir(sharedName: string, vendored: string | null): string | null {
  const shared = join(here, '..', '..', 'shared', sharedName);
  if (existsSync(shared)) return shared;
  return vendored !== null && existsSync(vendored) ? vendored : null;
}

function vectorNames(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ops'))
    .map((f) => f.slice(0, -4))
    .sort();
}

/**
 * Every vector byte for byte, four ways: the walk cache and the single-leaf fast paths are
 * optimisations only, so each combination must give the same bytes.
 */
function replayEveryWay(dir: string, name: string): void {
  const ops = readFileSync(join(dir, `${name}.ops`), 'utf8');
  const want = readFileSync(join(dir, `${name}.out`), 'utf8');
  expect(replayText(ops)).toBe(want);
  expect(replayText(ops, { walkCache: false })).toBe(want);
  expect(replayText(ops, { fastPaths: false })).toBe(want);
  expect(replayText(ops, { walkCache: false, fastPaths: false })).toBe(want);
}

const dir = vectorDir('vectors', join(here, 'vectors'))!;
const names = vectorNames(dir);

describe('golden replay vectors', () => {
  it('finds the vectors', () => {
    expect(names.length).toBeGreaterThan(100);
  });
  for (const name of names) {
    it(`${name} reproduces byte for byte (walk cache and fast paths on and off)`, () => {
      replayEveryWay(dir, name);
    });
  }
});

// FEAT_LPA2 (`lpa2=1`): 4K, 52-bit IPA from level 0 with 16 concatenated PGD pages.
const lpa2Dir = vectorDir('vectors-lpa2', null);
describe.runIf(lpa2Dir !== null)('golden replay vectors with LPA2', () => {
  const lpa2Names = lpa2Dir === null ? [] : vectorNames(lpa2Dir);
  it('finds the vectors', () => {
    expect(lpa2Names.length).toBeGreaterThan(0);
  });
  for (const name of lpa2Names) {
    it(`${name} reproduces byte for byte (walk cache and fast paths on and off)`, () => {
      replayEveryWay(lpa2Dir!, name);
    });
  }
});
