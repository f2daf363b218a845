/**
 * Text traces of the KVM arm64 tracepoints, as `trace-cmd report` and `perf script` print them
 * (docs/trace.md): one event a line, with or without the tool's prefix.
 *
 *   trace-cmd:  `CPU 0/KVM-4242  [003] d..2.  1234.567890: kvm_guest_fault: ipa 0x1c010000, ...`
 *   perf:       `CPU 0/KVM  4242/4242 [003]  1234.567890: kvm:kvm_guest_fault: ipa 0x1c010000, ...`
 *   bare:       `kvm_guest_fault: ipa 0x1c010000, ...`
 *
 * The bodies follow each tracepoint's TP_printk():
 * - kvm_guest_fault, kvm_access_fault, kvm_entry, kvm_exit, kvm_mmio_emulate, kvm_age_hva,
 *   kvm_unmap_hva_range: arch/arm64/kvm/trace_arm.h (`ipa %#llx, hsr %#08lx, hxfar %#08lx,
 *   pc %#016lx`; older kernels print the PC with `%#08lx`, and the fields are also read under the
 *   names `esr` and `far`, and as `name=value` the way `trace-cmd report -R` prints raw fields);
 * - kvm_userspace_exit (`reason %s (%d)`, KVM_EXIT_* by name, `restart` or `error` with the errno)
 *   and kvm_mmio (`mmio %s len %u gpa 0x%llx val 0x%llx`): include/trace/events/kvm.h.
 *
 * Every other event is kept by name (the replay counts it as unused). A line that is not an
 * event and not one of the tools' header lines is malformed: a TraceParseError naming its line,
 * or, with `lenient`, skipped and counted. Core code: no Node imports.
 */

/** A malformed trace line: `line` is 1-based; `detail` says what is wrong. */
export class TraceParseError extends Error {
  override name = 'TraceParseError';
  readonly line: number;
  readonly detail: string;
  constructor(line: number, detail: string) {
    super(`line ${line}: ${detail}`);
    this.line = line;
    this.detail = detail;
  }
}

/** Fields every event has. */
export interface TraceEventCommon {
  /** 1-based line number in the trace text. */
  readonly line: number;
  /**
   * Which vCPU the event belongs to: the thread (`TASK-TID`) when the line has a prefix, else the
   * vCPU id the event itself prints (`vcpu N`), else `"-"` (one stream).
   */
  readonly stream: string;
  /** The trace's timestamp in seconds, or null without a prefix. */
  readonly time: number | null;
  /** The host CPU the tool printed, or null. */
  readonly cpu: number | null;
}

/** kvm_guest_fault: a stage-2 abort KVM handles (kvm_handle_guest_abort()). */
export interface GuestFaultEvent extends TraceEventCommon {
  readonly kind: 'kvm_guest_fault';
  /** The fault IPA (HPFAR_EL2's page, 4K-aligned). */
  readonly ipa: number;
  /** ESR_EL2, bits [31:0] (ISS2 above them is not used). */
  readonly esr: number;
  /** FAR_EL2 (a guest VA; may be past 2^53, hence a bigint). */
  readonly far: bigint;
  /** The guest PC, or null when the line has none. */
  readonly pc: bigint | null;
}

/** kvm_access_fault: handle_access_fault() made the leaf young. */
export interface AccessFaultEvent extends TraceEventCommon {
  readonly kind: 'kvm_access_fault';
  readonly ipa: number;
}

/** kvm_userspace_exit: KVM_RUN returned to the VMM. */
export interface UserspaceExitEvent extends TraceEventCommon {
  readonly kind: 'kvm_userspace_exit';
  /** `KVM_EXIT_MMIO`, `KVM_EXIT_ARM_NISV`, ... (by number when the kernel printed a number), `restart` or `error`. */
  readonly reason: string;
  /** The exit reason number, or for `restart`/`error` the positive errno. */
  readonly code: number;
}

/** kvm_mmio: an MMIO access KVM emulated (in the kernel) or handed to the VMM (unsatisfied-read, write). */
export interface MmioEvent extends TraceEventCommon {
  readonly kind: 'kvm_mmio';
  readonly op: string;
  readonly len: number;
  readonly gpa: number;
}

/** kvm_mmio_emulate: the MMIO emulation of a trapped access. */
export interface MmioEmulateEvent extends TraceEventCommon {
  readonly kind: 'kvm_mmio_emulate';
}

/** kvm_entry / kvm_exit: the vCPU entered or left the guest. */
export interface EntryExitEvent extends TraceEventCommon {
  readonly kind: 'kvm_entry' | 'kvm_exit';
  /** The vCPU id when the event prints one. */
  readonly vcpu: number | null;
}

/** kvm_age_hva / kvm_unmap_hva_range: an MMU-notifier range of host virtual addresses, `[start, end)`. */
export interface HvaRangeEvent extends TraceEventCommon {
  readonly kind: 'kvm_age_hva' | 'kvm_unmap_hva_range';
  readonly start: number;
  readonly end: number;
}

/** Any other event, by name (system prefix dropped). */
export interface OtherEvent extends TraceEventCommon {
  readonly kind: 'other';
  readonly name: string;
}

/** One event of a trace. */
export type TraceEvent =
  | GuestFaultEvent
  | AccessFaultEvent
  | UserspaceExitEvent
  | MmioEvent
  | MmioEmulateEvent
  | EntryExitEvent
  | HvaRangeEvent
  | OtherEvent;

/** The name an event is counted under: its tracepoint name. Returns it. */
export function eventName(e: TraceEvent): string {
  return e.kind === 'other' ? e.name : e.kind;
}

/** Options of parseTrace(). */
export interface TraceParseOptions {
  /** Skip malformed lines (counted in `skipped`) instead of throwing. */
  lenient?: boolean;
}

/** A parsed trace. */
export interface ParsedTrace {
  readonly events: readonly TraceEvent[];
  /** With `lenient`: the malformed lines skipped, in order. */
  readonly skipped: readonly { line: number; detail: string }[];
}

/** `comm-tid [cpu] (flags) timestamp:` — trace-cmd report. */
const TRACE_CMD_PREFIX = /^\s*(.+)-(\d+)\s+\[(\d+)\](?:\s+[^\s\d][^\s]*)?\s+(\d+\.\d+):\s*$/;
/** `comm pid/tid [cpu] timestamp:` — perf script (the CPU is printed when recorded). */
const PERF_PREFIX = /^\s*(.*?)\s*(\d+)(?:\/(\d+))?\s+(?:\[(\d+)\]\s+)?(\d+\.\d+):\s*$/;
/**
 * The event name: the first `name:` or `system:name:` token (tracepoint names are lower case)
 * followed by a blank or the end.
 */
const EVENT_TOKEN = /(?:^|\s)(?:[a-z_][a-z0-9_]*:)?([a-z_][a-z0-9_]*):(?=\s|$)/;
/** Lines the tools print around the events. */
const HEADER_LINE = /^\s*(?:#.*|cpus=\d+|version\s*=\s*\S+|CPU:?\s*\d+ is empty|trace-cmd:.*)?\s*$/i;

/**
 * Parses the text of a trace. Returns its events in order; throws a TraceParseError for the
 * first malformed line unless `lenient`.
 */
export function parseTrace(text: string, opts: TraceParseOptions = {}): ParsedTrace {
  const events: TraceEvent[] = [];
  const skipped: { line: number; detail: string }[] = [];
  let start = 0;
  let n = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    n++;
    let line = text.slice(start, end);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    start = end + 1;
    if (HEADER_LINE.test(line)) {
      if (end === text.length) break;
      continue;
    }
    const r = parseLine(line, n);
    if (typeof r === 'string') {
      if (!opts.lenient) throw new TraceParseError(n, r);
      skipped.push({ line: n, detail: r });
    } else events.push(r);
    if (end === text.length) break;
  }
  return { events, skipped };
}

/** One line: its event, or what is wrong with it. */
export function parseLine(text: string, line: number): TraceEvent | string {
  const m = EVENT_TOKEN.exec(text);
  if (m === null)
    return `not a trace event (expected "EVENT: fields", with or without trace-cmd's or perf's prefix): ${clip(text)}`;
  const name = m[1]!;
  const tokenStart = m.index + (m[0].length - m[0].trimStart().length);
  const prefix = text.slice(0, tokenStart);
  const body = text.slice(m.index + m[0].length).trim();
  let stream = '-';
  let time: number | null = null;
  let cpu: number | null = null;
  if (prefix.trim() !== '') {
    const t = TRACE_CMD_PREFIX.exec(prefix);
    const p = t === null ? PERF_PREFIX.exec(prefix) : null;
    if (t !== null) {
      stream = `${t[1]!.trim()}-${t[2]}`;
      cpu = Number(t[3]);
      time = Number(t[4]);
    } else if (p !== null) {
      stream = `${p[1]!.trim()}-${p[3] ?? p[2]}`;
      cpu = p[4] === undefined ? null : Number(p[4]);
      time = Number(p[5]);
    } else
      return `cannot read the line prefix "${clip(prefix.trim())}" (expected trace-cmd's "TASK-TID [CPU] TIMESTAMP:" or perf's "TASK PID/TID [CPU] TIMESTAMP:")`;
  }
  const common = { line, stream, time, cpu };
  switch (name) {
    case 'kvm_guest_fault':
      return guestFault(body, common);
    case 'kvm_access_fault': {
      const ipa = field(body, ['IPA', 'ipa']);
      const v = ipa === undefined ? undefined : hexNumber(ipa, true);
      if (v === undefined) return `kvm_access_fault: expected "IPA: HEX", got "${clip(body)}"`;
      return { kind: name, ...common, ipa: v };
    }
    case 'kvm_userspace_exit': {
      const u = /^reason\s+(\S+)\s+\((-?\d+)\)$/.exec(body) ?? /^reason=(\d+)\s+errno=(-?\d+)$/.exec(body);
      if (u === null) return `kvm_userspace_exit: expected "reason NAME (N)", got "${clip(body)}"`;
      if (body.includes('=')) {
        // Raw fields: reason=N errno=E (trace-cmd report -R).
        const errno = Number(u[2]);
        if (errno < 0)
          return { kind: name, ...common, reason: errno === -4 ? 'restart' : 'error', code: -errno };
        return { kind: name, ...common, reason: exitReasonName(Number(u[1])), code: Number(u[1]) };
      }
      const code = Number(u[2]);
      let reason = u[1]!;
      // An exit reason the kernel's table did not name is printed as a number.
      if (/^(0x[0-9a-f]+|\d+)$/i.test(reason)) reason = exitReasonName(code);
      return { kind: name, ...common, reason, code };
    }
    case 'kvm_mmio': {
      const u = /^mmio\s+(\S+)\s+len\s+(\d+)\s+gpa\s+(\S+)(?:\s+val\s+\S+)?$/.exec(body);
      const gpa = u === null ? undefined : hexNumber(u[3]!, true);
      if (u === null || gpa === undefined)
        return `kvm_mmio: expected "mmio OP len N gpa HEX val HEX", got "${clip(body)}"`;
      return { kind: name, ...common, op: u[1]!, len: Number(u[2]), gpa };
    }
    case 'kvm_mmio_emulate':
      if (!/^Emulate MMIO at:?\s/i.test(body) && !/vcpu_pc=/.test(body))
        return `kvm_mmio_emulate: expected "Emulate MMIO at: HEX (instr: ..., cpsr: ...)", got "${clip(body)}"`;
      return { kind: name, ...common };
    case 'kvm_entry':
    case 'kvm_exit': {
      if (!/\b(?:PC|vcpu_pc)[:=]?\s*(?:0x)?[0-9a-f]+/i.test(body))
        return `${name}: expected the guest PC ("PC: HEX"), got "${clip(body)}"`;
      const v = /\bvcpu(?:_id)?[:=]?\s*(\d+)/i.exec(body);
      const vcpu = v === null ? null : Number(v[1]);
      return {
        kind: name,
        ...common,
        stream: stream === '-' && vcpu !== null ? `vcpu ${vcpu}` : stream,
        vcpu,
      };
    }
    case 'kvm_age_hva':
    case 'kvm_unmap_hva_range': {
      const u = /(\S+)\s+--\s+(\S+)$/.exec(body) ?? /start=(\S+)\s+end=(\S+)$/.exec(body);
      const s = u === null ? undefined : hexNumber(u[1]!, true);
      const e = u === null ? undefined : hexNumber(u[2]!, true);
      if (s === undefined || e === undefined || e < s)
        return `${name}: expected "... HEX -- HEX" (a host virtual range), got "${clip(body)}"`;
      return { kind: name, ...common, start: s, end: e };
    }
    default:
      return { kind: 'other', ...common, name };
  }
}

/** The fields of kvm_guest_fault, in either spelling. */
function guestFault(body: string, common: TraceEventCommon): GuestFaultEvent | string {
  const ipaText = field(body, ['ipa']);
  const esrText = field(body, ['hsr', 'esr']);
  const farText = field(body, ['hxfar', 'far']);
  const pcText = field(body, ['pc', 'vcpu_pc']);
  const missing = [
    ipaText === undefined ? 'ipa' : '',
    esrText === undefined ? 'hsr (or esr)' : '',
    farText === undefined ? 'hxfar (or far)' : '',
  ].filter((s) => s !== '');
  if (missing.length > 0)
    return `kvm_guest_fault: missing ${missing.join(', ')} (expected "ipa HEX, hsr HEX, hxfar HEX, pc HEX"), got "${clip(body)}"`;
  const ipa = hexNumber(ipaText!, false);
  const esr = hexBig(esrText!);
  const far = hexBig(farText!);
  const pc = pcText === undefined ? null : hexBig(pcText);
  if (ipa === undefined) return `kvm_guest_fault: ipa "${ipaText}" is not a hex address below 2^53`;
  if (esr === undefined) return `kvm_guest_fault: hsr "${esrText}" is not a hex number`;
  if (far === undefined) return `kvm_guest_fault: hxfar "${farText}" is not a hex number`;
  if (pc === undefined) return `kvm_guest_fault: pc "${pcText}" is not a hex number`;
  return {
    kind: 'kvm_guest_fault',
    ...common,
    ipa,
    esr: Number(esr & 0xffff_ffffn),
    far,
    pc,
  };
}

/** The field patterns by name, made once (a trace may have millions of lines). */
const FIELD_RES = new Map<string, RegExp>();

/** The value after `name` (`name VALUE`, `name: VALUE` or `name=VALUE`), up to a comma or blank. */
function field(body: string, names: readonly string[]): string | undefined {
  for (const n of names) {
    let re = FIELD_RES.get(n);
    if (re === undefined) FIELD_RES.set(n, (re = new RegExp(`(?:^|[\\s,])${n}(?::?\\s+|=)([^\\s,]+)`)));
    const m = re.exec(body);
    if (m !== null) return m[1]!;
  }
  return undefined;
}

/**
 * A hex number as `%#llx` (`0x1c010000`, or `0` for zero) or, with `bare`, `%lx` (`1c010000`)
 * prints it; `%#08lx` zero-pads. Returns it, or undefined when not hex or not below 2^53.
 */
function hexNumber(s: string, bare: boolean): number | undefined {
  const b = hexBig(s, bare);
  if (b === undefined || b > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return Number(b);
}

function hexBig(s: string, bare = true): bigint | undefined {
  if (/^0x[0-9a-f]{1,16}$/i.test(s)) return BigInt(s);
  if (/^[0-9a-f]{1,16}$/i.test(s) && (bare || /^0+$/.test(s))) return BigInt('0x' + s);
  return undefined;
}

/** KVM_EXIT_* numbers (include/uapi/linux/kvm.h) that matter to an abort. */
export const KVM_EXIT_MMIO = 6;
/** KVM_EXIT_ARM_NISV. */
export const KVM_EXIT_ARM_NISV = 28;

function exitReasonName(code: number): string {
  if (code === KVM_EXIT_MMIO) return 'KVM_EXIT_MMIO';
  if (code === KVM_EXIT_ARM_NISV) return 'KVM_EXIT_ARM_NISV';
  return `exit ${code}`;
}

/** A line cut short for an error message. */
function clip(s: string): string {
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}
