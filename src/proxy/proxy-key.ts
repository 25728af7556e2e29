// The proxy's own RSA-1024 key, shown to the viewer in place of the server's so the proxy can read
// the viewer's ticket. One key per link, like spice-server: a ticket seen once cannot be replayed.
import { constants, generateKeyPair, generateKeyPairSync, privateDecrypt, type KeyObject } from 'node:crypto';
import { LINK_PUBKEY_SIZE, TICKET_SIZE } from '../../spice/constants.js';

export interface ProxyKey {
  /** DER SubjectPublicKeyInfo, 162 bytes: the same size as the server's, so nothing else moves. */
  readonly spki: Uint8Array;
  /** The ticket's plaintext, or undefined when it was not encrypted with this key (OAEP fails). */
  decrypt(ticket: Uint8Array): Uint8Array | undefined;
}

const RSA_OPTIONS = { modulusLength: 1024, publicExponent: 0x10001 } as const;

function wrap(publicKey: KeyObject, privateKey: KeyObject): ProxyKey {
  const spki = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
  if (spki.byteLength !== LINK_PUBKEY_SIZE) throw new Error(`RSA-1024 SPKI is ${spki.byteLength} bytes, expected ${LINK_PUBKEY_SIZE}`);
  return {
    spki,
    decrypt(ticket) {
      if (ticket.byteLength !== TICKET_SIZE) return undefined;
      try {
        const plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ticket);
        return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
      } catch {
        return undefined;
      }
    },
  };
}

export function createProxyKey(): Promise<ProxyKey> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', RSA_OPTIONS, (err, publicKey, privateKey) => {
      if (err) reject(err);
      else resolve(wrap(publicKey, privateKey));
    });
  });
}

/** For tests and benchmarks, where a few milliseconds of blocking do not matter. */
export function createProxyKeySync(): ProxyKey {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', RSA_OPTIONS);
  return wrap(publicKey, privateKey);
}
