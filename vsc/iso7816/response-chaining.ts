// Response chaining (ISO 7816-4 §5.3.4; ISO 7816-3 §12.2 for T=0). An answer longer than the
// host asked for, or than one short response holds (256 data bytes), is kept here and handed
// out with 61 XX + GET RESPONSE (00 C0 00 00 XX). Under T=0 a host sends case-4 commands
// without Le, so any answer with data to a command without Le goes this way. Pure.
//
// Behaviour mirrored from libcacard (card_7816.c) unless noted:
//  - 61 XX: XX = bytes still available, 00 when 256 or more.
//  - GET RESPONSE with nothing buffered: 6A88 (referenced data not found).
//  - Any command other than GET RESPONSE discards the buffer silently (the caller calls discard()).
//  - Unlike libcacard, a GET RESPONSE asking for more than is left (Le other than 00) gets
//    6C XX with the exact count, the T=0 answer for a wrong Le; OpenSC repeats the command with
//    that Le by itself. Le=00 means "up to 256" and gets what is left.

import type { CommandApdu } from './apdu.js';
import { SHORT_MAX_NE } from './apdu.js';
import { SW, isSuccessStatus, moreDataStatus, responseApdu, wrongLeStatus, type StatusWord } from './status-words.js';

/**
 * How many response bytes to send now, given the bytes still to send and the host's Ne
 * (undefined when the command had no Le). The result is clamped to 0..min(remaining, Ne, 256),
 * and to at least 1 for GET RESPONSE so a host always makes progress. This is the one place to
 * shape chunk sizes, e.g. to avoid CCID messages whose length is a multiple of 64 (a known
 * QEMU xHCI problem).
 */
export type ResponseChunkPolicy = (remaining: number, requested: number | undefined) => number;

/** As much as the host asked for, up to 256; nothing when it gave no Le. */
export const isoChunkPolicy: ResponseChunkPolicy = (remaining, requested) =>
  requested === undefined ? 0 : Math.min(remaining, requested, SHORT_MAX_NE);

export const GET_RESPONSE_INS = 0xc0;

export class ResponseChainer {
  readonly #policy: ResponseChunkPolicy;
  #pending: Uint8Array | undefined;
  #offset = 0;
  #finalSw: StatusWord = SW.OK;

  constructor(policy: ResponseChunkPolicy = isoChunkPolicy) {
    this.#policy = policy;
  }

  /** Bytes still waiting for GET RESPONSE. */
  get pending(): number {
    return this.#pending === undefined ? 0 : this.#pending.length - this.#offset;
  }

  discard(): void {
    this.#pending = undefined;
    this.#offset = 0;
    this.#finalSw = SW.OK;
  }

  /**
   * The response to a command that produced `data` and `sw`. Error statuses carry no data.
   * Replaces anything still buffered from an earlier command.
   */
  respond(data: Uint8Array, sw: StatusWord, ne: number | undefined): Uint8Array {
    this.discard();
    if (data.length === 0 || !isSuccessStatus(sw)) return responseApdu(sw);
    const now = this.#clamp(this.#policy(data.length, ne), data.length, ne, 0);
    if (now === data.length) return responseApdu(sw, data);
    // Copy: the applet's buffer may be reused once we return.
    this.#pending = data.slice();
    this.#offset = now;
    this.#finalSw = sw;
    return responseApdu(moreDataStatus(data.length - now), data.subarray(0, now));
  }

  /** Answers GET RESPONSE (INS C0). The buffer survives parameter errors and 6C XX. */
  getResponse(apdu: CommandApdu): Uint8Array {
    if (apdu.p1 !== 0 || apdu.p2 !== 0) return responseApdu(SW.WRONG_P1P2);
    if (apdu.data.length > 0) return responseApdu(SW.WRONG_LENGTH);
    const pending = this.#pending;
    const remaining = this.pending;
    if (pending === undefined || remaining === 0) return responseApdu(SW.REFERENCED_DATA_NOT_FOUND);
    // A 4-byte GET RESPONSE has no Le; take it as 00 (T=0 always sends P3, so only odd hosts do this).
    const ne = apdu.ne ?? SHORT_MAX_NE;
    if (ne < SHORT_MAX_NE && ne > remaining) return responseApdu(wrongLeStatus(remaining));
    const now = this.#clamp(this.#policy(remaining, ne), remaining, ne, 1);
    const chunk = pending.subarray(this.#offset, this.#offset + now);
    this.#offset += now;
    const left = this.pending;
    if (left > 0) return responseApdu(moreDataStatus(left), chunk);
    const sw = this.#finalSw;
    const out = responseApdu(sw, chunk);
    this.discard();
    return out;
  }

  #clamp(wanted: number, remaining: number, ne: number | undefined, floor: number): number {
    const ceiling = Math.min(remaining, ne ?? 0, SHORT_MAX_NE);
    const value = Number.isFinite(wanted) ? Math.floor(wanted) : 0;
    return Math.max(Math.min(floor, ceiling), Math.min(value, ceiling));
  }
}
