// A session's card source, opened once and kept across reconnections (a PC/SC reader keeps its
// hotplug, a soft card its PIN state). Each link gets its own view of it: a view stops passing
// events when its link is retired, and every view shares one queue, so commands of an old link
// still finishing never overlap those of the new one (the Card contract: one call at a time).
import type { Card, CardEventMap, CardListener } from '../../vsc/card.js';
import { isInsertable, TypedEmitter } from '../../vsc/card.js';

export interface LinkCard extends Card {
  /** The link is gone: no more events reach its forwarder. */
  retire(): void;
}

export class SessionCard {
  readonly card: Card;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly views = new Set<TypedEmitter<CardEventMap>>();
  private readonly onInserted = (atr: Uint8Array): void => {
    for (const v of this.views) v.emit('inserted', atr);
  };
  private readonly onRemoved = (): void => {
    for (const v of this.views) v.emit('removed');
  };

  constructor(card: Card) {
    this.card = card;
    card.on('inserted', this.onInserted);
    card.on('removed', this.onRemoved);
  }

  get name(): string {
    return this.card.name;
  }

  get present(): boolean {
    return this.card.atr() !== undefined;
  }

  get insertable(): boolean {
    return isInsertable(this.card);
  }

  /** Puts a soft card in or takes it out; false when the source has no such control (a reader). */
  setPresent(present: boolean): boolean {
    const card = this.card;
    if (!isInsertable(card)) return false;
    if (present && card.atr() === undefined) card.insert();
    else if (!present && card.atr() !== undefined) card.remove();
    return true;
  }

  /** A Card for one link. */
  view(): LinkCard {
    const emitter = new TypedEmitter<CardEventMap>();
    this.views.add(emitter);
    const owner = this;
    return {
      name: this.card.name,
      atr: () => this.card.atr(),
      transmit: (apdu) => this.transmit(apdu),
      on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>) {
        emitter.on(event, listener);
      },
      off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>) {
        emitter.off(event, listener);
      },
      retire() {
        owner.views.delete(emitter);
        emitter.removeAllListeners();
      },
    };
  }

  async close(): Promise<void> {
    this.card.off('inserted', this.onInserted);
    this.card.off('removed', this.onRemoved);
    for (const v of this.views) v.removeAllListeners();
    this.views.clear();
    await this.card.close?.();
  }

  private transmit(apdu: Uint8Array): Promise<Uint8Array> {
    const run = this.queue.then(() => this.card.transmit(apdu));
    this.queue = run.catch(() => undefined);
    return run;
  }
}
