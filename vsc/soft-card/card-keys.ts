// How a card file's secrets are bound together: each sealed box carries associated data naming
// the card (GUID), and the slot or secret it belongs to, so boxes cannot be swapped between
// slots or cards without failing authentication.

import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { keyAlgorithmOf, type KeyAlgorithmName, type SlotName } from './algorithms.js';
import { CardFileError, CARD_FILE_VERSION, type SlotRecord } from './card-file.js';
import { open, seal } from './sealing.js';

export function dataKeyContext(guid: string, secret: 'pin' | 'puk'): string {
  return `spice-smartcard soft PIV v${CARD_FILE_VERSION}; card ${guid}; data key under ${secret}`;
}

export function slotKeyContext(guid: string, slot: SlotName, algorithm: KeyAlgorithmName): string {
  return `spice-smartcard soft PIV v${CARD_FILE_VERSION}; card ${guid}; slot ${slot}; ${algorithm}`;
}

/** A key and its certificate, checked to belong together and to be a supported algorithm. */
export function sealSlotRecord(dataKey: Uint8Array, guid: string, slot: SlotName, privateKey: KeyObject, certificate: Uint8Array): SlotRecord {
  const algorithm = keyAlgorithmOf(privateKey);
  if (algorithm === undefined) throw new RangeError('slot keys must be RSA-2048, EC P-256 or EC P-384');
  let parsed: X509Certificate;
  try {
    parsed = new X509Certificate(certificate);
  } catch (error) {
    throw new RangeError('the certificate is not a valid X.509 certificate', { cause: error });
  }
  if (!parsed.checkPrivateKey(privateKey)) throw new RangeError(`the certificate for slot ${slot} does not belong to its private key`);
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  try {
    return {
      algorithm,
      certificate: Buffer.from(certificate).toString('base64'),
      privateKey: seal(dataKey, pkcs8, slotKeyContext(guid, slot, algorithm)),
    };
  } finally {
    pkcs8.fill(0);
  }
}

export function openSlotKey(dataKey: Uint8Array, guid: string, slot: SlotName, record: SlotRecord): KeyObject {
  const pkcs8 = open(dataKey, record.privateKey, slotKeyContext(guid, slot, record.algorithm));
  if (pkcs8 === undefined) throw new CardFileError(`the key in slot ${slot} does not decrypt: the card file is damaged`);
  try {
    const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    if (keyAlgorithmOf(key) !== record.algorithm) throw new CardFileError(`the key in slot ${slot} is not ${record.algorithm}`);
    return key;
  } finally {
    pkcs8.fill(0);
  }
}
