/**
 * The scenario checker's primitives (docs/scenario.md): the Checker that collects issues with
 * their key paths, the small readers every section uses, and the context a section reads what
 * earlier sections established from. The sections themselves are in parse-host.ts,
 * parse-guest.ts and parse-steps.ts; parse.ts puts them together.
 */

import type { Granule, PhysicalRegion, ScenarioVma } from './types.js';
import { tryParseValue, VALUE_LIMIT } from './values.js';
import { indexPath, keyPath, M } from './errors.js';
import type { ScenarioIssue } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Primitive readers. Each returns undefined exactly when it has reported an issue, or when the
// value is absent because it is a required key that Checker.object() already reported missing.

/** A JSON object as the checker reads it (not an array, not null). */
export type Obj = Readonly<Record<string, unknown>>;

/** A record whose fields may still be undefined while its parts are checked. */
export type Maybe<T> = { -readonly [K in keyof T]: T[K] | undefined };

/** Returns whether `v` is a JSON object (not an array, not null). */
export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The own property `key` of `obj` (never an inherited one such as `constructor`). Returns it, or undefined. */
export function get(obj: Obj, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** Returns `o` once none of its fields is undefined, else undefined (an issue was reported). */
export function complete<T extends object>(o: Maybe<T>): T | undefined {
  return Object.values(o).some((x) => x === undefined) ? undefined : (o as T);
}

/** Returns whether `v` is one of `options` (a type guard narrowing it to their type). */
export function includes<T>(options: readonly T[], v: unknown): v is T {
  return (options as readonly unknown[]).includes(v);
}

/** The keys an object must have and may have; any other key is reported. */
export interface Shape {
  readonly required: readonly string[];
  readonly optional?: readonly string[];
}

/**
 * Collects every issue with its key path instead of stopping at the first. Each reader returns
 * the value read, or undefined after reporting (or when the value is absent).
 */
export class Checker {
  /** The issues found so far, in the order found. */
  readonly issues: ScenarioIssue[] = [];

  /** Records an issue at `path`. */
  report(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  /** An object of `shape`: unknown keys and missing required keys are reported. Returns the object. */
  object(v: unknown, path: string, shape: Shape, notObject: string = M.expectedObject): Obj | undefined {
    if (v === undefined) return undefined;
    if (!isObject(v)) {
      this.report(path, notObject);
      return undefined;
    }
    const allowed = [...shape.required, ...(shape.optional ?? [])];
    for (const key of Object.keys(v)) {
      if (!allowed.includes(key)) this.report(keyPath(path, key), M.unknownKey(key, allowed));
    }
    for (const key of shape.required) {
      if (!Object.hasOwn(v, key)) this.report(keyPath(path, key), M.missingKey);
    }
    return v;
  }

  /** An array. Returns it. */
  array(v: unknown, path: string): readonly unknown[] | undefined {
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.report(path, M.expectedArray);
      return undefined;
    }
    return v;
  }

  /** One of `options`. Returns it. */
  oneOf<T extends string | number>(v: unknown, path: string, options: readonly T[]): T | undefined {
    if (v === undefined) return undefined;
    if (includes(options, v)) return v;
    this.report(path, M.oneOf(options));
    return undefined;
  }

  /** A boolean. Returns it. */
  bool(v: unknown, path: string): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'boolean') return v;
    this.report(path, M.expectedBoolean);
    return undefined;
  }

  /** A non-empty string (a name). Returns it. */
  string(v: unknown, path: string): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'string' && v.length > 0) return v;
    this.report(path, M.expectedName);
    return undefined;
  }

  /** An integer in `[min, max]`; `why` explains the bounds in the message. Returns it. */
  integer(v: unknown, path: string, min: number, max: number, why?: string): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    this.report(path, M.expectedInteger(min, max, why));
    return undefined;
  }

  /** An address or size (values.ts). */
  value(v: unknown, path: string): number | undefined {
    if (v === undefined) return undefined;
    const result = tryParseValue(v);
    if (result.ok) return result.value;
    this.report(path, result.message);
    return undefined;
  }

  /** A size: a value that is not zero. */
  size(v: unknown, path: string): number | undefined {
    const n = this.value(v, path);
    if (n === 0) {
      this.report(path, M.zero);
      return undefined;
    }
    return n;
  }

  /** Reports unless `n` is a multiple of `align`; `what` names the alignment ("4K granule"). */
  aligned(n: number | undefined, align: number | undefined, path: string, what: string): boolean {
    if (n === undefined || align === undefined || n % align === 0) return true;
    this.report(path, M.unaligned(n, what));
    return false;
  }

  /**
   * The end of `[start, start + size)`, or undefined (reported) if it ends beyond `limit`, which
   * `what` names (`M.paSpace(48)`); by default, 2^53.
   */
  end(
    start: number | undefined,
    size: number | undefined,
    path: string,
    limit = VALUE_LIMIT,
    what?: string,
  ): number | undefined {
    if (start === undefined || size === undefined) return undefined;
    // Compared this way round so that no intermediate result exceeds 2^53.
    if (start > limit || size > limit - start) {
      this.report(path, what === undefined ? M.rangeTooHigh(start, size) : M.rangeBeyond(start, size, what));
      return undefined;
    }
    return start + size;
  }

  /** A list of distinct names from `options`, reported per element. Returns the set given. */
  flags<T extends string>(v: unknown, path: string, options: readonly T[]): Set<T> | undefined {
    const list = this.array(v, path);
    if (list === undefined) return undefined;
    const set = new Set<T>();
    let ok = true;
    list.forEach((item, i) => {
      const flag = this.oneOf(item, indexPath(path, i), options);
      if (flag === undefined) ok = false;
      else if (set.has(flag)) {
        this.report(indexPath(path, i), M.flagTwice(flag));
        ok = false;
      } else set.add(flag);
    });
    return ok ? set : undefined;
  }
}

/** What is known about the scenario while its later sections are checked. */
export interface Context {
  readonly c: Checker;
  readonly granule: Granule | undefined;
  /** Bytes per host page, when the granule is valid. */
  readonly page: number | undefined;
  readonly paBits: number | undefined;
  /** The CPU's MTE, when the file fixes it (explicitly, or as a profile override). */
  readonly cpuMte: boolean | undefined;
  /** Every VMA name declared, valid VMA or not (so one bad VMA does not cascade). */
  readonly vmaNames: Map<string, ScenarioVma | undefined>;
  /** True when guest stage 1 is on: accesses name VAs. */
  readonly stage1: boolean;
  /** The physical memory map once read (an `mmap` step's pfnmap VMA is checked against it). */
  physical?: readonly PhysicalRegion[] | undefined;
}

/** Returns the list when every element is defined, else undefined (an issue was reported). */
export function allDefined<T>(list: readonly (T | undefined)[]): readonly T[] | undefined {
  return list.every((x) => x !== undefined) ? (list as readonly T[]) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Values written by the VMM and by the guest (issue 8).

/** A 64-bit value: a hex string of up to 16 digits or a decimal string (underscores allowed), or a safe integer. */
export function readU64(c: Checker, v: unknown, path: string): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string' && /^0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*$/.test(v)) {
    const digits = v
      .slice(2)
      .replaceAll('_', '')
      .replace(/^0+(?=.)/, '');
    if (digits.length <= 16) return BigInt('0x' + digits);
  } else if (typeof v === 'string' && /^[0-9]+(?:_[0-9]+)*$/.test(v)) {
    const x = BigInt(v.replaceAll('_', ''));
    if (x < 2n ** 64n) return x;
  } else if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
    return BigInt(v);
  }
  c.report(path, M.u64);
  return undefined;
}

/** Bytes as hex digit pairs (`"a1b2"` is 0xa1 then 0xb2). */
function readHexBytes(c: Checker, v: unknown, path: string): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string' && v.length > 0 && v.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(v)) {
    return Uint8Array.from({ length: v.length / 2 }, (_, i) => parseInt(v.slice(2 * i, 2 * i + 2), 16));
  }
  c.report(path, M.hexBytes);
  return undefined;
}

/** The 8 bytes of a u64, little-endian. */
function u64Bytes(x: bigint): Uint8Array {
  const b = new Uint8Array(8);
  for (let i = 0; i < 8; i++) b[i] = Number((x >> BigInt(8 * i)) & 0xffn);
  return b;
}

/** `{ "u64" }` or `{ "hex" }` of an object already checked for shape: its bytes. */
export function readWriteBytes(c: Checker, obj: Obj, path: string): Uint8Array | undefined {
  const hasU64 = Object.hasOwn(obj, 'u64');
  if (hasU64 === Object.hasOwn(obj, 'hex')) {
    c.report(path, M.initOneOf);
    return undefined;
  }
  if (hasU64) {
    const x = readU64(c, obj.u64, `${path}.u64`);
    return x === undefined ? undefined : u64Bytes(x);
  }
  return readHexBytes(c, obj.hex, `${path}.hex`);
}
