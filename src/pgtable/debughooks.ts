/**
 * The debugger hooks of the core: a registry the decoded views (src/views/debug.ts) fill
 * when they are loaded, so that `console.log(pgt)`, a VS Code variables pane and helpers
 * such as `pgt.ptdump()` print decoded text, while the core imports nothing from the views
 * (no import cycle, and a program that never loads the views pays nothing for them).
 *
 * The core's classes call `debugText(kind, obj)` from their inspect hooks and `debugCall`
 * from their helper methods; both are cold (never on the fault path).
 */

/** The functions the views register. Each returns text for people. */
export interface DebugHooks {
  /** A short summary of a core object: kind is 'pgt', 'kvm', 'vcpu', 'access-result' or 'leaf-result'. */
  describe?: (kind: string, obj: object) => string;
  /** The debugfs stage2_page_tables text of a table. */
  ptdump?: (pgt: object) => string;
  /** The level-by-level walk of one IPA. */
  explain?: (pgt: object, ipa: number) => string;
  /** The leaf covering an IPA, decoded (a DescriptorView), or null where none. */
  leafView?: (pgt: object, ipa: number) => object | null;
  /** What a vCPU's last abort was and the walk of its IPA. */
  vcpuExplain?: (vcpu: object) => string;
}

/** Node's util.inspect.custom, by its registered name (no import of node:util). */
export const INSPECT_HOOK = Symbol.for('nodejs.util.inspect.custom');
/** The debugger description hook (VS Code js-debug's variables pane). */
export const DESCRIPTION_HOOK = Symbol.for('debug.description');

/** The registry (filled by src/views/debug.ts when the views are loaded). */
export const debugHooks: DebugHooks = {};

/** What a helper says when the views were never loaded. */
export const VIEWS_NOT_LOADED =
  "(s2emu's views are not loaded: import 's2emu' or its dist/views/index.js once)";

/**
 * The summary text of `obj` from the registered hook, or `fallback` when none is registered.
 * Returns the text.
 */
export function debugText(kind: string, obj: object, fallback: string): string {
  const d = debugHooks.describe;
  return d === undefined ? fallback : d(kind, obj);
}

/**
 * `s2emu run --break` (cli/break.ts): user_mem_abort() tests `armed` once per fault (one load
 * and a branch when unarmed) and, only when armed, asks `match` about the fault object; a
 * match stops there on a `debugger` statement.
 */
export const faultBreak: { armed: boolean; match: (fault: { readonly faultIpa: number }) => boolean } = {
  armed: false,
  match: () => false,
};
