// Hostile QEMU passthru sockets: the big-endian VSC stream parser and the reader state machine in
// passthru mode fed 100 000+ seeded random and mutated streams in-process, then a few hundred real
// sockets through PassthruLink against a misbehaving ccid-card-passthru stand-in.
// Reproduce a failure with HOSTILE_SEED=<seed printed in the failure>.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiceError } from '../../spice/errors.js';
import { VscStreamParser, encodeVscMessage } from '../../vsc/codec.js';
import { VSC_LIMITS } from '../../vsc/constants.js';
import { ReaderLink, type ReaderLinkAction } from '../../vsc/reader-link.js';
import type { Card } from '../../vsc/card.js';
import { createDemoCard } from '../../vsc/soft-card/demo-card.js';
import { PassthruLink } from '../../src/bridge/passthru-link.js';
import { ScriptedCard, SCRIPTED_ATR } from '../helpers/scripted-card.js';
import { Rng, seedFromEnv, splitRandomly } from '../helpers/hostile-spice-server.js';
import { hostilePassthruBytes, startHostilePassthruServer, type HostilePassthruServer, type PassthruPlan } from '../helpers/hostile-passthru-server.js';

const SEED = seedFromEnv('HOSTILE_SEED');
const gc = (globalThis as { gc?: () => void }).gc;

function heapMiB(): number {
  gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

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

/** Everything the link asks to send must be encodable and small enough for QEMU's chardev buffer. */
function checkActions(actions: readonly ReaderLinkAction[], link: ReaderLink, answer: boolean): void {
  for (const a of actions) {
    if (a.kind === 'send') {
      const size = encodeVscMessage(a.message, 'be').byteLength;
      if (size > VSC_LIMITS.maxSendMessageSize) throw new Error(`the link asked to send ${size} bytes`);
    } else if ((a.kind === 'error' || a.kind === 'warning') && a.text.length < 6) {
      throw new Error(`${a.kind} ${a.code} without a clear text`);
    } else if (a.kind === 'deliver-apdu' && answer) {
      checkActions(link.apduAnswered(a.seq, Uint8Array.of(0x90, 0x00)), link, answer);
    }
  }
}

let inputs = 0;
let warmHeap = 0;

describe(`hostile QEMU passthru sockets (seed ${SEED})`, () => {
  beforeAll(() => {
    console.log(`hostile-passthru: HOSTILE_SEED=${SEED}${gc ? '' : ' (no --expose-gc: generous memory bound)'}`);
  });

  it("VscStreamParser('be') + ReaderLink({mode:'passthru'}): 100 000 hostile streams, results or errors, never a throw", () => {
    const rng = new Rng(SEED ^ 0x7777);
    withSeed('passthru parser', () => {
      for (let i = 0; i < 100_000; i++) {
        if (i === 10_000) warmHeap = heapMiB();
        const parser = new VscStreamParser('be');
        const link = new ReaderLink({ mode: 'passthru', replyTimeoutMs: 1000, now: () => 0 });
        const answer = rng.int(4) !== 0;
        checkActions(link.start(), link, answer);
        if (rng.int(2) === 0) checkActions(link.cardInserted(SCRIPTED_ATR), link, answer);
        const input = hostilePassthruBytes(rng, 100);
        for (const chunk of splitRandomly(rng, input)) {
          for (const result of parser.push(chunk)) {
            if (!result.ok) {
              if (result.error.text.length < 6) throw new Error(`decode error ${result.error.kind} without a clear text`);
              continue;
            }
            if (!link.terminal) checkActions(link.receive(result.message), link, answer);
          }
          // Never more buffered than one maximal message.
          if (parser.bufferedBytes > VSC_LIMITS.maxInboundPayloadSize + 12) throw new Error(`parser holds ${parser.bufferedBytes} bytes`);
          if (parser.dead) break;
        }
        checkActions(link.tick(10_000), link, answer);
        checkActions(link.stop(), link, answer);
        inputs++;
      }
    });
  }, 60_000);

  describe('over real sockets', () => {
    let server: HostilePassthruServer;
    let demoCard: Card;
    let next: PassthruPlan = { waitForClient: true, data: [], end: 'eof' };

    beforeAll(async () => {
      demoCard = await createDemoCard();
      server = await startHostilePassthruServer(() => next);
    });
    afterAll(async () => {
      await server?.close();
    });

    async function bounded<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what()}: no end within ${ms} ms (HOSTILE_SEED=${SEED})`)), ms)))]);
      } finally {
        clearTimeout(timer);
      }
    }

    it('PassthruLink: 300 hostile sockets, each link ends with at most one clear SpiceError', async () => {
      const rng = new Rng(SEED ^ 0x8888);
      for (let i = 0; i < 300; i++) {
        const end = rng.int(10) === 0 ? 'hold' : rng.pick(['eof', 'eof', 'destroy'] as const);
        next = { waitForClient: rng.int(4) !== 0, data: splitRandomly(rng, hostilePassthruBytes(rng)), end };
        const card: Card = i % 10 === 0 ? demoCard : new ScriptedCard();
        const link = await bounded(PassthruLink.open({ host: '127.0.0.1', port: server.port }, card, { replyTimeoutMs: 400 }), 5000, () => `passthru case ${i} open`);
        const problems: string[] = [];
        link.forwarder.on('problem', (_code, text) => problems.push(text));
        // The socket may already have failed before open() returned (closeError tells why).
        const closed = new Promise<SpiceError | undefined>((resolve) => (link.isOpen ? link.once('closed', resolve) : resolve(link.closeError)));
        if (end === 'hold') {
          // The peer keeps the socket open: either the link gives up by itself, or stop() ends it.
          const early = await Promise.race([closed.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 600))]);
          if (!early) await bounded(link.stop(), 8000, () => `passthru case ${i} stop`);
        }
        const error = await bounded(closed, 5000, () => `passthru case ${i} closed (end ${end}, waitForClient ${next.waitForClient}, ${next.data.reduce((n, d) => n + d.byteLength, 0)} bytes, forwarder ${link.forwarder.state}, open ${link.isOpen}, problems ${problems.join(' | ')})`);
        if (error !== undefined) expectClearError(error, `passthru case ${i}`);
        for (const p of problems) expect(p.length).toBeGreaterThan(5);
        expect(link.isOpen).toBe(false);
        inputs++;
      }
    }, 120_000);
  });

  it('memory stays flat and the input count is reached', () => {
    const end = heapMiB();
    console.log(`hostile-passthru: ${inputs} inputs, heap ${warmHeap.toFixed(1)} MiB after warm-up, ${end.toFixed(1)} MiB at the end`);
    expect(inputs).toBeGreaterThanOrEqual(100_000);
    expect(end - warmHeap, `heap grew (HOSTILE_SEED=${SEED})`).toBeLessThan(gc ? 32 : 128);
  });
});
