// Presents a real card to the guest as a T=0 card. Pure: the card is reached through a function
// the caller passes in.
//
// QEMU's usb-ccid reader is TPDU-level and the guest picks the protocol from the ATR we give it,
// so the guest must be told T=0 (a T=1 ATR would make it send T=1 blocks we could not forward).
// PC/SC, on the other side, exchanges whole APDUs with the card in whatever protocol the two
// agreed. Mapping (docs/pcsc-passthrough.md has the tables):
//  - ATR: keep TS and the historical bytes (they identify the card), drop every protocol
//    indication but T=0, keep TA1 when its Fi/Di are valid, TC1 when not the default, and T=0's
//    TC2 (WI); no TCK (a T=0-only ATR has none). Checked with QEMU's own ATR check.
//  - T=1 card: T=0 drops Le from case-4 commands, so a command with data and no Le goes to the
//    card with Le=00 (without it again if the card answers 6700); a 5-byte case-1 command whose
//    P3=00 the card refuses with 6700 goes again as 4 bytes. 6C XX (wrong Le) is re-issued with
//    Le=XX, and 61 XX from the card is collected with GET RESPONSE. The guest then gets the data
//    through vsc/iso7816's ResponseChainer: as much as its Le allows (never over 256 bytes), the
//    rest behind 61 XX for its GET RESPONSE; nothing directly when it gave no Le (case 1/3).
//  - T=0 card: commands and answers pass unchanged, 61 XX and 6C XX included.
//  - Either way the chunk policy has the last word on lengths: by default no answer goes out in
//    a CCID message whose length QEMU's usb-ccid mishandles behind xHCI (docs/qemu-xhci.md). A
//    T=0 card's answer of such a length is cut like any other, its last byte behind 61 01 (and
//    whatever the card still held behind its own 61 XX is fetched first and follows it).

import { checkAtr } from '../codec.js';
import { SHORT_MAX_NE, decodeClass, parseCommandApdu, type CommandApdu } from '../iso7816/apdu.js';
import { GET_RESPONSE_INS, ResponseChainer, defaultChunkPolicy, type ResponseChunkPolicy } from '../iso7816/response-chaining.js';
import { SW, statusWordOf, type StatusWord } from '../iso7816/status-words.js';
import { concatBytes } from '../iso7816/tlv.js';
import { parseAtr } from './atr.js';
import type { CardProtocol } from './backend.js';

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');

export class T0AtrError extends Error {
  constructor(
    readonly atr: Uint8Array,
    reason: string,
  ) {
    super(`the card's ATR (${hex(atr)}) cannot be shown to the VM as a T=0 card: ${reason}`);
    this.name = 'T0AtrError';
  }
}

/** ISO 7816-3 Tables 7 and 8: Fi and Di indices that are not RFU. */
const VALID_FI = new Set([0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x9, 0xa, 0xb, 0xc, 0xd]);
const VALID_DI = new Set([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9]);

function taIsValid(ta1: number): boolean {
  return VALID_FI.has(ta1 >> 4) && VALID_DI.has(ta1 & 0x0f);
}

function buildT0Atr(ts: number, historical: Uint8Array, ta1?: number, tc1?: number, tc2?: number): Uint8Array {
  const y1 = (ta1 === undefined ? 0 : 0x1) | (tc1 === undefined ? 0 : 0x4) | (tc2 === undefined ? 0 : 0x8);
  const out = [ts, (y1 << 4) | historical.length];
  if (ta1 !== undefined) out.push(ta1);
  if (tc1 !== undefined) out.push(tc1);
  // TD1 = 40: TC2 follows, protocol T=0.
  if (tc2 !== undefined) out.push(0x40, tc2);
  out.push(...historical);
  return Uint8Array.from(out);
}

/**
 * The ATR to give the guest for a card with ATR `cardAtr`: the card's own when it already offers
 * T=0 only and QEMU accepts it, else a rebuilt T=0-only one with the same historical bytes.
 * Throws T0AtrError when the ATR cannot be read.
 */
export function t0GuestAtr(cardAtr: Uint8Array): Uint8Array {
  const parsed = parseAtr(cardAtr);
  if (!parsed.ok) throw new T0AtrError(cardAtr, parsed.reason);
  const { ts, groups, historical, protocols } = parsed.atr;
  if (protocols.length === 1 && protocols[0] === 0 && checkAtr(cardAtr).ok) return cardAtr.slice();
  const g1 = groups[0] ?? {};
  const ta1 = g1.ta !== undefined && taIsValid(g1.ta) ? g1.ta : undefined;
  const tc1 = g1.tc !== undefined && g1.tc !== 0 ? g1.tc : undefined;
  // TC2 is T=0's work waiting integer only when TD1 names T=0.
  const tc2 = g1.td !== undefined && (g1.td & 0x0f) === 0 ? groups[1]?.tc : undefined;
  // Simplest last: QEMU's check misreads some interface-byte layouts, so fall back until one passes.
  const candidates = [buildT0Atr(ts, historical, ta1, tc1, tc2), buildT0Atr(ts, historical, ta1, tc1), buildT0Atr(ts, historical)];
  const reasons: string[] = [];
  for (const candidate of candidates) {
    const check = checkAtr(candidate);
    if (check.ok) return candidate;
    reasons.push(check.reason);
  }
  throw new T0AtrError(cardAtr, reasons.at(-1) ?? 'QEMU would refuse every T=0 form of it');
}

/** Sends one APDU to the card and resolves with its answer (data + SW1 SW2). */
export type CardExchange = (apdu: Uint8Array) => Promise<Uint8Array>;

export interface T0AdapterOptions {
  /** The protocol PC/SC runs with the card. */
  readonly protocol: CardProtocol;
  /** How answers are cut for the guest (default: defaultChunkPolicy, safe on QEMU's xHCI). */
  readonly chunkPolicy?: ResponseChunkPolicy;
  /** Bound on an answer collected through the card's own 61 XX (default 64 KiB). */
  readonly maxResponseBytes?: number;
}

/** Largest answer a short APDU gets in one piece: 256 data bytes + SW. */
export const SHORT_RESPONSE_MAX = 258;
const DEFAULT_MAX_RESPONSE = 64 * 1024;

interface CardAnswer {
  readonly data: Uint8Array;
  readonly sw: StatusWord;
}

function split(response: Uint8Array): CardAnswer {
  const sw = statusWordOf(response);
  // Fewer than 2 bytes is no answer at all; 6F00 keeps the guest's stack on a defined path.
  if (sw === undefined) return { data: new Uint8Array(0), sw: SW.UNKNOWN_ERROR };
  return { data: response.subarray(0, response.length - 2), sw };
}

function encode(apdu: CommandApdu, le: number | undefined): Uint8Array {
  const out = [apdu.cla, apdu.ins, apdu.p1, apdu.p2];
  if (apdu.data.length > 0) out.push(apdu.data.length, ...apdu.data);
  if (le !== undefined) out.push(le & 0xff);
  return Uint8Array.from(out);
}

/** The class byte for a GET RESPONSE on the command's logical channel. */
function getResponseClass(cla: number): number {
  const c = decodeClass(cla);
  if (c.kind !== 'interindustry') return 0x00;
  return c.channel < 4 ? c.channel : 0x40 | (c.channel - 4);
}

/**
 * One per card connection: it holds the guest's pending GET RESPONSE data. Call `reset()` when
 * the card is reset or replaced.
 */
export class T0Adapter {
  readonly protocol: CardProtocol;
  readonly #chainer: ResponseChainer;
  readonly #maxResponse: number;

  constructor(options: T0AdapterOptions) {
    this.protocol = options.protocol;
    this.#chainer = new ResponseChainer(options.chunkPolicy ?? defaultChunkPolicy);
    this.#maxResponse = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE;
  }

  reset(): void {
    this.#chainer.discard();
  }

  /** The guest's command in, the guest's answer out. */
  async exchange(command: Uint8Array, card: CardExchange): Promise<Uint8Array> {
    const parsed = parseCommandApdu(command);
    // A T=0 card already speaks the guest's protocol. A command that is not a short T=0 one
    // (extended length, malformed) is the card's to judge.
    if (this.protocol === 'T=0' || !parsed.ok) {
      if (parsed.ok && parsed.apdu.ins === GET_RESPONSE_INS && this.#chainer.pending > 0) return this.#chainer.getResponse(parsed.apdu);
      this.#chainer.discard();
      return this.#passOn(command, await card(command), card);
    }
    const apdu = parsed.apdu;
    if (apdu.ins === GET_RESPONSE_INS && this.#chainer.pending > 0) return this.#chainer.getResponse(apdu);
    this.#chainer.discard();
    const answer = await this.#run(apdu, card);
    // Case 1 and 3 in T=0 terms: the guest gave no Le, so data waits for GET RESPONSE.
    const guestNe = apdu.apduCase === 2 || apdu.apduCase === 4 ? apdu.ne : undefined;
    return this.#chainer.respond(answer.data, answer.sw, guestNe);
  }

  /** The card's own answer, unchanged unless the chunk policy would not send it in one piece. */
  async #passOn(command: Uint8Array, response: Uint8Array, card: CardExchange): Promise<Uint8Array> {
    const sw = statusWordOf(response);
    const length = response.length - 2;
    // Over 256 bytes answers an extended command, which has no 61 XX form to cut it into.
    if (sw === undefined || length === 0 || length > SHORT_MAX_NE || this.#chainer.sendsWhole(length, length)) return response;
    // Fetch what the card holds behind its own 61 XX now, so the guest's GET RESPONSEs are all
    // answered from one buffer. Data under an error status is dropped, as ISO 7816-4 has it.
    const answer = await this.#collect({ data: response.subarray(0, length), sw }, getResponseClass(command[0] ?? 0), card);
    return this.#chainer.respond(answer.data, answer.sw, length);
  }

  async #run(apdu: CommandApdu, card: CardExchange): Promise<CardAnswer> {
    const intermediateLink = decodeClass(apdu.cla).chained;
    let le: number | undefined;
    let addedLe = false;
    switch (apdu.apduCase) {
      case 1:
        break;
      case 2:
      case 4:
        le = apdu.ne;
        break;
      case 3:
        // T=0 dropped the Le of a case-4 command, if it was one: ask for up to 256 bytes.
        if (!intermediateLink) {
          le = 256;
          addedLe = true;
        }
        break;
    }
    let answer = split(await card(encode(apdu, le)));
    if (answer.sw === SW.WRONG_LENGTH) {
      if (addedLe) {
        le = undefined;
        answer = split(await card(encode(apdu, le)));
      } else if (apdu.apduCase === 2 && apdu.ne === 256) {
        // T=0 sends a case-1 command as 5 bytes with P3=00; this card wants it without Le.
        le = undefined;
        answer = split(await card(encode(apdu, le)));
      }
    }
    if (answer.sw >> 8 === 0x6c && le !== undefined) {
      le = answer.sw & 0xff || 256;
      answer = split(await card(encode(apdu, le)));
    }
    return this.#collect(answer, getResponseClass(apdu.cla), card);
  }

  /** Follows the card's own 61 XX until its final status. */
  async #collect(first: CardAnswer, cla: number, card: CardExchange): Promise<CardAnswer> {
    if (first.sw >> 8 !== 0x61) return first;
    const parts: Uint8Array[] = [first.data];
    let total = first.data.length;
    let answer = first;
    // Rounds are bounded too: a card answering 61 XX without data would otherwise loop forever.
    for (let round = 0; answer.sw >> 8 === 0x61; round++) {
      if (total > this.#maxResponse || round > this.#maxResponse / 256 + 1) return { data: new Uint8Array(0), sw: SW.UNKNOWN_ERROR };
      let le = answer.sw & 0xff;
      answer = split(await card(Uint8Array.of(cla, GET_RESPONSE_INS, 0, 0, le)));
      if (answer.sw >> 8 === 0x6c) {
        le = answer.sw & 0xff;
        answer = split(await card(Uint8Array.of(cla, GET_RESPONSE_INS, 0, 0, le)));
      }
      parts.push(answer.data);
      total += answer.data.length;
    }
    return { data: concatBytes(parts), sw: answer.sw };
  }
}
