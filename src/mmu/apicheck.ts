/**
 * Argument checks of KVM's and the host's public entry points: `new Kvm(opts)`,
 * `kvm.createMemslot(spec)`, `kvm.mm.mmap(spec)` (docs/decisions.md, "API boundary (issue 11)";
 * the checks themselves are src/pgtable/argcheck.ts's).
 *
 * An option of the wrong type or outside what the kernel interface can carry throws (a
 * TypeError, or a RangeError for a number out of range) naming the option; what the modelled
 * kernel decides stays its result: createMemslot's negative errno, mmap's message.
 */

import { ADDR_LIMIT, ADDR_RULE, SIZE_RULE, badArgument, isWhole } from '../pgtable/argcheck.js';
import type { CpuFeatures } from './cpu.js';
import { KERNEL_NAMES } from './kernel.js';
import type { MemslotSpec } from './memslots.js';
import type { VmaSpec } from './host/mm.js';
import type { KvmOptions } from './vm.js';

const FEATURES: readonly (keyof CpuFeatures)[] = ['fwb', 'dic', 'idc', 'mte', 'tlbiRange', 'hafdbs', 'lse'];
const BACKINGS = ['anon', 'thp', 'hugetlb', 'shmem', 'pfnmap', 'mixedmap'] as const;
const HOST_MAPPINGS = ['page', 'pmd', 'pud'] as const;
const GRANULES = [4096, 16384, 65536] as const;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws unless `v` is one of `options`: a RangeError for a value of their type, else a TypeError. */
function oneOf(fn: string, name: string, v: unknown, options: readonly (string | number)[]): void {
  if (options.includes(v as string | number)) return;
  const rule = `one of ${options.map((o) => JSON.stringify(o)).join(', ')}`;
  if (typeof v === typeof options[0])
    throw new RangeError(`${fn}: ${name} must be ${rule}, got ${JSON.stringify(v)}`);
  badArgument(fn, name, rule, v);
}

function optBool(fn: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean')
    badArgument(fn, name, 'true or false (or absent)', v, TypeError);
}

function whole(fn: string, name: string, v: unknown, min: number, max: number, rule: string): void {
  if (!isWhole(v, min, max)) badArgument(fn, name, rule, v);
}

/** `new Kvm(opts)`: the options' types and ranges (the IPA limit is the constructor's own check). */
export function checkKvmOptions(opts: KvmOptions): void {
  const fn = 'new Kvm';
  if (!isRecord(opts)) badArgument(fn, 'opts', 'an object (KvmOptions)', opts);
  if (!isRecord(opts.cpu))
    badArgument(fn, 'opts.cpu', 'an object of CPU features (CPU_PRESETS.x.features)', opts.cpu);
  for (const f of FEATURES) {
    if (typeof opts.cpu[f] !== 'boolean')
      badArgument(fn, `opts.cpu.${f}`, 'true or false', opts.cpu[f], TypeError);
  }
  optBool(fn, 'opts.cpu.lpa2', opts.cpu.lpa2);
  oneOf(fn, 'opts.granule', opts.granule, GRANULES);
  if (opts.paBits !== undefined)
    whole(fn, 'opts.paBits', opts.paBits, 32, 52, 'a whole number from 32 to 52');
  if (opts.ipaBits !== undefined)
    whole(fn, 'opts.ipaBits', opts.ipaBits, 32, 52, 'a whole number from 32 to 52');
  if (!Array.isArray(opts.physical))
    badArgument(fn, 'opts.physical', 'an array of { base, size, type }', opts.physical);
  opts.physical.forEach((r: unknown, i) => {
    const at = `opts.physical[${i}]`;
    if (!isRecord(r)) return badArgument(fn, at, 'an object { base, size, type }', r);
    whole(fn, `${at}.base`, r.base, 0, ADDR_LIMIT - 1, ADDR_RULE);
    whole(
      fn,
      `${at}.size`,
      r.size,
      1,
      ADDR_LIMIT - (r.base as number),
      'a whole number from 1, ending at or below 2^52',
    );
    oneOf(fn, `${at}.type`, r.type, ['ram', 'nomap']);
    if ((r.base as number) % opts.granule !== 0 || (r.size as number) % opts.granule !== 0)
      badArgument(
        fn,
        `${at}`,
        `page-aligned: base and size multiples of the granule (${opts.granule})`,
        r.base,
      );
  });
  // No two regions overlap (PhysMem's own check, made here with the option's name).
  const sorted = opts.physical.map((r, i) => ({ r, i })).sort((a, b) => a.r.base - b.r.base);
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1]!.r;
    if (prev.base + prev.size > sorted[k]!.r.base)
      badArgument(
        fn,
        `opts.physical[${sorted[k]!.i}].base`,
        `past the end of opts.physical[${sorted[k - 1]!.i}] (regions must not overlap)`,
        sorted[k]!.r.base,
      );
  }
  optBool(fn, 'opts.mte', opts.mte);
  optBool(fn, 'opts.journal', opts.journal);
  optBool(fn, 'opts.provenance', opts.provenance);
  optBool(fn, 'opts.nisvToUser', opts.nisvToUser);
  if (opts.kernel !== undefined) oneOf(fn, 'opts.kernel', opts.kernel, KERNEL_NAMES);
  if (opts.memcacheCapacity !== undefined)
    whole(
      fn,
      'opts.memcacheCapacity',
      opts.memcacheCapacity,
      1,
      2 ** 31 - 1,
      'a whole number from 1 to 2^31 - 1',
    );
  if (opts.tablePagesMax !== undefined)
    whole(fn, 'opts.tablePagesMax', opts.tablePagesMax, 1, 2 ** 31 - 1, 'a whole number from 1 to 2^31 - 1');
}

/**
 * `kvm.createMemslot(spec)`: whole numbers that the ioctl's fields can carry (an id and flags
 * of 32 bits; addresses are u64s, exact here below 2^53). KVM's own refusals (an empty slot,
 * unknown flags, an overlap, a range past the VM's IPA space: −EFAULT) stay negative errnos.
 */
export function checkMemslotSpec(spec: MemslotSpec, pageSize: number): void {
  const fn = 'kvm.createMemslot';
  if (!isRecord(spec)) badArgument(fn, 'spec', 'an object (MemslotSpec)', spec);
  const pages = 2 ** 53 / pageSize;
  whole(fn, 'spec.id', spec.id, 0, 0xffff_ffff, 'a whole number from 0 to 2^32 - 1');
  whole(fn, 'spec.baseGfn', spec.baseGfn, 0, pages - 1, `a whole number from 0 to 2^53 / ${pageSize} - 1`);
  whole(
    fn,
    'spec.npages',
    spec.npages,
    0,
    pages - spec.baseGfn,
    'a whole number from 0, ending below 2^53 bytes',
  );
  whole(fn, 'spec.userspaceAddr', spec.userspaceAddr, 0, 2 ** 53 - 1, 'a whole number from 0 to 2^53 - 1');
  whole(fn, 'spec.flags', spec.flags, 0, 0xffff_ffff, 'a whole number of KVM_MEM_* bits (32 bits)');
}

/**
 * `mm.mmap(spec)`: the types and ranges of the spec. What mmap() itself refuses (an
 * unaligned or overlapping range, a hugePage size the granule lacks) stays its message.
 */
export function checkVmaSpec(spec: VmaSpec): void {
  const fn = 'mm.mmap';
  if (!isRecord(spec)) badArgument(fn, 'spec', 'an object (VmaSpec)', spec);
  if (typeof spec.name !== 'string' || spec.name === '')
    badArgument(fn, 'spec.name', 'a non-empty string', spec.name);
  whole(fn, 'spec.start', spec.start, 0, ADDR_LIMIT - 1, ADDR_RULE);
  whole(fn, 'spec.size', spec.size, 1, ADDR_LIMIT, SIZE_RULE);
  whole(fn, 'spec.vmFlags', spec.vmFlags, 0, 2 ** 53 - 1, 'a whole number of VM_* bits');
  oneOf(fn, 'spec.backing', spec.backing, BACKINGS);
  if (spec.memType !== undefined) whole(fn, 'spec.memType', spec.memType, 0, 7, 'an MT_* index from 0 to 7');
  if (spec.hugePage !== undefined) whole(fn, 'spec.hugePage', spec.hugePage, 1, ADDR_LIMIT, SIZE_RULE);
  if (spec.pa !== undefined) whole(fn, 'spec.pa', spec.pa, 0, ADDR_LIMIT - 1, ADDR_RULE);
  if (spec.hostMapping !== undefined) oneOf(fn, 'spec.hostMapping', spec.hostMapping, HOST_MAPPINGS);
  optBool(fn, 'spec.uffdMissing', spec.uffdMissing);
}
