// The proxy on real loopback sockets, between our own SPICE client (standing in for a viewer) and a
// scripted server: sessions are followed, the card is linked into each with the right id and
// password, the viewer's smartcard link stays local, and one bad connection harms nobody else.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SpiceChannel } from '../../spice/channel.js';
import { SpiceSession } from '../../spice/session.js';
import { createTransport } from '../../spice/transport.js';
import { VscMsgType } from '../../vsc/constants.js';
import { CardProxy } from '../../src/proxy/card-proxy.js';
import type { ViewerChannelEvent } from '../../src/proxy/proxy-server.js';
import { ScriptedCard } from '../helpers/scripted-card.js';
import { startScriptedSpiceServer, type ScriptedSpiceServer } from '../helpers/viewer.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: { serverPassword?: string; knownPassword?: string; viewerToken?: string } = {}): Promise<{ server: ScriptedSpiceServer; proxy: CardProxy; events: ViewerChannelEvent[]; card: ScriptedCard }> {
  const server = await startScriptedSpiceServer(options.serverPassword !== undefined ? { password: options.serverPassword } : {});
  cleanups.push(() => server.close());
  const card = new ScriptedCard();
  const proxy = await CardProxy.start({
    plan: { host: '127.0.0.1', port: server.port, tls: {} },
    secureChannels: new Set(),
    knownPassword: options.knownPassword,
    ...(options.viewerToken !== undefined ? { viewerToken: options.viewerToken } : {}),
    card,
    host: '127.0.0.1',
    port: 0,
  });
  cleanups.push(() => proxy.close());
  const events: ViewerChannelEvent[] = [];
  proxy.server.on('viewer-channel', (e) => events.push(e));
  return { server, proxy, events, card };
}

function viewer(proxy: CardProxy, password: string): SpiceSession {
  const session = new SpiceSession({ transport: createTransport({ host: '127.0.0.1', port: proxy.server.address.port, tls: {} }), password });
  cleanups.push(() => session.close());
  return session;
}

const smartcardLinks = (server: ScriptedSpiceServer): number => server.links.filter((l) => l.mess.channelType === 8).length;

describe('ProxyServer + CardInjector against a scripted server', () => {
  it("links the card into the viewer's session with the password the viewer gave", async () => {
    const { server, proxy, events } = await setup({ serverPassword: 's3cret' });
    const session = viewer(proxy, 's3cret');
    await session.connect();
    expect(session.sessionId).toBe(server.sessionId);
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.vsc.some((v) => v.type === VscMsgType.Atr)));
    const sc = server.links.find((l) => l.mess.channelType === 8)!;
    expect(sc).toMatchObject({ result: 0, password: 's3cret' });
    expect(sc.mess.connectionId).toBe(session.sessionId);
    expect(sc.vsc.map((v) => v.type)).toEqual([VscMsgType.ReaderAdd, VscMsgType.Atr]);
    expect(proxy.injector.sessionId).toBe(session.sessionId);
    expect(events).toContainEqual(expect.objectContaining({ channel: 'main', state: 'opened' }));
  });

  it('answers with its own password for a viewer that has none', async () => {
    const { server, proxy } = await setup({ serverPassword: 'known', knownPassword: 'known' });
    const session = viewer(proxy, '');
    await session.connect();
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.result === 0));
    expect(server.links.every((l) => l.password === 'known')).toBe(true);
  });

  it('passes a wrong password on, and the viewer gets PERMISSION_DENIED', async () => {
    const { server, proxy, events } = await setup({ serverPassword: 'right' });
    await expect(viewer(proxy, 'wrong').connect()).rejects.toMatchObject({ kind: 'auth', linkError: 7 });
    await new Promise((r) => setTimeout(r, 100));
    expect(smartcardLinks(server)).toBe(0);
    expect(events).toContainEqual(expect.objectContaining({ channel: 'main', state: 'failed' }));
  });

  it('keeps the smartcard channel: the viewer’s own smartcard link is answered locally', async () => {
    const { server, proxy, events } = await setup();
    const session = viewer(proxy, '');
    await session.connect();
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.result === 0));
    const own = await session.openChannel(8, 0);
    own.start();
    own.send(101, Uint8Array.of(3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0));
    const display = await session.openChannel(2, 0);
    display.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(smartcardLinks(server)).toBe(1);
    expect(own.isOpen).toBe(true);
    expect(events).toContainEqual(expect.objectContaining({ channel: 'smartcard', state: 'local', sessionId: session.sessionId }));
    expect(events).toContainEqual(expect.objectContaining({ channel: 'display', state: 'opened', sessionId: session.sessionId }));
    expect(server.links.filter((l) => l.mess.channelType === 2 && l.result === 0)).toHaveLength(1);
  });

  it('follows the viewer into a new session when it reconnects', async () => {
    const { server, proxy } = await setup();
    const first = viewer(proxy, '');
    await first.connect();
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.mess.connectionId === first.sessionId && l.vsc.length >= 2));
    await first.close();
    const second = viewer(proxy, '');
    await second.connect();
    expect(second.sessionId).not.toBe(first.sessionId);
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.mess.connectionId === second.sessionId && l.vsc.some((v) => v.type === VscMsgType.Atr)));
    expect(proxy.injector.sessionId).toBe(second.sessionId);
  });

  it('a new main link while the old one is still open also moves the card', async () => {
    const { server, proxy } = await setup();
    const first = viewer(proxy, '');
    await first.connect();
    const second = viewer(proxy, '');
    await second.connect();
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.mess.connectionId === second.sessionId && l.result === 0));
    expect(proxy.injector.sessionId).toBe(second.sessionId);
  });

  it('one bad viewer connection does not disturb the others', async () => {
    const { server, proxy } = await setup();
    const garbage = net.connect(proxy.server.address.port, '127.0.0.1');
    garbage.on('error', () => undefined);
    garbage.resume();
    const garbageClosed = new Promise<void>((resolve) => garbage.once('close', () => resolve()));
    garbage.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const halfLink = net.connect(proxy.server.address.port, '127.0.0.1');
    halfLink.on('error', () => undefined);
    halfLink.write(Uint8Array.of(0x52, 0x45, 0x44, 0x51, 2, 0));
    const session = viewer(proxy, '');
    await session.connect();
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.result === 0));
    await garbageClosed;
    halfLink.destroy();
    expect(session.state).toBe('ready');
  });

  it('closes a viewer that never finishes its link, after the link timeout', async () => {
    const server = await startScriptedSpiceServer();
    cleanups.push(() => server.close());
    const { ProxyServer } = await import('../../src/proxy/proxy-server.js');
    const { Credentials } = await import('../../src/proxy/credentials.js');
    const proxy = await ProxyServer.listen({ transport: createTransport({ host: '127.0.0.1', port: server.port, tls: {} }), secureChannels: new Set(), credentials: new Credentials(), host: '127.0.0.1', port: 0, linkTimeoutMs: 300 });
    cleanups.push(() => proxy.close());
    const idle = net.connect(proxy.address.port, '127.0.0.1');
    idle.on('error', () => undefined);
    const t0 = Date.now();
    await new Promise<void>((resolve) => idle.once('close', () => resolve()));
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(proxy.connectionCount).toBe(0);
  });

  it('closes within a bounded time with viewers connected', async () => {
    const { proxy } = await setup();
    const session = viewer(proxy, '');
    await session.connect();
    const display = await session.openChannel(2, 0);
    display.start();
    const t0 = Date.now();
    await proxy.close();
    expect(Date.now() - t0).toBeLessThan(8_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(session.state).toBe('closed');
  });

  it('a viewer of a channel the VM lacks sees EOF, as from the server itself', async () => {
    const { proxy } = await setup();
    const session = viewer(proxy, '');
    await session.connect();
    await expect(session.openChannel(9, 0)).rejects.toMatchObject({ kind: 'channel-missing' });
  });

  it('removes the card from the session when stopped', async () => {
    const { server, proxy } = await setup();
    const session = viewer(proxy, '');
    await session.connect();
    await server.waitFor((links) => links.some((l) => l.mess.channelType === 8 && l.vsc.some((v) => v.type === VscMsgType.Atr)));
    await proxy.injector.stop();
    const sc = server.links.find((l) => l.mess.channelType === 8)!;
    expect(sc.vsc.map((v) => v.type)).toEqual([VscMsgType.ReaderAdd, VscMsgType.Atr, VscMsgType.CardRemove, VscMsgType.ReaderRemove]);
  });

  it('can be used with SpiceChannel directly (our own link code through the proxy)', async () => {
    const { proxy } = await setup();
    const ch = await SpiceChannel.link({ transport: createTransport({ host: '127.0.0.1', port: proxy.server.address.port, tls: {} }), secure: false, connectionId: 0, channelType: 1, channelId: 0, password: '' });
    cleanups.push(() => ch.close());
    const init = new Promise<number>((resolve) => ch.on('message', (type) => resolve(type)));
    ch.start();
    expect(await init).toBe(103);
  });
});
