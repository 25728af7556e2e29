// A loopback SPICE server that links correctly (or breaks the link on purpose) and then
// misbehaves: random bytes, mutated valid streams, huge sizes, truncation, floods. Plus the
// seeded PRNG and the input generators the reliability tests share.
import { generateKeyPairSync } from 'node:crypto';
import net from 'node:net';
import { concatBytes } from '../../spice/bytes.js';
import { BaseMsg, ChannelType, MainMsg, SmartcardMsg } from '../../spice/constants.js';
import { encodeFrame } from '../../spice/frame-parser.js';
import { capsWords, encodeLinkHeader, encodeLinkReply } from '../../spice/link-codec.js';
import { encodeChannelsList, encodeMainInit, encodeNotify, encodePing } from '../../spice/messages.js';
import { encodeVscMessage, type ByteOrder, type VscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';

// ---------------------------------------------------------------- seeded random

/** mulberry32: small, fast, reproducible. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

export function seedFromEnv(name: string): number {
  const text = process.env[name];
  if (text !== undefined && /^\d+$/.test(text)) return Number(text) >>> 0;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}



const INTERESTING_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Flips, overwrites, inserts, deletes, duplicates or truncates bytes: 1..6 operations. */
export function mutate(rng: Rng, input: Uint8Array): Uint8Array {
  let b: Uint8Array = Uint8Array.from(input);
  const ops = 1 + rng.int(6);
  for (let k = 0; k < ops; k++) {
    const at = b.byteLength === 0 ? 0 : rng.int(b.byteLength);
    switch (rng.int(7)) {
      case 0:
        if (b.byteLength > 0) b[at] = b[at]! ^ (1 << rng.int(8));
        break;
      case 1:
        if (b.byteLength > 0) b[at] = rng.int(256);
        break;
      case 2:
        b = concatBytes([b.subarray(0, at), rng.bytes(1 + rng.int(16)), b.subarray(at)]);
        break;
      case 3:
        b = concatBytes([b.subarray(0, at), b.subarray(Math.min(b.byteLength, at + 1 + rng.int(16)))]);
        break;
      case 4: {
        const len = Math.min(b.byteLength - at, 1 + rng.int(32));
        b = concatBytes([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
        break;
      }
      case 5:
        b = b.subarray(0, at);
        break;
      default:
        if (b.byteLength >= at + 4) {
          const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
          dv.setUint32(at, rng.pick(INTERESTING_U32), rng.int(2) === 0);
        }
    }
  }
  return b;
}

/** Cuts a byte string into 1..8 chunks at random offsets (sockets split anywhere). */
export function splitRandomly(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const n = 1 + rng.int(8);
  const cuts = new Set<number>();
  for (let i = 0; i < n - 1 && bytes.byteLength > 1; i++) cuts.add(1 + rng.int(bytes.byteLength - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

// ---------------------------------------------------------------- valid streams

const mini = (type: number, body: Uint8Array): Uint8Array => encodeFrame(type, body, { miniHeader: true });

export function validVscMessages(rng: Rng): VscMessage[] {
  const r = rng.int(2) === 0 ? 0 : rng.pick([0, 1, 0xffffffff]);
  const all: VscMessage[] = [
    { type: VscMsgType.Init, readerId: 0, magic: Uint8Array.from([0x56, 0x53, 0x43, 0x44]), version: 2, capabilities: [0] },
    { type: VscMsgType.Error, readerId: r, code: rng.pick([0, 0, 1, 2, 3]) },
    { type: VscMsgType.Apdu, readerId: r, data: rng.pick([Uint8Array.of(0x00, 0xa4, 0x04, 0x00), Uint8Array.of(0x00, 0xb0, 0x00, 0x00, 0x10), rng.bytes(rng.int(300))]) },
    { type: VscMsgType.Flush, readerId: r },
    { type: VscMsgType.ReaderRemove, readerId: r },
    { type: VscMsgType.CardRemove, readerId: r },
    { type: VscMsgType.Atr, readerId: r, atr: rng.bytes(rng.int(45)) },
    { type: VscMsgType.ReaderAdd, readerId: r, name: 'x' },
    { type: VscMsgType.FlushComplete, readerId: r },
  ];
  const out: VscMessage[] = [];
  // A plausible conversation first (reader added, ATR acked, a command), then random messages.
  out.push({ type: VscMsgType.Error, readerId: 0, code: 0 });
  const n = rng.int(8);
  for (let i = 0; i < n; i++) out.push(rng.pick(all));
  return out;
}

/** A VSC byte stream in one byte order (the raw passthru socket). */
export function validVscStream(rng: Rng, order: ByteOrder): Uint8Array {
  const msgs = validVscMessages(rng);
  if (order === 'be') msgs.unshift({ type: VscMsgType.Init, readerId: 0, magic: Uint8Array.from([0x56, 0x53, 0x43, 0x44]), version: 2, capabilities: [0] });
  return concatBytes(msgs.map((m) => encodeVscMessage(m, order)));
}

/** Valid mini-header messages of the main channel: PING, INIT, CHANNELS_LIST, NOTIFY, ... */
export function validMainFrames(rng: Rng, sessionId = 0x1234, withSmartcard = true): Uint8Array[] {
  const list: { type: number; id: number }[] = [{ type: ChannelType.MAIN, id: 0 }];
  if (withSmartcard) list.push({ type: ChannelType.SMARTCARD, id: 0 });
  const frames = [
    mini(BaseMsg.PING, encodePing({ id: rng.int(1000), timestamp: 1n }, rng.int(64))),
    mini(MainMsg.INIT, encodeMainInit({ sessionId, displayChannelsHint: 1, supportedMouseModes: 3, currentMouseMode: 2, agentConnected: 0, agentTokens: 10, multiMediaTime: 0, ramHint: 0 })),
    mini(MainMsg.CHANNELS_LIST, encodeChannelsList(list)),
    mini(BaseMsg.NOTIFY, encodeNotify({ timestamp: 0n, severity: 0, visibility: 0, what: 0, message: 'hello' })),
  ];
  if (rng.int(2) === 0) frames.push(mini(BaseMsg.SET_ACK, Uint8Array.of(1, 0, 0, 0, rng.int(4), 0, 0, 0)));
  if (rng.int(2) === 0) frames.push(mini(MainMsg.NAME, Uint8Array.of(3, 0, 0, 0, 0x76, 0x6d, 0)));
  return frames;
}

/** Smartcard channel: message 101 carrying little-endian VSC, mixed with base messages. */
export function validSmartcardFrames(rng: Rng): Uint8Array[] {
  const out = validVscMessages(rng).map((m) => mini(SmartcardMsg.DATA, encodeVscMessage(m, 'le')));
  if (rng.int(2) === 0) out.splice(rng.int(out.length + 1), 0, mini(BaseMsg.PING, encodePing({ id: 1, timestamp: 2n })));
  if (rng.int(3) === 0) out.splice(rng.int(out.length + 1), 0, mini(BaseMsg.NOTIFY, encodeNotify({ timestamp: 0n, severity: 1, visibility: 0, what: 0, message: 'n' })));
  return out;
}

/** One piece of post-link misbehaviour for a mini-header channel. */
export function hostileChannelBytes(rng: Rng, valid: Uint8Array[], floodMax = 1000): Uint8Array {
  const whole = concatBytes(valid);
  switch (rng.int(8)) {
    case 0:
      return rng.bytes(rng.int(512));
    case 1:
    case 2:
      return mutate(rng, whole);
    case 3: // wrong size on one frame
      return concatBytes([whole, mini(rng.int(120), rng.bytes(rng.int(8))).map((x, i) => (i === 2 ? rng.int(256) : x))]);
    case 4: { // huge announced length
      const h = new Uint8Array(6);
      const dv = new DataView(h.buffer);
      dv.setUint16(0, rng.pick([BaseMsg.PING, SmartcardMsg.DATA, MainMsg.INIT, 999]), true);
      dv.setUint32(2, rng.pick([0x01000001, 0x7fffffff, 0xffffffff, 0x00ffffff]), true);
      return concatBytes([whole, h, rng.bytes(rng.int(64))]);
    }
    case 5: // truncated frame
      return whole.subarray(0, whole.byteLength === 0 ? 0 : rng.int(whole.byteLength));
    case 6: { // unknown message types
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 1 + rng.int(10); i++) frames.push(mini(rng.int(0x10000), rng.bytes(rng.int(40))));
      return concatBytes([whole, ...frames]);
    }
    default: { // PING flood
      const ping = mini(BaseMsg.PING, encodePing({ id: 7, timestamp: 9n }));
      const frames: Uint8Array[] = [whole];
      for (let i = 0; i < floodMax / 5 + rng.int((floodMax * 4) / 5); i++) frames.push(ping);
      return concatBytes(frames);
    }
  }
}

// ---------------------------------------------------------------- the server

export type LinkBehaviour =
  | 'ok'
  | 'garbage-reply' // random bytes instead of a link reply
  | 'short-reply' // a prefix of the valid reply, then EOF
  | 'huge-size' // a link header announcing 0xffffffff bytes
  | 'mutated-reply' // the valid reply with bytes flipped/inserted/deleted
  | 'bad-result' // a random link result word
  | 'silent'; // accept and never answer (the client's link timeout must fire)

export interface ChannelPlan {
  link: LinkBehaviour;
  /** Written after link result 0 (ignored unless link is 'ok'). */
  data: Uint8Array[];
  /** After the data: close cleanly, reset, or keep the socket open until the client leaves. */
  end: 'eof' | 'destroy' | 'hold';
}

export interface HostileServer {
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
const SPKI = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
const SERVER_CAPS = capsWords([0, 1, 3]); // auth selection, SPICE auth, mini header

export function linkReplyBytes(): Uint8Array {
  return encodeLinkReply({ error: 0, pubKey: SPKI, commonCaps: SERVER_CAPS, channelCaps: [] });
}

/**
 * Starts the server. `planFor(channelType, rng)` decides, per accepted connection, how it behaves;
 * the channel type is read from the client's link message.
 */
export async function startHostileSpiceServer(seed: number, planFor: (channelType: number, rng: Rng) => ChannelPlan): Promise<HostileServer> {
  const rng = new Rng(seed);
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf: Uint8Array = new Uint8Array(0);
    let stage: 'mess' | 'ticket' | 'data' = 'mess';
    let plan: ChannelPlan | undefined;
    const write = (bytes: Uint8Array): void => {
      if (!socket.destroyed) socket.write(bytes);
    };
    const finish = (p: ChannelPlan): void => {
      if (p.end === 'eof') socket.end();
      else if (p.end === 'destroy') socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      if (stage === 'data') return; // whatever the client says now is ignored
      buf = concatBytes([buf, chunk]);
      if (stage === 'mess') {
        if (buf.byteLength < 16) return;
        const size = new DataView(buf.buffer, buf.byteOffset).getUint32(12, true);
        if (buf.byteLength < 16 + size) return;
        const channelType = buf[16 + 4] ?? 0;
        buf = buf.subarray(16 + size);
        plan = planFor(channelType, rng);
        const reply = linkReplyBytes();
        switch (plan.link) {
          case 'garbage-reply':
            for (const c of splitRandomly(rng, rng.bytes(1 + rng.int(400)))) write(c);
            socket.end();
            return;
          case 'short-reply':
            write(reply.subarray(0, rng.int(reply.byteLength)));
            socket.end();
            return;
          case 'huge-size':
            write(concatBytes([encodeLinkHeader(rng.pick([0xffffffff, 0x7fffffff, 0x100000, 4096 + 1025])), rng.bytes(rng.int(256))]));
            if (rng.int(2) === 0) socket.end();
            return;
          case 'mutated-reply':
            for (const c of splitRandomly(rng, mutate(rng, reply))) write(c);
            socket.end();
            return;
          case 'silent':
            return;
          default:
            for (const c of splitRandomly(rng, reply)) write(c);
            stage = 'ticket';
        }
      }
      if (stage === 'ticket' && plan !== undefined) {
        if (buf.byteLength < 4 + 128) return;
        stage = 'data';
        if (plan.link === 'bad-result') {
          write(rng.bytes(1 + rng.int(4)));
          socket.end();
          return;
        }
        write(Uint8Array.of(0, 0, 0, 0));
        for (const d of plan.data) write(d);
        finish(plan);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
