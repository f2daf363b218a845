/**
 * Whole-table views: the list of leaves of a stage-2 table, decoded. Cold path; uses the
 * table's own generic walker with a LEAF-only visitor, which changes nothing.
 */

import type { Stage2PageTable } from '../pgtable/stage2.js';
import { KVM_PGTABLE_WALK_LEAF } from '../pgtable/walker.js';
import type { WalkCtx } from '../pgtable/walker.js';
import { DescriptorView } from './descriptor.js';

/**
 * Decodes every leaf of `pgt` in ascending IPA order: valid blocks and pages, and the
 * non-zero invalid entries KVM leaves in the table (owner annotations, LOCKED entries).
 * Empty (zero) entries are skipped. Each view knows its IPA.
 * Returns the views (empty for a destroyed table).
 */
export function describeTable(pgt: Stage2PageTable): DescriptorView[] {
  const out: DescriptorView[] = [];
  if (pgt.pgd < 0) return out;
  const visit = (ctx: WalkCtx): number => {
    if (ctx.oldLo !== 0 || ctx.oldHi !== 0) {
      out.push(new DescriptorView(ctx.oldLo, ctx.oldHi, ctx.level, pgt, ctx.addr));
    }
    return 0;
  };
  pgt.walker.walkRoot(pgt.pgd, 0, pgt.geo.ipaLimit, visit, null, KVM_PGTABLE_WALK_LEAF);
  return out;
}
