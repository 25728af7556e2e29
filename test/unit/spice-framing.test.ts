import { describe, expect, it } from 'vitest';
import { concatBytes, fromHex, toHex } from '../../spice/bytes.js';
import { ChannelCore, type ChannelEvent } from '../../spice/channel-core.js';
import { FrameError, FrameParser, encodeFrame, type Frame } from '../../spice/frame-parser.js';
import {
  decodeChannelsList,
  decodeMainInit,
  decodeNotify,
  decodeSwitchHost,
  encodeChannelsList,
  encodeMainInit,
  encodeNotify,
  encodePing,
} from '../../spice/messages.js';

function parseAll(parser: FrameParser, input: Uint8Array, splits: number[]): Frame[] {
  const out: Frame[] = [];
  let at = 0;
  for (const end of [...splits, input.byteLength]) {
    // Copy the frames' bodies: views stay valid, but the test compares after further pushes.
    for (const f of parser.push(input.subarray(at, end))) out.push({ ...f, body: f.body.slice() });
    at = end;
  }
  return out;
}

const mini = (type: number, body: string): Uint8Array => encodeFrame(type, fromHex(body), { miniHeader: true });

describe('frame encoding', () => {
  it.each([
    ['mini PONG', encodeFrame(3, fromHex('01 00 00 00 02 00 00 00 00 00 00 00'), { miniHeader: true }), '03 00 0c 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00'],
    ['mini empty ATTACH_CHANNELS', encodeFrame(104, new Uint8Array(0), { miniHeader: true }), '68 00 00 00 00 00'],
    ['full header serial 1', encodeFrame(104, new Uint8Array(0), { miniHeader: false, serial: 1n }), '01 00 00 00 00 00 00 00 68 00 00 00 00 00 00 00 00 00'],
  ])('%s', (_name, bytes, hex) => {
    expect(toHex(bytes)).toBe(hex);
  });
});

describe('FrameParser', () => {
  const stream = concatBytes([
    mini(103, '01 02 03 04'),
    mini(2, ''),
    mini(104, '02 00 00 00 08 00 01 00'),
    encodeFrame(4, encodePing({ id: 7, timestamp: 9n }, 300), { miniHeader: true }),
    mini(7, 'aa'),
  ]);

  const expected = (frames: Frame[]): string[] => frames.map((f) => `${f.type}/${f.size}:${toHex(f.body, '')}`);
  const reference = expected(new FrameParser({ miniHeader: true }).push(stream));

  it('parses a stream of mini-header messages', () => {
    expect(reference).toHaveLength(5);
    expect(reference[0]).toBe('103/4:01020304');
    expect(reference[1]).toBe('2/0:');
  });

  it('gives the same messages with the input split at every offset', () => {
    for (let i = 0; i <= stream.byteLength; i++) {
      expect(expected(parseAll(new FrameParser({ miniHeader: true }), stream, [i])), `split ${i}`).toEqual(reference);
    }
  });

  it('gives the same messages split at every pair of offsets', () => {
    for (let i = 0; i <= stream.byteLength; i += 7) {
      for (let j = i; j <= stream.byteLength; j += 3) {
        expect(expected(parseAll(new FrameParser({ miniHeader: true }), stream, [i, j]))).toEqual(reference);
      }
    }
  });

  it('gives the same messages byte by byte', () => {
    const splits = Array.from({ length: stream.byteLength }, (_, i) => i);
    expect(expected(parseAll(new FrameParser({ miniHeader: true }), stream, splits))).toEqual(reference);
  });

  it('keeps only the retained prefix of a body, however it is split', () => {
    const big = encodeFrame(4, encodePing({ id: 1, timestamp: 2n }, 256_000), { miniHeader: true });
    for (const split of [0, 3, 6, 10, 18, 1000, big.byteLength - 1]) {
      const p = new FrameParser({ miniHeader: true, retainBytes: (t, size) => (t === 4 ? 12 : size) });
      const frames = parseAll(p, big, [split]);
      expect(frames).toHaveLength(1);
      expect(frames[0]!.size).toBe(256_012);
      expect(toHex(frames[0]!.body)).toBe('01 00 00 00 02 00 00 00 00 00 00 00');
    }
  });

  it('parses full headers with serials', () => {
    const s = concatBytes([
      encodeFrame(103, fromHex('aa bb'), { miniHeader: false, serial: 1n }),
      encodeFrame(4, fromHex('00'.repeat(12)), { miniHeader: false, serial: 2n }),
    ]);
    for (let i = 0; i <= s.byteLength; i++) {
      const frames = parseAll(new FrameParser({ miniHeader: false }), s, [i]);
      expect(frames.map((f) => [f.serial, f.type, f.size])).toEqual([
        [1n, 103, 2],
        [2n, 4, 12],
      ]);
    }
  });

  it('refuses a message above the limit, and stays broken', () => {
    const p = new FrameParser({ miniHeader: true, maxMessageSize: 1000 });
    expect(() => p.push(fromHex('65 00 e9 03 00 00'))).toThrow(FrameError);
    expect(() => p.push(fromHex('00'))).toThrow(/1001 bytes/);
  });

  it('knows whether it stopped between messages', () => {
    const p = new FrameParser({ miniHeader: true });
    p.push(mini(101, '01 02'));
    expect(p.atBoundary).toBe(true);
    p.push(fromHex('65 00 05'));
    expect(p.atBoundary).toBe(false);
  });

  it('survives random input: only FrameError, never anything else', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 2000; round++) {
      const p = new FrameParser({ miniHeader: rand() % 2 === 0, maxMessageSize: 4096 });
      const bytes = Uint8Array.from({ length: rand() % 200 }, () => rand() & 0xff);
      try {
        parseAll(p, bytes, [rand() % (bytes.byteLength + 1)].sort((a, b) => a - b));
      } catch (e) {
        expect(e).toBeInstanceOf(FrameError);
      }
    }
  });
});

describe('ChannelCore', () => {
  function core(miniHeader = true): { c: ChannelCore; sent: Uint8Array[] } {
    const sent: Uint8Array[] = [];
    return { c: new ChannelCore({ miniHeader, send: (b) => sent.push(b) }), sent };
  }

  it('answers PING with PONG carrying id and timestamp but not the padding', () => {
    const { c, sent } = core();
    const ping = encodeFrame(4, encodePing({ id: 3, timestamp: 0x0102030405060708n }, 256_000), { miniHeader: true });
    expect(c.receive(ping)).toEqual([]);
    expect(sent.map((b) => toHex(b))).toEqual(['03 00 0c 00 00 00 03 00 00 00 08 07 06 05 04 03 02 01']);
    expect(c.pingsAnswered).toBe(1);
  });

  it('keeps the ACK window: ACK_SYNC on SET_ACK, then an ACK every `window` messages', () => {
    const { c, sent } = core();
    c.receive(mini(3, '05 00 00 00 02 00 00 00'));
    expect(toHex(sent[0]!)).toBe('01 00 04 00 00 00 05 00 00 00');
    c.receive(concatBytes([mini(101, ''), mini(101, ''), mini(101, '')]));
    expect(sent.slice(1).map((b) => toHex(b))).toEqual(['02 00 00 00 00 00']);
    c.receive(mini(101, ''));
    expect(sent).toHaveLength(3);
  });

  it('numbers outgoing messages with the full header', () => {
    const { c, sent } = core(false);
    c.send(104);
    c.send(104);
    expect(sent.map((b) => toHex(b.subarray(0, 8)))).toEqual(['01 00 00 00 00 00 00 00', '02 00 00 00 00 00 00 00']);
  });

  it('surfaces NOTIFY, DISCONNECTING, channel messages, and ignores the rest with a reason', () => {
    const { c } = core();
    const notify = encodeNotify({ timestamp: 1n, severity: 1, visibility: 2, what: 0, message: 'hello' });
    const events: ChannelEvent[] = c.receive(
      concatBytes([
        encodeFrame(7, notify, { miniHeader: true }),
        mini(6, '00 00 00 00 00 00 00 00 07 00 00 00'),
        mini(101, 'ab'),
        mini(5, '00'),
        mini(55, ''),
        mini(4, '01'),
      ]),
    );
    expect(events.map((e) => e.kind)).toEqual(['notify', 'disconnecting', 'message', 'ignored', 'ignored', 'ignored']);
    expect(events[0]).toMatchObject({ kind: 'notify', notify: { message: 'hello', severity: 1 } });
    expect(events[1]).toEqual({ kind: 'disconnecting', reason: 7 });
  });
});

describe('main channel messages', () => {
  it('round-trips INIT and CHANNELS_LIST', () => {
    const init = { sessionId: 0xdeadbeef, displayChannelsHint: 1, supportedMouseModes: 3, currentMouseMode: 1, agentConnected: 0, agentTokens: 10, multiMediaTime: 5, ramHint: 0 };
    expect(decodeMainInit(encodeMainInit(init))).toEqual(init);
    const list = [{ type: 8, id: 0 }, { type: 2, id: 0 }];
    expect(toHex(encodeChannelsList(list))).toBe('02 00 00 00 08 00 02 00');
    expect(decodeChannelsList(encodeChannelsList(list))).toEqual(list);
  });

  it('rejects lists whose count runs past the body', () => {
    expect(decodeChannelsList(fromHex('05 00 00 00 08 00'))).toBeUndefined();
    expect(decodeChannelsList(fromHex('ff ff ff ff'))).toBeUndefined();
    expect(decodeMainInit(fromHex('00'))).toBeUndefined();
  });

  it('decodes NOTIFY text up to its length or NUL', () => {
    const n = encodeNotify({ timestamp: 0n, severity: 2, visibility: 0, what: 3, message: 'disk full' });
    expect(decodeNotify(n)?.message).toBe('disk full');
    const lying = n.slice();
    new DataView(lying.buffer).setUint32(20, 1_000_000, true);
    expect(decodeNotify(lying)?.message).toBe('disk full');
  });

  it('decodes MIGRATE_SWITCH_HOST', () => {
    const host = Buffer.from('newhost\0');
    const subj = Buffer.from('CN=x\0');
    const body = new Uint8Array(20 + host.length + subj.length);
    const dv = new DataView(body.buffer);
    dv.setUint16(0, 5900, true);
    dv.setUint16(2, 5901, true);
    dv.setUint32(4, host.length, true);
    dv.setUint32(8, 20, true);
    dv.setUint32(12, subj.length, true);
    dv.setUint32(16, 20 + host.length, true);
    body.set(host, 20);
    body.set(subj, 20 + host.length);
    expect(decodeSwitchHost(body)).toEqual({ port: 5900, tlsPort: 5901, host: 'newhost', certSubject: 'CN=x' });
    dv.setUint32(8, 9999, true);
    expect(decodeSwitchHost(body)).toBeUndefined();
  });
});
