// A soft PIV card as a Card the VSC engine can carry into a VM: the PIV applet behind the ISO
// front end, over a card vault. Commands run strictly one at a time, in arrival order, because
// a PIN check awaits scrypt and a file write and the applet's state must not interleave.

import { randomBytes } from 'node:crypto';
import { TypedEmitter, type Card, type CardEventMap, type CardListener } from '../card.js';
import { PivCardEngine } from '../piv/applet.js';
import { SOFT_PIV_ATR } from '../piv/atr.js';
import type { ResponseChunkPolicy } from '../iso7816/response-chaining.js';
import { buildPivObjects } from './card-objects.js';
import type { CardVault } from './card-vault.js';
import { NodeKeyOperations } from './node-key-operations.js';

export class CardNotPresentError extends Error {
  constructor(name: string) {
    super(`no card in ${name}`);
    this.name = 'CardNotPresentError';
  }
}

export interface SoftCardOptions {
  readonly name: string;
  readonly vault: CardVault;
  /** Start with the card inserted (default) or removed. */
  readonly inserted?: boolean;
  /** How long answers are cut for GET RESPONSE (default: defaultChunkPolicy, safe on QEMU's xHCI). */
  readonly chunkPolicy?: ResponseChunkPolicy;
}

export class SoftCard implements Card {
  readonly name: string;
  readonly vault: CardVault;
  readonly #engine: PivCardEngine;
  readonly #events = new TypedEmitter<CardEventMap>();
  #present: boolean;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();
  /** Commands queued or running; transmitNow answers at once only when this is 0. */
  #running = 0;

  constructor(options: SoftCardOptions) {
    this.name = options.name;
    this.vault = options.vault;
    this.#present = options.inserted ?? true;
    const document = options.vault.document;
    this.#engine = new PivCardEngine(
      {
        objects: buildPivObjects(document),
        keys: new NodeKeyOperations(options.vault),
        credentials: options.vault,
        random: (length) => new Uint8Array(randomBytes(length)),
        ...(document.label !== undefined ? { label: document.label } : {}),
      },
      options.chunkPolicy !== undefined ? { chunkPolicy: options.chunkPolicy } : {},
    );
  }

  atr(): Uint8Array | undefined {
    return this.#present ? SOFT_PIV_ATR.slice() : undefined;
  }

  get present(): boolean {
    return this.#present;
  }

  transmit(apdu: Uint8Array): Promise<Uint8Array> {
    const command = apdu.slice();
    return this.#track(
      this.#queue.then(() => {
        if (!this.#present || this.#closed) throw new CardNotPresentError(this.name);
        return this.#engine.transmit(command);
      }),
    );
  }

  /**
   * `transmit`, answered at once when no command is queued and this one needs no I/O (SELECT,
   * GET DATA, GET RESPONSE): the guest's reads skip the promise hops. Anything else is queued
   * exactly as `transmit` queues it, so commands still run one at a time, in order.
   */
  transmitNow(apdu: Uint8Array): Uint8Array | Promise<Uint8Array> {
    if (this.#running > 0 || !this.#present || this.#closed) return this.transmit(apdu);
    const answer = this.#engine.answer(apdu.slice());
    return answer instanceof Uint8Array ? answer : this.#track(answer);
  }

  #track(run: Promise<Uint8Array>): Promise<Uint8Array> {
    this.#running++;
    const settled = run.then(
      () => void this.#running--,
      () => void this.#running--,
    );
    this.#queue = settled;
    return run;
  }

  /** Puts the card in: a fresh power-up (PIN state cleared), then `inserted`. */
  insert(): void {
    if (this.#closed) return;
    this.#engine.reset();
    this.#present = true;
    this.#events.emit('inserted', SOFT_PIV_ATR.slice());
  }

  /** Takes the card out: queued commands fail, then `removed`. Unlocked keys stay in memory for 9E. */
  remove(): void {
    if (this.#closed || !this.#present) return;
    this.#present = false;
    this.#engine.reset();
    this.#events.emit('removed');
  }

  on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.#events.on(event, listener);
  }

  off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.#events.off(event, listener);
  }

  /** Forgets the keys and stops events; waits for a command in progress (and its file write). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#present = false;
    this.#events.removeAllListeners();
    await this.#queue;
    this.vault.lock();
  }
}
