/**
 * The host-consistency audit (issue 8): does every valid stage-2 leaf map what the host maps
 * at the corresponding hva right now, with no more permission, and a compatible memory type?
 *
 * For each granule page of each valid leaf: IPA → memslot (current generation) → hva → VMA and
 * the host page table (a side-effect-free lookup: nothing is faulted in and no driver entry is
 * synthesised). Four rules:
 *
 * - `pfn`: the host maps the page, at the same pfn. A pfnmap/mixedmap entry the model has not
 *   synthesised yet counts as the driver's entry (remap_pfn_range() / vmf_insert_mixed()
 *   installed it at mmap time in the kernel; the model only builds it lazily): pfn
 *   vm_pgoff + offset, writable exactly when the VMA is shared and writable. A zapped entry
 *   maps nothing.
 * - `perm`: stage-2 write only if the host entry is writable and the memslot is not
 *   KVM_MEM_READONLY. Exec is not checked against VM_EXEC: user_mem_abort() grants X on an exec
 *   fault (and, with DIC, on every cacheable mapping) without looking at VM_EXEC, and
 *   __kvm_faultin_pfn() asks GUP for FOLL_WRITE only, so the host "allows" exec of every page
 *   it maps (readability is all GUP checks).
 * - `memtype`: neither Normal-WB over an uncached host mapping (vm_page_prot Normal-NC or
 *   Device) nor Device/Normal-NC over a cacheable one (Normal or Normal-Tagged), whatever
 *   memory lies behind it.
 * - `gup`: stage 2 never maps a raw-pfn (special) host entry of a VMA without
 *   VM_IO|VM_PFNMAP: hva_to_pfn() falls back to hva_to_pfn_remapped() only for those, and GUP
 *   refuses special PTEs, so KVM cannot obtain such a pfn (virt/kvm/kvm_main.c).
 *
 * Where the modelled kernel itself breaks a rule, the fault path says so when it does it
 * (hostAuditFaultinStart / hostAuditMapped below, called from fault.ts), as a diagnostic naming
 * the rule, the IPA range and the kernel function, and as a KernelViolation record. A violation
 * the audit finds that no record explains is a model bug.
 *
 * Not on the hot path, except the two fault-path hooks, which allocate nothing unless they
 * report.
 */

import { KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W, pteCacheable } from '../pgtable/descriptor.js';
import { POW2 } from './host/granule.js';
import { HPTE_PRESENT, HPTE_SPECIAL, HPTE_WRITE, HPTE_ZAPPED, newHostLeaf } from './host/hostpt.js';
import {
  VM_IO,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_SHARED,
  VM_WRITE,
  kvmVmaIsCacheable,
  vmaLookup,
  vmaLookupOp,
} from './host/vma.js';
import type { Vma } from './host/vma.js';
import { KVM_MEM_READONLY, gfnToMemslot } from './memslots.js';
import type { Memslot } from './memslots.js';
import type { S2Fault } from './fault.js';
import { HostOp } from './host/op.js';
import type { Kvm } from './vm.js';
import { DOUBLE_FIELD } from '../pgtable/op.js';

/** The audit's rules (see the module comment). */
export const HOST_RULES = ['pfn', 'perm', 'memtype', 'gup'] as const;
/** One rule. */
export type HostRule = (typeof HOST_RULES)[number];

/** One run of consecutive granule pages of one stage-2 leaf that break the same rule. */
export interface HostViolation {
  readonly rule: HostRule;
  /** First IPA of the run, and its size in bytes. */
  readonly ipa: number;
  size: number;
  /** The stage-2 output address at `ipa`. */
  readonly pa: number;
  /** The leaf the run lies in. */
  readonly leafIpa: number;
  readonly leafSize: number;
  /** The hva of `ipa`, or -1 when no memslot covers it. */
  readonly hva: number;
  /** The pfn the host maps at `hva`, or -1 when it maps nothing. */
  readonly hostPfn: number;
  /** What is wrong, in words (without the IPA). */
  readonly detail: string;
}

/** A rule the modelled kernel itself broke, recorded where the fault path did it. */
export interface KernelViolation {
  readonly rules: readonly HostRule[];
  /** The stage-2 range the kernel mapped, and its output address. */
  readonly ipa: number;
  readonly size: number;
  readonly pa: number;
  /** The kernel function responsible. */
  readonly fn: string;
  /** The diagnostic line pushed to kvm.diagnostics. */
  readonly text: string;
}

/** What the fault-path hooks report (REPORT_*): which rules, and the words and function. */
const REPORT_UNCACHED_UNDER_CACHEABLE = 0;
const REPORT_CACHEABLE_UNDER_UNCACHED_PFN = 1;
const REPORT_CACHEABLE_UNDER_UNCACHED_VMA = 2;
const REPORT_BLOCK_FROM_COPY = 3;
const REPORT_BLOCK_OVER_HOLES = 4;

const REPORT_RULES: readonly (readonly HostRule[])[] = [
  ['memtype'],
  ['memtype'],
  ['memtype'],
  ['pfn', 'perm'],
  ['pfn', 'perm'],
];

const REPORT_FN: readonly string[] = [
  'user_mem_abort: kvm_is_device_pfn() makes every pfn outside the linear map device, whatever the VMA',
  'user_mem_abort: kvm_is_device_pfn() is false for a pfn in the linear map, whatever vm_page_prot says',
  'user_mem_abort: only VM_PFNMAP|VM_MIXEDMAP pfns outside the linear map are mapped uncached',
  'user_mem_abort: get_vma_page_shift() sized the block from vm_pgoff; hva_to_pfn() returned the copy',
  "user_mem_abort: get_vma_page_shift() sizes a VM_PFNMAP block from vm_pgoff alone, not from the host's entries",
];

/** REPORT_*'s words, between the IPA and the function. */
function reportWhat(kind: number, pfn: number, hva: number): string {
  switch (kind) {
    case REPORT_UNCACHED_UNDER_CACHEABLE:
      return `maps pfn ${hx(pfn)} uncached under a cacheable host mapping`;
    case REPORT_CACHEABLE_UNDER_UNCACHED_PFN:
    case REPORT_CACHEABLE_UNDER_UNCACHED_VMA:
      return `maps pfn ${hx(pfn)} Normal-WB under an uncached host mapping`;
    case REPORT_BLOCK_FROM_COPY:
      return `maps a block from pfn ${hx(pfn)}, an anonymous copy at hva ${hx(hva)}, over the host RAM after it`;
    default:
      return `maps a block of pfns from ${hx(pfn)} where the host does not map all of them (from hva ${hx(hva)})`;
  }
}

/**
 * Per-VM records, kept beside the Kvm rather than on it (the fault path only appends). The
 * numbers of each record are kept in plain arrays too, so that a repeat (the same fault again,
 * as a benchmark makes) is found without building a string.
 */
interface AuditState {
  readonly records: KernelViolation[];
  readonly kinds: number[];
  readonly ipas: number[];
  readonly sizes: number[];
  readonly pas: number[];
}

const states = new WeakMap<Kvm, AuditState>();

function stateOf(kvm: Kvm): AuditState {
  let s = states.get(kvm);
  if (s === undefined) {
    s = { records: [], kinds: [], ipas: [], sizes: [], pas: [] };
    states.set(kvm, s);
  }
  return s;
}

/** The kernel behaviours recorded so far in this VM (oldest first). Returns the list. */
export function kernelViolations(kvm: Kvm): readonly KernelViolation[] {
  return states.get(kvm)?.records ?? [];
}

function hx(n: number): string {
  return '0x' + n.toString(16);
}

/**
 * What record() reports: the mapping [ipa, ipa + size) at pa, and the hva of its first page.
 * Filled in place before the call (a double argument would be boxed at every call).
 */
const rep = { ipa: DOUBLE_FIELD, size: DOUBLE_FIELD, pa: DOUBLE_FIELD, pfn: DOUBLE_FIELD, hva: DOUBLE_FIELD };

/** Records the kernel behaviour REPORT_`kind` of `rep` once, and pushes its diagnostic. */
function record(kvm: Kvm, kind: number): void {
  const s = stateOf(kvm);
  for (let i = 0; i < s.kinds.length; i++) {
    if (s.kinds[i] === kind && s.ipas[i] === rep.ipa && s.sizes[i] === rep.size && s.pas[i] === rep.pa)
      return;
  }
  const rules = REPORT_RULES[kind]!;
  const fn = REPORT_FN[kind]!;
  const text = `host-consistency: ${rules.join(', ')}: IPA ${hx(rep.ipa)}+${hx(rep.size)} ${reportWhat(kind, rep.pfn, rep.hva)} (${fn}, kernel ${kvm.kernel.name})`;
  s.kinds.push(kind);
  s.ipas.push(rep.ipa);
  s.sizes.push(rep.size);
  s.pas.push(rep.pa);
  s.records.push({ rules, ipa: rep.ipa, size: rep.size, pa: rep.pa, fn, text });
  kvm.diagnose(text);
}

// ---- fault-path hooks (fault.ts) ------------------------------------------------------

/** Per fault object (one per vCPU): the host entry at the hva of the current VM_PFNMAP fault, before __kvm_faultin_pfn(). */
interface FaultinBefore {
  /** Zapped (follow_pfnmap_start() finds nothing). */
  absent: boolean;
  /** The pfn the entry maps (the driver's, for one not synthesised yet), or -1 (absent). */
  pfn: number;
}

const before = new WeakMap<S2Fault, FaultinBefore>();
const hookLeaf = newHostLeaf();

/**
 * Called by user_mem_abort() just before __kvm_faultin_pfn() of `fault.follow.hva`: for a
 * VM_PFNMAP VMA, notes the host entry there. hostAuditMapped() then knows where a pfn that is not
 * the one vm_pgoff names came from: an entry the host already had (a copy the VMM's own write
 * made: GUP-fast or follow_pfnmap_start() just read it), or fixup_user_fault() on an absent
 * entry (hva_to_pfn_remapped(), the only place KVM's fault may make one). Allocates nothing
 * after the vCPU's first PFNMAP fault.
 */
export function hostAuditFaultinStart(kvm: Kvm, fault: S2Fault): void {
  if ((fault.vmFlags & VM_PFNMAP) === 0) return;
  let st = before.get(fault);
  if (st === undefined) {
    st = { absent: false, pfn: -1 };
    before.set(fault, st);
  }
  const pt = kvm.mm.pt;
  const follow = fault.follow;
  const hva = follow.hva;
  pt.lookupOp(follow, hookLeaf);
  // An empty entry of a pfnmap VMA is the driver's entry not yet synthesised: present, at the
  // pfn vm_pgoff names (which is what hostAuditMapped compares with first).
  st.absent = (hookLeaf.flags & HPTE_ZAPPED) !== 0;
  if ((hookLeaf.flags & HPTE_PRESENT) !== 0) {
    st.pfn = hookLeaf.pfn + (hva - hookLeaf.base) / kvm.pageSize;
  } else if (hookLeaf.flags === 0) {
    const vma = vmaLookupOp(kvm.mm.vmas, follow);
    st.pfn = vma === undefined ? -1 : vma.pgoff + (hva - vma.start) / kvm.pageSize;
  } else {
    st.pfn = -1;
  }
}

/** Per VM: the anonymous copies KVM's own fault made of a present entry (hva → pfn): a model bug. */
const kvmCopies = new WeakMap<Kvm, Map<number, number>>();

/**
 * Called by user_mem_abort() right after __kvm_faultin_pfn(): for a VM_PFNMAP VMA whose
 * entry at `fault.follow.hva` was present before, notes whether the lookup replaced it. KVM's
 * fault never does (hva_to_pfn_remapped() reads a present entry as it is, and a write to a
 * read-only one is KVM_PFN_ERR_RO_FAULT), so such a copy is remembered as the model's own
 * doing: a block mapped from it later, on the replayed fault, is not explained either.
 * Allocates nothing unless the entry changed.
 */
export function hostAuditFaultinEnd(kvm: Kvm, fault: S2Fault): void {
  if ((fault.vmFlags & VM_PFNMAP) === 0) return;
  const st = before.get(fault);
  if (st === undefined || st.absent || st.pfn < 0) return;
  const pt = kvm.mm.pt;
  const follow = fault.follow;
  const hva = follow.hva;
  pt.lookupOp(follow, hookLeaf);
  if ((hookLeaf.flags & HPTE_PRESENT) === 0) return;
  const now = hookLeaf.pfn + (hva - hookLeaf.base) / kvm.pageSize;
  if (now === st.pfn) return;
  let copies = kvmCopies.get(kvm);
  if (copies === undefined) {
    copies = new Map();
    kvmCopies.set(kvm, copies);
  }
  copies.set(hva, now);
}

/**
 * Called by user_mem_abort() after kvm_pgtable_stage2_map() installed
 * [fault_ipa, + vma_pagesize) at the fault's pfn (`fault.install`): reports the rules the kernel breaks by
 * doing so, each where the modelled kernel's own logic leads there:
 *
 * - memtype, cacheable over an uncached VMA: the kernel maps Normal-WB whenever its "no CMO
 *   possible" test is false, whatever vm_page_prot says (6.16 and the seed:
 *   kvm_is_device_pfn() is false for a pfn in the linear map; 6.17: the pfn is in the linear
 *   map or the VMA is neither VM_PFNMAP nor VM_MIXEDMAP, 216887f79d98);
 * - memtype, uncached over a cacheable VMA: only a kernel that ignores the VMA's type and does
 *   not refuse the mismatch (6.16: every pfn outside the linear map is device);
 * - pfn and perm, a VM_PFNMAP block: get_vma_page_shift() sizes it from vm_pgoff alone, so
 *   (a) where the host has zapped part of the block, or replaced a page of it, stage 2 maps
 *   the vm_pgoff pfns anyway; (b) where hva_to_pfn() returned an anonymous copy at the
 *   block's first page (the VMM's own write made it, or fixup_user_fault() on an absent
 *   entry: hostAuditFaultinStart tells), the rest of the block maps the host RAM that follows
 *   the copy. A copy KVM's fault made from a present entry is no kernel behaviour (hva_to_pfn()
 *   returns KVM_PFN_ERR_RO_FAULT there) and is not reported, on this fault or on its replay
 *   (hostAuditFaultinEnd).
 *
 * Allocates nothing unless it reports.
 */
export function hostAuditMapped(kvm: Kvm, fault: S2Fault): void {
  const mapped = fault.install;
  const vmFlags = fault.vmFlags;
  const isVmaCacheable = fault.isVmaCacheable;
  const s2Noncacheable = fault.s2ForceNoncacheable;
  const pfnmapBlock = (vmFlags & VM_PFNMAP) !== 0 && mapped.size > kvm.pageSize;
  if (isVmaCacheable !== s2Noncacheable && !pfnmapBlock) return;
  // The mapping as installed: the block around the faulting page's hva (hva and IPA are
  // congruent modulo the block size).
  const ps = kvm.pageSize;
  const pfn = mapped.phys / ps;
  rep.ipa = mapped.addr;
  rep.size = mapped.size;
  rep.pfn = pfn;
  rep.pa = mapped.phys;
  rep.hva = Math.floor(fault.hva / mapped.size) * mapped.size;
  const kernel = kvm.kernel;
  if (isVmaCacheable === s2Noncacheable) {
    const inLinearMap = kvm.phys.pfnIsMapMemoryOp(fault);
    if (s2Noncacheable) {
      // Which cacheable VMAs the kernel keeps cacheable over such a pfn, and whether it
      // refuses the rest (the seed's "mismatched mapping" -EINVAL).
      const keepsCacheable =
        kernel.cacheableOver === 'cacheable-vma' ||
        (kernel.cacheableOver === 'cacheable-pfnmap' && (vmFlags & VM_PFNMAP) !== 0);
      if (!keepsCacheable && !kernel.mismatchEinval) record(kvm, REPORT_UNCACHED_UNDER_CACHEABLE);
    } else {
      const noCmo =
        kernel.deviceTest === 'pfn'
          ? !inLinearMap
          : (vmFlags & (VM_PFNMAP | VM_MIXEDMAP)) !== 0 && !inLinearMap;
      if (!noCmo) {
        record(
          kvm,
          kernel.deviceTest === 'pfn'
            ? REPORT_CACHEABLE_UNDER_UNCACHED_PFN
            : REPORT_CACHEABLE_UNDER_UNCACHED_VMA,
        );
      }
    }
  }
  if (!pfnmapBlock) return;
  const vma = vmaLookupOp(kvm.mm.vmas, fault);
  if (vma === undefined) return;
  const hva = rep.hva;
  if (pfn !== vma.pgoff + (hva - vma.start) / ps) {
    // Not the pfn vm_pgoff names: a copy in anonymous memory. The kernel maps a block from it
    // when the host entry already was that copy, or when fixup_user_fault() made it from an
    // absent entry; a copy made by KVM's fault from a present entry is no kernel behaviour.
    const st = before.get(fault);
    if (st === undefined || !(st.absent || st.pfn === pfn)) return;
    if (kvmCopies.get(kvm)?.get(hva) === pfn) return;
    record(kvm, REPORT_BLOCK_FROM_COPY);
  } else if (blockDiffers(kvm)) {
    record(kvm, REPORT_BLOCK_OVER_HOLES);
  }
}

/**
 * Whether the host maps anything other than rep.pfn, rep.pfn + 1, ... over [rep.hva, rep.hva +
 * rep.size) of a VM_PFNMAP VMA: an entry zapped (and not refilled) or replaced by another page.
 * An entry not synthesised yet is the driver's, which vm_pgoff names. One lookup per host entry;
 * allocates nothing. Returns true at the first difference.
 */
/** blockDiffers()'s address carrier. */
const blockAt = new HostOp();

function blockDiffers(kvm: Kvm): boolean {
  const hva = rep.hva;
  const size = rep.size;
  const pfn = rep.pfn;
  const pt = kvm.mm.pt;
  const l = hookLeaf;
  const ps = kvm.pageSize;
  const end = hva + size;
  const at = blockAt;
  for (let a = hva; a < end;) {
    at.hva = a;
    pt.lookupOp(at, l);
    if ((l.flags & HPTE_PRESENT) !== 0) {
      if (l.pfn + (a - l.base) / ps !== pfn + (a - hva) / ps) return true;
    } else if (l.flags !== 0) {
      return true;
    }
    a = l.base + POW2[l.shift]!;
  }
  return false;
}

// ---- the audit -----------------------------------------------------------------------

/** What the host maps at one hva (the audit's scratch). */
interface HostView {
  /** The pfn at the hva, or -1 for nothing. */
  pfn: number;
  writable: boolean;
  special: boolean;
  /** Bytes from the hva over which the same entry (linear pfns, same flags) holds. */
  span: number;
}

const auditLeaf = newHostLeaf();

/** The host's mapping at `hva` in `vma`, without side effects. Fills `out`. */
function hostAt(kvm: Kvm, vma: Vma, hva: number, out: HostView): void {
  const pt = kvm.mm.pt;
  const l = auditLeaf;
  pt.lookup(hva, l);
  const ps = kvm.pageSize;
  const entryEnd = l.base + 2 ** l.shift;
  out.span = Math.min(entryEnd, vma.end) - hva;
  if ((l.flags & HPTE_PRESENT) !== 0) {
    out.pfn = l.pfn + (hva - l.base) / ps;
    out.writable = (l.flags & HPTE_WRITE) !== 0;
    out.special = (l.flags & HPTE_SPECIAL) !== 0;
    return;
  }
  const pfnBacked = vma.backing === 'pfnmap' || vma.backing === 'mixedmap';
  if (l.flags === 0 && pfnBacked) {
    // The driver's entry, not yet synthesised (installPfnEntry (hostfault.ts)'s rule).
    out.pfn = vma.pgoff + (hva - vma.start) / ps;
    out.writable = (vma.vmFlags & (VM_SHARED | VM_WRITE)) === (VM_SHARED | VM_WRITE);
    // remap_pfn_range() and, on arm64 (CONFIG_ARCH_HAS_PTE_SPECIAL), vmf_insert_mixed() both
    // go through insert_pfn(), which makes every entry special, RAM or not.
    out.special = true;
    return;
  }
  out.pfn = -1;
  out.writable = false;
  out.special = false;
}

/**
 * Audits every valid stage-2 leaf (or, with `start`/`end`, the pages of the leaves inside
 * [start, end)) against the host's mappings now (the module comment's four rules). Violations come as runs of consecutive pages of one leaf breaking one rule. Returns
 * them, in IPA order per rule.
 */
export function auditHostConsistency(kvm: Kvm, start = 0, end = Infinity): HostViolation[] {
  const out: HostViolation[] = [];
  const ps = kvm.pageSize;
  const fwb = kvm.cpu.fwb;
  const slots = kvm.memslots.current;
  const layout = kvm.pgt.layout;
  const geo = kvm.pgt.geo;
  const host: HostView = { pfn: -1, writable: false, special: false, span: 0 };
  const last = new Map<HostRule, HostViolation>();
  const add = (
    rule: HostRule,
    ipa: number,
    n: number,
    pa: number,
    leafIpa: number,
    leafSize: number,
    hva: number,
    hostPfn: number,
    detail: () => string,
  ): void => {
    const prev = last.get(rule);
    if (prev !== undefined && prev.leafIpa === leafIpa && prev.ipa + prev.size === ipa) {
      // Extend a run of the same rule in the same leaf when the host side continues too.
      const sameHost = prev.hostPfn < 0 ? hostPfn < 0 : hostPfn === prev.hostPfn + prev.size / ps;
      if (sameHost && (prev.hva < 0 ? hva < 0 : hva === prev.hva + prev.size)) {
        prev.size += n;
        return;
      }
    }
    const v: HostViolation = { rule, ipa, size: n, pa, leafIpa, leafSize, hva, hostPfn, detail: detail() };
    out.push(v);
    last.set(rule, v);
  };
  kvm.pgt.forEachValid(
    (kind, level, leafIpa, lo, hi) => {
      if (kind !== 'leaf') return;
      const leafSize = geo.granuleSize(level);
      const leafPa = layout.toPhys(lo, hi);
      // The part of the leaf inside [start, end): the whole leaf for a full audit.
      const leafEnd = Math.min(leafIpa + leafSize, end);
      const s2Write = (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W) !== 0;
      const s2Cacheable = pteCacheable(lo, fwb);
      let a = Math.max(leafIpa, start);
      while (a < leafEnd) {
        const pa = leafPa + (a - leafIpa);
        const s2pfn = pa / ps;
        const gfn = a / ps;
        const slot: Memslot | undefined = gfnToMemslot(slots, gfn);
        if (slot === undefined) {
          // Up to the next slot or the leaf's end: stage 2 maps IPA no memslot backs.
          let next = leafEnd;
          for (const s of slots.slots) if (s.baseGfn * ps > a) next = Math.min(next, s.baseGfn * ps);
          add(
            'pfn',
            a,
            next - a,
            pa,
            leafIpa,
            leafSize,
            -1,
            -1,
            () => 'maps pfn ' + hx(s2pfn) + ' but no memslot covers it',
          );
          a = next;
          continue;
        }
        const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * ps;
        const slotEnd = (slot.baseGfn + slot.npages) * ps;
        const vma = vmaLookup(kvm.mm.vmas, hva);
        if (vma === undefined) {
          let n = ps;
          // Up to the next VMA, the slot's end or the leaf's end.
          while (a + n < Math.min(leafEnd, slotEnd) && vmaLookup(kvm.mm.vmas, hva + n) === undefined) n += ps;
          add(
            'pfn',
            a,
            n,
            pa,
            leafIpa,
            leafSize,
            hva,
            -1,
            () => `maps pfn ${hx(s2pfn)} but no VMA covers hva ${hx(hva)}`,
          );
          a += n;
          continue;
        }
        hostAt(kvm, vma, hva, host);
        const n = Math.min(host.span, leafEnd - a, slotEnd - a);
        if (host.pfn < 0) {
          add(
            'pfn',
            a,
            n,
            pa,
            leafIpa,
            leafSize,
            hva,
            -1,
            () => `maps pfn ${hx(s2pfn)} but the host maps nothing at hva ${hx(hva)}`,
          );
          a += n;
          continue;
        }
        if (host.pfn !== s2pfn) {
          const hp = host.pfn;
          add(
            'pfn',
            a,
            n,
            pa,
            leafIpa,
            leafSize,
            hva,
            hp,
            () => `maps pfn ${hx(s2pfn)} but the host maps ${hx(hp)} at hva ${hx(hva)}`,
          );
        }
        const ro = (slot.flags & KVM_MEM_READONLY) !== 0;
        if (s2Write && (!host.writable || ro)) {
          const hp = host.pfn;
          add('perm', a, n, pa, leafIpa, leafSize, hva, hp, () =>
            ro
              ? `is writable but memslot ${slot.id} is read-only`
              : `is writable but the host maps hva ${hx(hva)} read-only`,
          );
        }
        const hostCacheable = kvmVmaIsCacheable(vma);
        if (s2Cacheable !== hostCacheable) {
          const hp = host.pfn;
          add('memtype', a, n, pa, leafIpa, leafSize, hva, hp, () =>
            s2Cacheable
              ? `is Normal-WB but VMA "${vma.name}" maps hva ${hx(hva)} uncached`
              : `is uncached but VMA "${vma.name}" maps hva ${hx(hva)} cacheable`,
          );
        }
        if (host.special && (vma.vmFlags & (VM_IO | VM_PFNMAP)) === 0) {
          const hp = host.pfn;
          add(
            'gup',
            a,
            n,
            pa,
            leafIpa,
            leafSize,
            hva,
            hp,
            () =>
              `maps the raw pfn ${hx(hp)} of VMA "${vma.name}" (no VM_IO|VM_PFNMAP): hva_to_pfn() cannot obtain it`,
          );
        }
        a += n;
      }
    },
    start,
    end,
  );
  return out;
}

/**
 * Whether a KernelViolation record explains `v`: the same rule, a range that contains the
 * run, and the same output addresses (a later mapping of the same IPA elsewhere is not
 * explained by an old record). Returns the record, or undefined.
 */
export function explainedBy(kvm: Kvm, v: HostViolation): KernelViolation | undefined {
  for (const r of kernelViolations(kvm)) {
    if (!r.rules.includes(v.rule)) continue;
    if (v.ipa < r.ipa || v.ipa + v.size > r.ipa + r.size) continue;
    if (r.pa + (v.ipa - r.ipa) !== v.pa) continue;
    return r;
  }
  return undefined;
}

/** One violation in words: `pfn: IPA 0x...+0x...: maps ...`. Returns the line. */
export function formatHostViolation(v: HostViolation): string {
  return `${v.rule}: IPA ${hx(v.ipa)}+${hx(v.size)} (leaf ${hx(v.leafIpa)}+${hx(v.leafSize)}) ${v.detail}`;
}
