// At-rest encryption of a soft card: AES-256-GCM boxes, and the random data key wrapped under
// keys derived from the PIN and the PUK with scrypt. A wrong PIN shows up as the wrapped data
// key failing to authenticate; no PIN hash or verifier is stored.

import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCallback } from 'node:crypto';
import type { ScryptParameters, SealedBox, WrappedDataKey } from './card-file.js';

export const DATA_KEY_BYTES = 32;
const IV_BYTES = 12;
const SALT_BYTES = 16;

export interface ScryptCost {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/**
 * 2^16 x 8 x 1: 64 MiB and about 0.15 s per derivation on a 2020s CPU. Paid once per VERIFY with
 * a PIN the bridge has not seen accept yet, and once per secret when a card is created.
 */
export const DEFAULT_SCRYPT_COST: ScryptCost = { N: 2 ** 16, r: 8, p: 1 };

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function unb64(text: string): Buffer {
  return Buffer.from(text, 'base64');
}

export function seal(key: Uint8Array, plaintext: Uint8Array, associatedData: string): SealedBox {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv: b64(iv), ciphertext: b64(ciphertext), tag: b64(cipher.getAuthTag()) };
}

/** The plaintext, or undefined when the key is wrong or the box was altered. */
export function open(key: Uint8Array, box: SealedBox, associatedData: string): Buffer | undefined {
  const iv = unb64(box.iv);
  const tag = unb64(box.tag);
  if (iv.length !== IV_BYTES || tag.length !== 16) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(unb64(box.ciphertext)), decipher.final()]);
  } catch {
    return undefined;
  }
}

function deriveKey(secret: string, params: ScryptParameters): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem: node's default (32 MiB) is just below what N=2^16, r=8 needs (128·N·r bytes).
    const maxmem = 256 * params.N * params.r + 1024 * 1024;
    scryptCallback(secret.normalize('NFC'), unb64(params.salt), DATA_KEY_BYTES, { N: params.N, r: params.r, p: params.p, maxmem }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

export async function wrapDataKey(dataKey: Uint8Array, secret: string, associatedData: string, cost: ScryptCost = DEFAULT_SCRYPT_COST): Promise<WrappedDataKey> {
  const kdf = { name: 'scrypt' as const, ...cost, salt: b64(randomBytes(SALT_BYTES)) };
  const wrappingKey = await deriveKey(secret, kdf);
  try {
    return { kdf, sealed: seal(wrappingKey, dataKey, associatedData) };
  } finally {
    wrappingKey.fill(0);
  }
}

/** The data key, or undefined when `secret` is not the one it was wrapped under. */
export async function unwrapDataKey(wrapped: WrappedDataKey, secret: string, associatedData: string): Promise<Buffer | undefined> {
  const wrappingKey = await deriveKey(secret, wrapped.kdf);
  try {
    const dataKey = open(wrappingKey, wrapped.sealed, associatedData);
    return dataKey?.length === DATA_KEY_BYTES ? dataKey : undefined;
  } finally {
    wrappingKey.fill(0);
  }
}

export function newDataKey(): Buffer {
  return randomBytes(DATA_KEY_BYTES);
}
