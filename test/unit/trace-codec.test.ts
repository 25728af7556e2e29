import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';
import { Redactor, redactCommand } from '../../src/trace/redaction.js';
import { TRACE_VERSION, TraceFormatError, decodeTrace, encodeTraceRecord, type TraceRecord } from '../../src/trace/trace-format.js';
import { TraceRecorder } from '../../src/trace/trace-recorder.js';

const apdu = (readerId: number, ...bytes: number[]): VscMessage => ({ type: VscMsgType.Apdu, readerId, data: Uint8Array.from(bytes) });
const PIN = [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0xff, 0xff];
const VERIFY = [0x00, 0x20, 0x00, 0x80, 0x08, ...PIN];

function contains(hay: Uint8Array, needle: readonly number[]): boolean {
  return Buffer.from(hay).includes(Buffer.from(needle));
}

function tmpFile(): string {
  return join(mkdtempSync(join(tmpdir(), 'trace-')), 'session.trace');
}

function record(path: string, secrets: boolean, messages: [dir: 'in' | 'out', m: VscMessage][]): void {
  let t = 1000;
  const r = new TraceRecorder({ path, tool: '9.9.9', target: '127.0.0.1 (port 5900)', card: 'test card', secrets, now: () => (t += 5) });
  for (const [dir, m] of messages) r.record(dir, m);
  r.close();
}

describe('trace records', () => {
  it('round-trip: header and messages come back as written', () => {
    const records: TraceRecord[] = [
      { kind: 'header', version: TRACE_VERSION, tool: '0.1.0', target: 'x', start: 1_700_000_000_000, card: 'c', secrets: false },
      { kind: 'message', t: 12, dir: 'out', type: VscMsgType.Atr, readerId: 0, payload: Uint8Array.of(0x3b, 0x00), redacted: false },
      { kind: 'message', t: 15, dir: 'in', type: VscMsgType.Apdu, readerId: 0, payload: Uint8Array.of(0, 0xa4, 4, 0), redacted: true },
    ];
    const bytes = Buffer.concat(records.map((r) => encodeTraceRecord(r)));
    const decoded = decodeTrace(bytes);
    expect(decoded.header).toEqual(records[0]);
    expect(decoded.messages).toEqual(records.slice(1));
  });

  it('a truncated file, at every cut, is a TraceFormatError (never a crash, never a partial success)', () => {
    const path = tmpFile();
    record(path, false, [['in', apdu(0, 0, 0xa4, 4, 0, 2, 0xaa, 0xbb)], ['out', apdu(0, 0x90, 0)]]);
    const bytes = readFileSync(path);
    for (let cut = 0; cut < bytes.length; cut++) {
      let result: unknown;
      try {
        result = decodeTrace(bytes.subarray(0, cut));
      } catch (e) {
        expect(e).toBeInstanceOf(TraceFormatError);
        continue;
      }
      // A cut exactly between two records leaves a shorter valid trace.
      expect((result as ReturnType<typeof decodeTrace>).messages.length).toBeLessThan(2);
    }
    expect(() => decodeTrace(Uint8Array.of(0x93, 1, 2, 3))).toThrow(/record 0 is not a trace record/);
    expect(() => decodeTrace(Uint8Array.of(0xc1))).toThrow(TraceFormatError);
  });

  it('the file is mode 0600 and the header has no secrets', () => {
    const path = tmpFile();
    record(path, false, []);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const { header } = decodeTrace(readFileSync(path));
    expect(header).toMatchObject({ version: TRACE_VERSION, tool: '9.9.9', target: '127.0.0.1 (port 5900)', card: 'test card', secrets: false });
  });
});

describe('redaction', () => {
  it.each([
    ['VERIFY', 0x20],
    ['CHANGE REFERENCE DATA', 0x24],
    ['RESET RETRY COUNTER', 0x2c],
    ['GENERAL AUTHENTICATE', 0x87],
  ])('%s data becomes FF of the same length, the header stays', (_name, ins) => {
    const cmd = Uint8Array.of(0x00, ins, 0x00, 0x80, 0x08, ...PIN);
    const out = new Redactor().command(cmd);
    expect(out.redacted).toBe(true);
    expect([...out.bytes]).toEqual([0x00, ins, 0x00, 0x80, 0x08, ...Array<number>(8).fill(0xff)]);
  });

  it('other commands, and a VERIFY without data (a retry query), are kept', () => {
    const r = new Redactor();
    expect(r.command(Uint8Array.of(0, 0xa4, 4, 0, 2, 0xaa, 0xbb)).redacted).toBe(false);
    expect(r.command(Uint8Array.of(0, 0x20, 0, 0x80)).redacted).toBe(false);
  });

  it('extended-length data is found and redacted', () => {
    expect([...redactCommand(Uint8Array.of(0, 0x87, 7, 0x9a, 0, 0, 3, 1, 2, 3, 0, 0))]).toEqual([0, 0x87, 7, 0x9a, 0, 0, 3, 0xff, 0xff, 0xff, 0, 0]);
  });

  it('the GENERAL AUTHENTICATE answer and its GET RESPONSE chain are redacted, SW kept; the next answer is not', () => {
    const r = new Redactor();
    r.command(Uint8Array.of(0, 0x87, 7, 0x9a, 2, 0x7c, 0));
    expect(r.response(Uint8Array.of(0xaa, 0xbb, 0x61, 0x10))).toEqual({ bytes: Uint8Array.of(0xff, 0xff, 0x61, 0x10), redacted: true });
    r.command(Uint8Array.of(0, 0xc0, 0, 0, 0x10));
    expect(r.response(Uint8Array.of(0xcc, 0x90, 0x00))).toEqual({ bytes: Uint8Array.of(0xff, 0x90, 0x00), redacted: true });
    r.command(Uint8Array.of(0, 0xca, 0x3f, 0xff, 5, 0x5c, 3, 0x5f, 0xc1, 2));
    expect(r.response(Uint8Array.of(0x53, 0x00, 0x90, 0x00)).redacted).toBe(false);
  });

  it('by default the PIN bytes never reach the file; with secrets they do', () => {
    const plain = tmpFile();
    record(plain, false, [['in', apdu(0, ...VERIFY)], ['out', apdu(0, 0x90, 0)]]);
    const bytes = readFileSync(plain);
    expect(contains(bytes, PIN.slice(0, 6))).toBe(false);
    const [m] = decodeTrace(bytes).messages;
    expect(m?.redacted).toBe(true);

    const secret = tmpFile();
    record(secret, true, [['in', apdu(0, ...VERIFY)]]);
    expect(contains(readFileSync(secret), PIN.slice(0, 6))).toBe(true);
  });
});
