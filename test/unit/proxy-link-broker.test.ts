// The proxy's link stage: the only bytes it changes are the 162-byte key in the server's reply and
// the 128-byte ticket; everything else passes through, split or coalesced any way.
import { constants, createPublicKey, generateKeyPairSync, privateDecrypt, publicEncrypt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { concatBytes, toHex } from '../../spice/bytes.js';
import { encodeLinkMess, encodeLinkReply, decodeLinkReply, type LinkMess } from '../../spice/link-codec.js';
import { LinkHandshake } from '../../spice/link-handshake.js';
import { encryptTicket } from '../../spice/ticket.js';
import { Credentials } from '../../src/proxy/credentials.js';
import { LinkBroker, type BrokerAction, type BrokeredLink, type LinkBrokerOptions } from '../../src/proxy/link-broker.js';
import { createProxyKeySync } from '../../src/proxy/proxy-key.js';

const server = generateKeyPairSync('rsa', { modulusLength: 1024 });
const serverSpki = new Uint8Array(server.publicKey.export({ format: 'der', type: 'spki' }));
const proxyKey = createProxyKeySync();

const serverDecrypt = (ticket: Uint8Array): string =>
  Buffer.from(privateDecrypt({ key: server.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ticket)).toString('latin1');

const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

/** What remote-viewer sends: AUTH_SELECTION | AUTH_SASL | MINI_HEADER, main caps 0xf. */
const VIEWER_MAIN: LinkMess = { connectionId: 0, channelType: 1, channelId: 0, commonCaps: [0x0d], channelCaps: [0x0f] };
const VIEWER_DISPLAY: LinkMess = { connectionId: 0x1234abcd, channelType: 2, channelId: 0, commonCaps: [0x0d], channelCaps: [0xff] };
const SERVER_REPLY = encodeLinkReply({ error: 0, pubKey: serverSpki, commonCaps: [0x0b], channelCaps: [0x0f] });
const DATA_DOWN = Uint8Array.of(0x67, 0, 32, 0, 0, 0, ...new Uint8Array(32).fill(7)); // an INIT-shaped message
const DATA_UP = Uint8Array.of(0x68, 0, 0, 0, 0, 0); // ATTACH_CHANNELS

interface Outcome {
  opens: { secure: boolean; reopen: boolean; send: Uint8Array }[];
  toServer: Uint8Array[];
  toViewer: Uint8Array[];
  notes: string[];
  relay?: BrokeredLink;
  local?: LinkMess;
  close?: { reason: string; linkError?: number };
  /** Server bytes that arrived once relaying had begun: the socket layer relays them. */
  laterDown: Uint8Array[];
}

function harness(options: Partial<LinkBrokerOptions> = {}): { broker: LinkBroker; out: Outcome; apply: (a: BrokerAction[]) => void } {
  const broker = new LinkBroker({
    key: proxyKey,
    credentials: new Credentials(),
    secureFirst: () => false,
    canSecure: true,
    answerLocally: (m) => m.channelType === 8,
    ...options,
  });
  const out: Outcome = { opens: [], toServer: [], toViewer: [], notes: [], laterDown: [] };
  const apply = (actions: BrokerAction[]): void => {
    for (const a of actions) {
      switch (a.kind) {
        case 'open-upstream':
          out.opens.push({ secure: a.secure, reopen: a.reopen, send: a.send });
          out.toServer.length = 0;
          break;
        case 'to-server':
          out.toServer.push(a.bytes);
          break;
        case 'to-viewer':
          out.toViewer.push(a.bytes);
          break;
        case 'note':
          out.notes.push(a.text);
          break;
        case 'relay':
          out.relay = a.link;
          break;
        case 'local':
          out.local = a.mess;
          break;
        case 'close':
          out.close = a.linkError === undefined ? { reason: a.reason } : { reason: a.reason, linkError: a.linkError };
          break;
      }
    }
  };
  return { broker, out, apply };
}

/** Feeds `bytes` as two chunks split at `at` (or all at once for undefined). */
function feed(bytes: Uint8Array, at: number | undefined, push: (chunk: Uint8Array) => void): void {
  if (at === undefined || at <= 0 || at >= bytes.byteLength) {
    push(bytes);
    return;
  }
  push(bytes.subarray(0, at));
  push(bytes.subarray(at));
}

function feedBytewise(bytes: Uint8Array, push: (chunk: Uint8Array) => void): void {
  for (let i = 0; i < bytes.byteLength; i++) push(bytes.subarray(i, i + 1));
}

interface Splits {
  link?: number;
  reply?: number;
  auth?: number;
  result?: number;
}

/** A whole main-channel link with a viewer password; each input split where told. */
function mainLink(splits: Splits, viewerPassword: string, credentials = new Credentials()): Outcome {
  const { broker, out, apply } = harness({ credentials });
  const link = encodeLinkMess(VIEWER_MAIN);
  feed(link, splits.link, (c) => apply(broker.fromViewer(c)));
  expect(out.opens).toHaveLength(1);
  expect(toHex(out.opens[0]!.send)).toBe(toHex(link));
  feed(SERVER_REPLY, splits.reply, (c) => apply(broker.fromServer(c)));
  const reply = concatBytes(out.toViewer);
  const viewerKey = decodeLinkReply(reply.subarray(16)).pubKey;
  const auth = concatBytes([u32(1), encryptTicket(viewerKey, viewerPassword)]);
  feed(auth, splits.auth, (c) => apply(broker.fromViewer(c)));
  const result = concatBytes([u32(0), DATA_DOWN]);
  feed(result, splits.result, (c) => (out.relay === undefined ? apply(broker.fromServer(c)) : out.laterDown.push(c)));
  return out;
}

describe('LinkBroker: relayed link with key replacement', () => {
  it('changes only the public key in the reply, and the server gets the viewer password re-encrypted', () => {
    const out = mainLink({}, 'viewer-pw');
    const reply = out.toViewer[0]!;
    expect(reply.byteLength).toBe(SERVER_REPLY.byteLength);
    expect(toHex(reply.subarray(0, 20))).toBe(toHex(SERVER_REPLY.subarray(0, 20)));
    expect(toHex(reply.subarray(20, 182))).toBe(toHex(proxyKey.spki));
    expect(toHex(reply.subarray(182))).toBe(toHex(SERVER_REPLY.subarray(182)));
    const sent = concatBytes(out.toServer);
    expect(sent.byteLength).toBe(132);
    expect(toHex(sent.subarray(0, 4))).toBe('01 00 00 00');
    expect(serverDecrypt(sent.subarray(4))).toBe('viewer-pw\0');
    expect(toHex(out.toViewer.at(-1)!)).toBe('00 00 00 00');
    expect(out.relay).toMatchObject({ password: 'viewer-pw', source: 'viewer', miniHeader: true, sniffable: true, secure: false });
    expect(toHex(out.relay!.serverRest)).toBe(toHex(DATA_DOWN));
    expect(out.close).toBeUndefined();
  });

  it('gives the same result whatever way each input is split', () => {
    const lengths = { link: encodeLinkMess(VIEWER_MAIN).byteLength, reply: SERVER_REPLY.byteLength, auth: 132, result: 4 + DATA_DOWN.byteLength };
    for (const key of Object.keys(lengths) as (keyof Splits)[]) {
      for (let at = 1; at < lengths[key]; at++) {
        const out = mainLink({ [key]: at }, 'pw');
        expect(out.relay?.password, `${key} split at ${at}`).toBe('pw');
        expect(toHex(concatBytes(out.toViewer)).length).toBe(toHex(concatBytes([SERVER_REPLY, u32(0)])).length);
        expect(toHex(concatBytes([out.relay!.serverRest, ...out.laterDown])), `${key} split at ${at}`).toBe(toHex(DATA_DOWN));
      }
    }
  });

  it('works byte by byte in both directions', () => {
    const { broker, out, apply } = harness();
    feedBytewise(encodeLinkMess(VIEWER_MAIN), (c) => apply(broker.fromViewer(c)));
    feedBytewise(SERVER_REPLY, (c) => apply(broker.fromServer(c)));
    const viewerKey = decodeLinkReply(concatBytes(out.toViewer).subarray(16)).pubKey;
    feedBytewise(concatBytes([u32(1), encryptTicket(viewerKey, 'bytewise'), DATA_UP]), (c) => apply(broker.fromViewer(c)));
    expect(out.relay).toBeUndefined();
    feedBytewise(u32(0), (c) => apply(broker.fromServer(c)));
    expect(out.relay?.password).toBe('bytewise');
    // The viewer's first data bytes came before the result: they are handed over, not lost.
    expect(toHex(out.relay!.viewerRest)).toBe(toHex(DATA_UP));
  });

  it('hands over coalesced data-phase bytes on both sides', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    apply(broker.fromServer(SERVER_REPLY));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    apply(broker.fromViewer(concatBytes([u32(1), encryptTicket(viewerKey, ''), DATA_UP])));
    apply(broker.fromServer(concatBytes([u32(0), DATA_DOWN, DATA_DOWN])));
    expect(toHex(out.relay!.viewerRest)).toBe(toHex(DATA_UP));
    expect(toHex(out.relay!.serverRest)).toBe(toHex(concatBytes([DATA_DOWN, DATA_DOWN])));
  });

  it('works on Buffers (what sockets deliver; their slice() is a view)', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(Buffer.from(encodeLinkMess(VIEWER_MAIN))));
    apply(broker.fromServer(Buffer.from(SERVER_REPLY)));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    expect(toHex(viewerKey)).toBe(toHex(proxyKey.spki));
    apply(broker.fromViewer(Buffer.from(concatBytes([u32(1), encryptTicket(viewerKey, 'buf')]))));
    expect(serverDecrypt(concatBytes(out.toServer).subarray(4))).toBe('buf\0');
  });

  it('links our own client (LinkHandshake) through it', () => {
    const { broker, out, apply } = harness();
    const client = new LinkHandshake({ connectionId: 0, channelType: 1, channelId: 0, channelCaps: [], password: 'through' });
    apply(broker.fromViewer(client.start()));
    apply(broker.fromServer(SERVER_REPLY));
    const progress = client.receive(concatBytes(out.toViewer));
    expect(progress.kind).toBe('pending');
    apply(broker.fromViewer(progress.kind === 'pending' ? progress.send! : new Uint8Array(0)));
    apply(broker.fromServer(u32(0)));
    expect(serverDecrypt(concatBytes(out.toServer).subarray(4))).toBe('through\0');
    expect(client.receive(out.toViewer.at(-1)!).kind).toBe('established');
  });

  it('sends a ticket without the mechanism word for a viewer that does not select auth', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess({ ...VIEWER_MAIN, commonCaps: [0x08] })));
    apply(broker.fromServer(SERVER_REPLY));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    apply(broker.fromViewer(encryptTicket(viewerKey, 'noselect')));
    const sent = concatBytes(out.toServer);
    expect(sent.byteLength).toBe(128);
    expect(serverDecrypt(sent)).toBe('noselect\0');
  });
});

describe('LinkBroker: which ticket goes upstream', () => {
  it('a known password replaces whatever the viewer sent (a viewer without one links too)', () => {
    const out = mainLink({}, '', new Credentials({ knownPassword: 'known' }));
    expect(serverDecrypt(concatBytes(out.toServer).subarray(4))).toBe('known\0');
    expect(out.relay).toMatchObject({ password: 'known', source: 'proxy' });
  });

  it('with a viewer token, only the token unlocks the known password', () => {
    const credentials = new Credentials({ knownPassword: 'known', viewerToken: 'token-123' });
    expect(serverDecrypt(concatBytes(mainLink({}, 'token-123', credentials).toServer).subarray(4))).toBe('known\0');
    const stranger = mainLink({}, 'guess', credentials);
    expect(serverDecrypt(concatBytes(stranger.toServer).subarray(4))).toBe('guess\0');
    expect(stranger.relay?.source).toBe('viewer');
  });

  it('forgets a known password the server refused, so the viewer password prompt works', () => {
    const credentials = new Credentials({ knownPassword: 'stale' });
    const { broker, out, apply } = harness({ credentials });
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    apply(broker.fromServer(SERVER_REPLY));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    apply(broker.fromViewer(concatBytes([u32(1), encryptTicket(viewerKey, '')])));
    apply(broker.fromServer(u32(7)));
    expect(toHex(out.toViewer.at(-1)!)).toBe('07 00 00 00');
    expect(out.close).toMatchObject({ linkError: 7 });
    expect(out.notes.join()).toMatch(/refused the proxy's password/);
    expect(credentials.knowsPassword).toBe(false);
    const retry = mainLink({}, 'typed-by-user', credentials);
    expect(serverDecrypt(concatBytes(retry.toServer).subarray(4))).toBe('typed-by-user\0');
  });

  it('passes a ticket it cannot read on untouched (the server decides)', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    apply(broker.fromServer(SERVER_REPLY));
    const garbage = new Uint8Array(128).fill(0x5a);
    apply(broker.fromViewer(concatBytes([u32(1), garbage])));
    expect(toHex(concatBytes(out.toServer).subarray(4))).toBe(toHex(garbage));
    apply(broker.fromServer(u32(0)));
    expect(out.relay).toMatchObject({ source: 'unreadable', password: undefined });
  });

  it('re-encrypts non-UTF-8 plaintext byte for byte', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    apply(broker.fromServer(SERVER_REPLY));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    const plain = Uint8Array.of(0xff, 0xfe, 0x41, 0);
    const ticket = publicEncrypt({ key: createPublicKey({ key: Buffer.from(viewerKey), format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain);
    apply(broker.fromViewer(concatBytes([u32(1), ticket])));
    expect(serverDecrypt(concatBytes(out.toServer).subarray(4))).toBe('\xff\xfeA\0');
  });
});

describe('LinkBroker: server answers', () => {
  it('follows NEED_SECURED over TLS with the same link bytes; the viewer never sees it', () => {
    const { broker, out, apply } = harness();
    const link = encodeLinkMess(VIEWER_DISPLAY);
    apply(broker.fromViewer(link));
    apply(broker.fromServer(encodeLinkReply({ error: 5, pubKey: new Uint8Array(162), commonCaps: [], channelCaps: [] })));
    expect(out.opens).toEqual([
      { secure: false, reopen: false, send: link },
      { secure: true, reopen: true, send: link },
    ]);
    expect(out.toViewer).toHaveLength(0);
    apply(broker.fromServer(SERVER_REPLY));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    apply(broker.fromViewer(concatBytes([u32(1), encryptTicket(viewerKey, 'x')])));
    apply(broker.fromServer(u32(0)));
    expect(out.relay).toMatchObject({ secure: true });
    expect(out.notes.join()).toMatch(/requires TLS/);
  });

  it('starts on TLS when the channel is listed as secure', () => {
    const { broker, out, apply } = harness({ secureFirst: (t) => t === 1 });
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    expect(out.opens[0]!.secure).toBe(true);
  });

  it('relays NEED_SECURED when there is no TLS port, and any other refusal, as they are', () => {
    for (const error of [5, 3, 4]) {
      const { broker, out, apply } = harness({ canSecure: false });
      apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
      const refusal = encodeLinkReply({ error, pubKey: new Uint8Array(162), commonCaps: [], channelCaps: [] });
      apply(broker.fromServer(refusal));
      expect(toHex(concatBytes(out.toViewer))).toBe(toHex(refusal));
      expect(out.close?.linkError).toBe(error);
    }
  });

  it('reads EOF right after the link message as "no such channel"', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess({ ...VIEWER_DISPLAY, channelType: 9 })));
    apply(broker.serverEnded());
    expect(out.close?.reason).toMatch(/no such channel/);
  });

  it('relays SASL untouched and does not claim to follow the session', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    apply(broker.fromServer(encodeLinkReply({ error: 0, pubKey: serverSpki, commonCaps: [0x0d], channelCaps: [] })));
    apply(broker.fromViewer(concatBytes([u32(2), Uint8Array.of(9, 9)])));
    expect(toHex(concatBytes(out.toServer))).toBe('02 00 00 00');
    expect(out.relay).toMatchObject({ sniffable: false, source: 'sasl' });
    expect(toHex(out.relay!.viewerRest)).toBe('09 09');
  });

  it('refuses a viewer that does not speak SPICE, and a server that does not', () => {
    const v = harness();
    v.apply(v.broker.fromViewer(new TextEncoder().encode('GET / HTTP/1.1\r\n')));
    expect(v.out.close?.reason).toMatch(/not a SPICE client/);
    expect(v.out.opens).toHaveLength(0);
    const s = harness();
    s.apply(s.broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    s.apply(s.broker.fromServer(new TextEncoder().encode('RFB 003.008\n')));
    expect(s.out.close?.reason).toMatch(/SPICE magic/);
  });

  it('uses the full header when either side lacks MINI_HEADER', () => {
    const { broker, out, apply } = harness();
    apply(broker.fromViewer(encodeLinkMess(VIEWER_MAIN)));
    apply(broker.fromServer(encodeLinkReply({ error: 0, pubKey: serverSpki, commonCaps: [0x03], channelCaps: [] })));
    const viewerKey = decodeLinkReply(out.toViewer[0]!.subarray(16)).pubKey;
    apply(broker.fromViewer(concatBytes([u32(1), encryptTicket(viewerKey, '')])));
    apply(broker.fromServer(u32(0)));
    expect(out.relay?.miniHeader).toBe(false);
  });
});

describe('LinkBroker: the viewer smartcard channel answered locally', () => {
  it('never links upstream, shows the proxy key, and accepts the ticket', () => {
    const { broker, out, apply } = harness();
    const link = encodeLinkMess({ connectionId: 0x55aa, channelType: 8, channelId: 0, commonCaps: [0x0d], channelCaps: [] });
    for (let at = 1; at < link.byteLength; at++) {
      const h = harness();
      feed(link, at, (c) => h.apply(h.broker.fromViewer(c)));
      expect(h.out.opens).toHaveLength(0);
      expect(h.out.toViewer).toHaveLength(1);
    }
    apply(broker.fromViewer(link));
    const reply = decodeLinkReply(out.toViewer[0]!.subarray(16));
    expect(reply.error).toBe(0);
    expect(toHex(reply.pubKey)).toBe(toHex(proxyKey.spki));
    expect(reply.commonCaps).toEqual([0x0b]);
    apply(broker.fromViewer(concatBytes([u32(1), encryptTicket(reply.pubKey, 'whatever'), Uint8Array.of(1, 2, 3)])));
    expect(toHex(out.toViewer.at(-1)!)).toBe('00 00 00 00');
    expect(out.local).toMatchObject({ channelType: 8, connectionId: 0x55aa });
    expect(out.opens).toHaveLength(0);
    expect(broker.stage).toBe('local');
    expect(broker.fromViewer(Uint8Array.of(4, 5))).toEqual([]);
  });
});
