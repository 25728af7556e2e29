// The PcscBackend on the `pcsclite` npm package (1.0.1, NAN). The only module that touches it.
//
// Its traps, and what this adapter does about them:
//  - connect() defaults to exclusive access and disconnect() to powering the card off: we always
//    pass SCARD_SHARE_SHARED and SCARD_LEAVE_CARD.
//  - The factory throws from its constructor when pcscd is not running: turned into a PcscError
//    (kind 'service') for the source's retry loop.
//  - Any monitoring error ends monitoring for good: reported as `failed`, the source recreates us.
//  - connect() on a reader it believes connected answers at once without connecting, and a failed
//    disconnect leaves it believing so: we clear `connected` ourselves after a failed disconnect.
//  - An EventEmitter 'error' without a listener throws: every emitter gets one.
//  - A reader's callbacks run holding its mutex and close() takes it: closing is deferred.
//  - It never says when the first reader listing is done (an empty list emits nothing), so we wrap
//    the instance's `start` callback, which the factory calls on the next tick.
// The module is loaded lazily so that a missing native build only disables PC/SC.

import { createRequire } from 'node:module';
import type { BackendReaderStatus, CardProtocol, PcscBackend, PcscBackendEvents, PcscBackendFactory, PcscBackendReader } from './backend.js';
import { PcscError, toPcscError } from './errors.js';

type PcscliteFactory = typeof import('pcsclite');
type PcscliteContext = ReturnType<PcscliteFactory>;
type PcscliteReader = Parameters<Extract<Parameters<PcscliteContext['on']>[1], (reader: never) => void>>[0];

/** The callback pcsclite's factory hands to the native `start`: (error) or (undefined, reader list). */
type StartCallback = (error: unknown, readers?: Buffer) => void;
interface StartHook {
  start?: (callback: StartCallback) => void;
}

/** "A\0B\0\0" (a PC/SC multi-string) -> ["A", "B"]. */
function parseReaderList(list: Buffer | undefined): string[] {
  if (list === undefined) return [];
  return list
    .toString('utf8')
    .split('\0')
    .filter((name) => name.length > 0);
}

class PcscliteReaderAdapter implements PcscBackendReader {
  #protocol: CardProtocol | undefined;

  constructor(readonly native: PcscliteReader) {}

  get name(): string {
    return this.native.name;
  }

  connect(): Promise<CardProtocol> {
    const r = this.native;
    if (r.connected && this.#protocol !== undefined) return Promise.resolve(this.#protocol);
    return new Promise((resolve, reject) => {
      r.connect({ share_mode: r.SCARD_SHARE_SHARED, protocol: r.SCARD_PROTOCOL_T0 | r.SCARD_PROTOCOL_T1 }, (error: unknown, protocol: number) => {
        if (error) return reject(toPcscError(error));
        if (protocol === r.SCARD_PROTOCOL_T0) this.#protocol = 'T=0';
        else if (protocol === r.SCARD_PROTOCOL_T1) this.#protocol = 'T=1';
        else {
          reject(new PcscError(`the card runs protocol 0x${protocol.toString(16)}, neither T=0 nor T=1`, undefined, 'other'));
          return;
        }
        resolve(this.#protocol);
      });
    });
  }

  transmit(apdu: Uint8Array, protocol: CardProtocol, maxResponse: number): Promise<Uint8Array> {
    const r = this.native;
    const code = protocol === 'T=0' ? r.SCARD_PROTOCOL_T0 : r.SCARD_PROTOCOL_T1;
    return new Promise((resolve, reject) => {
      r.transmit(Buffer.from(apdu.buffer, apdu.byteOffset, apdu.byteLength), maxResponse, code, (error: unknown, response: Buffer) => {
        if (error) reject(toPcscError(error));
        else resolve(new Uint8Array(response.buffer, response.byteOffset, response.byteLength));
      });
    });
  }

  disconnect(): Promise<void> {
    const r = this.native;
    this.#protocol = undefined;
    return new Promise((resolve, reject) => {
      r.disconnect(r.SCARD_LEAVE_CARD, (error: unknown) => {
        if (!error) return resolve();
        // Otherwise the next connect() would be a no-op on a dead handle.
        r.connected = false;
        reject(toPcscError(error));
      });
    });
  }
}

class PcscliteBackend implements PcscBackend {
  readonly #events: PcscBackendEvents;
  readonly #context: PcscliteContext;
  readonly #readers = new Map<PcscliteReader, PcscliteReaderAdapter>();
  #closed = false;
  #failed = false;

  constructor(factory: PcscliteFactory, events: PcscBackendEvents) {
    this.#events = events;
    try {
      this.#context = factory();
    } catch (error) {
      throw toPcscError(error);
    }
    this.#hookListing();
    this.#context.on('error', (error: unknown) => this.#fail(toPcscError(error)));
    this.#context.on('reader', (native) => this.#onReader(native));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const readers = [...this.#readers];
    this.#readers.clear();
    // Not now: we may be inside one of the reader's callbacks, which pcsclite runs holding that
    // reader's mutex, and CardReader.close() takes the same mutex: closing here would deadlock
    // the main thread (seen when a reader's error arrived before the context's).
    setImmediate(() => {
      for (const [native, adapter] of readers) {
        if (native.connected) adapter.disconnect().catch(() => undefined);
        native.close();
      }
      this.#context.close();
    });
  }

  #hookListing(): void {
    const hook = this.#context as unknown as StartHook;
    const start = hook.start;
    if (typeof start !== 'function') return;
    hook.start = (callback: StartCallback): void => {
      start.call(this.#context, (error: unknown, list?: Buffer) => {
        callback(error, list);
        if (!error && !this.#closed && !this.#failed) this.#events.listed(parseReaderList(list));
      });
    };
  }

  #onReader(native: PcscliteReader): void {
    if (this.#closed) return;
    const adapter = new PcscliteReaderAdapter(native);
    this.#readers.set(native, adapter);
    native.on('error', (error: unknown) => {
      const e = toPcscError(error);
      // A reader that went away is not a failure; anything else leaves us blind to this reader.
      if (e.kind !== 'reader-gone') this.#fail(e);
    });
    native.on('end', () => {
      if (!this.#readers.delete(native) || this.#closed || this.#failed) return;
      this.#events.readerRemoved(adapter);
    });
    native.on('status', (status) => {
      if (this.#closed || this.#failed) return;
      const atr = status.atr !== undefined && status.atr.length > 0 ? Uint8Array.from(status.atr) : undefined;
      const report: BackendReaderStatus = { state: status.state, atr };
      this.#events.status(adapter, report);
    });
    this.#events.readerAdded(adapter);
  }

  #fail(error: PcscError): void {
    if (this.#closed || this.#failed) return;
    this.#failed = true;
    this.#events.failed(error);
  }
}

let loaded: PcscliteFactory | undefined;

/** Loads `pcsclite` once; a PcscError (kind 'unavailable') when its native part cannot load. */
export function loadPcsclite(): PcscliteFactory {
  if (loaded !== undefined) return loaded;
  try {
    // createRequire: the package is CommonJS with a native addon, and importing it statically
    // would make every user of vsc/pcsc fail to load where the addon was not built.
    loaded = createRequire(import.meta.url)('pcsclite') as PcscliteFactory;
    return loaded;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new PcscError(
      `the pcsclite native module could not be loaded (${message}); reinstall with libpcsclite-dev installed: npm rebuild pcsclite`,
      undefined,
      'unavailable',
    );
  }
}

/** The default backend factory. */
export const pcscliteBackend: PcscBackendFactory = (events) => new PcscliteBackend(loadPcsclite(), events);
