// Runs one ReaderLink against one Card over any VSC transport: applies the link's actions (send,
// deliver to the card, arm the reply timer) and turns them into events for the user. The transport
// only hands in decoded messages and takes messages to send; it is the same for a SPICE smartcard
// channel and for QEMU's raw passthru socket.
import { EventEmitter } from 'node:events';
import type { Card } from '../../vsc/card.js';
import type { VscMessage } from '../../vsc/codec.js';
import { ReaderLink, type LinkState, type ReaderLinkAction, type ReaderLinkMode } from '../../vsc/reader-link.js';

export interface ApduStats {
  count: number;
  failed: number;
  /** Total time the card took to answer, in milliseconds. */
  cardMs: number;
}

export type ForwarderEvents = {
  state: [from: LinkState, to: LinkState];
  'reader-added': [readerId: number];
  'reader-removed': [];
  'card-inserted': [atr: Uint8Array];
  'card-removed': [];
  /** One guest command answered. Carries the instruction and status word only: APDU data may hold a PIN. */
  apdu: [info: { seq: number; ins: number; sw: number | undefined; ms: number; failed: boolean }];
  warning: [code: string, text: string];
  // Not named 'error': EventEmitter throws an 'error' nobody listens to.
  problem: [code: string, text: string, fatal: boolean];
  /** The link reached a terminal state: refused, failed or stopped. */
  finished: [state: LinkState];
  /** Every VSC message received from the VM ('in') or sent to it ('out'), for traces. Carries APDU data. */
  vsc: [direction: 'in' | 'out', message: VscMessage];
};

export interface CardForwarderOptions {
  card: Card;
  mode: ReaderLinkMode;
  /** Puts one VSC message on the wire. */
  send: (message: VscMessage) => void;
  readerName?: string;
  replyTimeoutMs?: number;
}

const STOP_BOUND_MS = 12_000;

/** A card that can answer some commands without a promise (the soft card: SoftCard.transmitNow). */
interface ImmediateCard extends Card {
  transmitNow(apdu: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

function answersAtOnce(card: Card): card is ImmediateCard {
  return typeof (card as Partial<ImmediateCard>).transmitNow === 'function';
}

export class CardForwarder extends EventEmitter<ForwarderEvents> {
  readonly stats: ApduStats = { count: 0, failed: 0, cardMs: 0 };
  private readonly link: ReaderLink;
  private readonly card: Card;
  private readonly sendMessage: (message: VscMessage) => void;
  private timer: NodeJS.Timeout | undefined;
  private readonly onInserted = (atr: Uint8Array): void => this.apply(this.link.cardInserted(atr));
  private readonly onRemoved = (): void => this.apply(this.link.cardRemoved());
  private started = false;
  private readonly immediate: { seq: number; ins: number; started: number; response: Uint8Array }[] = [];
  private draining = false;

  constructor(options: CardForwarderOptions) {
    super();
    this.card = options.card;
    this.sendMessage = options.send;
    this.link = new ReaderLink({
      mode: options.mode,
      readerName: options.readerName ?? options.card.name,
      ...(options.replyTimeoutMs !== undefined ? { replyTimeoutMs: options.replyTimeoutMs } : {}),
    });
  }

  get state(): LinkState {
    return this.link.state;
  }

  get terminal(): boolean {
    return this.link.terminal;
  }

  /** The channel is up: add the reader, and insert the card if one is present. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.card.on('inserted', this.onInserted);
    this.card.on('removed', this.onRemoved);
    const atr = this.card.atr();
    if (atr !== undefined) this.apply(this.link.cardInserted(atr));
    this.apply(this.link.start());
  }

  receive(message: VscMessage): void {
    this.emit('vsc', 'in', message);
    this.apply(this.link.receive(message));
  }

  /** Removes the card and the reader, each after the VM's acknowledgement; bounded in time. */
  stop(): Promise<LinkState> {
    if (!this.link.terminal) this.apply(this.link.stop());
    if (this.link.terminal) return Promise.resolve(this.link.state);
    return new Promise((resolve) => {
      const bound = setTimeout(() => {
        this.off('finished', done);
        resolve(this.link.state);
      }, STOP_BOUND_MS);
      const done = (state: LinkState): void => {
        clearTimeout(bound);
        resolve(state);
      };
      this.once('finished', done);
    });
  }

  /** The transport went away: nothing more can be sent. */
  detach(): void {
    this.card.off('inserted', this.onInserted);
    this.card.off('removed', this.onRemoved);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private apply(actions: ReaderLinkAction[]): void {
    for (const action of actions) {
      switch (action.kind) {
        case 'send':
          this.emit('vsc', 'out', action.message);
          this.sendMessage(action.message);
          break;
        case 'deliver-apdu':
          this.deliver(action.seq, action.apdu);
          break;
        case 'state':
          this.emit('state', action.from, action.to);
          if (this.link.terminal) {
            this.detach();
            this.emit('finished', action.to);
          }
          break;
        case 'reader-added':
          this.emit('reader-added', action.readerId);
          break;
        case 'reader-removed':
          this.emit('reader-removed');
          break;
        case 'card-inserted':
          this.emit('card-inserted', action.atr);
          break;
        case 'card-removed':
          this.emit('card-removed');
          break;
        case 'warning':
          this.emit('warning', action.code, action.text);
          break;
        case 'error':
          this.emit('problem', action.code, action.text, action.fatal);
          break;
      }
    }
    if (!this.draining) this.drainImmediate();
    this.armTimer();
  }

  // Answers the card gave at once go through the link like ones that came back later, one after the
  // other from the outermost caller: each command's answer and 'apdu' event come before the next
  // command is answered (and the stack does not grow with the VM's queue).
  private drainImmediate(): void {
    if (this.immediate.length === 0) return;
    this.draining = true;
    try {
      for (let next = this.immediate.shift(); next !== undefined; next = this.immediate.shift()) this.answered(next.seq, next.ins, next.started, next.response);
    } finally {
      this.draining = false;
    }
  }

  /** Applies an answer's actions and then its event, before any command it released is answered. */
  private settle(actions: ReaderLinkAction[], event: ForwarderEvents['apdu'][0]): void {
    const outermost = !this.draining;
    this.draining = true;
    try {
      // The answer goes out first: listeners (a --json-log line, counters) are not on the guest's path.
      this.apply(actions);
    } finally {
      this.draining = !outermost;
    }
    this.emit('apdu', event);
    if (outermost) {
      this.drainImmediate();
      this.armTimer();
    }
  }

  private armTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const deadline = this.link.deadline;
    if (deadline === undefined || this.link.terminal) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.apply(this.link.tick());
    }, Math.max(0, deadline - Date.now()) + 1);
  }

  private deliver(seq: number, apdu: Uint8Array): void {
    const started = performance.now();
    const ins = apdu[1] ?? 0;
    // The link owns the bytes only until it returns; the card may answer later.
    const command = apdu.slice();
    const card = this.card;
    let answer: Uint8Array | Promise<Uint8Array>;
    try {
      answer = answersAtOnce(card) ? card.transmitNow(command) : card.transmit(command);
    } catch (error) {
      answer = Promise.reject(error);
    }
    if (answer instanceof Uint8Array) {
      // Sent once the actions that asked for it are all applied, in the order a later answer would be.
      this.immediate.push({ seq, ins, started, response: answer });
      return;
    }
    answer.then(
      (response) => this.answered(seq, ins, started, response),
      (error: unknown) => {
        const ms = performance.now() - started;
        this.stats.count++;
        this.stats.failed++;
        this.settle(this.link.apduFailed(seq, error instanceof Error ? error.message : String(error)), { seq, ins, sw: undefined, ms, failed: true });
      },
    );
  }

  private answered(seq: number, ins: number, started: number, response: Uint8Array): void {
    const ms = performance.now() - started;
    this.stats.count++;
    this.stats.cardMs += ms;
    const sw = response.byteLength >= 2 ? (response[response.byteLength - 2]! << 8) | response[response.byteLength - 1]! : undefined;
    this.settle(this.link.apduAnswered(seq, response), { seq, ins, sw, ms, failed: false });
  }
}
