// Command chaining (ISO 7816-4 §5.1.1.1): a host splits data longer than one short APDU
// (255 bytes) into several commands with CLA bit 0x10 set on all but the last. A PIV
// RSA-2048 GENERAL AUTHENTICATE (266 bytes of data) always arrives this way. Pure.

import type { CommandApdu } from './apdu.js';
import { SW, type StatusWord } from './status-words.js';
import { concatBytes } from './tlv.js';

/** Largest assembled command data; PIV's longest command body is a few hundred bytes. */
export const DEFAULT_MAX_CHAIN_BYTES = 16 * 1024;

export type ChainStep =
  /** A command to execute: unchained, or the last link with the whole chain's data. */
  | { readonly kind: 'complete'; readonly apdu: CommandApdu }
  /** An intermediate link was stored: answer 9000 and wait for the next one. */
  | { readonly kind: 'continue' }
  /** The chain was dropped; answer with this status word. */
  | { readonly kind: 'error'; readonly sw: StatusWord; readonly reason: string };

const CHAIN_BIT = 0x10;

/**
 * Assembles chained commands. A chain is identified by INS, P1 and P2: a command with a
 * different header (chained or not) abandons the stored links, as a card does when the host
 * gives up half way. The assembled command has the chaining bit cleared and the last link's Le.
 */
export class CommandChainAssembler {
  readonly #maxBytes: number;
  #head: CommandApdu | undefined;
  #parts: Uint8Array[] = [];
  #size = 0;

  constructor(maxBytes: number = DEFAULT_MAX_CHAIN_BYTES) {
    this.#maxBytes = maxBytes;
  }

  get inProgress(): boolean {
    return this.#head !== undefined;
  }

  reset(): void {
    this.#head = undefined;
    this.#parts = [];
    this.#size = 0;
  }

  /** `chained` is the caller's reading of the class byte (decodeClass), so classes stay its business. */
  accept(apdu: CommandApdu, chained: boolean): ChainStep {
    const head = this.#head;
    const continues = head !== undefined && head.ins === apdu.ins && head.p1 === apdu.p1 && head.p2 === apdu.p2;
    if (!continues) this.reset();
    if (this.#size + apdu.data.length > this.#maxBytes) {
      this.reset();
      return { kind: 'error', sw: SW.WRONG_LENGTH, reason: `chained command data exceeds ${this.#maxBytes} bytes` };
    }
    if (chained) {
      this.#head ??= apdu;
      // Copy: the caller's buffer is only borrowed for this call.
      this.#parts.push(apdu.data.slice());
      this.#size += apdu.data.length;
      return { kind: 'continue' };
    }
    if (!continues) return { kind: 'complete', apdu };
    const data = concatBytes([...this.#parts, apdu.data]);
    this.reset();
    return { kind: 'complete', apdu: { ...apdu, cla: apdu.cla & ~CHAIN_BIT, data } };
  }
}
