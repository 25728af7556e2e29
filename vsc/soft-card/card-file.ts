// The soft card file: versioned JSON. Secrets never appear in it: private keys are sealed with
// AES-256-GCM under a random data key, and the data key is stored twice, sealed under a key
// derived with scrypt from the PIN and under one derived from the PUK. Parsing checks every
// field, so a damaged or hand-edited file is refused with a clear message instead of failing
// later in the middle of a guest's login.

import { isKeyAlgorithmName, isSlotName, type KeyAlgorithmName, type SlotName } from './algorithms.js';

export const CARD_FILE_FORMAT = 'spice-smartcard soft PIV card';
export const CARD_FILE_VERSION = 1;

export class CardFileError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CardFileError';
  }
}

/** AES-256-GCM output, base64 fields. */
export interface SealedBox {
  readonly iv: string;
  readonly ciphertext: string;
  readonly tag: string;
}

export interface ScryptParameters {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  /** base64, 16 bytes. */
  readonly salt: string;
}

/** The data key sealed under a key derived from a secret. */
export interface WrappedDataKey {
  readonly kdf: { readonly name: 'scrypt' } & ScryptParameters;
  readonly sealed: SealedBox;
}

export interface SecretRecord {
  readonly maxTries: number;
  readonly triesLeft: number;
  readonly wrappedDataKey: WrappedDataKey;
}

export interface SlotRecord {
  readonly algorithm: KeyAlgorithmName;
  /** base64 DER X.509 certificate. */
  readonly certificate: string;
  /** PKCS#8 DER private key sealed under the data key. */
  readonly privateKey: SealedBox;
}

export interface CardDocument {
  readonly format: typeof CARD_FILE_FORMAT;
  readonly version: typeof CARD_FILE_VERSION;
  /** CHUID GUID: 32 hex digits, random per card. */
  readonly guid: string;
  /** The unique part of the CCC card identifier: 28 hex digits. */
  readonly cardId: string;
  /** CHUID expiration date, YYYYMMDD. */
  readonly expiry: string;
  readonly label?: string;
  readonly pin: SecretRecord;
  readonly puk: SecretRecord;
  readonly slots: Readonly<Partial<Record<SlotName, SlotRecord>>>;
}

export function serializeCardDocument(document: CardDocument): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function objectAt(parent: JsonObject, key: string, where: string): JsonObject {
  const value = parent[key];
  if (!isObject(value)) throw new CardFileError(`${where}.${key} must be an object`);
  return value;
}

function stringAt(parent: JsonObject, key: string, where: string, pattern?: RegExp): string {
  const value = parent[key];
  if (typeof value !== 'string' || (pattern !== undefined && !pattern.test(value))) {
    throw new CardFileError(`${where}.${key} is missing or malformed`);
  }
  return value;
}

function integerAt(parent: JsonObject, key: string, where: string, min: number, max: number): number {
  const value = parent[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new CardFileError(`${where}.${key} must be an integer from ${min} to ${max}`);
  }
  return value;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function sealedBox(parent: JsonObject, key: string, where: string): SealedBox {
  const box = objectAt(parent, key, where);
  const at = `${where}.${key}`;
  return { iv: stringAt(box, 'iv', at, BASE64), ciphertext: stringAt(box, 'ciphertext', at, BASE64), tag: stringAt(box, 'tag', at, BASE64) };
}

function secretRecord(parent: JsonObject, key: 'pin' | 'puk'): SecretRecord {
  const record = objectAt(parent, key, 'card');
  const where = `card.${key}`;
  const maxTries = integerAt(record, 'maxTries', where, 1, 15);
  const triesLeft = integerAt(record, 'triesLeft', where, 0, maxTries);
  const wrapped = objectAt(record, 'wrappedDataKey', where);
  const kdf = objectAt(wrapped, 'kdf', `${where}.wrappedDataKey`);
  const kdfWhere = `${where}.wrappedDataKey.kdf`;
  if (kdf['name'] !== 'scrypt') throw new CardFileError(`${kdfWhere}.name must be "scrypt"`);
  const N = integerAt(kdf, 'N', kdfWhere, 2, 2 ** 22);
  if ((N & (N - 1)) !== 0) throw new CardFileError(`${kdfWhere}.N must be a power of two`);
  return {
    maxTries,
    triesLeft,
    wrappedDataKey: {
      kdf: { name: 'scrypt', N, r: integerAt(kdf, 'r', kdfWhere, 1, 64), p: integerAt(kdf, 'p', kdfWhere, 1, 16), salt: stringAt(kdf, 'salt', kdfWhere, BASE64) },
      sealed: sealedBox(wrapped, 'sealed', `${where}.wrappedDataKey`),
    },
  };
}

/** Parses and checks a card file's text. Throws CardFileError with the offending field. */
export function parseCardDocument(text: string): CardDocument {
  let root: Json;
  try {
    root = JSON.parse(text) as Json;
  } catch (error) {
    throw new CardFileError('the card file is not valid JSON', { cause: error });
  }
  if (!isObject(root) || root['format'] !== CARD_FILE_FORMAT) throw new CardFileError('not a spice-smartcard soft card file');
  const version = root['version'];
  if (version !== CARD_FILE_VERSION) {
    throw new CardFileError(
      typeof version === 'number' && version > CARD_FILE_VERSION
        ? `the card file has format version ${version}; this spice-smartcard reads version ${CARD_FILE_VERSION}: upgrade it`
        : 'the card file has an unknown format version',
    );
  }
  const slotsJson = objectAt(root, 'slots', 'card');
  const slots: Partial<Record<SlotName, SlotRecord>> = {};
  for (const [name, value] of Object.entries(slotsJson)) {
    if (!isSlotName(name)) throw new CardFileError(`card.slots has an unknown slot "${name}"`);
    if (!isObject(value)) throw new CardFileError(`card.slots.${name} must be an object`);
    const where = `card.slots.${name}`;
    const algorithm = stringAt(value, 'algorithm', where);
    if (!isKeyAlgorithmName(algorithm)) throw new CardFileError(`${where}.algorithm "${algorithm}" is not supported`);
    slots[name] = { algorithm, certificate: stringAt(value, 'certificate', where, BASE64), privateKey: sealedBox(value, 'privateKey', where) };
  }
  const label = root['label'];
  if (label !== undefined && typeof label !== 'string') throw new CardFileError('card.label must be a string');
  return {
    format: CARD_FILE_FORMAT,
    version: CARD_FILE_VERSION,
    guid: stringAt(root, 'guid', 'card', /^[0-9a-f]{32}$/),
    cardId: stringAt(root, 'cardId', 'card', /^[0-9a-f]{28}$/),
    expiry: stringAt(root, 'expiry', 'card', /^[0-9]{8}$/),
    ...(typeof label === 'string' ? { label } : {}),
    pin: secretRecord(root, 'pin'),
    puk: secretRecord(root, 'puk'),
    slots,
  };
}
