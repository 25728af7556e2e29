// What a trace must not keep by default: PIN and PUK data (VERIFY, CHANGE REFERENCE DATA, RESET
// RETRY COUNTER) and key material (GENERAL AUTHENTICATE data both ways, and the GET RESPONSE chain
// that continues its answer). Redacted bytes become 0xFF, same length; the APDU header stays.

export const INS_VERIFY = 0x20;
export const INS_CHANGE_REFERENCE_DATA = 0x24;
export const INS_RESET_RETRY_COUNTER = 0x2c;
export const INS_GENERAL_AUTHENTICATE = 0x87;
export const INS_GET_RESPONSE = 0xc0;

const SECRET_COMMANDS = new Set([INS_VERIFY, INS_CHANGE_REFERENCE_DATA, INS_RESET_RETRY_COUNTER, INS_GENERAL_AUTHENTICATE]);

/** Offset and length of a command APDU's data field (short or extended Lc), or undefined when there is none. */
export function commandDataRange(apdu: Uint8Array): { offset: number; length: number } | undefined {
  if (apdu.byteLength <= 5) return undefined;
  if (apdu[4] === 0 && apdu.byteLength >= 7) {
    const nc = (apdu[5]! << 8) | apdu[6]!;
    return nc === 0 ? undefined : { offset: 7, length: Math.min(nc, apdu.byteLength - 7) };
  }
  return { offset: 5, length: Math.min(apdu[4]!, apdu.byteLength - 5) };
}

/** A copy of the command with its data field replaced by 0xFF. */
export function redactCommand(apdu: Uint8Array): Uint8Array {
  const out = apdu.slice();
  const range = commandDataRange(apdu);
  if (range !== undefined) out.fill(0xff, range.offset, range.offset + range.length);
  return out;
}

/** A copy of the response with everything but SW1 SW2 replaced by 0xFF. */
export function redactResponse(response: Uint8Array): Uint8Array {
  const out = response.slice();
  if (out.byteLength > 2) out.fill(0xff, 0, out.byteLength - 2);
  return out;
}

export function isSecretCommand(apdu: Uint8Array): boolean {
  return apdu.byteLength >= 2 && SECRET_COMMANDS.has(apdu[1]!);
}

/**
 * Follows one reader's commands and answers and decides what to redact. A response is secret when it
 * answers GENERAL AUTHENTICATE, or a GET RESPONSE continuing such an answer (61 XX chain).
 */
export class Redactor {
  private pendingSecretAnswer = false;
  private chainSecret = false;

  command(apdu: Uint8Array): { bytes: Uint8Array; redacted: boolean } {
    const ins = apdu[1];
    const secretAnswer = ins === INS_GENERAL_AUTHENTICATE || (ins === INS_GET_RESPONSE && this.chainSecret);
    this.pendingSecretAnswer = secretAnswer;
    if (isSecretCommand(apdu)) {
      const bytes = redactCommand(apdu);
      return { bytes, redacted: commandDataRange(apdu) !== undefined };
    }
    return { bytes: apdu, redacted: false };
  }

  response(response: Uint8Array): { bytes: Uint8Array; redacted: boolean } {
    const secret = this.pendingSecretAnswer;
    this.pendingSecretAnswer = false;
    const sw1 = response.byteLength >= 2 ? response[response.byteLength - 2] : undefined;
    this.chainSecret = secret && sw1 === 0x61;
    if (secret && response.byteLength > 2) return { bytes: redactResponse(response), redacted: true };
    return { bytes: response, redacted: false };
  }
}
