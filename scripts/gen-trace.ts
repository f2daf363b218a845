/**
 * Generates a KVM trace, as `trace-cmd report` or `perf script` would print it, from a workload
 * run on the modelled host: several vCPUs reading, writing, executing and touching MMIO, with
 * the host aging and unmapping guest memory now and then. Every stage-2 fault the model takes
 * becomes a kvm_guest_fault line with its syndrome (ESR), FAR and fault IPA, followed by what
 * KVM did next (kvm_access_fault, kvm_mmio, kvm_userspace_exit); host events become
 * kvm_age_hva / kvm_unmap_hva_range lines.
 *
 * Replaying such a trace on the same host must reproduce every fault: the syndromes are decoded
 * back into accesses (src/trace/syndrome.ts), so the trace tests the decoding end to end
 * (test/trace-cli.test.ts replays examples/traces/generated-perf.txt).
 *
 *   npx tsx scripts/gen-trace.ts HOST.json [--accesses N] [--seed S] [--format trace-cmd|perf]
 *        [--spelling hsr|esr] > TRACE.txt
 */

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ScenarioRunner } from '../src/scenario/run.js';
import { parseHostText } from '../src/trace/replay.js';
import { OUT_ERROR, OUT_MMIO, OUT_NISV } from '../src/mmu/vcpu.js';
import type { AccessResult } from '../src/mmu/vcpu.js';
import { parseScenario } from '../src/scenario/parse.js';
import { ESR_ELx_WNR } from '../src/mmu/esr.js';

/** Options of generateTrace(). */
export interface GenOptions {
  /** Guest accesses to make (each may fault zero or more times). */
  accesses: number;
  seed: number;
  format: 'trace-cmd' | 'perf';
  /** Field names of kvm_guest_fault: `hsr`/`hxfar` (trace_arm.h) or `esr`/`far`. */
  spelling: 'hsr' | 'esr';
  vcpus: number;
}

/** A small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const hx = (n: number | bigint): string => '0x' + n.toString(16);

/**
 * The workload's steps on the example host (examples/traces/host.json's layout: read-only flash
 * at 0, RAM at 0x4000_0000, MMIO at 0x0900_0000 and 0x0a00_0000) and the vCPU of each step.
 */
function workload(o: GenOptions, ramHva: number): { steps: Record<string, unknown>[]; vcpu: number[] } {
  const r = rng(o.seed);
  const steps: Record<string, unknown>[] = [];
  const vcpu: number[] = [];
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const ramPage = (v: number): number => 0x4000_0000 + v * 0x100_0000 + Math.floor(r() * 1024) * 0x1000;
  for (let i = 0; i < o.accesses; i++) {
    const v = Math.floor(r() * o.vcpus);
    const x = r();
    const off = Math.floor(r() * 512) * 8;
    let access: string;
    let ipa: number;
    if (x < 0.35) [access, ipa] = ['write', ramPage(v) + off];
    else if (x < 0.55) [access, ipa] = ['read', ramPage(v) + off];
    else if (x < 0.6) [access, ipa] = ['exec', 0x4f00_0000 + Math.floor(r() * 256) * 0x1000];
    else if (x < 0.65) [access, ipa] = ['cas', ramPage(v) + off];
    else if (x < 0.7) [access, ipa] = [pick(['ld-preidx', 'st-preidx']), ramPage(v) + off];
    else if (x < 0.72) [access, ipa] = ['dc-civac', ramPage(v)];
    else if (x < 0.8) [access, ipa] = ['read', Math.floor(r() * 4096) * 0x1000 + off];
    else if (x < 0.83) [access, ipa] = ['write', Math.floor(r() * 16) * 0x1000 + off];
    else if (x < 0.9) [access, ipa] = [pick(['read', 'write']), 0x0900_0000 + (off % 0x100)];
    else if (x < 0.97)
      [access, ipa] = [pick(['read', 'write']), 0x0a00_0000 + Math.floor(r() * 32) * 0x200 + (off % 0x100)];
    else [access, ipa] = ['ld-preidx', 0x0a00_0000 + (off % 0x100)];
    steps.push({ access, ipa: hx(ipa) });
    vcpu.push(v);
    // The host's reclaim ages a vCPU's 16M of RAM now and then; more rarely it drops 2M of it.
    if (i % 400 === 399) {
      const w = Math.floor(r() * o.vcpus);
      steps.push({ age: { ipa: hx(0x4000_0000 + w * 0x100_0000), size: '16M' } });
      vcpu.push(-1);
    } else if (i % 1300 === 1299) {
      const w = Math.floor(r() * o.vcpus);
      steps.push({ hostUnmap: { vma: 'guest-ram', offset: hx(w * 0x100_0000 + 0x20_0000), size: '2M' } });
      vcpu.push(-1);
    }
  }
  void ramHva;
  return { steps, vcpu };
}

/** Runs the workload on `hostText` and returns the trace text. */
export function generateTrace(hostText: string, o: GenOptions): string {
  const host = parseHostText(hostText);
  const ram = host.scenario.vmas.find((v) => v.name === 'guest-ram');
  const slot = host.scenario.memslots.find((m) => m.vma === 'guest-ram');
  if (ram === undefined || slot === undefined)
    throw new Error('the host needs a VMA "guest-ram" with a memslot');
  const { steps, vcpu } = workload(o, ram.start);
  const scenario = parseScenario({ ...host.json, steps });
  const runner = new ScenarioRunner(scenario, { auditHost: false });
  const out: string[] = [];
  const r = rng(o.seed ^ 0x5eed);
  let t = 1000;
  /** The line prefix of vCPU `v` (−1: the host's kswapd, which ages and reclaims). */
  const prefix = (v: number): string => {
    t += 0.000001 + Math.floor(r() * 20) / 1e6;
    const tid = v < 0 ? 88 : 4240 + v;
    const comm = v < 0 ? 'kswapd0' : `CPU ${v}/KVM`;
    const cpu = String(v < 0 ? o.vcpus : v).padStart(3, '0');
    const ts = t.toFixed(6);
    return o.format === 'perf'
      ? `${comm.padStart(16)} ${tid}/${tid} [${cpu}] ${ts}: kvm:`
      : `  ${comm}-${tid} [${cpu}] ${ts}: `;
  };
  const [esrName, farName] = o.spelling === 'hsr' ? ['hsr', 'hxfar'] : ['esr', 'far'];
  let done = 0;
  /** Host-side steps print when the access after them (or the end) is reached. */
  const hostSteps = (upTo: number): void => {
    for (; done < upTo; done++) {
      const st = steps[done]!;
      if ('age' in st) {
        const a = st['age'] as { ipa: string };
        const start = ram.start + (Number(a.ipa) - slot.gpa);
        out.push(`${prefix(-1)}kvm_age_hva: mmu notifier age hva: ${hx(start)} -- ${hx(start + 0x100_0000)}`);
      } else if ('hostUnmap' in st) {
        const u = st['hostUnmap'] as { offset: string };
        const start = ram.start + Number(u.offset);
        out.push(
          `${prefix(-1)}kvm_unmap_hva_range: mmu notifier unmap range: ${hx(start)} -- ${hx(start + 0x20_0000)}`,
        );
      }
    }
  };
  let pc = 0xffff_8000_8001_0000n;
  let faults = 0;
  runner.run({
    access: (step: number, res: AccessResult) => {
      hostSteps(step);
      done = step + 1;
      const v = vcpu[step]!;
      const page = res.ipa - (res.ipa % 4096);
      // FAR is the guest's VA: the guest kernel's linear map (or its ioremap) of the IPA.
      const far = 0xffff_0000_0000_0000n + BigInt(res.ipa);
      pc += 4n * BigInt(1 + Math.floor(r() * 64));
      for (let i = 0; i < res.nFaults; i++) {
        const f = res.fault(i);
        if (faults++ % 50 === 0)
          out.push(
            `${prefix(v)}kvm_exit: TRAP: HSR_EC: 0x00${(f.esr >>> 26).toString(16)} (${f.esr >>> 26 === 0x20 ? 'IABT_LOW' : 'DABT_LOW'}), PC: 0x${pc.toString(16).padStart(16, '0')}`,
          );
        out.push(
          `${prefix(v)}kvm_guest_fault: ipa ${hx(page)}, ${esrName} ${hx(f.esr >>> 0)}, ${farName} ${hx(far)}, pc 0x${pc.toString(16).padStart(16, '0')}`,
        );
        if (f.handler === 'handle_access_fault')
          out.push(`${prefix(v)}kvm_access_fault: IPA: ${page.toString(16)}`);
      }
      if (res.outcome === OUT_MMIO) {
        const last = res.fault(res.nFaults - 1);
        const write = (last.esr & ESR_ELx_WNR) !== 0;
        out.push(
          `${prefix(v)}kvm_mmio: mmio ${write ? 'write' : 'unsatisfied-read'} len 8 gpa ${hx(res.mmioIpa)} val 0x0`,
        );
        out.push(`${prefix(v)}kvm_userspace_exit: reason KVM_EXIT_MMIO (6)`);
      } else if (res.outcome === OUT_NISV)
        out.push(`${prefix(v)}kvm_userspace_exit: reason KVM_EXIT_ARM_NISV (28)`);
      else if (res.outcome === OUT_ERROR)
        out.push(`${prefix(v)}kvm_userspace_exit: reason error (${-res.errno})`);
      if (res.nFaults > 0 && faults % 50 === 1)
        out.push(`${prefix(v)}kvm_entry: PC: 0x${pc.toString(16).padStart(16, '0')}`);
    },
  });
  hostSteps(steps.length);
  return out.join('\n') + '\n';
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    strict: true,
    options: {
      accesses: { type: 'string', default: '4000' },
      seed: { type: 'string', default: '1' },
      format: { type: 'string', default: 'perf' },
      spelling: { type: 'string', default: 'hsr' },
      vcpus: { type: 'string', default: '4' },
    },
  });
  if (positionals.length !== 1)
    throw new Error('usage: gen-trace.ts HOST.json [--accesses N] [--seed S] [--format trace-cmd|perf]');
  const format = values.format === 'trace-cmd' ? 'trace-cmd' : 'perf';
  process.stdout.write(
    generateTrace(readFileSync(positionals[0]!, 'utf8'), {
      accesses: Number(values.accesses),
      seed: Number(values.seed),
      format,
      spelling: values.spelling === 'esr' ? 'esr' : 'hsr',
      vcpus: Number(values.vcpus),
    }),
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
