// Bodies of the SPICE messages this client reads and writes (base messages and the main channel).
// Decoders return undefined for a body too short to hold the message, so callers can skip it.
import { LeWriter, view } from './bytes.js';

export interface Ping {
  id: number;
  timestamp: bigint;
}

export function decodePing(body: Uint8Array): Ping | undefined {
  if (body.byteLength < 12) return undefined;
  const dv = view(body);
  return { id: dv.getUint32(0, true), timestamp: dv.getBigUint64(4, true) };
}

/** PONG carries the PING's id and timestamp, never its padding. */
export function encodePong(ping: Ping): Uint8Array {
  return new LeWriter(12).u32(ping.id).u64(ping.timestamp).done();
}

export function encodePing(ping: Ping, padding = 0): Uint8Array {
  return new LeWriter(12 + padding).u32(ping.id).u64(ping.timestamp).raw(new Uint8Array(padding)).done();
}

export interface SetAck {
  generation: number;
  window: number;
}

export function decodeSetAck(body: Uint8Array): SetAck | undefined {
  if (body.byteLength < 8) return undefined;
  const dv = view(body);
  return { generation: dv.getUint32(0, true), window: dv.getUint32(4, true) };
}

export function encodeAckSync(generation: number): Uint8Array {
  return new LeWriter(4).u32(generation).done();
}

export interface Notify {
  timestamp: bigint;
  severity: number;
  visibility: number;
  what: number;
  message: string;
}

const MAX_NOTIFY_TEXT = 4096;

export function decodeNotify(body: Uint8Array): Notify | undefined {
  if (body.byteLength < 24) return undefined;
  const dv = view(body);
  const len = dv.getUint32(20, true);
  const text = body.subarray(24, 24 + Math.min(len, MAX_NOTIFY_TEXT, body.byteLength - 24));
  const nul = text.indexOf(0);
  return {
    timestamp: dv.getBigUint64(0, true),
    severity: dv.getUint32(8, true),
    visibility: dv.getUint32(12, true),
    what: dv.getUint32(16, true),
    message: Buffer.from(nul >= 0 ? text.subarray(0, nul) : text).toString('utf8'),
  };
}

export function encodeNotify(n: Notify): Uint8Array {
  const text = Buffer.from(n.message, 'utf8');
  return new LeWriter(24 + text.byteLength + 1)
    .u64(n.timestamp)
    .u32(n.severity)
    .u32(n.visibility)
    .u32(n.what)
    .u32(text.byteLength)
    .raw(text)
    .u8(0)
    .done();
}

export interface Disconnecting {
  timestamp: bigint;
  reason: number;
}

export function decodeDisconnecting(body: Uint8Array): Disconnecting | undefined {
  if (body.byteLength < 12) return undefined;
  const dv = view(body);
  return { timestamp: dv.getBigUint64(0, true), reason: dv.getUint32(8, true) };
}

export interface MainInit {
  sessionId: number;
  displayChannelsHint: number;
  supportedMouseModes: number;
  currentMouseMode: number;
  agentConnected: number;
  agentTokens: number;
  multiMediaTime: number;
  ramHint: number;
}

export function decodeMainInit(body: Uint8Array): MainInit | undefined {
  if (body.byteLength < 32) return undefined;
  const dv = view(body);
  const u = (i: number): number => dv.getUint32(4 * i, true);
  return {
    sessionId: u(0),
    displayChannelsHint: u(1),
    supportedMouseModes: u(2),
    currentMouseMode: u(3),
    agentConnected: u(4),
    agentTokens: u(5),
    multiMediaTime: u(6),
    ramHint: u(7),
  };
}

export function encodeMainInit(init: MainInit): Uint8Array {
  return new LeWriter(32)
    .u32(init.sessionId)
    .u32(init.displayChannelsHint)
    .u32(init.supportedMouseModes)
    .u32(init.currentMouseMode)
    .u32(init.agentConnected)
    .u32(init.agentTokens)
    .u32(init.multiMediaTime)
    .u32(init.ramHint)
    .done();
}

export interface ChannelId {
  type: number;
  id: number;
}

/** A server lists a handful of channels; a count beyond the body is malformed. */
export function decodeChannelsList(body: Uint8Array): ChannelId[] | undefined {
  if (body.byteLength < 4) return undefined;
  const n = view(body).getUint32(0, true);
  if (n > (body.byteLength - 4) / 2) return undefined;
  const out: ChannelId[] = [];
  for (let i = 0; i < n; i++) out.push({ type: body[4 + 2 * i]!, id: body[5 + 2 * i]! });
  return out;
}

export function encodeChannelsList(channels: readonly ChannelId[]): Uint8Array {
  const w = new LeWriter(4 + 2 * channels.length).u32(channels.length);
  for (const c of channels) w.u8(c.type).u8(c.id);
  return w.done();
}

export interface SwitchHost {
  port: number;
  tlsPort: number;
  host: string;
  certSubject: string;
}

function cString(body: Uint8Array, offset: number, size: number): string | undefined {
  if (size === 0) return '';
  if (offset + size > body.byteLength) return undefined;
  const bytes = body.subarray(offset, offset + size);
  const nul = bytes.indexOf(0);
  return Buffer.from(nul >= 0 ? bytes.subarray(0, nul) : bytes).toString('utf8');
}

export function decodeSwitchHost(body: Uint8Array): SwitchHost | undefined {
  if (body.byteLength < 20) return undefined;
  const dv = view(body);
  const host = cString(body, dv.getUint32(8, true), dv.getUint32(4, true));
  const certSubject = cString(body, dv.getUint32(16, true), dv.getUint32(12, true));
  if (host === undefined || certSubject === undefined) return undefined;
  return { port: dv.getUint16(0, true), tlsPort: dv.getUint16(2, true), host, certSubject };
}

export function decodeMainName(body: Uint8Array): string | undefined {
  if (body.byteLength < 4) return undefined;
  return cString(body, 4, Math.min(view(body).getUint32(0, true), body.byteLength - 4));
}

export function decodeMainUuid(body: Uint8Array): string | undefined {
  if (body.byteLength < 16) return undefined;
  const h = Buffer.from(body.subarray(0, 16)).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
