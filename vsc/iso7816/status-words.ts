// ISO 7816-4 status words (SW1 SW2) as numbers, with names for logs and APDU traces.
// Kept in one table so a trace reader and the card emulation agree on what a code means.

export const SW = {
  /** 9000: normal processing. */
  OK: 0x9000,
  /** 61XX: XX more response bytes available through GET RESPONSE (00: 256 or more). */
  MORE_DATA: 0x6100,
  /** 6282: end of data reached before Le bytes. */
  END_OF_DATA: 0x6282,
  /** 63CX: verification failed, X tries left. */
  VERIFY_FAILED: 0x63c0,
  /** 6581: memory failure. */
  MEMORY_FAILURE: 0x6581,
  /** 6700: wrong length (Lc or Le). */
  WRONG_LENGTH: 0x6700,
  /** 6881: logical channel not supported. */
  CHANNEL_NOT_SUPPORTED: 0x6881,
  /** 6882: secure messaging not supported. */
  SECURE_MESSAGING_NOT_SUPPORTED: 0x6882,
  /** 6883: last command of the chain expected. */
  LAST_COMMAND_EXPECTED: 0x6883,
  /** 6884: command chaining not supported. */
  CHAINING_NOT_SUPPORTED: 0x6884,
  /** 6982: security status not satisfied (PIN not verified). */
  SECURITY_STATUS_NOT_SATISFIED: 0x6982,
  /** 6983: authentication method blocked (retry counter at zero). */
  AUTH_METHOD_BLOCKED: 0x6983,
  /** 6984: reference data not usable. */
  REFERENCE_DATA_NOT_USABLE: 0x6984,
  /** 6985: conditions of use not satisfied. */
  CONDITIONS_NOT_SATISFIED: 0x6985,
  /** 6986: command not allowed (no current EF). */
  COMMAND_NOT_ALLOWED: 0x6986,
  /** 6A80: incorrect parameters in the command data field. */
  WRONG_DATA: 0x6a80,
  /** 6A81: function not supported. */
  FUNCTION_NOT_SUPPORTED: 0x6a81,
  /** 6A82: file or application not found. */
  FILE_NOT_FOUND: 0x6a82,
  /** 6A84: not enough memory space in the file. */
  NOT_ENOUGH_MEMORY: 0x6a84,
  /** 6A86: incorrect parameters P1-P2. */
  WRONG_P1P2: 0x6a86,
  /** 6A88: referenced data or reference data not found. */
  REFERENCED_DATA_NOT_FOUND: 0x6a88,
  /** 6B00: wrong parameters P1-P2 (offset outside the EF). */
  WRONG_PARAMETERS: 0x6b00,
  /** 6CXX: wrong Le; XX is the exact length available. */
  WRONG_LE: 0x6c00,
  /** 6D00: instruction code not supported or invalid. */
  INS_NOT_SUPPORTED: 0x6d00,
  /** 6E00: class not supported. */
  CLA_NOT_SUPPORTED: 0x6e00,
  /** 6F00: no precise diagnosis (internal error). */
  UNKNOWN_ERROR: 0x6f00,
} as const;

export type StatusWord = number;

/** 61XX for `available` further bytes: XX is the count, 00 when 256 or more. */
export function moreDataStatus(available: number): StatusWord {
  return SW.MORE_DATA | (available >= 256 ? 0 : available);
}

/** 6CXX: the command should be repeated with Le = `exact` (1..256; 256 is written 00). */
export function wrongLeStatus(exact: number): StatusWord {
  return SW.WRONG_LE | (exact & 0xff);
}

/** 63CX: X tries left, capped at 15 (one nibble). */
export function verifyFailedStatus(triesLeft: number): StatusWord {
  return SW.VERIFY_FAILED | Math.max(0, Math.min(15, triesLeft));
}

/** SW1 values a card may send (ISO 7816-3 10.3.3: 6X other than 60, and 9X). */
export function isValidStatusWord(sw1: number, sw2: number): boolean {
  if (!Number.isInteger(sw1) || !Number.isInteger(sw2) || sw2 < 0 || sw2 > 0xff) return false;
  return (sw1 >= 0x61 && sw1 <= 0x6f) || (sw1 >= 0x90 && sw1 <= 0x9f);
}

/** The last two bytes of a response APDU as one number, or undefined when it is too short. */
export function statusWordOf(response: Uint8Array): StatusWord | undefined {
  if (response.length < 2) return undefined;
  return ((response[response.length - 2] ?? 0) << 8) | (response[response.length - 1] ?? 0);
}

/** True for 9000, 61XX and the 62XX/63XX warnings: the command was executed. */
export function isSuccessStatus(sw: StatusWord): boolean {
  const sw1 = sw >> 8;
  return sw === SW.OK || sw1 === 0x61 || sw1 === 0x62 || sw1 === 0x63 || sw1 === 0x90;
}

/** Data followed by SW1 SW2. */
export function responseApdu(sw: StatusWord, data?: Uint8Array): Uint8Array {
  const length = data?.length ?? 0;
  const out = new Uint8Array(length + 2);
  if (data !== undefined) out.set(data, 0);
  out[length] = (sw >> 8) & 0xff;
  out[length + 1] = sw & 0xff;
  return out;
}

const EXACT_NAMES: Readonly<Record<number, string>> = {
  [SW.OK]: 'success',
  [SW.END_OF_DATA]: 'end of data reached before Le bytes',
  [SW.MEMORY_FAILURE]: 'memory failure',
  [SW.WRONG_LENGTH]: 'wrong length',
  [SW.CHANNEL_NOT_SUPPORTED]: 'logical channel not supported',
  [SW.SECURE_MESSAGING_NOT_SUPPORTED]: 'secure messaging not supported',
  [SW.LAST_COMMAND_EXPECTED]: 'last command of the chain expected',
  [SW.CHAINING_NOT_SUPPORTED]: 'command chaining not supported',
  [SW.SECURITY_STATUS_NOT_SATISFIED]: 'security status not satisfied',
  [SW.AUTH_METHOD_BLOCKED]: 'authentication method blocked',
  [SW.REFERENCE_DATA_NOT_USABLE]: 'reference data not usable',
  [SW.CONDITIONS_NOT_SATISFIED]: 'conditions of use not satisfied',
  [SW.COMMAND_NOT_ALLOWED]: 'command not allowed',
  [SW.WRONG_DATA]: 'incorrect parameters in the data field',
  [SW.FUNCTION_NOT_SUPPORTED]: 'function not supported',
  [SW.FILE_NOT_FOUND]: 'file or application not found',
  [SW.NOT_ENOUGH_MEMORY]: 'not enough memory space',
  [SW.WRONG_P1P2]: 'incorrect parameters P1-P2',
  [SW.REFERENCED_DATA_NOT_FOUND]: 'referenced data not found',
  [SW.WRONG_PARAMETERS]: 'wrong parameters P1-P2',
  [SW.INS_NOT_SUPPORTED]: 'instruction not supported',
  [SW.CLA_NOT_SUPPORTED]: 'class not supported',
  [SW.UNKNOWN_ERROR]: 'no precise diagnosis',
  0x6400: 'execution error, state of non-volatile memory unchanged',
  0x6800: 'function in CLA not supported',
  0x6900: 'command not allowed',
  0x6a83: 'record not found',
  0x6a87: 'Nc inconsistent with P1-P2',
};

/** "9000 success", "6A82 file or application not found", "61 1A: 26 more bytes available", ... */
export function describeStatusWord(sw: StatusWord): string {
  const code = (sw & 0xffff).toString(16).toUpperCase().padStart(4, '0');
  const sw1 = (sw >> 8) & 0xff;
  const sw2 = sw & 0xff;
  const exact = EXACT_NAMES[sw & 0xffff];
  if (exact !== undefined) return `${code} ${exact}`;
  if (sw1 === 0x61) return `${code} ${sw2 === 0 ? '256 or more' : sw2} more bytes available (GET RESPONSE)`;
  if (sw1 === 0x6c) return `${code} wrong Le: repeat with Le=${sw2 === 0 ? 256 : sw2}`;
  if (sw1 === 0x63 && (sw2 & 0xf0) === 0xc0) return `${code} verification failed, ${sw2 & 0x0f} tries left`;
  if (sw1 === 0x62) return `${code} warning, non-volatile memory unchanged`;
  if (sw1 === 0x63) return `${code} warning, non-volatile memory changed`;
  if (sw1 === 0x64) return `${code} execution error, non-volatile memory unchanged`;
  if (sw1 === 0x65) return `${code} execution error, non-volatile memory changed`;
  if (sw1 === 0x67) return `${code} wrong length`;
  if (sw1 === 0x68) return `${code} function in CLA not supported`;
  if (sw1 === 0x69) return `${code} command not allowed`;
  if (sw1 === 0x6a) return `${code} wrong parameters`;
  if (sw1 === 0x6b) return `${code} wrong parameters P1-P2`;
  if (sw1 === 0x6d) return `${code} instruction not supported`;
  if (sw1 === 0x6e) return `${code} class not supported`;
  if (sw1 === 0x6f) return `${code} no precise diagnosis`;
  if (sw1 >= 0x90 && sw1 <= 0x9f) return `${code} proprietary success`;
  return `${code} not a valid status word`;
}
