// smol-toml's syntax messages, said the way the rest of serve's messages are: what is wrong and what
// to write instead. Unknown messages pass through (first line only).

const REWORDED: Array<[RegExp, string]> = [
  [/redefine an already defined/, 'this key or [table] is given twice; give each once (every session is its own [[sessions]] table)'],
  [/^invalid value/, 'expected a value: a "string", a number, true or false, a [list] or an { inline table }'],
  [/must be followed by an end-of-line/, 'one key = value per line: something follows the value (comments start with #)'],
  [/^unfinished string/, 'a string is not closed (missing closing quote)'],
  [/^unfinished table$/, 'an inline table { ... } is not closed with "}"'],
  [/^unfinished array/, 'a list [ ... ] is not closed with "]"'],
  [/expected comma or end of structure/, 'expected "," or the closing bracket'],
  [/cannot find end of key/, 'expected key = value (the "=" is missing)'],
  [/illegal character in key/, 'a bare key holds letters, digits, "_" and "-" only; put other keys in quotes'],
  [/illegal empty bare key/, 'a key is missing'],
  [/unexpected end of key/, 'a key is not finished'],
  [/excessively nested/, 'nested too deeply'],
  [/unrecognised escape sequence/, 'unknown escape in a "string" (write \\\\ for a backslash, or use a \'literal string\' for Windows paths)'],
  [/end of table array declaration/, 'a [[table]] header is not closed with "]]"'],
  [/leading zero/, 'numbers cannot start with 0'],
  [/^illegal underscore|numeric literal|unfinished numeric/, 'not a valid number'],
  [/^invalid date/, 'not a valid date'],
  [/represented losslessly/, 'this whole number is too large (no setting needs more than 86400000)'],
  [/control characters are not allowed in comments/, 'a comment holds a control character'],
];

/** Our wording of a smol-toml message; `at` is the character it points at. */
export function rewordTomlError(message: string, at: string | undefined): string {
  const first = (message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/i, '').trim();
  if (/control characters are not allowed in strings/.test(first)) {
    return at === '\n' || at === '\r' || at === undefined ? 'a string is not closed before the end of the line (missing closing quote)' : 'a control character in a string must be escaped (\\t, \\n, \\u00XX)';
  }
  for (const [pattern, text] of REWORDED) if (pattern.test(first)) return text;
  return first === '' ? 'not valid TOML' : first;
}
