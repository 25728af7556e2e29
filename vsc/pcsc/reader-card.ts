// A PC/SC reader as a Card: bound to the first reader whose name matches the pattern, it follows
// that reader appearing and disappearing and its card coming and going for as long as it runs.
// The guest sees the card through the T=0 adapter (t0-adapter.ts): a T=0 ATR, T=0 answers.

import { TypedEmitter, type Card, type CardEventMap } from '../card.js';
import { parseCommandApdu } from '../iso7816/apdu.js';
import type { ResponseChunkPolicy } from '../iso7816/response-chaining.js';
import { CardConnection, CardResetError, type CardConnectionOptions } from './card-connection.js';
import { PcscError, toPcscError } from './errors.js';
import { readerPattern, type ReaderPattern } from './glob.js';
import type { PcscNotice, PcscReaderInfo, PcscSource, PcscSourceEventMap } from './source.js';
import { SHORT_RESPONSE_MAX, T0Adapter, T0AtrError, t0GuestAtr } from './t0-adapter.js';
import { SerialQueue } from './serial-queue.js';

export interface PcscCardEventMap extends CardEventMap {
  /** Something the user should know: service down/back, card busy or reset, reader found/gone. */
  notice: [notice: PcscNotice];
}

export interface PcscReaderCardOptions extends CardConnectionOptions {
  /** How answers are cut into GET RESPONSE chunks; share one policy across every card. */
  readonly chunkPolicy?: ResponseChunkPolicy;
  /** Close the source when this card is closed (it was made for this card alone). */
  readonly ownsSource?: boolean;
  /** The pattern is a reader name taken literally, `*` and `?` included. */
  readonly exactName?: boolean;
}

const EXTENDED_RESPONSE_MAX = 65_538;

interface OpenCard {
  readonly connection: CardConnection;
  readonly adapter: T0Adapter;
  readonly guestAtr: Uint8Array;
}

export class PcscReaderCard implements Card {
  readonly pattern: ReaderPattern;
  readonly #source: PcscSource;
  readonly #options: PcscReaderCardOptions;
  readonly #events = new TypedEmitter<PcscCardEventMap>();
  readonly #queue = new SerialQueue();
  #bound: string | undefined;
  #card: OpenCard | undefined;
  /** Bumped whenever the card goes away, so a connect that finishes late is dropped. */
  #generation = 0;
  #busyReported = false;
  /** The ATR of a card already reported as unusable, so a state change does not report it again. */
  #refusedAtr: Uint8Array | undefined;
  #closed = false;
  #opening: Promise<void> | undefined;
  /** Notices from before anyone listened (the constructor runs before the caller can subscribe). */
  #unheard: PcscNotice[] = [];
  readonly #unsubscribe: (() => void)[] = [];

  constructor(source: PcscSource, pattern: string, options: PcscReaderCardOptions = {}) {
    this.pattern = readerPattern(pattern, options.exactName ?? false);
    this.#source = source;
    this.#options = options;
    this.#listen('reader-added', (name) => this.#onReaderAdded(name));
    this.#listen('reader-removed', (name) => this.#onReaderRemoved(name));
    this.#listen('card-inserted', (name, atr) => {
      if (name === this.#bound) this.#openCard(name, atr);
    });
    this.#listen('card-removed', (name) => {
      if (name !== this.#bound) return;
      this.#refusedAtr = undefined;
      this.#dropCard();
    });
    this.#listen('reader-state', (info) => this.#onReaderState(info));
    this.#listen('notice', (notice) => this.#notice(notice));
    const outage = source.outageNotice;
    if (outage !== undefined) this.#notice(outage);
    this.#bindFirst();
  }

  /** The bound reader's name, or the pattern while no reader matches. */
  get name(): string {
    return this.#bound ?? this.pattern.text;
  }

  /** The reader currently forwarded, if any. */
  get readerName(): string | undefined {
    return this.#bound;
  }

  /** The ATR the guest is shown (T=0 form of the card's), while a card is open. */
  atr(): Uint8Array | undefined {
    return this.#card?.guestAtr;
  }

  /** The protocol PC/SC runs with the card, while a card is open. */
  protocol(): 'T=0' | 'T=1' | undefined {
    return this.#card?.connection.protocol;
  }

  transmit(apdu: Uint8Array): Promise<Uint8Array> {
    return this.#queue.run(async () => {
      const card = this.#card;
      if (card === undefined) throw new PcscError(`no card in "${this.name}"`, undefined, 'card-gone');
      try {
        return await card.adapter.exchange(apdu, (command) => card.connection.transmit(command, responseBound(command)));
      } catch (error) {
        if (error instanceof CardResetError && this.#card === card) this.#cardWasReset(card, error);
        throw toPcscError(error);
      }
    });
  }

  on<E extends keyof PcscCardEventMap>(event: E, listener: (...args: PcscCardEventMap[E]) => void): void {
    this.#events.on(event, listener);
    if (event === 'notice') for (const notice of this.#unheard.splice(0)) this.#notice(notice);
  }

  /** Resolves once the card present at start (if any) has been opened or given up on. */
  async settled(): Promise<void> {
    await this.#opening;
  }

  off<E extends keyof PcscCardEventMap>(event: E, listener: (...args: PcscCardEventMap[E]) => void): void {
    this.#events.off(event, listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#generation++;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    const card = this.#card;
    this.#card = undefined;
    this.#events.removeAllListeners();
    // Wait for a command in flight, then leave the card as it is for the next application.
    await this.#queue.run(async () => card?.connection.close());
    if (this.#options.ownsSource) this.#source.close();
  }

  #notice(notice: PcscNotice): void {
    if (this.#events.listenerCount('notice') === 0) this.#unheard.push(notice);
    else this.#events.emit('notice', notice);
  }

  #listen<E extends keyof PcscSourceEventMap>(event: E, listener: (...args: PcscSourceEventMap[E]) => void): void {
    this.#source.on(event, listener);
    this.#unsubscribe.push(() => this.#source.off(event, listener));
  }

  #bindFirst(announceWait = true): void {
    const candidates = this.#source.readers().filter((r) => this.pattern.matches(r.name));
    const choice = candidates.find((r) => r.presence === 'present') ?? candidates[0];
    if (choice === undefined) {
      if (!announceWait) return;
      this.#notice({
        code: 'reader-waiting',
        message: `no PC/SC reader matches "${this.pattern.text}" yet; it will be used as soon as it appears`,
      });
      return;
    }
    this.#bind(choice.name);
    if (choice.presence === 'present' && choice.atr !== undefined) this.#openCard(choice.name, choice.atr);
  }

  #bind(name: string): void {
    this.#bound = name;
    this.#busyReported = false;
    this.#notice({ code: 'reader-found', reader: name, message: `using PC/SC reader "${name}"` });
  }

  #onReaderAdded(name: string): void {
    if (this.#bound !== undefined || !this.pattern.matches(name)) return;
    this.#bind(name);
  }

  #onReaderRemoved(name: string): void {
    if (name !== this.#bound) return;
    this.#dropCard();
    this.#bound = undefined;
    this.#notice({ code: 'reader-gone', reader: name, message: `PC/SC reader "${name}" is gone; waiting for it to come back` });
    // After the current batch of events: when the service goes, every reader goes at once, and
    // binding to a sibling that is about to vanish too would only add noise.
    queueMicrotask(() => {
      if (this.#bound === undefined && !this.#closed) this.#bindFirst(false);
    });
  }

  #onReaderState(info: PcscReaderInfo): void {
    // A card we could not open because another application held it: try again once it lets go.
    if (info.name !== this.#bound || this.#card !== undefined || this.#opening !== undefined) return;
    if (info.presence !== 'present' || info.atr === undefined || info.exclusive || sameBytes(info.atr, this.#refusedAtr)) return;
    this.#openCard(info.name, info.atr);
  }

  #openCard(name: string, atr: Uint8Array): void {
    if (this.#closed) return;
    const generation = ++this.#generation;
    let guestAtr: Uint8Array;
    try {
      guestAtr = t0GuestAtr(atr);
    } catch (error) {
      const message = error instanceof T0AtrError ? error.message : String(error);
      this.#refusedAtr = atr;
      this.#notice({ code: 'card-unsupported', reader: name, message });
      return;
    }
    const handle = this.#source.handle(name);
    if (handle === undefined) return;
    const opening = CardConnection.open(handle, this.#options).then(
      (connection) => {
        if (generation !== this.#generation || this.#closed) {
          void connection.close();
          return;
        }
        this.#busyReported = false;
        const adapter = new T0Adapter({ protocol: connection.protocol, ...(this.#options.chunkPolicy ? { chunkPolicy: this.#options.chunkPolicy } : {}) });
        this.#card = { connection, adapter, guestAtr };
        this.#events.emit('inserted', guestAtr);
      },
      (error: unknown) => {
        if (generation !== this.#generation || this.#closed) return;
        const e = toPcscError(error);
        if (e.kind === 'sharing') {
          if (this.#busyReported) return;
          this.#busyReported = true;
          this.#notice({
            code: 'card-busy',
            reader: name,
            message: `the card in "${name}" is held exclusively by another application; it will be forwarded once that application lets go`,
          });
        } else if (e.kind !== 'card-gone' && e.kind !== 'reader-gone' && e.kind !== 'service') {
          this.#notice({ code: 'card-error', reader: name, message: `could not open the card in "${name}": ${e.message}` });
        }
      },
    );
    const settled = opening.finally(() => {
      if (this.#opening === settled) this.#opening = undefined;
    });
    this.#opening = settled;
  }

  #dropCard(): void {
    this.#generation++;
    const card = this.#card;
    if (card === undefined) return;
    this.#card = undefined;
    card.adapter.reset();
    void this.#queue.run(() => card.connection.close());
    this.#events.emit('removed');
  }

  #cardWasReset(card: OpenCard, error: CardResetError): void {
    card.adapter.reset();
    this.#notice({ code: 'card-reset', reader: card.connection.reader.name, message: error.message });
    // After this command's rejection: a new ATR makes QEMU flush the guest's pending command.
    setImmediate(() => {
      if (this.#card === card && !this.#closed) this.#events.emit('inserted', card.guestAtr);
    });
  }
}

/** Room for the answer: one short response, or an extended one for an extended command. */
function responseBound(command: Uint8Array): number {
  return parseCommandApdu(command).ok ? SHORT_RESPONSE_MAX : EXTENDED_RESPONSE_MAX;
}

function sameBytes(a: Uint8Array, b: Uint8Array | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}
