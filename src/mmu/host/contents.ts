/**
 * The bytes of host pages that matter (the guest's stage-1 tables, values the guest or the VMM
 * wrote), kept sparsely per host pfn: a page has storage only once something non-zero was
 * written to it. A page without storage reads as zeroes, which is what a freshly allocated
 * (zeroed) page, the shared zero page and the huge zero folio hold.
 *
 * Lifetime follows the page (docs/scenario.md, "Guest memory, values, and stage 1 in the output"): PhysMem.freeFolio
 * drops the folio's pages (folio_put of the last reference: the next user gets a zeroed page),
 * and copy-on-write copies the source page's bytes into the new one (wp_page_copy's
 * copy_user_highpage; the huge zero page has nothing to copy).
 *
 * Storage: one Uint32Array per page, word i holding bytes [4i, 4i + 4) little-endian (byte b of
 * the page is `(words[b >> 2] >>> ((b & 3) * 8)) & 0xff`), whatever the platform's endianness.
 *
 * Hot-path rules: read64Op/write64Op/zeroOp take the pfn in a caller-owned carrier (`{ pfn }`,
 * host/op.ts) and leave the halves in the `lo`/`hi` fields (no pfn argument or return value to
 * box). Reading never allocates;
 * writing zeroes to a page without storage stores nothing; every other method is a no-op that
 * allocates nothing while no page has storage.
 */

import type { PfnOp } from './op.js';

/** The sparse byte store of one host's pages. */
export class PageContents {
  /** Bytes per page (the host PAGE_SIZE). */
  readonly pageSize: number;
  /** The last 64-bit value read64Op() read (or write64Op() wrote): low and high 32 bits, unsigned. */
  lo = 0;
  hi = 0;
  private readonly pages = new Map<number, Uint32Array>();
  private lastPfn = -1;
  private lastPage: Uint32Array | undefined = undefined;

  constructor(pageSize: number) {
    this.pageSize = pageSize;
  }

  /** Pages that hold storage (pages that were written with something non-zero and not freed since). */
  get pagesStored(): number {
    return this.pages.size;
  }

  /** Returns true if the page has storage (it was written and not freed since). */
  has(pfn: number): boolean {
    return this.pages.has(pfn);
  }

  /**
   * Reads the 8 bytes at byte `offset` of page `op.pfn` (offset a multiple of 8, inside the page)
   * into `lo`/`hi`. A page without storage reads as zeroes. Allocates nothing.
   */
  read64Op(op: PfnOp, offset: number): void {
    const p = this.page(op.pfn);
    if (p === undefined) {
      this.lo = 0;
      this.hi = 0;
      return;
    }
    const i = offset >>> 2;
    this.lo = p[i]!;
    this.hi = p[i + 1]!;
  }

  /**
   * Writes the 8 bytes `lo`, `hi` (little-endian: `lo` first) at byte `offset` of page `op.pfn`
   * (offset a multiple of 8). Storing zeroes into a page without storage stores nothing.
   */
  write64Op(op: PfnOp, offset: number, lo: number, hi: number): void {
    let p = this.page(op.pfn);
    if (p === undefined) {
      if (lo === 0 && hi === 0) return;
      p = this.create(op.pfn);
    }
    const i = offset >>> 2;
    p[i] = lo;
    p[i + 1] = hi;
  }

  /** Zeroes `size` bytes at byte `offset` of page `op.pfn` (offset and size multiples of 4). DC ZVA. */
  zeroOp(op: PfnOp, offset: number, size: number): void {
    const p = this.page(op.pfn);
    if (p !== undefined) p.fill(0, offset >>> 2, (offset + size) >>> 2);
  }

  /** read64Op() of physical address `pa` (8-byte aligned), for tests and cold paths. Returns [lo, hi]. */
  read64(pa: number): [number, number] {
    const op = { pfn: Math.floor(pa / this.pageSize) };
    this.read64Op(op, pa % this.pageSize);
    return [this.lo, this.hi];
  }

  /** Returns a copy of `n` bytes at byte `offset` of page `pfn` (zeroes where nothing is stored). Cold. */
  readBytes(pfn: number, offset: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    const p = this.page(pfn);
    if (p === undefined) return out;
    for (let k = 0; k < n; k++) {
      const b = offset + k;
      out[k] = (p[b >>> 2]! >>> ((b & 3) * 8)) & 0xff;
    }
    return out;
  }

  /** Writes `bytes` at byte `offset` of page `pfn` (they must fit in the page). Cold. */
  writeBytes(pfn: number, offset: number, bytes: Uint8Array): void {
    let p = this.page(pfn);
    if (p === undefined) {
      if (bytes.every((b) => b === 0)) return;
      p = this.create(pfn);
    }
    for (let k = 0; k < bytes.length; k++) {
      const b = offset + k;
      const sh = (b & 3) * 8;
      p[b >>> 2] = ((p[b >>> 2]! & ~(0xff << sh)) | (bytes[k]! << sh)) >>> 0;
    }
  }

  /**
   * Drops the storage of the `n` pages from `pfn` (the folio was freed): they read as zeroes.
   * Does nothing, and allocates nothing, while no page has storage.
   */
  drop(pfn: number, n: number): void {
    if (this.pages.size === 0) return;
    if (n > this.pages.size) {
      // A large folio with few stored pages: visit the stored pages instead of the range.
      for (const k of [...this.pages.keys()]) if (k >= pfn && k < pfn + n) this.pages.delete(k);
    } else {
      for (let i = 0; i < n; i++) this.pages.delete(pfn + i);
    }
    this.lastPfn = -1;
    this.lastPage = undefined;
  }

  /**
   * Copies the contents of the `n` pages from `from` onto the `n` pages from `to` (copy-on-write:
   * copy_user_highpage). A source page without storage leaves the destination without storage.
   */
  copy(from: number, to: number, n: number): void {
    if (this.pages.size === 0) return;
    for (let i = 0; i < n; i++) {
      const src = this.pages.get(from + i);
      if (src === undefined) {
        if (this.pages.delete(to + i)) this.lastPfn = -1;
        continue;
      }
      this.create(to + i).set(src);
    }
  }

  private page(pfn: number): Uint32Array | undefined {
    if (pfn === this.lastPfn) return this.lastPage;
    if (this.pages.size === 0) return undefined;
    const p = this.pages.get(pfn);
    if (p !== undefined) {
      this.lastPfn = pfn;
      this.lastPage = p;
    }
    return p;
  }

  private create(pfn: number): Uint32Array {
    let p = this.pages.get(pfn);
    if (p === undefined) {
      p = new Uint32Array(this.pageSize >>> 2);
      this.pages.set(pfn, p);
    }
    this.lastPfn = pfn;
    this.lastPage = p;
    return p;
  }
}
