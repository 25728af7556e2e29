// The key types a soft card holds, by the names the card file and the CLI use, and how they
// map to PIV algorithm identifiers and to node:crypto keys.

import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { PivAlgorithm, PivSlot, type PivAlgorithmId, type PivSlotId } from '../piv/constants.js';

export type KeyAlgorithmName = 'rsa2048' | 'p256' | 'p384';
export const KEY_ALGORITHM_NAMES: readonly KeyAlgorithmName[] = ['rsa2048', 'p256', 'p384'];

export const PIV_ALGORITHM_OF: Readonly<Record<KeyAlgorithmName, PivAlgorithmId>> = {
  rsa2048: PivAlgorithm.RSA_2048,
  p256: PivAlgorithm.ECC_P256,
  p384: PivAlgorithm.ECC_P384,
};

export function isKeyAlgorithmName(value: string): value is KeyAlgorithmName {
  return (KEY_ALGORITHM_NAMES as readonly string[]).includes(value);
}

export type SlotName = '9a' | '9c' | '9d' | '9e';
export const SLOT_NAMES: readonly SlotName[] = ['9a', '9c', '9d', '9e'];

export const SLOT_ID_OF: Readonly<Record<SlotName, PivSlotId>> = {
  '9a': PivSlot.AUTHENTICATION,
  '9c': PivSlot.SIGNATURE,
  '9d': PivSlot.KEY_MANAGEMENT,
  '9e': PivSlot.CARD_AUTHENTICATION,
};

export const SLOT_TITLE: Readonly<Record<SlotName, string>> = {
  '9a': 'PIV Authentication',
  '9c': 'Digital Signature',
  '9d': 'Key Management',
  '9e': 'Card Authentication',
};

export function isSlotName(value: string): value is SlotName {
  return (SLOT_NAMES as readonly string[]).includes(value);
}

export function slotNameOf(slot: PivSlotId): SlotName {
  return slot.toString(16) as SlotName;
}

/** Which supported algorithm a key is, or undefined for anything a PIV card cannot hold here. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithmName | undefined {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && details?.modulusLength === 2048) return 'rsa2048';
  if (key.asymmetricKeyType === 'ec') {
    if (details?.namedCurve === 'prime256v1') return 'p256';
    if (details?.namedCurve === 'secp384r1') return 'p384';
  }
  return undefined;
}

export function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `RSA-${details?.modulusLength ?? '?'}`;
  if (key.asymmetricKeyType === 'ec') return `EC ${details?.namedCurve ?? '?'}`;
  return key.asymmetricKeyType ?? key.type;
}

const generate = promisify(generateKeyPair);

export async function generatePrivateKey(algorithm: KeyAlgorithmName): Promise<KeyObject> {
  if (algorithm === 'rsa2048') return (await generate('rsa', { modulusLength: 2048, publicExponent: 0x10001 })).privateKey;
  return (await generate('ec', { namedCurve: algorithm === 'p256' ? 'prime256v1' : 'secp384r1' })).privateKey;
}
