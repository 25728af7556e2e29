// Hostile SPICE peers: the link stage, the channel framing, the smartcard channel's VSC and the
// reader state machine fed seeded random and mutated bytes, in-process (100 000+ inputs), then a
// few hundred real sockets through SpiceSession and SpiceCardLink against a misbehaving server.
// Nothing may escape but the documented errors; every session must end; memory must stay flat.
// Reproduce a failure with HOSTILE_SEED=<seed printed in the failure>.
import { concatBytes } from '../../spice/bytes.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChannelType } from '../../spice/constants.js';
import { ChannelCore } from '../../spice/channel-core.js';
import { SpiceError } from '../../spice/errors.js';
import { FrameError } from '../../spice/frame-parser.js';
import { LinkHandshake } from '../../spice/link-handshake.js';
import { SpiceSession } from '../../spice/session.js';
import { createTransport } from '../../spice/transport.js';
import { decodeVscMessage, encodeVscMessage } from '../../vsc/codec.js';
import { ReaderLink } from '../../vsc/reader-link.js';
import type { Card } from '../../vsc/card.js';
import { createDemoCard } from '../../vsc/soft-card/demo-card.js';
import { SpiceCardLink } from '../../src/bridge/spice-card-link.js';
import { ScriptedCard, SCRIPTED_ATR } from '../helpers/scripted-card.js';
import {
  Rng,

  hostileChannelBytes,
  linkReplyBytes,
  mutate,
  seedFromEnv,
  splitRandomly,
  startHostileSpiceServer,
  validMainFrames,
  validSmartcardFrames,
  validVscMessages,
  type ChannelPlan,
  type HostileServer,
  type LinkBehaviour,
} from '../helpers/hostile-spice-server.js';

const SEED = seedFromEnv('HOSTILE_SEED');
const gc = (globalThis as { gc?: () => void }).gc;

function heapMiB(): number {
  gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

/** Runs `body`; on failure the seed is in the message so the run can be repeated. */
function withSeed<T>(label: string, body: () => T): T {
  try {
    return body();
  } catch (e) {
    const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
    throw new Error(`${label} failed with HOSTILE_SEED=${SEED}: ${detail}`);
  }
}

function expectClearError(error: unknown, context: string): void {
  if (!(error instanceof SpiceError)) {
    throw new Error(`${context}: expected a SpiceError, got ${error instanceof Error ? (error.stack ?? error.message) : String(error)} (HOSTILE_SEED=${SEED})`);
  }
  if (error.message.trim().length < 10) throw new Error(`${context}: SpiceError with an empty message (HOSTILE_SEED=${SEED})`);
}

const cheapEncrypt = (): Uint8Array => new Uint8Array(128);
let inputs = 0;
let warmHeap = 0;

describe(`hostile SPICE peers (seed ${SEED})`, () => {
  beforeAll(() => {
    console.log(`hostile-spice: HOSTILE_SEED=${SEED}${gc ? '' : ' (no --expose-gc: generous memory bound)'}`);
  });

  it('LinkHandshake: random, mutated and split link replies end in established, pending or one SpiceError', () => {
    const rng = new Rng(SEED ^ 0x1111);
    const reply = linkReplyBytes();
    const ok = Uint8Array.of(0, 0, 0, 0);
    withSeed('LinkHandshake', () => {
      for (let i = 0; i < 30_000; i++) {
        const valid = concatBytes([reply, ok, rng.bytes(rng.int(3) === 0 ? rng.int(40) : 0)]);
        const input = rng.int(10) === 0 ? rng.bytes(rng.int(600)) : mutate(rng, valid);
        const hs = new LinkHandshake({
          connectionId: 0,
          channelType: rng.pick([ChannelType.MAIN, ChannelType.SMARTCARD]),
          channelId: 0,
          channelCaps: [],
          password: 'pw',
          // The real RSA-OAEP on a few thousand inputs (mutated keys must fail cleanly), a stub otherwise.
          ...(i % 10 === 0 ? {} : { encrypt: cheapEncrypt }),
        });
        hs.start();
        let ended = false;
        for (const chunk of splitRandomly(rng, input)) {
          const p = hs.receive(chunk);
          if (p.kind === 'failed') {
            expectClearError(p.error, `link input ${i}`);
            ended = true;
            break;
          }
          if (p.kind === 'established') {
            ended = true;
            break;
          }
        }
        if (!ended) expectClearError(hs.endOfStream(), `link EOF ${i}`);
        inputs++;
      }
    });
  }, 60_000);

  it('ChannelCore: hostile mini- and full-header streams give events or a FrameError, never anything else', () => {
    const rng = new Rng(SEED ^ 0x2222);
    withSeed('ChannelCore', () => {
      for (let i = 0; i < 40_000; i++) {
        if (i === 10_000) warmHeap = heapMiB();
        let sent = 0;
        const core = new ChannelCore({ miniHeader: rng.int(8) !== 0, send: (b) => (sent += b.byteLength) });
        const valid = rng.int(2) === 0 ? validMainFrames(rng) : validSmartcardFrames(rng);
        const input = hostileChannelBytes(rng, valid, 100);
        try {
          for (const chunk of splitRandomly(rng, input)) {
            for (const ev of core.receive(chunk)) {
              if (ev.kind === 'message' && ev.body.byteLength > input.byteLength) throw new Error(`message ${ev.type} bigger than the input`);
              if (ev.kind === 'ignored' && ev.why.length < 6) throw new Error(`ignored ${ev.type} without a reason`);
            }
          }
        } catch (e) {
          if (!(e instanceof FrameError) || e.message.length < 10) throw e;
        }
        // Answers (PONGs, ACKs) are bounded by what came in.
        if (sent > input.byteLength * 2 + 64) throw new Error(`${sent} bytes answered to ${input.byteLength} bytes of input`);
        inputs++;
      }
    });
  }, 60_000);

  it('decodeVscMessage + ReaderLink (spice mode): mutated VSC never throws, the link state stays legal', () => {
    const rng = new Rng(SEED ^ 0x3333);
    withSeed('VSC', () => {
      for (let i = 0; i < 40_000; i++) {
        const link = new ReaderLink({ mode: 'spice', replyTimeoutMs: 1000, now: () => 0 });
        link.start();
        if (rng.int(2) === 0) link.cardInserted(SCRIPTED_ATR);
        for (const msg of validVscMessages(rng)) {
          const bytes = encodeVscMessage(msg, 'le');
          const input = rng.int(8) === 0 ? rng.bytes(rng.int(64)) : rng.int(3) === 0 ? bytes : mutate(rng, bytes);
          const decoded = decodeVscMessage(input, 'le');
          inputs++;
          if (!decoded.ok) {
            if (decoded.error.text.length < 6) throw new Error(`decode error ${decoded.error.kind} without a clear text`);
            continue;
          }
          for (const action of link.receive(decoded.message)) {
            if (action.kind === 'deliver-apdu') link.apduAnswered(action.seq, Uint8Array.of(0x90, 0x00));
            if (action.kind === 'error' && action.text.length < 6) throw new Error(`error ${action.code} without a clear text`);
          }
          if (link.terminal) break;
        }
        link.tick(10_000);
      }
    });
  }, 60_000);

  describe('over real sockets', () => {
    let server: HostileServer;
    let demoCard: Card;
    let mainRng: Rng;
    // What the next connection of each type does; set by each case before it connects.
    let nextMain: ChannelPlan = { link: 'ok', data: [], end: 'hold' };
    let nextCard: ChannelPlan = { link: 'ok', data: [], end: 'eof' };

    beforeAll(async () => {
      demoCard = await createDemoCard();
      mainRng = new Rng(SEED ^ 0x4444);
      server = await startHostileSpiceServer(SEED ^ 0x5555, (type) => (type === ChannelType.MAIN ? nextMain : nextCard));
    });
    afterAll(async () => {
      await server?.close();
    });

    const LINK_FAULTS: LinkBehaviour[] = ['garbage-reply', 'short-reply', 'huge-size', 'mutated-reply', 'bad-result', 'silent'];
    const transport = (): ReturnType<typeof createTransport> => createTransport({ host: '127.0.0.1', port: server.port, tls: {}, connectTimeoutMs: 2000 });

    async function bounded<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no end within ${ms} ms (HOSTILE_SEED=${SEED})`)), ms)))]);
      } finally {
        clearTimeout(timer);
      }
    }

    it('the main channel: 200 hostile servers, each session ends with at most one clear SpiceError', async () => {
      const rng = mainRng;
      for (let i = 0; i < 200; i++) {
        const faultyLink = rng.int(3) === 0;
        nextMain = {
          link: faultyLink ? rng.pick(LINK_FAULTS) : 'ok',
          data: splitRandomly(rng, hostileChannelBytes(rng, validMainFrames(rng))),
          end: rng.pick(['eof', 'eof', 'destroy']),
        };
        const session = new SpiceSession({ transport: transport(), password: 'pw', initTimeoutMs: 700, linkTimeoutMs: 700 });
        const closedErrors: (SpiceError | undefined)[] = [];
        const closed = new Promise<void>((resolve) => session.once('closed', (e) => (closedErrors.push(e), resolve())));
        try {
          await bounded(`main case ${i} connect`, session.connect(), 5000);
        } catch (e) {
          expectClearError(e, `main case ${i} (${nextMain.link})`);
        }
        // The server always ends the stream: the session must notice and close by itself.
        await bounded(`main case ${i} closed`, closed, 5000);
        for (const e of closedErrors) if (e !== undefined) expectClearError(e, `main case ${i} close`);
        expect(session.state).toBe('closed');
        inputs++;
      }
    }, 120_000);

    it('the smartcard channel: 200 hostile servers through SpiceCardLink, each link ends', async () => {
      const rng = new Rng(SEED ^ 0x6666);
      for (let i = 0; i < 200; i++) {
        nextMain = { link: 'ok', data: validMainFrames(rng).slice(1, 3), end: 'hold' };
        const faultyLink = rng.int(4) === 0;
        nextCard = {
          link: faultyLink ? rng.pick(LINK_FAULTS) : 'ok',
          data: splitRandomly(rng, hostileChannelBytes(rng, validSmartcardFrames(rng))),
          end: rng.pick(['eof', 'eof', 'destroy']),
        };
        const session = new SpiceSession({ transport: transport(), password: 'pw', initTimeoutMs: 2000, linkTimeoutMs: 700 });
        await bounded(`card case ${i} session`, session.connect(), 5000);
        const card: Card = i % 10 === 0 ? demoCard : new ScriptedCard();
        let link: SpiceCardLink | undefined;
        try {
          link = await bounded(`card case ${i} open`, SpiceCardLink.open(session, card, { replyTimeoutMs: 500 }), 5000);
        } catch (e) {
          expectClearError(e, `card case ${i} (${nextCard.link})`);
        }
        if (link !== undefined) {
          const l = link;
          const problems: string[] = [];
          l.forwarder.on('problem', (_code, text) => problems.push(text));
          const error = await bounded(
            `card case ${i} closed`,
            new Promise<SpiceError | undefined>((resolve) => (l.isOpen ? l.once('closed', resolve) : resolve(undefined))),
            5000,
          );
          if (error !== undefined) expectClearError(error, `card case ${i} close`);
          for (const p of problems) expect(p.length).toBeGreaterThan(5);
        }
        await bounded(`card case ${i} session close`, session.close(), 8000);
        expect(session.state).toBe('closed');
        inputs++;
      }
    }, 120_000);
  });

  it('memory stays flat and the input count is reached', () => {
    const end = heapMiB();
    console.log(`hostile-spice: ${inputs} inputs, heap ${warmHeap.toFixed(1)} MiB after warm-up, ${end.toFixed(1)} MiB at the end`);
    expect(inputs).toBeGreaterThanOrEqual(100_000);
    // With gc exposed the heap must come back close to the warm-up level; without, allow garbage.
    expect(end - warmHeap, `heap grew (HOSTILE_SEED=${SEED})`).toBeLessThan(gc ? 32 : 128);
  });
});
