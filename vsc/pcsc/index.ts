// PC/SC readers as cards: the entry points the CLI uses.
//   connect --reader NAME     -> openReaderCard(NAME)
//   connect (no card option)  -> firstReaderCard() ?? the demo card
//   readers [--json] [--watch] -> createPcscSource() (src/cli/readers-command.ts)

import type { PcscBackendFactory } from './backend.js';
import { readerPattern } from './glob.js';
import { pcscliteBackend } from './pcsclite-backend.js';
import { PcscReaderCard, type PcscReaderCardOptions } from './reader-card.js';
import { PcscSource, type PcscSourceOptions } from './source.js';

export type { BackendReaderStatus, CardProtocol, PcscBackend, PcscBackendEvents, PcscBackendFactory, PcscBackendReader } from './backend.js';
export { PcscError, ScardCode, SERVICE_DOWN_ADVICE, SERVICE_START_ADVICE, type PcscErrorKind } from './errors.js';
export { parseAtr, describeProtocols, type ParsedAtr } from './atr.js';
export { t0GuestAtr, T0Adapter, T0AtrError } from './t0-adapter.js';
export { PcscReaderCard, type PcscCardEventMap, type PcscReaderCardOptions } from './reader-card.js';
export { PcscSource, type PcscNotice, type PcscNoticeCode, type PcscReaderInfo, type PcscSourceEventMap } from './source.js';
export { CardResetError } from './card-connection.js';
export { readerPattern, type ReaderPattern } from './glob.js';

/** A PC/SC source on the `pcsclite` binding unless another backend is given. Call start(). */
export function createPcscSource(options: Partial<PcscSourceOptions> = {}): PcscSource {
  return new PcscSource({ ...options, backend: options.backend ?? pcscliteBackend });
}

export interface OpenReaderCardOptions extends Omit<PcscReaderCardOptions, 'ownsSource'> {
  /** Share one running source between several cards; otherwise the card gets its own. */
  readonly source?: PcscSource;
  readonly backend?: PcscBackendFactory;
  /** How long to wait for the first reader listing (default 3 s). */
  readonly readyTimeoutMs?: number;
}

/**
 * The reader named `pattern` (exact name, or a glob with `*` and `?`) as a Card. Resolves even
 * when no such reader exists yet or pcscd is down: the card appears when they do, and its
 * 'notice' event says what it is waiting for. Throws RangeError for an empty pattern.
 */
export async function openReaderCard(pattern: string, options: OpenReaderCardOptions = {}): Promise<PcscReaderCard> {
  readerPattern(pattern, options.exactName ?? false);
  const owns = options.source === undefined;
  const source = options.source ?? createPcscSource(options.backend === undefined ? {} : { backend: options.backend });
  source.start();
  await source.ready(options.readyTimeoutMs);
  const card = new PcscReaderCard(source, pattern, { ...options, ownsSource: owns });
  await card.settled();
  return card;
}

/**
 * The first PC/SC reader with a card in it, else the first reader at all, as a Card; undefined
 * when there is no reader or PC/SC is not available (the caller falls back to the demo card).
 */
export async function firstReaderCard(options: Omit<OpenReaderCardOptions, 'source' | 'exactName'> = {}): Promise<PcscReaderCard | undefined> {
  const source = createPcscSource(options.backend === undefined ? {} : { backend: options.backend });
  source.start();
  await source.ready(options.readyTimeoutMs);
  const readers = source.readers();
  const choice = readers.find((r) => r.presence === 'present') ?? readers[0];
  if (!source.serviceAvailable || choice === undefined) {
    source.close();
    return undefined;
  }
  const card = new PcscReaderCard(source, choice.name, { ...options, exactName: true, ownsSource: true });
  await card.settled();
  return card;
}
