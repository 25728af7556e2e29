// A virtual card for vsmartcard's vpcd reader driver, serving any `Card` over vpcd's socket
// protocol: every message is a 2-byte big-endian length and a payload. A 1-byte payload is a
// control message (0 power off, 1 power on, 2 reset, 4 "send the ATR"); anything longer is a
// command APDU. Only the ATR request and APDUs are answered. Inserting the card = connecting to
// vpcd's port, removing it = disconnecting.
//
// No-delay matters: vpcd writes the length and the APDU separately, and Nagle plus delayed ACK
// would cost ~40 ms per APDU.

import type { Socket } from 'node:net';
import type { Card } from '../../vsc/card.js';

const CTRL_OFF = 0;
const CTRL_ON = 1;
const CTRL_RESET = 2;
const CTRL_ATR = 4;

/** Opens a TCP connection to vpcd's port (the rig's connector reaches into pcscd's namespace). */
export type VpcdConnector = () => Promise<Socket>;

export interface VpcdCardOptions {
  /** Called on power on, power off and reset (a soft card may reset its state there). */
  readonly onPower?: (event: 'on' | 'off' | 'reset') => void;
}

export class VpcdCard {
  #socket: Socket | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #busy: Promise<void> = Promise.resolve();
  /** APDUs answered since the card was created. */
  apdus = 0;

  constructor(
    readonly card: Card,
    private readonly connect: VpcdConnector,
    private readonly options: VpcdCardOptions = {},
  ) {}

  get inserted(): boolean {
    return this.#socket !== undefined && !this.#socket.destroyed;
  }

  /** Connects to vpcd: the reader sees a card at its next poll. */
  async insert(): Promise<void> {
    if (this.inserted) return;
    const socket = await this.connect();
    socket.setNoDelay(true);
    this.#buffer = Buffer.alloc(0);
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
    });
  }

  /** Disconnects: the reader reports the card gone at its next poll. */
  remove(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.destroy();
  }

  #onData(socket: Socket, chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 2) {
      const length = this.#buffer.readUInt16BE(0);
      if (this.#buffer.length < 2 + length) break;
      const payload = Uint8Array.prototype.slice.call(this.#buffer, 2, 2 + length);
      this.#buffer = this.#buffer.subarray(2 + length);
      // One message at a time, in order: an APDU's answer must go out before the next ATR request's.
      this.#busy = this.#busy.then(() => this.#handle(socket, payload));
    }
  }

  async #handle(socket: Socket, payload: Uint8Array): Promise<void> {
    if (payload.length === 1) {
      const control = payload[0];
      if (control === CTRL_ATR) this.#send(socket, this.card.atr() ?? new Uint8Array(0));
      else if (control === CTRL_ON) this.options.onPower?.('on');
      else if (control === CTRL_OFF) this.options.onPower?.('off');
      else if (control === CTRL_RESET) this.options.onPower?.('reset');
      return;
    }
    let answer: Uint8Array;
    try {
      answer = await this.card.transmit(payload);
    } catch {
      // A card that cannot answer: vpcd treats an empty answer as a failed exchange.
      answer = new Uint8Array(0);
    }
    this.apdus++;
    this.#send(socket, answer);
  }

  #send(socket: Socket, payload: Uint8Array): void {
    if (socket.destroyed) return;
    const frame = Buffer.allocUnsafe(2 + payload.length);
    frame.writeUInt16BE(payload.length, 0);
    frame.set(payload, 2);
    // One write: vpcd reads length then payload, and one segment keeps the round trip short.
    socket.write(frame);
  }
}
