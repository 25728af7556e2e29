// A timestamping loopback relay in front of a SPICE port, the one fair place to time any client:
// every channel of every client passes through it unchanged, and on the smartcard channel it reads
// the link stage (channel type, capabilities: mini header, auth selection) and then the SPICE data
// headers both ways, so it sees when the server sends a VSC APDU (the guest's command) and when
// the client's VSC APDU or VSC Error (its answer) arrives. The same code times both clients.
import net from 'node:net';
import { FrameParser } from '../spice/frame-parser.js';
import { decodeLinkHeader, decodeLinkMess, decodeLinkReply, hasCap } from '../spice/link-codec.js';
import { VscMsgType } from '../vsc/constants.js';

const LINK_HEADER_SIZE = 16;
const SMARTCARD_CHANNEL = 8;
const SMARTCARD_DATA = 101;
const COMMON_CAP_AUTH_SELECTION = 0;
const COMMON_CAP_MINI_HEADER = 3;
const TICKET_SIZE = 128;

export interface Turnaround {
  /** Which client was connected (set by the bench with `relay.label`). */
  label: string;
  /** performance.now() when the server's APDU reached the relay. */
  sentAt: number;
  /** Milliseconds until the client's answer reached the relay. */
  ms: number;
  answer: 'apdu' | 'error';
}

/** Reads a byte stream in stages: first `need` bytes of a fixed part, then frames. */
class Accumulator {
  private buffer = new Uint8Array(0);

  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.buffer.byteLength + chunk.byteLength);
    joined.set(this.buffer, 0);
    joined.set(chunk, this.buffer.byteLength);
    this.buffer = joined;
  }

  take(n: number): Uint8Array | undefined {
    if (this.buffer.byteLength < n) return undefined;
    const out = this.buffer.slice(0, n);
    this.buffer = this.buffer.slice(n);
    return out;
  }

  peek(n: number): Uint8Array | undefined {
    return this.buffer.byteLength < n ? undefined : this.buffer.subarray(0, n);
  }

  rest(): Uint8Array {
    const out = this.buffer;
    this.buffer = new Uint8Array(0);
    return out;
  }
}

function vscType(body: Uint8Array): number | undefined {
  if (body.byteLength < 4) return undefined;
  return new DataView(body.buffer, body.byteOffset, 4).getUint32(0, true);
}

/** Follows one relayed connection; only a smartcard channel is timed. */
class ConnectionWatch {
  private clientCaps: number[] | undefined;
  private serverCaps: number[] | undefined;
  private channelType: number | undefined;
  private readonly fromClient = new Accumulator();
  private readonly fromServer = new Accumulator();
  private clientStage: 'mess' | 'ticket' | 'frames' | 'ignore' = 'mess';
  private serverStage: 'reply' | 'result' | 'frames' | 'ignore' = 'reply';
  private clientFrames: FrameParser | undefined;
  private serverFrames: FrameParser | undefined;
  private pendingSince: number | undefined;

  constructor(private readonly relay: TimestampingRelay) {}

  client(chunk: Uint8Array, at: number): void {
    if (this.clientStage === 'ignore') return;
    if (this.clientStage === 'frames') return this.clientFramesOf(chunk, at);
    this.fromClient.push(chunk);
    if (this.clientStage === 'mess') {
      const header = this.fromClient.peek(LINK_HEADER_SIZE);
      if (header === undefined) return;
      const size = decodeLinkHeader(header).size;
      const all = this.fromClient.take(LINK_HEADER_SIZE + size);
      if (all === undefined) return;
      const mess = decodeLinkMess(all.subarray(LINK_HEADER_SIZE));
      this.channelType = mess.channelType;
      this.clientCaps = mess.commonCaps;
      if (mess.channelType !== SMARTCARD_CHANNEL) {
        this.clientStage = 'ignore';
        this.serverStage = 'ignore';
        return;
      }
      this.relay.smartcardLinks++;
      this.clientStage = 'ticket';
    }
    if (this.clientStage === 'ticket') {
      // spice-server reads a 4-byte auth mechanism first when the client offers auth selection.
      const auth = hasCap(this.clientCaps ?? [], COMMON_CAP_AUTH_SELECTION) ? 4 : 0;
      if (this.serverCaps === undefined || this.fromClient.take(auth + TICKET_SIZE) === undefined) return;
      this.clientStage = 'frames';
      this.clientFrames = new FrameParser({ miniHeader: this.miniHeader() });
      const rest = this.fromClient.rest();
      if (rest.byteLength > 0) this.clientFramesOf(rest, at);
    }
  }

  server(chunk: Uint8Array, at: number): void {
    if (this.serverStage === 'ignore') return;
    if (this.serverStage === 'frames') return this.serverFramesOf(chunk, at);
    this.fromServer.push(chunk);
    if (this.serverStage === 'reply') {
      const header = this.fromServer.peek(LINK_HEADER_SIZE);
      if (header === undefined) return;
      const size = decodeLinkHeader(header).size;
      const all = this.fromServer.take(LINK_HEADER_SIZE + size);
      if (all === undefined) return;
      this.serverCaps = decodeLinkReply(all.subarray(LINK_HEADER_SIZE)).commonCaps;
      this.serverStage = 'result';
    }
    if (this.serverStage === 'result') {
      if (this.fromServer.take(4) === undefined) return;
      if (this.channelType !== SMARTCARD_CHANNEL) {
        this.serverStage = 'ignore';
        return;
      }
      this.serverStage = 'frames';
      this.serverFrames = new FrameParser({ miniHeader: this.miniHeader() });
      const rest = this.fromServer.rest();
      if (rest.byteLength > 0) this.serverFramesOf(rest, at);
    }
  }

  private miniHeader(): boolean {
    return hasCap(this.clientCaps ?? [], COMMON_CAP_MINI_HEADER) && hasCap(this.serverCaps ?? [], COMMON_CAP_MINI_HEADER);
  }

  private serverFramesOf(chunk: Uint8Array, at: number): void {
    for (const frame of this.serverFrames?.push(chunk) ?? []) {
      if (frame.type === SMARTCARD_DATA && vscType(frame.body) === VscMsgType.Apdu) this.pendingSince = at;
    }
  }

  private clientFramesOf(chunk: Uint8Array, at: number): void {
    for (const frame of this.clientFrames?.push(chunk) ?? []) {
      if (frame.type !== SMARTCARD_DATA) continue;
      const type = vscType(frame.body);
      if (type === VscMsgType.Atr || type === VscMsgType.CardRemove) this.relay.cardEvents.push({ label: this.relay.label, at, kind: type === VscMsgType.Atr ? 'atr' : 'card-remove' });
      if (this.pendingSince === undefined) continue;
      if (type !== VscMsgType.Apdu && type !== VscMsgType.Error) continue;
      this.relay.turnarounds.push({ label: this.relay.label, sentAt: this.pendingSince, ms: at - this.pendingSince, answer: type === VscMsgType.Apdu ? 'apdu' : 'error' });
      this.pendingSince = undefined;
    }
  }
}

export class TimestampingRelay {
  label = '';
  readonly turnarounds: Turnaround[] = [];
  /** When a client's VSC ATR (card inserted) or CardRemove reached the relay. */
  readonly cardEvents: { label: string; at: number; kind: 'atr' | 'card-remove' }[] = [];
  smartcardLinks = 0;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    private readonly upstreamPort: number,
  ) {
    server.on('connection', (client) => this.accept(client));
  }

  static async start(upstreamPort: number): Promise<TimestampingRelay> {
    const server = net.createServer();
    const relay = new TimestampingRelay(server, upstreamPort);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return relay;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('the relay is not listening');
    return address.port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect({ host: '127.0.0.1', port: this.upstreamPort });
    const watch = new ConnectionWatch(this);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => this.sockets.delete(s));
    }
    const fail = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    client.on('close', fail);
    upstream.on('close', fail);
    // Timestamp on arrival, forward at once; parsing a copy never holds the bytes back.
    client.on('data', (chunk: Buffer) => {
      const at = performance.now();
      upstream.write(chunk);
      try {
        watch.client(new Uint8Array(chunk), at);
      } catch {
        // A stream the relay cannot follow is still relayed; it is just not timed.
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      const at = performance.now();
      client.write(chunk);
      try {
        watch.server(new Uint8Array(chunk), at);
      } catch {
        // as above
      }
    });
  }
}
