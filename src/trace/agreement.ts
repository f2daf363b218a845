/**
 * Model against reality (docs/trace.md, "Agreement"): the trace's faults grouped into guest
 * accesses, what the trace shows happened after each, and whether the modelled host did the same.
 *
 * **Accesses.** Consecutive faults of one vCPU at the same IPA page (with a guest stage 1: the
 * same VA page) and the same PC, with no exit to the VMM between them, are one instruction
 * retried: one access. Its kind is the syndrome's (syndrome.ts); a load-then-store pair without
 * ISV at one PC is an atomic (`cas`); with a guest stage 1, faults on the stage-1 walk take the
 * kind of the instruction's other faults.
 *
 * **What the trace shows**, for an access:
 * - the vCPU then exits to the VMM (kvm_userspace_exit) with KVM_EXIT_MMIO or KVM_EXIT_ARM_NISV,
 *   or KVM_RUN fails (`error`), or KVM emulates MMIO (kvm_mmio, kvm_mmio_emulate): the model's
 *   access must end in `mmio`, `nisv` or that error;
 * - handle_access_fault() runs (kvm_access_fault): one of the model's faults must be handled there;
 * - its faults, when the trace says more than "it faulted": it faulted more than once (a retry),
 *   its fault was an access-flag fault, or it repeats the vCPU's previous access's page (the
 *   previous access did not leave the page mapped as this one needs): the model's access must
 *   take faults of the same classes, in the same order.
 *
 * Everything here is derived from the trace alone, before the replay, so that the replay compares
 * each access as it runs. Core code: no Node imports.
 */

import type { GuestFaultEvent, TraceEvent } from './parse.js';
import { decodeSyndrome, tracedAccess } from './syndrome.js';
import type { TracedAccess } from './syndrome.js';
import { errnoName } from '../pgtable/errno.js';
import { OUT_ERROR } from '../mmu/vcpu.js';
import type { AccessResult } from '../mmu/vcpu.js';
import type { AccessKind } from '../scenario/types.js';

/** What the trace shows for one access: the checks the model's access must pass. */
export interface Expectation {
  /** The outcome the model's access must end in, and where the trace shows it. */
  outcome?: { want: 'mmio' | 'nisv' | 'error'; errno?: string; what: string };
  /** kvm_access_fault followed: one of the model's faults goes to handle_access_fault(). */
  accessFault?: { line: number };
  /** The fault classes the model's access must take, and why the trace tells them. */
  faults?: { classes: string[]; why: string };
}

/** One guest access as the trace shows it: its faults and what followed. */
export interface TracedGroup {
  /** The trace lines of its kvm_guest_fault events. */
  readonly lines: number[];
  readonly stream: string;
  /** The access to replay, or why it cannot be. */
  access: TracedAccess;
  /** `translation L3` for each fault. */
  readonly classes: string[];
  readonly expectation: Expectation;
}

/**
 * Groups a trace's kvm_guest_fault events into accesses and finds what the trace shows about
 * each. `stage1`: the host has a guest stage 1 (accesses name VAs). Returns the accesses in
 * trace order (by first fault) and the other events that told something about one.
 */
export function traceAccesses(
  events: readonly TraceEvent[],
  stage1: boolean,
): { groups: TracedGroup[]; used: Set<TraceEvent> } {
  const groups: TracedGroup[] = [];
  const used = new Set<TraceEvent>();
  /** Per vCPU: its open access (until an exit or another access), and the page of its last one. */
  const open = new Map<
    string,
    { g: TracedGroup; page: number; pc: bigint | null; closed: boolean; walkOnly: boolean }
  >();
  for (const e of events) {
    const o = open.get(e.stream);
    switch (e.kind) {
      case 'kvm_guest_fault': {
        // The page an instruction's retries share: the IPA's, or with a guest stage 1 the VA's
        // (its walk faults on a different table page each time, at one VA).
        const page = stage1 ? Number(e.far >> 12n) : Math.floor(e.ipa / 4096);
        const a = tracedAccess(e.esr, e.ipa, e.far, stage1);
        const walk = stage1 && decodeSyndrome(e.esr).s1ptw;
        const cls = faultClass(e);
        if (o !== undefined && !o.closed && o.page === page && o.pc === e.pc && !('unusable' in a)) {
          const prev = o.g.access;
          // A fault on the stage-1 walk does not tell the instruction's kind: the other faults do.
          const k = 'unusable' in prev ? undefined : groupKind(prev.kind, o.walkOnly, a.kind, walk);
          if (k !== undefined && !('unusable' in prev)) {
            o.g.access = { ...prev, kind: k };
            o.walkOnly &&= walk;
            o.g.lines.push(e.line);
            o.g.classes.push(cls);
            o.g.expectation.faults = {
              classes: o.g.classes,
              why: `the access faulted ${o.g.classes.length} times`,
            };
            break;
          }
        }
        const g: TracedGroup = {
          lines: [e.line],
          stream: e.stream,
          access: a,
          classes: [cls],
          expectation: {},
        };
        if (cls.startsWith('access-flag'))
          g.expectation.faults = { classes: g.classes, why: 'an access-flag fault' };
        if (o !== undefined && !o.closed && o.page === page)
          g.expectation.faults = {
            classes: g.classes,
            why: `the vCPU faulted again at this page after line ${o.g.lines[o.g.lines.length - 1]}`,
          };
        groups.push(g);
        open.set(e.stream, { g, page, pc: e.pc, closed: false, walkOnly: walk });
        break;
      }
      case 'kvm_userspace_exit': {
        if (o === undefined || o.closed) break;
        const x = o.g.expectation;
        if (e.reason === 'KVM_EXIT_MMIO' || e.reason === 'KVM_EXIT_ARM_NISV' || e.reason === 'error') {
          used.add(e);
          const what = `exit to the VMM: ${e.reason === 'error' ? `KVM_RUN failed with -${errnoName(-e.code)}` : e.reason} (line ${e.line})`;
          if (x.outcome === undefined)
            x.outcome =
              e.reason === 'error'
                ? { want: 'error', errno: errnoName(-e.code), what }
                : { want: e.reason === 'KVM_EXIT_MMIO' ? 'mmio' : 'nisv', what };
        }
        // After a return to the VMM, a fault at the same IPA is a new access, not a retry.
        o.closed = true;
        break;
      }
      case 'kvm_mmio':
      case 'kvm_mmio_emulate':
        if (o === undefined || o.closed) break;
        used.add(e);
        o.g.expectation.outcome ??= {
          want: 'mmio',
          what: `MMIO emulation: ${e.kind}${e.kind === 'kvm_mmio' ? ` ${e.op} of ${e.len} bytes at 0x${e.gpa.toString(16)}` : ''} (line ${e.line})`,
        };
        break;
      case 'kvm_access_fault':
        if (o === undefined || o.closed) break;
        used.add(e);
        o.g.expectation.accessFault = { line: e.line };
        break;
      default:
        break;
    }
  }
  return { groups, used };
}

/**
 * The kind of an instruction whose faults so far said `prev` (only stage-1 walk faults when
 * `prevWalk`) and whose next fault says `next` (a walk fault when `nextWalk`). A walk fault does
 * not tell the instruction's kind, so any other fault's kind wins; between walk faults, a
 * walker's write (`read`) wins over `at`. Returns the kind, or undefined if no one instruction
 * faults so.
 */
function groupKind(
  prev: AccessKind,
  prevWalk: boolean,
  next: AccessKind,
  nextWalk: boolean,
): AccessKind | undefined {
  if (prevWalk && nextWalk) return prev === 'at' ? next : prev;
  if (prevWalk) return next;
  if (nextWalk) return prev;
  return merged(prev, next);
}

/** The kind of one instruction that faulted as `a` and then as `b`, or undefined if no one instruction does. */
function merged(a: AccessKind, b: AccessKind): AccessKind | undefined {
  if (a === b) return a;
  const atomic = new Set<AccessKind>(['ld-preidx', 'st-preidx', 'cas']);
  return atomic.has(a) && atomic.has(b) ? 'cas' : undefined;
}

function faultClass(e: GuestFaultEvent): string {
  const s = decodeSyndrome(e.esr);
  return s.level === null ? s.faultClass : `${s.faultClass} L${s.level}`;
}

/** One disagreement: the trace line of the access's first fault, what the trace shows, what the model did. */
export interface Disagreement {
  traceLine: number;
  trace: string;
  model: string;
}

/** The agreement tally of a replay. */
export class Agreement {
  compared = 0;
  agreed = 0;
  readonly disagreements: Disagreement[] = [];

  /**
   * Compares the model's access with what the trace shows for it. The AccessResult is borrowed;
   * what a disagreement needs is formatted here.
   */
  check(traceLine: number, x: Expectation, r: AccessResult): void {
    if (x.outcome === undefined && x.accessFault === undefined && x.faults === undefined) return;
    this.compared++;
    const wrong: string[] = [];
    if (x.outcome !== undefined) {
      const ok =
        r.outcomeName === x.outcome.want &&
        (x.outcome.errno === undefined || r.errnoName === x.outcome.errno);
      if (!ok) wrong.push(x.outcome.what);
    }
    if (x.accessFault !== undefined) {
      let ok = false;
      for (let i = 0; i < r.nFaults; i++) if (r.fault(i).handler === 'handle_access_fault') ok = true;
      if (!ok)
        wrong.push(
          `handle_access_fault() made the page young (kvm_access_fault, line ${x.accessFault.line})`,
        );
    }
    if (x.faults !== undefined) {
      let ok = r.nFaults === x.faults.classes.length;
      for (let i = 0; ok && i < r.nFaults; i++) ok = x.faults.classes[i]!.startsWith(fscName(r.fault(i).fsc));
      if (!ok) wrong.push(`${x.faults.why}: ${x.faults.classes.join(', then ')}`);
    }
    if (wrong.length === 0) {
      this.agreed++;
      return;
    }
    this.disagreements.push({ traceLine, trace: wrong.join('; '), model: modelText(r) });
  }

  /** The `agreement` object of the JSON summary. Returns a fresh object. */
  toJSON(): { compared: number; agreed: number; disagreements: Disagreement[] } {
    return { compared: this.compared, agreed: this.agreed, disagreements: this.disagreements };
  }
}

function fscName(fsc: number): string {
  return fsc === 1 ? 'translation' : fsc === 2 ? 'access-flag' : fsc === 3 ? 'permission' : 'other';
}

/** What the model's access did, in words: its faults, their handlers, and its outcome. Returns the text. */
export function modelText(r: AccessResult): string {
  const faults: string[] = [];
  for (let i = 0; i < r.nFaults; i++) {
    const f = r.fault(i);
    faults.push(`${fscName(f.fsc)} L${f.level}${f.s1ptw ? ' (stage-1 walk)' : ''} → ${f.handler}`);
  }
  const outcome = r.outcome === OUT_ERROR ? `error -${r.errnoName ?? ''}` : r.outcomeName;
  const head = faults.length === 0 ? 'no fault (the address was already mapped)' : faults.join(', then ');
  const leaf = r.leafValid
    ? `; leaf L${r.leafLevel} ${sizeText(r.leafSize)} at 0x${r.leafIpa.toString(16)}`
    : '';
  return `${head}; outcome ${outcome}${leaf}`;
}

function sizeText(b: number): string {
  return b >= 0x4000_0000 ? `${b / 0x4000_0000}G` : b >= 0x10_0000 ? `${b / 0x10_0000}M` : `${b / 1024}K`;
}
