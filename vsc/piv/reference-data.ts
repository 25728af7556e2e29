// Formats of the PIN and PUK inside VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER
// (SP 800-73-4 part 2 §3.2): 8 bytes, the value followed by FF padding.

export const REFERENCE_DATA_LENGTH = 8;
export const MIN_SECRET_LENGTH = 6;
const PAD = 0xff;

/** The PIN: 6 to 8 ASCII digits (SP 800-73-4 part 2 §2.4.3). */
export function isValidPin(pin: string): boolean {
  return /^[0-9]{6,8}$/.test(pin);
}

/** The PUK: 6 to 8 printable ASCII characters (the spec allows any byte; printable keeps it typeable). */
export function isValidPuk(puk: string): boolean {
  return /^[\x20-\x7e]{6,8}$/.test(puk);
}

/** The secret inside an 8-byte padded field, or undefined when the padding or characters are wrong. */
export function unpadSecret(field: Uint8Array, kind: 'pin' | 'puk'): string | undefined {
  if (field.length !== REFERENCE_DATA_LENGTH) return undefined;
  let end = field.length;
  while (end > 0 && field[end - 1] === PAD) end -= 1;
  let text = '';
  for (let i = 0; i < end; i += 1) text += String.fromCharCode(field[i] ?? 0);
  const valid = kind === 'pin' ? isValidPin(text) : isValidPuk(text);
  return valid ? text : undefined;
}

/** The 8-byte field a host sends for `secret` (for hosts and tests). */
export function padSecret(secret: string): Uint8Array {
  if (secret.length > REFERENCE_DATA_LENGTH) throw new RangeError(`a PIN or PUK has at most ${REFERENCE_DATA_LENGTH} characters`);
  const out = new Uint8Array(REFERENCE_DATA_LENGTH).fill(PAD);
  for (let i = 0; i < secret.length; i += 1) out[i] = secret.charCodeAt(i) & 0xff;
  return out;
}
