// A card that can sit on a command: wraps any Card and, once armed, holds the answer to the
// first command that matches, so a test can break something (kill pcscd, pull the card) while
// that command is in flight. Every other command goes straight to the wrapped card.
import type { Card, CardEventMap, CardListener } from '../../vsc/card.js';

interface Hold {
  match: (apdu: Uint8Array) => boolean;
  held: () => void;
  release?: (answer: Uint8Array) => void;
}

export class HoldingCard implements Card {
  private hold: Hold | undefined;
  /** Commands held so far. */
  heldCount = 0;

  constructor(private readonly inner: Card) {}

  get name(): string {
    return this.inner.name;
  }

  atr(): Uint8Array | undefined {
    return this.inner.atr();
  }

  /** Resolves when a command matching `match` arrives; its answer waits until `release()`. */
  holdNext(match: (apdu: Uint8Array) => boolean): Promise<void> {
    return new Promise((resolve) => {
      this.hold = { match, held: resolve };
    });
  }

  /** Lets a held command answer (with `answer`), or disarms a hold nothing matched yet. */
  release(answer: Uint8Array = Uint8Array.of(0x6f, 0x00)): void {
    const hold = this.hold;
    this.hold = undefined;
    hold?.release?.(answer);
  }

  transmit(apdu: Uint8Array): Promise<Uint8Array> {
    const hold = this.hold;
    if (hold !== undefined && hold.release === undefined && hold.match(apdu)) {
      this.heldCount++;
      return new Promise((resolve) => {
        hold.release = resolve;
        hold.held();
      });
    }
    return this.inner.transmit(apdu);
  }

  on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.inner.on(event, listener);
  }

  off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.inner.off(event, listener);
  }
}

/** The command a test sends from the guest to be held: a proprietary class no middleware uses. */
export const HELD_COMMAND_HEX = '80:FE:5A:5A:00';

export function isHeldCommand(apdu: Uint8Array): boolean {
  return apdu[0] === 0x80 && apdu[1] === 0xfe && apdu[2] === 0x5a && apdu[3] === 0x5a;
}
