// Pure encoders and decoders for the SPICE link stage: SpiceLinkHeader, SpiceLinkMess and
// SpiceLinkReply. No sockets here; the handshake state machine and the proxy both build on these.
import {
  LINK_HEADER_SIZE,
  LINK_MESS_SIZE,
  LINK_PUBKEY_SIZE,
  LINK_REPLY_SIZE,
  SPICE_MAGIC,
  SPICE_VERSION_MAJOR,
  SPICE_VERSION_MINOR,
} from './constants.js';
import { LeWriter, view } from './bytes.js';

/** The server caps link messages at 4096 bytes; we accept a little more from peers, never unbounded. */
export const MAX_LINK_BODY_SIZE = 4096 + 1024;
/** spice-server refuses more than 1024 caps words per kind. */
export const MAX_CAPS_WORDS = 1024;

export interface LinkHeader {
  magic: number;
  major: number;
  minor: number;
  size: number;
}

export interface LinkMess {
  connectionId: number;
  channelType: number;
  channelId: number;
  commonCaps: number[];
  channelCaps: number[];
}

export interface LinkReply {
  error: number;
  pubKey: Uint8Array;
  commonCaps: number[];
  channelCaps: number[];
}

export class LinkDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkDecodeError';
  }
}

export function capsWords(bits: readonly number[]): number[] {
  const words: number[] = [];
  for (const bit of bits) {
    const w = bit >>> 5;
    while (words.length <= w) words.push(0);
    words[w] = (words[w]! | (1 << (bit & 31))) >>> 0;
  }
  return words;
}

export function hasCap(words: readonly number[], bit: number): boolean {
  const w = words[bit >>> 5];
  return w !== undefined && (w & (1 << (bit & 31))) !== 0;
}

export function encodeLinkHeader(size: number): Uint8Array {
  return new LeWriter(LINK_HEADER_SIZE).u32(SPICE_MAGIC).u32(SPICE_VERSION_MAJOR).u32(SPICE_VERSION_MINOR).u32(size).done();
}

export function decodeLinkHeader(bytes: Uint8Array): LinkHeader {
  if (bytes.byteLength < LINK_HEADER_SIZE) throw new LinkDecodeError('link header is shorter than 16 bytes');
  const dv = view(bytes);
  return { magic: dv.getUint32(0, true), major: dv.getUint32(4, true), minor: dv.getUint32(8, true), size: dv.getUint32(12, true) };
}

/** Header plus SpiceLinkMess with caps right after the fixed part (caps_offset 18), as spice-gtk sends it. */
export function encodeLinkMess(mess: LinkMess): Uint8Array {
  const capsBytes = 4 * (mess.commonCaps.length + mess.channelCaps.length);
  const bodySize = LINK_MESS_SIZE + capsBytes;
  const w = new LeWriter(LINK_HEADER_SIZE + bodySize)
    .raw(encodeLinkHeader(bodySize))
    .u32(mess.connectionId)
    .u8(mess.channelType)
    .u8(mess.channelId)
    .u32(mess.commonCaps.length)
    .u32(mess.channelCaps.length)
    .u32(LINK_MESS_SIZE);
  for (const c of mess.commonCaps) w.u32(c);
  for (const c of mess.channelCaps) w.u32(c);
  return w.done();
}

function readCaps(body: Uint8Array, offset: number, ncommon: number, nchannel: number, what: string): [number[], number[]] {
  if (ncommon > MAX_CAPS_WORDS || nchannel > MAX_CAPS_WORDS) throw new LinkDecodeError(`${what}: too many capability words`);
  const end = offset + 4 * (ncommon + nchannel);
  if (offset > body.byteLength || end > body.byteLength) throw new LinkDecodeError(`${what}: capabilities run past the end`);
  const dv = view(body);
  const common: number[] = [];
  const channel: number[] = [];
  for (let i = 0; i < ncommon; i++) common.push(dv.getUint32(offset + 4 * i, true));
  for (let i = 0; i < nchannel; i++) channel.push(dv.getUint32(offset + 4 * (ncommon + i), true));
  return [common, channel];
}

/** Decodes a SpiceLinkMess body (without the 16-byte header). */
export function decodeLinkMess(body: Uint8Array): LinkMess {
  if (body.byteLength < LINK_MESS_SIZE) throw new LinkDecodeError('link message is shorter than 18 bytes');
  const dv = view(body);
  const ncommon = dv.getUint32(6, true);
  const nchannel = dv.getUint32(10, true);
  const capsOffset = dv.getUint32(14, true);
  if (capsOffset < LINK_MESS_SIZE) throw new LinkDecodeError('link message: caps offset inside the fixed part');
  const [commonCaps, channelCaps] = readCaps(body, capsOffset, ncommon, nchannel, 'link message');
  return {
    connectionId: dv.getUint32(0, true),
    channelType: dv.getUint8(4),
    channelId: dv.getUint8(5),
    commonCaps,
    channelCaps,
  };
}

/** Header plus SpiceLinkReply, as spice-server sends it (caps at offset 178). */
export function encodeLinkReply(reply: LinkReply): Uint8Array {
  if (reply.pubKey.byteLength !== LINK_PUBKEY_SIZE) throw new LinkDecodeError('link reply public key must be 162 bytes');
  const bodySize = LINK_REPLY_SIZE + 4 * (reply.commonCaps.length + reply.channelCaps.length);
  const w = new LeWriter(LINK_HEADER_SIZE + bodySize)
    .raw(encodeLinkHeader(bodySize))
    .u32(reply.error)
    .raw(reply.pubKey)
    .u32(reply.commonCaps.length)
    .u32(reply.channelCaps.length)
    .u32(LINK_REPLY_SIZE);
  for (const c of reply.commonCaps) w.u32(c);
  for (const c of reply.channelCaps) w.u32(c);
  return w.done();
}

/**
 * Decodes a SpiceLinkReply body. An error reply may be short (only the error word matters);
 * a successful one must carry the key and caps.
 */
export function decodeLinkReply(body: Uint8Array): LinkReply {
  if (body.byteLength < 4) throw new LinkDecodeError('link reply is shorter than 4 bytes');
  const dv = view(body);
  const error = dv.getUint32(0, true);
  if (body.byteLength < LINK_REPLY_SIZE) {
    if (error !== 0) return { error, pubKey: new Uint8Array(LINK_PUBKEY_SIZE), commonCaps: [], channelCaps: [] };
    throw new LinkDecodeError(`link reply is ${body.byteLength} bytes, expected at least ${LINK_REPLY_SIZE}`);
  }
  const ncommon = dv.getUint32(166, true);
  const nchannel = dv.getUint32(170, true);
  const capsOffset = dv.getUint32(174, true);
  if (capsOffset < LINK_REPLY_SIZE && ncommon + nchannel > 0) {
    throw new LinkDecodeError('link reply: caps offset inside the fixed part');
  }
  const [commonCaps, channelCaps] = readCaps(body, capsOffset, ncommon, nchannel, 'link reply');
  // A copy: Buffer.prototype.slice would return a view of the socket's buffer.
  return { error, pubKey: Uint8Array.from(body.subarray(4, 4 + LINK_PUBKEY_SIZE)), commonCaps, channelCaps };
}
