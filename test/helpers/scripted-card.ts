// A card for tests of the VSC path: a fixed ATR and an answer function, with insert/remove.
import { TypedEmitter, type Card, type CardEventMap, type CardListener } from '../../vsc/card.js';

export type Answer = (apdu: Uint8Array) => Uint8Array | Promise<Uint8Array>;

/** 3B 0A + ten historical bytes "SPICE-TEST": no interface bytes, so T=0, and QEMU's ATR check passes. */
export const SCRIPTED_ATR = Uint8Array.from([0x3b, 0x0a, ...Buffer.from('SPICE-TEST')]);

/** READ BINARY answers Le bytes counting from P2; everything else answers 90 00. */
export const defaultAnswer: Answer = (apdu) => {
  if (apdu[1] === 0xb0) {
    const le = apdu.byteLength > 4 ? apdu[4]! || 256 : 256;
    const out = new Uint8Array(le + 2);
    for (let i = 0; i < le; i++) out[i] = (apdu[3]! + i) & 0xff;
    out[le] = 0x90;
    return out;
  }
  return Uint8Array.of(0x90, 0x00);
};

export class ScriptedCard implements Card {
  readonly name = 'scripted test card';
  readonly commands: Uint8Array[] = [];
  private present: boolean;
  private readonly events = new TypedEmitter<CardEventMap>();

  constructor(
    private readonly answer: Answer = defaultAnswer,
    private readonly atrBytes: Uint8Array = SCRIPTED_ATR,
    inserted = true,
  ) {
    this.present = inserted;
  }

  atr(): Uint8Array | undefined {
    return this.present ? this.atrBytes : undefined;
  }

  async transmit(apdu: Uint8Array): Promise<Uint8Array> {
    if (!this.present) throw new Error('no card');
    this.commands.push(apdu.slice());
    return this.answer(apdu);
  }

  insert(): void {
    this.present = true;
    this.events.emit('inserted', this.atrBytes);
  }

  remove(): void {
    this.present = false;
    this.events.emit('removed');
  }

  on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.events.on(event, listener);
  }

  off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.events.off(event, listener);
  }
}
