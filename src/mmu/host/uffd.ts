/**
 * userfaultfd as a VMM uses it for postcopy migration: the missing-page events the host raises
 * (handle_userfault(), fs/userfaultfd.c) and the record of them a run reports, in order.
 *
 * An event is what the VMM reads from the userfaultfd: the faulting address (page-aligned, or
 * huge-page-aligned in a hugetlb VMA, as hugetlb_fault() aligns vmf.address) and whether the
 * fault was a write (UFFD_PAGEFAULT_FLAG_WRITE). The VMM answers it with UFFDIO_COPY (mm.ts).
 * Records are reused: the log allocates only when it grows past its largest size so far.
 */

/** One missing-page event. */
export interface UffdEvent {
  /** The name of the VMA the address was mapped by. */
  vma: string;
  /** The faulting page's offset from where that name's mapping starts. */
  offset: number;
  /** UFFD_PAGEFAULT_FLAG_WRITE: the host fault was a write. */
  write: boolean;
}

/** The events raised since the last reset(), in order. */
export class UffdLog {
  /** Records; the first `count` are valid. */
  readonly events: UffdEvent[] = [];
  count = 0;

  /** Records one event. */
  push(vma: string, offset: number, write: boolean): void {
    let e = this.events[this.count];
    if (e === undefined) {
      e = { vma: '', offset: 0, write: false };
      this.events.push(e);
    }
    e.vma = vma;
    e.offset = offset;
    e.write = write;
    this.count++;
  }

  /** Forgets every event (the records stay for reuse). */
  reset(): void {
    this.count = 0;
  }

  /** Copies of the events from index `from` on. Returns a fresh array. */
  since(from: number): UffdEvent[] {
    const out: UffdEvent[] = [];
    for (let i = from; i < this.count; i++) {
      const e = this.events[i]!;
      out.push({ vma: e.vma, offset: e.offset, write: e.write });
    }
    return out;
  }
}
