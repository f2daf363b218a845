import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TraceParseError, parseLine, parseTrace } from '../src/trace/parse.js';
import type { GuestFaultEvent, TraceEvent } from '../src/trace/parse.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The one event of a line (fails the test when the line is malformed). */
function ev(line: string): TraceEvent {
  const e = parseLine(line, 1);
  if (typeof e === 'string') throw new Error(e);
  return e;
}

function fault(line: string): GuestFaultEvent {
  const e = ev(line);
  expect(e.kind).toBe('kvm_guest_fault');
  return e as GuestFaultEvent;
}

// The TP_printk of kvm_guest_fault (arch/arm64/kvm/trace_arm.h): "ipa %#llx, hsr %#08lx,
// hxfar %#08lx, pc %#016lx" (pc %#08lx before the 16-digit change).
const BODY = 'ipa 0x1c010000, hsr 0x93800006, hxfar 0xf80100a8, pc 0x802c21c8';

describe('trace lines: the tools and their prefixes', () => {
  it('reads trace-cmd report lines, with and without the flags column', () => {
    for (const line of [
      `  CPU 0/KVM-4242  [003]  1234.567890: kvm_guest_fault:      ${BODY}`,
      `  CPU 0/KVM-4242  [003] d..2.  1234.567890: kvm_guest_fault: ${BODY}`,
    ]) {
      const f = fault(line);
      expect(f.stream).toBe('CPU 0/KVM-4242');
      expect(f.cpu).toBe(3);
      expect(f.time).toBe(1234.56789);
      expect(f.ipa).toBe(0x1c010000);
      expect(f.esr).toBe(0x93800006);
      expect(f.far).toBe(0xf80100a8n);
      expect(f.pc).toBe(0x802c21c8n);
    }
  });

  it('reads perf script lines: pid or pid/tid, with and without the CPU, system-prefixed event', () => {
    const a = fault(`       CPU 1/KVM  4243/4250 [001]  99.000001: kvm:kvm_guest_fault: ${BODY}`);
    expect([a.stream, a.cpu, a.time]).toEqual(['CPU 1/KVM-4250', 1, 99.000001]);
    const b = fault(`qemu-system-aar  4243 [000]  99.5: kvm:kvm_guest_fault: ${BODY}`);
    expect([b.stream, b.cpu]).toEqual(['qemu-system-aar-4243', 0]);
    const c = fault(`CPU 1/KVM 4243 99.5: kvm:kvm_guest_fault: ${BODY}`);
    expect([c.stream, c.cpu, c.time]).toEqual(['CPU 1/KVM-4243', null, 99.5]);
  });

  it('reads bare lines: one stream, unless the event names its vCPU', () => {
    const f = fault(`kvm_guest_fault: ${BODY}`);
    expect([f.stream, f.time, f.cpu]).toEqual(['-', null, null]);
    const e = ev('kvm_exit: TRAP: vcpu: 3 HSR_EC: 0x0024 (DABT_LOW), PC: 0xffff800080012340');
    expect(e).toMatchObject({ kind: 'kvm_exit', vcpu: 3, stream: 'vcpu 3' });
    const n = ev('kvm_entry: PC: 0x0000000040080000');
    expect(n).toMatchObject({ kind: 'kvm_entry', vcpu: null, stream: '-' });
  });

  it('takes both field spellings, raw name=value fields, 8- or 16-digit PCs and %#x zeros', () => {
    const esr = fault(
      'kvm_guest_fault: ipa 0x40100000, esr 0x9380004f, far 0xffff000000100010, pc 0xffff800080010014',
    );
    expect([esr.esr, esr.far, esr.pc]).toEqual([0x9380004f, 0xffff000000100010n, 0xffff800080010014n]);
    const raw = fault('kvm_guest_fault: vcpu_pc=0x40080000 hsr=0x82000007 hxfar=0x40080000 ipa=0x40080000');
    expect([raw.ipa, raw.esr, raw.far, raw.pc]).toEqual([0x40080000, 0x82000007, 0x40080000n, 0x40080000n]);
    // %#llx prints zero as "0", %#08lx as "00000000".
    const zero = fault('kvm_guest_fault: ipa 0, hsr 0x93c00046, hxfar 00000000, pc 0x40080200');
    expect([zero.ipa, zero.far]).toEqual([0, 0n]);
    // ESR_EL2 is 64 bits; ISS2 above bit 31 is dropped.
    expect(fault('kvm_guest_fault: ipa 0x1000, hsr 0x1093800006, hxfar 0x1000, pc 0x0').esr).toBe(0x93800006);
  });

  it('reads the other KVM events as their TP_printk prints them', () => {
    expect(ev('kvm_access_fault: IPA: 40100000')).toMatchObject({
      kind: 'kvm_access_fault',
      ipa: 0x40100000,
    });
    expect(ev('kvm_userspace_exit: reason KVM_EXIT_MMIO (6)')).toMatchObject({
      reason: 'KVM_EXIT_MMIO',
      code: 6,
    });
    // Before KVM_EXIT_ARM_NISV was added to the name table it printed as a number.
    expect(ev('kvm_userspace_exit: reason 0x1c (28)')).toMatchObject({
      reason: 'KVM_EXIT_ARM_NISV',
      code: 28,
    });
    expect(ev('kvm_userspace_exit: reason error (14)')).toMatchObject({ reason: 'error', code: 14 });
    expect(ev('kvm_userspace_exit: reason restart (4)')).toMatchObject({ reason: 'restart', code: 4 });
    expect(ev('kvm_userspace_exit: reason=6 errno=0')).toMatchObject({ reason: 'KVM_EXIT_MMIO', code: 6 });
    expect(ev('kvm_mmio: mmio unsatisfied-read len 4 gpa 0x9000018 val 0x0')).toMatchObject({
      kind: 'kvm_mmio',
      op: 'unsatisfied-read',
      len: 4,
      gpa: 0x9000018,
    });
    expect(
      ev('kvm_mmio_emulate: Emulate MMIO at: 0x0000000040080100 (instr: b9001801, cpsr: 600003c5)').kind,
    ).toBe('kvm_mmio_emulate');
    expect(ev('kvm_age_hva: mmu notifier age hva: 0x00007f0000100000 -- 0x00007f0000101000')).toMatchObject({
      kind: 'kvm_age_hva',
      start: 0x7f0000100000,
      end: 0x7f0000101000,
    });
    expect(ev('kvm_irq_line: Inject VGIC SPI interrupt (2), vcpu->idx: 0, num: 33, level: 1')).toMatchObject({
      kind: 'other',
      name: 'kvm_irq_line',
    });
    expect(ev('  bash-100 [000] 5.0: sched:sched_switch: prev_comm=bash')).toMatchObject({
      kind: 'other',
      name: 'sched_switch',
    });
  });
});

describe('trace files: headers, malformed lines, --lenient', () => {
  it('skips the tools’ header lines and blank lines, numbering lines from 1', () => {
    const t = parseTrace(`cpus=4\nversion = 6\n# tracer: nop\n\nCPU 2 is empty\nkvm_guest_fault: ${BODY}\n`);
    expect(t.events).toHaveLength(1);
    expect(t.events[0]!.line).toBe(6);
  });

  it('rejects a malformed line with its line number and what is wrong', () => {
    const text = `kvm_guest_fault: ${BODY}\nkvm_guest_fault: ipa 0x1000, pc 0x0\n`;
    let err: unknown;
    try {
      parseTrace(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TraceParseError);
    expect((err as TraceParseError).line).toBe(2);
    expect((err as TraceParseError).detail).toMatch(/missing hsr \(or esr\), hxfar \(or far\)/);
    expect(() => parseTrace('garbage without an event\n')).toThrow(/^line 1: not a trace event/);
    expect(() => parseTrace(`kvm_guest_fault: ${BODY}\n\n[x] ] kvm_entry: PC: 0x0`)).toThrow(
      /^line 3: cannot read the line prefix/,
    );
    expect(() => parseTrace('kvm_guest_fault: ipa 0xzz, hsr 0x93800006, hxfar 0x0')).toThrow(
      /ipa "0xzz" is not a hex/,
    );
    expect(() => parseTrace('kvm_userspace_exit: reason\n')).toThrow(/line 1: kvm_userspace_exit: expected/);
  });

  it('with lenient, skips and counts malformed lines and keeps the rest', () => {
    const text = `kvm_guest_fault: ${BODY}\nnonsense\nkvm_access_fault: IPA: zz\nkvm_entry: PC: 0x1\n`;
    const t = parseTrace(text, { lenient: true });
    expect(t.events.map((e) => [e.kind, e.line])).toEqual([
      ['kvm_guest_fault', 1],
      ['kvm_entry', 4],
    ]);
    expect(t.skipped.map((s) => s.line)).toEqual([2, 3]);
  });

  it('reads the trace-cmd and perf examples as the same events', () => {
    const a = parseTrace(readFileSync(join(root, 'examples/traces/boot-trace-cmd.txt'), 'utf8')).events;
    const b = parseTrace(readFileSync(join(root, 'examples/traces/boot-perf.txt'), 'utf8')).events;
    expect(a.length).toBe(23);
    const strip = (e: TraceEvent): unknown => {
      const { line: _l, ...rest } = e;
      return rest;
    };
    expect(b.map(strip)).toEqual(a.map(strip));
    // The perf file has no cpus= header: every line one earlier.
    expect(b.map((e) => e.line)).toEqual(a.map((e) => e.line - 1));
  });
});
