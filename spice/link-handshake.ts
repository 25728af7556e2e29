// The client side of the SPICE link stage as a byte-driven state machine:
//   C: header + SpiceLinkMess          S: header + SpiceLinkReply
//   C: auth mechanism + ticket         S: u32 link result
// It takes bytes in any split and returns what to send and how it ended; the caller owns the socket.
import {
  AUTH_MECHANISM_SPICE,
  CommonCap,
  LINK_HEADER_SIZE,
  LinkError,
  SPICE_MAGIC,
  SPICE_MAGIC_BYTES,
  SPICE_VERSION_MAJOR,
  channelName,
} from './constants.js';
import { LeWriter, concatBytes, view } from './bytes.js';
import { LinkDecodeError, MAX_LINK_BODY_SIZE, capsWords, decodeLinkHeader, decodeLinkReply, encodeLinkMess, hasCap } from './link-codec.js';
import { SpiceError, linkFailure } from './errors.js';
import { encryptTicket } from './ticket.js';

export type LinkStage = 'reply-header' | 'reply-body' | 'result' | 'done' | 'failed';

export interface LinkOptions {
  connectionId: number;
  channelType: number;
  channelId: number;
  channelCaps: number[];
  password: string;
  /** Injected so the proxy can substitute its own key handling; defaults to RSA-OAEP with node:crypto. */
  encrypt?: (pubKeyDer: Uint8Array, password: string) => Uint8Array;
}

export interface LinkEstablished {
  /** The server will send and expect mini headers (it always does when both sides advertise it). */
  miniHeader: boolean;
  serverCommonCaps: number[];
  serverChannelCaps: number[];
  /** Bytes that arrived after the link result: the start of the data phase. */
  rest: Uint8Array;
}

export type LinkProgress =
  | { kind: 'pending'; send?: Uint8Array }
  | { kind: 'established'; link: LinkEstablished; send?: Uint8Array }
  | { kind: 'failed'; error: SpiceError };

const OUR_COMMON_CAPS = capsWords([CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.MINI_HEADER]);

function startsWithText(bytes: Uint8Array, text: string): boolean {
  if (bytes.byteLength < text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[i] !== text.charCodeAt(i)) return false;
  return true;
}

/** What a non-SPICE answer most likely is, so the user learns they dialled the wrong port. */
function describeForeignGreeting(bytes: Uint8Array): string {
  if (startsWithText(bytes, 'RFB ')) return 'a VNC server answered, not SPICE: check the port (the VM may use VNC graphics)';
  if (startsWithText(bytes, 'HTTP/')) return 'an HTTP server answered, not SPICE: check the port, or give a ws:// URL if it is a WebSocket gateway';
  if (startsWithText(bytes, 'SSH-')) return 'an SSH server answered, not SPICE: check the port';
  if (bytes[0] === 0x16 || bytes[0] === 0x15) return 'the server answered with TLS: this is probably the TLS port; use spice+tls:// or tls-port=';
  return 'the server did not answer with the SPICE magic "REDQ": check the host and port';
}

export class LinkHandshake {
  private stage: LinkStage = 'reply-header';
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private replySize = 0;
  private miniHeader = false;
  private serverCommonCaps: number[] = [];
  private serverChannelCaps: number[] = [];
  private readonly options: LinkOptions;

  constructor(options: LinkOptions) {
    this.options = options;
  }

  get currentStage(): LinkStage {
    return this.stage;
  }

  get channel(): string {
    return channelName(this.options.channelType);
  }

  /** The bytes that open the link: header and link message. */
  start(): Uint8Array {
    return encodeLinkMess({
      connectionId: this.options.connectionId,
      channelType: this.options.channelType,
      channelId: this.options.channelId,
      commonCaps: OUR_COMMON_CAPS,
      channelCaps: this.options.channelCaps,
    });
  }

  receive(chunk: Uint8Array): LinkProgress {
    if (this.stage === 'done' || this.stage === 'failed') {
      return this.fail(new SpiceError('protocol', 'link handshake: bytes after the handshake ended'));
    }
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.byteLength;
    }
    let send: Uint8Array | undefined;
    for (;;) {
      if (this.stage === 'reply-header') {
        if (this.buffered >= 4 && !this.magicMatches()) {
          return this.fail(new SpiceError('protocol', `Linking the ${this.channel} channel failed: ${describeForeignGreeting(this.peek(Math.min(this.buffered, 8)))}.`));
        }
        if (this.buffered < LINK_HEADER_SIZE) break;
        const header = decodeLinkHeader(this.take(LINK_HEADER_SIZE));
        if (header.major !== SPICE_VERSION_MAJOR) {
          return this.fail(new SpiceError('protocol', `The server speaks SPICE protocol ${header.major}.${header.minor}; spice-smartcard needs 2.x.`));
        }
        if (header.size < 4 || header.size > MAX_LINK_BODY_SIZE) {
          return this.fail(new SpiceError('protocol', `The server sent a link reply of ${header.size} bytes, which is not a valid size.`));
        }
        this.replySize = header.size;
        this.stage = 'reply-body';
        continue;
      }
      if (this.stage === 'reply-body') {
        if (this.buffered < this.replySize) break;
        let reply;
        try {
          reply = decodeLinkReply(this.take(this.replySize));
        } catch (e) {
          const detail = e instanceof LinkDecodeError ? e.message : String(e);
          return this.fail(new SpiceError('protocol', `The server sent a malformed link reply: ${detail}.`));
        }
        if (reply.error !== LinkError.OK) return this.fail(linkFailure(reply.error, this.channel));
        const auth = hasCap(reply.commonCaps, CommonCap.AUTH_SPICE);
        const sasl = hasCap(reply.commonCaps, CommonCap.AUTH_SASL);
        if (sasl && !auth) {
          return this.fail(new SpiceError('auth', 'The server only offers SASL authentication, which spice-smartcard does not support. Ask for SPICE ticket (password) authentication.'));
        }
        this.miniHeader = hasCap(reply.commonCaps, CommonCap.MINI_HEADER);
        this.serverCommonCaps = reply.commonCaps;
        this.serverChannelCaps = reply.channelCaps;
        const encrypt = this.options.encrypt ?? encryptTicket;
        let ticket: Uint8Array;
        try {
          ticket = encrypt(reply.pubKey, this.options.password);
        } catch (e) {
          return this.fail(new SpiceError('protocol', `Could not encrypt the ticket with the server's key: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
        }
        send = new LeWriter(4 + ticket.byteLength).u32(AUTH_MECHANISM_SPICE).raw(ticket).done();
        this.stage = 'result';
        continue;
      }
      if (this.stage === 'result') {
        if (this.buffered < 4) break;
        const resultBytes = this.take(4);
        const result = view(resultBytes).getUint32(0, true);
        if (result === SPICE_MAGIC) {
          // The server wrote a whole new link reply instead of a result: it refused our auth selection.
          return this.fail(new SpiceError('auth', 'The server refused SPICE ticket authentication (it probably requires SASL, which spice-smartcard does not support).'));
        }
        if (result !== LinkError.OK) return this.fail(linkFailure(result, this.channel));
        this.stage = 'done';
        const rest = this.buffered > 0 ? this.take(this.buffered) : new Uint8Array(0);
        const link = { miniHeader: this.miniHeader, serverCommonCaps: this.serverCommonCaps, serverChannelCaps: this.serverChannelCaps, rest };
        return send === undefined ? { kind: 'established', link } : { kind: 'established', link, send };
      }
      break;
    }
    return send === undefined ? { kind: 'pending' } : { kind: 'pending', send };
  }

  /**
   * The stream ended before the handshake finished. For a non-main channel, EOF right after the link
   * message is how spice-server says the channel does not exist.
   */
  endOfStream(): SpiceError {
    const stage = this.stage;
    this.stage = 'failed';
    if (stage === 'reply-header' && this.buffered === 0) {
      if (this.options.channelType === 1) {
        return new SpiceError('network', 'The server closed the connection before answering the link. Check that HOST:PORT is the SPICE port of the VM.');
      }
      return new SpiceError('channel-missing', `The server closed the ${this.channel} channel without answering: the VM has no ${this.channel} device.`);
    }
    if (stage === 'result') {
      return new SpiceError('network', `The server closed the ${this.channel} channel during authentication, before saying whether the password was accepted.`);
    }
    return new SpiceError('network', `The server closed the ${this.channel} channel in the middle of the link reply.`);
  }

  private fail(error: SpiceError): LinkProgress {
    this.stage = 'failed';
    return { kind: 'failed', error };
  }

  private magicMatches(): boolean {
    const head = this.peek(4);
    return head.every((b, i) => b === SPICE_MAGIC_BYTES[i]);
  }

  private peek(n: number): Uint8Array {
    const all = concatBytes(this.chunks);
    this.chunks.length = 0;
    this.chunks.push(all);
    return all.subarray(0, n);
  }

  private take(n: number): Uint8Array {
    const all = concatBytes(this.chunks);
    this.chunks.length = 0;
    const head = all.subarray(0, n);
    const tail = all.subarray(n);
    if (tail.byteLength > 0) this.chunks.push(tail);
    this.buffered -= n;
    return head;
  }
}
