// Keeps one card in whatever session the viewer has right now: when the proxy sees a session start
// it links its own smartcard channel into it (connection id = session id, with the password the
// server accepted for the viewer's main link) and forwards the card there. A newer session
// supersedes the older one; the card follows. Sockets stay in SpiceChannel.
import { EventEmitter } from 'node:events';
import { SpiceChannel } from '../../spice/channel.js';
import { ChannelType } from '../../spice/constants.js';
import { SpiceError } from '../../spice/errors.js';
import type { Transport } from '../../spice/transport.js';
import type { Card } from '../../vsc/card.js';
import { SpiceCardLink } from '../bridge/spice-card-link.js';

export interface InjectedLink {
  sessionId: number;
  secure: boolean;
  link: SpiceCardLink;
}

export type CardInjectorEvents = {
  linking: [sessionId: number];
  linked: [injected: InjectedLink];
  /** The smartcard channel of that session is gone; `error` is undefined when the proxy let it go. */
  unlinked: [sessionId: number, error: SpiceError | undefined];
  failed: [sessionId: number, error: SpiceError];
  note: [text: string];
};

export interface CardInjectorOptions {
  transport: Transport;
  secureChannels: ReadonlySet<number> | 'all';
  card: Card;
  linkTimeoutMs?: number;
  replyTimeoutMs?: number;
}

interface Entry {
  sessionId: number;
  abort: AbortController;
  link: SpiceCardLink | undefined;
  released: boolean;
}

const STOP_BOUND_MS = 6_000;

export class CardInjector extends EventEmitter<CardInjectorEvents> {
  private readonly options: CardInjectorOptions;
  private current: Entry | undefined;
  private stopped = false;

  constructor(options: CardInjectorOptions) {
    super();
    this.options = options;
  }

  /** The session the card is in (or being linked into). */
  get sessionId(): number | undefined {
    return this.current?.sessionId;
  }

  get link(): SpiceCardLink | undefined {
    return this.current?.link;
  }

  /** A session started: move the card into it. */
  inject(sessionId: number, password: string): void {
    if (this.stopped || this.current?.sessionId === sessionId) return;
    if (this.current !== undefined) this.release(this.current);
    const entry: Entry = { sessionId, abort: new AbortController(), link: undefined, released: false };
    this.current = entry;
    this.emit('linking', sessionId);
    const secure = this.options.secureChannels === 'all' || this.options.secureChannels.has(ChannelType.SMARTCARD) || !this.options.transport.canPlain;
    SpiceChannel.link({
      transport: this.options.transport,
      secure,
      connectionId: sessionId,
      channelType: ChannelType.SMARTCARD,
      channelId: 0,
      password,
      signal: entry.abort.signal,
      ...(this.options.linkTimeoutMs !== undefined ? { linkTimeoutMs: this.options.linkTimeoutMs } : {}),
      onSecured: () => this.emit('note', 'smartcard: the server requires TLS; moved to the TLS port'),
    }).then(
      (channel) => {
        if (entry.released || this.stopped) {
          void channel.close();
          return;
        }
        const link = SpiceCardLink.attach(channel, this.options.card, this.options.replyTimeoutMs !== undefined ? { replyTimeoutMs: this.options.replyTimeoutMs } : {});
        entry.link = link;
        link.once('closed', (error) => {
          if (this.current === entry) this.current = undefined;
          this.emit('unlinked', sessionId, entry.released ? undefined : error);
        });
        this.emit('linked', { sessionId, secure: channel.secure, link });
      },
      (e: unknown) => {
        if (entry.released) return;
        if (this.current === entry) this.current = undefined;
        this.emit('failed', sessionId, e instanceof SpiceError ? e : new SpiceError('network', String(e), { cause: e }));
      },
    );
  }

  /** The viewer's session ended: the server has dropped our channel with it; let go without ceremony. */
  sessionEnded(sessionId: number): void {
    if (this.current?.sessionId !== sessionId) return;
    const entry = this.current;
    this.current = undefined;
    this.release(entry);
  }

  /** Removes the card and the reader from the current session, if any; bounded. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const entry = this.current;
    this.current = undefined;
    if (entry === undefined) return;
    entry.abort.abort();
    if (entry.link !== undefined) {
      await Promise.race([entry.link.stop(), delay(STOP_BOUND_MS)]);
      entry.released = true;
      await entry.link.drop();
    }
  }

  private release(entry: Entry): void {
    entry.released = true;
    entry.abort.abort();
    void entry.link?.drop();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
