// The main-channel sniffer finds INIT's session id and the channel lists in the server→viewer
// stream however it is cut, with mini or full headers, and skips big bodies without keeping them.
import { describe, expect, it } from 'vitest';
import { concatBytes } from '../../spice/bytes.js';
import { encodeFrame } from '../../spice/frame-parser.js';
import { encodeChannelsList, encodeMainInit, encodePing } from '../../spice/messages.js';
import { MainStreamSniffer, type SniffEvent } from '../../src/proxy/main-sniffer.js';

const SESSION = 0x9e3779b9;
const init = encodeMainInit({ sessionId: SESSION, displayChannelsHint: 1, supportedMouseModes: 3, currentMouseMode: 2, agentConnected: 0, agentTokens: 10, multiMediaTime: 1234, ramHint: 0 });
const list = encodeChannelsList([{ type: 8, id: 0 }, { type: 2, id: 0 }, { type: 4, id: 0 }, { type: 3, id: 0 }]);
const name = Uint8Array.of(4, 0, 0, 0, 0x76, 0x6d, 0x31, 0);

function stream(mini: boolean, pingPadding: number): Uint8Array {
  let serial = 0n;
  const frame = (type: number, body: Uint8Array): Uint8Array =>
    mini ? encodeFrame(type, body, { miniHeader: true }) : encodeFrame(type, body, { miniHeader: false, serial: ++serial });
  return concatBytes([
    frame(103, init),
    frame(113, name),
    frame(4, encodePing({ id: 1, timestamp: 1n })),
    frame(4, encodePing({ id: 3, timestamp: 3n }, pingPadding)),
    frame(104, list),
    frame(104, encodeChannelsList([{ type: 9, id: 0 }])),
  ]);
}

const expected: SniffEvent[] = [
  { kind: 'init', sessionId: SESSION },
  { kind: 'channels', channels: [{ type: 8, id: 0 }, { type: 2, id: 0 }, { type: 4, id: 0 }, { type: 3, id: 0 }] },
  { kind: 'channels', channels: [{ type: 9, id: 0 }] },
];

function sniff(mini: boolean, chunks: Uint8Array[]): SniffEvent[] {
  const s = new MainStreamSniffer({ miniHeader: mini });
  return chunks.flatMap((c) => s.push(c));
}

describe('MainStreamSniffer', () => {
  for (const mini of [true, false]) {
    const label = mini ? 'mini header' : 'full header';

    it(`${label}: finds INIT and the channel lists split at every offset`, () => {
      const bytes = stream(mini, 40);
      for (let at = 0; at <= bytes.byteLength; at++) {
        expect(sniff(mini, [bytes.subarray(0, at), bytes.subarray(at)]), `split at ${at}`).toEqual(expected);
      }
    });

    it(`${label}: byte by byte, and all at once`, () => {
      const bytes = stream(mini, 40);
      const single: Uint8Array[] = [];
      for (let i = 0; i < bytes.byteLength; i++) single.push(bytes.subarray(i, i + 1));
      expect(sniff(mini, single)).toEqual(expected);
      expect(sniff(mini, [bytes])).toEqual(expected);
    });

    it(`${label}: skips the 256 000-byte net-test PING in odd-sized pieces`, () => {
      const bytes = stream(mini, 256_000);
      const chunks: Uint8Array[] = [];
      for (let at = 0, n = 1; at < bytes.byteLength; at += n, n = (n * 7 + 3) % 9001 + 1) chunks.push(bytes.subarray(at, at + n));
      const s = new MainStreamSniffer({ miniHeader: mini });
      expect(chunks.flatMap((c) => s.push(c))).toEqual(expected);
      expect(s.seen).toBe(bytes.byteLength);
      expect(s.following).toBe(true);
    });
  }

  it('reads a session id that arrives in the very chunk after the link result', () => {
    const s = new MainStreamSniffer({ miniHeader: true });
    expect(s.push(encodeFrame(103, init, { miniHeader: true }))).toEqual([{ kind: 'init', sessionId: SESSION }]);
  });

  it('gives up (without throwing) on a stream it cannot follow, and stays quiet afterwards', () => {
    const s = new MainStreamSniffer({ miniHeader: true });
    const huge = Uint8Array.of(0x09, 0x00, 0xff, 0xff, 0xff, 0x7f);
    expect(s.push(huge)).toEqual([{ kind: 'lost', reason: expect.stringMatching(/limit/) as unknown as string }]);
    expect(s.push(encodeFrame(103, init, { miniHeader: true }))).toEqual([]);
    expect(s.following).toBe(false);
  });

  it('ignores a short INIT rather than inventing a session', () => {
    const s = new MainStreamSniffer({ miniHeader: true });
    expect(s.push(encodeFrame(103, init.subarray(0, 8), { miniHeader: true }))).toEqual([]);
  });
});
