// Helpers for the proxy tests: a real remote-viewer under Xvfb, and a small scripted SPICE server
// for the cases (and the benchmark) where QEMU is not needed or cannot show what we look for.
import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { concatBytes } from '../../spice/bytes.js';
import { FrameParser, encodeFrame } from '../../spice/frame-parser.js';
import { decodeLinkHeader, decodeLinkMess, encodeLinkReply, hasCap, type LinkMess } from '../../spice/link-codec.js';
import { encodeChannelsList, encodeMainInit, type ChannelId } from '../../spice/messages.js';
import { decodeVscMessage, encodeVscMessage, type VscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';
import { findExecutable, startProcess, type ManagedProcess } from './process.js';

// ---------------------------------------------------------------------------------------------
// Tools

const PACKAGES: Record<string, string> = { 'remote-viewer': 'virt-viewer', Xvfb: 'xvfb', 'qemu-system-x86_64': 'qemu-system-x86', tinyproxy: 'tinyproxy', openssl: 'openssl' };

export interface ToolCheck {
  skip: boolean;
  reason: string;
}

/**
 * remote-viewer, Xvfb and QEMU (plus `extra` binaries). Skips only outside CI: in CI a missing viewer
 * must fail the run, not hide it.
 */
export function viewerToolsCheck(extra: readonly ('tinyproxy' | 'openssl')[] = [], env: NodeJS.ProcessEnv = process.env): ToolCheck {
  const missing = ['remote-viewer', 'Xvfb', 'qemu-system-x86_64', ...extra].filter((b) => findExecutable(b, env['PATH'] ?? '') === undefined);
  const inCi = env['CI'] !== undefined && env['CI'] !== '';
  const reason = missing.length === 0 ? '' : `(skipped: ${missing.join(', ')} not installed; Debian: apt-get install -y --no-install-recommends ${missing.map((m) => PACKAGES[m]).join(' ')} xauth)`;
  return { skip: missing.length > 0 && !inCi, reason };
}

// ---------------------------------------------------------------------------------------------
// Xvfb and remote-viewer

export interface VirtualDisplay {
  readonly display: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

/** An Xvfb on a free display number, ready when its socket exists. */
export async function startXvfb(): Promise<VirtualDisplay> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const n = 100 + Math.floor(Math.random() * 800);
    if (existsSync(`/tmp/.X11-unix/X${n}`) || existsSync(`/tmp/.X${n}-lock`)) continue;
    const proc = startProcess('Xvfb', [`:${n}`, '-nolisten', 'tcp', '-screen', '0', '1024x768x24']);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && proc.exitInfo() === undefined && !existsSync(`/tmp/.X11-unix/X${n}`)) await sleep(50);
    if (proc.exitInfo() === undefined && existsSync(`/tmp/.X11-unix/X${n}`)) {
      return { display: `:${n}`, process: proc, stop: () => proc.stop(2_000) };
    }
    await proc.stop(1_000);
  }
  throw new Error('could not start Xvfb on a free display');
}

/** remote-viewer on that display; `--spice-debug` output is kept in the process output. */
export function startRemoteViewer(target: string, display: VirtualDisplay, extraArgs: readonly string[] = []): ManagedProcess {
  return startProcess('remote-viewer', [...extraArgs, target], { env: viewerEnv(display) });
}

/** The environment a viewer needs under Xvfb (no accessibility bus, X11 backend). */
export function viewerEnv(display: VirtualDisplay): NodeJS.ProcessEnv {
  return { ...process.env, DISPLAY: display.display, GDK_BACKEND: 'x11', NO_AT_BRIDGE: '1' };
}

// ---------------------------------------------------------------------------------------------
// A scripted SPICE server: the link stage, one session at a time, INIT + CHANNELS_LIST on main,
// and just enough of the smartcard channel for a CardForwarder (every request acknowledged).

export interface ScriptedLink {
  mess: LinkMess;
  /** The decrypted ticket's password (up to the NUL), or undefined when it did not decrypt. */
  password: string | undefined;
  result: number;
  /** For a main link: the session it created. */
  sessionId?: number;
  vsc: VscMessage[];
  socket: net.Socket;
}

export interface ScriptedServerOptions {
  /** Required password; undefined accepts any ticket that decrypts (ticketing disabled). */
  password?: string;
  channels?: ChannelId[];
  /** Data phase of a linked channel (not main, not smartcard), e.g. to stream display-like data. */
  onChannel?: (link: ScriptedLink, socket: net.Socket) => void;
}

export interface ScriptedSpiceServer {
  readonly port: number;
  readonly links: ScriptedLink[];
  readonly sessionId: number | undefined;
  waitFor(check: (links: ScriptedLink[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_CHANNELS: ChannelId[] = [{ type: 1, id: 0 }, { type: 2, id: 0 }, { type: 3, id: 0 }, { type: 4, id: 0 }, { type: 8, id: 0 }];

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

export async function startScriptedSpiceServer(options: ScriptedServerOptions = {}): Promise<ScriptedSpiceServer> {
  const channels = options.channels ?? DEFAULT_CHANNELS;
  const links: ScriptedLink[] = [];
  const sockets = new Set<net.Socket>();
  let session: { id: number; links: ScriptedLink[] } | undefined;

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    let buffer: Uint8Array = new Uint8Array(0);
    let mess: LinkMess | undefined;
    let key: ReturnType<typeof generateKeyPairSync> | undefined;
    const onLink = (chunk: Buffer): void => {
      buffer = concatBytes([buffer, chunk]);
      if (mess === undefined) {
        if (buffer.byteLength < 16) return;
        const size = decodeLinkHeader(buffer).size;
        if (buffer.byteLength < 16 + size) return;
        mess = decodeLinkMess(buffer.subarray(16, 16 + size));
        buffer = buffer.slice(16 + size);
        const m = mess;
        if (!channels.some((c) => c.type === m.channelType && c.id === m.channelId)) {
          socket.destroy(); // spice-server's answer to a channel it does not have
          return;
        }
        key = generateKeyPairSync('rsa', { modulusLength: 1024 });
        const spki = new Uint8Array(key.publicKey.export({ format: 'der', type: 'spki' }));
        socket.write(encodeLinkReply({ error: 0, pubKey: spki, commonCaps: [0x0b], channelCaps: [] }));
      }
      const need = (hasCap(mess.commonCaps, 0) ? 4 : 0) + 128;
      if (buffer.byteLength < need) return;
      const ticket = buffer.subarray(need - 128, need);
      const rest = buffer.slice(need);
      socket.off('data', onLink);
      let password: string | undefined;
      try {
        const plain = privateDecrypt({ key: key!.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ticket);
        const nul = plain.indexOf(0);
        password = plain.subarray(0, nul >= 0 ? nul : plain.byteLength).toString('utf8');
      } catch {
        password = undefined;
      }
      const link: ScriptedLink = { mess, password, result: 0, vsc: [], socket };
      links.push(link);
      if (password === undefined || (options.password !== undefined && password !== options.password)) link.result = 7;
      else if (mess.channelType !== 1 && (session === undefined || mess.connectionId !== session.id)) link.result = 8;
      socket.write(u32(link.result));
      if (link.result !== 0) {
        socket.end();
        return;
      }
      const mini = hasCap(mess.commonCaps, 3);
      const frame = (type: number, body: Uint8Array): Uint8Array => encodeFrame(type, body, mini ? { miniHeader: true } : { miniHeader: false, serial: 1n });
      if (mess.channelType === 1) {
        // One session at a time: a new main link ends the old session.
        for (const old of session?.links ?? []) old.socket.destroy();
        session = { id: (Math.random() * 0xfffffffe + 1) >>> 0, links: [link] };
        link.sessionId = session.id;
        socket.write(frame(103, encodeMainInit({ sessionId: session.id, displayChannelsHint: 1, supportedMouseModes: 3, currentMouseMode: 2, agentConnected: 0, agentTokens: 10, multiMediaTime: 0, ramHint: 0 })));
      } else {
        if (session!.links.some((l) => l.mess.channelType === mess!.channelType && l.mess.channelId === mess!.channelId)) {
          socket.end(); // duplicate channel: OK, then EOF
          return;
        }
        session!.links.push(link);
      }
      const parser = new FrameParser({ miniHeader: mini });
      const onData = (bytes: Uint8Array): void => {
        for (const f of parser.push(bytes)) {
          if (mess!.channelType === 1 && f.type === 104) socket.write(frame(104, encodeChannelsList(channels)));
          if (mess!.channelType === 8 && f.type === 101) {
            const decoded = decodeVscMessage(f.body, 'le');
            if (!decoded.ok) continue;
            link.vsc.push(decoded.message);
            const t = decoded.message.type;
            if (t === VscMsgType.ReaderAdd || t === VscMsgType.Atr || t === VscMsgType.CardRemove || t === VscMsgType.ReaderRemove) {
              socket.write(frame(101, encodeVscMessage({ type: VscMsgType.Error, readerId: 0, code: 0 }, 'le')));
            }
          }
        }
      };
      if (mess.channelType === 1 || mess.channelType === 8) {
        socket.on('data', onData);
        if (rest.byteLength > 0) onData(rest);
      } else {
        if (rest.byteLength > 0) socket.unshift(Buffer.from(rest));
        options.onChannel?.(link, socket);
      }
    };
    socket.on('data', onLink);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    links,
    get sessionId() {
      return session?.id;
    },
    async waitFor(check, timeoutMs = 5_000) {
      const end = Date.now() + timeoutMs;
      while (!check(links)) {
        if (Date.now() > end) throw new Error(`scripted server: condition not met in ${timeoutMs} ms; links: ${JSON.stringify(links.map((l) => ({ type: l.mess.channelType, conn: l.mess.connectionId, pw: l.password, result: l.result, vsc: l.vsc.map((v) => v.type) })))}`);
        await sleep(20);
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
