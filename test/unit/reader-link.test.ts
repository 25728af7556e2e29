import { describe, expect, it } from 'vitest';
import { TypedEmitter, type Card, type CardEventMap, type CardListener } from '../../vsc/card.js';
import { checkAtr, decodeVscMessage, encodeVscMessage, type ByteOrder, type VscMessage } from '../../vsc/codec.js';
import { VSC_LIMITS, VscMsgType } from '../../vsc/constants.js';
import {
  LINK_TRANSITIONS,
  ReaderLink,
  VM_CARD_TRANSITIONS,
  isTerminalLinkState,
  type LinkState,
  type ReaderLinkAction,
  type ReaderLinkOptions,
  CARD_REMOVE_GRACE_MS,
} from '../../vsc/reader-link.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');

const CAC_ATR = hex('3b 7a 18 00 00 73 66 74 65 20 63 64 31 34 34');
const NSS_ATR = hex('3b 89 00 56 43 41 52 44 5f 4e 53 53');
const UNDEF = 0xffffffff;

// Server messages as the link sees them after decoding.
const ack = (readerId = 0): VscMessage => ({ type: VscMsgType.Error, readerId, code: 0 });
const nack = (code: number, readerId = 0): VscMessage => ({ type: VscMsgType.Error, readerId, code });
const command = (bytes: string): VscMessage => ({ type: VscMsgType.Apdu, readerId: 0, data: hex(bytes) });

const CONTROL_TYPES: ReadonlySet<VscMessage['type']> = new Set([
  VscMsgType.ReaderAdd,
  VscMsgType.ReaderRemove,
  VscMsgType.Atr,
  VscMsgType.CardRemove,
]);

type Step = { readonly dir: 'in'; readonly message: VscMessage } | { readonly dir: 'out'; readonly action: ReaderLinkAction };

/**
 * Drives a ReaderLink with a fake clock and records a transcript; every batch of actions
 * is checked against the protocol rules that keep QEMU alive.
 */
class Harness {
  now = 1_000;
  readonly link: ReaderLink;
  readonly transcript: Step[] = [];
  #outstanding = 0;
  #granted = false;
  #terminal = false;

  constructor(options: ReaderLinkOptions = {}) {
    this.link = new ReaderLink({ now: () => this.now, readerName: '', ...options });
  }

  start = (): ReaderLinkAction[] => this.#record(this.link.start());
  stop = (): ReaderLinkAction[] => this.#record(this.link.stop());
  insert = (atr: Uint8Array = CAC_ATR): ReaderLinkAction[] => this.#record(this.link.cardInserted(atr));
  remove = (): ReaderLinkAction[] => this.#record(this.link.cardRemoved());
  answer = (seq: number, bytes: Uint8Array): ReaderLinkAction[] => this.#record(this.link.apduAnswered(seq, bytes));
  fail = (seq: number): ReaderLinkAction[] => this.#record(this.link.apduFailed(seq, 'card gone'));
  tick = (nowMs?: number): ReaderLinkAction[] => this.#record(this.link.tick(nowMs));

  receive = (message: VscMessage): ReaderLinkAction[] => {
    this.transcript.push({ dir: 'in', message });
    if (message.type === VscMsgType.Error && this.#outstanding > 0) this.#outstanding -= 1;
    return this.#record(this.link.receive(message));
  };

  /** All messages put on the wire so far. */
  get wire(): VscMessage[] {
    return this.transcript.flatMap((s) => (s.dir === 'out' && s.action.kind === 'send' ? [s.action.message] : []));
  }

  #record(actions: ReaderLinkAction[]): ReaderLinkAction[] {
    for (const action of actions) {
      this.transcript.push({ dir: 'out', action });
      this.#check(action);
    }
    return actions;
  }

  #check(action: ReaderLinkAction): void {
    if (action.kind === 'state') {
      expect(LINK_TRANSITIONS[action.from]).toContain(action.to);
      if (isTerminalLinkState(action.to)) this.#terminal = true;
    }
    if (action.kind === 'reader-added') this.#granted = true;
    if (action.kind === 'deliver-apdu') expect(this.#terminal).toBe(false);
    if (action.kind !== 'send') return;
    const msg = action.message;
    expect(this.#terminal, 'nothing is sent after a terminal state').toBe(false);
    for (const order of ['le', 'be'] as const) {
      const bytes = encodeVscMessage(msg, order);
      expect(bytes.length).toBeLessThanOrEqual(VSC_LIMITS.maxSendMessageSize);
      expect(decodeVscMessage(bytes, order)).toMatchObject({ ok: true, trailingBytes: 0 });
    }
    if (msg.type === VscMsgType.ReaderAdd || msg.type === VscMsgType.Init) {
      expect(msg.readerId).toBe(UNDEF);
    } else {
      expect(this.#granted, `${msg.type} before the reader was granted`).toBe(true);
      expect(msg.readerId).toBe(0);
    }
    if (msg.type === VscMsgType.Atr) expect(checkAtr(msg.atr).ok).toBe(true);
    if (msg.type === VscMsgType.Apdu) expect(msg.data.length).toBeLessThanOrEqual(VSC_LIMITS.maxApduResponseSize);
    if (msg.type === VscMsgType.Error) expect(msg.code).toBe(1);
    if (CONTROL_TYPES.has(msg.type)) {
      this.#outstanding += 1;
      expect(this.#outstanding, 'one control message in flight at a time').toBeLessThanOrEqual(1);
    }
  }
}

const sends = (actions: readonly ReaderLinkAction[]): VscMessage[] =>
  actions.flatMap((a) => (a.kind === 'send' ? [a.message] : []));
const kinds = (actions: readonly ReaderLinkAction[]): string[] =>
  actions.map((a) => (a.kind === 'state' ? `state:${a.to}` : a.kind === 'error' || a.kind === 'warning' ? `${a.kind}:${a.code}` : a.kind));
const wireHex = (msgs: readonly VscMessage[], order: ByteOrder = 'le'): string[] =>
  msgs.map((m) => toHex(encodeVscMessage(m, order)));
const delivered = (actions: readonly ReaderLinkAction[]): { seq: number; apdu: string }[] =>
  actions.flatMap((a) => (a.kind === 'deliver-apdu' ? [{ seq: a.seq, apdu: toHex(a.apdu) }] : []));

/** A link in 'ready' with the CAC card acknowledged by the VM. */
function readyWithCard(options: ReaderLinkOptions = {}): Harness {
  const h = new Harness(options);
  h.start();
  h.receive(ack());
  h.insert(CAC_ATR);
  h.receive(ack());
  expect(h.link.state).toBe('ready');
  expect(h.link.vmCardState).toBe('present');
  return h;
}

describe('ReaderLink: the normal life of a reader (SPICE mode)', () => {
  it('adds the reader, inserts the card, serves APDUs, removes card and reader, stops', () => {
    const h = new Harness();

    const started = h.start();
    expect(kinds(started)).toEqual(['state:adding', 'send']);
    // protocol.md §9.1, byte for byte.
    expect(wireHex(sends(started))).toEqual(['03 00 00 00 ff ff ff ff 00 00 00 00']);
    expect(h.link.deadline).toBe(1_000 + 10_000);

    const added = h.receive(ack(0));
    expect(kinds(added)).toEqual(['state:ready', 'reader-added']);
    expect(h.link.readerId).toBe(0);
    expect(h.link.deadline).toBeUndefined();

    const inserted = h.insert(CAC_ATR);
    expect(wireHex(sends(inserted))).toEqual([`05 00 00 00 00 00 00 00 0f 00 00 00 ${toHex(CAC_ATR)}`]);
    expect(h.link.vmCardState).toBe('inserting');
    const insertAck = h.receive(ack());
    expect(insertAck).toEqual([{ kind: 'card-inserted', atr: CAC_ATR }]);

    for (let i = 1; i <= 3; i++) {
      const cmd = h.receive(command(`00 ca 00 0${i}`));
      expect(delivered(cmd)).toEqual([{ seq: i, apdu: `00 ca 00 0${i}` }]);
      expect(sends(cmd)).toEqual([]);
      const answered = h.answer(i, hex(`0${i} 90 00`));
      expect(wireHex(sends(answered))).toEqual([`07 00 00 00 00 00 00 00 03 00 00 00 0${i} 90 00`]);
    }

    const removed = h.remove();
    expect(wireHex(sends(removed))).toEqual(['06 00 00 00 00 00 00 00 00 00 00 00']);
    expect(kinds(h.receive(ack()))).toEqual(['card-removed']);

    const stopping = h.stop();
    expect(kinds(stopping)).toEqual(['state:stopping', 'send']);
    expect(wireHex(sends(stopping))).toEqual(['04 00 00 00 00 00 00 00 00 00 00 00']);
    expect(kinds(h.receive(ack()))).toEqual(['reader-removed', 'state:stopped']);
    expect(h.link.state).toBe('stopped');
  });

  it('accepts the reader-add reply whatever byte order its code used (decoded code 0)', () => {
    const h = new Harness();
    h.start();
    const reply = decodeVscMessage(hex('02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00'), 'le');
    expect(reply.ok).toBe(true);
    if (reply.ok) expect(kinds(h.receive(reply.message))).toEqual(['state:ready', 'reader-added']);
  });

  it('stop with a card in the VM: CardRemove, then ReaderRemove, each after its ack', () => {
    const h = readyWithCard();
    h.receive(command('00 a4 04 00'));
    const stopping = h.stop();
    // QEMU loses a pending answer on CardRemove: the command in flight is failed first, and
    // CardRemove waits for the guest to fetch that answer.
    expect(sends(stopping).map((m) => m.type)).toEqual([VscMsgType.Error]);
    expect(h.link.deadline).toBe(h.now + CARD_REMOVE_GRACE_MS);
    expect(sends(h.tick(h.now + CARD_REMOVE_GRACE_MS - 1))).toEqual([]);
    expect(sends(h.tick(h.now + CARD_REMOVE_GRACE_MS)).map((m) => m.type)).toEqual([VscMsgType.CardRemove]);
    expect(sends(h.answer(1, hex('90 00')))).toEqual([]); // the answer is stale now
    expect(sends(h.receive(ack())).map((m) => m.type)).toEqual([VscMsgType.ReaderRemove]);
    expect(kinds(h.receive(ack()))).toEqual(['reader-removed', 'state:stopped']);
    // Terminal: every input is ignored.
    expect(h.insert()).toEqual([]);
    expect(h.receive(command('00 00 00 00'))).toEqual([]);
    expect(h.receive(ack())).toEqual([]);
    expect(h.stop()).toEqual([]);
    expect(h.tick(1e12)).toEqual([]);
    expect(h.start()).toEqual([]);
  });

  it('ignores card changes during teardown', () => {
    const h = readyWithCard();
    h.stop();
    expect(h.insert(NSS_ATR)).toEqual([]);
    expect(h.remove()).toEqual([]);
    expect(sends(h.receive(ack())).map((m) => m.type)).toEqual([VscMsgType.ReaderRemove]);
  });

  it('stop before start sends nothing', () => {
    const h = new Harness();
    expect(kinds(h.stop())).toEqual(['state:stopped']);
    expect(h.wire).toEqual([]);
  });

  it('stop while ReaderAdd is in flight waits for the reply, then removes the granted reader', () => {
    const h = new Harness();
    h.start();
    expect(sends(h.stop())).toEqual([]);
    const reply = h.receive(ack());
    expect(kinds(reply)).toEqual(['reader-added', 'send']);
    expect(sends(reply).map((m) => m.type)).toEqual([VscMsgType.ReaderRemove]);
    expect(kinds(h.receive(ack()))).toEqual(['reader-removed', 'state:stopped']);
  });

  it('stop while ReaderAdd is in flight and the reply refuses: nothing more is sent', () => {
    const h = new Harness();
    h.start();
    h.stop();
    expect(kinds(h.receive(nack(2, UNDEF)))).toEqual(['state:stopped']);
    expect(h.wire.map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
  });
});

describe('ReaderLink: control replies', () => {
  it('warns about an unsolicited VSC_Error and keeps FIFO matching right', () => {
    const h = new Harness();
    h.start();
    h.receive(ack());
    const stray = h.receive(nack(1));
    expect(kinds(stray)).toEqual(['warning:unsolicited-error']);
    h.insert(CAC_ATR);
    // The next Error is the ATR's reply.
    expect(kinds(h.receive(ack()))).toEqual(['card-inserted']);
    expect(kinds(h.receive(ack()))).toEqual(['warning:unsolicited-error']);
    expect(h.link.vmCardState).toBe('present');
  });

  it('keeps one control message in flight: a re-insert during an ATR waits for its ack', () => {
    const h = new Harness();
    h.start();
    h.receive(ack());
    expect(sends(h.insert(CAC_ATR)).map((m) => m.type)).toEqual([VscMsgType.Atr]);
    expect(sends(h.remove())).toEqual([]);
    expect(sends(h.insert(NSS_ATR))).toEqual([]);
    // ATR acked: the VM has the old card, so remove it, then insert the new one.
    const afterAtr = h.receive(ack());
    expect(kinds(afterAtr)).toEqual(['card-inserted', 'send']);
    expect(sends(afterAtr).map((m) => m.type)).toEqual([VscMsgType.CardRemove]);
    const afterRemove = h.receive(ack());
    expect(sends(afterRemove)).toEqual([{ type: VscMsgType.Atr, readerId: 0, atr: NSS_ATR }]);
    expect(kinds(h.receive(ack()))).toEqual(['card-inserted']);
  });

  it('a re-insert of a present card is CardRemove then ATR', () => {
    const h = readyWithCard();
    expect(sends(h.insert(CAC_ATR)).map((m) => m.type)).toEqual([VscMsgType.CardRemove]);
    expect(sends(h.receive(ack())).map((m) => m.type)).toEqual([VscMsgType.Atr]);
  });

  it('collapses an insert/remove burst that happens while ReaderAdd is in flight', () => {
    const h = new Harness();
    h.start();
    h.insert(CAC_ATR);
    h.remove();
    expect(kinds(h.receive(ack()))).toEqual(['state:ready', 'reader-added']);
    expect(h.wire.map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
  });

  it('warns when CardRemove or ReaderRemove are acknowledged with an error code', () => {
    const h = readyWithCard();
    h.remove();
    expect(kinds(h.receive(nack(1)))).toEqual(['card-removed', 'warning:error-ack']);
    h.stop();
    expect(kinds(h.receive(nack(1)))).toEqual(['reader-removed', 'warning:error-ack', 'state:stopped']);
  });
});

describe('ReaderLink: reply timeout', () => {
  it('fails when ReaderAdd is never answered, and then sends nothing', () => {
    const h = new Harness({ replyTimeoutMs: 5_000 });
    h.start();
    expect(h.link.deadline).toBe(6_000);
    expect(h.tick(5_999)).toEqual([]);
    h.now = 6_000;
    const expired = h.tick();
    expect(kinds(expired)).toEqual(['error:reply-timeout', 'state:failed']);
    expect(expired[0]).toMatchObject({ fatal: true });
    expect(h.insert()).toEqual([]);
    expect(h.receive(ack())).toEqual([]);
    expect(h.stop()).toEqual([]);
    expect(h.wire.map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
  });

  it('fails when an ATR is never answered (default 10 s)', () => {
    const h = new Harness();
    h.start();
    h.receive(ack());
    h.now = 50_000;
    h.insert();
    expect(h.link.deadline).toBe(60_000);
    expect(kinds(h.tick(59_999))).toEqual([]);
    const expired = h.tick(60_000);
    expect(kinds(expired)).toEqual(['error:reply-timeout', 'state:failed']);
    expect(expired[0]).toMatchObject({ text: expect.stringContaining('ATR') });
  });

  it('gives up quietly on a teardown ack that never comes', () => {
    const h = readyWithCard();
    h.stop();
    expect(kinds(h.tick(h.now + 10_000))).toEqual(['warning:stop-timeout', 'state:stopped']);
    expect(h.wire.at(-1)?.type).toBe(VscMsgType.CardRemove);
  });
});

describe('ReaderLink: the server refuses the reader', () => {
  const refusals: [string, VscMessage, string][] = [
    ['CANNOT_ADD_MORE_READERS from spice-server', nack(2, UNDEF), 'already used by another client'],
    ['success code but undefined reader id', ack(UNDEF), 'already used by another client'],
    ['an error code on reader 0', nack(1, 0), 'refused the smartcard reader (code 1'],
  ];

  it.each(refusals)('%s: refused, and nothing else is ever sent', (_name, reply, text) => {
    const h = new Harness();
    h.insert(CAC_ATR); // a card waiting for the reader
    h.start();
    const refused = h.receive(reply);
    expect(kinds(refused)).toEqual(['error:reader-refused', 'state:refused']);
    expect(refused[0]).toMatchObject({ fatal: true, text: expect.stringContaining(text) });
    expect(h.link.state).toBe('refused');

    const afterwards = [
      h.receive(command('00 a4 04 00')),
      h.answer(1, hex('90 00')),
      h.fail(1),
      h.insert(NSS_ATR),
      h.remove(),
      h.receive(ack()),
      h.receive(nack(1)),
      h.tick(1e12),
      h.stop(),
    ];
    expect(afterwards.flat()).toEqual([]);
    expect(h.wire).toEqual([{ type: VscMsgType.ReaderAdd, readerId: UNDEF, name: '' }]);
  });

  it('fails on a reader id other than 0 and sends nothing more', () => {
    const h = new Harness();
    h.insert();
    h.start();
    expect(kinds(h.receive(ack(5)))).toEqual(['error:unexpected-reader-id', 'state:failed']);
    expect(h.receive(command('00 00 00 00'))).toEqual([]);
    expect(h.wire.map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
  });
});

describe('ReaderLink: card removed while an APDU is in flight', () => {
  it('fails the command in flight (QEMU would lose its answer), sends CardRemove, and drops the late answer', () => {
    const h = readyWithCard();
    expect(delivered(h.receive(command('00 b0 00 00')))).toEqual([{ seq: 1, apdu: '00 b0 00 00' }]);
    const removed = h.remove();
    expect(sends(removed)).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
    // A command crossing the delay is failed at once, never delivered to a card that is gone.
    const crossing = h.receive(command('00 b0 00 01'));
    expect(sends(crossing)).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
    expect(delivered(crossing)).toEqual([]);
    expect(sends(h.tick(h.now + CARD_REMOVE_GRACE_MS))).toEqual([{ type: VscMsgType.CardRemove, readerId: 0 }]);
    expect(kinds(h.answer(1, hex('90 00')))).toEqual(['warning:stale-answer']);
    expect(kinds(h.fail(1))).toEqual(['warning:stale-answer']);
    h.receive(ack());

    // The card comes back and the guest sends a new command: the old answer must not land on it.
    expect(sends(h.insert(CAC_ATR)).map((m) => m.type)).toEqual([VscMsgType.Atr]);
    h.receive(ack());
    expect(delivered(h.receive(command('00 c0 00 00 10')))).toEqual([{ seq: 2, apdu: '00 c0 00 00 10' }]);
    expect(sends(h.answer(1, hex('de ad 90 00')))).toEqual([]);
    expect(sends(h.answer(2, hex('61 00')))).toEqual([{ type: VscMsgType.Apdu, readerId: 0, data: hex('61 00') }]);
    expect(h.wire.filter((m) => m.type === VscMsgType.Apdu || m.type === VscMsgType.Error)).toHaveLength(3);
  });

  it('a card reset with an APDU in flight also drops the stale answer', () => {
    const h = readyWithCard();
    h.receive(command('00 b0 00 00'));
    expect(sends(h.insert(CAC_ATR)).map((m) => m.type)).toEqual([VscMsgType.Error]);
    expect(sends(h.answer(1, hex('90 00')))).toEqual([]);
    expect(sends(h.tick(h.now + CARD_REMOVE_GRACE_MS)).map((m) => m.type)).toEqual([VscMsgType.CardRemove]);
  });

  it('answers a command crossing our CardRemove with an immediate error', () => {
    const h = readyWithCard();
    h.remove();
    const crossing = h.receive(command('00 b0 00 00'));
    expect(sends(crossing)).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
    expect(delivered(crossing)).toEqual([]);
  });
});

describe('ReaderLink: ATR checks', () => {
  it.each([
    ['inconsistent ATR', hex('3b 05 01')],
    ['too short', hex('3b')],
    ['41 bytes', Uint8Array.from({ length: 41 }, (_, i) => (i === 0 ? 0x3b : 0))],
    ['bad TS', hex('3c 00')],
  ])('refuses a %s locally and never sends it', (_name, atr) => {
    const h = new Harness();
    h.start();
    h.receive(ack());
    const refused = h.insert(atr);
    expect(kinds(refused)).toEqual(['error:atr-invalid']);
    expect(refused[0]).toMatchObject({ fatal: false });
    expect(h.wire.map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
  });

  it('an invalid ATR replacing a present card removes the old card', () => {
    const h = readyWithCard();
    const refused = h.insert(hex('3b 05 01'));
    expect(kinds(refused)).toEqual(['error:atr-invalid', 'send']);
    expect(sends(refused).map((m) => m.type)).toEqual([VscMsgType.CardRemove]);
  });

  it('an ATR the VM rejects is reported and not retried until another card comes', () => {
    const h = new Harness();
    h.start();
    h.receive(ack());
    h.insert(CAC_ATR);
    // QEMU writes GENERAL_ERROR big-endian; the codec normalises it to 1.
    const rejected = h.receive(nack(1));
    expect(kinds(rejected)).toEqual(['error:atr-rejected']);
    expect(h.link.vmCardState).toBe('absent');
    expect(sends(h.receive(command('00 a4 04 00')))).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
    expect(sends(h.insert(NSS_ATR)).map((m) => m.type)).toEqual([VscMsgType.Atr]);
  });

  it('copies the ATR: a card source reusing its buffer cannot change what is sent', () => {
    const h = new Harness();
    const atr = CAC_ATR.slice();
    h.insert(atr);
    atr.fill(0);
    h.start();
    const sent = sends(h.receive(ack()));
    expect(sent).toEqual([{ type: VscMsgType.Atr, readerId: 0, atr: CAC_ATR }]);
  });
});

describe('ReaderLink: APDU handling', () => {
  it('queues a second command and answers both in order', () => {
    const h = readyWithCard();
    expect(delivered(h.receive(command('00 01')))).toEqual([{ seq: 1, apdu: '00 01' }]);
    expect(delivered(h.receive(command('00 02')))).toEqual([]);
    const first = h.answer(1, hex('11 90 00'));
    expect(kinds(first)).toEqual(['send', 'deliver-apdu']);
    expect(sends(first)).toEqual([{ type: VscMsgType.Apdu, readerId: 0, data: hex('11 90 00') }]);
    expect(delivered(first)).toEqual([{ seq: 2, apdu: '00 02' }]);
    expect(sends(h.answer(2, hex('22 90 00')))).toEqual([{ type: VscMsgType.Apdu, readerId: 0, data: hex('22 90 00') }]);
    expect(kinds(h.answer(2, hex('90 00')))).toEqual(['warning:stale-answer']);
  });

  it('answers a card failure with GENERAL_ERROR', () => {
    const h = readyWithCard();
    h.receive(command('00 01'));
    const failed = h.fail(1);
    expect(kinds(failed)).toEqual(['error:card-failed', 'send']);
    expect(wireHex(sends(failed))).toEqual(['02 00 00 00 00 00 00 00 04 00 00 00 01 00 00 00']);
    expect(wireHex(sends(failed), 'be')).toEqual(['00 00 00 02 00 00 00 00 00 00 00 04 00 00 00 01']);
  });

  it.each([
    ['259 bytes', 259],
    ['1 byte', 1],
    ['0 bytes', 0],
  ])('answers a %s response with GENERAL_ERROR and reports it', (_name, length) => {
    const h = readyWithCard();
    h.receive(command('00 b0 00 00 00'));
    const answered = h.answer(1, new Uint8Array(length).fill(0x90));
    expect(kinds(answered)).toEqual(['error:card-response-invalid', 'send']);
    expect(sends(answered)).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
  });

  it('passes a 258-byte response through', () => {
    const h = readyWithCard();
    h.receive(command('00 b0 00 00 00'));
    const response = new Uint8Array(258).fill(0x61);
    expect(sends(h.answer(1, response))).toEqual([{ type: VscMsgType.Apdu, readerId: 0, data: response }]);
  });

  it('answers a command with no card by GENERAL_ERROR once the reader is owned', () => {
    const h = new Harness();
    h.start();
    expect(kinds(h.receive(command('00 01')))).toEqual(['warning:apdu-without-card']);
    expect(h.wire.map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
    h.receive(ack());
    const answered = h.receive(command('00 02'));
    expect(kinds(answered)).toEqual(['warning:apdu-without-card', 'send']);
    expect(sends(answered)).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
  });

  it('answers a command that arrives while the ATR awaits its ack with GENERAL_ERROR', () => {
    const h = new Harness();
    h.start();
    h.receive(ack());
    h.insert();
    expect(sends(h.receive(command('00 01')))).toEqual([{ type: VscMsgType.Error, readerId: 0, code: 1 }]);
  });

  it('fails when the server floods commands without waiting', () => {
    const h = readyWithCard();
    for (let i = 0; i < VSC_LIMITS.maxQueuedApdus; i++) h.receive(command('00 01'));
    expect(kinds(h.receive(command('00 01')))).toEqual(['error:apdu-overflow', 'state:failed']);
    expect(h.answer(1, hex('90 00'))).toEqual([]);
  });
});

describe('ReaderLink: other server messages', () => {
  it('ignores Flush (never answers FlushComplete) and other unexpected types', () => {
    const h = readyWithCard();
    const before = h.wire.length;
    expect(kinds(h.receive({ type: VscMsgType.Flush, readerId: 0 }))).toEqual(['warning:unexpected-message']);
    expect(kinds(h.receive({ type: VscMsgType.CardRemove, readerId: 0 }))).toEqual(['warning:unexpected-message']);
    expect(kinds(h.receive({ type: 'unknown', readerId: 0, rawType: 42, payload: new Uint8Array(0) }))).toEqual([
      'warning:unexpected-message',
    ]);
    expect(kinds(h.receive({ type: VscMsgType.Init, readerId: UNDEF, magic: hex('56 53 43 44'), version: 2, capabilities: [0] }))).toEqual([
      'warning:unexpected-message',
    ]);
    expect(h.wire.length).toBe(before);
  });

  it('ignores a message before start', () => {
    const h = new Harness();
    expect(kinds(h.receive(ack()))).toEqual(['warning:unexpected-message']);
    expect(h.link.state).toBe('idle');
  });

  it('clamps a long reader name to whole UTF-8 characters', () => {
    const h = new Harness({ readerName: 'é'.repeat(200) });
    const [msg] = sends(h.start());
    expect(msg?.type).toBe(VscMsgType.ReaderAdd);
    if (msg?.type === VscMsgType.ReaderAdd) {
      expect(new TextEncoder().encode(msg.name).length).toBe(VSC_LIMITS.maxReaderNameBytes);
      expect(msg.name).toBe('é'.repeat(VSC_LIMITS.maxReaderNameBytes / 2));
    }
  });
});

describe('ReaderLink: raw passthru socket mode', () => {
  const qemuInit: VscMessage = {
    type: VscMsgType.Init,
    readerId: UNDEF,
    magic: hex('56 53 43 44'),
    version: 2,
    capabilities: [0],
  };

  it('sends Init then ReaderAdd, and clears a card a previous client may have left', () => {
    const h = new Harness({ mode: 'passthru' });
    const started = h.start();
    expect(wireHex(sends(started), 'be')).toEqual([
      '00 00 00 01 ff ff ff ff 00 00 00 0c 56 53 43 44 00 00 00 02 00 00 00 00',
      '00 00 00 03 ff ff ff ff 00 00 00 00',
    ]);
    expect(h.receive(qemuInit)).toEqual([]);
    const added = h.receive(ack());
    expect(kinds(added)).toEqual(['state:ready', 'reader-added', 'send']);
    expect(wireHex(sends(added), 'be')).toEqual(['00 00 00 06 00 00 00 00 00 00 00 00']);
    expect(kinds(h.receive(ack()))).toEqual(['card-removed']);
    expect(h.link.vmCardState).toBe('absent');
  });

  it('with a card held, sends the ATR straight away (it replaces any stale card)', () => {
    const h = new Harness({ mode: 'passthru' });
    h.insert(NSS_ATR);
    h.start();
    expect(sends(h.receive(ack()))).toEqual([{ type: VscMsgType.Atr, readerId: 0, atr: NSS_ATR }]);
  });

  it('fails on an Init with the wrong magic', () => {
    const h = new Harness({ mode: 'passthru' });
    h.start();
    const bad = h.receive({ ...qemuInit, magic: hex('48 54 54 50') });
    expect(kinds(bad)).toEqual(['error:bad-init', 'state:failed']);
  });

  it('warns on another VSC version and carries on', () => {
    const h = new Harness({ mode: 'passthru' });
    h.start();
    expect(kinds(h.receive({ ...qemuInit, version: 3 }))).toEqual(['warning:init-version']);
    expect(h.link.state).toBe('adding');
  });

  it('never sends Init in SPICE mode', () => {
    const h = new Harness({ mode: 'spice' });
    expect(sends(h.start()).map((m) => m.type)).toEqual([VscMsgType.ReaderAdd]);
  });
});

describe('ReaderLink: transition tables', () => {
  it('terminal states have no exits; every other state can reach a terminal state', () => {
    const states = Object.keys(LINK_TRANSITIONS) as LinkState[];
    expect(states.filter(isTerminalLinkState).sort()).toEqual(['failed', 'refused', 'stopped']);
    for (const state of states) {
      const seen = new Set<LinkState>([state]);
      const todo = [state];
      for (let current = todo.pop(); current !== undefined; current = todo.pop()) {
        for (const next of LINK_TRANSITIONS[current]) {
          if (!seen.has(next)) {
            seen.add(next);
            todo.push(next);
          }
        }
      }
      expect([...seen].some(isTerminalLinkState)).toBe(true);
    }
    for (const targets of Object.values(VM_CARD_TRANSITIONS)) expect(targets.length).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------
// Randomised: the link against a fake VM that enforces spice-server's and QEMU's rules.

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * spice-server + QEMU ccid-card-passthru, reduced to what can go wrong: it throws on every
 * message that would crash or confuse the real thing. Bytes cross as SPICE bodies (LE header),
 * and its own error codes are big-endian, as QEMU writes them.
 */
class FakeVm {
  readonly toClient: Uint8Array[] = [];
  attached = false;
  card = false;
  pending: number | undefined;
  #nextCommand = 1;
  readonly answered: number[] = [];

  constructor(readonly refuse: boolean) {}

  receive(body: Uint8Array): void {
    const decoded = decodeVscMessage(body, 'le');
    if (!decoded.ok) throw new Error(`VM: undecodable ${decoded.error.text}`);
    if (decoded.trailingBytes !== 0) throw new Error('VM: body size is not 12 + L (old servers abort)');
    const msg = decoded.message;
    if (msg.type === VscMsgType.ReaderAdd) {
      if (this.refuse) return this.#reply(2, UNDEF, 'le');
      this.attached = true;
      return this.#reply(0, 0, 'be');
    }
    if (this.refuse) throw new Error(`VM: ${msg.type} on a channel without a device (segfault)`);
    if (msg.readerId !== 0) throw new Error('VM: reader id other than 0 (channel dropped)');
    switch (msg.type) {
      case VscMsgType.ReaderRemove:
        if (!this.attached) throw new Error('VM: ReaderRemove for a reader we do not own (abort)');
        this.attached = false;
        this.card = false;
        this.pending = undefined;
        return this.#reply(0, 0, 'be');
      case VscMsgType.Atr:
        if (!this.attached) throw new Error('VM: ATR before ReaderAdd');
        if (!checkAtr(msg.atr).ok) return this.#reply(1, 0, 'be');
        this.card = true;
        this.pending = undefined;
        return this.#reply(0, 0, 'be');
      case VscMsgType.CardRemove:
        this.card = false;
        this.pending = undefined;
        return this.#reply(0, 0, 'be');
      case VscMsgType.Apdu: {
        if (this.pending === undefined) return; // QEMU logs and drops it
        const id = msg.data[0];
        if (id !== this.pending) throw new Error(`VM: answer for command ${id} landed on command ${this.pending}`);
        this.answered.push(this.pending);
        this.pending = undefined;
        return;
      }
      case VscMsgType.Error:
        this.pending = undefined;
        return;
      default:
        throw new Error(`VM: client sent ${msg.type}`);
    }
  }

  /** The guest issues a command if it can. */
  guestCommand(): void {
    if (!this.card || this.pending !== undefined) return;
    this.pending = (this.#nextCommand++ % 255) + 1;
    this.toClient.push(encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: Uint8Array.of(0x00, 0xca, this.pending) }, 'le'));
  }

  #reply(code: number, readerId: number, codeOrder: ByteOrder): void {
    const body = encodeVscMessage({ type: VscMsgType.Error, readerId, code: 0 }, 'le');
    new DataView(body.buffer).setUint32(12, code, codeOrder === 'le');
    this.toClient.push(body);
  }
}

describe('ReaderLink: random event sequences against a fake VM', () => {
  const ATRS = [CAC_ATR, NSS_ATR, hex('3b 05 01') /* invalid */];

  function run(seed: number, refuse: boolean): void {
    const next = rng(seed);
    const vm = new FakeVm(refuse);
    const h = new Harness({ replyTimeoutMs: 1_000_000 });
    const toVm: Uint8Array[] = [];
    const cardWork: { seq: number; apdu: Uint8Array }[] = [];
    let held: Uint8Array | undefined;

    const apply = (actions: ReaderLinkAction[]): void => {
      for (const a of actions) {
        if (a.kind === 'send') toVm.push(encodeVscMessage(a.message, 'le'));
        if (a.kind === 'deliver-apdu') cardWork.push(a);
      }
    };
    const deliverToVm = (): void => vm.receive(toVm.shift()!);
    const deliverToClient = (): void => {
      const decoded = decodeVscMessage(vm.toClient.shift()!, 'le');
      if (decoded.ok) apply(h.receive(decoded.message));
    };
    const cardAnswers = (): void => {
      const work = cardWork.shift()!;
      const roll = next() % 10;
      if (roll === 0) apply(h.fail(work.seq));
      else if (roll === 1) apply(h.answer(work.seq, new Uint8Array(300)));
      else apply(h.answer(work.seq, Uint8Array.of(work.apdu[2] ?? 0, 0x90, 0x00)));
    };

    apply(h.start());
    // Card changes are rare next to traffic, so the guest gets long runs of commands and
    // card answers often straddle a removal or re-insertion.
    for (let step = 0; step < 600; step++) {
      const roll = next() % 100;
      if (roll < 30 && toVm.length > 0) deliverToVm();
      else if (roll < 60 && vm.toClient.length > 0) deliverToClient();
      else if (roll < 75 && cardWork.length > 0) cardAnswers();
      else if (roll < 95) vm.guestCommand();
      else if (roll < 98) {
        held = ATRS[next() % ATRS.length];
        apply(h.insert(held!));
      } else {
        held = undefined;
        apply(h.remove());
      }
    }

    // Quiesce: everything in flight is delivered and every card answer given.
    const quiesce = (): void => {
      for (let guard = 0; guard < 10_000; guard++) {
        if (toVm.length > 0) deliverToVm();
        else if (vm.toClient.length > 0) deliverToClient();
        else if (cardWork.length > 0) cardAnswers();
        else if (h.link.deadline !== undefined && h.link.deadline <= h.now + CARD_REMOVE_GRACE_MS) {
          // A CardRemove held back after failing a command in flight goes out once time passes.
          h.now += CARD_REMOVE_GRACE_MS;
          apply(h.tick());
        } else return;
      }
      throw new Error('did not settle');
    };
    quiesce();

    if (refuse) {
      expect(h.link.state).toBe('refused');
    } else {
      // Liveness: the VM ends up with exactly the card the client holds (if QEMU accepts it),
      // and no guest command is left hanging.
      expect(h.link.state).toBe('ready');
      expect(vm.card).toBe(held !== undefined && checkAtr(held).ok);
      vm.guestCommand();
      quiesce();
      expect(vm.pending).toBeUndefined();
    }

    apply(h.stop());
    quiesce();
    expect(h.link.terminal).toBe(true);
    expect(vm.attached).toBe(false);
  }

  it.each(Array.from({ length: 60 }, (_, i) => [i + 1]))('seed %i', (seed) => {
    run(seed * 7919, false);
  });

  it.each([[101], [202], [303]])('seed %i, device owned by another client', (seed) => {
    run(seed, true);
  });
});

// ---------------------------------------------------------------------------

describe('Card interface and TypedEmitter', () => {
  class FakeCard implements Card {
    readonly name = 'Fake Reader 00';
    readonly #events = new TypedEmitter<CardEventMap>();
    #atr: Uint8Array | undefined;

    atr(): Uint8Array | undefined {
      return this.#atr;
    }
    async transmit(apdu: Uint8Array): Promise<Uint8Array> {
      if (this.#atr === undefined) throw new Error('no card');
      return Uint8Array.of(...apdu.subarray(0, 1), 0x90, 0x00);
    }
    on<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
      this.#events.on(event, listener);
    }
    off<E extends keyof CardEventMap>(event: E, listener: CardListener<E>): void {
      this.#events.off(event, listener);
    }
    insert(atr: Uint8Array): void {
      this.#atr = atr;
      this.#events.emit('inserted', atr);
    }
    pull(): void {
      this.#atr = undefined;
      this.#events.emit('removed');
    }
  }

  it('delivers typed events and drives a link', async () => {
    const card = new FakeCard();
    const link = new ReaderLink({ readerName: card.name, now: () => 0 });
    const log: string[] = [];
    const onInsert = (atr: Uint8Array): void => {
      log.push(`inserted ${atr.length}`);
      link.cardInserted(atr);
    };
    card.on('inserted', onInsert);
    card.on('removed', () => log.push('removed'));
    expect(sends(link.start())).toEqual([{ type: VscMsgType.ReaderAdd, readerId: UNDEF, name: 'Fake Reader 00' }]);
    link.receive(ack());
    card.insert(CAC_ATR);
    expect(link.vmCardState).toBe('inserting');
    card.off('inserted', onInsert);
    card.insert(NSS_ATR);
    card.pull();
    expect(log).toEqual(['inserted 15', 'removed']);
    await expect(card.transmit(hex('00 a4'))).rejects.toThrow('no card');
  });

  it('keeps calling listeners when one throws, and reports the error', () => {
    const errors: unknown[] = [];
    const emitter = new TypedEmitter<CardEventMap>((e) => errors.push(e));
    const calls: string[] = [];
    emitter.on('removed', () => {
      throw new Error('boom');
    });
    emitter.on('removed', () => calls.push('second'));
    emitter.emit('removed');
    expect(calls).toEqual(['second']);
    expect(errors).toHaveLength(1);
    expect(emitter.listenerCount('removed')).toBe(2);
    emitter.removeAllListeners();
    expect(emitter.listenerCount('removed')).toBe(0);
  });
});
