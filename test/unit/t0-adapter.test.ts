import { describe, expect, it } from 'vitest';
import { checkAtr } from '../../vsc/codec.js';
import { parseAtr } from '../../vsc/pcsc/atr.js';
import { isoChunkPolicy } from '../../vsc/iso7816/response-chaining.js';
import { T0Adapter, T0AtrError, t0GuestAtr } from '../../vsc/pcsc/t0-adapter.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const str = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const withSw = (data: Uint8Array, sw: number): Uint8Array => concat([data, Uint8Array.of(sw >> 8, sw & 0xff)]);

interface CardModel {
  /** Bytes the card holds for GET DATA (INS CB) and READ BINARY (INS B0). */
  size: number;
  /** Answers case 2 with a Le other than the exact size with 6C XX, as strict T=0-minded cards do. */
  exactLe?: boolean;
  /** Refuses an Le on commands that return nothing (VERIFY) with 6700. */
  strictCase3?: boolean;
  /** Refuses a 5-byte case-1 command (P3=00) with 6700. */
  strictCase1?: boolean;
  /** Hands out long answers 256 bytes at a time with 61 XX, as many T=1 cards do. */
  chains?: boolean;
}

/** A T=1 card as PC/SC shows it: whole APDUs in, data + SW out. Every APDU it gets is recorded. */
function t1Card(model: CardModel): { sent: string[]; exchange: (apdu: Uint8Array) => Promise<Uint8Array> } {
  const sent: string[] = [];
  const data = pattern(model.size);
  let pending: Uint8Array | undefined;
  const answer = (apdu: Uint8Array): Uint8Array => {
    const ins = apdu[1];
    if (ins === 0xc0) {
      if (pending === undefined) return hex('6d 00');
      const le = apdu[4] || 256;
      const chunk = pending.subarray(0, le);
      pending = pending.length > le ? pending.subarray(le) : undefined;
      return withSw(chunk, pending === undefined ? 0x9000 : 0x6100 | Math.min(pending.length, 256) % 256);
    }
    pending = undefined;
    if (ins === 0x20) {
      // VERIFY: case 3 (or case 1 to ask for the retry counter).
      if (apdu.length === 5 && apdu[4] === 0 && model.strictCase1) return hex('67 00');
      if (apdu.length === 4 + 1 + (apdu[4] ?? 0) + 1 && model.strictCase3) return hex('67 00');
      return hex('90 00');
    }
    if (ins === 0xb0 || ins === 0xcb) {
      const hasData = ins === 0xcb;
      const leAt = hasData ? 5 + (apdu[4] ?? 0) : 4;
      const le = apdu.length > leAt ? apdu[leAt] || 256 : undefined;
      if (le === undefined) return data.length === 0 ? hex('90 00') : hex('67 00');
      if (model.exactLe && le !== Math.min(data.length, 256) && data.length > 0) return hex(`6c ${(Math.min(data.length, 256) % 256).toString(16).padStart(2, '0')}`);
      if (model.chains && data.length > le) {
        pending = data.subarray(le);
        return withSw(data.subarray(0, le), 0x6100 | Math.min(pending.length, 256) % 256);
      }
      return withSw(data.subarray(0, Math.min(le, data.length)), 0x9000);
    }
    return hex('6d 00');
  };
  return {
    sent,
    exchange: (apdu) => {
      sent.push(str(apdu));
      return Promise.resolve(answer(apdu));
    },
  };
}

/** Plays the guest's T=0 side: sends the command, follows 61 XX with GET RESPONSE; returns every answer. */
async function guest(adapter: T0Adapter, card: ReturnType<typeof t1Card>, command: Uint8Array): Promise<{ answers: Uint8Array[]; data: Uint8Array; sw: number }> {
  const answers: Uint8Array[] = [];
  let answer = await adapter.exchange(command, card.exchange);
  answers.push(answer);
  const parts = [answer.subarray(0, -2)];
  for (let guard = 0; answer[answer.length - 2] === 0x61 && guard < 1000; guard++) {
    answer = await adapter.exchange(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, answer[answer.length - 1] ?? 0), card.exchange);
    answers.push(answer);
    parts.push(answer.subarray(0, -2));
  }
  return { answers, data: concat(parts), sw: ((answer[answer.length - 2] ?? 0) << 8) | (answer[answer.length - 1] ?? 0) };
}

describe('T0Adapter with a T=1 card: recorded exchanges', () => {
  interface Row {
    name: string;
    model: CardModel;
    guest: string;
    card: string[];
    answer: string;
  }
  const rows: Row[] = [
    { name: 'case 2, answer fits Le', model: { size: 16 }, guest: '00 b0 00 00 10', card: ['00 b0 00 00 10'], answer: `${str(pattern(16))} 90 00` },
    { name: 'case 2, shorter answer than Le', model: { size: 4 }, guest: '00 b0 00 00 10', card: ['00 b0 00 00 10'], answer: `${str(pattern(4))} 90 00` },
    { name: 'case 2, Le=00 means 256', model: { size: 256 }, guest: '00 b0 00 00 00', card: ['00 b0 00 00 00'], answer: `${str(pattern(256))} 90 00` },
    {
      name: 'case 4 without Le (T=0): card gets Le=00, guest gets 61 XX',
      model: { size: 5 },
      guest: '00 cb 3f ff 03 5c 01 7e',
      card: ['00 cb 3f ff 03 5c 01 7e 00'],
      answer: '61 05',
    },
    { name: 'case 4 with Le: passed as is', model: { size: 5 }, guest: '00 cb 3f ff 03 5c 01 7e 05', card: ['00 cb 3f ff 03 5c 01 7e 05'], answer: `${str(pattern(5))} 90 00` },
    { name: 'case 4, no data: just the status', model: { size: 0 }, guest: '00 cb 3f ff 03 5c 01 7e', card: ['00 cb 3f ff 03 5c 01 7e 00'], answer: '90 00' },
    { name: 'case 3 to a lenient card: Le=00 added', model: { size: 0 }, guest: '00 20 00 80 02 31 32', card: ['00 20 00 80 02 31 32 00'], answer: '90 00' },
    {
      name: 'case 3 to a strict card: 6700, again without Le',
      model: { size: 0, strictCase3: true },
      guest: '00 20 00 80 02 31 32',
      card: ['00 20 00 80 02 31 32 00', '00 20 00 80 02 31 32'],
      answer: '90 00',
    },
    { name: 'case 1 sent T=0 style (P3=00), lenient card', model: { size: 0 }, guest: '00 20 00 80 00', card: ['00 20 00 80 00'], answer: '90 00' },
    { name: 'case 1 sent T=0 style (P3=00), strict card: again as 4 bytes', model: { size: 0, strictCase1: true }, guest: '00 20 00 80 00', card: ['00 20 00 80 00', '00 20 00 80'], answer: '90 00' },
    { name: 'case 1 as 4 bytes', model: { size: 0 }, guest: '00 20 00 80', card: ['00 20 00 80'], answer: '90 00' },
    { name: 'wrong Le: 6C XX re-issued with the right Le', model: { size: 16, exactLe: true }, guest: '00 b0 00 00 20', card: ['00 b0 00 00 20', '00 b0 00 00 10'], answer: `${str(pattern(16))} 90 00` },
    {
      name: 'Le too small: 6C XX re-issued, the rest behind 61 XX',
      model: { size: 16, exactLe: true },
      guest: '00 b0 00 00 08',
      card: ['00 b0 00 00 08', '00 b0 00 00 10'],
      answer: `${str(pattern(8))} 61 08`,
    },
    {
      name: "card's own 61 XX is collected with GET RESPONSE",
      model: { size: 300, chains: true },
      guest: '00 cb 3f ff 03 5c 01 7e',
      card: ['00 cb 3f ff 03 5c 01 7e 00', '00 c0 00 00 2c'],
      answer: '61 00',
    },
    { name: 'unknown instruction: status only', model: { size: 0 }, guest: '00 ee 00 00 00', card: ['00 ee 00 00 00'], answer: '6d 00' },
    { name: 'GET RESPONSE with nothing pending goes to the card', model: { size: 0 }, guest: '00 c0 00 00 10', card: ['00 c0 00 00 10'], answer: '6d 00' },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const card = t1Card(row.model);
      const adapter = new T0Adapter({ protocol: 'T=1' });
      const answer = await adapter.exchange(hex(row.guest), card.exchange);
      expect(card.sent).toEqual(row.card);
      expect(str(answer)).toBe(row.answer);
    });
  }

  it('serves GET RESPONSE from its buffer without asking the card again', async () => {
    const card = t1Card({ size: 5 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    expect(str(await adapter.exchange(hex('00 cb 3f ff 03 5c 01 7e'), card.exchange))).toBe('61 05');
    expect(str(await adapter.exchange(hex('00 c0 00 00 05'), card.exchange))).toBe(`${str(pattern(5))} 90 00`);
    expect(card.sent).toEqual(['00 cb 3f ff 03 5c 01 7e 00']);
  });

  it('a GET RESPONSE asking for more than is left gets 6C XX (T=0), and the buffer survives', async () => {
    const card = t1Card({ size: 5 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    await adapter.exchange(hex('00 cb 3f ff 03 5c 01 7e'), card.exchange);
    expect(str(await adapter.exchange(hex('00 c0 00 00 09'), card.exchange))).toBe('6c 05');
    expect(str(await adapter.exchange(hex('00 c0 00 00 05'), card.exchange))).toBe(`${str(pattern(5))} 90 00`);
  });

  it('another command drops what was waiting for GET RESPONSE', async () => {
    const card = t1Card({ size: 5 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    await adapter.exchange(hex('00 cb 3f ff 03 5c 01 7e'), card.exchange);
    await adapter.exchange(hex('00 20 00 80 00'), card.exchange);
    expect(str(await adapter.exchange(hex('00 c0 00 00 05'), card.exchange))).toBe('6d 00');
    expect(card.sent.at(-1)).toBe('00 c0 00 00 05');
  });

  it('reset() drops the buffer too (card reset or replaced)', async () => {
    const card = t1Card({ size: 5 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    await adapter.exchange(hex('00 cb 3f ff 03 5c 01 7e'), card.exchange);
    adapter.reset();
    await adapter.exchange(hex('00 c0 00 00 05'), card.exchange);
    expect(card.sent.at(-1)).toBe('00 c0 00 00 05');
  });

  it('keeps the logical channel in its own GET RESPONSE', async () => {
    const card = t1Card({ size: 300, chains: true });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    await adapter.exchange(hex('01 cb 3f ff 03 5c 01 7e'), card.exchange);
    expect(card.sent).toEqual(['01 cb 3f ff 03 5c 01 7e 00', '01 c0 00 00 2c']);
  });

  it('does not add Le to an intermediate link of a command chain', async () => {
    const card = t1Card({ size: 0 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    expect(str(await adapter.exchange(hex('10 20 00 80 02 31 32'), card.exchange))).toBe('90 00');
    expect(card.sent).toEqual(['10 20 00 80 02 31 32']);
  });

  it('passes extended-length commands to the card unchanged', async () => {
    const card = t1Card({ size: 0 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    await adapter.exchange(hex('00 2a 9e 9a 00 00 02 aa bb 00 00'), card.exchange);
    expect(card.sent).toEqual(['00 2a 9e 9a 00 00 02 aa bb 00 00']);
  });

  it('a card that never stops answering 61 XX is cut off with 6F00', async () => {
    const adapter = new T0Adapter({ protocol: 'T=1', maxResponseBytes: 1024 });
    let calls = 0;
    const endless = (): Promise<Uint8Array> => {
      calls++;
      return Promise.resolve(withSw(pattern(256), 0x6100));
    };
    expect(str(await adapter.exchange(hex('00 cb 3f ff 03 5c 01 7e'), endless))).toBe('6f 00');
    expect(calls).toBeLessThan(10);
  });

  it('an answer of fewer than 2 bytes becomes 6F00', async () => {
    const adapter = new T0Adapter({ protocol: 'T=1' });
    expect(str(await adapter.exchange(hex('00 b0 00 00 10'), () => Promise.resolve(new Uint8Array(0))))).toBe('6f 00');
  });

  it('uses the chunk policy it is given', async () => {
    const card = t1Card({ size: 300, chains: true });
    const adapter = new T0Adapter({ protocol: 'T=1', chunkPolicy: (remaining, requested) => Math.min(remaining, requested ?? 0, 200) });
    const r = await guest(adapter, card, hex('00 cb 3f ff 03 5c 01 7e'));
    expect(r.answers.map((a) => a.length - 2)).toEqual([0, 200, 100]);
    expect(r.data).toEqual(pattern(300));
  });
});

describe('T0Adapter with the plain ISO policy: long answers for every length 0..600', () => {
  // A short APDU's answer holds at most 256 bytes: beyond that a card has to chain with 61 XX.
  for (const chains of [false, true]) {
    it(`case 4 without Le, ${chains ? 'card chains with 61 XX (0..600)' : 'card answers in one piece (0..256)'}`, async () => {
      for (let n = 0; n <= (chains ? 600 : 256); n++) {
        const card = t1Card({ size: n, chains });
        const adapter = new T0Adapter({ protocol: 'T=1', chunkPolicy: isoChunkPolicy });
        const r = await guest(adapter, card, hex('00 cb 3f ff 03 5c 01 7e'));
        expect(r.sw, `n=${n}`).toBe(0x9000);
        expect(r.data, `n=${n}`).toEqual(pattern(n));
        for (const a of r.answers) expect(a.length - 2, `n=${n}`).toBeLessThanOrEqual(256);
        // First answer: status only; then ceil(n/256) GET RESPONSEs.
        expect(r.answers.length, `n=${n}`).toBe(1 + Math.ceil(n / 256));
        expect(str(r.answers[0] ?? new Uint8Array(0)), `n=${n}`).toBe(n === 0 ? '90 00' : `61 ${(Math.min(n, 256) % 256).toString(16).padStart(2, '0')}`);
        // The guest's GET RESPONSEs never reach the card unless the card itself chained.
        expect(card.sent.filter((c) => c.startsWith('00 c0')).length, `n=${n}`).toBe(chains && n > 256 ? Math.ceil(n / 256) - 1 : 0);
      }
    });
  }

  it('case 2 with Le=00: 256 bytes at once, the rest behind 61 XX', async () => {
    for (let n = 0; n <= 600; n++) {
      const card = t1Card({ size: n, chains: true });
      const adapter = new T0Adapter({ protocol: 'T=1', chunkPolicy: isoChunkPolicy });
      const r = await guest(adapter, card, hex('00 b0 00 00 00'));
      expect(r.data, `n=${n}`).toEqual(pattern(n));
      expect(r.answers[0]?.length, `n=${n}`).toBe(Math.min(n, 256) + 2);
      expect(r.answers.length, `n=${n}`).toBe(Math.max(1, Math.ceil(n / 256)));
    }
  });
});

describe('T0Adapter with a T=0 card: everything passes unchanged', () => {
  it('commands and answers, 61 XX and 6C XX included', async () => {
    const script = new Map<string, string>([
      ['00 cb 3f ff 03 5c 01 7e', '61 10'],
      ['00 c0 00 00 10', `${str(pattern(16))} 90 00`],
      ['00 b0 00 00 20', '6c 10'],
      ['00 b0 00 00 10', `${str(pattern(16))} 90 00`],
      ['00 20 00 80 02 31 32', '63 c2'],
    ]);
    const sent: string[] = [];
    const exchange = (apdu: Uint8Array): Promise<Uint8Array> => {
      sent.push(str(apdu));
      return Promise.resolve(hex(script.get(str(apdu)) ?? '6d 00'));
    };
    const adapter = new T0Adapter({ protocol: 'T=0' });
    for (const [command, answer] of script) expect(str(await adapter.exchange(hex(command), exchange))).toBe(answer);
    expect(sent).toEqual([...script.keys()]);
  });
});

/** The CCID message QEMU's usb-ccid wraps an answer in (10-byte header) ends on a full 64-byte packet. */
const risky = (answer: Uint8Array): boolean => (answer.length + 10) % 64 === 0;
const b = (n: number): string => (n & 0xff).toString(16).padStart(2, '0');

/**
 * A T=0 card as PC/SC shows it: TPDUs in, the card's own answers out. READ BINARY (B0) wants the
 * exact Le (6C XX otherwise) and chains beyond 256 bytes with 61 XX; GET DATA (CB, data and no
 * Le, as T=0 sends case 4) answers 61 XX; GET RESPONSE hands out what is pending, exact Le too.
 */
function t0Card(size: number): { sent: string[]; exchange: (apdu: Uint8Array) => Promise<Uint8Array> } {
  const sent: string[] = [];
  const data = pattern(size);
  let pending: Uint8Array | undefined;
  const give = (bytes: Uint8Array, le: number): Uint8Array => {
    const available = Math.min(bytes.length, 256);
    if (le !== available) return hex(`6c ${b(available)}`);
    pending = bytes.length > le ? bytes.subarray(le) : undefined;
    return withSw(bytes.subarray(0, le), pending === undefined ? 0x9000 : 0x6100 | (Math.min(pending.length, 256) & 0xff));
  };
  const answer = (apdu: Uint8Array): Uint8Array => {
    const ins = apdu[1];
    if (ins === 0xc0) return pending === undefined ? hex('6a 88') : give(pending, apdu[4] || 256);
    pending = undefined;
    if (ins === 0xb0) return size === 0 ? hex('90 00') : give(data, apdu[4] || 256);
    if (ins === 0xcb) {
      if (size === 0) return hex('90 00');
      pending = data;
      return hex(`61 ${b(Math.min(size, 256))}`);
    }
    return hex('6d 00');
  };
  return {
    sent,
    exchange: (apdu) => {
      sent.push(str(apdu));
      return Promise.resolve(answer(apdu));
    },
  };
}

/** The guest's T=0 side in full: 6C XX repeats the command with Le=XX, 61 XX asks GET RESPONSE XX. */
async function t0Guest(adapter: T0Adapter, card: { exchange: (apdu: Uint8Array) => Promise<Uint8Array> }, command: Uint8Array): Promise<{ answers: Uint8Array[]; data: Uint8Array; sw: number }> {
  const answers: Uint8Array[] = [];
  const parts: Uint8Array[] = [];
  let next: Uint8Array | undefined = command;
  let sw = 0;
  for (let guard = 0; next !== undefined; guard++) {
    if (guard > 100) throw new Error('endless exchange');
    const answer = await adapter.exchange(next, card.exchange);
    answers.push(answer);
    sw = ((answer[answer.length - 2] ?? 0) << 8) | (answer[answer.length - 1] ?? 0);
    const sent: Uint8Array = next;
    next = undefined;
    if (sw >> 8 === 0x6c) next = Uint8Array.of(...sent.subarray(0, 4), sw & 0xff);
    else {
      parts.push(answer.subarray(0, -2));
      if (sw >> 8 === 0x61) next = Uint8Array.of(sent[0] ?? 0, 0xc0, 0x00, 0x00, sw & 0xff);
    }
  }
  return { answers, data: concat(parts), sw };
}

describe('T0Adapter by default: no answer travels in a CCID message of a risky length', () => {
  const check = (r: { answers: Uint8Array[]; data: Uint8Array; sw: number }, n: number, label: string): void => {
    expect(r.data, label).toEqual(pattern(n));
    expect(r.sw, label).toBe(0x9000);
    for (const a of r.answers) {
      expect(risky(a), `${label}: answer of ${a.length} bytes`).toBe(false);
      expect(a.length, label).toBeLessThanOrEqual(258);
    }
  };

  it('T=1 card, every length 0..300: Le=00, an Le that matches exactly, and no Le (T=0 case 4)', async () => {
    for (let n = 0; n <= 300; n++) {
      const forms: [string, Uint8Array][] = [
        ['Le=00', hex('00 b0 00 00 00')],
        ['case 4 without Le', hex('00 cb 3f ff 03 5c 01 7e')],
      ];
      if (n >= 1 && n <= 256) forms.push(['exact Le', hex(`00 b0 00 00 ${b(n)}`)]);
      for (const [form, command] of forms) {
        for (const chains of [false, true]) {
          if (!chains && n > 256) continue;
          const r = await guest(new T0Adapter({ protocol: 'T=1' }), t1Card({ size: n, chains }), command);
          check(r, n, `n=${n} ${form}${chains ? ', card chains' : ''}`);
        }
      }
    }
  });

  it('T=1 card, 52 bytes for Le=34: 51 bytes + 61 01, the last byte from the buffer', async () => {
    const card = t1Card({ size: 52 });
    const adapter = new T0Adapter({ protocol: 'T=1' });
    expect(str(await adapter.exchange(hex('00 b0 00 00 34'), card.exchange))).toBe(`${str(pattern(51))} 61 01`);
    expect(str(await adapter.exchange(hex('00 c0 00 00 01'), card.exchange))).toBe(`${str(pattern(52).subarray(51))} 90 00`);
    expect(card.sent).toEqual(['00 b0 00 00 34']);
  });

  it('T=0 card, every length 0..300: the data is intact, and answers change only where they had to', async () => {
    let touched = 0;
    for (let n = 0; n <= 300; n++) {
      const forms: [string, Uint8Array][] = [
        ['Le=00', hex('00 b0 00 00 00')],
        ['case 4 without Le', hex('00 cb 3f ff 03 5c 01 7e')],
      ];
      if (n >= 1 && n <= 256) forms.push(['exact Le', hex(`00 b0 00 00 ${b(n)}`)]);
      for (const [form, command] of forms) {
        const label = `n=${n} ${form}`;
        const r = await t0Guest(new T0Adapter({ protocol: 'T=0' }), t0Card(n), command);
        check(r, n, label);
        // The same exchange with the plain ISO policy is what the card itself sends.
        const raw = await t0Guest(new T0Adapter({ protocol: 'T=0', chunkPolicy: isoChunkPolicy }), t0Card(n), command);
        expect(raw.data, label).toEqual(pattern(n));
        if (raw.answers.some(risky)) touched++;
        else expect(r.answers.map(str), label).toEqual(raw.answers.map(str));
      }
    }
    // The card itself sends 52, 116, 180 and 244 data bytes in a risky message, in all 3 forms.
    expect(touched).toBe(12);
  });

  it('T=0 card, 52 bytes + 90 00: 51 bytes + 61 01, the guest\'s GET RESPONSE does not reach the card', async () => {
    const card = t0Card(52);
    const adapter = new T0Adapter({ protocol: 'T=0' });
    expect(str(await adapter.exchange(hex('00 b0 00 00 34'), card.exchange))).toBe(`${str(pattern(51))} 61 01`);
    expect(str(await adapter.exchange(hex('00 c0 00 00 01'), card.exchange))).toBe(`${str(pattern(52).subarray(51))} 90 00`);
    expect(card.sent).toEqual(['00 b0 00 00 34']);
  });

  it("T=0 card, 52 bytes + the card's own 61 XX: the rest is fetched first (same channel), then served from the buffer", async () => {
    const script = new Map<string, string>([
      ['01 c0 00 00 34', `${str(pattern(52))} 61 10`],
      ['01 c0 00 00 10', `${str(pattern(68).subarray(52))} 90 00`],
    ]);
    const sent: string[] = [];
    const exchange = (apdu: Uint8Array): Promise<Uint8Array> => {
      sent.push(str(apdu));
      return Promise.resolve(hex(script.get(str(apdu)) ?? '6d 00'));
    };
    const adapter = new T0Adapter({ protocol: 'T=0' });
    expect(str(await adapter.exchange(hex('01 c0 00 00 34'), exchange))).toBe(`${str(pattern(51))} 61 11`);
    expect(str(await adapter.exchange(hex('01 c0 00 00 11'), exchange))).toBe(`${str(pattern(68).subarray(51))} 90 00`);
    expect(sent).toEqual(['01 c0 00 00 34', '01 c0 00 00 10']);
  });

  it('T=0 card, 52 bytes with a warning: the warning ends the chain; with an error: the status alone', async () => {
    const adapter = new T0Adapter({ protocol: 'T=0' });
    const answer = (sw: string) => (): Promise<Uint8Array> => Promise.resolve(hex(`${str(pattern(52))} ${sw}`));
    expect(str(await adapter.exchange(hex('00 b0 00 00 34'), answer('62 82')))).toBe(`${str(pattern(51))} 61 01`);
    expect(str(await adapter.exchange(hex('00 c0 00 00 01'), answer('6d 00')))).toBe(`${str(pattern(52).subarray(51))} 62 82`);
    expect(str(await adapter.exchange(hex('00 b0 00 00 34'), answer('6f 00')))).toBe('6f 00');
  });

  it('another command drops a T=0 answer still waiting for GET RESPONSE', async () => {
    const card = t0Card(52);
    const adapter = new T0Adapter({ protocol: 'T=0' });
    await adapter.exchange(hex('00 b0 00 00 34'), card.exchange);
    await adapter.exchange(hex('00 20 00 80 00'), card.exchange);
    expect(str(await adapter.exchange(hex('00 c0 00 00 01'), card.exchange))).toBe('6a 88');
    expect(card.sent.at(-1)).toBe('00 c0 00 00 01');
  });

  it('with the plain ISO policy a T=0 answer of a risky length passes unchanged (nothing else does this)', async () => {
    const card = t0Card(52);
    const adapter = new T0Adapter({ protocol: 'T=0', chunkPolicy: isoChunkPolicy });
    expect(str(await adapter.exchange(hex('00 b0 00 00 34'), card.exchange))).toBe(`${str(pattern(52))} 90 00`);
  });

  it('an answer over 256 bytes (extended command) passes unchanged: it has no 61 XX form', async () => {
    const adapter = new T0Adapter({ protocol: 'T=1' });
    const long = withSw(pattern(500), 0x9000);
    expect(risky(long)).toBe(true);
    expect(await adapter.exchange(hex('00 b0 00 00 00 01 f4'), () => Promise.resolve(long))).toEqual(long);
  });
});

describe('t0GuestAtr', () => {
  interface AtrRow {
    name: string;
    card: string;
    guest: string;
  }
  const rows: AtrRow[] = [
    {
      name: 'YubiKey 5 NFC (T=1, TA1/TB1/TC1, TD1/TD2, TA3/TB3, TCK)',
      card: '3b fd 13 00 00 81 31 fe 15 80 73 c0 21 c0 57 59 75 62 69 4b 65 79 40',
      guest: '3b 1d 13 80 73 c0 21 c0 57 59 75 62 69 4b 65 79',
    },
    { name: 'YubiKey 4 (T=1)', card: '3b f8 13 00 00 81 31 fe 15 59 75 62 69 6b 65 79 34 d4', guest: '3b 18 13 59 75 62 69 6b 65 79 34' },
    {
      name: 'YubiKey NEO (T=1)',
      card: '3b fc 13 00 00 81 31 fe 15 59 75 62 69 6b 65 79 4e 45 4f 72 33 e1',
      guest: '3b 1c 13 59 75 62 69 6b 65 79 4e 45 4f 72 33',
    },
    { name: 'T=1 only, TD1 alone', card: '3b 81 01 55 54', guest: '3b 01 55' },
    {
      name: 'T=0 and T=1 offered, TC1, T=0 TC2 (WI) kept',
      card: '3b f3 18 00 02 c0 0a 01 41 42 43 00',
      guest: '3b d3 18 02 40 0a 41 42 43',
    },
    {
      name: 'TC2 that QEMU misreads as a TD: dropped',
      card: '3b f3 18 00 02 c0 fe 01 41 42 43 00',
      guest: '3b 53 18 02 41 42 43',
    },
    { name: 'RFU Fi in TA1: TA1 dropped', card: '3b 91 71 01 55 00', guest: '3b 01 55' },
    { name: 'TC1 = 00 (the default) dropped', card: '3b d1 11 00 81 01 55 00', guest: '3b 11 11 55' },
    { name: 'TB1 (deprecated) dropped, TC1 = FF kept', card: '3b e1 11 ff 81 01 55 00', guest: '3b 41 ff 55' },
    { name: 'inverse convention keeps TS', card: '3f 81 01 55 00', guest: '3f 01 55' },
    { name: 'libcacard CAC (T=0 only): unchanged', card: '3b 7a 18 00 00 73 66 74 65 20 63 64 31 34 34', guest: '3b 7a 18 00 00 73 66 74 65 20 63 64 31 34 34' },
    { name: 'libcacard NSS (TD1 = 00, T=0): unchanged', card: '3b 89 00 56 43 41 52 44 5f 4e 53 53', guest: '3b 89 00 56 43 41 52 44 5f 4e 53 53' },
    { name: 'soft PIV (no TD1): unchanged', card: '3b 0b 80 f9 a0 00 00 03 08 00 00 10 00', guest: '3b 0b 80 f9 a0 00 00 03 08 00 00 10 00' },
    { name: 'T=0 with global T=15 bytes: unchanged', card: '3b 82 80 1f 03 4a 4b 4e', guest: '3b 82 80 1f 03 4a 4b 4e' },
    {
      name: 'T=0 but padded past 40 bytes: rebuilt',
      card: `3b 0f ${'41 '.repeat(15)}${'00 '.repeat(30)}`,
      guest: `3b 0f ${'41 '.repeat(15)}`,
    },
    { name: 'no historical bytes, T=1', card: '3b 80 01 81', guest: '3b 00' },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const guestAtr = t0GuestAtr(hex(row.card));
      expect(str(guestAtr)).toBe(str(hex(row.guest)));
      expect(checkAtr(guestAtr)).toEqual({ ok: true });
      expect(guestAtr.length).toBeLessThanOrEqual(40);
      const parsed = parseAtr(guestAtr);
      const card = parseAtr(hex(row.card));
      if (!parsed.ok || !card.ok) throw new Error('unparseable');
      expect(parsed.atr.protocols).toEqual([0]);
      // A rebuilt ATR names T=0 only and so has no TCK; one passed unchanged keeps its own.
      if (row.guest !== row.card) expect(parsed.atr.tck).toBeUndefined();
      expect(parsed.atr.historical).toEqual(card.atr.historical);
    });
  }

  for (const [name, atr] of [
    ['empty', ''],
    ['bad TS', '3a 00'],
    ['truncated interface bytes', '3b f5 18'],
    ['missing historical bytes', '3b 05 41 42'],
  ] as const) {
    it(`refuses an unreadable ATR: ${name}`, () => {
      expect(() => t0GuestAtr(hex(atr))).toThrow(T0AtrError);
      expect(() => t0GuestAtr(hex(atr))).toThrow(/cannot be shown to the VM as a T=0 card/);
    });
  }

  it('every ATR it accepts comes out T=0-only, QEMU-valid and with the same historical bytes (random structures)', () => {
    let seed = 0x5eed;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 3000; i++) {
      const bytes = [rand(2) ? 0x3b : 0x3f];
      const k = rand(16);
      let y = rand(16);
      bytes.push((y << 4) | k);
      for (let group = 0; y !== 0 && group < 4; group++) {
        if (y & 1) bytes.push(rand(256));
        if (y & 2) bytes.push(rand(256));
        if (y & 4) bytes.push(rand(256));
        if (y & 8) {
          const next = group === 3 ? 0 : rand(16);
          const t = [0, 1, 1, 15][rand(4)] ?? 0;
          bytes.push((next << 4) | t);
          y = next;
        } else y = 0;
      }
      for (let j = 0; j < k; j++) bytes.push(rand(256));
      if (rand(2)) bytes.push(rand(256));
      const atr = Uint8Array.from(bytes);
      const guestAtr = t0GuestAtr(atr);
      expect(checkAtr(guestAtr), str(atr)).toEqual({ ok: true });
      const parsed = parseAtr(guestAtr);
      const card = parseAtr(atr);
      if (!parsed.ok || !card.ok) throw new Error(`unparseable: ${str(atr)}`);
      expect(parsed.atr.protocols, str(atr)).toEqual([0]);
      expect(parsed.atr.historical, str(atr)).toEqual(card.atr.historical);
    }
  });
});
