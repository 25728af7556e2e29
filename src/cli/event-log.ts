// What `connect` and `passthru` tell the user: progress lines on stderr, or with --json-log one
// JSON object per line on stdout. Never a password, PIN or APDU data.
import { toHex } from '../../spice/bytes.js';
import type { Card } from '../../vsc/card.js';
import { PcscReaderCard } from '../../vsc/pcsc/index.js';
import type { CardForwarder } from '../bridge/card-forwarder.js';

export type BridgeEvent =
  | { event: 'connecting'; target: string }
  | { event: 'linked'; target: string; sessionId?: number; secure: boolean }
  | { event: 'reader-added'; reader: string; readerId: number }
  | { event: 'card-inserted'; reader: string; atr: string }
  | { event: 'card-removed'; reader: string }
  | { event: 'apdu'; reader: string; seq: number; ins: string; sw?: string; ms: number; failed: boolean }
  | { event: 'warning'; reader?: string; code: string; message: string }
  /** What a card source has to tell the user (PC/SC service down or back, card busy, reader gone). */
  | { event: 'notice'; reader: string; code: string; message: string }
  | { event: 'error'; reader?: string; code: string; message: string; fatal: boolean }
  | { event: 'closed'; reason?: string }
  /** proxy/open: where the viewer should connect. */
  | { event: 'listening'; host: string; port: number; uri: string }
  /** proxy/open: a channel of the viewer as the proxy sees it ('local': answered by the proxy, not linked upstream). */
  | { event: 'viewer-channel'; connection: number; channel: string; type: number; id: number; state: 'opened' | 'local' | 'closed' | 'failed'; sessionId?: number; secure?: boolean; reason?: string }
  /** proxy/open: the card's smartcard channel left that session (the viewer's session ended, or it failed). */
  | { event: 'unlinked'; sessionId: number; reason?: string }
  /** open: the viewer process. */
  | { event: 'viewer'; state: 'started' | 'exited'; pid?: number; code?: number | null; signal?: string | null };

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');
const sessionHex = (id: number): string => `0x${id.toString(16).padStart(8, '0')}`;

function viewerChannelLine(e: Extract<BridgeEvent, { event: 'viewer-channel' }>): string {
  const name = `${e.channel}${e.id !== 0 ? ` ${e.id}` : ''}`;
  switch (e.state) {
    case 'opened':
      return `Viewer: ${name} channel open${e.sessionId !== undefined ? ` (session ${sessionHex(e.sessionId)})` : ''}${e.secure ? ', TLS to the server' : ''}.`;
    case 'local':
      return `Viewer: its own ${name} channel was answered by the proxy; the card forwarded by spice-smartcard is the VM's smartcard.`;
    case 'closed':
      return `Viewer: ${name} channel closed${e.reason !== undefined ? `: ${e.reason}` : ''}.`;
    case 'failed':
      return `Viewer: ${name} channel did not link: ${e.reason ?? 'unknown reason'}.`;
  }
}

export class EventLog {
  private readonly apduCounts = new Map<string, number>();
  private summaryTimer: NodeJS.Timeout | undefined;
  private lastSummary = '';

  constructor(
    private readonly json: boolean,
    private readonly verbose: boolean,
    private readonly out: NodeJS.WritableStream = process.stdout,
    private readonly err: NodeJS.WritableStream = process.stderr,
  ) {
    if (!json) {
      // A line per APDU would drown the terminal: summarise every few seconds instead.
      this.summaryTimer = setInterval(() => this.summarise(), 5_000);
      this.summaryTimer.unref();
    }
  }

  /** A line for people only (not an event): notes and advice. */
  note(text: string): void {
    if (!this.json || this.verbose) this.err.write(`${text}\n`);
  }

  emit(e: BridgeEvent): void {
    if (this.json) {
      this.out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
      return;
    }
    const line = this.humanLine(e);
    if (line !== undefined) this.err.write(`${line}\n`);
  }

  close(): void {
    if (this.summaryTimer !== undefined) clearInterval(this.summaryTimer);
    this.summarise();
  }

  /** Reports what a card source says on its own (PC/SC readers do; soft cards have nothing to say). */
  followCard(card: Card): void {
    if (card instanceof PcscReaderCard) card.on('notice', (n) => this.emit({ event: 'notice', reader: card.name, code: n.code, message: n.message }));
  }

  /** Reports everything a forwarder does under the given reader label. */
  follow(forwarder: CardForwarder, reader: string): void {
    forwarder.on('reader-added', (readerId) => this.emit({ event: 'reader-added', reader, readerId }));
    forwarder.on('card-inserted', (atr) => this.emit({ event: 'card-inserted', reader, atr: toHex(atr, '') }));
    forwarder.on('card-removed', () => this.emit({ event: 'card-removed', reader }));
    forwarder.on('apdu', (a) => {
      this.apduCounts.set(reader, (this.apduCounts.get(reader) ?? 0) + 1);
      const e: BridgeEvent = { event: 'apdu', reader, seq: a.seq, ins: hex2(a.ins), ms: Math.round(a.ms * 1000) / 1000, failed: a.failed };
      if (a.sw !== undefined) e.sw = a.sw.toString(16).padStart(4, '0');
      this.emit(e);
    });
    forwarder.on('warning', (code, message) => this.emit({ event: 'warning', reader, code, message }));
    forwarder.on('problem', (code, message, fatal) => this.emit({ event: 'error', reader, code, message, fatal }));
  }

  private humanLine(e: BridgeEvent): string | undefined {
    switch (e.event) {
      case 'connecting':
        return `Connecting to ${e.target}…`;
      case 'linked': {
        const details = [e.sessionId !== undefined ? `session ${sessionHex(e.sessionId)}` : undefined, e.secure ? 'TLS' : undefined].filter((d) => d !== undefined);
        return `Linked to ${e.target}${details.length > 0 ? ` (${details.join(', ')})` : ''}.`;
      }
      case 'reader-added':
        return `${e.reader}: reader added in the VM.`;
      case 'card-inserted':
        return `${e.reader}: card inserted in the VM (ATR ${e.atr}).`;
      case 'card-removed':
        return `${e.reader}: card removed from the VM.`;
      case 'apdu':
        return this.verbose ? `${e.reader}: APDU ${e.seq} INS ${e.ins} → ${e.failed ? 'failed' : `SW ${e.sw}`} in ${e.ms} ms` : undefined;
      case 'warning':
        return this.verbose ? `${e.reader ? `${e.reader}: ` : ''}warning: ${e.message}` : undefined;
      case 'notice':
        return `${e.reader}: ${e.message}`;
      case 'error':
        return `${e.reader ? `${e.reader}: ` : ''}${e.fatal ? 'error' : 'problem'}: ${e.message}`;
      case 'closed':
        return e.reason !== undefined ? `Closed: ${e.reason}` : 'Closed.';
      case 'listening':
        return `Listening on ${e.uri}: point the viewer there, e.g. remote-viewer ${e.uri}`;
      case 'viewer-channel':
        return viewerChannelLine(e);
      case 'unlinked':
        return `The card left session ${sessionHex(e.sessionId)}${e.reason !== undefined ? `: ${e.reason}` : ''}.`;
      case 'viewer':
        if (e.state === 'started') return `Viewer started${e.pid !== undefined ? ` (pid ${e.pid})` : ''}.`;
        return `Viewer exited${e.signal ? ` (${e.signal})` : e.code !== undefined && e.code !== null ? ` with status ${e.code}` : ''}.`;
    }
  }

  private summarise(): void {
    if (this.json || this.apduCounts.size === 0) return;
    const text = [...this.apduCounts].map(([reader, n]) => `${reader}: ${n} APDU${n === 1 ? '' : 's'}`).join(', ');
    if (text === this.lastSummary) return;
    this.lastSummary = text;
    this.err.write(`${text}\n`);
  }
}
