// One TCP connection from the viewer, i.e. one SPICE channel: runs the LinkBroker between the
// viewer socket and a stream opened through the Transport, then relays both ways. This module and
// proxy-server.ts are the only places in src/proxy/ that touch sockets.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ChannelType, channelName } from '../../spice/constants.js';
import type { LinkMess } from '../../spice/link-codec.js';
import type { Transport } from '../../spice/transport.js';
import type { Credentials, TicketSource } from './credentials.js';
import { LinkBroker, type BrokerAction, type BrokeredLink } from './link-broker.js';
import { MainStreamSniffer, type SniffEvent } from './main-sniffer.js';
import type { ProxyKey } from './proxy-key.js';
import { relay, type RelayStats } from './relay.js';

export interface ViewerChannel {
  /** The proxy's number for this viewer connection (for logs). */
  connection: number;
  type: number;
  id: number;
  name: string;
  /** The session it belongs to: the link's connection id, or INIT's session id for a main channel. */
  sessionId: number | undefined;
  secure: boolean;
  /** Answered by the proxy, not linked upstream. */
  local: boolean;
  password: string | undefined;
  source: TicketSource | 'sasl' | undefined;
}

export type ViewerConnectionEvents = {
  opened: [channel: ViewerChannel];
  sniff: [event: SniffEvent, channel: ViewerChannel];
  note: [level: 'info' | 'warn', text: string];
  /** `channel` is undefined when the link never completed; `reason` is undefined for an ordinary close. */
  closed: [channel: ViewerChannel | undefined, reason: string | undefined, mess: LinkMess | undefined];
};

export interface ViewerConnectionOptions {
  connection: number;
  transport: Transport;
  credentials: Credentials;
  secureFirst: (channelType: number) => boolean;
  answerLocally: (mess: LinkMess) => boolean;
  key: Promise<ProxyKey>;
  linkTimeoutMs: number;
}

/** How long a closing connection may take to flush before it is cut. */
const CLOSE_GRACE_MS = 2_000;

export class ViewerConnection extends EventEmitter<ViewerConnectionEvents> {
  private readonly viewer: Socket;
  private readonly options: ViewerConnectionOptions;
  private broker: LinkBroker | undefined;
  private upstream: Duplex | undefined;
  private upstreamGeneration = 0;
  private readonly abort = new AbortController();
  private linkTimer: NodeJS.Timeout | undefined;
  private channel: ViewerChannel | undefined;
  private closing: Promise<void> | undefined;
  private stats: { up: RelayStats; down: RelayStats } | undefined;
  private readonly onViewerData = (chunk: Buffer): void => this.guard(() => this.apply(this.broker?.fromViewer(chunk) ?? []));
  private readonly onViewerEnd = (): void =>
    this.guard(() => {
      if (this.channel === undefined) this.apply(this.broker?.viewerEnded() ?? []);
      else void this.close(undefined);
    });

  constructor(viewer: Socket, options: ViewerConnectionOptions) {
    super();
    this.viewer = viewer;
    this.options = options;
  }

  get info(): ViewerChannel | undefined {
    return this.channel;
  }

  /** Bytes relayed so far, viewer→server and server→viewer. */
  get relayed(): { up: number; down: number } {
    return { up: this.stats?.up.bytes ?? 0, down: this.stats?.down.bytes ?? 0 };
  }

  async start(): Promise<void> {
    const viewer = this.viewer;
    viewer.setNoDelay(true);
    viewer.pause();
    viewer.on('error', (e: NodeJS.ErrnoException) => void this.close(`viewer connection error: ${e.code ?? e.message}`));
    viewer.once('close', () => void this.close(undefined));
    this.linkTimer = setTimeout(() => void this.close(`the ${this.broker?.channel ?? 'unknown'} link did not complete within ${Math.round(this.options.linkTimeoutMs / 1000)} s`), this.options.linkTimeoutMs);
    let key: ProxyKey;
    try {
      key = await this.options.key;
    } catch (e) {
      void this.close(`could not make the proxy's RSA key: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (this.closing !== undefined) return;
    this.broker = new LinkBroker({
      key,
      credentials: this.options.credentials,
      secureFirst: this.options.secureFirst,
      canSecure: this.options.transport.canSecure,
      answerLocally: this.options.answerLocally,
    });
    viewer.on('data', this.onViewerData);
    viewer.once('end', this.onViewerEnd);
    viewer.resume();
  }

  /** Ends both sides, flushing first; bounded by a short grace period. */
  close(reason: string | undefined): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    clearTimeout(this.linkTimer);
    this.abort.abort();
    const streams = [this.viewer, this.upstream].filter((s): s is Duplex => s !== undefined && !s.destroyed);
    this.closing = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const s of streams) s.destroy();
        resolve();
      }, CLOSE_GRACE_MS);
      timer.unref();
      let open = streams.length;
      if (open === 0) {
        clearTimeout(timer);
        resolve();
        return;
      }
      for (const s of streams) {
        s.once('close', () => {
          if (--open === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
        s.on('error', () => undefined);
        s.end();
      }
    });
    this.emit('closed', this.channel, reason, this.broker?.linkMess);
    return this.closing;
  }

  /** One connection's failure, even a bug, closes that connection only: never the proxy. */
  private guard(work: () => void): void {
    try {
      work();
    } catch (e) {
      void this.close(`internal error on this connection: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private apply(actions: BrokerAction[]): void {
    for (const action of actions) {
      if (this.closing !== undefined) return;
      switch (action.kind) {
        case 'open-upstream':
          this.openUpstream(action.secure, action.send);
          break;
        case 'to-server':
          this.upstream?.write(action.bytes);
          break;
        case 'to-viewer':
          this.viewer.write(action.bytes);
          break;
        case 'note':
          this.emit('note', action.level, action.text);
          break;
        case 'relay':
          this.startRelay(action.link);
          break;
        case 'local':
          this.answerLocally(action.mess);
          break;
        case 'close':
          void this.close(action.reason);
          break;
      }
    }
  }

  private openUpstream(secure: boolean, send: Uint8Array): void {
    const generation = ++this.upstreamGeneration;
    const previous = this.upstream;
    this.upstream = undefined;
    previous?.destroy();
    this.options.transport.open(secure, this.abort.signal).then(
      (stream) => {
        if (generation !== this.upstreamGeneration || this.closing !== undefined) {
          stream.destroy();
          return;
        }
        this.upstream = stream;
        const current = (): boolean => generation === this.upstreamGeneration && this.channel === undefined;
        stream.on('error', (e: NodeJS.ErrnoException) => {
          if (generation === this.upstreamGeneration) void this.close(`server connection error: ${e.code ?? e.message}`);
        });
        const onData = (chunk: Buffer): void =>
          this.guard(() => {
            if (current()) this.apply(this.broker?.fromServer(chunk) ?? []);
          });
        const onEnd = (): void =>
          this.guard(() => {
            if (current()) this.apply(this.broker?.serverEnded() ?? []);
            else if (generation === this.upstreamGeneration) void this.close(undefined);
          });
        stream.on('data', onData);
        stream.once('end', onEnd);
        stream.once('close', onEnd);
        stream.write(send);
        stream.resume();
      },
      (e: unknown) => {
        if (generation !== this.upstreamGeneration) return;
        void this.close(`could not reach the server for the ${this.broker?.channel ?? 'unknown'} channel: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
  }

  private startRelay(link: BrokeredLink): void {
    clearTimeout(this.linkTimer);
    const upstream = this.upstream!;
    const viewer = this.viewer;
    upstream.removeAllListeners('data');
    viewer.off('data', this.onViewerData);
    const isMain = link.mess.channelType === ChannelType.MAIN;
    this.channel = {
      connection: this.options.connection,
      type: link.mess.channelType,
      id: link.mess.channelId,
      name: channelName(link.mess.channelType),
      sessionId: isMain ? undefined : link.mess.connectionId,
      secure: link.secure,
      local: false,
      password: link.password,
      source: link.source,
    };
    const channel = this.channel;
    let tap: ((chunk: Uint8Array) => void) | undefined;
    if (isMain && link.sniffable) {
      const sniffer = new MainStreamSniffer({ miniHeader: link.miniHeader });
      // Whatever a listener does with the session, the bytes keep flowing.
      tap = (chunk) => {
        try {
          for (const event of sniffer.push(chunk)) {
            if (event.kind === 'init') channel.sessionId = event.sessionId;
            this.emit('sniff', event, channel);
          }
        } catch (e) {
          this.emit('note', 'warn', `following the main channel failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      };
    }
    this.emit('opened', channel);
    if (link.serverRest.byteLength > 0) {
      viewer.write(link.serverRest);
      tap?.(link.serverRest);
    }
    if (link.viewerRest.byteLength > 0) upstream.write(link.viewerRest);
    const down = relay(upstream, viewer, tap === undefined ? {} : { tap });
    const up = relay(viewer, upstream);
    this.stats = { up, down };
  }

  private answerLocally(mess: LinkMess): void {
    clearTimeout(this.linkTimer);
    this.viewer.off('data', this.onViewerData);
    // Whatever the viewer sends on a channel the proxy keeps for itself is read and dropped.
    this.viewer.on('data', () => undefined);
    this.channel = {
      connection: this.options.connection,
      type: mess.channelType,
      id: mess.channelId,
      name: channelName(mess.channelType),
      sessionId: mess.connectionId,
      secure: false,
      local: true,
      password: undefined,
      source: undefined,
    };
    this.emit('opened', this.channel);
  }
}
