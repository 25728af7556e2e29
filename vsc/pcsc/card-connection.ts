// One open card: shared access, bounded retries while another application holds it, and a
// reconnect when another application resets it. Callers serialise access (SerialQueue); this
// class only decides what a PC/SC failure means for the connection.

import { setTimeout as sleep } from 'node:timers/promises';
import type { CardProtocol, PcscBackendReader } from './backend.js';
import { PcscError, toPcscError } from './errors.js';

export interface CardConnectionOptions {
  /** Attempts while the card is held by someone else (sharing violation); default 20. */
  readonly sharingAttempts?: number;
  /** Pause between those attempts; default 100 ms (so about 2 s in all). */
  readonly sharingDelayMs?: number;
}

/** The card was reset by another application; the connection was re-established. */
export class CardResetError extends PcscError {
  constructor(reader: string) {
    super(`the card in "${reader}" was reset by another application; reconnected, the card's state (PIN, selected application) is lost`, undefined, 'reset');
    this.name = 'CardResetError';
  }
}

async function withSharingRetries<T>(action: () => Promise<T>, options: CardConnectionOptions): Promise<T> {
  const attempts = Math.max(1, options.sharingAttempts ?? 20);
  const delayMs = options.sharingDelayMs ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return await action();
    } catch (error) {
      const e = toPcscError(error);
      if (e.kind !== 'sharing' || attempt >= attempts) throw e;
      await sleep(delayMs);
    }
  }
}

export class CardConnection {
  #protocol: CardProtocol;
  #closed = false;

  private constructor(
    readonly reader: PcscBackendReader,
    protocol: CardProtocol,
    private readonly options: CardConnectionOptions,
  ) {
    this.#protocol = protocol;
  }

  /** Connects in shared mode; a sharing violation is retried within the bound, then thrown. */
  static async open(reader: PcscBackendReader, options: CardConnectionOptions = {}): Promise<CardConnection> {
    const protocol = await withSharingRetries(() => reader.connect(), options);
    return new CardConnection(reader, protocol, options);
  }

  get protocol(): CardProtocol {
    return this.#protocol;
  }

  /**
   * One APDU. Sharing violations (another application's transaction) are retried within the
   * bound. A reset by another application reconnects and rejects with CardResetError: the
   * command was not executed and the card's state is gone, which the caller must tell the guest.
   */
  async transmit(apdu: Uint8Array, maxResponse: number): Promise<Uint8Array> {
    if (this.#closed) throw new PcscError('the card connection is closed', undefined, 'card-gone');
    let response: Uint8Array;
    try {
      response = await withSharingRetries(() => this.reader.transmit(apdu, this.#protocol, maxResponse), this.options);
    } catch (error) {
      const e = toPcscError(error);
      if (e.kind !== 'reset') throw e;
      await this.#reconnect();
      throw new CardResetError(this.reader.name);
    }
    // Every card answer ends in SW1 SW2. pcscd reports success with an empty answer when the card
    // leaves mid-command (seen with vpcd): that is the card gone, not a card answering badly.
    if (response.length < 2) throw new PcscError(`the card in "${this.reader.name}" gave no answer (removed during the command?)`, undefined, 'card-gone');
    return response;
  }

  /** Disconnects leaving the card powered and as it is. Never rejects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.reader.disconnect().catch(() => undefined);
  }

  async #reconnect(): Promise<void> {
    await this.reader.disconnect().catch(() => undefined);
    this.#protocol = await withSharingRetries(() => this.reader.connect(), this.options);
  }
}
