// Builders for the PIV data objects a host reads with GET DATA (SP 800-73-4 part 1 appendix A).
// Each returns the complete object as GET DATA answers it: 53 {...}, or 7E {...} for discovery.

import { concatBytes, encodeTlv } from '../iso7816/tlv.js';
import { DATA_OBJECT_TAG, PIV_AID, PIV_PIX, NIST_RID, PivAlgorithm, type PivAlgorithmId } from './constants.js';
import { FASC_N_LENGTH } from './fasc-n.js';

const EMPTY = new Uint8Array(0);
/** Error detection code tag closing most objects (always empty). */
const EDC = encodeTlv(0xfe);

/**
 * Discovery object: the AID and the PIN usage policy 40 00, "the PIV application PIN satisfies
 * the access rules; no global PIN" (part 1 §3.3.2). OpenSC reads it to confirm PIV is active.
 */
export function discoveryObject(): Uint8Array {
  return encodeTlv(0x7e, [encodeTlv(0x4f, PIV_AID), encodeTlv(0x5f2f, Uint8Array.of(0x40, 0x00))]);
}

export interface ChuidFields {
  /** 25 bytes (fasc-n.ts). */
  readonly fascN: Uint8Array;
  /** 16 bytes, unique per card: Windows and OpenSC derive the card's container and serial from it. */
  readonly guid: Uint8Array;
  /** Expiration date as YYYYMMDD. */
  readonly expiry: string;
}

/** Card holder unique identifier. The issuer signature (3E) is empty: nobody can sign a soft card's CHUID. */
export function chuidObject(fields: ChuidFields): Uint8Array {
  if (fields.fascN.length !== FASC_N_LENGTH) throw new RangeError(`FASC-N must be ${FASC_N_LENGTH} bytes`);
  if (fields.guid.length !== 16) throw new RangeError('the CHUID GUID must be 16 bytes');
  if (!/^[0-9]{8}$/.test(fields.expiry)) throw new RangeError('the CHUID expiry must be YYYYMMDD');
  return encodeTlv(DATA_OBJECT_TAG, [
    encodeTlv(0x30, fields.fascN),
    encodeTlv(0x34, fields.guid),
    encodeTlv(0x35, new TextEncoder().encode(fields.expiry)),
    encodeTlv(0x3e, EMPTY),
    EDC,
  ]);
}

/**
 * Card capability container. F0 is the card identifier: GSC-IS RID A0 00 00 01 16, manufacturer
 * FF (none), card type 02 (Java Card, which is what the consumers expect of a PIV card) and 14
 * bytes unique to the card. Versions 21 as in GSC-IS 2.1; F3 is empty so OpenSC does not take
 * the card for a dual PIV/CAC card.
 */
export function cardCapabilityContainer(cardId: Uint8Array): Uint8Array {
  if (cardId.length !== 14) throw new RangeError('the CCC card identifier suffix must be 14 bytes');
  return encodeTlv(DATA_OBJECT_TAG, [
    encodeTlv(0xf0, concatBytes([Uint8Array.of(0xa0, 0x00, 0x00, 0x01, 0x16, 0xff, 0x02), cardId])),
    encodeTlv(0xf1, Uint8Array.of(0x21)),
    encodeTlv(0xf2, Uint8Array.of(0x21)),
    encodeTlv(0xf3, EMPTY),
    encodeTlv(0xf4, Uint8Array.of(0x00)),
    encodeTlv(0xf5, Uint8Array.of(0x10)),
    encodeTlv(0xf6, EMPTY),
    encodeTlv(0xf7, EMPTY),
    encodeTlv(0xfa, EMPTY),
    encodeTlv(0xfb, EMPTY),
    encodeTlv(0xfc, EMPTY),
    encodeTlv(0xfd, EMPTY),
    EDC,
  ]);
}

/** An X.509 certificate object: 70 DER, 71 00 (not compressed), FE. */
export function certificateObject(der: Uint8Array): Uint8Array {
  return encodeTlv(DATA_OBJECT_TAG, [encodeTlv(0x70, der), encodeTlv(0x71, Uint8Array.of(0x00)), EDC]);
}

/** Key history: how many retired keys have certificates on and off the card (none for a soft card). */
export function keyHistoryObject(onCard = 0, offCard = 0): Uint8Array {
  return encodeTlv(DATA_OBJECT_TAG, [encodeTlv(0xc1, Uint8Array.of(onCard)), encodeTlv(0xc2, Uint8Array.of(offCard)), EDC]);
}

/**
 * The application property template SELECT answers with: PIX, the coexistent tag allocation
 * authority (the NIST RID), a label and the algorithms the card supports (AC, closed by 06 00).
 */
export function applicationPropertyTemplate(label: string, algorithms: readonly PivAlgorithmId[] = Object.values(PivAlgorithm)): Uint8Array {
  return encodeTlv(0x61, [
    encodeTlv(0x4f, PIV_PIX),
    encodeTlv(0x79, [encodeTlv(0x4f, NIST_RID)]),
    encodeTlv(0x50, new TextEncoder().encode(label)),
    encodeTlv(0xac, [...algorithms.map((alg) => encodeTlv(0x80, Uint8Array.of(alg))), encodeTlv(0x06, Uint8Array.of(0x00))]),
  ]);
}
