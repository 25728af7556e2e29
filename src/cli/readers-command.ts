// `spice-smartcard readers [--json] [--watch]`: the PC/SC readers this machine has, whether a
// card is in each, its ATR and protocols, and the ATR the VM would be shown. With --watch, one
// line (or JSON object) per change until Ctrl-C.
// Exit codes: 0 ok, 1 internal error, 2 usage, 3 PC/SC service unreachable.

import { parseArgs } from 'node:util';
import { parseAtr } from '../../vsc/pcsc/atr.js';
import type { PcscBackendFactory } from '../../vsc/pcsc/backend.js';
import { createPcscSource, type PcscNotice, type PcscReaderInfo, type PcscSource } from '../../vsc/pcsc/index.js';
import { t0GuestAtr } from '../../vsc/pcsc/t0-adapter.js';
import { ExitCode } from './exit-codes.js';
import { untilSignalOr } from './run-until-stopped.js';

const USAGE = `Usage: spice-smartcard readers [--json] [--watch]
  List PC/SC readers, the card in each (ATR, protocols) and the ATR the VM is shown.
  --json    one JSON document (with --watch: one JSON object per line and change)
  --watch   keep following readers and cards until Ctrl-C`;

export interface ReadersIo {
  readonly out?: NodeJS.WritableStream;
  readonly err?: NodeJS.WritableStream;
  /** Ends --watch (besides SIGINT/SIGTERM). */
  readonly signal?: AbortSignal;
  readonly backend?: PcscBackendFactory;
}

export interface ReaderReport {
  readonly name: string;
  readonly card: 'present' | 'empty' | 'mute' | 'unavailable' | 'unknown';
  /** Uppercase hex without spaces, null without a card. */
  readonly atr: string | null;
  /** Protocols the card's ATR offers, e.g. ["T=1"]. */
  readonly protocols: string[];
  /** What the VM is shown (always T=0), null when no card or when it cannot be shown. */
  readonly guestAtr: string | null;
  readonly inUse: boolean;
  readonly exclusive: boolean;
}

const hexOf = (bytes: Uint8Array, separator = ''): string =>
  Array.from(bytes, (b) => b.toString(16).toUpperCase().padStart(2, '0')).join(separator);

export function reportReader(info: PcscReaderInfo): ReaderReport {
  const atr = info.atr;
  const parsed = atr === undefined ? undefined : parseAtr(atr);
  let guestAtr: string | null = null;
  if (atr !== undefined) {
    try {
      guestAtr = hexOf(t0GuestAtr(atr));
    } catch {
      guestAtr = null;
    }
  }
  return {
    name: info.name,
    card: info.presence,
    atr: atr === undefined ? null : hexOf(atr),
    protocols: parsed?.ok ? parsed.atr.protocols.map((t) => `T=${t}`) : [],
    guestAtr,
    inUse: info.inUse,
    exclusive: info.exclusive,
  };
}

function spaced(hex: string): string {
  return hex.replace(/(..)(?!$)/g, '$1 ');
}

function textFor(report: ReaderReport): string {
  const lines = [report.name];
  if (report.card !== 'present') {
    lines.push(`  card:      ${report.card === 'empty' ? 'none' : report.card}`);
    return lines.join('\n');
  }
  const usage = report.exclusive ? ', held exclusively by another application' : report.inUse ? ', in use' : '';
  lines.push(`  card:      present (${report.protocols.join(',') || 'protocol unknown'}${usage})`);
  lines.push(`  ATR:       ${spaced(report.atr ?? '')}`);
  lines.push(report.guestAtr === null ? '  VM ATR:    (this card cannot be shown to the VM as T=0)' : `  VM ATR:    ${spaced(report.guestAtr)} (T=0)`);
  return lines.join('\n');
}

export async function runReaders(args: string[], io: ReadersIo = {}): Promise<number> {
  const out = io.out ?? process.stdout;
  const err = io.err ?? process.stderr;
  let values: { json?: boolean | undefined; watch?: boolean | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args,
      options: { json: { type: 'boolean' }, watch: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    err.write(`${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
    return ExitCode.USAGE;
  }
  if (values.help) {
    out.write(`${USAGE}\n`);
    return ExitCode.OK;
  }
  const json = values.json ?? false;
  const source = createPcscSource(io.backend === undefined ? {} : { backend: io.backend });
  try {
    if (values.watch) return await watch(source, json, out, err, io.signal);
    return await list(source, json, out, err);
  } finally {
    source.close();
  }
}

async function list(source: PcscSource, json: boolean, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  let outage: PcscNotice | undefined;
  source.on('notice', (notice) => {
    if (notice.code === 'service-down' || notice.code === 'pcsc-unavailable') outage = notice;
  });
  source.start();
  await source.ready();
  if (!source.serviceAvailable) {
    // A one-shot listing does not wait for the service to come back, whatever the notice says.
    const message = (outage?.message ?? 'the PC/SC service is not reachable').replace(/; waiting for it to come back/, '');
    err.write(`spice-smartcard: ${message}\n`);
    if (json) out.write(`${JSON.stringify({ service: 'down', message, readers: [] }, null, 2)}\n`);
    return ExitCode.NETWORK;
  }
  const reports = source.readers().map(reportReader);
  if (json) out.write(`${JSON.stringify({ service: 'up', readers: reports }, null, 2)}\n`);
  else if (reports.length === 0) out.write('No PC/SC readers found.\n');
  else out.write(`${reports.map(textFor).join('\n')}\n`);
  return ExitCode.OK;
}

type WatchEvent =
  | { event: 'reader-added' | 'reader-removed' | 'card-removed'; reader: string }
  | { event: 'card-inserted'; reader: string; atr: string; protocols: string[]; guestAtr: string | null }
  | { event: PcscNotice['code']; reader?: string; message: string };

async function watch(source: PcscSource, json: boolean, out: NodeJS.WritableStream, err: NodeJS.WritableStream, signal?: AbortSignal): Promise<number> {
  const emit = (e: WatchEvent): void => {
    if (json) {
      out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
      return;
    }
    switch (e.event) {
      case 'reader-added':
        out.write(`+ reader ${e.reader}\n`);
        break;
      case 'reader-removed':
        out.write(`- reader ${e.reader}\n`);
        break;
      case 'card-inserted':
        out.write(`+ card   ${e.reader}: ATR ${spaced(e.atr)} (${e.protocols.join(',') || '?'})\n`);
        break;
      case 'card-removed':
        out.write(`- card   ${e.reader}\n`);
        break;
      default:
        out.write(`! ${e.message}\n`);
    }
  };
  source.on('reader-added', (reader) => emit({ event: 'reader-added', reader }));
  source.on('reader-removed', (reader) => emit({ event: 'reader-removed', reader }));
  source.on('card-removed', (reader) => emit({ event: 'card-removed', reader }));
  source.on('card-inserted', (reader, atr) => {
    const r = reportReader({ name: reader, presence: 'present', atr, exclusive: false, inUse: false });
    emit({ event: 'card-inserted', reader, atr: r.atr ?? '', protocols: r.protocols, guestAtr: r.guestAtr });
  });
  source.on('notice', (notice) => emit({ event: notice.code, ...(notice.reader === undefined ? {} : { reader: notice.reader }), message: notice.message }));
  source.start();
  if (!json) err.write('Watching PC/SC readers; Ctrl-C to stop.\n');
  const aborted = new Promise<void>((resolve) => {
    if (signal === undefined) return;
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await untilSignalOr(aborted);
  return ExitCode.OK;
}

