// The README's library examples, as a consumer of the packed package writes them (strict,
// nodenext, no Node types): .ci/consumer-check type-checks and runs this file against the
// tarball. Each claim the README makes in a comment is checked here.
import {
  Kvm,
  Vcpu,
  AccessResult,
  CPU_PRESETS,
  ACC_WRITE,
  VM_READ,
  VM_WRITE,
  VM_MAYWRITE,
  DescriptorView,
  Stage2PageTable,
  MemCache,
  CountingEvents,
  KVM_PGTABLE_PROT_RWX,
  hex64,
  LeafResult,
  parseScenario,
  ScenarioRunner,
} from 's2emu';
import type { FaultRecord, RunSummary, Vma } from 's2emu';

function check(what: string, got: unknown, want: unknown): void {
  if (got !== want) throw new Error(`${what}: got ${String(got)}, want ${String(want)}`);
}

// ---- KVM's fault path ----
const kvm = new Kvm({
  cpu: CPU_PRESETS.grace.features,
  granule: 4096,
  physical: [{ base: 0x8000_0000, size: 0x4000_0000, type: 'ram' }],
});
const vma: Vma | string = kvm.mm.mmap({
  name: 'ram',
  start: 0x7f00_0000_0000,
  size: 0x4000_0000,
  vmFlags: VM_READ | VM_WRITE | VM_MAYWRITE,
  backing: 'thp',
});
if (typeof vma === 'string') throw new Error(`mmap: ${vma}`);
check(
  'createMemslot',
  kvm.createMemslot({ id: 0, baseGfn: 0x40000, npages: 0x40000, userspaceAddr: 0x7f00_0000_0000, flags: 0 }),
  0,
);
const vcpu = new Vcpu(kvm);
const r = new AccessResult();
vcpu.access(ACC_WRITE, 0x4000_1000, r);
check('outcome', r.outcomeName, 'done');
const f: FaultRecord | undefined = r.faults[0];
check('first fault handler', f?.handler, 'user_mem_abort');
check(
  'leaf',
  String(new DescriptorView(r.leafLo, r.leafHi, r.leafLevel, kvm.pgt)),
  'L2 block 0x80200000 RWX Normal-WB AF',
);

// ---- the page table alone ----
const events = new CountingEvents();
const pgt = new Stage2PageTable({ granule: 4096, ipaBits: 40, fwb: false, events });
const mc = new MemCache(pgt.pool);
mc.topup(pgt.geo.minCachePages);
check('map', pgt.map(0x4020_0000, 0x20_0000, 0x4020_0000, KVM_PGTABLE_PROT_RWX, mc), 0);
const leaf = new LeafResult();
pgt.getLeaf(0x4020_1000, leaf);
check('descriptor', hex64(leaf.lo, leaf.hi), '0x00000000402007fd');
check('dcacheBytes', events.dcacheBytes, 2097152);

// ---- a scenario ----
const summary: RunSummary = new ScenarioRunner(
  parseScenario({
    cpu: { profile: 'grace' },
    granule: '4K',
    physical: [{ base: '0x8000_0000', size: '1G', type: 'ram' }],
    vmas: [{ name: 'ram', start: '0x7f00_0000_0000', size: '64M', backing: 'anon', prot: 'rw' }],
    memslots: [{ slot: 0, gpa: '0x4000_0000', size: '64M', vma: 'ram' }],
    steps: [{ access: 'write', ipa: '0x4000_1000' }],
  }),
).run();
check('scenario maps', summary.maps, 1);
