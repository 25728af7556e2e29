// PC/SC failures as one typed error. Backends report the SCard return code when they know it
// (pcsclite only puts it in the message text, "SCardTransmit error: Card was reset.(0x80100068)"),
// and the rest of vsc/pcsc decides what to do from the code, never from the wording.

/** The SCard return codes the card source reacts to (pcsc-lite's pcsclite.h values). */
export const ScardCode = {
  CANCELLED: 0x80100002,
  INVALID_HANDLE: 0x80100003,
  INSUFFICIENT_BUFFER: 0x80100008,
  UNKNOWN_READER: 0x80100009,
  TIMEOUT: 0x8010000a,
  SHARING_VIOLATION: 0x8010000b,
  NO_SMARTCARD: 0x8010000c,
  PROTO_MISMATCH: 0x8010000f,
  COMM_ERROR: 0x80100013,
  NOT_TRANSACTED: 0x80100016,
  READER_UNAVAILABLE: 0x80100017,
  NO_SERVICE: 0x8010001d,
  SERVICE_STOPPED: 0x8010001e,
  NO_READERS_AVAILABLE: 0x8010002e,
  UNRESPONSIVE_CARD: 0x80100066,
  UNPOWERED_CARD: 0x80100067,
  RESET_CARD: 0x80100068,
  REMOVED_CARD: 0x80100069,
} as const;

/** What the caller should do about a failure. */
export type PcscErrorKind =
  /** pcscd is not running or went away: wait for it and recreate the context. */
  | 'service'
  /** Another application holds the card exclusively or in a transaction: retry later. */
  | 'sharing'
  /** Another application reset the card: reconnect; the card's state is lost. */
  | 'reset'
  /** The card is gone (removed, unpowered, mute). */
  | 'card-gone'
  /** The reader is gone. */
  | 'reader-gone'
  /** The native PC/SC module could not be loaded at all. */
  | 'unavailable'
  | 'other';

const KIND_BY_CODE: ReadonlyMap<number, PcscErrorKind> = new Map<number, PcscErrorKind>([
  [ScardCode.NO_SERVICE, 'service'],
  [ScardCode.SERVICE_STOPPED, 'service'],
  [ScardCode.SHARING_VIOLATION, 'sharing'],
  [ScardCode.RESET_CARD, 'reset'],
  [ScardCode.REMOVED_CARD, 'card-gone'],
  [ScardCode.NO_SMARTCARD, 'card-gone'],
  [ScardCode.UNPOWERED_CARD, 'card-gone'],
  [ScardCode.UNRESPONSIVE_CARD, 'card-gone'],
  [ScardCode.UNKNOWN_READER, 'reader-gone'],
  [ScardCode.READER_UNAVAILABLE, 'reader-gone'],
]);

export class PcscError extends Error {
  readonly kind: PcscErrorKind;

  constructor(
    message: string,
    /** The SCard return code, when the backend reported one. */
    readonly code?: number,
    kind?: PcscErrorKind,
  ) {
    super(message);
    this.name = 'PcscError';
    this.kind = kind ?? (code === undefined ? 'other' : (KIND_BY_CODE.get(code) ?? 'other'));
  }
}

/** The "(0x8010001d)" pcsc-lite's pcsc_stringify_error-based messages end with. */
const CODE_IN_TEXT = /\(0x([0-9a-f]{8})\)/i;

/** Turns whatever a backend threw into a PcscError, keeping the SCard code when the text carries one. */
export function toPcscError(error: unknown): PcscError {
  if (error instanceof PcscError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const match = CODE_IN_TEXT.exec(message);
  return new PcscError(message, match?.[1] === undefined ? undefined : Number.parseInt(match[1], 16));
}

/** How to start pcscd; `doctor` gives it as the fix, the card source inside SERVICE_DOWN_ADVICE. */
export const SERVICE_START_ADVICE = 'start it with `systemctl start pcscd` (or `sudo systemctl enable --now pcscd.socket`)';

export const SERVICE_DOWN_ADVICE = `the PC/SC service (pcscd) is not running: ${SERVICE_START_ADVICE}; waiting for it to come back`;
