/**
 * The public API is a curated list (src/index.ts names every export) and api/exports.txt
 * records it with each name's kind: this test fails when an export is added, removed or
 * changes kind without the report being regenerated (`npm run api-report`), and when a public
 * signature names a type the package does not export (a consumer could not name it).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REPORT_FILE, apiReport } from '../scripts/api-report.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('the public API report', () => {
  const report = apiReport();

  it('matches api/exports.txt (run `npm run api-report` after a deliberate change)', () => {
    expect(report.text).toBe(readFileSync(REPORT_FILE, 'utf8'));
  }, 60_000);

  it('exports every type that a public signature names', () => {
    expect(report.unexported).toEqual([]);
  });

  it('names every export in src/index.ts (no export *)', () => {
    const index = readFileSync(join(root, 'src', 'index.ts'), 'utf8');
    expect(index).not.toMatch(/^export \*/m);
  });

  it('keeps internal helpers out', () => {
    for (const name of [
      'pow2',
      'alignDown',
      'TWO32',
      'buildValidLeafPte',
      's2MemAttrCode',
      'TABLE_ARENA_BASE',
    ])
      expect(report.text, name).not.toMatch(new RegExp(`^${name}:`, 'm'));
  });
});
