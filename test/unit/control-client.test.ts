import { decode, encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { ControlClient, ControlClientError, ControlConnectionError, controlSocketUrl, type WebSocketLike } from '../../src/control/client.js';
import { CONTROL_LIMITS, CONTROL_SUBPROTOCOL } from '../../src/control/schema.js';
import { SAMPLE_EVENTS, SAMPLE_RESULTS, VALID_PARAMS } from '../helpers/control-fixtures.js';

/** An in-memory WebSocket: the test plays the server through `deliver`, `open` and `serverClose`. */
class FakeSocket implements WebSocketLike {
  static last: FakeSocket | undefined;
  binaryType = 'blob';
  readyState = 0;
  readonly sent: Array<Record<string, unknown>> = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((event: never) => void) | null = null;
  onmessage: ((event: never) => void) | null = null;
  onclose: ((event: never) => void) | null = null;
  onerror: ((event: never) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    FakeSocket.last = this;
  }

  send(data: Uint8Array): void {
    this.sent.push(decode(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.serverClose(code ?? 1005, reason ?? '');
  }

  open(): void {
    this.readyState = 1;
    (this.onopen as ((e: object) => void) | null)?.({});
  }

  deliver(message: unknown): void {
    const bytes = encode(message, { ignoreUndefined: true });
    this.deliverRaw(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }

  deliverRaw(data: unknown): void {
    (this.onmessage as ((e: { data: unknown }) => void) | null)?.({ data });
  }

  fail(message?: string): void {
    (this.onerror as ((e: { message?: string }) => void) | null)?.(message === undefined ? {} : { message });
  }

  serverClose(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    (this.onclose as ((e: { code: number; reason: string }) => void) | null)?.({ code, reason });
  }
}

async function connected(): Promise<{ client: ControlClient; socket: FakeSocket }> {
  const client = new ControlClient({ WebSocket: FakeSocket });
  const done = client.connect('http://127.0.0.1:4000/', 'ab'.repeat(32));
  const socket = FakeSocket.last as FakeSocket;
  socket.open();
  await done;
  return { client, socket };
}

describe('ControlClient', () => {
  it('connects to /control with the protocol and the token as subprotocols, in arraybuffer mode', async () => {
    const { socket, client } = await connected();
    expect(socket.url).toBe('ws://127.0.0.1:4000/control');
    expect(socket.protocols).toEqual([CONTROL_SUBPROTOCOL, `token.${'ab'.repeat(32)}`]);
    expect(socket.binaryType).toBe('arraybuffer');
    expect(client.connected).toBe(true);
  });

  it('maps control URLs and refuses others', () => {
    expect(controlSocketUrl('https://host:8443/ui/?x=1#token=abc')).toBe('wss://host:8443/control');
    expect(controlSocketUrl('ws://127.0.0.1:9/control')).toBe('ws://127.0.0.1:9/control');
    expect(() => controlSocketUrl('ftp://host/')).toThrow(ControlConnectionError);
    expect(() => controlSocketUrl('not a url')).toThrow(ControlConnectionError);
  });

  it('sends requests with distinct ids and resolves each with its own result, in any order', async () => {
    const { client, socket } = await connected();
    const a = client.request('status.get', {});
    const b = client.request('softcard.import', VALID_PARAMS['softcard.import']);
    expect(socket.sent).toHaveLength(2);
    const [first, second] = socket.sent;
    expect(first).toMatchObject({ kind: 'request', type: 'status.get', params: {} });
    expect(second).toMatchObject({ kind: 'request', type: 'softcard.import' });
    expect((second?.['params'] as { p12: Uint8Array }).p12).toEqual(VALID_PARAMS['softcard.import'].p12);
    expect(first?.['id']).not.toBe(second?.['id']);
    socket.deliver({ kind: 'result', id: second?.['id'], type: 'softcard.import', result: SAMPLE_RESULTS['softcard.import'] });
    socket.deliver({ kind: 'result', id: first?.['id'], type: 'status.get', result: SAMPLE_RESULTS['status.get'] });
    await expect(b).resolves.toEqual(SAMPLE_RESULTS['softcard.import']);
    await expect(a).resolves.toEqual(SAMPLE_RESULTS['status.get']);
  });

  it('rejects with a ControlClientError carrying the server error body', async () => {
    const { client, socket } = await connected();
    const p = client.request('session.stop', { name: 'nope' });
    socket.deliver({ kind: 'error', id: socket.sent[0]?.['id'], error: { code: 'not-found', message: 'No session "nope".', path: 'name' } });
    const error = await p.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ControlClientError);
    expect((error as ControlClientError).body).toEqual({ code: 'not-found', message: 'No session "nope".', path: 'name' });
    expect((error as ControlClientError).code).toBe('not-found');
  });

  it('delivers events to the listeners of their type until they unsubscribe; unknown event types are ignored', async () => {
    const { client, socket } = await connected();
    const seen: unknown[] = [];
    const stop = client.on('counters', (data) => seen.push(data.counters.answered));
    client.on('log', (data) => seen.push(data.line.message));
    socket.deliver({ kind: 'event', type: 'counters', data: SAMPLE_EVENTS.counters });
    socket.deliver({ kind: 'event', type: 'log', data: SAMPLE_EVENTS.log });
    socket.deliver({ kind: 'event', type: 'from-the-future', data: {} });
    stop();
    socket.deliver({ kind: 'event', type: 'counters', data: SAMPLE_EVENTS.counters });
    expect(seen).toEqual([12, 'wrong password']);
    expect(client.connected).toBe(true);
  });

  it('fails every pending request when the socket closes, notifies "closed" with the reason, and refuses new requests', async () => {
    const { client, socket } = await connected();
    const closes: unknown[] = [];
    client.on('closed', (info) => closes.push(info));
    const a = client.request('session.start', { name: 'a' });
    const b = client.request('log.tail', {});
    socket.serverClose(4503, 'spice-smartcard serve is shutting down.');
    await expect(a).rejects.toThrow(ControlConnectionError);
    await expect(b).rejects.toThrow(/closed \(code 4503: spice-smartcard serve is shutting down\.\) before the answer to log\.tail came/);
    expect(closes).toEqual([{ code: 4503, reason: 'spice-smartcard serve is shutting down.' }]);
    await expect(client.request('status.get', {})).rejects.toThrow(/connection is closed \(code 4503/);
  });

  it('close() closes the socket and resolves with the close info', async () => {
    const { client, socket } = await connected();
    const pending = client.request('status.get', {});
    await expect(client.close()).resolves.toEqual({ code: 1000, reason: 'client closing' });
    expect(socket.closedWith).toEqual({ code: 1000, reason: 'client closing' });
    await expect(pending).rejects.toThrow(ControlConnectionError);
  });

  it('rejects connect with the socket error when the server refuses', async () => {
    const client = new ControlClient({ WebSocket: FakeSocket });
    const done = client.connect('http://127.0.0.1:4000/', 'wrong');
    const socket = FakeSocket.last as FakeSocket;
    socket.fail('Unexpected server response: 401');
    socket.serverClose(1006, '');
    await expect(done).rejects.toThrow(/Could not connect to the control server at ws:\/\/127\.0\.0\.1:4000\/control: Unexpected server response: 401/);
    const browserLike = new ControlClient({ WebSocket: FakeSocket });
    const refused = browserLike.connect('http://127.0.0.1:4000/', 'wrong');
    (FakeSocket.last as FakeSocket).fail();
    (FakeSocket.last as FakeSocket).serverClose(1006, '');
    await expect(refused).rejects.toThrow(/closed with code 1006/);
  });

  it('closes with 4400 when the server breaks the protocol, failing pending requests', async () => {
    for (const bad of ['a text frame', new Uint8Array([0xc1]).buffer, encode([1, 2]).buffer, encode({ kind: 'result', id: 999, type: 'status.get', result: {} }).buffer]) {
      const { client, socket } = await connected();
      const pending = client.request('status.get', {});
      socket.deliverRaw(bad);
      expect(socket.closedWith?.code).toBe(4400);
      await expect(pending).rejects.toThrow(ControlConnectionError);
    }
  });

  it('refuses to send a request over the size limit without sending anything', async () => {
    const { client, socket } = await connected();
    const big = { ...VALID_PARAMS['softcard.import'], p12: new Uint8Array(CONTROL_LIMITS.maxMessageBytes) };
    await expect(client.request('softcard.import', big)).rejects.toMatchObject({ body: { code: 'bad-request' } });
    expect(socket.sent).toHaveLength(0);
  });
});
