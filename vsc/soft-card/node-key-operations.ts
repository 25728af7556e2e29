// The PIV key operations done with node:crypto, and @noble/curves for ECDSA: node's
// crypto.sign() always hashes its input, while PIV hands the card a digest to sign as is.

import { constants, createECDH, privateDecrypt, type KeyObject } from 'node:crypto';
import { p256, p384 } from '@noble/curves/nist';
import { PivAlgorithm, type PivAlgorithmId, type PivSlotId } from '../piv/constants.js';
import { KeyOperationError, type PivKeyOperations } from '../piv/key-operations.js';

/** Where the operations find each slot's key; `privateKey` is undefined while keys are locked. */
export interface SlotKeySource {
  algorithmOf(slot: PivSlotId): PivAlgorithmId | undefined;
  privateKey(slot: PivSlotId): KeyObject | undefined;
}

const ECDH_CURVE: Readonly<Record<number, string>> = {
  [PivAlgorithm.ECC_P256]: 'prime256v1',
  [PivAlgorithm.ECC_P384]: 'secp384r1',
};

/** The private scalar of an EC key, big-endian, padded to the field size. */
function ecScalar(key: KeyObject, size: number): Uint8Array {
  const d = key.export({ format: 'jwk' }).d;
  if (d === undefined) throw new KeyOperationError('not an EC private key');
  const bytes = Buffer.from(d, 'base64url');
  if (bytes.length > size) throw new KeyOperationError('EC private key does not fit the curve');
  const out = new Uint8Array(size);
  out.set(bytes, size - bytes.length);
  return out;
}

export class NodeKeyOperations implements PivKeyOperations {
  readonly #source: SlotKeySource;
  // Exporting the scalar through JWK costs more than a signature: do it once per key.
  readonly #scalars = new WeakMap<KeyObject, Uint8Array>();

  constructor(source: SlotKeySource) {
    this.#source = source;
  }

  algorithmOf(slot: PivSlotId): PivAlgorithmId | undefined {
    return this.#source.algorithmOf(slot);
  }

  isUsable(slot: PivSlotId): boolean {
    return this.#source.privateKey(slot) !== undefined;
  }

  rsaPrivate(slot: PivSlotId, block: Uint8Array): Uint8Array {
    const key = this.#key(slot);
    try {
      return new Uint8Array(privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, block));
    } catch {
      throw new KeyOperationError('the RSA input is not smaller than the modulus');
    }
  }

  ecdsaSign(slot: PivSlotId, digest: Uint8Array): Uint8Array {
    const algorithm = this.#source.algorithmOf(slot);
    const curve = algorithm === PivAlgorithm.ECC_P256 ? p256 : algorithm === PivAlgorithm.ECC_P384 ? p384 : undefined;
    if (curve === undefined) throw new KeyOperationError('not an EC key');
    const scalar = this.#scalar(slot, algorithm === PivAlgorithm.ECC_P256 ? 32 : 48);
    return curve.sign(digest, scalar, { prehash: false }).toDERRawBytes();
  }

  ecdh(slot: PivSlotId, peerPoint: Uint8Array): Uint8Array {
    const algorithm = this.#source.algorithmOf(slot);
    const curveName = algorithm === undefined ? undefined : ECDH_CURVE[algorithm];
    if (curveName === undefined) throw new KeyOperationError('not an EC key');
    const ecdh = createECDH(curveName);
    ecdh.setPrivateKey(this.#scalar(slot, algorithm === PivAlgorithm.ECC_P256 ? 32 : 48));
    try {
      return new Uint8Array(ecdh.computeSecret(peerPoint));
    } catch {
      throw new KeyOperationError('the peer point is not on the curve');
    }
  }

  #key(slot: PivSlotId): KeyObject {
    const key = this.#source.privateKey(slot);
    if (key === undefined) throw new KeyOperationError('the key is locked');
    return key;
  }

  #scalar(slot: PivSlotId, size: number): Uint8Array {
    const key = this.#key(slot);
    let scalar = this.#scalars.get(key);
    if (scalar === undefined) {
      scalar = ecScalar(key, size);
      this.#scalars.set(key, scalar);
    }
    return scalar;
  }
}
