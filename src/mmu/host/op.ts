/**
 * The host side's carriers (docs/performance.md, "The calling convention: carriers"): a host
 * address or a pfn is a double past 2^31 (an hva of a VMM is 0x7f.., RAM above 8 TiB has pfns
 * past 2^31), and V8 boxes such a value into a new heap number at every call it does not
 * inline. So a hot caller owns a small object, fills it and passes it as a parameter: the
 * callee reads it during the call, never writes it and never keeps it.
 *
 * The interfaces are structural: any object with the field is a carrier (the fault object
 * carries its own hva to vma_lookup() and get_user_mapping_size()). `HostOp` is the class a
 * caller makes when it has nothing that fits.
 */
import { DOUBLE_FIELD } from '../../pgtable/op.js';

/** In-carrier of an operation on one host virtual address. */
export interface HvaOp {
  readonly hva: number;
}

/** In-carrier of an operation on one page frame. */
export interface PfnOp {
  readonly pfn: number;
}

/** In-carrier of an operation that installs a pfn at a host virtual address. */
export interface HvaPfnOp {
  readonly hva: number;
  readonly pfn: number;
}

/** Out-carrier of an operation that hands back a pfn (allocFolioInto, hugeZeroPfnInto, folioHeadOp). */
export interface PfnResult {
  pfn: number;
}

/** A caller-owned host carrier: fill the fields, pass it, reuse it. Both fields start as doubles. */
export class HostOp implements HvaPfnOp, PfnResult {
  hva = DOUBLE_FIELD;
  pfn = DOUBLE_FIELD;
}
