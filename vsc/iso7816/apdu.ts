// Command APDU parsing (ISO 7816-4 §5.1, 5.4). Pure.
//
// Extended-length APDUs are recognised and refused with 6700: QEMU's reader is TPDU-level T=0,
// and T=0 carries only short commands (ISO 7816-3 §12.2; extended ones would need ENVELOPE).
// The guest's stack therefore sends long data with command chaining (CLA bit 0x10), which
// chaining.ts assembles. Refusing is also what the card's advertised limits promise.

import { SW, type StatusWord } from './status-words.js';

/** Case 1: no data, no Le; 2: Le only; 3: data only; 4: data and Le (ISO 7816-3 §12.1). */
export type ApduCase = 1 | 2 | 3 | 4;

export interface CommandApdu {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  /** Command data (Nc bytes); empty when the command has none. A view of the input. */
  readonly data: Uint8Array;
  /** Ne: the most response bytes the host accepts (1..256; Le=00 means 256), or undefined when Le is absent. */
  readonly ne: number | undefined;
  readonly apduCase: ApduCase;
}

export type ApduParseResult =
  | { readonly ok: true; readonly apdu: CommandApdu }
  | { readonly ok: false; readonly sw: StatusWord; readonly reason: string };

/** Largest Ne of a short APDU. */
export const SHORT_MAX_NE = 256;
/** Largest Nc of a short APDU. */
export const SHORT_MAX_NC = 255;

/**
 * Parses one command APDU. Short APDUs only; anything else (too short, an Lc that disagrees
 * with the length, extended length) comes back as `{ok: false, sw: 6700}`. Never throws.
 */
export function parseCommandApdu(bytes: Uint8Array): ApduParseResult {
  const length = bytes.length;
  if (length < 4) return { ok: false, sw: SW.WRONG_LENGTH, reason: `a command APDU has at least 4 bytes, got ${length}` };
  const header = { cla: bytes[0] ?? 0, ins: bytes[1] ?? 0, p1: bytes[2] ?? 0, p2: bytes[3] ?? 0 };
  if (length === 4) return { ok: true, apdu: { ...header, data: bytes.subarray(4, 4), ne: undefined, apduCase: 1 } };
  const b5 = bytes[4] ?? 0;
  if (length === 5) {
    return { ok: true, apdu: { ...header, data: bytes.subarray(5, 5), ne: b5 === 0 ? SHORT_MAX_NE : b5, apduCase: 2 } };
  }
  if (b5 === 0) {
    // B1 = 00 with more bytes after it can only be an extended length field.
    return { ok: false, sw: SW.WRONG_LENGTH, reason: 'extended-length APDUs are not supported (T=0 reader): use command chaining' };
  }
  const data = bytes.subarray(5, 5 + b5);
  if (length === 5 + b5) return { ok: true, apdu: { ...header, data, ne: undefined, apduCase: 3 } };
  if (length === 6 + b5) {
    const le = bytes[5 + b5] ?? 0;
    return { ok: true, apdu: { ...header, data, ne: le === 0 ? SHORT_MAX_NE : le, apduCase: 4 } };
  }
  return { ok: false, sw: SW.WRONG_LENGTH, reason: `Lc=${b5} does not match the APDU length ${length}` };
}

export interface CommandApduFields {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  readonly data?: Uint8Array;
  /** 1..256, written as Le (256 as 00); omitted: no Le byte. */
  readonly ne?: number;
}

/** Encodes a short command APDU (for hosts and tests). Throws RangeError for values that do not fit. */
export function encodeCommandApdu(fields: CommandApduFields): Uint8Array {
  const data = fields.data ?? new Uint8Array(0);
  if (data.length > SHORT_MAX_NC) throw new RangeError(`short APDU data is at most ${SHORT_MAX_NC} bytes, got ${data.length}`);
  if (fields.ne !== undefined && (!Number.isInteger(fields.ne) || fields.ne < 1 || fields.ne > SHORT_MAX_NE)) {
    throw new RangeError(`Ne must be 1..${SHORT_MAX_NE}, got ${fields.ne}`);
  }
  for (const [name, value] of [['CLA', fields.cla], ['INS', fields.ins], ['P1', fields.p1], ['P2', fields.p2]] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new RangeError(`${name} must be a byte, got ${value}`);
  }
  const out: number[] = [fields.cla, fields.ins, fields.p1, fields.p2];
  if (data.length > 0) out.push(data.length, ...data);
  if (fields.ne !== undefined) out.push(fields.ne & 0xff);
  return Uint8Array.from(out);
}

export type ClassKind = 'interindustry' | 'proprietary' | 'invalid';

export interface ClassByte {
  readonly kind: ClassKind;
  /** Bit 0x10: more commands of this chain follow. */
  readonly chained: boolean;
  /** Any secure-messaging indication. */
  readonly secureMessaging: boolean;
  /** Logical channel number, 0..19. */
  readonly channel: number;
}

/**
 * Reads the class byte (ISO 7816-4 §5.4.1). First interindustry classes 0x00-0x1F carry
 * chaining in bit 0x10, secure messaging in 0x0C and channels 0-3 in 0x03; further
 * interindustry classes 0x40-0x7F carry chaining in 0x10, secure messaging in 0x20 and
 * channels 4-19 in the low nibble. 0x20-0x3F are reserved and 0xFF is invalid (it is the
 * PPS marker in T=0); 0x80-0xFE are proprietary and their bits mean nothing here.
 */
export function decodeClass(cla: number): ClassByte {
  if (cla <= 0x1f) {
    return { kind: 'interindustry', chained: (cla & 0x10) !== 0, secureMessaging: (cla & 0x0c) !== 0, channel: cla & 0x03 };
  }
  if (cla >= 0x40 && cla <= 0x7f) {
    return { kind: 'interindustry', chained: (cla & 0x10) !== 0, secureMessaging: (cla & 0x20) !== 0, channel: 4 + (cla & 0x0f) };
  }
  if (cla >= 0x80 && cla <= 0xfe) return { kind: 'proprietary', chained: false, secureMessaging: false, channel: 0 };
  return { kind: 'invalid', chained: false, secureMessaging: false, channel: 0 };
}

/** Lower-case hex with spaces, for logs and error text. */
export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
