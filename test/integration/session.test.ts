// The SPICE session layer as a library, against QEMU's spice-server: what keeps a session alive
// and what ends it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiceError } from '../../spice/errors.js';
import { SpiceSession } from '../../spice/session.js';
import { createTransport } from '../../spice/transport.js';
import { checkBinaries } from '../helpers/process.js';
import { startSpiceServer, type SpiceServer } from '../helpers/qemu.js';

const binaries = checkBinaries(['qemu-system-x86_64']);

interface QuerySpice {
  channels: { 'channel-type': number; 'connection-id': number }[];
}

async function spiceChannels(server: SpiceServer): Promise<{ type: number; connectionId: number }[]> {
  const r = (await server.qmp('query-spice')) as QuerySpice;
  // QMP prints the connection id as a signed 32-bit number.
  return r.channels.map((c) => ({ type: c['channel-type'], connectionId: c['connection-id'] >>> 0 }));
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(binaries.skip)(`SPICE session against QEMU ${binaries.reason}`, () => {
  let server: SpiceServer;
  beforeAll(async () => {
    server = await startSpiceServer({});
  });
  afterAll(async () => {
    await server?.stop();
  });

  function session(): SpiceSession {
    return new SpiceSession({ transport: createTransport({ host: '127.0.0.1', port: server.port!, tls: {} }), password: '' });
  }

  it('answers the net-test pings (one of 256 000 bytes) and opens the smartcard channel into its session', async () => {
    const s = session();
    await s.connect();
    expect(s.state).toBe('ready');
    expect(s.sessionId).toBeGreaterThan(0);
    await until(() => s.mainPingsAnswered >= 3, 5_000);
    const sc = await s.openChannel(8, 0);
    sc.start();
    await until(async () => (await spiceChannels(server)).some((c) => c.type === 8 && c.connectionId === s.sessionId), 5_000);
    expect((await spiceChannels(server)).filter((c) => c.connectionId === s.sessionId).map((c) => c.type).sort()).toEqual([1, 8]);
    await s.close();
    expect(s.state).toBe('closed');
  });

  it('stays connected past the 30 s main-channel watchdog', async () => {
    const s = session();
    let closed: SpiceError | undefined | null = null;
    s.on('closed', (e) => (closed = e));
    await s.connect();
    await new Promise((r) => setTimeout(r, 40_000));
    expect(closed).toBeNull();
    expect(s.state).toBe('ready');
    expect((await spiceChannels(server)).some((c) => c.type === 1 && c.connectionId === s.sessionId)).toBe(true);
    await s.close();
  }, 60_000);

  it('is closed with a clear reason when another client opens its own session', async () => {
    const first = session();
    const closedWith = new Promise<SpiceError | undefined>((resolve) => first.once('closed', resolve));
    await first.connect();
    const second = session();
    await second.connect();
    const error = await closedWith;
    expect(error?.message).toMatch(/holds one session at a time/);
    expect(first.state).toBe('closed');
    expect(second.state).toBe('ready');
    await second.close();
  });

  it('refuses to open a channel the server does not have, with EOF read as "no device"', async () => {
    const s = session();
    await s.connect();
    await expect(s.openChannel(9, 0)).rejects.toMatchObject({ kind: 'channel-missing' });
    expect(s.state).toBe('ready');
    await s.close();
  });

  it('tears down within a bounded time even while the server is paused', async () => {
    const s = session();
    await s.connect();
    const t0 = Date.now();
    await s.close();
    expect(Date.now() - t0).toBeLessThan(7_000);
  });
});
