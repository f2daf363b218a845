/**
 * KVM memslots: guest-physical ranges backed by host virtual ranges, held in
 * immutable generations produced with immer, as KVM swaps whole memslot
 * arrays under SRCU. The fault path reads `current` and never mutates it.
 *
 * A slot's dirty bitmap is the one mutable part: a typed array referenced by
 * the slot (immer leaves typed arrays alone), exactly as KVM's slot points at
 * a bitmap it updates in place. Bitmap operations are in dirty.ts.
 */
import { pow2 } from './host/granule.js';
import { produce } from 'immer';
import { DOUBLE_FIELD } from '../pgtable/op.js';

/** KVM_MEM_LOG_DIRTY_PAGES. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
/** KVM_MEM_READONLY. */
export const KVM_MEM_READONLY = 2;

/** kvm_is_error_hva() is true for this value (KVM_HVA_ERR_BAD). */
export const KVM_HVA_ERR_BAD = -1;

/** errno values this module returns (negated). */
const EINVAL = 22;
const EEXIST = 17;

/** One memslot (struct kvm_memory_slot). */
export interface Memslot {
  /** Slot id (the low 16 bits of the ioctl's slot field). */
  readonly id: number;
  /** First guest frame number. */
  readonly baseGfn: number;
  /** Number of pages. */
  readonly npages: number;
  /** Host virtual address of the first page. */
  readonly userspaceAddr: number;
  /** KVM_MEM_* flags. */
  readonly flags: number;
  /** One bit per page (bit i of word i>>5 for gfn baseGfn+i), or null when not logging. */
  readonly dirtyBitmap: Uint32Array | null;
}

/** One immutable generation of the memslot set, sorted by baseGfn. */
export interface MemslotSet {
  /** Generation number, incremented by every change (KVM increments by 2 with an in-progress bit). */
  readonly generation: number;
  /** Slots sorted by baseGfn, non-overlapping. */
  readonly slots: readonly Memslot[];
}

/** What install() takes: a slot without its bitmap (created from the flags). */
export interface MemslotSpec {
  readonly id: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  readonly flags: number;
}

/** Allocates a zeroed dirty bitmap for npages (kvm_alloc_dirty_bitmap). */
export function allocDirtyBitmap(npages: number): Uint32Array {
  return new Uint32Array(Math.ceil(npages / 32));
}

/**
 * The sequence of memslot generations of one VM. Each change produces a new
 * MemslotSet; earlier generations stay valid and unchanged (readers holding
 * one, like an SRCU reader, keep seeing it).
 */
export class MemslotGenerations {
  /** The current generation. */
  current: MemslotSet = { generation: 0, slots: [] };

  /**
   * Installs a new slot (KVM_MR_CREATE). A bitmap is allocated if the flags
   * ask for dirty logging. Returns 0, -EEXIST (id in use or gfn overlap) or
   * -EINVAL (empty slot, unknown flags).
   */
  install(spec: MemslotSpec): number {
    if (spec.npages <= 0 || (spec.flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0)
      return -EINVAL;
    const end = spec.baseGfn + spec.npages;
    for (const s of this.current.slots) {
      if (s.id === spec.id) return -EEXIST;
      if (spec.baseGfn < s.baseGfn + s.npages && s.baseGfn < end) return -EEXIST;
    }
    const slot: Memslot = {
      ...spec,
      dirtyBitmap: (spec.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 ? allocDirtyBitmap(spec.npages) : null,
    };
    this.current = produce(this.current, (d) => {
      let i = 0;
      while (i < d.slots.length && d.slots[i].baseGfn < slot.baseGfn) i++;
      d.slots.splice(i, 0, slot);
      d.generation++;
    });
    return 0;
  }

  /** Deletes slot `id` (KVM_MR_DELETE). Returns 0 or -EINVAL if there is no such slot. */
  delete(id: number): number {
    const i = this.current.slots.findIndex((s) => s.id === id);
    if (i < 0) return -EINVAL;
    this.current = produce(this.current, (d) => {
      d.slots.splice(i, 1);
      d.generation++;
    });
    return 0;
  }

  /**
   * Changes only the flags of slot `id` (KVM_MR_FLAGS_ONLY). Enabling dirty
   * logging allocates a fresh bitmap; disabling it drops the bitmap.
   * Returns 0 or -EINVAL (no such slot, unknown flags, READONLY changed).
   */
  updateFlags(id: number, flags: number): number {
    const i = this.current.slots.findIndex((s) => s.id === id);
    if (i < 0 || (flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) return -EINVAL;
    const old = this.current.slots[i];
    // KVM refuses to toggle READONLY on an existing slot.
    if (((old.flags ^ flags) & KVM_MEM_READONLY) !== 0) return -EINVAL;
    const logging = (flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
    const bitmap = logging ? (old.dirtyBitmap ?? allocDirtyBitmap(old.npages)) : null;
    this.current = produce(this.current, (d) => {
      d.slots[i].flags = flags;
      d.slots[i].dirtyBitmap = bitmap;
      d.generation++;
    });
    return 0;
  }

  /** Returns the slot with this id in the current generation, or undefined. */
  byId(id: number): Memslot | undefined {
    return this.current.slots.find((s) => s.id === id);
  }
}

/**
 * Models gfn_to_memslot() / search_memslots(): the slot containing gfn in
 * `set`, or undefined. Binary search; allocates nothing.
 */
export function gfnToMemslot(set: MemslotSet, gfn: number): Memslot | undefined {
  GFN_SCRATCH.gfn = gfn;
  return gfnToMemslotOp(set, GFN_SCRATCH);
}

const GFN_SCRATCH = { gfn: DOUBLE_FIELD };

/**
 * gfnToMemslot() of `at.gfn`, for the fault path: a slot placed high in the IPA space (device
 * memory at 64 TiB starts at gfn 2^34) has gfns past the small-integer range, and V8 boxes a
 * double argument at every call it does not inline.
 */
export function gfnToMemslotOp(set: MemslotSet, at: { readonly gfn: number }): Memslot | undefined {
  const gfn = at.gfn;
  const v = set.slots;
  let lo = 0;
  let hi = v.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = v[mid];
    if (gfn < s.baseGfn) hi = mid - 1;
    else if (gfn >= s.baseGfn + s.npages) lo = mid + 1;
    else return s;
  }
  return undefined;
}

/** A reusable in/out parameter for gfnToHvaMemslotProt(). */
export interface HvaProt {
  /** In (gfnToHvaMemslotProtInto): the gfn. */
  gfn: number;
  /** Out: whether the slot is writable. */
  writable: boolean;
  /** Out: the hva, or KVM_HVA_ERR_BAD. */
  hva: number;
}

/** A fresh HvaProt to reuse. */
export function newHvaProt(): HvaProt {
  return { gfn: DOUBLE_FIELD, writable: false, hva: DOUBLE_FIELD };
}

/**
 * Models gfn_to_hva_memslot_prot(slot, gfn, &writable): the hva of gfn in
 * the slot, or KVM_HVA_ERR_BAD when there is no slot or the gfn is outside
 * it. `out.writable` is false for a KVM_MEM_READONLY slot.
 * `pageShift` is PAGE_SHIFT.
 */
export function gfnToHvaMemslotProt(
  slot: Memslot | undefined,
  gfn: number,
  pageShift: number,
  out: HvaProt,
): number {
  out.gfn = gfn;
  gfnToHvaMemslotProtInto(slot, pageShift, out);
  return out.hva;
}

/**
 * gfnToHvaMemslotProt() for the hot path: the gfn comes in `out.gfn` and the hva goes into
 * `out.hva` (KVM_HVA_ERR_BAD when there is none), so no heap number is made for either.
 * Returns true when the gfn has an hva.
 */
export function gfnToHvaMemslotProtInto(slot: Memslot | undefined, pageShift: number, out: HvaProt): boolean {
  const gfn = out.gfn;
  out.writable = false;
  if (slot === undefined || gfn < slot.baseGfn || gfn >= slot.baseGfn + slot.npages) {
    out.hva = KVM_HVA_ERR_BAD;
    return false;
  }
  out.writable = (slot.flags & KVM_MEM_READONLY) === 0;
  out.hva = slot.userspaceAddr + (gfn - slot.baseGfn) * pow2(pageShift);
  return true;
}

/** Models kvm_is_error_hva(): true for KVM_HVA_ERR_BAD. */
export function kvmIsErrorHva(hva: number): boolean {
  return hva < 0;
}

/**
 * Models memslot_is_logging(): the slot has a dirty bitmap and is not
 * read-only.
 */
export function memslotIsLogging(slot: Memslot): boolean {
  return slot.dirtyBitmap !== null && (slot.flags & KVM_MEM_READONLY) === 0;
}

/** The gfn range [start, end) that hvaRangeToGfns() found. */
export interface GfnRange {
  start: number;
  end: number;
}

/**
 * One step of kvm_handle_hva_range()'s slot walk: the gfns of `slot` whose host pages
 * intersect hvas [range.start, range.end) (hva_to_gfn_memslot, rounding the end up), into
 * `out`. Returns false when the slot's host range misses the range. Addresses come and go in
 * fields, so the MMU-notifier path boxes none of them.
 */
export function hvaRangeToGfns(
  slot: Memslot,
  range: { readonly start: number; readonly end: number },
  pageShift: number,
  out: GfnRange,
): boolean {
  const ps = pow2(pageShift);
  const sStart = slot.userspaceAddr;
  const sEnd = sStart + slot.npages * ps;
  const a = Math.max(range.start, sStart);
  const b = Math.min(range.end, sEnd);
  if (a >= b) return false;
  out.start = slot.baseGfn + Math.floor((a - sStart) / ps);
  out.end = slot.baseGfn + Math.ceil((b - sStart) / ps);
  return true;
}

/**
 * Models kvm_handle_hva_range()'s slot walk: for every slot whose host range
 * intersects hvas [hvaStart, hvaEnd), calls fn(slot, gfnStart, gfnEnd) with
 * the intersecting gfn range [gfnStart, gfnEnd) (hva_to_gfn_memslot rounding
 * the end up). Returns the number of slots visited. (The notifier path uses
 * hvaRangeToGfns() directly, with no callback.)
 */
export function forEachHvaRangeGfns(
  set: MemslotSet,
  hvaStart: number,
  hvaEnd: number,
  pageShift: number,
  fn: (slot: Memslot, gfnStart: number, gfnEnd: number) => void,
): number {
  const range = { start: hvaStart, end: hvaEnd };
  const gfns: GfnRange = { start: 0, end: 0 };
  let n = 0;
  for (const s of set.slots) {
    if (!hvaRangeToGfns(s, range, pageShift, gfns)) continue;
    fn(s, gfns.start, gfns.end);
    n++;
  }
  return n;
}

/**
 * Models fault_supports_stage2_huge_mapping(memslot, hva, map_size) (mmu.c):
 * a block of 2^mapShift bytes can map `at.hva` only if the IPA and hva have the same offset
 * within a block and the aligned block around hva lies inside the slot's host range.
 * Sizes are given as shifts (PAGE_SHIFT, PMD_SHIFT) and the hva in a field: on the fault
 * path an argument above 2^31 would be boxed into a new heap number (a PUD block is 64G
 * with 16K pages, 4T with 64K). `protectedKvm` applies the pKVM rule (only PMD blocks).
 */
export function faultSupportsStage2HugeMapping(
  slot: Memslot,
  at: { readonly hva: number },
  mapShift: number,
  pageShift: number,
  pmdShift: number,
  protectedKvm = false,
): boolean {
  if (mapShift === pageShift) return true;
  if (protectedKvm && mapShift !== pmdShift) return false;
  const size = pow2(mapShift);
  const pageSize = pow2(pageShift);
  const gpaStart = slot.baseGfn * pageSize;
  const uaddrStart = slot.userspaceAddr;
  const uaddrEnd = uaddrStart + slot.npages * pageSize;
  if (gpaStart - Math.floor(gpaStart / size) * size !== uaddrStart - Math.floor(uaddrStart / size) * size)
    return false;
  const lo = Math.floor(at.hva / size) * size;
  return lo >= uaddrStart && lo + size <= uaddrEnd;
}
