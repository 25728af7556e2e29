// The link stage of one viewer connection, seen from the middle: the viewer's link message goes
// upstream as it is, the server's reply comes back with the proxy's RSA key in place of the
// server's (same 162 bytes, so no size moves), the viewer's ticket is decrypted and a ticket for
// the server is made (see credentials.ts), and the link result goes back as it is. NEED_SECURED is
// handled here: the same link is sent again over TLS and the viewer never sees it.
// Pure: bytes and end-of-stream in, actions out; the caller owns the sockets.
import {
  AUTH_MECHANISM_SPICE,
  CommonCap,
  LINK_HEADER_SIZE,
  LINK_MESS_SIZE,
  LinkError,
  SPICE_MAGIC_BYTES,
  SPICE_VERSION_MAJOR,
  TICKET_SIZE,
  channelName,
  linkErrorName,
} from '../../spice/constants.js';
import { LeWriter, view } from '../../spice/bytes.js';
import {
  LinkDecodeError,
  MAX_LINK_BODY_SIZE,
  capsWords,
  decodeLinkHeader,
  decodeLinkMess,
  decodeLinkReply,
  encodeLinkReply,
  hasCap,
  type LinkMess,
} from '../../spice/link-codec.js';
import { encryptTicketPlaintext } from '../../spice/ticket.js';
import { ByteQueue } from './byte-queue.js';
import type { Credentials, TicketSource } from './credentials.js';
import type { ProxyKey } from './proxy-key.js';

export type BrokerStage = 'viewer-link' | 'server-reply' | 'viewer-auth' | 'server-result' | 'local-auth' | 'relaying' | 'local' | 'closed';

export interface BrokeredLink {
  mess: LinkMess;
  secure: boolean;
  /** Framing of the data phase: mini headers iff the viewer asked for them and the server offered them. */
  miniHeader: boolean;
  /** False after a SASL exchange: the proxy cannot tell where the data phase starts, so it only relays. */
  sniffable: boolean;
  /** The password the server accepted, when the proxy knows it. */
  password: string | undefined;
  source: TicketSource | 'sasl';
  /** Bytes that already belong to the data phase. */
  viewerRest: Uint8Array;
  serverRest: Uint8Array;
}

export type BrokerAction =
  /** Open a stream to the server (closing any earlier one) and send `send` on it. */
  | { kind: 'open-upstream'; secure: boolean; reopen: boolean; send: Uint8Array }
  | { kind: 'to-server'; bytes: Uint8Array }
  | { kind: 'to-viewer'; bytes: Uint8Array }
  /** For the user: 'warn' when it changes what the proxy can do, 'info' otherwise. */
  | { kind: 'note'; level: 'info' | 'warn'; text: string }
  /** Link done: relay both ways from now on. */
  | { kind: 'relay'; link: BrokeredLink }
  /** The viewer's link was answered by the proxy; discard whatever the viewer sends from now on. */
  | { kind: 'local'; mess: LinkMess }
  /** Close both sides once what was queued for the viewer is flushed. */
  | { kind: 'close'; reason: string; linkError?: number };

export interface LinkBrokerOptions {
  key: ProxyKey;
  credentials: Credentials;
  /** The channel starts on TLS (secure-channels, or no plain port). */
  secureFirst: (channelType: number) => boolean;
  /** A TLS port (or TLS inside the tunnel) exists, so NEED_SECURED can be followed. */
  canSecure: boolean;
  /** Answer this link in the proxy instead of linking it upstream. */
  answerLocally: (mess: LinkMess) => boolean;
  encrypt?: (serverKeyDer: Uint8Array, plaintext: Uint8Array) => Uint8Array;
}

/** What spice-server advertises; a locally answered viewer sees the same. */
const LOCAL_COMMON_CAPS = capsWords([CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER]);
const PUBKEY_OFFSET = LINK_HEADER_SIZE + 4;

function u32le(n: number): Uint8Array {
  return new LeWriter(4).u32(n).done();
}

function isMagic(bytes: Uint8Array): boolean {
  return SPICE_MAGIC_BYTES.every((b, i) => bytes[i] === b);
}

export class LinkBroker {
  private stageValue: BrokerStage = 'viewer-link';
  private readonly viewerBytes = new ByteQueue();
  private readonly serverBytes = new ByteQueue();
  private readonly options: LinkBrokerOptions;
  private mess: LinkMess | undefined;
  private linkBytes: Uint8Array | undefined;
  private secure = false;
  private replySize: number | undefined;
  private serverKey: Uint8Array | undefined;
  private serverCommonCaps: number[] = [];
  private mechanism: Uint8Array | undefined;
  private choice: { password: string | undefined; source: TicketSource } | undefined;

  constructor(options: LinkBrokerOptions) {
    this.options = options;
  }

  get stage(): BrokerStage {
    return this.stageValue;
  }

  /** The viewer's link message, once read. */
  get linkMess(): LinkMess | undefined {
    return this.mess;
  }

  get channel(): string {
    return this.mess === undefined ? 'unknown' : channelName(this.mess.channelType);
  }

  /** The link stage is over: the caller relays, holds a local channel, or has closed. */
  get over(): boolean {
    return this.stageValue === 'relaying' || this.stageValue === 'local' || this.stageValue === 'closed';
  }

  fromViewer(chunk: Uint8Array): BrokerAction[] {
    if (this.over) return [];
    this.viewerBytes.push(chunk);
    return this.advance();
  }

  fromServer(chunk: Uint8Array): BrokerAction[] {
    if (this.over) return [];
    this.serverBytes.push(chunk);
    return this.advance();
  }

  viewerEnded(): BrokerAction[] {
    if (this.over) return [];
    return [this.close(`the viewer closed the ${this.channel} connection during the link`)];
  }

  serverEnded(): BrokerAction[] {
    if (this.over) return [];
    if (this.stageValue === 'server-reply' && this.serverBytes.length === 0) {
      // spice-server's way of saying "no such channel"; the viewer learns it the same way.
      return [this.close(`the server closed the ${this.channel} link without answering: the VM has no such channel`)];
    }
    return [this.close(`the server closed the ${this.channel} connection during the link (stage ${this.stageValue})`)];
  }

  private close(reason: string, linkError?: number): BrokerAction {
    this.stageValue = 'closed';
    return linkError === undefined ? { kind: 'close', reason } : { kind: 'close', reason, linkError };
  }

  private advance(): BrokerAction[] {
    const out: BrokerAction[] = [];
    while (this.step(out)) {
      // each step consumed a whole field and moved on; try the next one
    }
    return out;
  }

  /** One step of progress; false when more bytes are needed or the link stage is over. */
  private step(out: BrokerAction[]): boolean {
    switch (this.stageValue) {
      case 'viewer-link':
        return this.readViewerLink(out);
      case 'server-reply':
        return this.readServerReply(out);
      case 'viewer-auth':
        return this.readViewerAuth(out);
      case 'server-result':
        return this.readServerResult(out);
      case 'local-auth':
        return this.readLocalAuth(out);
      default:
        return false;
    }
  }

  private readViewerLink(out: BrokerAction[]): boolean {
    const q = this.viewerBytes;
    if (q.length >= 4 && !isMagic(q.peek(4))) {
      out.push(this.close('the viewer did not start with the SPICE magic "REDQ": not a SPICE client'));
      return false;
    }
    if (q.length < LINK_HEADER_SIZE) return false;
    const header = decodeLinkHeader(q.peek(LINK_HEADER_SIZE));
    if (header.major !== SPICE_VERSION_MAJOR || header.size < LINK_MESS_SIZE || header.size > MAX_LINK_BODY_SIZE) {
      out.push(this.close(`the viewer sent an unusable link header (protocol ${header.major}.${header.minor}, ${header.size} bytes)`));
      return false;
    }
    if (q.length < LINK_HEADER_SIZE + header.size) return false;
    const bytes = q.take(LINK_HEADER_SIZE + header.size);
    try {
      this.mess = decodeLinkMess(bytes.subarray(LINK_HEADER_SIZE));
    } catch (e) {
      out.push(this.close(`the viewer sent a malformed link message: ${e instanceof LinkDecodeError ? e.message : String(e)}`));
      return false;
    }
    this.linkBytes = bytes;
    if (this.options.answerLocally(this.mess)) {
      const reply = encodeLinkReply({ error: LinkError.OK, pubKey: this.options.key.spki, commonCaps: LOCAL_COMMON_CAPS, channelCaps: [] });
      out.push({ kind: 'to-viewer', bytes: reply });
      this.stageValue = 'local-auth';
      return true;
    }
    this.secure = this.options.secureFirst(this.mess.channelType);
    out.push({ kind: 'open-upstream', secure: this.secure, reopen: false, send: bytes });
    this.stageValue = 'server-reply';
    return true;
  }

  private readServerReply(out: BrokerAction[]): boolean {
    const q = this.serverBytes;
    if (this.replySize === undefined) {
      if (q.length >= 4 && !isMagic(q.peek(4))) {
        out.push(this.close(`the server did not answer the ${this.channel} link with the SPICE magic: check that the target is a SPICE port`));
        return false;
      }
      if (q.length < LINK_HEADER_SIZE) return false;
      const header = decodeLinkHeader(q.peek(LINK_HEADER_SIZE));
      if (header.major !== SPICE_VERSION_MAJOR || header.size < 4 || header.size > MAX_LINK_BODY_SIZE) {
        out.push(this.close(`the server sent an unusable link reply header (protocol ${header.major}.${header.minor}, ${header.size} bytes)`));
        return false;
      }
      this.replySize = header.size;
    }
    if (q.length < LINK_HEADER_SIZE + this.replySize) return false;
    const bytes = q.take(LINK_HEADER_SIZE + this.replySize);
    this.replySize = undefined;
    let reply;
    try {
      reply = decodeLinkReply(bytes.subarray(LINK_HEADER_SIZE));
    } catch (e) {
      out.push(this.close(`the server sent a malformed link reply: ${e instanceof LinkDecodeError ? e.message : String(e)}`));
      return false;
    }
    if (reply.error === LinkError.NEED_SECURED && !this.secure && this.options.canSecure) {
      this.secure = true;
      out.push({ kind: 'note', level: 'info', text: `${this.channel}: the server requires TLS; linking it again over TLS` });
      // Anything after the refusal belongs to the connection being dropped.
      q.takeAll();
      out.push({ kind: 'open-upstream', secure: true, reopen: true, send: this.linkBytes! });
      return true;
    }
    if (reply.error !== LinkError.OK) {
      out.push({ kind: 'to-viewer', bytes });
      out.push(this.close(`the server refused the ${this.channel} link: ${linkErrorName(reply.error)}`, reply.error));
      return false;
    }
    this.serverKey = new Uint8Array(reply.pubKey);
    this.serverCommonCaps = reply.commonCaps;
    const toViewer = new Uint8Array(bytes);
    toViewer.set(this.options.key.spki, PUBKEY_OFFSET);
    out.push({ kind: 'to-viewer', bytes: toViewer });
    this.stageValue = 'viewer-auth';
    return true;
  }

  private readViewerAuth(out: BrokerAction[]): boolean {
    const q = this.viewerBytes;
    const selects = hasCap(this.mess!.commonCaps, CommonCap.PROTOCOL_AUTH_SELECTION);
    if (selects && this.mechanism === undefined) {
      if (q.length < 4) return false;
      this.mechanism = q.take(4);
      if (view(this.mechanism).getUint32(0, true) !== AUTH_MECHANISM_SPICE) {
        // SASL: its exchange carries no RSA ticket; relay it untouched and stay out of the data phase.
        out.push({ kind: 'to-server', bytes: this.mechanism });
        out.push({ kind: 'note', level: 'warn', text: `${this.channel}: the viewer chose SASL authentication; it is relayed as it is, and the card cannot be added to a SASL session` });
        this.stageValue = 'relaying';
        out.push({ kind: 'relay', link: this.established(false, undefined, 'sasl') });
        return false;
      }
    }
    if (q.length < TICKET_SIZE) return false;
    const viewerTicket = q.take(TICKET_SIZE);
    const choice = this.options.credentials.choose(this.options.key.decrypt(viewerTicket));
    let ticket = viewerTicket;
    if (choice.plaintext !== undefined) {
      const encrypt = this.options.encrypt ?? encryptTicketPlaintext;
      try {
        ticket = encrypt(this.serverKey!, choice.plaintext);
      } catch (e) {
        out.push(this.close(`could not encrypt the ticket with the server's key: ${e instanceof Error ? e.message : String(e)}`));
        return false;
      }
    }
    this.choice = { password: choice.password, source: choice.source };
    const send = new Uint8Array((this.mechanism?.byteLength ?? 0) + TICKET_SIZE);
    if (this.mechanism !== undefined) send.set(this.mechanism, 0);
    send.set(ticket, send.byteLength - TICKET_SIZE);
    out.push({ kind: 'to-server', bytes: send });
    this.stageValue = 'server-result';
    return true;
  }

  private readServerResult(out: BrokerAction[]): boolean {
    const q = this.serverBytes;
    if (q.length < 4) return false;
    const bytes = q.take(4);
    out.push({ kind: 'to-viewer', bytes });
    const result = view(bytes).getUint32(0, true);
    if (result !== LinkError.OK) {
      if (result === LinkError.PERMISSION_DENIED && this.options.credentials.refused(this.choice!.source)) {
        out.push({ kind: 'note', level: 'warn', text: "the server refused the proxy's password; from now on the viewer's own password is passed on" });
      }
      out.push(this.close(`the server refused the ${this.channel} link: ${linkErrorName(result)}`, result));
      return false;
    }
    this.stageValue = 'relaying';
    out.push({ kind: 'relay', link: this.established(true, this.choice!.password, this.choice!.source) });
    return false;
  }

  private readLocalAuth(out: BrokerAction[]): boolean {
    const q = this.viewerBytes;
    const selects = hasCap(this.mess!.commonCaps, CommonCap.PROTOCOL_AUTH_SELECTION);
    const need = (selects ? 4 : 0) + TICKET_SIZE;
    if (q.length < need) return false;
    q.take(need);
    q.takeAll();
    out.push({ kind: 'to-viewer', bytes: u32le(LinkError.OK) });
    this.stageValue = 'local';
    out.push({ kind: 'local', mess: this.mess! });
    return false;
  }

  private established(sniffable: boolean, password: string | undefined, source: TicketSource | 'sasl'): BrokeredLink {
    const mini = hasCap(this.mess!.commonCaps, CommonCap.MINI_HEADER) && hasCap(this.serverCommonCaps, CommonCap.MINI_HEADER);
    return {
      mess: this.mess!,
      secure: this.secure,
      miniHeader: mini,
      sniffable,
      password,
      source,
      viewerRest: this.viewerBytes.takeAll(),
      serverRest: this.serverBytes.takeAll(),
    };
  }
}

