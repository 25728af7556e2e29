// The small surface the card source needs from a PC/SC binding. The default adapter wraps the
// `pcsclite` npm package (pcsclite-backend.ts); a `smartcard` (Node-API) adapter or a fake for
// unit tests plugs in the same way.
//
// Contract for every backend:
//  - the factory throws a PcscError (kind 'service') when the PC/SC service is not reachable;
//  - after `failed`, the backend sends nothing more: the source closes it and creates a new one;
//  - connect always asks for shared access and disconnect always leaves the card as it is,
//    whatever the binding's own defaults are (another application may be using the card too).

import type { PcscError } from './errors.js';

export type CardProtocol = 'T=0' | 'T=1';

/** A reader's state: the SCARD_STATE_* bits as the binding reports them, and the ATR if a card is in. */
export interface BackendReaderStatus {
  /** May carry pcsc-lite's event counter in the high 16 bits: read it with readerStateFlags(). */
  readonly state: number;
  readonly atr: Uint8Array | undefined;
}

export interface PcscBackendEvents {
  /** The complete list of reader names, after every change (also once at start, even when empty). */
  listed(names: readonly string[]): void;
  /** A reader appeared; its status follows through `status`. */
  readerAdded(reader: PcscBackendReader): void;
  status(reader: PcscBackendReader, status: BackendReaderStatus): void;
  /** A reader disappeared (or its monitoring stopped). */
  readerRemoved(reader: PcscBackendReader): void;
  /** Monitoring stopped for good (service gone, context broken): close this backend and make a new one. */
  failed(error: PcscError): void;
}

export interface PcscBackend {
  /** Stops monitoring and releases every reader. Idempotent. */
  close(): void;
}

export interface PcscBackendReader {
  readonly name: string;
  /** Shared access, T=0 or T=1 as the reader and card agree. Rejects with a PcscError. */
  connect(): Promise<CardProtocol>;
  /** One APDU; `maxResponse` bounds the answer (258 for short APDUs). Rejects with a PcscError. */
  transmit(apdu: Uint8Array, protocol: CardProtocol, maxResponse: number): Promise<Uint8Array>;
  /** Leaves the card powered and in its current state. Rejects with a PcscError. */
  disconnect(): Promise<void>;
}

/** Creates a backend that reports to `events`; throws a PcscError when PC/SC is unreachable. */
export type PcscBackendFactory = (events: PcscBackendEvents) => PcscBackend;
