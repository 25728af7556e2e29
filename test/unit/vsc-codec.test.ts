import { describe, expect, it } from 'vitest';
import {
  checkAtr,
  decodeVscMessage,
  encodeVscMessage,
  normalizeVscErrorCode,
  vscEncodedLength,
  VscStreamParser,
  type ByteOrder,
  type VscDecodeResult,
  type VscMessage,
} from '../../vsc/codec.js';
import { VSC_LIMITS, VscMsgType } from '../../vsc/constants.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const ascii = (s: string): string => [...s].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join(' ');
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};

const CAC_ATR = '3b 7a 18 00 00 73 66 74 65 20 63 64 31 34 34';
const NSS_ATR = '3b 89 00 56 43 41 52 44 5f 4e 53 53';

interface Fixture {
  readonly name: string;
  readonly message: VscMessage;
  readonly le: string;
  readonly be: string;
}

// Canonical fixtures: decode, encode and round trip give exactly these bytes in both orders.
const FIXTURES: readonly Fixture[] = [
  {
    // protocol.md §9.1: the ReaderAdd inside the SPICE message, no name.
    name: 'ReaderAdd, no name',
    message: { type: VscMsgType.ReaderAdd, readerId: 0xffffffff, name: '' },
    le: '03 00 00 00 ff ff ff ff 00 00 00 00',
    be: '00 00 00 03 ff ff ff ff 00 00 00 00',
  },
  {
    // spice-gtk's ReaderAdd from the reference capture (NOTES.md).
    name: 'ReaderAdd, spice-gtk name',
    message: { type: VscMsgType.ReaderAdd, readerId: 0xffffffff, name: 'Spice Software Smartcard' },
    le: `03 00 00 00 ff ff ff ff 18 00 00 00 ${ascii('Spice Software Smartcard')}`,
    be: `00 00 00 03 ff ff ff ff 00 00 00 18 ${ascii('Spice Software Smartcard')}`,
  },
  {
    name: 'ReaderAdd, UTF-8 name',
    message: { type: VscMsgType.ReaderAdd, readerId: 0xffffffff, name: 'Lecteur é' },
    le: `03 00 00 00 ff ff ff ff 0a 00 00 00 ${ascii('Lecteur ')} c3 a9`,
    be: `00 00 00 03 ff ff ff ff 00 00 00 0a ${ascii('Lecteur ')} c3 a9`,
  },
  {
    // protocol.md §9.1: the reply, Error SUCCESS with reader 0 in the header.
    name: 'Error SUCCESS, reader 0',
    message: { type: VscMsgType.Error, readerId: 0, code: 0, rawCode: 0 },
    le: '02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00',
    be: '00 00 00 02 00 00 00 00 00 00 00 04 00 00 00 00',
  },
  {
    name: 'Error CANNOT_ADD_MORE_READERS, undefined reader (spice-server made)',
    message: { type: VscMsgType.Error, readerId: 0xffffffff, code: 2, rawCode: 2 },
    le: '02 00 00 00 ff ff ff ff 04 00 00 00 02 00 00 00',
    be: '00 00 00 02 ff ff ff ff 00 00 00 04 00 00 00 02',
  },
  {
    name: 'Error GENERAL_ERROR (client APDU failure)',
    message: { type: VscMsgType.Error, readerId: 0, code: 1, rawCode: 1 },
    le: '02 00 00 00 00 00 00 00 04 00 00 00 01 00 00 00',
    be: '00 00 00 02 00 00 00 00 00 00 00 04 00 00 00 01',
  },
  {
    name: 'ReaderRemove',
    message: { type: VscMsgType.ReaderRemove, readerId: 0 },
    le: '04 00 00 00 00 00 00 00 00 00 00 00',
    be: '00 00 00 04 00 00 00 00 00 00 00 00',
  },
  {
    // The capture's ATR message (reference-sequence-hotplug.md).
    name: 'ATR, libcacard CAC',
    message: { type: VscMsgType.Atr, readerId: 0, atr: hex(CAC_ATR) },
    le: `05 00 00 00 00 00 00 00 0f 00 00 00 ${CAC_ATR}`,
    be: `00 00 00 05 00 00 00 00 00 00 00 0f ${CAC_ATR}`,
  },
  {
    name: 'CardRemove',
    message: { type: VscMsgType.CardRemove, readerId: 0 },
    le: '06 00 00 00 00 00 00 00 00 00 00 00',
    be: '00 00 00 06 00 00 00 00 00 00 00 00',
  },
  {
    name: 'APDU command (SELECT PIV)',
    message: { type: VscMsgType.Apdu, readerId: 0, data: hex('00 a4 04 00 05 a0 00 00 03 08') },
    le: '07 00 00 00 00 00 00 00 0a 00 00 00 00 a4 04 00 05 a0 00 00 03 08',
    be: '00 00 00 07 00 00 00 00 00 00 00 0a 00 a4 04 00 05 a0 00 00 03 08',
  },
  {
    name: 'APDU response 61 10',
    message: { type: VscMsgType.Apdu, readerId: 0, data: hex('61 10') },
    le: '07 00 00 00 00 00 00 00 02 00 00 00 61 10',
    be: '00 00 00 07 00 00 00 00 00 00 00 02 61 10',
  },
  {
    name: 'APDU, empty',
    message: { type: VscMsgType.Apdu, readerId: 0, data: new Uint8Array(0) },
    le: '07 00 00 00 00 00 00 00 00 00 00 00',
    be: '00 00 00 07 00 00 00 00 00 00 00 00',
  },
  {
    // QEMU's Init: magic bytes verbatim, version and caps in the stream's order.
    name: 'Init, version 2, caps [0]',
    message: { type: VscMsgType.Init, readerId: 0xffffffff, magic: hex('56 53 43 44'), version: 2, capabilities: [0] },
    le: '01 00 00 00 ff ff ff ff 0c 00 00 00 56 53 43 44 02 00 00 00 00 00 00 00',
    be: '00 00 00 01 ff ff ff ff 00 00 00 0c 56 53 43 44 00 00 00 02 00 00 00 00',
  },
  {
    name: 'Init, two capability words',
    message: {
      type: VscMsgType.Init,
      readerId: 0xffffffff,
      magic: hex('56 53 43 44'),
      version: 2,
      capabilities: [0x01020304, 5],
    },
    le: '01 00 00 00 ff ff ff ff 10 00 00 00 56 53 43 44 02 00 00 00 04 03 02 01 05 00 00 00',
    be: '00 00 00 01 ff ff ff ff 00 00 00 10 56 53 43 44 00 00 00 02 01 02 03 04 00 00 00 05',
  },
  {
    name: 'Flush',
    message: { type: VscMsgType.Flush, readerId: 0 },
    le: '08 00 00 00 00 00 00 00 00 00 00 00',
    be: '00 00 00 08 00 00 00 00 00 00 00 00',
  },
  {
    name: 'FlushComplete',
    message: { type: VscMsgType.FlushComplete, readerId: 0 },
    le: '09 00 00 00 00 00 00 00 00 00 00 00',
    be: '00 00 00 09 00 00 00 00 00 00 00 00',
  },
  {
    name: 'unknown type 0x10',
    message: { type: 'unknown', readerId: 7, rawType: 0x10, payload: hex('aa bb') },
    le: '10 00 00 00 07 00 00 00 02 00 00 00 aa bb',
    be: '00 00 00 10 00 00 00 07 00 00 00 02 aa bb',
  },
  {
    name: 'unknown type 0',
    message: { type: 'unknown', readerId: 0, rawType: 0, payload: new Uint8Array(0) },
    le: '00 00 00 00 00 00 00 00 00 00 00 00',
    be: '00 00 00 00 00 00 00 00 00 00 00 00',
  },
];

interface DecodeOnlyFixture {
  readonly name: string;
  readonly order: ByteOrder;
  readonly bytes: string;
  readonly message: VscMessage;
  /** What encoding the decoded message gives back (the canonical form). */
  readonly reencoded: string;
}

// Inputs that decode fine but are not what we would encode ourselves.
const DECODE_ONLY: readonly DecodeOnlyFixture[] = [
  {
    // QEMU writes the code big-endian; spice-server converts only the header.
    name: 'QEMU-made GENERAL_ERROR inside SPICE (BE code in an LE header)',
    order: 'le',
    bytes: '02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 01',
    message: { type: VscMsgType.Error, readerId: 0, code: 1, rawCode: 0x01000000 },
    reencoded: '02 00 00 00 00 00 00 00 04 00 00 00 01 00 00 00',
  },
  {
    name: 'QEMU-made CANNOT_ADD_MORE_READERS inside SPICE',
    order: 'le',
    bytes: '02 00 00 00 ff ff ff ff 04 00 00 00 00 00 00 02',
    message: { type: VscMsgType.Error, readerId: 0xffffffff, code: 2, rawCode: 0x02000000 },
    reencoded: '02 00 00 00 ff ff ff ff 04 00 00 00 02 00 00 00',
  },
  {
    name: 'LE code on the BE socket',
    order: 'be',
    bytes: '00 00 00 02 00 00 00 00 00 00 00 04 03 00 00 00',
    message: { type: VscMsgType.Error, readerId: 0, code: 3, rawCode: 0x03000000 },
    reencoded: '00 00 00 02 00 00 00 00 00 00 00 04 00 00 00 03',
  },
  {
    name: 'unrecognised non-zero code stays a failure with its raw value',
    order: 'le',
    bytes: '02 00 00 00 00 00 00 00 04 00 00 00 00 01 00 00',
    message: { type: VscMsgType.Error, readerId: 0, code: 0x100, rawCode: 0x100 },
    reencoded: '02 00 00 00 00 00 00 00 04 00 00 00 00 01 00 00',
  },
  {
    name: 'Error with extra payload bytes: first four are the code',
    order: 'le',
    bytes: '02 00 00 00 00 00 00 00 06 00 00 00 00 00 00 00 ee ee',
    message: { type: VscMsgType.Error, readerId: 0, code: 0, rawCode: 0 },
    reencoded: '02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00',
  },
  {
    name: 'CardRemove with a stray payload',
    order: 'be',
    bytes: '00 00 00 06 00 00 00 00 00 00 00 01 ff',
    message: { type: VscMsgType.CardRemove, readerId: 0 },
    reencoded: '00 00 00 06 00 00 00 00 00 00 00 00',
  },
  {
    name: 'Init with a foreign magic still decodes (the link judges it)',
    order: 'be',
    bytes: '00 00 00 01 ff ff ff ff 00 00 00 0c 00 00 00 00 00 00 00 03 00 00 00 00',
    message: { type: VscMsgType.Init, readerId: 0xffffffff, magic: hex('00 00 00 00'), version: 3, capabilities: [0] },
    reencoded: '00 00 00 01 ff ff ff ff 00 00 00 0c 00 00 00 00 00 00 00 03 00 00 00 00',
  },
];

interface ErrorFixture {
  readonly name: string;
  readonly order: ByteOrder;
  readonly bytes: string;
  readonly kind: 'short-header' | 'truncated-payload' | 'too-large' | 'bad-payload';
}

const ERRORS: readonly ErrorFixture[] = [
  { name: 'empty body', order: 'le', bytes: '', kind: 'short-header' },
  { name: '3 bytes', order: 'le', bytes: '03 00 00', kind: 'short-header' },
  { name: '11 bytes', order: 'be', bytes: '00 00 00 03 ff ff ff ff 00 00 00', kind: 'short-header' },
  { name: 'ATR announcing 15, 5 present', order: 'le', bytes: '05 00 00 00 00 00 00 00 0f 00 00 00 3b 7a 18 00 00', kind: 'truncated-payload' },
  { name: 'header only, announcing 4', order: 'be', bytes: '00 00 00 02 00 00 00 00 00 00 00 04', kind: 'truncated-payload' },
  { name: 'length 0xffffffff', order: 'le', bytes: '07 00 00 00 00 00 00 00 ff ff ff ff', kind: 'too-large' },
  { name: 'length 65537 (limit + 1)', order: 'be', bytes: '00 00 00 07 00 00 00 00 00 01 00 01', kind: 'too-large' },
  { name: 'Error with a 2-byte code', order: 'le', bytes: '02 00 00 00 00 00 00 00 02 00 00 00 00 00', kind: 'bad-payload' },
  { name: 'Error with no code', order: 'be', bytes: '00 00 00 02 00 00 00 00 00 00 00 00', kind: 'bad-payload' },
  { name: 'Init with no capability word', order: 'be', bytes: '00 00 00 01 ff ff ff ff 00 00 00 08 56 53 43 44 00 00 00 02', kind: 'bad-payload' },
  { name: 'Init with a ragged capability', order: 'le', bytes: '01 00 00 00 ff ff ff ff 0d 00 00 00 56 53 43 44 02 00 00 00 00 00 00 00 00', kind: 'bad-payload' },
];

const bytesOf = (f: Fixture, order: ByteOrder): Uint8Array => hex(order === 'le' ? f.le : f.be);

function messagesOf(results: readonly VscDecodeResult[]): VscMessage[] {
  return results.map((r) => {
    if (!r.ok) throw new Error(`unexpected decode error: ${r.error.text}`);
    return r.message;
  });
}

describe('VSC codec fixtures', () => {
  for (const order of ['le', 'be'] as const) {
    describe(`${order.toUpperCase()}`, () => {
      it.each(FIXTURES.map((f) => [f.name, f] as const))('%s: decode, encode, round trip', (_name, f) => {
        const bytes = bytesOf(f, order);
        const decoded = decodeVscMessage(bytes, order);
        expect(decoded).toEqual({ ok: true, message: f.message, trailingBytes: 0 });
        expect(encodeVscMessage(f.message, order)).toEqual(bytes);
        expect(vscEncodedLength(f.message)).toBe(bytes.length);
        if (decoded.ok) expect(encodeVscMessage(decoded.message, order)).toEqual(bytes);
      });
    });
  }

  it.each(DECODE_ONLY.map((f) => [f.name, f] as const))('%s', (_name, f) => {
    const decoded = decodeVscMessage(hex(f.bytes), f.order);
    expect(decoded).toEqual({ ok: true, message: f.message, trailingBytes: 0 });
    expect(encodeVscMessage(f.message, f.order)).toEqual(hex(f.reencoded));
  });

  it.each(ERRORS.map((f) => [f.name, f] as const))('error: %s', (_name, f) => {
    const decoded = decodeVscMessage(hex(f.bytes), f.order);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) {
      expect(decoded.error.kind).toBe(f.kind);
      expect(decoded.error.text.length).toBeGreaterThan(10);
    }
  });

  it('reports bytes after 12 + L inside a SPICE body', () => {
    const decoded = decodeVscMessage(hex('02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 aa bb'), 'le');
    expect(decoded).toEqual({
      ok: true,
      message: { type: VscMsgType.Error, readerId: 0, code: 0, rawCode: 0 },
      trailingBytes: 2,
    });
  });

  it('accepts a payload of exactly the limit, and honours a custom limit', () => {
    const max = VSC_LIMITS.maxInboundPayloadSize;
    const big = encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: new Uint8Array(max) }, 'le');
    expect(decodeVscMessage(big, 'le').ok).toBe(true);
    const small = decodeVscMessage(big, 'le', { maxPayloadSize: 100 });
    expect(small.ok === false && small.error.kind).toBe('too-large');
  });

  it('decodes byte fields as views of the body (no copy)', () => {
    const body = bytesOf(FIXTURES.find((f) => f.name.startsWith('ATR'))!, 'le');
    const decoded = decodeVscMessage(body, 'le');
    expect(decoded.ok && decoded.message.type === VscMsgType.Atr && decoded.message.atr.buffer).toBe(body.buffer);
  });
});

describe('normalizeVscErrorCode', () => {
  it.each([
    [0, 0],
    [1, 1],
    [2, 2],
    [3, 3],
    [0x01000000, 1],
    [0x02000000, 2],
    [0x03000000, 3],
    [4, 4],
    [0x04000000, 0x04000000],
    [0xffffffff, 0xffffffff],
  ])('%i -> %i', (raw, code) => {
    expect(normalizeVscErrorCode(raw)).toBe(code);
  });
});

describe('encodeVscMessage refuses what cannot go on the wire', () => {
  const magic = hex('56 53 43 44');
  it.each<[string, VscMessage]>([
    ['Init without capabilities', { type: VscMsgType.Init, readerId: 0, magic, version: 2, capabilities: [] }],
    ['Init with a 3-byte magic', { type: VscMsgType.Init, readerId: 0, magic: hex('56 53 43'), version: 2, capabilities: [0] }],
    ['negative reader id', { type: VscMsgType.CardRemove, readerId: -1 }],
    ['reader id above u32', { type: VscMsgType.CardRemove, readerId: 2 ** 32 }],
    ['fractional error code', { type: VscMsgType.Error, readerId: 0, code: 1.5 }],
    ['unknown type above u32', { type: 'unknown', readerId: 0, rawType: 2 ** 32, payload: new Uint8Array(0) }],
  ])('%s', (_name, msg) => {
    expect(() => encodeVscMessage(msg, 'le')).toThrow(RangeError);
  });
});

describe('checkAtr (QEMU ccid-card-passthru rules)', () => {
  it.each([
    ['libcacard CAC ATR', CAC_ATR],
    ['libcacard NSS ATR (TD1 quirk)', NSS_ATR],
    ['minimal 3b 00', '3b 00'],
    ['inverse convention 3f 00', '3f 00'],
    ['TD1 announced but absent: QEMU lets it through', '3b 80'],
    ['longer than announced is accepted', '3b 00 ff ff'],
    ['TD walk that would read past the end cannot change the result', '3b f0 11 22 33 44'],
    ['40 bytes', `3b 0f ${'00 '.repeat(15)}${'00 '.repeat(23)}`],
  ])('accepts %s', (_name, atr) => {
    expect(checkAtr(hex(atr))).toEqual({ ok: true });
  });

  it.each([
    ['empty', ''],
    ['one byte', '3b'],
    ['41 bytes', `3b 0f ${'00 '.repeat(39)}`],
    ['TS 3c', '3c 00'],
    ['TS 00', '00 00'],
    ['historical bytes missing', '3b 05 01'],
    ['K = 15 in 4 bytes', '3b 8f 80 01'],
    ['interface bytes missing', '3b f0 11 22'],
  ])('refuses %s', (_name, atr) => {
    const result = checkAtr(hex(atr));
    expect(result.ok).toBe(false);
  });
});

describe('VscStreamParser', () => {
  for (const order of ['le', 'be'] as const) {
    const stream = concat(...FIXTURES.map((f) => bytesOf(f, order)));
    const expected = FIXTURES.map((f) => f.message);

    it(`${order}: whole stream in one chunk`, () => {
      const parser = new VscStreamParser(order);
      expect(messagesOf(parser.push(stream))).toEqual(expected);
      expect(parser.bufferedBytes).toBe(0);
    });

    it(`${order}: stream split at every offset`, () => {
      for (let cut = 0; cut <= stream.length; cut++) {
        const parser = new VscStreamParser(order);
        const got = [...parser.push(stream.subarray(0, cut)), ...parser.push(stream.subarray(cut))];
        expect(messagesOf(got)).toEqual(expected);
        expect(parser.bufferedBytes).toBe(0);
      }
    });

    it(`${order}: every fixture split at every pair of offsets`, () => {
      for (const f of FIXTURES) {
        const bytes = bytesOf(f, order);
        for (let a = 0; a <= bytes.length; a++) {
          for (let b = a; b <= bytes.length; b++) {
            const parser = new VscStreamParser(order);
            const got = [
              ...parser.push(bytes.subarray(0, a)),
              ...parser.push(bytes.subarray(a, b)),
              ...parser.push(bytes.subarray(b)),
            ];
            expect(messagesOf(got)).toEqual([f.message]);
          }
        }
      }
    });

    it(`${order}: byte by byte`, () => {
      const parser = new VscStreamParser(order);
      const got: VscDecodeResult[] = [];
      for (let i = 0; i < stream.length; i++) got.push(...parser.push(stream.subarray(i, i + 1)));
      expect(messagesOf(got)).toEqual(expected);
    });
  }

  it('copies nothing for a message inside one chunk', () => {
    const chunk = bytesOf(FIXTURES.find((f) => f.name.startsWith('APDU command'))!, 'be');
    const [result] = new VscStreamParser('be').push(chunk);
    expect(result?.ok && result.message.type === VscMsgType.Apdu && result.message.data.buffer).toBe(chunk.buffer);
  });

  it('keeps earlier views intact while later chunks are appended', () => {
    const a = encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: hex('01 02 03') }, 'be');
    const b = encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: hex('04 05 06 07') }, 'be');
    const parser = new VscStreamParser('be');
    const stream = concat(a, b, a);
    const got: VscDecodeResult[] = [];
    for (let i = 0; i < stream.length; i += 5) got.push(...parser.push(stream.slice(i, i + 5)));
    const data = messagesOf(got).map((m) => (m.type === VscMsgType.Apdu ? [...m.data] : []));
    expect(data).toEqual([[1, 2, 3], [4, 5, 6, 7], [1, 2, 3]]);
  });

  it('reassembles a 64 KiB command fed byte by byte', () => {
    const data = Uint8Array.from({ length: VSC_LIMITS.maxInboundPayloadSize }, (_, i) => i & 0xff);
    const bytes = encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data }, 'be');
    const parser = new VscStreamParser('be');
    const got: VscDecodeResult[] = [];
    for (let i = 0; i < bytes.length; i++) got.push(...parser.push(bytes.subarray(i, i + 1)));
    expect(messagesOf(got)).toEqual([{ type: VscMsgType.Apdu, readerId: 0, data }]);
  });

  it('reports an oversized header once, as soon as the header is complete, then stays dead', () => {
    const parser = new VscStreamParser('be');
    const good = bytesOf(FIXTURES[0]!, 'be');
    const huge = hex('00 00 00 07 00 00 00 00 ff ff ff ff');
    const stream = concat(good, huge, good);
    const got: VscDecodeResult[] = [];
    let reportedAt = -1;
    for (let i = 0; i < stream.length; i++) {
      const results = parser.push(stream.subarray(i, i + 1));
      if (results.some((r) => !r.ok)) reportedAt = i;
      got.push(...results);
    }
    expect(reportedAt).toBe(good.length + 11);
    expect(got.map((r) => (r.ok ? 'ok' : r.error.kind))).toEqual(['ok', 'too-large']);
    expect(parser.dead).toBe(true);
    expect(parser.push(good)).toEqual([]);
    expect(parser.bufferedBytes).toBe(0);
  });

  it('survives a bad payload: the framing is intact', () => {
    const bad = hex('00 00 00 02 00 00 00 00 00 00 00 02 00 00');
    const good = bytesOf(FIXTURES[0]!, 'be');
    const got = new VscStreamParser('be').push(concat(good, bad, good));
    expect(got.map((r) => (r.ok ? 'ok' : r.error.kind))).toEqual(['ok', 'bad-payload', 'ok']);
  });

  it('honours a custom limit', () => {
    const parser = new VscStreamParser('le', { maxPayloadSize: 4 });
    const got = parser.push(hex('07 00 00 00 00 00 00 00 05 00 00 00'));
    expect(got.map((r) => (r.ok ? 'ok' : r.error.kind))).toEqual(['too-large']);
  });
});

describe('random input', () => {
  // xorshift32: deterministic, so a failure can be replayed.
  function rng(seed: number): () => number {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x;
    };
  }

  function randomInput(next: () => number, order: ByteOrder): Uint8Array {
    const pureNoise = next() % 3 === 0;
    if (pureNoise) return Uint8Array.from({ length: next() % 40 }, () => next() & 0xff);
    // Plausible headers reach the payload decoders, not just the length check.
    const length = next() % 24;
    const header = new Uint8Array(12);
    const view = new DataView(header.buffer);
    view.setUint32(0, next() % 11, order === 'le');
    view.setUint32(4, next() % 2 === 0 ? 0 : next(), order === 'le');
    view.setUint32(8, next() % 5 === 0 ? next() : length, order === 'le');
    // One byte short, exact, or one extra: truncations and trailing bytes both show up.
    const payloadLength = Math.max(0, length + (next() % 3) - 1);
    const payload = Uint8Array.from({ length: payloadLength }, () => next() & 0xff);
    return concat(header, payload);
  }

  const KINDS = new Set(['short-header', 'truncated-payload', 'too-large', 'bad-payload']);

  it('decodeVscMessage never throws and always returns a typed result', () => {
    const next = rng(0x5eed);
    for (let i = 0; i < 20_000; i++) {
      const order: ByteOrder = i % 2 === 0 ? 'le' : 'be';
      const result = decodeVscMessage(randomInput(next, order), order);
      if (result.ok) expect(result.trailingBytes).toBeGreaterThanOrEqual(0);
      else expect(KINDS.has(result.error.kind)).toBe(true);
    }
  });

  it('VscStreamParser never throws on random chunks', () => {
    const next = rng(0xc0ffee);
    for (let round = 0; round < 500; round++) {
      const order: ByteOrder = round % 2 === 0 ? 'le' : 'be';
      const parser = new VscStreamParser(order);
      let errors = 0;
      for (let i = 0; i < 20; i++) {
        const input = randomInput(next, order);
        const cut = input.length === 0 ? 0 : next() % input.length;
        for (const part of [input.subarray(0, cut), input.subarray(cut)]) {
          for (const result of parser.push(part)) {
            if (!result.ok) {
              expect(KINDS.has(result.error.kind)).toBe(true);
              if (result.error.kind === 'too-large') errors += 1;
            }
          }
        }
      }
      expect(errors).toBeLessThanOrEqual(1);
    }
  });
});
