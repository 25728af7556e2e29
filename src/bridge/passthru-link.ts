// A card forwarded straight to QEMU's ccid-card-passthru on a TCP socket chardev (libvirt's
// <smartcard mode='passthrough' type='tcp'>), as libcacard's vscclient does: big-endian VSC
// messages on a raw stream, VSC_Init first, one socket per reader.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { SpiceError } from '../../spice/errors.js';
import type { Card } from '../../vsc/card.js';
import { VscStreamParser, encodeVscMessage } from '../../vsc/codec.js';
import { CardForwarder } from './card-forwarder.js';

export type PassthruLinkEvents = {
  closed: [error: SpiceError | undefined];
};

export interface PassthruEndpoint {
  host: string;
  port: number;
  /** A Unix socket chardev (`-chardev socket,path=...`) instead of host:port. */
  path?: string;
}

function describeEndpoint(endpoint: PassthruEndpoint): string {
  return endpoint.path !== undefined ? `unix:${endpoint.path}` : `${endpoint.host}:${endpoint.port}`;
}

export function parseEndpoint(text: string): PassthruEndpoint | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

const CONNECT_TIMEOUT_MS = 10_000;

export interface PassthruLinkOptions {
  replyTimeoutMs?: number;
  /** Sees the forwarder before it sends anything (a trace must record VSC_Init and ReaderAdd). */
  beforeStart?: (forwarder: CardForwarder) => void;
}

export class PassthruLink extends EventEmitter<PassthruLinkEvents> {
  readonly forwarder: CardForwarder;
  readonly endpoint: PassthruEndpoint;
  private readonly socket: net.Socket;
  private readonly parser = new VscStreamParser('be');
  private stopping = false;
  private closedWith: SpiceError | undefined | null = null;

  static open(endpoint: PassthruEndpoint, card: Card, options: PassthruLinkOptions = {}): Promise<PassthruLink> {
    const where = describeEndpoint(endpoint);
    return new Promise((resolve, reject) => {
      const socket = endpoint.path !== undefined ? net.connect({ path: endpoint.path }) : net.connect({ host: endpoint.host, port: endpoint.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SpiceError('network', `No answer from QEMU's smartcard socket ${where} within ${CONNECT_TIMEOUT_MS / 1000} s.`));
      }, CONNECT_TIMEOUT_MS);
      socket.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const what =
          e.code === 'ECONNREFUSED' || (e.code === 'ENOENT' && endpoint.path !== undefined)
            ? `Nothing is listening on ${where} (connection refused). Check the port of the VM's smartcard socket (<smartcard mode='passthrough' type='tcp'> <source mode='bind' .../>) and that the VM is running.`
            : `Could not connect to QEMU's smartcard socket ${where}: ${e.code ?? e.message}.`;
        reject(new SpiceError('network', what, { cause: e }));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        resolve(new PassthruLink(endpoint, socket, card, options));
      });
    });
  }

  private constructor(endpoint: PassthruEndpoint, socket: net.Socket, card: Card, options: PassthruLinkOptions) {
    super();
    this.endpoint = endpoint;
    this.socket = socket;
    this.forwarder = new CardForwarder({
      card,
      mode: 'passthru',
      send: (message) => {
        if (!this.socket.destroyed) this.socket.write(encodeVscMessage(message, 'be'));
      },
      ...(options.replyTimeoutMs !== undefined ? { replyTimeoutMs: options.replyTimeoutMs } : {}),
    });
    socket.on('data', (chunk: Buffer) => {
      for (const result of this.parser.push(chunk)) {
        if (result.ok) this.forwarder.receive(result.message);
        else if (this.parser.dead) return this.fail(new SpiceError('protocol', `QEMU's smartcard socket sent a broken stream: ${result.error.text}.`));
        else this.forwarder.emit('warning', 'bad-vsc-message', `${result.error.text}; message ignored`);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => this.fail(new SpiceError('network', `The smartcard socket ${this.where} failed: ${e.code ?? e.message}.`, { cause: e })));
    socket.on('close', () => this.fail(this.stopping ? undefined : new SpiceError('network', `QEMU closed the smartcard socket ${this.where} (the VM stopped, or another client took the socket).`)));
    this.forwarder.on('finished', (state) => {
      if (state === 'failed' && !this.stopping) this.fail(new SpiceError('protocol', `The reader link on ${this.where} failed (see the error above).`));
    });
    options.beforeStart?.(this.forwarder);
    this.forwarder.start();
  }

  get where(): string {
    return describeEndpoint(this.endpoint);
  }

  get isOpen(): boolean {
    return this.closedWith === null;
  }

  /**
   * Why the link closed (undefined while open or after our own stop). The socket can fail before
   * the opener gets the link (a write to a peer that already reset it fails on the next tick), so
   * 'closed' may have been emitted before anyone listened: check isOpen first.
   */
  get closeError(): SpiceError | undefined {
    return this.closedWith ?? undefined;
  }

  async stop(): Promise<void> {
    if (this.closedWith !== null) return;
    this.stopping = true;
    await this.forwarder.stop();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 2_000);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
    this.fail(undefined);
  }

  private fail(error: SpiceError | undefined): void {
    if (this.closedWith !== null) return;
    this.closedWith = error;
    this.forwarder.detach();
    this.socket.destroy();
    this.emit('closed', error);
  }
}
