// The desktop app's bridge process (app/bridge/utility-entry.js, built) run under plain Node with a
// stand-in for Electron's parentPort: it reports where its control server is, serves the web UI there,
// carries out requests from main, forwards events, and on 'stop' closes everything and exits 0. It
// listens on the port main asks for, so the page's origin stays the same, and on a free one (saying so
// in its log) when another program holds that port.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FromBridge } from '../../app/shared/bridge-messages.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ENTRY = join(ROOT, 'dist', 'app', 'bridge', 'utility-entry.js');
const SHIM = join(ROOT, 'dist', 'test', 'ui', 'parent-port-shim.js');

describe('the bridge utility process', () => {
  let dir: string;
  let child: ChildProcess;
  const received: FromBridge[] = [];
  const waiters: Array<() => void> = [];

  const next = async <K extends FromBridge['kind']>(kind: K, match: (m: Extract<FromBridge, { kind: K }>) => boolean = () => true): Promise<Extract<FromBridge, { kind: K }>> => {
    for (;;) {
      const found = received.find((m): m is Extract<FromBridge, { kind: K }> => m.kind === kind && match(m as Extract<FromBridge, { kind: K }>));
      if (found !== undefined) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };

  beforeAll(async () => {
    if (!existsSync(ENTRY) || !existsSync(SHIM)) throw new Error('dist/ is not built: run `npm run build` first.');
    dir = await mkdtemp(join(tmpdir(), 'app-utility-'));
    child = fork(ENTRY, ['--version', '9.9.9-test', '--card-directory', dir], {
      execArgv: ['--import', SHIM],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    child.on('message', (message) => {
      received.push(message as FromBridge);
      for (const w of waiters.splice(0)) w();
    });
  });

  afterAll(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('reports its control server, which serves the web UI', async () => {
    const ready = await next('ready');
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(ready.token).toMatch(/^[0-9a-f]{64}$/);
    const page = await fetch(ready.url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>spice-smartcard</title>');
  });

  it('carries out requests from main and answers errors with the bridge message', async () => {
    child.send({ kind: 'request', id: 1, type: 'status.get', params: {} });
    const status = await next('result', (m) => m.id === 1);
    expect(status.result).toMatchObject({ apiVersion: 1, bridge: { version: '9.9.9-test' }, sessions: [] });
    child.send({ kind: 'request', id: 2, type: 'session.stop', params: { name: 'nope' } });
    const error = await next('error', (m) => m.id === 2);
    expect(error.error.code).toBe('not-found');
    child.send({ kind: 'request', id: 3, type: 'session.add', params: { spec: { name: 'bad name!', mode: 'connect', target: 'spice://h:1', card: { kind: 'demo' } } } });
    expect((await next('error', (m) => m.id === 3)).error.code).toBe('invalid-params');
  });

  it('forwards bridge events to main', async () => {
    child.send({ kind: 'request', id: 4, type: 'session.add', params: { spec: { name: 'ev', mode: 'connect', target: 'spice://127.0.0.1:1', card: { kind: 'demo' }, autostart: false } } });
    await next('result', (m) => m.id === 4);
    const event = await next('event', (m) => m.event.type === 'session');
    expect(event.event.type === 'session' && event.event.data.status.name).toBe('ev');
  });

  it('ignores junk from main', async () => {
    for (const junk of [false, 7, 'stop', { kind: 'request' }, { kind: 'nope' }, { kind: 'request', id: 'x', type: 3 }]) child.send(junk);
    child.send({ kind: 'request', id: 5, type: 'status.get', params: {} });
    await next('result', (m) => m.id === 5);
    expect(child.exitCode).toBeNull();
  });

  it("stops everything on 'stop' and exits 0", async () => {
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.send({ kind: 'stop' });
    expect(await exited).toBe(0);
  });
});

describe('the bridge utility process stopped while starting', () => {
  let child: ChildProcess | undefined;
  // afterAll, not finally: a test that times out never reaches its finally block.
  afterAll(() => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it("exits 0 on a 'stop' that arrives before it is ready", async () => {
    child = fork(ENTRY, ['--version', 'early'], { execArgv: ['--import', SHIM], serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const started = child;
    const exited = new Promise<number | null>((resolve) => started.once('exit', (code) => resolve(code)));
    started.send({ kind: 'stop' });
    expect(await exited).toBe(0);
  });
});

/** One utility process under plain Node, with what it posted so far. */
function launch(args: string[]) {
  const child = fork(ENTRY, args, { execArgv: ['--import', SHIM], serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const received: FromBridge[] = [];
  const waiters: Array<() => void> = [];
  child.on('message', (message) => {
    received.push(message as FromBridge);
    for (const w of waiters.splice(0)) w();
  });
  child.on('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  const next = async <K extends FromBridge['kind']>(kind: K, match: (m: Extract<FromBridge, { kind: K }>) => boolean = () => true): Promise<Extract<FromBridge, { kind: K }>> => {
    for (;;) {
      const found = received.find((m): m is Extract<FromBridge, { kind: K }> => m.kind === kind && match(m as Extract<FromBridge, { kind: K }>));
      if (found !== undefined) return found;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the utility process exited (${child.exitCode ?? child.signalCode}) before posting '${kind}': ${JSON.stringify(received)}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.send({ kind: 'stop' });
    return exited;
  };
  return { child, next, stop };
}

const portOfUrl = (url: string): number => Number(new URL(url).port);

describe('the bridge utility process and the port main asks for', () => {
  const launched: Array<ReturnType<typeof launch>> = [];
  afterAll(() => {
    for (const { child } of launched) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const start = (args: string[]) => {
    const bridge = launch(args);
    launched.push(bridge);
    return bridge;
  };

  let port = 0;

  it('listens on the port the last run had, once that run is gone (the page keeps its origin)', async () => {
    const first = start(['--version', 'port-first']);
    const before = await first.next('ready');
    port = portOfUrl(before.url);
    // A page that was connected leaves the port with closed connections behind; it is free all the same.
    expect((await fetch(before.url)).status).toBe(200);
    expect(await first.stop()).toBe(0);

    const again = start(['--version', 'port-again', '--port', String(port)]);
    const after = await again.next('ready');
    expect(after.url).toBe(before.url);
    expect(after.token).not.toBe(before.token);
    expect((await fetch(after.url)).status).toBe(200);
    expect(await warnings(again, 'is taken')).toEqual([]);
  });

  it('listens on a free port when another program holds that one, and says so in its log', async () => {
    // The bridge from the case before still holds `port`.
    expect(port).toBeGreaterThan(0);
    const other = start(['--version', 'port-taken', '--port', String(port)]);
    const ready = await other.next('ready');
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(portOfUrl(ready.url)).not.toBe(port);
    const page = await fetch(ready.url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>spice-smartcard</title>');
    const said = await warnings(other, 'is taken');
    expect(said).toHaveLength(1);
    expect(said[0]).toContain(`127.0.0.1:${port}`);
    expect(said[0]).toContain(`127.0.0.1:${portOfUrl(ready.url)} instead`);
    expect(said[0]).toContain('recent connections');
    for (const bridge of launched) expect(await bridge.stop()).toBe(0);
  });

  it('ignores a port that is not one it could ask for, and starts on a free one', async () => {
    const bridge = start(['--version', 'port-bad', '--port', '80; echo']);
    const ready = await bridge.next('ready');
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(await warnings(bridge, 'is taken')).toEqual([]);
    expect(await bridge.stop()).toBe(0);
  });

  let requestId = 100;
  async function warnings(bridge: ReturnType<typeof launch>, containing: string): Promise<string[]> {
    const id = requestId++;
    bridge.child.send({ kind: 'request', id, type: 'log.tail', params: {} });
    const tail = await bridge.next('result', (m) => m.id === id);
    const lines = tail.type === 'log.tail' ? tail.result.lines : [];
    return lines.filter((l) => l.level === 'warn' && l.message.includes(containing)).map((l) => l.message);
  }
});
