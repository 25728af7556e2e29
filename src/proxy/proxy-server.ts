// The loopback SPICE proxy: accepts viewer connections, gives each to a ViewerConnection, and
// turns what they see into proxy events: the viewer's channels, and each new session (INIT on a
// main channel) with the password the server accepted for it. It knows nothing of cards.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { ChannelType, channelName } from '../../spice/constants.js';
import { SpiceError } from '../../spice/errors.js';
import type { LinkMess } from '../../spice/link-codec.js';
import type { ChannelId, SwitchHost } from '../../spice/messages.js';
import type { Transport } from '../../spice/transport.js';
import { Credentials } from './credentials.js';
import { createProxyKey, type ProxyKey } from './proxy-key.js';
import { ViewerConnection, type ViewerChannel } from './viewer-connection.js';

export type ViewerChannelState = 'opened' | 'local' | 'closed' | 'failed';

export interface ViewerChannelEvent {
  connection: number;
  channel: string;
  type: number;
  id: number;
  state: ViewerChannelState;
  sessionId?: number;
  secure?: boolean;
  reason?: string;
}

export interface ProxySession {
  sessionId: number;
  /** The password the server accepted on this session's main link ('' when it was not readable). */
  password: string;
  /** Where that password came from: the proxy's own, or the viewer's ticket. */
  source: ViewerChannel['source'];
}

export type ProxyServerEvents = {
  'viewer-channel': [event: ViewerChannelEvent];
  session: [session: ProxySession];
  'session-ended': [sessionId: number];
  channels: [sessionId: number, channels: ChannelId[]];
  'switch-host': [target: SwitchHost];
  note: [level: 'debug' | 'info' | 'warn', text: string];
};

export interface ProxyServerOptions {
  transport: Transport;
  secureChannels: ReadonlySet<number> | 'all';
  credentials: Credentials;
  host: string;
  /** 0 for a free port. */
  port: number;
  /**
   * Answer the viewer's own smartcard link in the proxy, so the smartcard channel of the session
   * stays free for the proxy's card (default true).
   */
  keepSmartcard?: boolean;
  linkTimeoutMs?: number;
  /** Viewers open a handful of channels each; beyond this a local flood is refused. */
  maxConnections?: number;
  /** Key factory, for tests; a fresh RSA-1024 key per link by default. */
  makeKey?: () => Promise<ProxyKey>;
}

const DEFAULT_LINK_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_CONNECTIONS = 64;
const CLOSE_BOUND_MS = 3_000;

export class ProxyServer extends EventEmitter<ProxyServerEvents> {
  private readonly server: net.Server;
  private readonly options: ProxyServerOptions;
  private readonly connections = new Set<ViewerConnection>();
  private nextConnection = 1;
  private closing: Promise<void> | undefined;
  private addressValue: { host: string; port: number } | undefined;

  private constructor(options: ProxyServerOptions) {
    super();
    this.options = options;
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Starts listening; rejects with a SpiceError a user can act on (address in use, not local...). */
  static async listen(options: ProxyServerOptions): Promise<ProxyServer> {
    const proxy = new ProxyServer(options);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        const where = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
        const text =
          e.code === 'EADDRINUSE'
            ? `Cannot listen on ${where}: the port is in use. Pick another with --listen, or 127.0.0.1:0 for any free port.`
            : e.code === 'EADDRNOTAVAIL'
              ? `Cannot listen on ${where}: that address is not on this machine.`
              : `Cannot listen on ${where}: ${e.code ?? e.message}.`;
        reject(new SpiceError('network', text, { cause: e }));
      };
      proxy.server.once('error', onError);
      proxy.server.listen({ host: options.host, port: options.port, exclusive: true }, () => {
        proxy.server.off('error', onError);
        resolve();
      });
    });
    const address = proxy.server.address();
    if (address === null || typeof address === 'string') throw new SpiceError('network', 'The proxy has no TCP address.');
    proxy.addressValue = { host: address.address, port: address.port };
    proxy.server.on('error', (e) => proxy.emit('note', 'warn', `proxy listener error: ${e.message}`));
    return proxy;
  }

  get address(): { host: string; port: number } {
    return this.addressValue!;
  }

  /** Viewer connections open right now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops listening and closes every viewer connection; bounded. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      const all = [...this.connections].map((c) => c.close(undefined));
      await Promise.race([Promise.all([stopped, ...all]), delay(CLOSE_BOUND_MS)]);
    })();
    return this.closing;
  }

  private accept(socket: net.Socket): void {
    if (this.closing !== undefined || this.connections.size >= (this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
      socket.on('error', () => undefined);
      socket.destroy();
      if (this.closing === undefined) this.emit('note', 'warn', `refused a viewer connection: ${this.connections.size} are open already`);
      return;
    }
    const number = this.nextConnection++;
    const keep = this.options.keepSmartcard !== false;
    const secure = this.options.secureChannels;
    const transport = this.options.transport;
    const connection = new ViewerConnection(socket, {
      connection: number,
      transport,
      credentials: this.options.credentials,
      secureFirst: (type) => secure === 'all' || secure.has(type) || !transport.canPlain,
      answerLocally: (mess: LinkMess) => keep && mess.channelType === ChannelType.SMARTCARD,
      key: (this.options.makeKey ?? createProxyKey)(),
      linkTimeoutMs: this.options.linkTimeoutMs ?? DEFAULT_LINK_TIMEOUT_MS,
    });
    this.connections.add(connection);
    connection.on('note', (level, text) => this.emit('note', level, `viewer connection ${number}: ${text}`));
    connection.on('opened', (channel) => {
      const event: ViewerChannelEvent = { connection: number, channel: channel.name, type: channel.type, id: channel.id, state: channel.local ? 'local' : 'opened', secure: channel.secure };
      if (channel.sessionId !== undefined) event.sessionId = channel.sessionId;
      this.emit('viewer-channel', event);
    });
    connection.on('sniff', (event, channel) => {
      switch (event.kind) {
        case 'init':
          this.emit('session', { sessionId: event.sessionId, password: channel.password ?? '', source: channel.source });
          break;
        case 'channels':
          if (channel.sessionId !== undefined) this.emit('channels', channel.sessionId, event.channels);
          break;
        case 'switch-host':
          this.emit('switch-host', event.target);
          break;
        case 'lost':
          this.emit('note', 'warn', `viewer connection ${number}: stopped following the main channel (${event.reason}); the card will not follow a new session on it`);
          break;
      }
    });
    connection.on('closed', (channel, reason, mess) => {
      this.connections.delete(connection);
      if (channel !== undefined) {
        const event: ViewerChannelEvent = { connection: number, channel: channel.name, type: channel.type, id: channel.id, state: 'closed' };
        if (channel.sessionId !== undefined) event.sessionId = channel.sessionId;
        if (reason !== undefined) event.reason = reason;
        this.emit('viewer-channel', event);
        if (channel.type === ChannelType.MAIN && channel.sessionId !== undefined) this.emit('session-ended', channel.sessionId);
      } else if (mess !== undefined) {
        this.emit('viewer-channel', {
          connection: number,
          channel: channelName(mess.channelType),
          type: mess.channelType,
          id: mess.channelId,
          state: 'failed',
          reason: reason ?? 'the link did not complete',
        });
      } else if (reason !== undefined) {
        this.emit('note', 'info', `viewer connection ${number} closed before linking: ${reason}`);
      }
    });
    void connection.start();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
