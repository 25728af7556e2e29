// PIV numbers from NIST SP 800-73-4 (card command interface) and SP 800-78-4 (algorithms).

/** The full PIV application identifier: NIST RID A0 00 00 03 08, PIX 00 00 10 00 01 00. */
export const PIV_AID: Uint8Array = Uint8Array.of(0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00);
/** The 9-byte right-truncated AID hosts select with (OpenSC, Windows ignore the version bytes). */
export const PIV_AID_TRUNCATED_LENGTH = 9;
/** The PIX (AID without the RID), as the application property template carries it. */
export const PIV_PIX: Uint8Array = PIV_AID.subarray(5);
/** The NIST registered application provider identifier. */
export const NIST_RID: Uint8Array = PIV_AID.subarray(0, 5);

export const PivIns = {
  SELECT: 0xa4,
  GET_DATA: 0xcb,
  VERIFY: 0x20,
  CHANGE_REFERENCE_DATA: 0x24,
  RESET_RETRY_COUNTER: 0x2c,
  GENERAL_AUTHENTICATE: 0x87,
} as const;

/** Cryptographic algorithm identifiers (SP 800-78-4 table 6-2) this card supports. */
export const PivAlgorithm = {
  RSA_2048: 0x07,
  ECC_P256: 0x11,
  ECC_P384: 0x14,
} as const;
export type PivAlgorithmId = (typeof PivAlgorithm)[keyof typeof PivAlgorithm];

export function isPivAlgorithm(value: number): value is PivAlgorithmId {
  return value === PivAlgorithm.RSA_2048 || value === PivAlgorithm.ECC_P256 || value === PivAlgorithm.ECC_P384;
}

/** Key references of the four standard asymmetric key slots. */
export const PivSlot = {
  AUTHENTICATION: 0x9a,
  SIGNATURE: 0x9c,
  KEY_MANAGEMENT: 0x9d,
  CARD_AUTHENTICATION: 0x9e,
} as const;
export type PivSlotId = (typeof PivSlot)[keyof typeof PivSlot];
export const PIV_SLOTS: readonly PivSlotId[] = [PivSlot.AUTHENTICATION, PivSlot.SIGNATURE, PivSlot.KEY_MANAGEMENT, PivSlot.CARD_AUTHENTICATION];

export function isPivSlot(value: number): value is PivSlotId {
  return (PIV_SLOTS as readonly number[]).includes(value);
}

/** Key references of the two secrets (SP 800-73-4 part 2, table 4). */
export const PivKeyReference = {
  PIN: 0x80,
  PUK: 0x81,
  /** The symmetric card management key; this card has none, but answers its challenge request. */
  CARD_MANAGEMENT: 0x9b,
} as const;

/** BER-TLV tags of the data objects this card serves (SP 800-73-4 part 1, table 3). */
export const PivObjectTag = {
  DISCOVERY: 0x7e,
  CARD_CAPABILITY_CONTAINER: 0x5fc107,
  CHUID: 0x5fc102,
  CERT_AUTHENTICATION: 0x5fc105,
  CERT_SIGNATURE: 0x5fc10a,
  CERT_KEY_MANAGEMENT: 0x5fc10b,
  CERT_CARD_AUTHENTICATION: 0x5fc101,
  KEY_HISTORY: 0x5fc10c,
} as const;

/** The certificate object that goes with each key slot. */
export const CERTIFICATE_TAG_OF_SLOT: Readonly<Record<PivSlotId, number>> = {
  [PivSlot.AUTHENTICATION]: PivObjectTag.CERT_AUTHENTICATION,
  [PivSlot.SIGNATURE]: PivObjectTag.CERT_SIGNATURE,
  [PivSlot.KEY_MANAGEMENT]: PivObjectTag.CERT_KEY_MANAGEMENT,
  [PivSlot.CARD_AUTHENTICATION]: PivObjectTag.CERT_CARD_AUTHENTICATION,
};

/** Tags inside the dynamic authentication template 7C of GENERAL AUTHENTICATE. */
export const AuthTemplateTag = {
  TEMPLATE: 0x7c,
  WITNESS: 0x80,
  CHALLENGE: 0x81,
  RESPONSE: 0x82,
  EXPONENTIATION: 0x85,
} as const;

/** Tags of data objects wrapped in 53 by GET DATA. */
export const DATA_OBJECT_TAG = 0x53;
/** The tag list tag in a GET DATA command. */
export const TAG_LIST_TAG = 0x5c;
