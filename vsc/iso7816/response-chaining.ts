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
//  - Unlike libcacard, the default policy keeps every response off the CCID message lengths
//    QEMU's usb-ccid mishandles (ccidSafeChunkPolicy; docs/qemu-xhci.md).

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

/** QEMU's usb-ccid answers an APDU with RDR_to_PC_DataBlock: this header, then data + SW1 SW2. */
export const CCID_HEADER_BYTES = 10;
/** wMaxPacketSize of usb-ccid's bulk-in endpoint (a full-speed device). */
export const CCID_BULK_PACKET_BYTES = 64;

/** Length of the CCID message that carries a response with `dataBytes` data bytes. */
export function ccidMessageBytes(dataBytes: number): number {
  return CCID_HEADER_BYTES + dataBytes + 2;
}

/**
 * A CCID message whose length is a multiple of the bulk packet size ends on a full packet, and
 * USB then needs a zero-length packet to mark its end. QEMU 7.2's usb-ccid keeps a message
 * queued whenever the last piece it copied was a full packet, even when the guest's buffer had
 * room for more; behind qemu-xhci (whole transfers in one piece) a 64-byte message is left
 * queued, the guest's next read gets 0 bytes (libccid: "Not enough data received: 0 bytes"),
 * the command fails and pcscd may lose the card for a while. Only 64 failed here with libccid,
 * which reads into a large buffer; a guest driver reading into, say, 128-byte buffers would
 * trip on 192 the same way. So every multiple of 64 is avoided: it costs one GET RESPONSE for
 * 4 answer lengths in 256. docs/qemu-xhci.md has the measurements.
 */
export function isRiskyCcidLength(dataBytes: number): boolean {
  return ccidMessageBytes(dataBytes) % CCID_BULK_PACKET_BYTES === 0;
}

/**
 * `base`, but one byte shorter whenever its chunk would travel in a CCID message of a risky
 * length; the byte goes out behind 61 XX with the rest. One byte is enough: risky lengths are
 * 64 apart, and a chunk of 0 (status only, 12 bytes) is never risky.
 */
export function avoidingRiskyCcidLengths(base: ResponseChunkPolicy): ResponseChunkPolicy {
  return (remaining, requested) => {
    // The chainer clamps whatever a policy says; judge the chunk it will actually send.
    const wanted = base(remaining, requested);
    const ceiling = Math.min(remaining, requested ?? 0, SHORT_MAX_NE);
    const n = Math.max(0, Math.min(Number.isFinite(wanted) ? Math.floor(wanted) : 0, ceiling));
    return n > 0 && isRiskyCcidLength(n) ? n - 1 : n;
  };
}

/** ISO chunks, kept off the CCID lengths QEMU's usb-ccid mishandles on xHCI. */
export const ccidSafeChunkPolicy: ResponseChunkPolicy = avoidingRiskyCcidLengths(isoChunkPolicy);

/**
 * What every card the bridge emulates or adapts uses unless told otherwise. Guests cannot be
 * asked which USB controller they sit behind, and the detour costs one GET RESPONSE, so it is on
 * for all of them.
 */
export const defaultChunkPolicy: ResponseChunkPolicy = ccidSafeChunkPolicy;

export const GET_RESPONSE_INS = 0xc0;

export class ResponseChainer {
  readonly #policy: ResponseChunkPolicy;
  #pending: Uint8Array | undefined;
  #offset = 0;
  #finalSw: StatusWord = SW.OK;

  constructor(policy: ResponseChunkPolicy = defaultChunkPolicy) {
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

  /** True when the policy hands `length` bytes to a host that asked for `ne` in one response. */
  sendsWhole(length: number, ne: number | undefined): boolean {
    return this.#clamp(this.#policy(length, ne), length, ne, 0) === length;
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
