/**
 * Dirty-page bitmaps of memslots: the mutable typed arrays a slot references.
 * Bit i of the bitmap (word i >> 5, bit i & 31) is gfn baseGfn + i.
 */
import type { Memslot } from './memslots.js';

/**
 * Models mark_page_dirty_in_slot(kvm, slot, gfn): sets the gfn's bit if the
 * slot logs dirty pages (has a bitmap). Returns true if the bit was newly set.
 * Allocates nothing.
 */
export function markPageDirtyInSlot(slot: Memslot | undefined, gfn: number): boolean {
  if (slot === undefined) return false;
  return markSlotPageDirty(slot, gfn - slot.baseGfn);
}

/**
 * markPageDirtyInSlot() by the page's index in the slot (gfn − base_gfn), for the fault path:
 * the index is a small integer where a gfn high in the IPA space is not, and V8 boxes a double
 * argument at every call it does not inline.
 */
export function markSlotPageDirty(slot: Memslot, rel: number): boolean {
  if (slot.dirtyBitmap === null) return false;
  if (rel < 0 || rel >= slot.npages) return false;
  const w = rel >>> 5;
  const bit = 1 << (rel & 31);
  const bm = slot.dirtyBitmap;
  if ((bm[w] & bit) !== 0) return false;
  bm[w] |= bit;
  return true;
}

/** Returns true if gfn's bit is set in the slot's bitmap. */
export function testPageDirty(slot: Memslot, gfn: number): boolean {
  const rel = gfn - slot.baseGfn;
  if (slot.dirtyBitmap === null || rel < 0 || rel >= slot.npages) return false;
  return (slot.dirtyBitmap[rel >>> 5] & (1 << (rel & 31))) !== 0;
}

/** Returns the number of dirty bits set in the slot's bitmap. */
export function dirtyCount(slot: Memslot): number {
  const bm = slot.dirtyBitmap;
  if (bm === null) return 0;
  let n = 0;
  for (let i = 0; i < bm.length; i++) {
    let v = bm[i];
    while (v !== 0) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

/**
 * Models KVM_GET_DIRTY_LOG with manual-protect off (kvm_get_dirty_log_protect):
 * appends the dirty gfns, ascending, to `out`, and clears the bitmap. Write
 * protection of those gfns is the caller's (KVM's) job. Returns the count.
 */
export function getAndClearDirty(slot: Memslot, out: number[]): number {
  const bm = slot.dirtyBitmap;
  if (bm === null) return 0;
  let n = 0;
  for (let i = 0; i < bm.length; i++) {
    let v = bm[i];
    if (v === 0) continue;
    bm[i] = 0;
    while (v !== 0) {
      const low = v & -v;
      const b = 31 - Math.clz32(low);
      out.push(slot.baseGfn + i * 32 + b);
      v ^= low;
      n++;
    }
  }
  return n;
}
