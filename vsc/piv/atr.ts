// The soft PIV card's ATR.
//
//   3B          TS: direct convention
//   0B          T0: no interface bytes (no TD1, so T=0 is implied and there is no TCK), 11 historical bytes
//   80          category indicator: compact-TLV objects follow
//   F9 A0 00 00 03 08 00 00 10 00
//               compact-TLV tag F (application identifier), 9 bytes: the PIV AID as hosts select it
//
// Why: QEMU's usb-ccid reader is TPDU-level and T=0 (protocol.md §6.11), so the ATR must select
// T=0, which an ATR without TD1 does; it passes QEMU's check (§6.6) and is far below 40 bytes.
// OpenSC's card-piv.c classifies a card whose historical bytes start with 80 and carry the PIV
// AID under compact-TLV tag F as a PIV card ("PIV_II_HIST") and then talks PIV to it without
// quirk flags. It is not of the form 3B 8x 80 01 .., which OpenSC treats as contactless. With no
// TA1 the default speed applies, so no PPS exchange is needed.

import { PIV_AID, PIV_AID_TRUNCATED_LENGTH } from './constants.js';

const COMPACT_TLV_CATEGORY = 0x80;
const COMPACT_TAG_APPLICATION_ID = 0xf0;

function pivAtr(): Uint8Array {
  const aid = PIV_AID.subarray(0, PIV_AID_TRUNCATED_LENGTH);
  const historical = Uint8Array.of(COMPACT_TLV_CATEGORY, COMPACT_TAG_APPLICATION_ID | aid.length, ...aid);
  return Uint8Array.of(0x3b, historical.length, ...historical);
}

/** 3B 0B 80 F9 A0 00 00 03 08 00 00 10 00 */
export const SOFT_PIV_ATR: Uint8Array = pivAtr();
