// Defects found between the modules of serve, each with the case that showed it: a session closed
// while its dial is under way, a session added while the bridge closes, the bridge's copies of the log
// (log.tail, log events) versus the log's own redaction and level, SIGHUP during start-up, a password
// given mid-dial, oversized fields and error lists, card and trace paths that are not regular files,
// a config session removed through the API, and a trace file that cannot be written.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiceError } from '../../spice/errors.js';
import { CardForwarder } from '../../src/bridge/card-forwarder.js';
import type { LogLine, SessionSpec } from '../../src/control/schema.js';
import { ControlError, type ControlEvent } from '../../src/control/service.js';
import { Backoff } from '../../src/serve/backoff.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { emptyServeConfig } from '../../src/serve/config-file.js';
import { ServeLogger } from '../../src/serve/logger.js';
import { ReloadQueue } from '../../src/serve/reload-queue.js';
import { startServe } from '../../src/serve/serve.js';
import type { DialContext, LiveLink } from '../../src/serve/session-links.js';
import { SessionMachine } from '../../src/serve/session-machine.js';
import { SessionRunner } from '../../src/serve/session-runner.js';
import { ScriptedCard } from '../helpers/scripted-card.js';

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

let cards: string;
beforeAll(async () => {
  cards = await mkdtemp(join(tmpdir(), 'serve-seams-'));
});
afterAll(async () => {
  await rm(cards, { recursive: true, force: true });
});

const offline = (name: string, extra: Partial<SessionSpec> = {}): SessionSpec => ({
  name,
  mode: 'connect',
  target: 'spice://127.0.0.1:9',
  card: { kind: 'demo' },
  autostart: false,
  ...extra,
});

describe('SessionRunner closed while dialling', () => {
  it('closes the link that arrives after close(): nothing else ever would', async () => {
    let deliver: ((link: LiveLink) => void) | undefined;
    const closedWith: string[] = [];
    const dial = (_context: DialContext): Promise<LiveLink> => new Promise((resolve) => (deliver = resolve));
    const runner = new SessionRunner({ spec: offline('late', { autostart: true }), openCard: async () => new ScriptedCard(), log: () => undefined, dial });
    runner.start();
    await until('dialling', () => deliver !== undefined);
    await runner.close();
    deliver!({
      stop: async () => void closedWith.push('stop'),
      drop: async () => void closedWith.push('drop'),
    });
    await until('the late link closed', () => closedWith.length > 0);
    // Graceful: the server is there, so the reader it may have added leaves the VM.
    expect(closedWith).toEqual(['stop']);
  });
});

describe('ServeBridge', () => {
  it('refuses a session.add that finishes after close() began, and keeps no session (nor its .vv copy) running', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false, cardDirectory: cards });
    // The .vv content is written to a private file first: close() starts while that is under way.
    const adding = bridge.request('session.add', { spec: offline('racer', { target: 'lab.vv' }), vv: '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=9\npassword=hunter22\n' });
    const closing = bridge.close();
    const outcome = await adding.then(
      () => 'added',
      (e: unknown) => (e instanceof ControlError ? e.code : String(e)),
    );
    await closing;
    expect(outcome).toBe('conflict');
    expect(bridge.snapshot().sessions).toEqual([]);
  });

  it('log.tail and log events carry the log as redacted and escaped, never the raw text', async () => {
    const written: string[] = [];
    const bridge = new ServeBridge({ log: new ServeLogger({ write: (l) => written.push(l) }), version: 't', pcsc: false, cardDirectory: cards });
    const events: LogLine[] = [];
    bridge.subscribe((e: ControlEvent) => {
      if (e.type === 'log') events.push(e.data.line);
    });
    await bridge.request('session.add', { spec: offline('pw'), password: 'hunter2-secret' });
    // Should any message ever carry the password (a server echoing it, a future bug), it is blanked.
    bridge.record('warn', 'the server said: bad ticket hunter2-secret\nforged line', 'pw');
    const { lines } = await bridge.request('log.tail', {});
    const last = lines.at(-1);
    expect(last?.message).toBe('the server said: bad ticket [redacted]\\nforged line');
    expect(events.at(-1)?.message).toBe(last?.message);
    expect(JSON.stringify(lines)).not.toContain('hunter2-secret');
    expect(written.join('\n')).not.toContain('hunter2-secret');

    await bridge.request('session.password', { name: 'pw', password: 'second-secret' });
    bridge.record('info', 'echo second-secret');
    expect((await bridge.request('log.tail', { lines: 1 })).lines[0]?.message).toBe('echo [redacted]');
    await bridge.close();
  });
});

describe('ReloadQueue (SIGHUP)', () => {
  it('holds a SIGHUP that comes during the start and reloads once started; never runs two reloads at once', async () => {
    const gates: Array<() => void> = [];
    let running = 0;
    let overlap = false;
    let runs = 0;
    const failures: unknown[] = [];
    const queue = new ReloadQueue(
      () =>
        new Promise<void>((resolve) => {
          runs += 1;
          running += 1;
          if (running > 1) overlap = true;
          gates.push(() => {
            running -= 1;
            resolve();
          });
        }),
      (e) => failures.push(e),
    );
    queue.request();
    queue.request();
    await new Promise((r) => setTimeout(r, 5));
    expect(runs).toBe(0);
    queue.start();
    await until('the held reload', () => runs === 1);
    queue.request();
    await new Promise((r) => setTimeout(r, 5));
    expect(runs).toBe(1);
    gates.shift()!();
    await until('the second reload', () => runs === 2);
    gates.shift()!();
    await queue.idle();
    expect(overlap).toBe(false);
    expect(failures).toEqual([]);
  });

  it('a reload that throws is reported and the next one still runs', async () => {
    const failures: unknown[] = [];
    let calls = 0;
    const queue = new ReloadQueue(async () => {
      calls += 1;
      if (calls === 1) throw new Error('boom');
    }, (e) => failures.push(e));
    queue.start();
    queue.request();
    queue.request();
    await queue.idle();
    expect(calls).toBe(2);
    expect(failures.map((e) => (e as Error).message)).toEqual(['boom']);
  });
});

describe('SessionMachine: a password given while the session dials', () => {
  it('abandons the dial that went out without it and dials with it, so its refusal is not blamed on the new password', () => {
    const m = new SessionMachine({ mode: 'connect', backoff: new Backoff({ jitter: 0 }), havePassword: false });
    m.handle({ kind: 'start' });
    expect(m.handle({ kind: 'password' })).toEqual([{ kind: 'abort-dial', dial: 1 }, { kind: 'changed' }, { kind: 'dial', dial: 2 }]);
    // The old dial's refusal arrives late: stale, it moves nothing.
    expect(m.handle({ kind: 'dial-failed', dial: 1, error: new SpiceError('auth', 'PERMISSION_DENIED') })).toEqual([]);
    expect(m.phase).toBe('connecting');
    m.handle({ kind: 'linked', dial: 2 });
    // Once linked the password has done its work: nothing to redo.
    expect(m.handle({ kind: 'password' })).toEqual([]);
  });
});

describe('session.add: field lengths', () => {
  it('refuses a huge target that would push every status.get over the message limit', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false, cardDirectory: cards });
    const huge = `${'d/'.repeat(300_000)}vm.vv`;
    const outcome = await bridge.request('session.add', { spec: offline('huge', { target: huge }) }).then(
      () => undefined,
      (e: unknown) => (e instanceof ControlError ? e.toBody() : e),
    );
    expect(outcome).toMatchObject({ code: 'invalid-params', path: 'spec.target' });
    expect(bridge.snapshot().sessions).toEqual([]);
    // A path as long as a system takes still passes.
    await bridge.request('session.add', { spec: offline('long', { target: `/${'d/'.repeat(2_000)}vm.vv` }) });
    expect(bridge.snapshot().sessions.map((s) => s.name)).toEqual(['long']);
    await bridge.close();
  });
});

describe('soft card and trace paths that are not regular files', () => {
  it('softcard.show of a FIFO or a device is refused at once instead of hanging or filling memory', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false, cardDirectory: cards });
    const fifo = join(cards, 'pipe.card');
    execFileSync('mkfifo', [fifo]);
    const reading = bridge.request('softcard.show', { path: 'pipe.card' }).then(
      () => 'shown',
      (e: unknown) => (e instanceof ControlError ? e.code : String(e)),
    );
    // Without the check the read blocks a thread for good; a writer that opens and closes the FIFO
    // releases it, so that the outcome can be seen either way.
    let timer: NodeJS.Timeout | undefined;
    const released = new Promise<string>((resolve) => {
      timer = setTimeout(() => {
        try {
          closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          // No reader: the check refused the FIFO without opening it.
        }
        resolve('hung');
      }, 2_000);
    });
    const outcome = await Promise.race([reading, released]);
    clearTimeout(timer);
    expect(outcome).toBe('failed');
    await expect(bridge.request('softcard.show', { path: '/dev/zero' })).rejects.toMatchObject({ code: 'failed', message: expect.stringContaining('not a regular file') });

    // A session whose card or trace is a device fails with a card problem instead of reading it.
    await bridge.request('session.add', { spec: offline('zero', { card: { kind: 'soft', path: '/dev/zero' } }) });
    await bridge.request('session.add', { spec: offline('zero-trace', { card: { kind: 'replay', path: '/dev/zero' } }) });
    await expect(bridge.request('session.insert', { name: 'zero', present: false })).rejects.toMatchObject({ code: 'failed' });
    await bridge.request('session.start', { name: 'zero-trace' });
    await until('the trace session failed', () => bridge.snapshot().sessions.find((s) => s.name === 'zero-trace')?.phase === 'failed');
    expect(bridge.snapshot().sessions.find((s) => s.name === 'zero-trace')?.problem?.code).toBe('card');
    await bridge.close();
  });
});

describe('startServe reload (SIGHUP)', () => {
  it('brings back a config session that was removed through the API, as an added one', async () => {
    const config = { ...emptyServeConfig(), cardDirectory: cards, sessions: [offline('from-config')] };
    const running = await startServe({ config, control: { host: '127.0.0.1', port: 0, connectionFile: false }, log: new ServeLogger({ write: () => undefined }), version: 't', staticMounts: {} });
    try {
      await running.bridge.request('session.remove', { name: 'from-config' });
      const summary = await running.reload(config);
      expect(summary).toEqual({ added: ['from-config'], removed: [], changed: [], failed: [] });
      expect(running.bridge.snapshot().sessions.map((s) => s.name)).toEqual(['from-config']);
      // Unchanged and present: left alone.
      expect(await running.reload(config)).toEqual({ added: [], removed: [], changed: [], failed: [] });
    } finally {
      await running.close();
    }
  });
});

describe('SessionRunner: a trace file that cannot be written', () => {
  it('fails the session with a config problem instead of retrying an "internal" failure forever', async () => {
    let dials = 0;
    const dial = async (context: DialContext): Promise<LiveLink> => {
      dials += 1;
      const forwarder = new CardForwarder({ card: context.card, mode: 'spice', send: () => undefined });
      context.observer.forwarder(forwarder);
      return { stop: async () => forwarder.detach(), drop: async () => forwarder.detach() };
    };
    const runner = new SessionRunner({
      spec: offline('traced', { autostart: true, trace: join(cards, 'no-such-dir', 'vm.trace'), reconnect: { initialMs: 100, maxMs: 100 } }),
      openCard: async () => new ScriptedCard(),
      log: () => undefined,
      dial,
    });
    runner.start();
    await until('the session settled', () => runner.status().phase === 'failed' || runner.status().phase === 'waiting');
    expect(runner.status().phase).toBe('failed');
    expect(runner.status().problem?.code).toBe('config');
    expect(runner.status().problem?.message).toContain('vm.trace');
    expect(dials).toBe(1);
    await runner.close();
  });
});

describe('log.tail and log events follow the log level', () => {
  it('keeps and sends the lines the log writes, so debug chatter cannot push the others out of the 500 kept', async () => {
    const logger = new ServeLogger({ level: 'info', write: () => undefined });
    const bridge = new ServeBridge({ log: logger, version: 't', pcsc: false, cardDirectory: cards });
    const events: string[] = [];
    bridge.subscribe((e) => {
      if (e.type === 'log') events.push(e.data.line.message);
    });
    bridge.record('warn', 'the VM went away');
    for (let i = 0; i < 600; i++) bridge.record('debug', `still down, retry ${i}`);
    expect((await bridge.request('log.tail', {})).lines.map((l) => l.message)).toEqual(['the VM went away']);
    expect(events).toEqual(['the VM went away']);
    logger.setLevel('debug');
    bridge.record('debug', 'dialling');
    expect((await bridge.request('log.tail', { lines: 1 })).lines.map((l) => l.message)).toEqual(['dialling']);
    await bridge.close();
  });
});

describe('session.add: a spec with very many wrong fields', () => {
  it('answers with an error short enough to send, naming the first ones', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false, cardDirectory: cards });
    const spec: Record<string, unknown> = { ...offline('many') };
    for (let i = 0; i < 50_000; i++) spec[`k${i}`] = 1;
    const body = await bridge.request('session.add', { spec: spec as unknown as SessionSpec }).then(
      () => undefined,
      (e: unknown) => (e instanceof ControlError ? e.toBody() : undefined),
    );
    expect(body?.code).toBe('invalid-params');
    expect(body?.path).toBe('spec.k0');
    expect(body?.message).toContain('49999 more');
    expect(body?.message.length).toBeLessThan(2_000);
    await bridge.close();
  });
});
