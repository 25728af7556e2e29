// VSCMsg protocol numbers (libcacard's vscard_common.h) and every size limit the
// VSC engine enforces. Limits live only here so a reviewer can check them against
// docs/protocol.md §6.10 in one place.

export const VscMsgType = {
  Init: 1,
  Error: 2,
  ReaderAdd: 3,
  ReaderRemove: 4,
  Atr: 5,
  CardRemove: 6,
  Apdu: 7,
  Flush: 8,
  FlushComplete: 9,
} as const;
export type VscMsgTypeCode = (typeof VscMsgType)[keyof typeof VscMsgType];

export const VscErrorCode = {
  Success: 0,
  GeneralError: 1,
  CannotAddMoreReaders: 2,
  // Spelled ALREAY in libcacard; nobody sends it, but it is a valid code to recognise.
  CardAlreadyInserted: 3,
} as const;
export type VscErrorCodeValue = (typeof VscErrorCode)[keyof typeof VscErrorCode];

/** reader_id of a ReaderAdd request and of a refused ReaderAdd reply. */
export const VSC_UNDEFINED_READER_ID = 0xffffffff;
/** The id QEMU and spice-server assign: one smartcard device per VM, always reader 0. */
export const VSC_MINIMAL_READER_ID = 0;

/** "VSCD": sent as bytes, never byte-swapped by anyone. */
export const VSC_MAGIC_BYTES: readonly number[] = [0x56, 0x53, 0x43, 0x44];
/** MAKE_VERSION(0,0,2). */
export const VSC_VERSION = 2;

export const VSC_HEADER_SIZE = 12;
/** magic + version + one capability word: QEMU computes the capability count with an unsigned
 * subtraction from this size, so a shorter Init would make it walk far past the message. */
export const VSC_INIT_MIN_PAYLOAD = 12;
export const VSC_ERROR_PAYLOAD_SIZE = 4;

export const VSC_LIMITS = {
  /** ISO 7816-3 maximum; QEMU answers GENERAL_ERROR above it. */
  maxAtrSize: 40,
  /** TS and T0 at least. */
  minAtrSize: 2,
  /** QEMU's chardev input buffer; overflowing it drops the device connection until VM restart. */
  qemuChardevInputSize: 64 * 1024,
  /** Everything we send (header included) stays far below qemuChardevInputSize. */
  maxSendMessageSize: 4096,
  /** 256 data bytes + SW1 SW2: the T=0 short-response maximum; longer answers go via 61 XX. */
  maxApduResponseSize: 258,
  /** Shortest answer a card can give: SW1 SW2. */
  minApduResponseSize: 2,
  /** Largest inbound payload we accept: a guest command is at most one 64 KiB CCID message. */
  maxInboundPayloadSize: 64 * 1024,
  /** The name is dropped by spice-server and ignored by QEMU; keep it short. */
  maxReaderNameBytes: 128,
  /** QEMU keeps one guest command outstanding; more than a few queued means a broken peer. */
  maxQueuedApdus: 8,
} as const;

export const DEFAULT_REPLY_TIMEOUT_MS = 10_000;

const TYPE_NAMES: Readonly<Record<number, string>> = {
  [VscMsgType.Init]: 'Init',
  [VscMsgType.Error]: 'Error',
  [VscMsgType.ReaderAdd]: 'ReaderAdd',
  [VscMsgType.ReaderRemove]: 'ReaderRemove',
  [VscMsgType.Atr]: 'ATR',
  [VscMsgType.CardRemove]: 'CardRemove',
  [VscMsgType.Apdu]: 'APDU',
  [VscMsgType.Flush]: 'Flush',
  [VscMsgType.FlushComplete]: 'FlushComplete',
};

/** Human name of a wire type number, for logs and error text. */
export function vscTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `unknown(${type})`;
}
