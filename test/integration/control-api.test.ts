// The control server over a real loopback socket: who it refuses (before any WebSocket exists), what
// it refuses after the upgrade, and that every request and event crosses it byte for byte. The
// service behind it is a test double: the server is what is tested here.
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from '@msgpack/msgpack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ControlClient, ControlClientError, type WebSocketConstructorLike } from '../../src/control/client.js';
import { connectNode } from '../../src/control/node-client.js';
import { openStalledClient } from '../helpers/stalled-control-client.js';
import { CONTROL_CLOSE, CONTROL_LIMITS, CONTROL_SUBPROTOCOL, EVENT_TYPES, REQUEST_TYPES, type EventMap, type RequestParams, type RequestResult, type RequestType } from '../../src/control/schema.js';
import { startControlServer, type ControlServer } from '../../src/control/server.js';
import { ControlError, type ControlEvent, type ControlService } from '../../src/control/service.js';
import { newControlToken } from '../../src/control/token.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { SAMPLE_EVENTS, SAMPLE_RESULTS, VALID_PARAMS } from '../helpers/control-fixtures.js';

/** Answers every request with its sample result; a few names trigger the error paths. */
class TestService implements ControlService {
  readonly received: Array<{ type: RequestType; params: unknown }> = [];
  private readonly listeners = new Set<(event: ControlEvent) => void>();
  private readonly held: Array<() => void> = [];

  request<T extends RequestType>(type: T, params: RequestParams<T>): Promise<RequestResult<T>> {
    this.received.push({ type, params });
    const name = (params as { name?: unknown }).name;
    if (name === 'missing') return Promise.reject(new ControlError('not-found', 'No session named "missing".', 'name'));
    if (name === 'crash') return Promise.reject(new Error('secret internal detail'));
    if (name === 'hold') return new Promise((resolve) => this.held.push(() => resolve(SAMPLE_RESULTS[type])));
    return Promise.resolve(SAMPLE_RESULTS[type]);
  }

  subscribe(listener: (event: ControlEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: ControlEvent): void {
    for (const l of this.listeners) l(event);
  }

  release(): void {
    for (const r of this.held.splice(0)) r();
  }
}

interface UpgradeOutcome {
  status: number;
  body: string;
  headers: IncomingHttpHeaders;
}

/** A WebSocket upgrade by hand, so the test sees the exact HTTP answer of a refusal. */
function upgrade(port: number, headers: Record<string, string>, path = '/control'): Promise<UpgradeOutcome> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), ...headers },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: '', headers: res.headers });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

function get(port: number, path: string, options: { method?: string; host?: string } = {}): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.host === undefined ? {} : { Host: options.host } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A raw `ws` client that keeps every frame's bytes, for byte-exact comparisons. */
class RawClient {
  readonly frames: Uint8Array[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.frames.push(new Uint8Array(data));
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('error', () => undefined);
  }

  static async open(port: number, token: string): Promise<RawClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/control`, [CONTROL_SUBPROTOCOL], { headers: { Authorization: `Bearer ${token}` } });
    const client = new RawClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return client;
  }

  async next(): Promise<Uint8Array> {
    while (this.frames.length === 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.frames.shift() as Uint8Array;
  }
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

describe('control API over a real socket', () => {
  let dir: string;
  let service: TestService;
  let server: ControlServer;
  let port: number;
  const token = newControlToken();
  const origin = (): string => `http://127.0.0.1:${port}`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'control-api-'));
    await mkdir(join(dir, 'ui', 'assets'), { recursive: true });
    await writeFile(join(dir, 'ui', 'index.html'), '<!doctype html><title>ui</title><script src="app.js"></script>');
    await writeFile(join(dir, 'ui', 'app.js'), 'console.log(1);');
    await writeFile(join(dir, 'ui', 'assets', 'style.css'), 'body{}');
    await writeFile(join(dir, 'secret.txt'), 'outside the mount');
    await symlink(join(dir, 'secret.txt'), join(dir, 'ui', 'link.txt'));
    await mkdir(join(dir, 'vendor'));
    await writeFile(join(dir, 'vendor', 'msgpack.mjs'), 'export {};');
    service = new TestService();
    server = await startControlServer({ service, host: '127.0.0.1', port: 0, token, staticMounts: { '/': join(dir, 'ui'), '/vendor': join(dir, 'vendor') }, allowedOrigins: ['app://spice-smartcard'] });
    port = server.port;
  });

  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('refused before the upgrade, with an HTTP status and no WebSocket', () => {
    const withProtocol = (extra: Record<string, string>): Record<string, string> => ({ 'Sec-WebSocket-Protocol': CONTROL_SUBPROTOCOL, ...extra });

    it('no token', async () => {
      const r = await upgrade(port, withProtocol({}));
      expect(r.status).toBe(401);
      expect(r.body).toMatch(/No control token/);
    });

    it('wrong token, as a header or as a subprotocol', async () => {
      expect((await upgrade(port, withProtocol({ Authorization: `Bearer ${newControlToken()}` }))).status).toBe(401);
      expect((await upgrade(port, withProtocol({ Authorization: `Bearer ${token.slice(0, 10)}` }))).status).toBe(401);
      const r = await upgrade(port, { 'Sec-WebSocket-Protocol': `${CONTROL_SUBPROTOCOL}, token.${newControlToken()}` });
      expect(r.status).toBe(401);
      expect(r.body).toMatch(/Wrong control token/);
    });

    it('the token in the query string only', async () => {
      const r = await upgrade(port, withProtocol({}), `/control?token=${token}`);
      expect(r.status).toBe(401);
    });

    it('a foreign Origin, even with the right token', async () => {
      for (const foreign of ['http://evil.example', `http://127.0.0.1:${port + 1}`, `https://127.0.0.1:${port}`, 'null']) {
        const r = await upgrade(port, withProtocol({ Authorization: `Bearer ${token}`, Origin: foreign }));
        expect(r.status, foreign).toBe(403);
      }
    });

    it('a foreign Host (DNS rebinding)', async () => {
      const r = await upgrade(port, withProtocol({ Authorization: `Bearer ${token}`, Host: `attacker.example:${port}` }));
      expect(r.status).toBe(421);
    });

    it('no control subprotocol', async () => {
      const r = await upgrade(port, { Authorization: `Bearer ${token}` });
      expect(r.status).toBe(400);
      expect(r.body).toContain(CONTROL_SUBPROTOCOL);
      expect((await upgrade(port, { 'Sec-WebSocket-Protocol': `chat, token.${token}` })).status).toBe(400);
    });

    it('another path', async () => {
      expect((await upgrade(port, withProtocol({ Authorization: `Bearer ${token}` }), '/ws')).status).toBe(404);
    });
  });

  describe('accepted', () => {
    it('a Node client with the token as a Bearer header and no Origin', async () => {
      const client = await connectNode(server.url, token);
      await expect(client.request('status.get', {})).resolves.toEqual(SAMPLE_RESULTS['status.get']);
      await client.close();
    });

    it('a browser-style client: token as a subprotocol, the server own Origin, answered with the control protocol only', async () => {
      for (const own of [origin(), `http://localhost:${port}`, 'app://spice-smartcard']) {
        let answered: string | undefined;
        class BrowserLike extends WebSocket {
          constructor(url: string, protocols: string[]) {
            super(url, protocols, { origin: own });
            this.once('upgrade', (res) => (answered = res.headers['sec-websocket-protocol']));
          }
        }
        const client = new ControlClient({ WebSocket: BrowserLike as unknown as WebSocketConstructorLike });
        await client.connect(server.url, token);
        expect(answered, own).toBe(CONTROL_SUBPROTOCOL);
        await expect(client.request('readers.list', {})).resolves.toEqual(SAMPLE_RESULTS['readers.list']);
        await client.close();
      }
    });
  });

  describe('round trips, byte for byte', () => {
    it.each(REQUEST_TYPES.map((t) => [t]))('%s: params reach the service intact; the result comes back as the service made it', async (type) => {
      const raw = await RawClient.open(port, token);
      const id = 1000 + REQUEST_TYPES.indexOf(type);
      const before = service.received.length;
      raw.ws.send(encode({ kind: 'request', id, type, params: VALID_PARAMS[type] }, { ignoreUndefined: true }));
      const frame = await raw.next();
      expect(hex(frame)).toBe(hex(encode({ kind: 'result', id, type, result: SAMPLE_RESULTS[type] }, { ignoreUndefined: true })));
      const received = service.received.slice(before);
      expect(received).toHaveLength(1);
      expect(received[0]?.type).toBe(type);
      expect(hex(encode(received[0]?.params))).toBe(hex(encode(VALID_PARAMS[type], { ignoreUndefined: true })));
      raw.ws.close();
    });

    it('the typed client gets every result, Uint8Array fields included', async () => {
      const client = await connectNode(server.url, token);
      for (const type of REQUEST_TYPES) {
        const result = await client.request(type, VALID_PARAMS[type] as never);
        expect(result, type).toEqual(SAMPLE_RESULTS[type]);
      }
      const imported = service.received.filter((r) => r.type === 'softcard.import').at(-1)?.params as RequestParams<'softcard.import'>;
      expect(imported.p12).toBeInstanceOf(Uint8Array);
      expect(hex(imported.p12)).toBe(hex(VALID_PARAMS['softcard.import'].p12));
      await client.close();
    });

    it('every event reaches every client', async () => {
      const a = await RawClient.open(port, token);
      const b = await connectNode(server.url, token);
      const typed: unknown[] = [];
      for (const type of EVENT_TYPES) b.on(type, (data) => typed.push({ type, data }));
      for (const type of EVENT_TYPES) service.emit({ type, data: SAMPLE_EVENTS[type] } as ControlEvent);
      for (const type of EVENT_TYPES) {
        expect(hex(await a.next()), type).toBe(hex(encode({ kind: 'event', type, data: SAMPLE_EVENTS[type] }, { ignoreUndefined: true })));
      }
      await expect.poll(() => typed.length).toBe(EVENT_TYPES.length);
      expect(typed).toEqual(EVENT_TYPES.map((type) => ({ type, data: SAMPLE_EVENTS[type] })));
      a.ws.close();
      await b.close();
    });

    it('a ControlError goes to the client as it is; any other failure becomes a generic internal error', async () => {
      const client = await connectNode(server.url, token);
      await expect(client.request('session.stop', { name: 'missing' })).rejects.toMatchObject({ body: { code: 'not-found', message: 'No session named "missing".', path: 'name' } });
      const crash = await client.request('session.start', { name: 'crash' }).catch((e: unknown) => e);
      expect(crash).toBeInstanceOf(ControlClientError);
      expect((crash as ControlClientError).body.code).toBe('internal');
      expect((crash as ControlClientError).message).not.toContain('secret');
      await client.close();
    });
  });

  describe('refused after the upgrade', () => {
    it('a malformed request with a readable id: a bad-request error, and the connection stays', async () => {
      const raw = await RawClient.open(port, token);
      raw.ws.send(encode({ kind: 'request', id: 5, type: 'session.remove', params: { name: 42 } }));
      expect(decode(await raw.next())).toEqual({ kind: 'error', id: 5, error: { code: 'bad-request', message: 'params.name: must be a string', path: 'params.name' } });
      raw.ws.send(encode({ kind: 'request', id: 6, type: 'no.such', params: {} }));
      expect(decode(await raw.next())).toMatchObject({ kind: 'error', id: 6, error: { code: 'bad-request' } });
      raw.ws.send(encode({ kind: 'request', id: 7, type: 'status.get', params: {} }));
      expect(decode(await raw.next())).toMatchObject({ kind: 'result', id: 7 });
      raw.ws.close();
    });

    it.each([
      ['a text frame', (ws: WebSocket) => ws.send('{"kind":"request"}'), /Text frames/],
      ['garbage bytes', (ws: WebSocket) => ws.send(Uint8Array.from([0xc1, 0xff, 0x00])), /not valid msgpack/],
      ['msgpack with trailing bytes', (ws: WebSocket) => ws.send(Uint8Array.from([...encode({ kind: 'request' }), 0x01])), /not valid msgpack/],
      ['a request without a usable id', (ws: WebSocket) => ws.send(encode({ kind: 'request', id: 'x', type: 'status.get', params: {} })), /^id: /],
      ['a msgpack array', (ws: WebSocket) => ws.send(encode([1, 2, 3])), /must be a map/],
    ])('%s: closed with 4400 and a reason', async (_name, sendBad, reason) => {
      const raw = await RawClient.open(port, token);
      sendBad(raw.ws);
      const closed = await raw.closed;
      expect(closed.code).toBe(CONTROL_CLOSE.protocolError);
      expect(closed.reason).toMatch(reason);
    });

    it('an oversized message: closed, and the server keeps serving others', async () => {
      const other = await connectNode(server.url, token);
      const raw = await RawClient.open(port, token);
      raw.ws.send(encode({ kind: 'request', id: 1, type: 'softcard.import', params: { ...VALID_PARAMS['softcard.import'], p12: new Uint8Array(CONTROL_LIMITS.maxMessageBytes + 1) } }));
      const closed = await raw.closed;
      expect(closed.code).toBe(1009);
      await expect(other.request('status.get', {})).resolves.toEqual(SAMPLE_RESULTS['status.get']);
      const again = await connectNode(server.url, token);
      await expect(again.request('log.tail', {})).resolves.toEqual(SAMPLE_RESULTS['log.tail']);
      await other.close();
      await again.close();
    });

    it('more pending requests than the limit: busy, and the held ones still get their answers', async () => {
      const raw = await RawClient.open(port, token);
      const max = CONTROL_LIMITS.maxPendingRequests;
      for (let id = 1; id <= max + 1; id++) raw.ws.send(encode({ kind: 'request', id, type: 'session.start', params: { name: 'hold' } }));
      expect(decode(await raw.next())).toMatchObject({ kind: 'error', id: max + 1, error: { code: 'busy' } });
      service.release();
      const ids = new Set<number>();
      for (let i = 0; i < max; i++) {
        const m = decode(await raw.next()) as { kind: string; id: number };
        expect(m.kind).toBe('result');
        ids.add(m.id);
      }
      expect(ids.size).toBe(max);
      raw.ws.close();
    });
  });

  describe('static files', () => {
    it('serves index.html with the CSP, nosniff and no-store', async () => {
      const r = await get(port, '/');
      expect(r.status).toBe(200);
      expect(r.body).toContain('<title>ui</title>');
      expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(r.headers['cache-control']).toBe('no-store');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      const csp = r.headers['content-security-policy'] ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("style-src 'self'");
      expect(csp).toContain(`connect-src 'self' ws://127.0.0.1:${port}`);
      expect((await get(port, '/index.html')).headers['cache-control']).toBe('no-store');
    });

    it('serves other files with their MIME type; HEAD has no body', async () => {
      expect((await get(port, '/app.js')).headers['content-type']).toBe('text/javascript; charset=utf-8');
      const css = await get(port, '/assets/style.css');
      expect([css.status, css.body, css.headers['content-type']]).toEqual([200, 'body{}', 'text/css; charset=utf-8']);
      const vendor = await get(port, '/vendor/msgpack.mjs');
      expect([vendor.status, vendor.body, vendor.headers['content-type']]).toEqual([200, 'export {};', 'text/javascript; charset=utf-8']);
      const bare = await get(port, '/vendor');
      expect([bare.status, bare.headers.location]).toEqual([301, '/vendor/']);
      const head = await get(port, '/app.js', { method: 'HEAD' });
      expect([head.status, head.body, head.headers['content-length']]).toEqual([200, '', '15']);
    });

    it('refuses traversal, directory listings, unknown paths, other methods and foreign hosts', async () => {
      for (const path of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/assets%2f..%2f..%2fsecret.txt', '/..%5csecret.txt']) {
        const r = await get(port, path);
        expect([400, 404], path).toContain(r.status);
        expect(r.body, path).not.toContain('outside the mount');
      }
      const link = await get(port, '/link.txt');
      expect([link.status, link.body]).toEqual([404, 'Not found.\n']);
      expect((await get(port, '/assets/')).status).toBe(404);
      expect((await get(port, '/nope.js')).status).toBe(404);
      expect((await get(port, '/app.js', { method: 'POST' })).status).toBe(405);
      expect((await get(port, '/', { host: `rebind.example:${port}` })).status).toBe(421);
      expect((await get(port, '/control')).status).toBe(426);
    });
  });

  it('refuses a non-loopback host unless allowRemote, which still wants the token and a same-host origin', async () => {
    await expect(startControlServer({ service, host: '0.0.0.0', port: 0, token })).rejects.toThrow(/loopback only/);
    await expect(startControlServer({ service, host: '192.0.2.1', port: 0, token })).rejects.toThrow(/loopback only/);
    const remote = await startControlServer({ service: new TestService(), host: '0.0.0.0', port: 0, token, allowRemote: true });
    try {
      const headers = { 'Sec-WebSocket-Protocol': CONTROL_SUBPROTOCOL, Authorization: `Bearer ${token}`, Host: `bridge.lan:${remote.port}` };
      // A page served under the name the browser used is the server's own; any other origin is not.
      expect((await upgrade(remote.port, { ...headers, Origin: `http://bridge.lan:${remote.port}` })).status).toBe(101);
      expect((await upgrade(remote.port, { ...headers, Origin: 'http://evil.example' })).status).toBe(403);
      expect((await upgrade(remote.port, { ...headers, Authorization: 'Bearer nope' })).status).toBe(401);
    } finally {
      await remote.close();
    }
  });

  it('closes a client that stops reading instead of buffering for it without bound', async () => {
    const own = new TestService();
    const warnings: string[] = [];
    const other = await startControlServer({ service: own, host: '127.0.0.1', port: 0, token, maxBufferedBytes: 4 * 1024 * 1024, log: { log: (level, message) => level === 'warn' && warnings.push(message) } });
    try {
      const reader = await connectNode(other.url, token);
      const readerLines: unknown[] = [];
      reader.on('log', (data) => readerLines.push(data.line.time));
      const { socket: stalled, gone, head } = await openStalledClient(other.port, token);
      expect(head).toMatch(/^HTTP\/1\.1 101 /);
      const big = 'x'.repeat(512 * 1024);
      for (let i = 0; i < 60 && warnings.length === 0; i++) {
        own.emit({ type: 'log', data: { line: { time: i, level: 'info', message: big } } });
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(warnings.join('\n')).toMatch(/stopped reading/);
      stalled.resume();
      await gone;
      // The reading client got every event and stays connected.
      await expect.poll(() => readerLines.length).toBeGreaterThan(0);
      await expect(reader.request('status.get', {})).resolves.toEqual(SAMPLE_RESULTS['status.get']);
      await reader.close();
    } finally {
      await other.close();
    }
  });

  it('close() ends every client with 4503 and stops listening', async () => {
    const own = new TestService();
    const other = await startControlServer({ service: own, host: '127.0.0.1', port: 0, token });
    const a = await connectNode(other.url, token);
    const raw = await RawClient.open(other.port, token);
    const closes: unknown[] = [];
    a.on('closed', (info) => closes.push(info.code));
    const pending = a.request('session.start', { name: 'hold' }).catch((e: unknown) => e);
    await expect.poll(() => own.received.length).toBe(1);
    await other.close();
    expect((await raw.closed).code).toBe(CONTROL_CLOSE.shuttingDown);
    expect(String(await pending)).toMatch(/closed \(code 4503/);
    expect(closes).toEqual([CONTROL_CLOSE.shuttingDown]);
    await expect(connectNode(other.url, token)).rejects.toThrow(/Nothing listens/);
  });

  it('drives a real ServeBridge: a demo-card session added, listed, its soft cards made, and removed, with events', async () => {
    const bridge = new ServeBridge({ log: { log: () => undefined }, version: '0.1.0-test', cardDirectory: join(dir, 'cards'), pcsc: false });
    const real = await startControlServer({ service: bridge, host: '127.0.0.1', port: 0, token });
    try {
      const client = await connectNode(real.url, token);
      const sessions: Array<EventMap['session']> = [];
      const removed: string[] = [];
      client.on('session', (data) => sessions.push(data));
      client.on('session.removed', (data) => removed.push(data.name));

      const added = await client.request('session.add', { spec: { name: 'demo', mode: 'connect', target: 'spice://127.0.0.1:1', card: { kind: 'demo' }, autostart: false } });
      expect([added.name, added.phase, added.card.source]).toEqual(['demo', 'stopped', { kind: 'demo' }]);
      await expect.poll(() => sessions.some((e) => e.status.name === 'demo')).toBe(true);
      const snapshot = await client.request('status.get', {});
      expect(snapshot.apiVersion).toBe(1);
      expect(snapshot.sessions.map((s) => s.name)).toEqual(['demo']);
      expect(snapshot.pcsc.available).toBe(false);

      const bad = await client.request('session.add', { spec: { name: 'x', mode: 'teleport', target: 'spice://h:1', card: { kind: 'demo' } } as never }).catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(ControlClientError);
      expect((bad as ControlClientError).body).toMatchObject({ code: 'invalid-params', path: 'spec.mode' });
      await expect(client.request('session.stop', { name: 'nobody' })).rejects.toMatchObject({ body: { code: 'not-found' } });

      const created = await client.request('softcard.create', { path: 'bob.card', subject: 'CN=Bob', key: 'p256', slots: ['9a'], pin: '654321' });
      expect(created.slots.map((s) => [s.slot, s.subject])).toEqual([['9a', 'CN=Bob']]);
      await expect(client.request('softcard.show', { path: 'bob.card' })).resolves.toEqual(created);

      await expect(client.request('session.remove', { name: 'demo' })).resolves.toEqual({});
      await expect.poll(() => removed).toEqual(['demo']);
      const tail = await client.request('log.tail', {});
      expect(tail.lines.length).toBeGreaterThan(0);
      expect(JSON.stringify(tail)).not.toContain('654321');
      await client.close();
    } finally {
      await real.close();
      await bridge.close();
    }
  });
});
