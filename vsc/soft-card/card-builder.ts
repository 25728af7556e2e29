// Makes a new card document: fresh data key, GUID and card id, the data key wrapped under
// the PIN and the PUK, and each slot's key sealed under the data key.

import { randomBytes, type KeyObject } from 'node:crypto';
import { isValidPin, isValidPuk } from '../piv/reference-data.js';
import type { SlotName } from './algorithms.js';
import { CARD_FILE_FORMAT, CARD_FILE_VERSION, type CardDocument, type SlotRecord } from './card-file.js';
import { dataKeyContext, sealSlotRecord } from './card-keys.js';
import { DEFAULT_SCRYPT_COST, newDataKey, wrapDataKey, type ScryptCost } from './sealing.js';

export const DEFAULT_PIN = '123456';
export const DEFAULT_PUK = '12345678';
export const DEFAULT_MAX_TRIES = 3;

export interface SlotContent {
  readonly slot: SlotName;
  readonly privateKey: KeyObject;
  /** DER X.509 certificate for `privateKey`. */
  readonly certificate: Uint8Array;
}

export interface NewCardOptions {
  readonly pin: string;
  readonly puk: string;
  readonly slots: readonly SlotContent[];
  readonly label?: string;
  /** CHUID expiry; default: ten years from now. */
  readonly expiry?: Date;
  readonly pinMaxTries?: number;
  readonly pukMaxTries?: number;
  readonly scryptCost?: ScryptCost;
}

/** YYYYMMDD in UTC. */
export function chuidDate(date: Date): string {
  return date.toISOString().slice(0, 10).replaceAll('-', '');
}

export async function createCardDocument(options: NewCardOptions): Promise<CardDocument> {
  if (!isValidPin(options.pin)) throw new RangeError('the PIN must be 6 to 8 digits');
  if (!isValidPuk(options.puk)) throw new RangeError('the PUK must be 6 to 8 printable ASCII characters');
  const guid = randomBytes(16).toString('hex');
  const cost = options.scryptCost ?? DEFAULT_SCRYPT_COST;
  const dataKey = newDataKey();
  try {
    const slots: Partial<Record<SlotName, SlotRecord>> = {};
    for (const content of options.slots) slots[content.slot] = sealSlotRecord(dataKey, guid, content.slot, content.privateKey, content.certificate);
    const [pinWrap, pukWrap] = await Promise.all([
      wrapDataKey(dataKey, options.pin, dataKeyContext(guid, 'pin'), cost),
      wrapDataKey(dataKey, options.puk, dataKeyContext(guid, 'puk'), cost),
    ]);
    const pinMaxTries = options.pinMaxTries ?? DEFAULT_MAX_TRIES;
    const pukMaxTries = options.pukMaxTries ?? DEFAULT_MAX_TRIES;
    return {
      format: CARD_FILE_FORMAT,
      version: CARD_FILE_VERSION,
      guid,
      cardId: randomBytes(14).toString('hex'),
      expiry: chuidDate(options.expiry ?? new Date(Date.now() + 10 * 365 * 86_400_000)),
      ...(options.label !== undefined ? { label: options.label } : {}),
      pin: { maxTries: pinMaxTries, triesLeft: pinMaxTries, wrappedDataKey: pinWrap },
      puk: { maxTries: pukMaxTries, triesLeft: pukMaxTries, wrappedDataKey: pukWrap },
      slots,
    };
  } finally {
    dataKey.fill(0);
  }
}
