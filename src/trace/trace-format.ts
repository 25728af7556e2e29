// APDU trace files: a header record, then one record per VSC message, each a msgpack value appended
// to the file. Pure: bytes <-> records, no I/O.
import { Decoder, Encoder } from '@msgpack/msgpack';
import { encodeVscMessage, type VscMessage } from '../../vsc/codec.js';
import { VSC_HEADER_SIZE, VscMsgType } from '../../vsc/constants.js';

export const TRACE_VERSION = 1;

export interface TraceHeader {
  kind: 'header';
  version: number;
  tool: string;
  /** Where the session went, without passwords. */
  target: string;
  /** Milliseconds since the epoch. */
  start: number;
  /** Name of the card source (the VSC reader name). */
  card: string;
  /** True when the PIN and key material were kept (--trace-secrets). */
  secrets: boolean;
}

export interface TraceMessage {
  kind: 'message';
  /** Milliseconds since the header's start. */
  t: number;
  /** 'in' from the VM, 'out' to the VM. */
  dir: 'in' | 'out';
  /** The VSC message type on the wire. */
  type: number;
  readerId: number;
  /** The VSC payload (for APDU and ATR messages: the APDU or ATR), possibly redacted. */
  payload: Uint8Array;
  redacted: boolean;
}

export type TraceRecord = TraceHeader | TraceMessage;

export class TraceFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TraceFormatError';
  }
}

const encoder = new Encoder();

export function encodeTraceRecord(record: TraceRecord): Uint8Array {
  if (record.kind === 'header') {
    return encoder.encode({ k: 'h', v: record.version, tool: record.tool, target: record.target, start: record.start, card: record.card, secrets: record.secrets });
  }
  return encoder.encode({ k: 'm', t: record.t, d: record.dir, ty: record.type, r: record.readerId, p: record.payload, x: record.redacted });
}

/** The VSC message as a trace record (payload not yet redacted). */
export function messageRecord(dir: 'in' | 'out', message: VscMessage, t: number): TraceMessage {
  const wire = encodeVscMessage(message, 'be');
  const type = new DataView(wire.buffer, wire.byteOffset).getUint32(0, false);
  return { kind: 'message', t, dir, type, readerId: message.readerId, payload: wire.slice(VSC_HEADER_SIZE), redacted: false };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function num(o: Record<string, unknown>, key: string, index: number): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TraceFormatError(`record ${index}: field "${key}" is not a number`);
  return v;
}

function str(o: Record<string, unknown>, key: string, index: number): string {
  const v = o[key];
  if (typeof v !== 'string') throw new TraceFormatError(`record ${index}: field "${key}" is not a string`);
  return v;
}

function toRecord(value: unknown, index: number): TraceRecord {
  if (!isObject(value)) throw new TraceFormatError(`record ${index} is not a trace record`);
  if (value['k'] === 'h') {
    const version = num(value, 'v', index);
    if (version !== TRACE_VERSION) throw new TraceFormatError(`trace version ${version} is not supported (this tool reads version ${TRACE_VERSION})`);
    return { kind: 'header', version, tool: str(value, 'tool', index), target: str(value, 'target', index), start: num(value, 'start', index), card: str(value, 'card', index), secrets: value['secrets'] === true };
  }
  if (value['k'] === 'm') {
    const dir = value['d'];
    if (dir !== 'in' && dir !== 'out') throw new TraceFormatError(`record ${index}: direction is not "in" or "out"`);
    const payload = value['p'];
    if (!(payload instanceof Uint8Array)) throw new TraceFormatError(`record ${index}: payload is not bytes`);
    return { kind: 'message', t: num(value, 't', index), dir, type: num(value, 'ty', index), readerId: num(value, 'r', index), payload: new Uint8Array(payload), redacted: value['x'] === true };
  }
  throw new TraceFormatError(`record ${index} has an unknown kind`);
}

/** Every record of a trace file; the first must be the header. Throws TraceFormatError on bad or truncated input. */
export function decodeTrace(bytes: Uint8Array): { header: TraceHeader; messages: TraceMessage[] } {
  if (bytes.byteLength === 0) throw new TraceFormatError('the file is empty, not a trace');
  const decoder = new Decoder();
  const records: TraceRecord[] = [];
  try {
    for (const value of decoder.decodeMulti(bytes)) records.push(toRecord(value, records.length));
  } catch (e) {
    if (e instanceof TraceFormatError) throw e;
    const detail = e instanceof Error ? e.message : String(e);
    throw new TraceFormatError(`record ${records.length} is truncated or not msgpack (${detail})`);
  }
  const [header, ...rest] = records;
  if (header?.kind !== 'header') throw new TraceFormatError('the first record is not a trace header');
  const messages: TraceMessage[] = [];
  for (const r of rest) {
    if (r.kind !== 'message') throw new TraceFormatError('a second header record in the trace');
    messages.push(r);
  }
  return { header, messages };
}

export const APDU_TYPE = VscMsgType.Apdu;
export const ATR_TYPE = VscMsgType.Atr;
