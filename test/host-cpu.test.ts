import { describe, it, expect } from 'vitest';
import { CPU_PRESETS, CPU_FEATURE_NAMES, resolveCpu, kvmSupportsCacheablePfnmap } from '../src/mmu/cpu.js';

describe('CPU presets', () => {
  it('Grace has FWB and DIC (cacheable PFNMAP) but no MTE', () => {
    const g = resolveCpu({ profile: 'grace' });
    if (typeof g === 'string') throw new Error(g);
    expect(g.fwb && g.dic && g.idc).toBe(true);
    expect(g.mte).toBe(false);
    expect(kvmSupportsCacheablePfnmap(g)).toBe(true);
  });

  it('the older server cores have no FWB, so no cacheable PFNMAP', () => {
    for (const name of ['neoverse-n1', 'ampere-altra', 'kunpeng-920', 'cortex-a76', 'generic-v8']) {
      const f = resolveCpu({ profile: name });
      if (typeof f === 'string') throw new Error(f);
      expect(f.fwb).toBe(false);
      expect(kvmSupportsCacheablePfnmap(f)).toBe(false);
    }
  });

  it('every preset documents its source and sets every feature', () => {
    for (const [key, p] of Object.entries(CPU_PRESETS)) {
      expect(p.name).toBe(key);
      expect(p.source.length).toBeGreaterThan(20);
      expect(Object.keys(p.features).sort()).toEqual([...CPU_FEATURE_NAMES].sort());
    }
  });

  it('overrides apply on top of a preset; no profile starts from nothing', () => {
    const f = resolveCpu({ profile: 'grace', dic: false, mte: true });
    if (typeof f === 'string') throw new Error(f);
    expect(f.dic).toBe(false);
    expect(f.mte).toBe(true);
    expect(f.fwb).toBe(true);
    expect(kvmSupportsCacheablePfnmap(f)).toBe(false);
    expect(CPU_PRESETS.grace.features.dic).toBe(true); // preset untouched
    const bare = resolveCpu({ fwb: true });
    expect(bare).toEqual({
      fwb: true,
      dic: false,
      idc: false,
      mte: false,
      tlbiRange: false,
      hafdbs: false,
      lse: false,
    });
  });

  it('an unknown profile is a message, not an exception', () => {
    expect(resolveCpu({ profile: 'pentium' })).toMatch(/unknown CPU profile "pentium".*grace/);
    expect(resolveCpu({ profile: 'toString' })).toMatch(/unknown/);
  });
});
