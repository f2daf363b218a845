import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const distEntry = join(root, 'dist', 'index.js');
const vectors = join(root, 'test', 'vectors');

// What users import is the built package (`npm test` builds it first, `npm pack` through `prepack`): the
// hand-written golden vectors must come out the same through dist as through src.
// Under CI the build must be there (npm test builds it): a missing dist is a failure, not a skip.
const haveDist = existsSync(distEntry) || process.env['CI'] === 'true';
describe.runIf(haveDist)('the built package (dist)', () => {
  it('reproduces the hand-written golden vectors through its public entry', async () => {
    const dist = (await import(pathToFileURL(distEntry).href)) as typeof import('../src/index.js');
    for (let n = 901; n <= 915; n++) {
      const ops = readFileSync(join(vectors, `${n}.ops`), 'utf8');
      const want = readFileSync(join(vectors, `${n}.out`), 'utf8');
      expect(dist.replayText(ops), `vector ${n}`).toBe(want);
    }
  });

  it('exports the documented API with its types', async () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: { '.': { types: string; default: string } };
    };
    expect(existsSync(join(root, pkg.exports['.'].types))).toBe(true);
    const dist = (await import(pathToFileURL(join(root, pkg.exports['.'].default)).href)) as Record<
      string,
      unknown
    >;
    for (const name of [
      'Stage2PageTable',
      'Kvm',
      'Vcpu',
      'parseScenario',
      'ScenarioRunner',
      'DescriptorView',
      'replayText',
    ]) {
      expect(typeof dist[name], name).toBe('function');
    }
  });
});

describe.runIf(haveDist)('source maps in the package', () => {
  it('carry the TypeScript sources (sourcesContent), so a consumer debugs the .ts', () => {
    for (const f of ['index.js', 'mmu/fault.js', 'cli/app.js']) {
      const map = JSON.parse(readFileSync(join(root, 'dist', f + '.map'), 'utf8')) as {
        sources: string[];
        sourcesContent?: string[];
      };
      expect(map.sources[0], f).toMatch(/\.ts$/);
      expect(map.sourcesContent?.[0], f).toContain('export');
    }
  });
});
