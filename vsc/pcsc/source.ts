// The PC/SC card source: keeps a backend alive and turns what it reports into reader and card
// events. It owns the service's lifecycle: when pcscd is absent, stops or restarts, it says so
// once per outage and recreates the backend with a capped backoff until the service is back
// (the `pcsclite` binding throws when there is no service and never monitors again after an
// error, so recreating it is the only way to recover).

import { TypedEmitter } from '../card.js';
import type { BackendReaderStatus, PcscBackend, PcscBackendEvents, PcscBackendFactory, PcscBackendReader } from './backend.js';
import { PcscError, SERVICE_DOWN_ADVICE, toPcscError } from './errors.js';
import { readerStateFlags, type CardPresence } from './reader-state.js';

export interface PcscReaderInfo {
  readonly name: string;
  /** 'unknown' until the reader's first status arrives. */
  readonly presence: CardPresence | 'unknown';
  readonly atr: Uint8Array | undefined;
  /** Another application holds the card exclusively. */
  readonly exclusive: boolean;
  readonly inUse: boolean;
}

export type PcscNoticeCode =
  | 'service-down'
  | 'service-up'
  | 'service-restarted'
  | 'pcsc-unavailable'
  | 'reader-waiting'
  | 'reader-found'
  | 'reader-gone'
  | 'card-busy'
  | 'card-reset'
  | 'card-unsupported'
  | 'card-error';

/** Something the user should be told, in words they can act on. */
export interface PcscNotice {
  readonly code: PcscNoticeCode;
  readonly reader?: string;
  readonly message: string;
}

export interface PcscSourceEventMap {
  'reader-added': [name: string];
  'reader-removed': [name: string];
  'card-inserted': [name: string, atr: Uint8Array];
  'card-removed': [name: string];
  /** Any change of a reader's state, including the exclusive/in-use flags. */
  'reader-state': [info: PcscReaderInfo];
  notice: [notice: PcscNotice];
}

export interface PcscSourceOptions {
  readonly backend: PcscBackendFactory;
  /** First delay before recreating the backend (default 250 ms); doubles up to `retryMaxMs`. */
  readonly retryInitialMs?: number;
  /** Longest delay between attempts (default 5 s). */
  readonly retryMaxMs?: number;
}

type ServiceState = 'starting' | 'up' | 'down' | 'unavailable' | 'closed';

interface ReaderEntry {
  readonly handle: PcscBackendReader;
  info: PcscReaderInfo;
  /** pcsc-lite's insert/remove counter (high 16 bits of the state); 0 where the platform has none. */
  events: number;
}

export class PcscSource {
  readonly #emitter = new TypedEmitter<PcscSourceEventMap>();
  readonly #factory: PcscBackendFactory;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #readers = new Map<string, ReaderEntry>();
  #backend: PcscBackend | undefined;
  /** Identifies the live backend instance; events from older ones are dropped. */
  #token: object | undefined;
  #state: ServiceState = 'starting';
  /** The announced outage whose "back" is still owed (or why PC/SC is unusable for good). */
  #outage: PcscNotice | undefined;
  #listed = false;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #waiters: (() => void)[] = [];
  #unavailableReason: string | undefined;

  constructor(options: PcscSourceOptions) {
    this.#factory = options.backend;
    this.#retryInitialMs = options.retryInitialMs ?? 250;
    this.#retryMaxMs = options.retryMaxMs ?? 5_000;
  }

  on<E extends keyof PcscSourceEventMap>(event: E, listener: (...args: PcscSourceEventMap[E]) => void): void {
    this.#emitter.on(event, listener);
  }

  off<E extends keyof PcscSourceEventMap>(event: E, listener: (...args: PcscSourceEventMap[E]) => void): void {
    this.#emitter.off(event, listener);
  }

  /** Starts monitoring. Listeners added before this see every reader from the start. */
  start(): void {
    if (this.#state !== 'starting' || this.#backend !== undefined || this.#retryTimer !== undefined) return;
    this.#connect();
  }

  /** True when a backend is running, false when the service is down or PC/SC is unavailable. */
  get serviceAvailable(): boolean {
    return this.#state === 'up';
  }

  /** Why PC/SC cannot be used at all (native module missing), else undefined. */
  get unavailableReason(): string | undefined {
    return this.#unavailableReason;
  }

  /** The notice of the current outage (service down, PC/SC unusable), for late subscribers. */
  get outageNotice(): PcscNotice | undefined {
    return this.#outage;
  }

  readers(): PcscReaderInfo[] {
    return [...this.#readers.values()].map((r) => r.info);
  }

  /** The backend's handle for opening the card in a reader. */
  handle(name: string): PcscBackendReader | undefined {
    return this.#readers.get(name)?.handle;
  }

  /**
   * Resolves once the first picture is complete: every reader listed with its first status, or
   * the service known to be down. Bounded by `timeoutMs` (then resolves with what is known).
   */
  ready(timeoutMs = 3_000): Promise<void> {
    if (this.#isSettled()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.#waiters;
      function done(): void {
        clearTimeout(timer);
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#backend?.close();
    this.#backend = undefined;
    this.#readers.clear();
    this.#wake(true);
    this.#emitter.removeAllListeners();
  }

  #isSettled(): boolean {
    if (this.#state === 'down' || this.#state === 'unavailable' || this.#state === 'closed') return true;
    if (this.#state !== 'up' || !this.#listed) return false;
    for (const r of this.#readers.values()) if (r.info.presence === 'unknown') return false;
    return true;
  }

  #wake(force = false): void {
    if (!force && !this.#isSettled()) return;
    for (const waiter of [...this.#waiters]) waiter();
  }

  #notice(notice: PcscNotice): void {
    this.#emitter.emit('notice', notice);
  }

  /** True when a backend now runs. */
  #connect(): boolean {
    this.#retryTimer = undefined;
    if (this.#state === 'closed') return false;
    const token = {};
    this.#token = token;
    try {
      this.#backend = this.#factory(this.#eventsFor(token));
    } catch (error) {
      this.#token = undefined;
      this.#connectFailed(toPcscError(error));
      return false;
    }
    this.#attempt = 0;
    this.#state = 'up';
    if (this.#outage !== undefined) {
      this.#outage = undefined;
      this.#notice({ code: 'service-up', message: 'the PC/SC service (pcscd) is back; readers are listed again' });
    }
    return true;
  }

  #connectFailed(error: PcscError): void {
    if (error.kind === 'unavailable') {
      this.#state = 'unavailable';
      this.#unavailableReason = error.message;
      this.#outage = { code: 'pcsc-unavailable', message: error.message };
      this.#notice(this.#outage);
      this.#wake();
      return;
    }
    this.#state = 'down';
    if (this.#outage === undefined) {
      const detail = error.kind === 'service' ? '' : ` (${error.message})`;
      this.#outage = { code: 'service-down', message: `${SERVICE_DOWN_ADVICE}${detail}` };
      this.#notice(this.#outage);
    }
    this.#wake();
    const delay = Math.min(this.#retryMaxMs, this.#retryInitialMs * 2 ** this.#attempt);
    this.#attempt += 1;
    this.#retryTimer = setTimeout(() => {
      this.#state = 'starting';
      this.#connect();
    }, delay);
  }

  /** Events of one backend instance; anything from an instance we have dropped is ignored. */
  #eventsFor(token: object): PcscBackendEvents {
    const live = (): boolean => this.#state !== 'closed' && this.#token === token;
    return {
      listed: (names) => live() && this.#onListed(names),
      readerAdded: (reader) => live() && this.#onReaderAdded(reader),
      status: (reader, status) => live() && this.#onStatus(reader, status),
      readerRemoved: (reader) => live() && this.#onReaderRemoved(reader.name),
      failed: (error) => live() && this.#onFailed(error),
    };
  }

  #onListed(names: readonly string[]): void {
    this.#listed = true;
    for (const name of [...this.#readers.keys()]) if (!names.includes(name)) this.#onReaderRemoved(name);
    this.#wake();
  }

  #onReaderAdded(reader: PcscBackendReader): void {
    const existing = this.#readers.get(reader.name);
    if (existing !== undefined) {
      if (existing.handle === reader) return;
      this.#onReaderRemoved(reader.name);
    }
    const info: PcscReaderInfo = { name: reader.name, presence: 'unknown', atr: undefined, exclusive: false, inUse: false };
    this.#readers.set(reader.name, { handle: reader, info, events: 0 });
    this.#emitter.emit('reader-added', reader.name);
  }

  #onStatus(reader: PcscBackendReader, status: BackendReaderStatus): void {
    const entry = this.#readers.get(reader.name);
    if (entry === undefined || entry.handle !== reader) return;
    const flags = readerStateFlags(status.state);
    const events = (status.state >>> 16) & 0xffff;
    const before = entry.info;
    const atr = flags.presence === 'present' ? status.atr : undefined;
    const info: PcscReaderInfo = { name: reader.name, presence: flags.presence, atr, exclusive: flags.exclusive, inUse: flags.inUse };
    entry.info = info;
    const previousEvents = entry.events;
    entry.events = events;
    const wasPresent = before.presence === 'present';
    const isPresent = info.presence === 'present' && atr !== undefined;
    // Still present, but the ATR changed or the counter moved by a remove + insert we did not see.
    const swapped =
      wasPresent && isPresent && (!sameBytes(before.atr, atr) || (previousEvents !== 0 && events !== 0 && events - previousEvents >= 2));
    if (wasPresent && (!isPresent || swapped)) this.#emitter.emit('card-removed', reader.name);
    if (isPresent && (!wasPresent || swapped)) this.#emitter.emit('card-inserted', reader.name, atr);
    if (!sameInfo(before, info)) this.#emitter.emit('reader-state', info);
    this.#wake();
  }

  #onReaderRemoved(name: string): void {
    const entry = this.#readers.get(name);
    if (entry === undefined) return;
    this.#readers.delete(name);
    if (entry.info.presence === 'present') this.#emitter.emit('card-removed', name);
    this.#emitter.emit('reader-removed', name);
    this.#wake();
  }

  #onFailed(error: PcscError): void {
    this.#token = undefined;
    this.#backend?.close();
    this.#backend = undefined;
    for (const name of [...this.#readers.keys()]) this.#onReaderRemoved(name);
    this.#listed = false;
    this.#state = 'starting';
    // Try again at once: a restarted pcscd is often back before we notice it was gone.
    this.#attempt = 0;
    if (this.#connect()) {
      this.#notice({ code: 'service-restarted', message: `the PC/SC service (pcscd) restarted (${error.message}); readers are listed again` });
    }
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function sameInfo(a: PcscReaderInfo, b: PcscReaderInfo): boolean {
  return a.presence === b.presence && a.exclusive === b.exclusive && a.inUse === b.inUse && sameBytes(a.atr, b.atr);
}
