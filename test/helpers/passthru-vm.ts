// The VM side of QEMU's ccid-card-passthru socket, played by a test or a benchmark: it listens
// like a `-chardev socket,server=on` chardev, answers the client's control messages as QEMU does
// (its own VSC_Init, then VSC_Error success with reader id 0 for ReaderAdd, ATR, CardRemove and
// ReaderRemove), and sends guest commands whose answers it hands back. Unlike a real VM it lets
// the caller count every message and drive APDUs at full speed.
import net from 'node:net';
import { VscStreamParser, encodeVscMessage, type VscMessage } from '../../vsc/codec.js';
import { VSC_MAGIC_BYTES, VSC_VERSION, VscErrorCode, VscMsgType } from '../../vsc/constants.js';

export type PassthruAnswer =
  | { kind: 'response'; data: Uint8Array }
  /** The client answered with VSC_Error: QEMU turns that into a failed CCID exchange for the guest. */
  | { kind: 'error'; code: number }
  /** The card left (VSC_CardRemove) while the command was pending: QEMU fails the exchange too. */
  | { kind: 'card-removed' }
  /** The client went away while the command was pending. */
  | { kind: 'closed' };

interface Pending {
  resolve: (answer: PassthruAnswer) => void;
}

export class PassthruVm {
  /** Every message received from the client, in order (empty when not recording). */
  readonly received: VscMessage[] = [];
  /** Messages received, recorded or not. */
  messageCount = 0;
  /** The ATR of the card the client says is inserted, if one is. */
  atr: Uint8Array | undefined;
  readerAdded = false;
  private socket: net.Socket | undefined;
  private parser = new VscStreamParser('be');
  private pending: Pending | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly server: net.Server;

  private constructor(
    server: net.Server,
    private readonly record: boolean,
  ) {
    this.server = server;
    server.on('connection', (socket) => this.accept(socket));
  }

  /** `record: false` keeps no history (a soak must not grow its own memory). */
  static async listen(options: { record?: boolean } = {}): Promise<PassthruVm> {
    const server = net.createServer();
    const vm = new PassthruVm(server, options.record ?? true);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return vm;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('the passthru VM is not listening');
    return address.port;
  }

  get connected(): boolean {
    return this.socket !== undefined && !this.socket.destroyed;
  }

  /** Resolves when `check` holds; rejects after timeoutMs with `what` in the message. */
  waitFor(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = (): void => {
        if (!check()) return;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`passthru VM: ${what} did not happen in ${timeoutMs} ms; received ${this.received.map((m) => m.type).join(',')}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Sends one guest command to reader 0; resolves with how the exchange ended. */
  apdu(command: Uint8Array): Promise<PassthruAnswer> {
    if (this.pending !== undefined) return Promise.reject(new Error('passthru VM: QEMU keeps one command in flight'));
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) return Promise.resolve({ kind: 'closed' });
    return new Promise((resolve) => {
      this.pending = { resolve };
      socket.write(encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: command }, 'be'));
    });
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    // ccid-card-passthru serves one client; a new one replaces the old, as after a bridge restart.
    this.socket?.destroy();
    this.socket = socket;
    this.parser = new VscStreamParser('be');
    this.readerAdded = false;
    this.atr = undefined;
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.finishPending({ kind: 'closed' });
      this.notify();
    });
    socket.on('data', (chunk: Buffer) => {
      for (const result of this.parser.push(chunk)) if (result.ok) this.onMessage(socket, result.message);
      this.notify();
    });
  }

  private onMessage(socket: net.Socket, message: VscMessage): void {
    this.messageCount++;
    if (this.record) this.received.push(message);
    const ack = (): void => {
      socket.write(encodeVscMessage({ type: VscMsgType.Error, readerId: 0, code: VscErrorCode.Success }, 'be'));
    };
    switch (message.type) {
      case VscMsgType.Init:
        socket.write(encodeVscMessage({ type: VscMsgType.Init, readerId: 0, magic: Uint8Array.from(VSC_MAGIC_BYTES), version: VSC_VERSION, capabilities: [0] }, 'be'));
        break;
      case VscMsgType.ReaderAdd:
        this.readerAdded = true;
        ack();
        break;
      case VscMsgType.ReaderRemove:
        this.readerAdded = false;
        this.atr = undefined;
        ack();
        break;
      case VscMsgType.Atr:
        this.atr = message.atr.slice();
        ack();
        break;
      case VscMsgType.CardRemove:
        this.atr = undefined;
        ack();
        this.finishPending({ kind: 'card-removed' });
        break;
      case VscMsgType.Apdu:
        this.finishPending({ kind: 'response', data: message.data.slice() });
        break;
      case VscMsgType.Error:
        this.finishPending({ kind: 'error', code: message.code });
        break;
      default:
        break;
    }
  }

  private finishPending(answer: PassthruAnswer): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.resolve(answer);
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
