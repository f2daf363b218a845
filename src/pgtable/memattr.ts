/**
 * Stage-2 memory attributes (pgtable.md §3).
 *
 * MemAttr occupies descriptor bits [5:2]. Its meaning depends on HCR_EL2.FWB:
 *
 *   FWB = 0: MemAttr[3:2] = outer, MemAttr[1:0] = inner; outer 00 = Device (type in [1:0]),
 *            otherwise 01 NC, 10 WT, 11 WB per half.
 *   FWB = 1: MemAttr[2:0] = 0b0xx Device xx, 0b101 NC, 0b110 force WB, 0b111 use stage 1.
 */

/** MT_S2_NORMAL: Outer WB + Inner WB, no FWB. */
export const MT_S2_NORMAL = 0xf;
/** MT_S2_NORMAL_NC: Outer NC + Inner NC, no FWB. */
export const MT_S2_NORMAL_NC = 0x5;
/** MT_S2_DEVICE_nGnRE, no FWB. */
export const MT_S2_DEVICE_nGnRE = 0x1;
/** MT_S2_NORMAL_NOTAGACCESS (FEAT_MTE_PERM), no FWB. Not used by stage2_set_prot_attr. */
export const MT_S2_NORMAL_NOTAGACCESS = 0x4;
/** MT_S2_FWB_NORMAL: force write-back. */
export const MT_S2_FWB_NORMAL = 0x6;
/** MT_S2_FWB_NORMAL_NC. */
export const MT_S2_FWB_NORMAL_NC = 0x5;
/** MT_S2_FWB_DEVICE_nGnRE. */
export const MT_S2_FWB_DEVICE_nGnRE = 0x1;
/** MT_S2_FWB_NORMAL_NOTAGACCESS (FEAT_MTE_PERM). */
export const MT_S2_FWB_NORMAL_NOTAGACCESS = 0xe;
