// CardForwarder between a ReaderLink and a card, with the server side played by the test.
import { describe, expect, it, vi } from 'vitest';
import type { VscMessage } from '../../vsc/codec.js';
import { VscMsgType as T } from '../../vsc/constants.js';
import { CardForwarder } from '../../src/bridge/card-forwarder.js';
import { getDataApdu, verifyPinApdu } from '../../vsc/piv/host-commands.js';
import { createDemoCard, DEMO_CARD_PIN } from '../../vsc/soft-card/demo-card.js';
import { ScriptedCard, SCRIPTED_ATR } from '../helpers/scripted-card.js';

function setup(card = new ScriptedCard(), replyTimeoutMs?: number) {
  const sent: VscMessage[] = [];
  const f = new CardForwarder({ card, mode: 'spice', send: (m) => sent.push(m), ...(replyTimeoutMs !== undefined ? { replyTimeoutMs } : {}) });
  const ack = (readerId = 0): void => f.receive({ type: T.Error, readerId, code: 0 });
  return { f, sent, card, ack };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('CardForwarder', () => {
  it('adds the reader, inserts the card after the ack, and answers a command through the card', async () => {
    const { f, sent, ack } = setup();
    const events: string[] = [];
    f.on('reader-added', () => events.push('reader-added'));
    f.on('card-inserted', () => events.push('card-inserted'));
    f.start();
    expect(sent.map((m) => m.type)).toEqual([T.ReaderAdd]);
    ack();
    expect(sent.map((m) => m.type)).toEqual([T.ReaderAdd, T.Atr]);
    expect(sent[1]).toMatchObject({ type: T.Atr, readerId: 0, atr: SCRIPTED_ATR });
    ack();
    f.receive({ type: T.Apdu, readerId: 0, data: Uint8Array.of(0x00, 0xb0, 0x00, 0x00, 0x02) });
    await flush();
    expect(sent[2]).toMatchObject({ type: T.Apdu, readerId: 0, data: Uint8Array.of(0, 1, 0x90, 0) });
    expect(events).toEqual(['reader-added', 'card-inserted']);
    expect(f.stats.count).toBe(1);
  });

  it('answers commands a soft card answers at once and ones it answers later in the order the VM sent them', async () => {
    const card = await createDemoCard();
    const sent: VscMessage[] = [];
    const f = new CardForwarder({ card, mode: 'spice', send: (m) => sent.push(m) });
    const ack = (): void => f.receive({ type: T.Error, readerId: 0, code: 0 });
    const seqs: Array<[number, number]> = [];
    f.on('apdu', (e) => seqs.push([e.seq, e.ins]));
    f.start();
    ack();
    ack();
    // Queued in the link before any answer: a read, a VERIFY (scrypt: answered later), a read.
    f.receive({ type: T.Apdu, readerId: 0, data: getDataApdu(0x5fc102) });
    expect(sent).toHaveLength(3); // the first read was answered inside receive()
    f.receive({ type: T.Apdu, readerId: 0, data: verifyPinApdu(DEMO_CARD_PIN) });
    f.receive({ type: T.Apdu, readerId: 0, data: getDataApdu(0x5fc102) });
    await vi.waitFor(() => expect(sent.length).toBe(5), { timeout: 10_000 });
    const answers = sent.slice(2).map((m) => (m.type === T.Apdu ? Buffer.from(m.data.subarray(-2)).toString('hex') : `error ${m.type}`));
    expect(answers).toHaveLength(3);
    expect(answers[1]).toBe('9000');
    expect(answers[0]).toBe(answers[2]);
    expect(seqs).toEqual([
      [1, 0xcb],
      [2, 0x20],
      [3, 0xcb],
    ]);
    await card.close?.();
  });

  it('answers a failing card with VSC_Error, once', async () => {
    const card = new ScriptedCard(() => {
      throw new Error('card gone');
    });
    const { f, sent, ack } = setup(card);
    f.start();
    ack();
    ack();
    f.receive({ type: T.Apdu, readerId: 0, data: Uint8Array.of(0, 0xa4, 4, 0) });
    await flush();
    expect(sent.slice(2)).toEqual([{ type: T.Error, readerId: 0, code: 1 }]);
    expect(f.stats.failed).toBe(1);
  });

  it('reports a reply that never comes, through its own timer', async () => {
    vi.useFakeTimers();
    try {
      const { f } = setup(new ScriptedCard(), 1000);
      const finished = vi.fn();
      const problems: string[] = [];
      f.on('finished', finished);
      f.on('problem', (code) => problems.push(code));
      f.start();
      await vi.advanceTimersByTimeAsync(1500);
      expect(problems).toContain('reply-timeout');
      expect(finished).toHaveBeenCalledWith('failed');
    } finally {
      vi.useRealTimers();
    }
  });

  it('follows the card: removal sends CardRemove, re-insertion an ATR', () => {
    const { f, sent, ack, card } = setup();
    f.start();
    ack();
    ack();
    card.remove();
    expect(sent.at(-1)?.type).toBe(T.CardRemove);
    ack();
    card.insert();
    expect(sent.at(-1)?.type).toBe(T.Atr);
  });

  it('stops by removing the card and then the reader, each after its ack', async () => {
    const { f, sent, ack } = setup();
    f.start();
    ack();
    ack();
    const stopped = f.stop();
    expect(sent.at(-1)?.type).toBe(T.CardRemove);
    ack();
    expect(sent.at(-1)?.type).toBe(T.ReaderRemove);
    ack();
    await expect(stopped).resolves.toBe('stopped');
  });

  it('sends nothing more once the server refuses the reader', () => {
    const { f, sent, card } = setup();
    f.start();
    f.receive({ type: T.Error, readerId: 0xffffffff, code: 2 });
    card.remove();
    card.insert();
    f.receive({ type: T.Apdu, readerId: 0, data: Uint8Array.of(0, 0xa4, 4, 0) });
    expect(sent.map((m) => m.type)).toEqual([T.ReaderAdd]);
    expect(f.state).toBe('refused');
  });
});
