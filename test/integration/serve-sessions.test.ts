// The serve bridge's sessions against QEMU's spice-server (paused VMs, no guest): two sessions to
// two VMs where one VM is killed and the other keeps working, and the failures a session reports
// instead of retrying (password wanted, wrong password, no smartcard device).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionPhase, SessionSpec, SessionStatus } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { SpiceSession } from '../../spice/session.js';
import { createTransport } from '../../spice/transport.js';
import { checkBinaries } from '../helpers/process.js';
import { startSpiceServer, type SpiceServer } from '../helpers/qemu.js';

const binaries = checkBinaries(['qemu-system-x86_64']);

interface QuerySpice {
  channels?: { 'channel-type': number; 'connection-id': number }[];
}

async function smartcardChannels(server: SpiceServer): Promise<number> {
  const r = (await server.qmp('query-spice')) as QuerySpice;
  return (r.channels ?? []).filter((c) => c['channel-type'] === 8).length;
}

function connectSpec(name: string, server: SpiceServer, extra: Partial<SessionSpec> = {}): SessionSpec {
  return { name, mode: 'connect', target: `spice://127.0.0.1:${server.port!}`, card: { kind: 'demo' }, reconnect: { initialMs: 200, maxMs: 1_000 }, ...extra };
}

describe.skipIf(binaries.skip)(`serve sessions against QEMU ${binaries.reason}`, () => {
  let vmA: SpiceServer;
  let vmB: SpiceServer;
  let dir: string;
  let bridge: ServeBridge;
  const events: ControlEvent[] = [];
  const logged: string[] = [];

  const status = (name: string): SessionStatus => {
    const s = bridge.snapshot().sessions.find((x) => x.name === name);
    if (s === undefined) throw new Error(`no session ${name}`);
    return s;
  };
  const phasesOf = (name: string): SessionPhase[] =>
    events.flatMap((e) => (e.type === 'session' && e.data.status.name === name ? [e.data.status.phase] : []));
  const until = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; sessions: ${JSON.stringify(bridge.snapshot().sessions.map((s) => [s.name, s.phase, s.problem?.code]))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    [vmA, vmB] = await Promise.all([startSpiceServer({}), startSpiceServer({})]);
    dir = await mkdtemp(join(tmpdir(), 'serve-sessions-'));
    bridge = new ServeBridge({ log: { log: (level, message, session) => logged.push(`${level} ${session ?? '-'} ${message}`) }, version: 'test', cardDirectory: dir, pcsc: false });
    bridge.subscribe((e) => events.push(e));
  }, 60_000);

  afterAll(async () => {
    await bridge?.close();
    await Promise.all([vmA?.stop(), vmB?.stop()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('puts a demo card into each VM: reader added, card inserted, one smartcard channel each', async () => {
    await bridge.addSession(connectSpec('a', vmA));
    await bridge.request('session.add', { spec: connectSpec('b', vmB) });
    await until('both sessions active with the card in the VM', () => ['a', 'b'].every((n) => status(n).phase === 'active' && status(n).vm.cardInserted));
    expect(await smartcardChannels(vmA)).toBe(1);
    expect(await smartcardChannels(vmB)).toBe(1);
    expect(status('a').card.atr).toMatch(/^3B/);
    expect(phasesOf('a')).toEqual(expect.arrayContaining(['connecting', 'active']));
  });

  it('one VM killed: its session waits with the reason and a retry time, the other stays active and its channel works', async () => {
    const eventsBefore = events.length;
    await vmA.stop();
    await until('session a waiting', () => status('a').phase === 'waiting');
    const a = status('a');
    expect(a.problem?.code).toBe('network');
    expect(a.problem?.message.length).toBeGreaterThan(10);
    expect(a.retry?.attempt).toBeGreaterThanOrEqual(1);
    expect(a.vm).toEqual({ readerAdded: false, cardInserted: false });
    // It keeps retrying against the dead VM (connection refused) without disturbing b.
    await until('a second retry of a', () => (status('a').retry?.attempt ?? 0) >= 2 || status('a').reconnects >= 2);

    const b = status('b');
    expect(b.phase).toBe('active');
    expect(b.vm).toEqual({ readerAdded: true, cardInserted: true });
    expect(events.slice(eventsBefore).some((e) => e.type === 'session' && e.data.status.name === 'b' && e.data.status.phase !== 'active')).toBe(false);
    expect(await smartcardChannels(vmB)).toBe(1);
    // b's channel still carries traffic: the VM acknowledges a card removal and a new insertion.
    await bridge.request('session.insert', { name: 'b', present: false });
    await until('the VM acknowledged the removal', () => !status('b').vm.cardInserted);
    await bridge.request('session.insert', { name: 'b', present: true });
    await until('the VM acknowledged the insertion', () => status('b').vm.cardInserted);
  });

  it('a stop while waiting is honoured at once, and stopping b takes its channel out of the VM', async () => {
    const stopped = await bridge.request('session.stop', { name: 'a' });
    expect(stopped.phase).toBe('stopped');
    expect(stopped.retry).toBeUndefined();
    await bridge.request('session.stop', { name: 'b' });
    await until('b has no smartcard channel', async () => (await smartcardChannels(vmB)) === 0, 10_000);
    await bridge.request('session.remove', { name: 'a' });
    await bridge.request('session.remove', { name: 'b' });
    expect(bridge.snapshot().sessions).toEqual([]);
    expect(events.some((e) => e.type === 'session.removed' && e.data.name === 'a')).toBe(true);
  });

  it('no password → needs-password; session.password → active; a wrong password → failed (auth)', async () => {
    const locked = await startSpiceServer({ password: 'right-horse' });
    try {
      await bridge.addSession(connectSpec('locked', locked));
      await until('needs-password', () => status('locked').phase === 'needs-password');
      expect(status('locked').problem?.code).toBe('auth');
      await bridge.request('session.password', { name: 'locked', password: 'wrong-horse' });
      await until('failed', () => status('locked').phase === 'failed');
      expect(status('locked').problem?.code).toBe('auth');
      await bridge.request('session.password', { name: 'locked', password: 'right-horse' });
      await until('active', () => status('locked').phase === 'active');
      expect(logged.join('\n')).not.toContain('horse');
      expect(JSON.stringify(events)).not.toContain('horse');
      await bridge.request('session.remove', { name: 'locked' });
    } finally {
      await locked.stop();
    }
  });

  it('a VM without a smartcard device → failed with the advice, no retry', async () => {
    const bare = await startSpiceServer({ smartcard: false });
    try {
      await bridge.addSession(connectSpec('bare', bare));
      await until('failed', () => status('bare').phase === 'failed');
      const s = status('bare');
      expect(s.problem?.code).toBe('channel-missing');
      expect(s.problem?.message).toContain("<smartcard mode='passthrough' type='spicevmc'/>");
      expect(s.retry).toBeUndefined();
      await bridge.request('session.remove', { name: 'bare' });
    } finally {
      await bare.stop();
    }
  });

  it('proxy: listening until a viewer links, active while the card is in its session, listening again after', async () => {
    await bridge.addSession({ name: 'proxied', mode: 'proxy', target: `spice://127.0.0.1:${vmB.port!}`, card: { kind: 'demo' }, listen: '127.0.0.1:0' });
    await until('listening', () => status('proxied').phase === 'listening');
    const proxy = status('proxied').proxy;
    expect(proxy?.uri).toMatch(/^spice:\/\/127\.0\.0\.1:\d+$/);
    expect(proxy?.linked).toBe(false);
    const port = Number(proxy!.listen.split(':').at(-1));
    // Our own SPICE client plays the viewer: it links the main channel through the proxy.
    const viewer = new SpiceSession({ transport: createTransport({ host: '127.0.0.1', port, tls: {} }), password: '' });
    await viewer.connect();
    await until('active in the viewer session', () => status('proxied').phase === 'active' && status('proxied').vm.cardInserted);
    expect(status('proxied').proxy?.linked).toBe(true);
    expect(await smartcardChannels(vmB)).toBe(1);
    await viewer.close();
    await until('listening again', () => status('proxied').phase === 'listening');
    expect(status('proxied').vm).toEqual({ readerAdded: false, cardInserted: false });
    await bridge.request('session.remove', { name: 'proxied' });
  });
});
