// The Card interface: the only thing the VSC engine knows about a card. Card sources
// (PC/SC reader, soft PIV card, trace replay) implement it; the engine never sees
// how the bytes are produced.

/** Event name -> listener arguments. */
export interface CardEventMap {
  /** A card is now present: newly inserted, or reset with a (possibly new) ATR. */
  inserted: [atr: Uint8Array];
  /** No card is present any more. */
  removed: [];
}

export type CardListener<E extends keyof CardEventMap> = (...args: CardEventMap[E]) => void;

export interface Card {
  /** Human-readable name, e.g. the PC/SC reader name; used as the VSC reader name. */
  readonly name: string;
  /** The current ATR, or undefined when no card is present. */
  atr(): Uint8Array | undefined;
  /**
   * Sends one command APDU and resolves with the full response, SW1 SW2 included.
   * Rejects when the card could not answer (removed, I/O error). The engine sends
   * one command at a time and never overlaps calls.
   */
  transmit(apdu: Uint8Array): Promise<Uint8Array>;
  on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void;
  off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void;
  /** Releases the card or reader; after it no events fire. */
  close?(): void | Promise<void>;
}

type Listeners<M extends { [K in keyof M]: unknown[] }> = { [K in keyof M]?: Set<(...args: M[K]) => void> };

/**
 * A tiny typed event emitter for card sources: listeners are typed per event and
 * run synchronously in registration order. A listener that throws does not stop
 * the others; its error is handed to `onListenerError` (default: rethrown later
 * on the microtask queue so it is not swallowed).
 */
export class TypedEmitter<M extends { [K in keyof M]: unknown[] }> {
  #listeners: Listeners<M> = {};
  readonly #onListenerError: (error: unknown) => void;

  constructor(onListenerError?: (error: unknown) => void) {
    this.#onListenerError =
      onListenerError ??
      ((error) =>
        queueMicrotask(() => {
          throw error;
        }));
  }

  on<E extends keyof M>(event: E, listener: (...args: M[E]) => void): void {
    const set = this.#listeners[event] ?? new Set<(...args: M[E]) => void>();
    this.#listeners[event] = set;
    set.add(listener);
  }

  off<E extends keyof M>(event: E, listener: (...args: M[E]) => void): void {
    this.#listeners[event]?.delete(listener);
  }

  emit<E extends keyof M>(event: E, ...args: M[E]): void {
    const set = this.#listeners[event];
    if (set === undefined) return;
    // Copy: a listener may remove itself (or others) while we iterate.
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }

  listenerCount(event: keyof M): number {
    return this.#listeners[event]?.size ?? 0;
  }

  removeAllListeners(): void {
    this.#listeners = {};
  }
}

/** A card whose presence the user controls (soft cards): the CLI maps keys and signals onto it. */
export interface InsertableCard extends Card {
  insert(): void;
  remove(): void;
}

export function isInsertable(card: Card): card is InsertableCard {
  const c = card as Partial<InsertableCard>;
  return typeof c.insert === 'function' && typeof c.remove === 'function';
}
