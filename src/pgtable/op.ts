/**
 * The in-carrier of page-table operations (docs/performance.md, "The calling convention").
 *
 * Addresses and sizes are doubles, nearly always past 2^31, the end of V8's small-integer
 * range. Passed as arguments to a call V8 does not inline, each is boxed into a new 16-byte
 * heap number; written to a field of a reused object, it is stored in place. So a hot caller
 * owns one S2Op, fills it, and passes it as a parameter (`pgt.mapOp(op, prot, mc, flags)`);
 * the callee reads it during the call and neither keeps nor writes it.
 */

/**
 * The first value of a field meant to hold doubles. V8 picks a field's representation from
 * the first value stored: a small integer (0) makes it a Smi field, and the first address
 * past 2^31 then changes the object's shape and deoptimizes the code that used it; a
 * non-integer makes it a double field from the start, written in place ever after.
 */
export const DOUBLE_FIELD = 0.5;

/**
 * The operands of one page-table operation, owned and reused by the caller: the IPA, the
 * size in bytes (ignored by the single-address operations: relaxPerms, mkyoung, getLeaf) and
 * the PA (map only).
 */
export class S2Op {
  addr = DOUBLE_FIELD;
  size = DOUBLE_FIELD;
  phys = DOUBLE_FIELD;
}
