// What the PIV applet needs from the keys behind its slots. The applet never sees key
// material; a soft card implements this with node:crypto, tests with whatever they check against.

import type { PivAlgorithmId, PivSlotId } from './constants.js';

/** The key refused the input (an RSA block not below the modulus, a point not on the curve). */
export class KeyOperationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyOperationError';
  }
}

export interface PivKeyOperations {
  /** The algorithm of the key in `slot`; undefined when the slot holds no key. */
  algorithmOf(slot: PivSlotId): PivAlgorithmId | undefined;
  /** False while the private key cannot be used yet (a soft card's keys stay encrypted until the PIN opens them). */
  isUsable(slot: PivSlotId): boolean;
  /** The raw RSA private-key operation on one modulus-sized block (signature and decryption alike). */
  rsaPrivate(slot: PivSlotId, block: Uint8Array): Uint8Array;
  /** ECDSA over a digest already fitted to the curve's size; the result is DER SEQUENCE { r, s }. */
  ecdsaSign(slot: PivSlotId, digest: Uint8Array): Uint8Array;
  /** ECDH with an uncompressed peer point; the result is the shared point's x coordinate. */
  ecdh(slot: PivSlotId, peerPoint: Uint8Array): Uint8Array;
}
