// VSCMsg codec: bytes <-> typed messages. Pure: no I/O, no timers.
//
// The same 12-byte header {type, reader_id, length} is little-endian inside SPICE
// (spice-server converts it) and big-endian on QEMU's raw ccid-card-passthru socket,
// so byte order is a parameter, never a guess. Payloads are never converted by
// spice-server, which is why VSC_Error codes need the defensive reading below.
//
// Decoding never throws: bad input comes back as a typed VscDecodeError.
// Encoding throws RangeError only for values that cannot be put on the wire at all
// (a programming error, not peer input).

import {
  VSC_ERROR_PAYLOAD_SIZE,
  VSC_HEADER_SIZE,
  VSC_INIT_MIN_PAYLOAD,
  VSC_LIMITS,
  VscMsgType,
  vscTypeName,
} from './constants.js';

export type ByteOrder = 'le' | 'be';

export interface VscInitMessage {
  readonly type: typeof VscMsgType.Init;
  readonly readerId: number;
  /** 4 bytes, "VSCD" from a well-behaved peer. */
  readonly magic: Uint8Array;
  readonly version: number;
  readonly capabilities: readonly number[];
}

export interface VscErrorMessage {
  readonly type: typeof VscMsgType.Error;
  readonly readerId: number;
  /** 0 = success; 1..3 = the VSCErrorCode read in whichever byte order makes sense;
   * anything else is an unrecognised failure (the value as read in the stream's order). */
  readonly code: number;
  /** The payload u32 exactly as read in the stream's order (set by the decoder only). */
  readonly rawCode?: number;
}

export interface VscReaderAddMessage {
  readonly type: typeof VscMsgType.ReaderAdd;
  readonly readerId: number;
  /** UTF-8 on the wire, no NUL; ignored by spice-server and QEMU. */
  readonly name: string;
}

export interface VscReaderRemoveMessage {
  readonly type: typeof VscMsgType.ReaderRemove;
  readonly readerId: number;
}

export interface VscAtrMessage {
  readonly type: typeof VscMsgType.Atr;
  readonly readerId: number;
  readonly atr: Uint8Array;
}

export interface VscCardRemoveMessage {
  readonly type: typeof VscMsgType.CardRemove;
  readonly readerId: number;
}

export interface VscApduMessage {
  readonly type: typeof VscMsgType.Apdu;
  readonly readerId: number;
  readonly data: Uint8Array;
}

export interface VscFlushMessage {
  readonly type: typeof VscMsgType.Flush;
  readonly readerId: number;
}

export interface VscFlushCompleteMessage {
  readonly type: typeof VscMsgType.FlushComplete;
  readonly readerId: number;
}

export interface VscUnknownMessage {
  readonly type: 'unknown';
  readonly readerId: number;
  readonly rawType: number;
  readonly payload: Uint8Array;
}

export type VscMessage =
  | VscInitMessage
  | VscErrorMessage
  | VscReaderAddMessage
  | VscReaderRemoveMessage
  | VscAtrMessage
  | VscCardRemoveMessage
  | VscApduMessage
  | VscFlushMessage
  | VscFlushCompleteMessage
  | VscUnknownMessage;

export type VscDecodeErrorKind =
  /** fewer than 12 bytes: no header */
  | 'short-header'
  /** the header announces more payload than the body holds */
  | 'truncated-payload'
  /** the header announces more than VSC_LIMITS.maxInboundPayloadSize */
  | 'too-large'
  /** framing is fine but the payload does not fit the message type */
  | 'bad-payload';

export interface VscDecodeError {
  readonly kind: VscDecodeErrorKind;
  readonly text: string;
  /** Header fields, when they could be read. */
  readonly rawType?: number;
  readonly readerId?: number;
  readonly length?: number;
}

export type VscDecodeResult =
  | { readonly ok: true; readonly message: VscMessage; readonly trailingBytes: number }
  | { readonly ok: false; readonly error: VscDecodeError };

export interface VscDecodeOptions {
  /** Default VSC_LIMITS.maxInboundPayloadSize. */
  readonly maxPayloadSize?: number;
}

const EMPTY = new Uint8Array(0);
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function readU32(bytes: Uint8Array, offset: number, order: ByteOrder): number {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0, order === 'le');
}

function swap32(value: number): number {
  return (
    (((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) | (value >>> 24)) >>> 0
  );
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function requireU32(value: number, field: string): void {
  if (!isU32(value)) throw new RangeError(`VSC ${field} must be an unsigned 32-bit integer, got ${value}`);
}

/**
 * Reads a VSC_Error code whatever order its sender used: QEMU writes it big-endian,
 * spice-server little-endian for the errors it makes up, and the payload is never
 * converted on the way. `raw` is the u32 as read in the stream's order.
 */
export function normalizeVscErrorCode(raw: number): number {
  if (raw === 0) return 0;
  if (raw >= 1 && raw <= 3) return raw;
  const swapped = swap32(raw);
  if (swapped >= 1 && swapped <= 3) return swapped;
  return raw;
}

export type AtrCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const hex = (b: number): string => b.toString(16).padStart(2, '0');

/**
 * What QEMU's ccid-card-passthru accepts as a VSC_ATR payload (protocol.md §6.6),
 * replayed offline so a bad ATR is refused locally instead of silently failing in the VM.
 * The quirks are QEMU's and kept on purpose: it reads the byte after each TD as the next
 * TD, repeats a TD-less round, and lets ATRs longer than announced through.
 */
export function checkAtr(atr: Uint8Array): AtrCheck {
  const len = atr.length;
  if (len < VSC_LIMITS.minAtrSize) return { ok: false, reason: `ATR is ${len} bytes; at least 2 are needed` };
  if (len > VSC_LIMITS.maxAtrSize) {
    return { ok: false, reason: `ATR is ${len} bytes; QEMU accepts at most ${VSC_LIMITS.maxAtrSize}` };
  }
  const ts = atr[0] ?? 0;
  const t0 = atr[1] ?? 0;
  if (ts !== 0x3b && ts !== 0x3f) {
    return { ok: false, reason: `ATR starts with ${hex(ts)}; QEMU accepts only 3b or 3f` };
  }
  const historical = t0 & 0x0f;
  let optional = 0;
  let rounds = 0;
  let td = t0 >> 4;
  // QEMU does not clear td when the TD bit is absent, so a TD-less round repeats once.
  while (td !== 0 && rounds < 2 && optional + historical + 2 < len) {
    rounds += 1;
    if (td & 0x1) optional += 1;
    if (td & 0x2) optional += 1;
    if (td & 0x4) optional += 1;
    if (td & 0x8) {
      optional += 1;
      // QEMU may read past the ATR here, but then the loop guard fails on the next
      // round, so the value read cannot change the outcome.
      td = (atr[optional + 2] ?? 0) >> 4;
    }
  }
  if (len < 2 + historical + optional) {
    return {
      ok: false,
      reason: `ATR is ${len} bytes but announces ${historical} historical and ${optional} interface bytes`,
    };
  }
  return { ok: true };
}

function payloadOf(msg: VscMessage, order: ByteOrder): Uint8Array {
  switch (msg.type) {
    case VscMsgType.Init: {
      if (msg.magic.length !== 4) throw new RangeError(`VSC Init magic must be 4 bytes, got ${msg.magic.length}`);
      if (msg.capabilities.length === 0) {
        throw new RangeError('VSC Init needs at least one capability word (QEMU underflows otherwise)');
      }
      requireU32(msg.version, 'Init version');
      const out = new Uint8Array(8 + 4 * msg.capabilities.length);
      const view = new DataView(out.buffer);
      out.set(msg.magic, 0);
      view.setUint32(4, msg.version, order === 'le');
      msg.capabilities.forEach((cap, i) => {
        requireU32(cap, 'Init capability');
        view.setUint32(8 + 4 * i, cap, order === 'le');
      });
      return out;
    }
    case VscMsgType.Error: {
      requireU32(msg.code, 'Error code');
      const out = new Uint8Array(VSC_ERROR_PAYLOAD_SIZE);
      new DataView(out.buffer).setUint32(0, msg.code, order === 'le');
      return out;
    }
    case VscMsgType.ReaderAdd:
      return utf8Encoder.encode(msg.name);
    case VscMsgType.Atr:
      return msg.atr;
    case VscMsgType.Apdu:
      return msg.data;
    case 'unknown':
      return msg.payload;
    case VscMsgType.ReaderRemove:
    case VscMsgType.CardRemove:
    case VscMsgType.Flush:
    case VscMsgType.FlushComplete:
      return EMPTY;
  }
}

function wireType(msg: VscMessage): number {
  return msg.type === 'unknown' ? msg.rawType : msg.type;
}

/** Header plus payload: what `msg` occupies on the wire, in either byte order. */
export function vscEncodedLength(msg: VscMessage): number {
  return VSC_HEADER_SIZE + payloadOf(msg, 'le').length;
}

/** One VSC message as bytes. Inside SPICE this is exactly the body of message 101 (12 + L). */
export function encodeVscMessage(msg: VscMessage, order: ByteOrder): Uint8Array {
  const payload = payloadOf(msg, order);
  const type = wireType(msg);
  requireU32(type, 'type');
  requireU32(msg.readerId, 'reader_id');
  const out = new Uint8Array(VSC_HEADER_SIZE + payload.length);
  const view = new DataView(out.buffer);
  const le = order === 'le';
  view.setUint32(0, type, le);
  view.setUint32(4, msg.readerId, le);
  view.setUint32(8, payload.length, le);
  out.set(payload, VSC_HEADER_SIZE);
  return out;
}

type PayloadResult = { readonly ok: true; readonly message: VscMessage } | { readonly ok: false; readonly error: VscDecodeError };

function badPayload(type: number, readerId: number, length: number, what: string): PayloadResult {
  return {
    ok: false,
    error: { kind: 'bad-payload', text: `VSC ${vscTypeName(type)} ${what}`, rawType: type, readerId, length },
  };
}

// `payload` is a view of the input; decoded byte fields are views too (no copy).
function decodePayload(type: number, readerId: number, payload: Uint8Array, order: ByteOrder): PayloadResult {
  const length = payload.length;
  switch (type) {
    case VscMsgType.Init: {
      if (length < VSC_INIT_MIN_PAYLOAD || length % 4 !== 0) {
        return badPayload(type, readerId, length, `payload is ${length} bytes; expected 12 or more, a multiple of 4`);
      }
      const capabilities: number[] = [];
      for (let off = 8; off < length; off += 4) capabilities.push(readU32(payload, off, order));
      return {
        ok: true,
        message: {
          type: VscMsgType.Init,
          readerId,
          magic: payload.subarray(0, 4),
          version: readU32(payload, 4, order),
          capabilities,
        },
      };
    }
    case VscMsgType.Error: {
      if (length < VSC_ERROR_PAYLOAD_SIZE) {
        return badPayload(type, readerId, length, `payload is ${length} bytes; expected a 4-byte code`);
      }
      const rawCode = readU32(payload, 0, order);
      return {
        ok: true,
        message: { type: VscMsgType.Error, readerId, code: normalizeVscErrorCode(rawCode), rawCode },
      };
    }
    case VscMsgType.ReaderAdd:
      return { ok: true, message: { type: VscMsgType.ReaderAdd, readerId, name: utf8Decoder.decode(payload) } };
    case VscMsgType.ReaderRemove:
      return { ok: true, message: { type: VscMsgType.ReaderRemove, readerId } };
    case VscMsgType.Atr:
      return { ok: true, message: { type: VscMsgType.Atr, readerId, atr: payload } };
    case VscMsgType.CardRemove:
      return { ok: true, message: { type: VscMsgType.CardRemove, readerId } };
    case VscMsgType.Apdu:
      return { ok: true, message: { type: VscMsgType.Apdu, readerId, data: payload } };
    case VscMsgType.Flush:
      return { ok: true, message: { type: VscMsgType.Flush, readerId } };
    case VscMsgType.FlushComplete:
      return { ok: true, message: { type: VscMsgType.FlushComplete, readerId } };
    default:
      return { ok: true, message: { type: 'unknown', readerId, rawType: type, payload } };
  }
}

function tooLarge(type: number, readerId: number, length: number, max: number): VscDecodeError {
  return {
    kind: 'too-large',
    text: `VSC ${vscTypeName(type)} announces a ${length}-byte payload; the limit is ${max}`,
    rawType: type,
    readerId,
    length,
  };
}

/**
 * Decodes one whole VSC message, as carried in the body of a SPICE message 101.
 * Bytes beyond 12 + L are ignored (as spice-server ≥ 0.14.3 does) and counted in
 * `trailingBytes` so the caller can report them. Byte fields of the result are views
 * of `body`.
 */
export function decodeVscMessage(body: Uint8Array, order: ByteOrder, options: VscDecodeOptions = {}): VscDecodeResult {
  const max = options.maxPayloadSize ?? VSC_LIMITS.maxInboundPayloadSize;
  if (body.length < VSC_HEADER_SIZE) {
    return {
      ok: false,
      error: { kind: 'short-header', text: `VSC message is ${body.length} bytes; the header alone is 12` },
    };
  }
  const type = readU32(body, 0, order);
  const readerId = readU32(body, 4, order);
  const length = readU32(body, 8, order);
  if (length > max) return { ok: false, error: tooLarge(type, readerId, length, max) };
  const available = body.length - VSC_HEADER_SIZE;
  if (available < length) {
    return {
      ok: false,
      error: {
        kind: 'truncated-payload',
        text: `VSC ${vscTypeName(type)} announces ${length} payload bytes but only ${available} arrived`,
        rawType: type,
        readerId,
        length,
      },
    };
  }
  const decoded = decodePayload(type, readerId, body.subarray(VSC_HEADER_SIZE, VSC_HEADER_SIZE + length), order);
  if (!decoded.ok) return decoded;
  return { ok: true, message: decoded.message, trailingBytes: available - length };
}

/**
 * Splits a raw VSC byte stream (QEMU's ccid-card-passthru socket, big-endian) into
 * messages. Chunks may be cut anywhere. A message lying inside one chunk is decoded
 * in place (its byte fields are views of that chunk: do not reuse pushed chunks);
 * only a message spread over several chunks is copied, into a buffer that grows
 * geometrically so byte-by-byte input stays linear.
 *
 * A header announcing more than the limit is reported once and the parser is dead
 * from then on: the stream cannot be resynchronised. A 'bad-payload' error does not
 * kill it, since the framing is intact.
 */
export class VscStreamParser {
  readonly #order: ByteOrder;
  readonly #maxPayload: number;
  #buffer: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;
  // True when #buffer is ours (a merge buffer) and may be appended to in place.
  #owned = false;
  #dead = false;

  constructor(order: ByteOrder, options: VscDecodeOptions = {}) {
    this.#order = order;
    this.#maxPayload = options.maxPayloadSize ?? VSC_LIMITS.maxInboundPayloadSize;
  }

  /** True after a fatal framing error; every later push returns []. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Bytes received but not yet part of a complete message. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  push(chunk: Uint8Array): VscDecodeResult[] {
    if (this.#dead) return [];
    this.#append(chunk);
    const results: VscDecodeResult[] = [];
    while (this.#end - this.#start >= VSC_HEADER_SIZE) {
      const type = readU32(this.#buffer, this.#start, this.#order);
      const readerId = readU32(this.#buffer, this.#start + 4, this.#order);
      const length = readU32(this.#buffer, this.#start + 8, this.#order);
      if (length > this.#maxPayload) {
        results.push({ ok: false, error: tooLarge(type, readerId, length, this.#maxPayload) });
        this.#kill();
        return results;
      }
      const total = VSC_HEADER_SIZE + length;
      if (this.#end - this.#start < total) break;
      const payloadStart = this.#start + VSC_HEADER_SIZE;
      const decoded = decodePayload(type, readerId, this.#buffer.subarray(payloadStart, payloadStart + length), this.#order);
      results.push(decoded.ok ? { ok: true, message: decoded.message, trailingBytes: 0 } : decoded);
      this.#start += total;
    }
    if (this.#start === this.#end) this.#reset();
    return results;
  }

  #append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#start === this.#end) {
      this.#buffer = chunk;
      this.#start = 0;
      this.#end = chunk.length;
      this.#owned = false;
      return;
    }
    if (this.#owned && this.#buffer.length - this.#end >= chunk.length) {
      // Writing past #end never touches bytes already handed out as views.
      this.#buffer.set(chunk, this.#end);
      this.#end += chunk.length;
      return;
    }
    const pending = this.#end - this.#start;
    const needed = pending + chunk.length;
    const merged = new Uint8Array(Math.max(needed, pending * 2, 256));
    merged.set(this.#buffer.subarray(this.#start, this.#end), 0);
    merged.set(chunk, pending);
    this.#buffer = merged;
    this.#start = 0;
    this.#end = needed;
    this.#owned = true;
  }

  #reset(): void {
    this.#buffer = EMPTY;
    this.#start = 0;
    this.#end = 0;
    this.#owned = false;
  }

  #kill(): void {
    this.#dead = true;
    this.#reset();
  }
}
