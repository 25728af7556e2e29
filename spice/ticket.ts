import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { MAX_PASSWORD_LENGTH, TICKET_SIZE } from './constants.js';

export class PasswordTooLongError extends Error {
  constructor() {
    super(`The password is longer than SPICE allows (${MAX_PASSWORD_LENGTH} bytes).`);
    this.name = 'PasswordTooLongError';
  }
}

/** The ticket plaintext: UTF-8 password and one NUL (an empty password is the single NUL byte). */
export function ticketPlaintext(password: string): Uint8Array {
  const utf8 = Buffer.from(password, 'utf8');
  if (utf8.byteLength > MAX_PASSWORD_LENGTH) throw new PasswordTooLongError();
  const out = new Uint8Array(utf8.byteLength + 1);
  out.set(utf8, 0);
  return out;
}

/**
 * RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) of password+NUL with the 162-byte SPKI key from the link
 * reply. Always needed, even when the server has ticketing disabled: it still decrypts the ticket.
 */
export function encryptTicket(pubKeyDer: Uint8Array, password: string): Uint8Array {
  return encryptTicketPlaintext(pubKeyDer, ticketPlaintext(password));
}

/**
 * The same encryption of plaintext bytes as they are, for a proxy re-encrypting a viewer's ticket: the
 * bytes the viewer chose (NUL included) reach the server unchanged, even if they are not UTF-8.
 */
export function encryptTicketPlaintext(pubKeyDer: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const key = createPublicKey({ key: Buffer.from(pubKeyDer), format: 'der', type: 'spki' });
  const out = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plaintext);
  if (out.byteLength !== TICKET_SIZE) throw new Error(`RSA-OAEP ticket is ${out.byteLength} bytes, expected ${TICKET_SIZE}`);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
