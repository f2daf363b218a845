// The one access-kind table (src/mmu/access.ts): kinds, names and the hardware walk's kinds agree.
import { describe, expect, it } from 'vitest';
import {
  ACC_AT,
  ACC_CAS,
  ACC_DC_CIVAC,
  ACC_DC_ZVA,
  ACC_EXEC,
  ACC_LD_PREIDX,
  ACC_READ,
  ACC_ST_PREIDX,
  ACC_WRITE,
  ACCESS_KIND_BY_NAME,
  ACCESS_NAMES,
} from '../src/mmu/access.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE } from '../src/pgtable/hwwalk.js';
import { ACCESS_KINDS } from '../src/scenario/types.js';

describe('access kinds', () => {
  it('names each ACC_* kind by its scenario name', () => {
    const byKind: [number, string][] = [
      [ACC_READ, 'read'],
      [ACC_WRITE, 'write'],
      [ACC_EXEC, 'exec'],
      [ACC_CAS, 'cas'],
      [ACC_LD_PREIDX, 'ld-preidx'],
      [ACC_ST_PREIDX, 'st-preidx'],
      [ACC_DC_ZVA, 'dc-zva'],
      [ACC_DC_CIVAC, 'dc-civac'],
      [ACC_AT, 'at'],
    ];
    expect(byKind.map(([k]) => ACCESS_NAMES[k])).toEqual(byKind.map(([, n]) => n));
    expect(ACCESS_NAMES).toHaveLength(byKind.length);
  });

  it('maps every name back to its kind', () => {
    ACCESS_NAMES.forEach((name, kind) => expect(ACCESS_KIND_BY_NAME[name]).toBe(kind));
    expect(Object.keys(ACCESS_KIND_BY_NAME)).toEqual([...ACCESS_NAMES]);
  });

  it('is the scenario format’s list of access values', () => {
    expect(ACCESS_KINDS).toBe(ACCESS_NAMES);
  });

  it('starts with the hardware walk’s read, write and exec kinds', () => {
    expect([ACC_READ, ACC_WRITE, ACC_EXEC]).toEqual([ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC]);
  });
});
