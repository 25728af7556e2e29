// A trace decoded for people: time offset, direction, VSC type, and for APDUs the command name,
// the status word's meaning and the TLV tags of the data.
import { VscMsgType, vscTypeName } from '../../vsc/constants.js';
import { describeStatusWord } from '../../vsc/iso7816/status-words.js';
import { decodeTlvList, type Tlv } from '../../vsc/iso7816/tlv.js';
import { commandDataRange } from './redaction.js';
import type { TraceHeader, TraceMessage } from './trace-format.js';

const INS_NAMES: Record<number, string> = {
  0x0e: 'ERASE BINARY',
  0x20: 'VERIFY',
  0x22: 'MANAGE SECURITY ENVIRONMENT',
  0x24: 'CHANGE REFERENCE DATA',
  0x2a: 'PERFORM SECURITY OPERATION',
  0x2c: 'RESET RETRY COUNTER',
  0x44: 'ACTIVATE FILE',
  0x47: 'GENERATE ASYMMETRIC KEY PAIR',
  0x70: 'MANAGE CHANNEL',
  0x84: 'GET CHALLENGE',
  0x87: 'GENERAL AUTHENTICATE',
  0x88: 'INTERNAL AUTHENTICATE',
  0xa4: 'SELECT',
  0xb0: 'READ BINARY',
  0xb2: 'READ RECORD',
  0xc0: 'GET RESPONSE',
  0xca: 'GET DATA',
  0xcb: 'GET DATA',
  0xd6: 'UPDATE BINARY',
  0xda: 'PUT DATA',
  0xdb: 'PUT DATA',
  0xfd: 'GET VERSION (YubiKey)',
  0xf8: 'GET SERIAL (YubiKey)',
};

export function insName(ins: number): string {
  return INS_NAMES[ins] ?? `INS ${ins.toString(16).toUpperCase().padStart(2, '0')}`;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function tlvSummary(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength === 0) return undefined;
  let list: Tlv[];
  try {
    list = decodeTlvList(bytes, 64);
  } catch {
    return undefined;
  }
  return list.map((t) => `${t.tag.toString(16).toUpperCase()}(${t.value.byteLength})`).join(' ');
}

export interface ShownRecord {
  t: number;
  dir: 'in' | 'out';
  type: string;
  readerId: number;
  redacted: boolean;
  hex: string;
  command?: string;
  status?: string;
  tlv?: string;
}

/** One record as fields; APDU commands ('in') are named, responses ('out') get their status word. */
export function describeRecord(m: TraceMessage): ShownRecord {
  const shown: ShownRecord = { t: m.t, dir: m.dir, type: vscTypeName(m.type), readerId: m.readerId, redacted: m.redacted, hex: hex(m.payload) };
  if (m.type !== VscMsgType.Apdu) return shown;
  if (m.dir === 'in' && m.payload.byteLength >= 4) {
    shown.command = insName(m.payload[1]!);
    const range = commandDataRange(m.payload);
    const tlv = range !== undefined && !m.redacted ? tlvSummary(m.payload.subarray(range.offset, range.offset + range.length)) : undefined;
    if (tlv !== undefined) shown.tlv = tlv;
  } else if (m.dir === 'out' && m.payload.byteLength >= 2) {
    const n = m.payload.byteLength;
    shown.status = describeStatusWord((m.payload[n - 2]! << 8) | m.payload[n - 1]!);
    const tlv = m.redacted ? undefined : tlvSummary(m.payload.subarray(0, n - 2));
    if (tlv !== undefined) shown.tlv = tlv;
  }
  return shown;
}

export function formatHeader(h: TraceHeader): string {
  return `trace v${h.version} by spice-smartcard ${h.tool}: ${h.card} → ${h.target}, started ${new Date(h.start).toISOString()}${h.secrets ? ' (holds PINs and key material)' : ''}`;
}

export function formatRecord(r: ShownRecord): string {
  const time = `+${(r.t / 1000).toFixed(3)}s`.padStart(10);
  const dir = r.dir === 'in' ? 'VM→card' : 'card→VM';
  const parts = [time, dir, r.type.padEnd(13), `reader ${r.readerId}`];
  if (r.command !== undefined) parts.push(r.command);
  if (r.status !== undefined) parts.push(r.status);
  let line = parts.join('  ');
  if (r.tlv !== undefined) line += `  tlv ${r.tlv}`;
  if (r.redacted) line += '  [REDACTED]';
  const data = r.hex.length > 64 ? `${r.hex.slice(0, 64)}… (${r.hex.length / 2} bytes)` : r.hex;
  if (data !== '') line += `\n            ${data}`;
  return line;
}
