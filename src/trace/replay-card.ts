// A card source that answers from a recorded trace: each guest command is matched, in order, with a
// recorded command of the same bytes (a redacted command matches on its redacted form) and gets the
// recorded answer; the ATR is the one the trace sent. An unknown command gets 6F00 and a warning.
import { readFileSync } from 'node:fs';
import { TypedEmitter, type Card, type CardEventMap, type CardListener } from '../../vsc/card.js';
import { VscMsgType } from '../../vsc/constants.js';
import { redactCommand } from './redaction.js';
import { TraceFormatError, decodeTrace } from './trace-format.js';

export interface ReplayExchange {
  command: Uint8Array;
  commandRedacted: boolean;
  response: Uint8Array;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class ReplayCard implements Card {
  readonly name: string;
  readonly exchanges: readonly ReplayExchange[];
  private readonly cardAtr: Uint8Array;
  private readonly events = new TypedEmitter<CardEventMap>();
  private readonly warn: (text: string) => void;
  private cursor = 0;

  constructor(name: string, atr: Uint8Array, exchanges: readonly ReplayExchange[], warn: (text: string) => void = (t) => process.stderr.write(`${t}\n`)) {
    this.name = name;
    this.cardAtr = atr;
    this.exchanges = exchanges;
    this.warn = warn;
  }

  /** Reads a trace file; throws TraceFormatError when it is not a usable trace. */
  static fromBytes(bytes: Uint8Array, warn?: (text: string) => void): ReplayCard {
    const { header, messages } = decodeTrace(bytes);
    const atrRecord = messages.find((m) => m.dir === 'out' && m.type === VscMsgType.Atr);
    if (atrRecord === undefined) throw new TraceFormatError('the trace has no ATR record: the card was never inserted in that session');
    const exchanges: ReplayExchange[] = [];
    const pending = new Map<number, { command: Uint8Array; redacted: boolean }>();
    for (const m of messages) {
      if (m.type !== VscMsgType.Apdu) continue;
      if (m.dir === 'in') pending.set(m.readerId, { command: m.payload, redacted: m.redacted });
      else {
        const c = pending.get(m.readerId);
        if (c === undefined) continue;
        pending.delete(m.readerId);
        exchanges.push({ command: c.command, commandRedacted: c.redacted, response: m.payload });
      }
    }
    return new ReplayCard(header.card, atrRecord.payload, exchanges, warn);
  }

  static fromFile(path: string, warn?: (text: string) => void): ReplayCard {
    return ReplayCard.fromBytes(readFileSync(path), warn);
  }

  atr(): Uint8Array {
    return this.cardAtr.slice();
  }

  transmit(apdu: Uint8Array): Promise<Uint8Array> {
    const n = this.exchanges.length;
    for (let k = 0; k < n; k++) {
      const i = (this.cursor + k) % n;
      const e = this.exchanges[i]!;
      const candidate = e.commandRedacted ? redactCommand(apdu) : apdu;
      if (sameBytes(candidate, e.command)) {
        this.cursor = i + 1;
        return Promise.resolve(e.response.slice());
      }
    }
    this.warn(`replay: command ${Buffer.from(apdu.subarray(0, 4)).toString('hex')}… is not in the trace; answering 6F00`);
    return Promise.resolve(Uint8Array.of(0x6f, 0x00));
  }

  on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.events.on(event, listener);
  }

  off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
    this.events.off(event, listener);
  }

  close(): void {
    this.events.removeAllListeners();
  }
}
