// A SPICE client session: the main channel (link with connection id 0, INIT, ATTACH_CHANNELS,
// CHANNELS_LIST, pings) and the other channels it opens into the session by its id.
// States follow an explicit transition table; `closed` is terminal; teardown is bounded.
import { EventEmitter } from 'node:events';
import { ChannelType, MainCap, MainMsg, MainMsgc, channelName } from './constants.js';
import { SpiceChannel } from './channel.js';
import { SpiceError } from './errors.js';
import { capsWords } from './link-codec.js';
import {
  decodeChannelsList,
  decodeMainInit,
  decodeMainName,
  decodeMainUuid,
  decodeSwitchHost,
  type ChannelId,
  type Notify,
  type SwitchHost,
} from './messages.js';
import type { Transport } from './transport.js';

export type SessionState = 'idle' | 'connecting' | 'initializing' | 'ready' | 'closing' | 'closed';

const TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = {
  idle: ['connecting', 'closed'],
  connecting: ['initializing', 'closing', 'closed'],
  initializing: ['ready', 'closing', 'closed'],
  ready: ['closing', 'closed'],
  closing: ['closed'],
  closed: [],
};

export interface SessionOptions {
  transport: Transport;
  password: string;
  /** Channel types that must use TLS from the start (virt-viewer's secure-channels); 'all' for every one. */
  secureChannels?: ReadonlySet<number> | 'all';
  /** How long to wait for INIT and the channel list after the main link. */
  initTimeoutMs?: number;
  linkTimeoutMs?: number;
}

export interface ChannelInfo extends ChannelId {
  name: string;
}

export type SessionLogLevel = 'debug' | 'info' | 'warn';

export type SessionEvents = {
  state: [state: SessionState];
  notify: [notify: Notify];
  channels: [channels: ChannelInfo[]];
  'switch-host': [target: SwitchHost];
  log: [level: SessionLogLevel, message: string];
  closed: [error: SpiceError | undefined];
};

const DEFAULT_INIT_TIMEOUT_MS = 20_000;
const CLOSE_TIMEOUT_MS = 3_000;

export class SpiceSession extends EventEmitter<SessionEvents> {
  private stateValue: SessionState = 'idle';
  private main: SpiceChannel | undefined;
  private readonly others = new Set<SpiceChannel>();
  private readonly options: SessionOptions;
  private sessionIdValue: number | undefined;
  private channelList: ChannelInfo[] | undefined;
  private vmName: string | undefined;
  private vmUuid: string | undefined;
  private closeError: SpiceError | undefined;

  constructor(options: SessionOptions) {
    super();
    this.options = options;
  }

  get state(): SessionState {
    return this.stateValue;
  }

  get sessionId(): number | undefined {
    return this.sessionIdValue;
  }

  get channels(): readonly ChannelInfo[] {
    return this.channelList ?? [];
  }

  get name(): string | undefined {
    return this.vmName;
  }

  get uuid(): string | undefined {
    return this.vmUuid;
  }

  /** PINGs answered on the main channel: the server's net test sends three right after the link. */
  get mainPingsAnswered(): number {
    return this.main?.pingsAnswered ?? 0;
  }

  get mainSecure(): boolean {
    return this.main?.secure ?? false;
  }

  hasChannel(type: number, id = 0): boolean {
    return this.channels.some((c) => c.type === type && c.id === id);
  }

  /** Links the main channel and waits for the session id and the server's channel list. */
  async connect(signal?: AbortSignal): Promise<void> {
    this.transition('connecting');
    let main: SpiceChannel;
    try {
      main = await SpiceChannel.link(this.linkOptions(ChannelType.MAIN, 0, 0, capsWords([MainCap.NAME_AND_UUID]), signal));
    } catch (e) {
      const error = e instanceof SpiceError ? e : new SpiceError('network', String(e), { cause: e });
      this.finish(error);
      throw error;
    }
    if (this.stateValue !== 'connecting') {
      await main.close();
      throw this.closeError ?? new SpiceError('network', 'The session was closed while connecting.');
    }
    this.main = main;
    this.transition('initializing');
    const ready = new Promise<void>((resolve, reject) => {
      const timeoutMs = this.options.initTimeoutMs ?? DEFAULT_INIT_TIMEOUT_MS;
      const timer = setTimeout(() => {
        reject(new SpiceError('protocol', `The server linked the main channel but sent no channel list within ${Math.round(timeoutMs / 1000)} s.`));
      }, timeoutMs);
      this.once('channels', () => {
        clearTimeout(timer);
        resolve();
      });
      this.once('closed', (err) => {
        clearTimeout(timer);
        reject(err ?? new SpiceError('network', 'The session closed before the server listed its channels.'));
      });
    });
    main.on('message', (type, body) => this.onMainMessage(type, body));
    main.on('notify', (n) => this.emit('notify', n));
    main.on('ignored', (type, size, why) => this.emit('log', 'debug', `main: ignored message ${type} (${size} bytes): ${why}`));
    main.on('disconnecting', (reason) => this.emit('log', 'info', `main: the server is disconnecting (reason ${reason})`));
    main.on('close', (err) => this.onMainClosed(err));
    main.start();
    try {
      await ready;
    } catch (e) {
      const error = e instanceof SpiceError ? e : new SpiceError('protocol', String(e), { cause: e });
      await this.close(error);
      throw error;
    }
  }

  /** Links another channel into this session (connection id = session id). */
  async openChannel(type: number, id = 0, signal?: AbortSignal): Promise<SpiceChannel> {
    if (this.stateValue !== 'ready' || this.sessionIdValue === undefined) {
      throw new SpiceError('network', `Cannot open the ${channelName(type)} channel: the session is ${this.stateValue}.`);
    }
    const channel = await SpiceChannel.link(this.linkOptions(type, id, this.sessionIdValue, [], signal));
    if (this.stateValue !== 'ready') {
      await channel.close();
      throw new SpiceError('network', `The session closed while the ${channelName(type)} channel was linking.`);
    }
    this.others.add(channel);
    channel.once('close', () => this.others.delete(channel));
    return channel;
  }

  /** Bounded teardown: closes every channel, main last; resolves within a few seconds whatever the server does. */
  async close(error?: SpiceError): Promise<void> {
    if (this.stateValue === 'closed' || this.stateValue === 'closing') return;
    if (this.stateValue === 'idle') {
      this.finish(error);
      return;
    }
    this.closeError = error;
    this.transition('closing');
    const all = [...this.others].map((c) => c.close());
    await Promise.race([Promise.all(all), delay(CLOSE_TIMEOUT_MS)]);
    if (this.main) await Promise.race([this.main.close(), delay(CLOSE_TIMEOUT_MS)]);
    this.finish(error);
  }

  private linkOptions(type: number, id: number, connectionId: number, caps: number[], signal: AbortSignal | undefined): Parameters<typeof SpiceChannel.link>[0] {
    const secure = this.options.secureChannels === 'all' || (this.options.secureChannels?.has(type) ?? false);
    return {
      transport: this.options.transport,
      secure,
      connectionId,
      channelType: type,
      channelId: id,
      channelCaps: caps,
      password: this.options.password,
      ...(this.options.linkTimeoutMs !== undefined ? { linkTimeoutMs: this.options.linkTimeoutMs } : {}),
      ...(signal !== undefined ? { signal } : {}),
      onSecured: () => this.emit('log', 'info', `${channelName(type)}: the server requires TLS; moved to ${this.options.transport.describe(true)}`),
    };
  }

  private onMainMessage(type: number, body: Uint8Array): void {
    switch (type) {
      case MainMsg.INIT: {
        const init = decodeMainInit(body);
        if (init === undefined) {
          this.emit('log', 'warn', 'main: INIT too short, ignored');
          return;
        }
        this.sessionIdValue = init.sessionId;
        this.main?.send(MainMsgc.ATTACH_CHANNELS);
        return;
      }
      case MainMsg.CHANNELS_LIST: {
        const list = decodeChannelsList(body);
        if (list === undefined) {
          this.emit('log', 'warn', 'main: malformed CHANNELS_LIST, ignored');
          return;
        }
        const named = list.map((c) => ({ ...c, name: channelName(c.type) }));
        if (this.channelList === undefined) {
          this.channelList = named;
        } else {
          // Later lists announce hot-registered channels one at a time.
          for (const c of named) if (!this.hasChannel(c.type, c.id)) this.channelList.push(c);
        }
        if (this.stateValue === 'initializing') {
          if (this.sessionIdValue === undefined) {
            void this.close(new SpiceError('protocol', 'The server listed its channels before sending INIT.'));
            return;
          }
          this.transition('ready');
        }
        this.emit('channels', [...this.channelList]);
        return;
      }
      case MainMsg.NAME:
        this.vmName = decodeMainName(body);
        return;
      case MainMsg.UUID:
        this.vmUuid = decodeMainUuid(body);
        return;
      case MainMsg.MIGRATE_BEGIN:
      case MainMsg.MIGRATE_BEGIN_SEAMLESS:
        // We never advertise migration; if a server starts one anyway, decline it.
        this.main?.send(MainMsgc.MIGRATE_CONNECT_ERROR);
        return;
      case MainMsg.MIGRATE_SWITCH_HOST: {
        const target = decodeSwitchHost(body);
        if (target !== undefined) this.emit('switch-host', target);
        return;
      }
      default:
        this.emit('log', 'debug', `main: message ${type} (${body.byteLength} bytes) not used`);
    }
  }

  private onMainClosed(error: SpiceError | undefined): void {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return;
    const reason =
      error ??
      new SpiceError(
        'network',
        'The server closed the session. Another client may have connected to this VM (a SPICE server holds one session at a time), or the VM stopped.',
      );
    void this.close(reason);
  }

  private transition(next: SessionState): void {
    if (!TRANSITIONS[this.stateValue].includes(next)) {
      throw new Error(`SpiceSession: illegal transition ${this.stateValue} → ${next}`);
    }
    this.stateValue = next;
    this.emit('state', next);
  }

  private finish(error: SpiceError | undefined): void {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'closed';
    for (const c of this.others) void c.close();
    this.emit('state', 'closed');
    this.emit('closed', error);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
