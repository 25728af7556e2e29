// Who the control server answers to, by the address it is bound to: another loopback address (the
// connection file's URL names it, so clients send it as Host and Origin), and allowRemote on loopback;
// what refused knocks leave in the log; a client that stops reading when the log is an event; and
// an error body quoting a huge input.
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ControlClientError } from '../../src/control/client.js';
import { connectNode } from '../../src/control/node-client.js';
import { ControlError, type ControlService } from '../../src/control/service.js';
import { CONTROL_SUBPROTOCOL } from '../../src/control/schema.js';
import { openStalledClient } from '../helpers/stalled-control-client.js';
import { startControlServer } from '../../src/control/server.js';
import { newControlToken } from '../../src/control/token.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { ServeLogger } from '../../src/serve/logger.js';

function upgradeStatus(url: URL, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: url.hostname,
      port: url.port,
      path: '/control',
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), ...headers },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('control server seams', () => {
  it('answers clients that name the address it is bound to, and still refuses other names', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false });
    const token = newControlToken();
    const server = await startControlServer({ service: bridge, host: '127.0.0.2', port: 0, token });
    try {
      expect(server.url).toBe(`http://127.0.0.2:${server.port}/`);
      const client = await connectNode(server.url, token);
      expect((await client.request('status.get', {})).sessions).toEqual([]);
      await client.close();
      const url = new URL(server.url);
      const protocols = `${CONTROL_SUBPROTOCOL}, token.${token}`;
      // A page served from the bound address may open the socket; a rebinding name may not.
      expect(await upgradeStatus(url, { 'Sec-WebSocket-Protocol': protocols, Origin: `http://127.0.0.2:${server.port}` })).toBe(101);
      expect(await upgradeStatus(url, { 'Sec-WebSocket-Protocol': protocols, Host: `evil.example:${server.port}` })).toBe(421);
    } finally {
      await server.close();
      await bridge.close();
    }
  });

  it('allowRemote on a loopback bind keeps the DNS-rebinding guard: only a remote bind drops it', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false });
    const token = newControlToken();
    const server = await startControlServer({ service: bridge, host: '127.0.0.1', port: 0, token, allowRemote: true });
    try {
      const url = new URL(server.url);
      const protocols = `${CONTROL_SUBPROTOCOL}, token.${token}`;
      expect(await upgradeStatus(url, { 'Sec-WebSocket-Protocol': protocols })).toBe(101);
      // A page of evil.example whose name now resolves to 127.0.0.1.
      expect(await upgradeStatus(url, { 'Sec-WebSocket-Protocol': protocols, Host: `evil.example:${server.port}`, Origin: `http://evil.example:${server.port}` })).toBe(421);
    } finally {
      await server.close();
      await bridge.close();
    }
  });

  it('refused knocks do not flood the log: one line per interval, counting the rest', async () => {
    const lines: string[] = [];
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false });
    const server = await startControlServer({ service: bridge, host: '127.0.0.1', port: 0, token: newControlToken(), log: { log: (_level, message) => lines.push(message) } });
    try {
      const url = new URL(server.url);
      for (let i = 0; i < 20; i++) {
        expect(await upgradeStatus(url, { 'Sec-WebSocket-Protocol': `${CONTROL_SUBPROTOCOL}, token.${'0'.repeat(64)}` })).toBe(401);
      }
      const refused = lines.filter((l) => l.startsWith('Refused a control connection'));
      expect(refused.length).toBeGreaterThan(0);
      expect(refused.length).toBeLessThan(5);
    } finally {
      await server.close();
      await bridge.close();
    }
  });

  it('a client that stops reading is closed once, with one log line, when the log itself is an event (as in serve)', async () => {
    const bridge = new ServeBridge({ log: new ServeLogger({ write: () => undefined }), version: 't', pcsc: false });
    const token = newControlToken();
    // As startServe wires it: the server's own lines go through the bridge, which sends them as log events.
    const server = await startControlServer({ service: bridge, host: '127.0.0.1', port: 0, token, maxBufferedBytes: 2 * 1024 * 1024, log: { log: (level, message, session) => bridge.record(level, message, session) } });
    try {
      const { socket: stalled, gone } = await openStalledClient(server.port, token);
      const slowLines = async (): Promise<string[]> =>
        (await bridge.request('log.tail', {})).lines.map((l) => l.message).filter((m) => m.includes('stopped reading'));
      const big = 'x'.repeat(256 * 1024);
      for (let i = 0; i < 80 && (await slowLines()).length === 0; i++) {
        bridge.record('info', big);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(await slowLines()).toHaveLength(1);
      stalled.resume();
      await gone;
    } finally {
      await server.close();
      await bridge.close();
    }
  });

  it('an error whose text quotes a huge input is cut short, so the client gets it instead of losing its connection', async () => {
    const service: ControlService = {
      request: () => Promise.reject(new ControlError('failed', `No card file at /cards/${'a'.repeat(2 * 1024 * 1024)}.`, 'path')),
      subscribe: () => () => undefined,
    };
    const token = newControlToken();
    const server = await startControlServer({ service, host: '127.0.0.1', port: 0, token });
    try {
      const client = await connectNode(server.url, token);
      const error = await client.request('softcard.show', { path: 'x' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ControlClientError);
      expect((error as ControlClientError).code).toBe('failed');
      expect((error as ControlClientError).message.length).toBeLessThan(5_000);
      expect(client.connected).toBe(true);
      await client.close();
    } finally {
      await server.close();
    }
  });
});
