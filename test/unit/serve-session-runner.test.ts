// The session runtime in pieces: the state machine (events in, actions out), the failure
// classification, the shared card queue, and the runner driving fake links that carry a real
// CardForwarder, so that stops during a dial or a wait and old links' late answers are exercised.
import { describe, expect, it } from 'vitest';
import { SpiceError } from '../../spice/errors.js';
import { CardForwarder } from '../../src/bridge/card-forwarder.js';
import { UsageError } from '../../src/cli/exit-codes.js';
import type { SessionMode, SessionPhase, SessionSpec } from '../../src/control/schema.js';
import { Backoff } from '../../src/serve/backoff.js';
import { SessionCard } from '../../src/serve/session-card.js';
import type { DialContext, LiveLink } from '../../src/serve/session-links.js';
import { SessionMachine, type MachineAction } from '../../src/serve/session-machine.js';
import { classifyFailure, SessionCardError, SessionConfigError } from '../../src/serve/session-problems.js';
import { SessionRunner } from '../../src/serve/session-runner.js';
import { CardFileError } from '../../vsc/soft-card/card-file.js';
import type { VscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';
import { ScriptedCard } from '../helpers/scripted-card.js';

const net = (): SpiceError => new SpiceError('network', 'The server went away.');
const auth = (): SpiceError => new SpiceError('auth', 'PERMISSION_DENIED');

function machine(mode: SessionMode = 'connect', havePassword = false): { m: SessionMachine; clock: { now: number } } {
  const clock = { now: 1_000 };
  const backoff = new Backoff({ initialMs: 100, maxMs: 400, jitter: 0, resetAfterMs: 1_000, now: () => clock.now });
  return { m: new SessionMachine({ mode, backoff, havePassword, now: () => clock.now }), clock };
}

describe('SessionMachine', () => {
  it('stopped → connecting → active → waiting → connecting → active, with the backoff doubling', () => {
    const { m, clock } = machine();
    expect(m.phase).toBe('stopped');
    expect(m.handle({ kind: 'start' })).toEqual([{ kind: 'changed' }, { kind: 'dial', dial: 1 }]);
    expect(m.phase).toBe('connecting');
    expect(m.handle({ kind: 'linked', dial: 1 })).toEqual([]);
    expect(m.phase).toBe('connecting');
    expect(m.handle({ kind: 'up', dial: 1 })).toEqual([{ kind: 'changed' }]);
    expect(m.phase).toBe('active');
    expect(m.since).toBe(1_000);
    clock.now = 1_500;
    expect(m.handle({ kind: 'down', dial: 1, error: net() })).toEqual([
      { kind: 'close-link', dial: 1, graceful: false },
      { kind: 'changed' },
      { kind: 'arm-timer', timer: 1, ms: 100 },
    ]);
    expect(m.phase).toBe('waiting');
    expect(m.since).toBe(1_500);
    expect(m.problem?.code).toBe('network');
    expect(m.retry).toEqual({ attempt: 1, at: 1_600 });
    expect(m.handle({ kind: 'retry-due', timer: 1 })).toEqual([{ kind: 'changed' }, { kind: 'dial', dial: 2 }]);
    expect(m.phase).toBe('connecting');
    expect(m.reconnects).toBe(1);
    // Until the link is back the reason stays visible.
    expect(m.problem?.code).toBe('network');
    expect(m.handle({ kind: 'dial-failed', dial: 2, error: net() })).toEqual([{ kind: 'changed' }, { kind: 'arm-timer', timer: 2, ms: 200 }]);
    expect(m.retry?.attempt).toBe(2);
    m.handle({ kind: 'retry-due', timer: 2 });
    m.handle({ kind: 'linked', dial: 3 });
    m.handle({ kind: 'up', dial: 3 });
    expect(m.phase).toBe('active');
    expect(m.problem).toBeUndefined();
    expect(m.retry).toBeUndefined();
    expect(m.reconnects).toBe(2);
  });

  it('a link that held past resetAfterMs starts the backoff over; a short one does not', () => {
    const { m, clock } = machine();
    m.handle({ kind: 'start' });
    m.handle({ kind: 'dial-failed', dial: 1, error: net() });
    m.handle({ kind: 'retry-due', timer: 1 });
    m.handle({ kind: 'linked', dial: 2 });
    m.handle({ kind: 'up', dial: 2 });
    clock.now += 10;
    const short = m.handle({ kind: 'down', dial: 2, error: net() });
    expect(short).toContainEqual({ kind: 'arm-timer', timer: 2, ms: 200 });
    m.handle({ kind: 'retry-due', timer: 2 });
    m.handle({ kind: 'linked', dial: 3 });
    m.handle({ kind: 'up', dial: 3 });
    clock.now += 1_000;
    expect(m.handle({ kind: 'down', dial: 3, error: net() })).toContainEqual({ kind: 'arm-timer', timer: 3, ms: 100 });
  });

  it('a reader added before the dial returned, or a link dead before it, still moves the session', () => {
    const early = machine().m;
    early.handle({ kind: 'start' });
    expect(early.handle({ kind: 'up', dial: 1 })).toEqual([]);
    expect(early.phase).toBe('connecting');
    expect(early.handle({ kind: 'linked', dial: 1 })).toEqual([{ kind: 'changed' }]);
    expect(early.phase).toBe('active');

    const dead = machine().m;
    dead.handle({ kind: 'start' });
    expect(dead.handle({ kind: 'down', dial: 1, error: net() })).toEqual([
      { kind: 'close-link', dial: 1, graceful: false },
      { kind: 'changed' },
      { kind: 'arm-timer', timer: 1, ms: 100 },
    ]);
    expect(dead.phase).toBe('waiting');
    expect(dead.handle({ kind: 'linked', dial: 1 })).toEqual([{ kind: 'close-link', dial: 1, graceful: true }]);
  });

  it('stop is honoured at once in every running phase', () => {
    const dialing = machine().m;
    dialing.handle({ kind: 'start' });
    expect(dialing.handle({ kind: 'stop' })).toEqual([{ kind: 'abort-dial', dial: 1 }, { kind: 'changed' }]);
    expect(dialing.phase).toBe('stopped');
    // The abandoned dial's link arrives late: it is closed, and the session stays stopped.
    expect(dialing.handle({ kind: 'linked', dial: 1 })).toEqual([{ kind: 'close-link', dial: 1, graceful: true }]);
    expect(dialing.phase).toBe('stopped');

    const waiting = machine().m;
    waiting.handle({ kind: 'start' });
    waiting.handle({ kind: 'dial-failed', dial: 1, error: net() });
    expect(waiting.handle({ kind: 'stop' })).toEqual([{ kind: 'cancel-timer', timer: 1 }, { kind: 'changed' }]);
    expect(waiting.handle({ kind: 'retry-due', timer: 1 })).toEqual([]);
    expect(waiting.phase).toBe('stopped');
    expect(waiting.problem).toBeUndefined();

    const active = machine().m;
    active.handle({ kind: 'start' });
    active.handle({ kind: 'linked', dial: 1 });
    active.handle({ kind: 'up', dial: 1 });
    expect(active.handle({ kind: 'stop' })).toEqual([{ kind: 'close-link', dial: 1, graceful: true }, { kind: 'changed' }]);
    expect(active.handle({ kind: 'down', dial: 1, error: net() })).toEqual([]);
    expect(active.handle({ kind: 'stop' })).toEqual([]);

    const linking = machine().m;
    linking.handle({ kind: 'start' });
    linking.handle({ kind: 'linked', dial: 1 });
    expect(linking.handle({ kind: 'stop' })).toEqual([{ kind: 'close-link', dial: 1, graceful: true }, { kind: 'changed' }]);
    expect(linking.handle({ kind: 'up', dial: 1 })).toEqual([]);
    expect(linking.phase).toBe('stopped');
  });

  it('no password → needs-password; a password dials at once; a wrong one → failed; start retries', () => {
    const { m } = machine('connect', false);
    m.handle({ kind: 'start' });
    expect(m.handle({ kind: 'dial-failed', dial: 1, error: auth() })).toEqual([{ kind: 'changed' }]);
    expect(m.phase).toBe('needs-password');
    expect(m.problem?.code).toBe('auth');
    expect(m.handle({ kind: 'password' })).toEqual([{ kind: 'changed' }, { kind: 'dial', dial: 2 }]);
    m.handle({ kind: 'dial-failed', dial: 2, error: auth() });
    expect(m.phase).toBe('failed');
    expect(m.problem?.code).toBe('auth');
    expect(m.handle({ kind: 'password' })).toEqual([{ kind: 'changed' }, { kind: 'dial', dial: 3 }]);
    m.handle({ kind: 'dial-failed', dial: 3, error: new SpiceError('channel-missing', 'none') });
    expect(m.phase).toBe('failed');
    expect(m.handle({ kind: 'password' })).toEqual([]);
    expect(m.handle({ kind: 'start' })).toEqual([{ kind: 'changed' }, { kind: 'dial', dial: 4 }]);
  });

  it('a password while waiting dials at once; start while running does nothing', () => {
    const { m } = machine();
    m.handle({ kind: 'start' });
    expect(m.handle({ kind: 'start' })).toEqual([]);
    m.handle({ kind: 'dial-failed', dial: 1, error: net() });
    expect(m.handle({ kind: 'password' })).toEqual([{ kind: 'cancel-timer', timer: 1 }, { kind: 'changed' }, { kind: 'dial', dial: 2 }]);
    expect(m.handle({ kind: 'retry-due', timer: 1 })).toEqual([]);
  });

  it('relink: a running session closes its link gracefully and dials again; a stopped one does nothing', () => {
    const { m } = machine();
    expect(m.handle({ kind: 'relink' })).toEqual([]);
    m.handle({ kind: 'start' });
    m.handle({ kind: 'linked', dial: 1 });
    m.handle({ kind: 'up', dial: 1 });
    expect(m.handle({ kind: 'relink' })).toEqual([{ kind: 'close-link', dial: 1, graceful: true }, { kind: 'changed' }, { kind: 'dial', dial: 2 }]);
    expect(m.handle({ kind: 'down', dial: 1, error: net() })).toEqual([]);
    expect(m.phase).toBe('connecting');
  });

  it('proxy: linked → listening, up → active, idle → listening, down → waiting', () => {
    const { m } = machine('proxy');
    m.handle({ kind: 'start' });
    expect(m.handle({ kind: 'linked', dial: 1 })).toEqual([{ kind: 'changed' }]);
    expect(m.phase).toBe('listening');
    m.handle({ kind: 'up', dial: 1 });
    expect(m.phase).toBe('active');
    m.handle({ kind: 'idle', dial: 1 });
    expect(m.phase).toBe('listening');
    expect(m.handle({ kind: 'idle', dial: 1 })).toEqual([]);
    m.handle({ kind: 'down', dial: 1, error: new Error('EADDRINUSE') });
    expect(m.phase).toBe('waiting');
    expect(m.problem?.code).toBe('internal');
  });

  it('events of an older dial or timer never move the session', () => {
    const { m } = machine();
    m.handle({ kind: 'start' });
    m.handle({ kind: 'dial-failed', dial: 1, error: net() });
    m.handle({ kind: 'retry-due', timer: 1 });
    const before: SessionPhase = m.phase;
    const stale: MachineAction[] = [
      ...m.handle({ kind: 'up', dial: 1 }),
      ...m.handle({ kind: 'down', dial: 1, error: net() }),
      ...m.handle({ kind: 'dial-failed', dial: 1, error: net() }),
      ...m.handle({ kind: 'idle', dial: 1 }),
      ...m.handle({ kind: 'retry-due', timer: 1 }),
      ...m.handle({ kind: 'up', dial: 7 }),
    ];
    expect(stale).toEqual([]);
    expect(m.phase).toBe(before);
    expect(m.currentDial).toBe(2);
    expect(m.handle({ kind: 'linked', dial: 1 })).toEqual([{ kind: 'close-link', dial: 1, graceful: true }]);
  });
});

describe('classifyFailure', () => {
  const ctx = { mode: 'connect' as const, havePassword: false };
  it.each([
    [net(), 'retry', 'network'],
    [new SpiceError('protocol', 'garbage'), 'retry', 'protocol'],
    [new SpiceError('channel-taken', 'taken'), 'retry', 'channel-taken'],
    [new SpiceError('channel-missing', 'x'), 'failed', 'channel-missing'],
    [new SpiceError('tls', 'certificate signed by an unknown CA.'), 'failed', 'tls'],
    [auth(), 'needs-password', 'auth'],
    [new SessionConfigError('bad target.'), 'failed', 'config'],
    [new UsageError('Cannot read the password file /x: ENOENT.'), 'failed', 'config'],
    [new SessionCardError('broken card file.'), 'failed', 'card'],
    [new CardFileError('not a card file'), 'failed', 'card'],
    [new Error('boom'), 'retry', 'internal'],
    ['a string', 'retry', 'internal'],
  ] as const)('%s → %s (%s)', (error, outcome, code) => {
    const r = classifyFailure(error, ctx);
    expect(r.outcome).toBe(outcome);
    expect(r.problem.code).toBe(code);
    expect(r.problem.message).not.toBe('');
    expect(r.problem.message).not.toContain('\n');
  });

  it('a refused password that was given is a failure, not a request for one', () => {
    expect(classifyFailure(auth(), { mode: 'connect', havePassword: true }).outcome).toBe('failed');
  });

  it('no smartcard device: the advice with the domain XML', () => {
    expect(classifyFailure(new SpiceError('channel-missing', 'x'), ctx).problem.message).toContain("<smartcard mode='passthrough' type='spicevmc'/>");
  });
});

describe('SessionCard', () => {
  it('never overlaps transmits of different links, and a retired view hears no more card events', async () => {
    let release: (() => void) | undefined;
    let running = 0;
    let overlap = false;
    const card = new ScriptedCard(async () => {
      running += 1;
      if (running > 1) overlap = true;
      if (release === undefined) await new Promise<void>((r) => (release = r));
      running -= 1;
      return Uint8Array.of(0x90, 0x00);
    });
    const shared = new SessionCard(card);
    const one = shared.view();
    const two = shared.view();
    const heard: string[] = [];
    one.on('removed', () => heard.push('one'));
    two.on('removed', () => heard.push('two'));
    const a = one.transmit(Uint8Array.of(0, 0xa4, 0, 0));
    const b = two.transmit(Uint8Array.of(0, 0xb0, 0, 0));
    await new Promise((r) => setTimeout(r, 5));
    expect(card.commands.length).toBe(1);
    release?.();
    await Promise.all([a, b]);
    expect(card.commands.map((c) => c[1])).toEqual([0xa4, 0xb0]);
    expect(overlap).toBe(false);
    one.retire();
    card.remove();
    expect(heard).toEqual(['two']);
    expect(shared.setPresent(true)).toBe(true);
    expect(shared.present).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// The runner with fake links: each link runs a real CardForwarder whose "server" acknowledges
// every control message, and records what the forwarder sent and when the link was closed.

interface FakeLink {
  dial: number;
  forwarder: CardForwarder;
  context: DialContext;
  sent: VscMessage[];
  closed: 'no' | 'stop' | 'drop';
  /** Messages the forwarder tried to send after its link closed (a real transport drops them). */
  sentAfterClose: VscMessage[];
}

function fakeDialer(options: { hold?: boolean } = {}) {
  const links: FakeLink[] = [];
  const held: Array<{ resolve: () => void; fail: (e: unknown) => void }> = [];
  let dials = 0;
  const dial = (context: DialContext): Promise<LiveLink> => {
    const n = ++dials;
    const make = (): LiveLink => {
      const link: FakeLink = { dial: n, forwarder: undefined as unknown as CardForwarder, context, sent: [], closed: 'no', sentAfterClose: [] };
      link.forwarder = new CardForwarder({
        card: context.card,
        mode: 'spice',
        send: (message) => {
          if (link.closed !== 'no') {
            link.sentAfterClose.push(message);
            return;
          }
          link.sent.push(message);
          if (message.type === VscMsgType.ReaderAdd || message.type === VscMsgType.Atr || message.type === VscMsgType.CardRemove || message.type === VscMsgType.ReaderRemove) {
            queueMicrotask(() => link.forwarder.receive({ type: VscMsgType.Error, readerId: 0, code: 0 }));
          }
        },
      });
      links.push(link);
      context.observer.forwarder(link.forwarder);
      link.forwarder.start();
      return {
        stop: async () => {
          await link.forwarder.stop();
          link.closed = 'stop';
          link.forwarder.detach();
        },
        drop: async () => {
          link.closed = 'drop';
          link.forwarder.detach();
        },
      };
    };
    if (options.hold !== true) return Promise.resolve().then(make);
    return new Promise((resolve, reject) => held.push({ resolve: () => resolve(make()), fail: reject }));
  };
  return { dial, links, held, dials: () => dials };
}

const spec = (extra: Partial<SessionSpec> = {}): SessionSpec => ({ name: 's', mode: 'connect', target: 'spice://127.0.0.1:5900', card: { kind: 'demo' }, reconnect: { initialMs: 5, maxMs: 20 }, ...extra });

async function until(what: string, check: () => boolean, timeoutMs = 5_000, show: () => unknown = () => ''): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} ${JSON.stringify(show())}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const apdu = (ins: number): VscMessage => ({ type: VscMsgType.Apdu, readerId: 0, data: Uint8Array.of(0x00, ins, 0x00, 0x00) });
const answersIn = (link: FakeLink): VscMessage[] => link.sent.filter((m) => m.type === VscMsgType.Apdu);

describe('SessionRunner', () => {
  it('comes up, reports the VM state, and reconnects by itself with a fresh forwarder on the same card', async () => {
    const fake = fakeDialer();
    const card = new ScriptedCard();
    let opened = 0;
    const runner = new SessionRunner({ spec: spec(), openCard: async () => (opened++, card), log: () => undefined, dial: fake.dial, random: () => 0 });
    const phases: SessionPhase[] = [];
    runner.on('status', (s) => phases.push(s.phase));
    runner.start();
    await until('active', () => runner.status().phase === 'active' && runner.status().vm.cardInserted, 5_000, () => [runner.status(), fake.links.map((l) => l.sent)]);
    expect(runner.status().card).toMatchObject({ name: 'scripted test card', present: true, atr: '3B0A53504943452D54455354' });
    fake.links[0]!.context.observer.down(new SpiceError('network', 'The server went away.'));
    expect(runner.status().phase).toBe('waiting');
    expect(runner.status().vm).toEqual({ readerAdded: false, cardInserted: false });
    await until('active again', () => runner.status().phase === 'active' && runner.status().vm.cardInserted);
    expect(fake.links.length).toBe(2);
    expect(fake.links[1]!.forwarder).not.toBe(fake.links[0]!.forwarder);
    expect(fake.links[0]!.closed).toBe('drop');
    expect(opened).toBe(1);
    expect(runner.status().reconnects).toBe(1);
    expect(phases).toEqual(expect.arrayContaining(['connecting', 'active', 'waiting']));
    await runner.close();
    expect(fake.links[1]!.closed).toBe('stop');
    expect(fake.links[1]!.sent.map((m) => m.type)).toContain(VscMsgType.ReaderRemove);
  });

  it('an answer the card gives after its link died is never sent on the new link; both commands are counted once', async () => {
    const fake = fakeDialer();
    const gates: Array<() => void> = [];
    const card = new ScriptedCard(async (cmd) => {
      await new Promise<void>((r) => gates.push(r));
      return Uint8Array.of(cmd[1]!, 0x90, 0x00);
    });
    const runner = new SessionRunner({ spec: spec(), openCard: async () => card, log: () => undefined, dial: fake.dial, random: () => 0 });
    runner.start();
    await until('active', () => runner.status().vm.cardInserted);
    const first = fake.links[0]!;
    first.forwarder.receive(apdu(0x11));
    await until('the card has the first command', () => gates.length === 1);
    first.context.observer.down(new SpiceError('network', 'gone'));
    await until('active on a new link', () => runner.status().vm.cardInserted && fake.links.length === 2);
    const second = fake.links[1]!;
    second.forwarder.receive(apdu(0x22));
    // The old command still holds the card: the new one waits behind it.
    await new Promise((r) => setTimeout(r, 10));
    expect(card.commands.length).toBe(1);
    gates.shift()!();
    await until('the card has the second command', () => gates.length === 1);
    gates.shift()!();
    await until('the second answer', () => answersIn(second).length === 1);
    expect(answersIn(second).map((m) => (m.type === VscMsgType.Apdu ? m.data[0] : -1))).toEqual([0x22]);
    expect(answersIn(first)).toEqual([]);
    // The old forwarder may still hand its answer to its own transport, which is closed and drops it.
    expect(first.sentAfterClose.filter((m) => m.type === VscMsgType.Apdu).map((m) => (m.type === VscMsgType.Apdu ? m.data[0] : -1))).toEqual([0x11]);
    await until('counters', () => runner.counters.answered === 2);
    expect(runner.counters.failed).toBe(0);
    await runner.close();
  });

  it('a stop during a dial is honoured at once; the link that comes up late is closed', async () => {
    const fake = fakeDialer({ hold: true });
    const runner = new SessionRunner({ spec: spec(), openCard: async () => new ScriptedCard(), log: () => undefined, dial: fake.dial });
    runner.start();
    await until('dialling', () => fake.held.length === 1);
    const stopped = await runner.stop();
    expect(stopped.phase).toBe('stopped');
    fake.held[0]!.resolve();
    await until('the late link closed', () => fake.links[0]?.closed === 'stop');
    expect(runner.status().phase).toBe('stopped');
    expect(fake.links[0]!.context.signal.aborted).toBe(true);
    await runner.close();
  });

  it('a stop during a wait is honoured at once and no dial follows', async () => {
    const fake = fakeDialer({ hold: true });
    const runner = new SessionRunner({ spec: spec({ reconnect: { initialMs: 30, maxMs: 30 } }), openCard: async () => new ScriptedCard(), log: () => undefined, dial: fake.dial });
    runner.start();
    await until('dialling', () => fake.held.length === 1);
    fake.held[0]!.fail(new SpiceError('network', 'refused'));
    await until('waiting', () => runner.status().phase === 'waiting');
    expect(runner.status().retry?.attempt).toBe(1);
    expect((await runner.stop()).phase).toBe('stopped');
    await new Promise((r) => setTimeout(r, 80));
    expect(fake.dials()).toBe(1);
    await runner.close();
  });

  it('a card source that cannot be opened fails the session with a card problem; a throwing observer is contained', async () => {
    const broken = new SessionRunner({ spec: spec(), openCard: () => Promise.reject(new Error('bad magic in /x.card')), log: () => undefined, dial: fakeDialer().dial });
    broken.start();
    await until('failed', () => broken.status().phase === 'failed');
    expect(broken.status().problem?.code).toBe('card');
    await broken.close();

    const fake = fakeDialer();
    const logs: string[] = [];
    const runner = new SessionRunner({ spec: spec(), openCard: async () => new ScriptedCard(), log: (l, m) => logs.push(`${l} ${m}`), dial: fake.dial, random: () => 0 });
    runner.on('status', () => {
      throw new Error('listener bug');
    });
    runner.start();
    await until('active despite the throwing listener', () => runner.status().phase === 'active' && runner.status().vm.cardInserted);
    expect(logs.some((l) => l.startsWith('error') && l.includes('listener bug'))).toBe(true);
    await runner.close();
  });

  it('counters: every answered and failed command is counted, and counter events are throttled', async () => {
    const fake = fakeDialer();
    let n = 0;
    const card = new ScriptedCard(async () => {
      n += 1;
      if (n % 5 === 0) throw new Error('card error');
      return Uint8Array.of(0x90, 0x00);
    });
    const runner = new SessionRunner({ spec: spec(), openCard: async () => card, log: () => undefined, dial: fake.dial });
    const events: number[] = [];
    runner.on('counters', (c) => events.push(c.answered + c.failed));
    runner.start();
    await until('active', () => runner.status().vm.cardInserted);
    // Four bursts of five commands (the link queues a few, in order); the card answers each burst back to back.
    for (let burst = 1; burst <= 4; burst++) {
      for (let i = 0; i < 5; i++) fake.links[0]!.forwarder.receive(apdu(0xb0));
      await until('the burst answered', () => runner.counters.answered + runner.counters.failed === burst * 5);
    }
    expect(runner.counters).toMatchObject({ answered: 16, failed: 4 });
    await until('the last counters event', () => events.at(-1) === 20, 2_000);
    expect(events.length).toBeLessThan(20);
    await runner.close();
  });
});
