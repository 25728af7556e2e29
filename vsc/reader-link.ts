// The reader link: one VSC reader on one channel (a SPICE smartcard channel or a raw
// ccid-card-passthru socket), as a state machine that takes events and returns actions.
// It deals in typed messages only; byte order and framing belong to the codec, sockets
// and timers to the caller (time comes from the injected clock, expiry from tick()).
//
// Several client mistakes crash or wedge QEMU (protocol.md §6.9), so every outgoing
// message passes one guard (#send) that refuses anything the protocol rules forbid,
// instead of trusting each call site.

import { checkAtr, vscEncodedLength, type VscErrorMessage, type VscMessage } from './codec.js';
import {
  DEFAULT_REPLY_TIMEOUT_MS,
  VSC_LIMITS,
  VSC_MAGIC_BYTES,
  VSC_MINIMAL_READER_ID,
  VSC_UNDEFINED_READER_ID,
  VSC_VERSION,
  VscErrorCode,
  VscMsgType,
  vscTypeName,
} from './constants.js';

/** 'spice': inside a SPICE smartcard channel (no VSC_Init). 'passthru': QEMU's raw socket. */
export type ReaderLinkMode = 'spice' | 'passthru';

export interface ReaderLinkOptions {
  readonly mode?: ReaderLinkMode;
  /** Sent with ReaderAdd; servers ignore it. Clamped to VSC_LIMITS.maxReaderNameBytes. */
  readonly readerName?: string;
  /** How long a control message may wait for its VSC_Error reply. */
  readonly replyTimeoutMs?: number;
  /** Milliseconds clock; Date.now by default. */
  readonly now?: () => number;
}

export type LinkState =
  | 'idle' // created, channel not up yet
  | 'adding' // ReaderAdd sent, reader id not known yet
  | 'ready' // reader owned; card traffic runs (see VmCardState)
  | 'stopping' // teardown: CardRemove / ReaderRemove acks awaited
  | 'refused' // terminal: the server would not give us the device
  | 'failed' // terminal: timeout or protocol violation; the caller closes the channel
  | 'stopped'; // terminal: clean teardown done

/** What the VM has been told about the card (distinct from what the client holds). */
export type VmCardState =
  | 'unknown' // passthru mode: a previous client may have left a card inserted
  | 'absent'
  | 'inserting' // ATR sent, ack awaited
  | 'present'
  | 'removing'; // CardRemove sent, ack awaited

export const LINK_TRANSITIONS: { readonly [S in LinkState]: readonly LinkState[] } = {
  idle: ['adding', 'stopped'],
  adding: ['ready', 'refused', 'failed', 'stopping'],
  ready: ['stopping', 'failed'],
  stopping: ['stopped', 'failed'],
  refused: [],
  failed: [],
  stopped: [],
};

export const VM_CARD_TRANSITIONS: { readonly [S in VmCardState]: readonly VmCardState[] } = {
  unknown: ['removing', 'inserting'],
  absent: ['inserting'],
  inserting: ['present', 'absent'],
  present: ['removing'],
  removing: ['absent'],
};

export function isTerminalLinkState(state: LinkState): boolean {
  return LINK_TRANSITIONS[state].length === 0;
}

export type ReaderLinkErrorCode =
  | 'reader-refused' // fatal: device owned by another client, or none free
  | 'reply-timeout' // fatal: a control message got no reply in time
  | 'unexpected-reader-id' // fatal: the server assigned a reader id other than 0
  | 'bad-init' // fatal (passthru): the peer's VSC_Init has the wrong magic
  | 'apdu-overflow' // fatal: the server queued more commands than any QEMU would
  | 'internal' // fatal: the send guard blocked a message (a bug in this module)
  | 'atr-invalid' // the card's ATR would be refused by QEMU; not sent
  | 'atr-rejected' // the VM answered the ATR with an error
  | 'card-failed' // the card could not answer a command
  | 'card-response-invalid'; // the card's answer is too long or too short

export type ReaderLinkWarningCode =
  | 'unsolicited-error' // a VSC_Error with no control message in flight
  | 'unexpected-message' // a message the server should not send
  | 'stale-answer' // a card answer for a command that is no longer pending
  | 'apdu-without-card' // a command arrived while no card is usable
  | 'error-ack' // CardRemove/ReaderRemove acknowledged with an error code
  | 'init-version' // passthru: the peer speaks another VSC version
  | 'stop-timeout'; // teardown ack never came; the caller just closes

export type ReaderLinkAction =
  /** Put this message on the wire (encode it in the channel's byte order). */
  | { readonly kind: 'send'; readonly message: VscMessage }
  /** Ask the card to transmit; answer with apduAnswered/apduFailed(seq, ...). */
  | { readonly kind: 'deliver-apdu'; readonly seq: number; readonly apdu: Uint8Array }
  | { readonly kind: 'state'; readonly from: LinkState; readonly to: LinkState }
  | { readonly kind: 'reader-added'; readonly readerId: number }
  | { readonly kind: 'reader-removed' }
  /** The VM accepted the ATR: the guest now sees the card. */
  | { readonly kind: 'card-inserted'; readonly atr: Uint8Array }
  /** The VM acknowledged the card removal. */
  | { readonly kind: 'card-removed' }
  | { readonly kind: 'error'; readonly code: ReaderLinkErrorCode; readonly fatal: boolean; readonly text: string }
  | { readonly kind: 'warning'; readonly code: ReaderLinkWarningCode; readonly text: string };

type ControlKind = 'reader-add' | 'atr' | 'card-remove' | 'reader-remove';

const CONTROL_NAMES: { readonly [K in ControlKind]: string } = {
  'reader-add': 'ReaderAdd',
  atr: 'ATR',
  'card-remove': 'CardRemove',
  'reader-remove': 'ReaderRemove',
};

interface InFlight {
  readonly kind: ControlKind;
  readonly deadline: number;
}

interface HeldCard {
  /** Bumped on every insertion, so a re-insert of the same ATR is still a new card. */
  readonly generation: number;
  readonly atr: Uint8Array;
}

interface PendingApdu {
  readonly seq: number;
  readonly data: Uint8Array;
}

const utf8 = new TextEncoder();

/** Cuts a name to at most `maxBytes` of UTF-8 without splitting a character. */
function clampUtf8(name: string, maxBytes: number): string {
  const bytes = utf8.encode(name);
  if (bytes.length <= maxBytes) return name;
  let cut = maxBytes;
  while (cut > 0 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut -= 1;
  return new TextDecoder().decode(bytes.subarray(0, cut));
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

function sameBytes(a: Uint8Array, b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * How long CardRemove waits after a command in flight was failed (see #dropApdus). 500 ms was enough
 * on an idle machine but not once under heavy load, where a starved TCG guest polls its reader late.
 */
export const CARD_REMOVE_GRACE_MS = 2_000;

export class ReaderLink {
  readonly #mode: ReaderLinkMode;
  readonly #readerName: string;
  readonly #replyTimeoutMs: number;
  readonly #now: () => number;

  #state: LinkState = 'idle';
  #vmCard: VmCardState;
  #readerId: number | undefined;
  // True from a successful ReaderAdd reply until ReaderRemove is sent: the only window
  // in which reader-bound messages may go out.
  #owned = false;
  #inFlight: InFlight | undefined;
  #held: HeldCard | undefined;
  #generation = 0;
  // The card the VM was last sent (ATR in flight or accepted).
  #vmGeneration = 0;
  #vmAtr: Uint8Array | undefined;
  #rejectedGeneration = 0;
  #apdus: PendingApdu[] = [];
  #nextSeq = 1;
  // Set when commands in flight were failed for a card change: CardRemove waits until then.
  #cardRemoveNotBefore: number | undefined;
  #out: ReaderLinkAction[] = [];

  constructor(options: ReaderLinkOptions = {}) {
    this.#mode = options.mode ?? 'spice';
    this.#readerName = clampUtf8(options.readerName ?? '', VSC_LIMITS.maxReaderNameBytes);
    this.#replyTimeoutMs = options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS;
    this.#now = options.now ?? Date.now;
    // Over SPICE the server removes our reader when a channel closes, so the device starts
    // clean; QEMU ignores a raw socket closing, so a crashed client may have left a card in.
    this.#vmCard = this.#mode === 'passthru' ? 'unknown' : 'absent';
  }

  get state(): LinkState {
    return this.#state;
  }

  get vmCardState(): VmCardState {
    return this.#vmCard;
  }

  /** The assigned reader id once ReaderAdd succeeded (always 0 in practice). */
  get readerId(): number | undefined {
    return this.#readerId;
  }

  /** When the in-flight control message times out (clock ms), if one is in flight. */
  get deadline(): number | undefined {
    const reply = this.#inFlight?.deadline;
    const grace = this.#cardRemoveNotBefore;
    if (grace === undefined) return reply;
    return reply === undefined ? grace : Math.min(reply, grace);
  }

  get terminal(): boolean {
    return isTerminalLinkState(this.#state);
  }

  /** The channel is up: announce the reader. */
  start(): ReaderLinkAction[] {
    return this.#run(() => {
      if (this.#state !== 'idle') return;
      this.#transition('adding');
      if (this.#mode === 'passthru') {
        this.#send({
          type: VscMsgType.Init,
          readerId: VSC_UNDEFINED_READER_ID,
          magic: Uint8Array.from(VSC_MAGIC_BYTES),
          version: VSC_VERSION,
          capabilities: [0],
        });
      }
      this.#sendControl('reader-add', {
        type: VscMsgType.ReaderAdd,
        readerId: VSC_UNDEFINED_READER_ID,
        name: this.#readerName,
      });
    });
  }

  /** One decoded inbound VSC message. */
  receive(msg: VscMessage): ReaderLinkAction[] {
    return this.#run(() => {
      if (this.#state === 'idle') {
        this.#warn('unexpected-message', `VSC ${this.#typeName(msg)} arrived before the channel was started; ignored`);
        return;
      }
      switch (msg.type) {
        case VscMsgType.Error:
          this.#onError(msg);
          return;
        case VscMsgType.Apdu:
          this.#onApdu(msg.data);
          return;
        case VscMsgType.Init:
          this.#onInit(msg.magic, msg.version);
          return;
        case VscMsgType.Flush:
          // Never answer with FlushComplete: QEMU does not know that type and would reply
          // with a VSC_Error, which would then be taken as the reply to our next control message.
          this.#warn('unexpected-message', 'VSC Flush from the server ignored (no server is known to send it)');
          return;
        default:
          this.#warn('unexpected-message', `VSC ${this.#typeName(msg)} from the server ignored`);
      }
    });
  }

  /** The client's card is present (new card, or a reset with a possibly new ATR). */
  cardInserted(atr: Uint8Array): ReaderLinkAction[] {
    return this.#run(() => {
      if (this.#state === 'stopping') return;
      this.#dropApdus();
      const check = checkAtr(atr);
      if (!check.ok) {
        this.#held = undefined;
        this.#error(
          'atr-invalid',
          false,
          `The card's ATR cannot be given to the VM (${check.reason}); the VM will see no card.`,
        );
      } else {
        this.#generation += 1;
        this.#held = { generation: this.#generation, atr: atr.slice() };
      }
      this.#pump();
    });
  }

  /** The client's card is gone. */
  cardRemoved(): ReaderLinkAction[] {
    return this.#run(() => {
      if (this.#state === 'stopping') return;
      this.#dropApdus();
      this.#held = undefined;
      this.#pump();
    });
  }

  /** The card answered the command delivered as `seq`. */
  apduAnswered(seq: number, response: Uint8Array): ReaderLinkAction[] {
    return this.#run(() => {
      if (!this.#takeHead(seq)) return;
      const { minApduResponseSize: min, maxApduResponseSize: max } = VSC_LIMITS;
      if (response.length < min || response.length > max) {
        this.#error(
          'card-response-invalid',
          false,
          `The card answered with ${response.length} bytes; an answer must be ${min} to ${max} bytes ` +
            '(long data must be chained with 61 XX / GET RESPONSE). The VM was told the command failed.',
        );
        this.#answerFailure();
      } else {
        this.#send({ type: VscMsgType.Apdu, readerId: this.#readerIdForSend(), data: response });
      }
      this.#deliverHead();
    });
  }

  /** The card could not answer the command delivered as `seq`. */
  apduFailed(seq: number, reason?: string): ReaderLinkAction[] {
    return this.#run(() => {
      if (!this.#takeHead(seq)) return;
      this.#error(
        'card-failed',
        false,
        `The card did not answer a command${reason === undefined ? '' : ` (${reason})`}; the VM was told it failed.`,
      );
      this.#answerFailure();
      this.#deliverHead();
    });
  }

  /** Teardown: remove the card and the reader if we own them, then 'stopped'. */
  stop(): ReaderLinkAction[] {
    return this.#run(() => {
      if (this.#state === 'idle') {
        this.#transition('stopped');
        return;
      }
      if (this.#state === 'stopping') return;
      this.#transition('stopping');
      this.#dropApdus();
      this.#pump();
    });
  }

  /** Checks the reply deadline. Call it when `deadline` has passed (or periodically). */
  tick(nowMs: number = this.#now()): ReaderLinkAction[] {
    return this.#run(() => {
      const grace = this.#cardRemoveNotBefore;
      if (grace !== undefined && nowMs >= grace) {
        this.#cardRemoveNotBefore = undefined;
        this.#pump();
      }
      const inFlight = this.#inFlight;
      if (inFlight === undefined || nowMs < inFlight.deadline) return;
      this.#inFlight = undefined;
      const name = CONTROL_NAMES[inFlight.kind];
      if (this.#state === 'stopping') {
        this.#warn('stop-timeout', `No reply to ${name} during teardown; giving up, the channel can be closed.`);
        this.#transition('stopped');
        return;
      }
      this.#error(
        'reply-timeout',
        true,
        `The server did not answer ${name} within ${this.#replyTimeoutMs} ms; the channel must be closed and re-linked.`,
      );
      this.#transition('failed');
    });
  }

  // ---- inbound ----

  #onError(msg: VscErrorMessage): void {
    const inFlight = this.#inFlight;
    if (inFlight === undefined) {
      this.#warn('unsolicited-error', `VSC Error (code ${msg.code}) with nothing awaiting a reply; ignored`);
      return;
    }
    this.#inFlight = undefined;
    switch (inFlight.kind) {
      case 'reader-add':
        this.#onReaderAddReply(msg);
        break;
      case 'atr':
        this.#cardTransition(msg.code === VscErrorCode.Success ? 'present' : 'absent');
        if (msg.code === VscErrorCode.Success) {
          this.#push({ kind: 'card-inserted', atr: this.#vmAtr ?? new Uint8Array(0) });
        } else {
          this.#rejectedGeneration = this.#vmGeneration;
          this.#error(
            'atr-rejected',
            false,
            `The VM refused the card's ATR (error code ${msg.code}); the VM will see no card until another is inserted.`,
          );
        }
        break;
      case 'card-remove':
        this.#cardTransition('absent');
        this.#push({ kind: 'card-removed' });
        if (msg.code !== VscErrorCode.Success) {
          this.#warn('error-ack', `The VM acknowledged CardRemove with error code ${msg.code}`);
        }
        break;
      case 'reader-remove':
        this.#push({ kind: 'reader-removed' });
        if (msg.code !== VscErrorCode.Success) {
          this.#warn('error-ack', `The server acknowledged ReaderRemove with error code ${msg.code}`);
        }
        break;
    }
    this.#pump();
  }

  // The reader id is in the reply's header; the payload only says whether it worked.
  #onReaderAddReply(msg: VscErrorMessage): void {
    const granted = msg.code === VscErrorCode.Success && msg.readerId !== VSC_UNDEFINED_READER_ID;
    if (granted && msg.readerId === VSC_MINIMAL_READER_ID) {
      this.#owned = true;
      this.#readerId = msg.readerId;
      if (this.#state === 'adding') this.#transition('ready');
      this.#push({ kind: 'reader-added', readerId: msg.readerId });
      return;
    }
    if (this.#state === 'stopping') {
      // Nothing of ours to tear down; closing the channel is all that is left.
      this.#transition('stopped');
      return;
    }
    if (granted) {
      this.#error(
        'unexpected-reader-id',
        true,
        `The server assigned reader id ${hex32(msg.readerId)}; only reader 0 is safe to use. ` +
          'Nothing more is sent on this channel; close it.',
      );
      this.#transition('failed');
      return;
    }
    const ownedElsewhere = msg.code === VscErrorCode.CannotAddMoreReaders || msg.readerId === VSC_UNDEFINED_READER_ID;
    const text = ownedElsewhere
      ? "The VM's smartcard device is already used by another client (or the VM has none free): " +
        `the server refused the reader (code ${msg.code}, reader id ${hex32(msg.readerId)}). ` +
        'Nothing more is sent on this channel; close it and retry once the other client has let go of the card.'
      : `The server refused the smartcard reader (code ${msg.code}, reader id ${hex32(msg.readerId)}). ` +
        'Nothing more is sent on this channel; close it.';
    this.#error('reader-refused', true, text);
    this.#transition('refused');
  }

  #onApdu(data: Uint8Array): void {
    const held = this.#held;
    const usable =
      this.#state === 'ready' &&
      this.#vmCard === 'present' &&
      held !== undefined &&
      held.generation === this.#vmGeneration;
    if (usable) {
      if (this.#apdus.length >= VSC_LIMITS.maxQueuedApdus) {
        this.#error(
          'apdu-overflow',
          true,
          `The server sent more than ${VSC_LIMITS.maxQueuedApdus} commands without waiting for answers; closing.`,
        );
        this.#transition('failed');
        return;
      }
      this.#apdus.push({ seq: this.#nextSeq++, data });
      if (this.#apdus.length === 1) this.#deliverHead();
      return;
    }
    // Answering at once is safe even while a CardRemove is on its way: QEMU handles our
    // messages in order, so this answer lands before any later ATR can make a new command pending.
    if (this.#owned) {
      this.#warn('apdu-without-card', 'A command arrived while no card is usable; answered with an error');
      this.#answerFailure();
    } else {
      this.#warn('apdu-without-card', 'A command arrived before the reader was added; ignored');
    }
  }

  #onInit(magic: Uint8Array, version: number): void {
    if (this.#mode !== 'passthru') {
      this.#warn('unexpected-message', 'VSC Init inside SPICE (spice-server normally swallows it); ignored');
      return;
    }
    if (!sameBytes(magic, VSC_MAGIC_BYTES)) {
      if (this.#state === 'stopping') return;
      this.#error(
        'bad-init',
        true,
        `The peer's VSC Init has magic ${[...magic].map((b) => b.toString(16).padStart(2, '0')).join(' ')}, ` +
          'not "VSCD": this is not a ccid-card-passthru socket. Closing.',
      );
      this.#transition('failed');
      return;
    }
    if (version !== VSC_VERSION) {
      this.#warn('init-version', `The peer speaks VSC version ${version}, we speak ${VSC_VERSION}; continuing`);
    }
  }

  // ---- card / APDU bookkeeping ----

  #takeHead(seq: number): boolean {
    const head = this.#apdus[0];
    if (head === undefined || head.seq !== seq) {
      // After a card change QEMU has flushed that command itself; a late answer would be
      // taken as the answer to whatever command the guest sends next.
      this.#warn('stale-answer', `Card answer for command #${seq} dropped: that command is no longer pending`);
      return false;
    }
    this.#apdus.shift();
    return true;
  }

  #deliverHead(): void {
    const head = this.#apdus[0];
    if (head !== undefined) this.#push({ kind: 'deliver-apdu', seq: head.seq, apdu: head.data });
  }

  // QEMU's usb-ccid flushes a pending command's answer on CardRemove and then clears its bulk-in
  // queue in the same call, so the guest would wait for that answer forever. So every pending
  // command is failed first (QEMU answers it with a failed CCID status), and CardRemove waits
  // CARD_REMOVE_GRACE_MS for the guest's USB polling to fetch that answer: sent together, both
  // messages reach QEMU in one read and the answer is erased before the guest sees it.
  #dropApdus(): void {
    if (this.#owned && this.#vmCard === 'present' && this.#apdus.length > 0) {
      for (const _ of this.#apdus) this.#answerFailure();
      this.#cardRemoveNotBefore = this.#now() + CARD_REMOVE_GRACE_MS;
    }
    this.#apdus = [];
  }

  #answerFailure(): void {
    this.#send({ type: VscMsgType.Error, readerId: this.#readerIdForSend(), code: VscErrorCode.GeneralError });
  }

  // ---- control queue ----

  // Decides the next control message from what the client holds versus what the VM was
  // told. One message in flight at a time, so the next VSC_Error is always its reply; this
  // is a FIFO queue of length one that also collapses insert/remove bursts.
  #pump(): void {
    if (this.#inFlight !== undefined || this.terminal) return;
    if (this.#state === 'ready') {
      const held = this.#held;
      const sendable = held !== undefined && held.generation !== this.#rejectedGeneration;
      switch (this.#vmCard) {
        case 'present':
          if (held === undefined || held.generation !== this.#vmGeneration) this.#sendCardRemove();
          return;
        case 'unknown':
          if (held === undefined) this.#sendCardRemove();
          else if (sendable) this.#sendAtr(held);
          return;
        case 'absent':
          if (held !== undefined && sendable) this.#sendAtr(held);
          return;
        case 'inserting':
        case 'removing':
          return;
      }
    }
    if (this.#state === 'stopping') {
      if (!this.#owned) {
        this.#transition('stopped');
      } else if (this.#vmCard === 'present') {
        this.#sendCardRemove();
      } else {
        // The device detaches the reader, and with it any card QEMU still believes in.
        this.#sendControl('reader-remove', { type: VscMsgType.ReaderRemove, readerId: this.#readerIdForSend() });
        this.#owned = false;
      }
    }
  }

  #sendAtr(held: HeldCard): void {
    this.#cardTransition('inserting');
    this.#vmGeneration = held.generation;
    this.#vmAtr = held.atr;
    this.#sendControl('atr', { type: VscMsgType.Atr, readerId: this.#readerIdForSend(), atr: held.atr });
  }

  #sendCardRemove(): void {
    // tick() sends it once the grace after failing a command in flight is over.
    if (this.#cardRemoveNotBefore !== undefined) return;
    this.#cardTransition('removing');
    this.#sendControl('card-remove', { type: VscMsgType.CardRemove, readerId: this.#readerIdForSend() });
  }

  #sendControl(kind: ControlKind, msg: VscMessage): void {
    if (!this.#send(msg)) return;
    this.#inFlight = { kind, deadline: this.#now() + this.#replyTimeoutMs };
  }

  // ---- the send guard ----

  #readerIdForSend(): number {
    return this.#readerId ?? VSC_UNDEFINED_READER_ID;
  }

  /** Every outgoing message passes here; anything that could hurt QEMU is refused. */
  #send(msg: VscMessage): boolean {
    const problem = this.#sendProblem(msg);
    if (problem !== undefined) {
      this.#error('internal', true, `Refused to send VSC ${this.#typeName(msg)}: ${problem}. Closing.`);
      if (!this.terminal) this.#transition('failed');
      return false;
    }
    this.#push({ kind: 'send', message: msg });
    return true;
  }

  #sendProblem(msg: VscMessage): string | undefined {
    if (this.terminal) return `the link is ${this.#state}`;
    const length = vscEncodedLength(msg);
    if (length > VSC_LIMITS.maxSendMessageSize) {
      return `${length} bytes exceed the ${VSC_LIMITS.maxSendMessageSize}-byte limit`;
    }
    switch (msg.type) {
      case VscMsgType.Init:
        if (this.#mode !== 'passthru') return 'VSC Init is never sent inside SPICE';
        return undefined;
      case VscMsgType.ReaderAdd:
        if (msg.readerId !== VSC_UNDEFINED_READER_ID) return 'ReaderAdd must carry the undefined reader id';
        if (this.#state !== 'adding' || this.#owned || this.#inFlight !== undefined) return 'only one ReaderAdd per link';
        return undefined;
      case VscMsgType.ReaderRemove:
      case VscMsgType.Atr:
      case VscMsgType.CardRemove:
      case VscMsgType.Apdu:
      case VscMsgType.Error: {
        if (!this.#owned || this.#readerId === undefined) return 'no reader is owned on this channel';
        if (msg.readerId !== this.#readerId) return `reader id ${msg.readerId} is not ours (${this.#readerId})`;
        if (msg.type === VscMsgType.Atr && !checkAtr(msg.atr).ok) return 'the ATR would be refused by QEMU';
        if (msg.type === VscMsgType.Apdu && msg.data.length > VSC_LIMITS.maxApduResponseSize) {
          return 'the answer is too long';
        }
        if (msg.type === VscMsgType.Error && msg.code !== VscErrorCode.GeneralError) return 'only GENERAL_ERROR is sent';
        return undefined;
      }
      default:
        return 'this message type is never sent by a client';
    }
  }

  // ---- plumbing ----

  #run(body: () => void): ReaderLinkAction[] {
    if (this.terminal) return [];
    this.#out = [];
    body();
    const out = this.#out;
    this.#out = [];
    return out;
  }

  #push(action: ReaderLinkAction): void {
    // Belt and braces: once terminal, nothing may reach the wire or the card.
    if (this.terminal && (action.kind === 'send' || action.kind === 'deliver-apdu')) return;
    this.#out.push(action);
  }

  #transition(to: LinkState): void {
    const from = this.#state;
    if (!LINK_TRANSITIONS[from].includes(to)) throw new Error(`reader link: illegal transition ${from} -> ${to}`);
    this.#state = to;
    this.#push({ kind: 'state', from, to });
  }

  #cardTransition(to: VmCardState): void {
    const from = this.#vmCard;
    if (!VM_CARD_TRANSITIONS[from].includes(to)) throw new Error(`reader link: illegal card transition ${from} -> ${to}`);
    this.#vmCard = to;
  }

  #error(code: ReaderLinkErrorCode, fatal: boolean, text: string): void {
    this.#push({ kind: 'error', code, fatal, text });
  }

  #warn(code: ReaderLinkWarningCode, text: string): void {
    this.#push({ kind: 'warning', code, text });
  }

  #typeName(msg: VscMessage): string {
    return vscTypeName(msg.type === 'unknown' ? msg.rawType : msg.type);
  }
}
