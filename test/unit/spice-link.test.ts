import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex, concatBytes } from '../../spice/bytes.js';
import { LinkError } from '../../spice/constants.js';
import {
  capsWords,
  decodeLinkHeader,
  decodeLinkMess,
  decodeLinkReply,
  encodeLinkMess,
  encodeLinkReply,
  hasCap,
} from '../../spice/link-codec.js';
import { LinkHandshake, type LinkProgress } from '../../spice/link-handshake.js';
import { encryptTicket, ticketPlaintext, PasswordTooLongError } from '../../spice/ticket.js';

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
const spki = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));

function decryptTicket(ticket: Uint8Array): Uint8Array {
  return new Uint8Array(privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ticket));
}

function serverReply(error = 0, commonCaps = [0x0b]): Uint8Array {
  return encodeLinkReply({ error, pubKey: error === 0 ? spki : new Uint8Array(162), commonCaps, channelCaps: [] });
}

const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

describe('link codec', () => {
  it('encodes the smartcard link message byte for byte (protocol brief §9.1)', () => {
    const bytes = encodeLinkMess({ connectionId: 0x11223344, channelType: 8, channelId: 0, commonCaps: [0x09], channelCaps: [] });
    expect(toHex(bytes)).toBe(
      '52 45 44 51 02 00 00 00 02 00 00 00 16 00 00 00 44 33 22 11 08 00 01 00 00 00 00 00 00 00 12 00 00 00 09 00 00 00',
    );
    const header = decodeLinkHeader(bytes);
    expect(header).toEqual({ magic: 0x51444552, major: 2, minor: 2, size: 22 });
    expect(decodeLinkMess(bytes.subarray(16))).toEqual({ connectionId: 0x11223344, channelType: 8, channelId: 0, commonCaps: [9], channelCaps: [] });
  });

  it('round-trips a link reply with caps', () => {
    const bytes = encodeLinkReply({ error: 0, pubKey: spki, commonCaps: [0x0b], channelCaps: [0x0f] });
    expect(decodeLinkHeader(bytes).size).toBe(186);
    const reply = decodeLinkReply(bytes.subarray(16));
    expect(reply.error).toBe(0);
    expect(toHex(reply.pubKey)).toBe(toHex(spki));
    expect(reply.commonCaps).toEqual([0x0b]);
    expect(reply.channelCaps).toEqual([0x0f]);
  });

  it('accepts a short error reply and rejects a short OK reply', () => {
    expect(decodeLinkReply(u32(7)).error).toBe(7);
    expect(() => decodeLinkReply(u32(0))).toThrow(/at least 178/);
  });

  it('rejects caps that run past the body', () => {
    const mess = encodeLinkMess({ connectionId: 0, channelType: 1, channelId: 0, commonCaps: [9], channelCaps: [] }).slice(16);
    new DataView(mess.buffer).setUint32(6, 5, true);
    expect(() => decodeLinkMess(mess)).toThrow(/past the end/);
  });

  it('maps capability bits to words', () => {
    expect(capsWords([0, 3])).toEqual([9]);
    expect(capsWords([33])).toEqual([0, 2]);
    expect(hasCap([9], 3)).toBe(true);
    expect(hasCap([9], 1)).toBe(false);
    expect(hasCap([], 40)).toBe(false);
  });
});

describe('ticket', () => {
  it('is RSA-OAEP(SHA-1) of password and NUL, 128 bytes', () => {
    const t = encryptTicket(spki, 's3cret');
    expect(t.byteLength).toBe(128);
    expect(Buffer.from(decryptTicket(t)).toString('latin1')).toBe('s3cret\0');
  });

  it('sends a single NUL for no password and refuses more than 60 bytes', () => {
    expect(Array.from(ticketPlaintext(''))).toEqual([0]);
    expect(() => ticketPlaintext('x'.repeat(61))).toThrow(PasswordTooLongError);
    expect(ticketPlaintext('é'.repeat(30)).byteLength).toBe(61);
  });
});

function drive(h: LinkHandshake, input: Uint8Array, splits: number[]): { sent: Uint8Array[]; last: LinkProgress; unread: Uint8Array } {
  const sent: Uint8Array[] = [];
  let last: LinkProgress = { kind: 'pending' };
  let at = 0;
  for (const end of [...splits, input.byteLength]) {
    last = h.receive(input.subarray(at, end));
    at = end;
    if (last.kind !== 'failed' && last.send) sent.push(last.send);
    if (last.kind !== 'pending') break;
  }
  return { sent, last, unread: input.subarray(at) };
}

describe('link handshake', () => {
  const options = { connectionId: 0, channelType: 1, channelId: 0, channelCaps: [2], password: 'pw' };
  const dataAfter = fromHex('04 00 0c 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00');
  const serverBytes = concatBytes([serverReply(), u32(0), dataAfter]);

  it('completes with the input split at every offset', () => {
    for (let split = 0; split <= serverBytes.byteLength; split++) {
      const h = new LinkHandshake(options);
      expect(toHex(h.start().subarray(0, 4))).toBe('52 45 44 51');
      const { sent, last, unread } = drive(h, serverBytes, [split]);
      expect(last.kind, `split ${split}`).toBe('established');
      if (last.kind !== 'established') return;
      expect(last.link.miniHeader).toBe(true);
      expect(toHex(concatBytes([last.link.rest, unread])), `split ${split}`).toBe(toHex(dataAfter));
      expect(sent).toHaveLength(1);
      const auth = sent[0]!;
      expect(toHex(auth.subarray(0, 4))).toBe('01 00 00 00');
      expect(Buffer.from(decryptTicket(auth.subarray(4))).toString('latin1')).toBe('pw\0');
    }
  });

  it('completes when fed one byte at a time', () => {
    const h = new LinkHandshake(options);
    const splits = Array.from({ length: serverBytes.byteLength - 1 }, (_, i) => i + 1);
    expect(drive(h, serverBytes, splits).last.kind).toBe('established');
  });

  it.each([
    [LinkError.PERMISSION_DENIED, 'auth', /PERMISSION_DENIED/],
    [LinkError.BAD_CONNECTION_ID, 'network', /BAD_CONNECTION_ID/],
    [LinkError.NEED_SECURED, 'tls', /requires TLS/],
  ] as const)('reports link result %i as %s', (code, kind, message) => {
    const h = new LinkHandshake(options);
    const { last } = drive(h, concatBytes([serverReply(), u32(code)]), []);
    expect(last.kind).toBe('failed');
    if (last.kind === 'failed') {
      expect(last.error.kind).toBe(kind);
      expect(last.error.linkError).toBe(code);
      expect(last.error.message).toMatch(message);
    }
  });

  it('reports an error in the link reply (NEED_SECURED) without sending a ticket', () => {
    const h = new LinkHandshake(options);
    const { sent, last } = drive(h, serverReply(LinkError.NEED_SECURED), []);
    expect(sent).toHaveLength(0);
    expect(last.kind === 'failed' && last.error.linkError).toBe(LinkError.NEED_SECURED);
  });

  it('recognises a VNC server and a TLS port', () => {
    const vnc = drive(new LinkHandshake(options), Buffer.from('RFB 003.008\n'), []).last;
    expect(vnc.kind === 'failed' && vnc.error.message).toMatch(/VNC server/);
    const tlsAlert = drive(new LinkHandshake(options), fromHex('15 03 03 00 02 02 46'), []).last;
    expect(tlsAlert.kind === 'failed' && tlsAlert.error.message).toMatch(/TLS port/);
  });

  it('refuses a server that offers only SASL', () => {
    const { last } = drive(new LinkHandshake(options), serverReply(0, [0x0d]), []);
    expect(last.kind === 'failed' && last.error.message).toMatch(/SASL/);
  });

  it('treats a whole link reply in place of the result as a refused auth selection', () => {
    const h = new LinkHandshake(options);
    const { last } = drive(h, concatBytes([serverReply(), serverReply(LinkError.INVALID_DATA)]), []);
    expect(last.kind === 'failed' && last.error.kind).toBe('auth');
  });

  it('rejects absurd reply sizes and other protocol versions', () => {
    const big = encodeLinkReply({ error: 0, pubKey: spki, commonCaps: [0x0b], channelCaps: [] });
    new DataView(big.buffer).setUint32(12, 1 << 30, true);
    expect(drive(new LinkHandshake(options), big, []).last.kind).toBe('failed');
    const v1 = serverReply();
    new DataView(v1.buffer).setUint32(4, 1, true);
    const r = drive(new LinkHandshake(options), v1, []).last;
    expect(r.kind === 'failed' && r.error.message).toMatch(/protocol 1\.2/);
  });

  it('explains EOF at each stage', () => {
    const mainEof = new LinkHandshake(options).endOfStream();
    expect(mainEof.kind).toBe('network');
    const scEof = new LinkHandshake({ ...options, channelType: 8 }).endOfStream();
    expect(scEof.kind).toBe('channel-missing');
    expect(scEof.message).toMatch(/no smartcard device/);
    const mid = new LinkHandshake(options);
    mid.receive(serverReply().subarray(0, 30));
    expect(mid.endOfStream().message).toMatch(/middle of the link reply/);
    const auth = new LinkHandshake(options);
    auth.receive(serverReply());
    expect(auth.endOfStream().message).toMatch(/during authentication/);
  });
});
