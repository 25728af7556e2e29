// One linked SPICE channel on a real stream: runs the link handshake (moving to the TLS port when
// the server answers NEED_SECURED), then feeds bytes through ChannelCore. This is the only place
// in spice/ where protocol meets a socket.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { channelName, LinkError } from './constants.js';
import { ChannelCore } from './channel-core.js';
import { SpiceError } from './errors.js';
import { FrameError } from './frame-parser.js';
import { LinkHandshake, type LinkEstablished } from './link-handshake.js';
import type { Notify } from './messages.js';
import type { Transport } from './transport.js';

export interface ChannelLinkOptions {
  transport: Transport;
  /** Start on TLS (the channel is listed in secure-channels, or no plain port is known). */
  secure: boolean;
  connectionId: number;
  channelType: number;
  channelId: number;
  channelCaps?: number[];
  password: string;
  linkTimeoutMs?: number;
  signal?: AbortSignal;
  /** Told when the server asked for TLS and the link moved to the TLS port. */
  onSecured?: () => void;
}

export type ChannelEvents = {
  message: [type: number, body: Uint8Array];
  notify: [notify: Notify];
  disconnecting: [reason: number];
  ignored: [type: number, size: number, why: string];
  close: [error: SpiceError | undefined];
};

const DEFAULT_LINK_TIMEOUT_MS = 20_000;
const CLOSE_GRACE_MS = 2_000;

async function linkOnce(options: ChannelLinkOptions, secure: boolean): Promise<{ stream: Duplex; link: LinkEstablished }> {
  const stream = await options.transport.open(secure, options.signal);
  const handshake = new LinkHandshake({
    connectionId: options.connectionId,
    channelType: options.channelType,
    channelId: options.channelId,
    channelCaps: options.channelCaps ?? [],
    password: options.password,
  });
  const timeoutMs = options.linkTimeoutMs ?? DEFAULT_LINK_TIMEOUT_MS;
  const where = options.transport.describe(secure);
  return new Promise((resolve, reject) => {
    let settled = false;
    const cleanup = (): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (error: SpiceError): void => {
      if (settled) return;
      settled = true;
      cleanup();
      stream.destroy();
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      if (settled) return;
      const progress = handshake.receive(chunk);
      if (progress.kind === 'failed') return fail(progress.error);
      if (progress.kind === 'pending') {
        if (progress.send) stream.write(progress.send);
        return;
      }
      if (progress.send) stream.write(progress.send);
      settled = true;
      cleanup();
      stream.pause();
      resolve({ stream, link: progress.link });
    };
    const onEnd = (): void => fail(handshake.endOfStream());
    const onError = (e: Error): void => {
      const code = (e as NodeJS.ErrnoException).code;
      fail(new SpiceError('network', `The connection to ${where} failed while linking the ${handshake.channel} channel: ${code ?? e.message}.`, { cause: e }));
    };
    const onAbort = (): void => fail(new SpiceError('network', 'Connecting was cancelled.'));
    const timer = setTimeout(
      () => fail(new SpiceError('network', `The server at ${where} did not finish linking the ${handshake.channel} channel within ${Math.round(timeoutMs / 1000)} s.`)),
      timeoutMs,
    );
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    stream.write(handshake.start());
    stream.resume();
  });
}

export class SpiceChannel extends EventEmitter<ChannelEvents> {
  readonly type: number;
  readonly id: number;
  readonly secure: boolean;
  readonly name: string;
  private readonly stream: Duplex;
  private readonly core: ChannelCore;
  private pending: Uint8Array | undefined;
  private closed = false;
  private started = false;

  /** Links the channel; on NEED_SECURED it reconnects the same channel to the TLS port, like spice-gtk. */
  static async link(options: ChannelLinkOptions): Promise<SpiceChannel> {
    let secure = options.secure || !options.transport.canPlain;
    try {
      const { stream, link } = await linkOnce(options, secure);
      return new SpiceChannel(options, secure, stream, link);
    } catch (e) {
      if (!(e instanceof SpiceError) || e.linkError !== LinkError.NEED_SECURED || secure || !options.transport.canSecure) throw e;
      secure = true;
      options.onSecured?.();
      const { stream, link } = await linkOnce(options, secure);
      return new SpiceChannel(options, secure, stream, link);
    }
  }

  private constructor(options: ChannelLinkOptions, secure: boolean, stream: Duplex, link: LinkEstablished) {
    super();
    this.type = options.channelType;
    this.id = options.channelId;
    this.name = channelName(options.channelType);
    this.secure = secure;
    this.stream = stream;
    this.core = new ChannelCore({
      miniHeader: link.miniHeader,
      send: (bytes) => {
        if (!this.closed) this.stream.write(bytes);
      },
    });
    this.pending = link.rest.byteLength > 0 ? link.rest : undefined;
  }

  /** Starts delivering events; call it once the listeners are attached (bytes may already be waiting). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.stream.on('data', (chunk: Buffer) => this.onBytes(chunk));
    this.stream.once('end', () => this.finish(this.core.atMessageBoundary ? undefined : new SpiceError('network', `The server closed the ${this.name} channel in the middle of a message.`)));
    this.stream.once('close', () => this.finish(undefined));
    this.stream.on('error', (e: NodeJS.ErrnoException) => this.finish(new SpiceError('network', `The ${this.name} channel failed: ${e.code ?? e.message}.`, { cause: e })));
    if (this.pending !== undefined) {
      const rest = this.pending;
      this.pending = undefined;
      this.onBytes(rest);
    }
    if (!this.closed) this.stream.resume();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  get pingsAnswered(): number {
    return this.core.pingsAnswered;
  }

  send(type: number, body?: Uint8Array): void {
    if (this.closed) throw new SpiceError('network', `The ${this.name} channel is closed.`);
    this.core.send(type, body);
  }

  /** Closes after flushing what was written; forced after a short grace period. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.stream.destroy(), CLOSE_GRACE_MS);
      this.stream.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.finish(undefined);
      this.stream.end();
    });
  }

  private onBytes(chunk: Uint8Array): void {
    if (this.closed) return;
    let events;
    try {
      events = this.core.receive(chunk);
    } catch (e) {
      const detail = e instanceof FrameError ? e.message : String(e);
      this.finish(new SpiceError('protocol', `The server broke the ${this.name} channel's framing: ${detail}. The channel was closed.`, { cause: e }));
      this.stream.destroy();
      return;
    }
    for (const ev of events) {
      if (this.closed) return;
      switch (ev.kind) {
        case 'message':
          this.emit('message', ev.type, ev.body);
          break;
        case 'notify':
          this.emit('notify', ev.notify);
          break;
        case 'disconnecting':
          this.emit('disconnecting', ev.reason);
          break;
        case 'ignored':
          this.emit('ignored', ev.type, ev.size, ev.why);
          break;
      }
    }
  }

  private finish(error: SpiceError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', error);
  }
}
