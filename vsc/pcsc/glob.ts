// Which PC/SC reader a `--reader` value means: an exact name, or a glob with `*` (any run of
// characters) and `?` (one character). Reader names contain spaces and digits and often end in
// a slot number ("Yubico YubiKey OTP+FIDO+CCID 00 00"), so matching is on the whole name and
// case-sensitive, as PC/SC names are.

export interface ReaderPattern {
  readonly text: string;
  readonly isGlob: boolean;
  matches(name: string): boolean;
}

/** `exact`: take `*` and `?` literally (for a name picked from the reader list). */
export function readerPattern(text: string, exact = false): ReaderPattern {
  if (text.trim().length === 0) throw new RangeError('the reader name is empty: give the exact name or a glob such as "Yubico*"');
  const isGlob = !exact && /[*?]/.test(text);
  if (!isGlob) return { text, isGlob, matches: (name) => name === text };
  const source = Array.from(text, (ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&'))).join('');
  const regex = new RegExp(`^${source}$`, 's');
  return { text, isGlob, matches: (name) => regex.test(name) };
}
