import { describe, expect, it } from 'vitest';
import { parseCommandApdu, type CommandApdu } from '../../vsc/iso7816/apdu.js';
import { CommandChainAssembler } from '../../vsc/iso7816/chaining.js';
import { IsoCommandProcessor, type AppletResponse } from '../../vsc/iso7816/command-processor.js';
import {
  ResponseChainer,
  avoidingRiskyCcidLengths,
  ccidMessageBytes,
  ccidSafeChunkPolicy,
  defaultChunkPolicy,
  isRiskyCcidLength,
  isoChunkPolicy,
  type ResponseChunkPolicy,
} from '../../vsc/iso7816/response-chaining.js';
import { SW, statusWordOf } from '../../vsc/iso7816/status-words.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const command = (s: string): CommandApdu => {
  const parsed = parseCommandApdu(hex(s));
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.apdu;
};
const pattern = (n: number): Uint8Array => new Uint8Array(n).map((_, i) => (i * 7 + 3) & 0xff);

describe('CommandChainAssembler', () => {
  it('passes an unchained command through', () => {
    const chain = new CommandChainAssembler();
    const step = chain.accept(command('00 87 07 9a 02 aa bb'), false);
    expect(step.kind).toBe('complete');
    if (step.kind === 'complete') expect(toHex(step.apdu.data)).toBe('aabb');
  });

  it('assembles links into one command with the chaining bit cleared and the last Le', () => {
    const chain = new CommandChainAssembler();
    expect(chain.accept(command('10 87 07 9a 02 01 02'), true).kind).toBe('continue');
    expect(chain.inProgress).toBe(true);
    expect(chain.accept(command('10 87 07 9a 01 03'), true).kind).toBe('continue');
    const step = chain.accept(command('00 87 07 9a 02 04 05 00'), false);
    expect(step.kind).toBe('complete');
    if (step.kind !== 'complete') return;
    expect(toHex(step.apdu.data)).toBe('0102030405');
    expect(step.apdu.cla).toBe(0x00);
    expect(step.apdu.ne).toBe(256);
    expect(chain.inProgress).toBe(false);
  });

  it('keeps its own copy of each link', () => {
    const chain = new CommandChainAssembler();
    const first = hex('10 87 07 9a 02 01 02');
    const parsed = parseCommandApdu(first);
    if (!parsed.ok) throw new Error('parse');
    chain.accept(parsed.apdu, true);
    first.fill(0xee);
    const step = chain.accept(command('00 87 07 9a 01 03'), false);
    expect(step.kind === 'complete' && toHex(step.apdu.data)).toBe('010203');
  });

  it('drops a chain when a different command arrives', () => {
    const chain = new CommandChainAssembler();
    chain.accept(command('10 87 07 9a 02 01 02'), true);
    const step = chain.accept(command('00 cb 3f ff 03 5c 01 7e'), false);
    expect(step.kind === 'complete' && toHex(step.apdu.data)).toBe('5c017e');
    expect(chain.inProgress).toBe(false);
    // A different chain replaces the old one: P2 differs.
    chain.accept(command('10 87 07 9a 01 01'), true);
    chain.accept(command('10 87 07 9c 01 02'), true);
    const last = chain.accept(command('00 87 07 9c 01 03'), false);
    expect(last.kind === 'complete' && toHex(last.apdu.data)).toBe('0203');
  });

  it('refuses a chain beyond its bound with 6700 and forgets it', () => {
    const chain = new CommandChainAssembler(300);
    expect(chain.accept(command(`10 87 07 9a ff ${'00 '.repeat(255)}`), true).kind).toBe('continue');
    const step = chain.accept(command(`10 87 07 9a 2e ${'00 '.repeat(46)}`), true);
    expect(step).toMatchObject({ kind: 'error', sw: SW.WRONG_LENGTH });
    expect(chain.inProgress).toBe(false);
  });
});

describe('ResponseChainer', () => {
  const getResponse = (le: number): CommandApdu => command(`00 c0 00 00 ${le.toString(16).padStart(2, '0')}`);

  it('answers short data at once when the host asked for enough', () => {
    const chainer = new ResponseChainer();
    expect(toHex(chainer.respond(hex('0102'), SW.OK, 256))).toBe('01029000');
    expect(chainer.pending).toBe(0);
  });

  it('buffers everything when the command had no Le (T=0 case 4)', () => {
    const chainer = new ResponseChainer();
    expect(toHex(chainer.respond(hex('010203'), SW.OK, undefined))).toBe('6103');
    expect(toHex(chainer.getResponse(getResponse(3)))).toBe('0102039000');
  });

  it('gives Ne bytes then 61 XX when the host asked for less than there is', () => {
    const chainer = new ResponseChainer();
    expect(toHex(chainer.respond(hex('0102030405'), SW.OK, 2))).toBe('01026103');
    expect(toHex(chainer.getResponse(getResponse(3)))).toBe('0304059000');
  });

  it('drops data from error answers', () => {
    const chainer = new ResponseChainer();
    expect(toHex(chainer.respond(hex('0102'), SW.FILE_NOT_FOUND, undefined))).toBe('6a82');
  });

  it('answers GET RESPONSE with nothing buffered with 6A88, as libcacard', () => {
    expect(toHex(new ResponseChainer().getResponse(getResponse(0)))).toBe('6a88');
  });

  it('answers 6C XX to a GET RESPONSE asking for more than is left, and keeps the data', () => {
    const chainer = new ResponseChainer();
    chainer.respond(hex('010203'), SW.OK, undefined);
    expect(toHex(chainer.getResponse(getResponse(0x10)))).toBe('6c03');
    expect(chainer.pending).toBe(3);
    expect(toHex(chainer.getResponse(getResponse(0)))).toBe('0102039000');
  });

  it('refuses GET RESPONSE with P1-P2 other than 0000 and keeps the data', () => {
    const chainer = new ResponseChainer();
    chainer.respond(hex('0102'), SW.OK, undefined);
    expect(toHex(chainer.getResponse(command('00 c0 01 00 02')))).toBe('6a86');
    expect(toHex(chainer.getResponse(command('00 c0 00 00 02')))).toBe('01029000');
  });

  it('ends with the status the applet gave', () => {
    const chainer = new ResponseChainer();
    chainer.respond(pattern(300), 0x6282, undefined);
    expect(statusWordOf(chainer.getResponse(getResponse(0)))).toBe(0x6100 | 44);
    expect(statusWordOf(chainer.getResponse(getResponse(44)))).toBe(0x6282);
  });

  it('clamps a policy that misbehaves', () => {
    const greedy: ResponseChunkPolicy = () => 10_000;
    const stingy: ResponseChunkPolicy = () => 0;
    const a = new ResponseChainer(greedy);
    expect(a.respond(pattern(600), SW.OK, undefined).length).toBe(2);
    expect(a.getResponse(getResponse(0)).length).toBe(258);
    const b = new ResponseChainer(stingy);
    b.respond(pattern(5), SW.OK, undefined);
    // GET RESPONSE always makes progress.
    expect(b.getResponse(getResponse(5)).length).toBe(3);
  });
});

/** A handler that answers INS 01 with `size` pattern bytes, where size is P1P2. */
const sizedAnswers = {
  async handle(apdu: CommandApdu): Promise<AppletResponse> {
    if (apdu.ins === 0x01) return { sw: SW.OK, data: pattern((apdu.p1 << 8) | apdu.p2) };
    if (apdu.ins === 0x02) return { sw: SW.OK, data: apdu.data.slice() };
    if (apdu.ins === 0x0e) throw new Error('applet bug');
    return { sw: SW.INS_NOT_SUPPORTED };
  },
};

/** Collects an answer the way a T=0 host does and checks every response's size on the way. */
async function collect(processor: IsoCommandProcessor, first: Uint8Array, sizes: number[]): Promise<{ data: Uint8Array; sw: number }> {
  let response = await processor.process(first);
  const parts: number[] = [];
  for (let guard = 0; ; guard += 1) {
    sizes.push(response.length);
    const sw = statusWordOf(response) ?? 0;
    parts.push(...response.subarray(0, response.length - 2));
    if (sw >> 8 !== 0x61) return { data: Uint8Array.from(parts), sw };
    if (guard > 100) throw new Error('endless chain');
    response = await processor.process(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, sw & 0xff));
  }
}

describe('IsoCommandProcessor response chaining', () => {
  it('reassembles every answer length 0..600 exactly, never more than 256+2 bytes per response', async () => {
    for (const withLe of [false, true]) {
      const processor = new IsoCommandProcessor(sizedAnswers);
      for (let n = 0; n <= 600; n += 1) {
        const sizes: number[] = [];
        const apdu = Uint8Array.of(0x00, 0x01, n >> 8, n & 0xff, ...(withLe ? [0x00] : []));
        const { data, sw } = await collect(processor, apdu, sizes);
        expect(sw).toBe(SW.OK);
        expect(data).toEqual(pattern(n));
        expect(Math.max(...sizes)).toBeLessThanOrEqual(258);
      }
    }
  });

  it('lets a policy shape every chunk in one place', async () => {
    // Example: keep (data + SW + 10-byte CCID header) off multiples of 64.
    const avoid64: ResponseChunkPolicy = (remaining, requested) => {
      const n = isoChunkPolicy(remaining, requested);
      return n > 1 && (n + 2 + 10) % 64 === 0 ? n - 1 : n;
    };
    const processor = new IsoCommandProcessor(sizedAnswers, { chunkPolicy: avoid64 });
    for (let n = 0; n <= 600; n += 1) {
      const sizes: number[] = [];
      const { data } = await collect(processor, Uint8Array.of(0x00, 0x01, n >> 8, n & 0xff), sizes);
      expect(data).toEqual(pattern(n));
      for (const size of sizes) expect((size + 10) % 64).not.toBe(0);
    }
  });

  it('discards the buffer when another command comes', async () => {
    const processor = new IsoCommandProcessor(sizedAnswers);
    expect(toHex(await processor.process(hex('00 01 01 00')))).toBe('6100');
    expect(toHex(await processor.process(hex('00 01 00 02 00')))).toBe(toHex(pattern(2)) + '9000');
    expect(toHex(await processor.process(hex('00 c0 00 00 00')))).toBe('6a88');
  });
});

describe('IsoCommandProcessor front end', () => {
  const table: ReadonlyArray<readonly [string, string, string]> = [
    ['too short', '00 01', '6700'],
    ['extended length', '00 02 00 00 00 00 02 aa bb', '6700'],
    ['secure messaging CLA 0C', '0c 01 00 00', '6882'],
    ['secure messaging CLA 04', '04 01 00 00', '6882'],
    ['logical channel 1', '01 01 00 00', '6881'],
    ['further interindustry channel 4', '40 01 00 00', '6881'],
    ['proprietary class', '80 01 00 00', '6e00'],
    ['invalid class FF', 'ff 01 00 00', '6e00'],
    ['reserved class 20', '20 01 00 00', '6e00'],
    ['unknown instruction', '00 7f 00 00', '6d00'],
    ['applet throws', '00 0e 00 00', '6f00'],
    ['chain link', '10 02 00 00 01 aa', '9000'],
  ];
  it.each(table)('%s: %s -> %s', async (_name, input, expected) => {
    const processor = new IsoCommandProcessor(sizedAnswers);
    expect(toHex(await processor.process(hex(input)))).toBe(expected);
  });

  it('assembles a command chain before the applet sees it', async () => {
    const processor = new IsoCommandProcessor(sizedAnswers);
    const body = pattern(266);
    expect(toHex(await processor.process(Uint8Array.of(0x10, 0x02, 0x00, 0x00, 0xff, ...body.subarray(0, 255))))).toBe('9000');
    const last = await processor.process(Uint8Array.of(0x00, 0x02, 0x00, 0x00, 11, ...body.subarray(255)));
    expect(toHex(last)).toBe('6100');
    const sizes: number[] = [];
    const { data } = await collect(processor, Uint8Array.of(0x00, 0xc0, 0x00, 0x00, 0x00), sizes);
    expect(data).toEqual(body);
  });

  it('forgets a half-received chain and unread data on reset', async () => {
    const processor = new IsoCommandProcessor(sizedAnswers);
    await processor.process(hex('00 01 01 00'));
    processor.reset();
    expect(toHex(await processor.process(hex('00 c0 00 00 00')))).toBe('6a88');
    await processor.process(hex('10 02 00 00 01 aa'));
    processor.reset();
    expect(toHex(await processor.process(hex('00 02 00 00 01 bb 00')))).toBe('bb9000');
  });

  it('a malformed command also drops buffered data', async () => {
    const processor = new IsoCommandProcessor(sizedAnswers);
    await processor.process(hex('00 01 01 00'));
    expect(toHex(await processor.process(hex('00')))).toBe('6700');
    expect(toHex(await processor.process(hex('00 c0 00 00 00')))).toBe('6a88');
  });
});

describe('CCID-safe chunks (QEMU usb-ccid behind xHCI)', () => {
  const getResponse = (le: number): CommandApdu => command(`00 c0 00 00 ${(le & 0xff).toString(16).padStart(2, '0')}`);
  /** The CCID message of a response: 10-byte header + data + SW1 SW2. */
  const riskyResponse = (response: Uint8Array): boolean => (10 + response.length) % 64 === 0;

  it('risky answers are those whose CCID message is a multiple of 64 bytes', () => {
    expect(ccidMessageBytes(0)).toBe(12);
    expect(ccidMessageBytes(52)).toBe(64);
    const risky = Array.from({ length: 301 }, (_, n) => n).filter(isRiskyCcidLength);
    expect(risky).toEqual([52, 116, 180, 244]);
  });

  it('is what ResponseChainer uses unless told otherwise', () => {
    expect(defaultChunkPolicy).toBe(ccidSafeChunkPolicy);
    expect(toHex(new ResponseChainer().respond(pattern(52), SW.OK, 52))).toBe(`${toHex(pattern(51))}6101`);
    expect(toHex(new ResponseChainer(isoChunkPolicy).respond(pattern(52), SW.OK, 52))).toBe(`${toHex(pattern(52))}9000`);
  });

  it('every answer length 0..300, any Le, any final status: reassembled exactly, no risky or oversized response', () => {
    for (let n = 0; n <= 300; n++) {
      const les: (number | undefined)[] = [undefined, 256, 255, 128, 100, 53, 52, 51, 1];
      if (n >= 1 && n <= 256) les.push(n);
      for (const ne of les) {
        for (const sw of [SW.OK, SW.END_OF_DATA, 0x6300]) {
          const label = `n=${n} ne=${ne} sw=${sw.toString(16)}`;
          const chainer = new ResponseChainer();
          const responses = [chainer.respond(pattern(n), sw, ne)];
          // The host's T=0 side: 61 XX -> GET RESPONSE XX; 6C XX -> the same again with XX.
          for (let guard = 0; ; guard++) {
            expect(guard, label).toBeLessThan(20);
            const last = responses.at(-1) ?? new Uint8Array(0);
            const lastSw = statusWordOf(last) ?? 0;
            if (lastSw >> 8 === 0x61 || lastSw >> 8 === 0x6c) responses.push(chainer.getResponse(getResponse(lastSw & 0xff)));
            else break;
          }
          const data = responses.filter((r) => (statusWordOf(r) ?? 0) >> 8 !== 0x6c).flatMap((r) => [...r.subarray(0, r.length - 2)]);
          expect(Uint8Array.from(data), label).toEqual(pattern(n));
          expect(statusWordOf(responses.at(-1) ?? new Uint8Array(0)), label).toBe(sw);
          for (const r of responses) {
            expect(riskyResponse(r), `${label}: response of ${r.length} bytes`).toBe(false);
            expect(r.length, label).toBeLessThanOrEqual(258);
          }
          // Every piece the host asked for with an Le fits it.
          if (ne !== undefined) expect(responses[0]!.length - 2, label).toBeLessThanOrEqual(ne);
        }
      }
    }
  });

  it('the plain ISO policy does produce those responses (what the tests above guard against)', () => {
    const risky = [52, 116, 180, 244].filter((n) => riskyResponse(new ResponseChainer(isoChunkPolicy).respond(pattern(n), SW.OK, n)));
    expect(risky).toEqual([52, 116, 180, 244]);
  });

  it('judges the chunk the chainer will send, not what the base policy asked for', () => {
    const greedy = avoidingRiskyCcidLengths(() => 10_000);
    expect(greedy(52, 52)).toBe(51);
    expect(greedy(300, 244)).toBe(243);
    expect(greedy(300, undefined)).toBe(0);
    expect(greedy(52, 53)).toBe(51);
    expect(greedy(53, 53)).toBe(53);
    const odd = avoidingRiskyCcidLengths(() => Number.NaN);
    expect(odd(52, 52)).toBe(0);
  });

  it('IsoCommandProcessor given the policy: every length 0..600 with and without Le', async () => {
    for (const withLe of [false, true]) {
      const processor = new IsoCommandProcessor(sizedAnswers, { chunkPolicy: ccidSafeChunkPolicy });
      for (let n = 0; n <= 600; n += 1) {
        const sizes: number[] = [];
        const { data, sw } = await collect(processor, Uint8Array.of(0x00, 0x01, n >> 8, n & 0xff, ...(withLe ? [0x00] : [])), sizes);
        expect(sw).toBe(SW.OK);
        expect(data, `n=${n}`).toEqual(pattern(n));
        for (const size of sizes) expect((10 + size) % 64, `n=${n}`).not.toBe(0);
        expect(Math.max(...sizes)).toBeLessThanOrEqual(258);
      }
    }
  });
});

