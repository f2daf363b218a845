/**
 * Where things are in the text of a scenario file: the scanner that finds each key's offset,
 * duplicate keys and the place of a syntax error, and the offset-to-line/column mapping that
 * parse.ts attaches to every issue.
 */

import { indexPath, keyPath, M, parentPath } from './errors.js';

// ---------------------------------------------------------------------------------------------
// JSON positions. JSON.parse gives the value but neither where a syntax error is (portably) nor
// where each key is, nor whether a key was given twice; this scanner finds all three. It runs
// only on text JSON.parse has already judged, so it never decides what the value is.

/** What scanJson found: every key's position and the duplicate keys, or where the syntax error is. */
export type JsonScan =
  | {
      readonly ok: true;
      /** Offset of each member's key, or of each array element, by key path; the root value's under "". */
      readonly positions: ReadonlyMap<string, number>;
      readonly duplicates: readonly { readonly path: string; readonly offset: number }[];
    }
  | { readonly ok: false; readonly offset: number; readonly message: string };

/** A syntax error found by the scanner, thrown to unwind it. */
class JsonSyntax {
  readonly offset: number;
  readonly message: string;
  constructor(offset: number, message: string) {
    this.offset = offset;
    this.message = message;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const MAX_DEPTH = 512;

/**
 * Scans JSON text for key positions and duplicate keys (`valid`: JSON.parse accepted it, so
 * values nested past MAX_DEPTH are skipped, not refused), or for where a syntax error is.
 */
export function scanJson(text: string, valid: boolean): JsonScan {
  const positions = new Map<string, number>();
  const duplicates: { path: string; offset: number }[] = [];
  let i = 0;

  const skipSpace = (): void => {
    while (i < text.length) {
      const ch = text.charCodeAt(i);
      if (ch !== 0x20 && ch !== 0x09 && ch !== 0x0a && ch !== 0x0d) break;
      i++;
    }
  };
  const fail = (expected: string): never => {
    throw new JsonSyntax(i, i >= text.length ? M.jsonEnd(expected) : M.jsonUnexpected(text[i]!, expected));
  };
  const string = (): string => {
    const start = i++;
    while (true) {
      if (i >= text.length) throw new JsonSyntax(start, M.jsonUnterminated);
      const ch = text.charCodeAt(i);
      if (ch === 0x22) return text.slice(start, ++i);
      if (ch < 0x20) throw new JsonSyntax(i, M.jsonControl);
      if (ch === 0x5c) {
        const esc = text[i + 1];
        if (esc === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else if (esc !== undefined && '"\\/bfnrt'.includes(esc)) i += 2;
        else throw new JsonSyntax(i, M.jsonEscape);
      } else i++;
    }
  };
  /**
   * Skips a value nested past MAX_DEPTH, without recursion and without recording positions
   * (issues inside it are placed at its nearest recorded ancestor). Only for text JSON.parse
   * has accepted.
   */
  const skipDeep = (): void => {
    let nesting = 0;
    do {
      skipSpace();
      const ch = text[i];
      if (ch === undefined) return;
      if (ch === '"') string();
      else if (ch === '{' || ch === '[') {
        nesting++;
        i++;
      } else if (ch === '}' || ch === ']') {
        nesting--;
        i++;
      } else if (ch === ',' || ch === ':') i++;
      else while (i < text.length && !',:]} \t\n\r'.includes(text[i]!)) i++;
    } while (nesting > 0);
  };
  const value = (path: string, depth: number): void => {
    if (depth > MAX_DEPTH) {
      if (!valid) throw new JsonSyntax(i, M.jsonDepth);
      return skipDeep();
    }
    skipSpace();
    const ch = text[i];
    if (ch === '{') {
      i++;
      skipSpace();
      if (text[i] === '}') return void i++;
      const seen = new Set<string>();
      while (true) {
        skipSpace();
        if (text[i] !== '"') fail('a key in double quotes');
        const at = i;
        const key = JSON.parse(string()) as string;
        const p = keyPath(path, key);
        if (seen.has(key)) duplicates.push({ path: p, offset: at });
        seen.add(key);
        positions.set(p, at);
        skipSpace();
        if (text[i] !== ':') fail('":"');
        i++;
        value(p, depth + 1);
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail('"," or "}"');
      }
    }
    if (ch === '[') {
      i++;
      skipSpace();
      if (text[i] === ']') return void i++;
      for (let n = 0; ; n++) {
        skipSpace();
        positions.set(indexPath(path, n), i);
        value(indexPath(path, n), depth + 1);
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail('"," or "]"');
      }
    }
    if (ch === '"') return void string();
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) return void (i += literal.length);
    }
    NUMBER.lastIndex = i;
    if (NUMBER.test(text)) return void (i = NUMBER.lastIndex);
    fail('a value');
  };

  try {
    skipSpace();
    positions.set('', i);
    value('', 0);
    skipSpace();
    if (i < text.length) fail('the end of the text');
    return { ok: true, positions, duplicates };
  } catch (e) {
    if (e instanceof JsonSyntax) return { ok: false, offset: e.offset, message: e.message };
    throw e;
  }
}

/**
 * The 1-based line and column (in UTF-16 code units) of an offset in `text`: a function that
 * finds it by binary search over the line starts, found once (each issue of thousands would
 * otherwise scan the file from its start).
 */
export function lineColumns(text: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) starts.push(at + 1);
  return (offset) => {
    // The last line start at or before offset.
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}

/**
 * The offset of `path`, or of its nearest ancestor that has one (a missing key points at its
 * object; the root value's offset is under `""`).
 */
export function findOffset(positions: ReadonlyMap<string, number>, path: string): number | undefined {
  for (let p = path; p !== ''; p = parentPath(p)) {
    const offset = positions.get(p);
    if (offset !== undefined) return offset;
  }
  // A missing top-level key, or the file as a whole: where the root value starts.
  return positions.get('');
}
