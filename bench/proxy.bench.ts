// What the loopback proxy costs: bytes per second it relays on a display-like stream, the round-trip
// latency it adds to small messages, and the time it adds to a channel link (its RSA work), each
// against a direct connection to the same scripted server in the same run. Printed only.
import type { Duplex } from 'node:stream';
import { encodeFrame } from '../spice/frame-parser.js';
import { LinkHandshake } from '../spice/link-handshake.js';
import { SpiceSession } from '../spice/session.js';
import { createTransport } from '../spice/transport.js';
import { Credentials } from '../src/proxy/credentials.js';
import { ProxyServer } from '../src/proxy/proxy-server.js';
import { startScriptedSpiceServer, type ScriptedLink } from '../test/helpers/viewer.js';
import { writeBenchJson, type BenchRow } from './results.js';

const STREAM_BYTES = 256 * 1024 * 1024;
const ECHO_ROUNDS = 3000;
const LINK_ROUNDS = 40;
const DISPLAY = 2;
const INPUTS = 3;

/** Display-like traffic: draw messages of mixed sizes (small updates and big image tiles). */
function displayFrames(): Uint8Array[] {
  const sizes = [180, 1200, 4096, 16_384, 65_536, 262_144];
  return sizes.map((n, i) => encodeFrame(302 + (i % 3), new Uint8Array(n).fill(i), { miniHeader: true }));
}

function serveChannel(link: ScriptedLink, socket: Duplex): void {
  if (link.mess.channelType === DISPLAY) {
    const frames = displayFrames();
    let sent = 0;
    let i = 0;
    const pump = (): void => {
      while (sent < STREAM_BYTES) {
        const f = frames[i++ % frames.length]!;
        sent += f.byteLength;
        if (!socket.write(f)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  } else if (link.mess.channelType === INPUTS) {
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
  }
}

async function linkRaw(port: number, type: number, connectionId: number): Promise<Duplex> {
  const stream = await createTransport({ host: '127.0.0.1', port, tls: {} }).open(false);
  const handshake = new LinkHandshake({ connectionId, channelType: type, channelId: 0, channelCaps: [], password: '' });
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      const p = handshake.receive(chunk);
      if (p.kind === 'failed') return reject(p.error);
      if (p.send) stream.write(p.send);
      if (p.kind === 'established') {
        stream.off('data', onData);
        stream.pause();
        if (p.link.rest.byteLength > 0) stream.unshift(Buffer.from(p.link.rest));
        resolve(stream);
      }
    };
    stream.on('data', onData);
    stream.write(handshake.start());
  });
}

async function throughput(port: number, sessionId: number): Promise<{ mbps: number; ms: number }> {
  const stream = await linkRaw(port, DISPLAY, sessionId);
  const t0 = performance.now();
  let bytes = 0;
  await new Promise<void>((resolve) => {
    stream.on('data', (c: Buffer) => (bytes += c.byteLength));
    stream.once('end', () => resolve());
    stream.resume();
  });
  const ms = performance.now() - t0;
  stream.destroy();
  return { mbps: bytes / 1e6 / (ms / 1000), ms };
}

async function echoLatency(port: number, sessionId: number): Promise<number[]> {
  const stream = await linkRaw(port, INPUTS, sessionId);
  const message = encodeFrame(111, new Uint8Array(16), { miniHeader: true });
  const samples: number[] = [];
  let pending: (() => void) | undefined;
  let got = 0;
  stream.on('data', (c: Buffer) => {
    got += c.byteLength;
    if (got >= message.byteLength) {
      got -= message.byteLength;
      pending?.();
    }
  });
  stream.resume();
  for (let i = 0; i < ECHO_ROUNDS; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      pending = resolve;
      stream.write(message);
    });
    samples.push(performance.now() - t0);
  }
  stream.destroy();
  return samples.sort((a, b) => a - b);
}

async function linkTimes(port: number, sessionId: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < LINK_ROUNDS; i++) {
    const t0 = performance.now();
    const s = await linkRaw(port, 4, sessionId);
    samples.push(performance.now() - t0);
    s.destroy();
    await new Promise((r) => setTimeout(r, 5));
  }
  return samples.sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const row = (label: string, direct: string, proxied: string, note = ''): void => {
  process.stdout.write(`${label.padEnd(34)} ${direct.padStart(14)} ${proxied.padStart(14)}   ${note}\n`);
};

const server = await startScriptedSpiceServer({ onChannel: serveChannel });
const proxy = await ProxyServer.listen({
  transport: createTransport({ host: '127.0.0.1', port: server.port, tls: {} }),
  secureChannels: new Set(),
  credentials: new Credentials(),
  host: '127.0.0.1',
  port: 0,
});

async function session(port: number): Promise<SpiceSession> {
  const s = new SpiceSession({ transport: createTransport({ host: '127.0.0.1', port, tls: {} }), password: '' });
  await s.connect();
  return s;
}

process.stdout.write('scripted server, proxy and client share this one Node process (loopback)\n');
process.stdout.write(`${''.padEnd(34)} ${'direct'.padStart(14)} ${'via proxy'.padStart(14)}\n`);
let s = await session(server.port);
const directTp = await throughput(server.port, s.sessionId!);
const directEcho = await echoLatency(server.port, s.sessionId!);
const directLink = await linkTimes(server.port, s.sessionId!);
await s.close();
s = await session(proxy.address.port);
const proxyTp = await throughput(proxy.address.port, s.sessionId!);
const proxyEcho = await echoLatency(proxy.address.port, s.sessionId!);
const proxyLink = await linkTimes(proxy.address.port, s.sessionId!);
await s.close();

row(`display stream, ${STREAM_BYTES / 1024 / 1024} MiB`, `${directTp.mbps.toFixed(0)} MB/s`, `${proxyTp.mbps.toFixed(0)} MB/s`, `${((proxyTp.mbps / directTp.mbps) * 100).toFixed(0)}% of direct`);
for (const p of [50, 99]) {
  const d = pct(directEcho, p);
  const v = pct(proxyEcho, p);
  row(`echo round trip p${p} (${ECHO_ROUNDS}x)`, `${(d * 1000).toFixed(0)} µs`, `${(v * 1000).toFixed(0)} µs`, `+${((v - d) * 1000).toFixed(0)} µs`);
}
for (const p of [50, 90]) {
  const d = pct(directLink, p);
  const v = pct(proxyLink, p);
  row(`channel link p${p} (${LINK_ROUNDS}x)`, `${d.toFixed(2)} ms`, `${v.toFixed(2)} ms`, `+${(v - d).toFixed(2)} ms (proxy RSA key + decrypt + encrypt)`);
}
const rows: BenchRow[] = [
  { label: 'proxy: display stream, direct', value: directTp.mbps, unit: 'MB/s' },
  { label: 'proxy: display stream, via proxy', value: proxyTp.mbps, unit: 'MB/s' },
  { label: 'proxy: echo round trip, direct', median: pct(directEcho, 50), p99: pct(directEcho, 99), n: directEcho.length, unit: 'ms' },
  { label: 'proxy: echo round trip, via proxy', median: pct(proxyEcho, 50), p99: pct(proxyEcho, 99), n: proxyEcho.length, unit: 'ms' },
  { label: 'proxy: channel link, direct', median: pct(directLink, 50), n: directLink.length, unit: 'ms' },
  { label: 'proxy: channel link, via proxy', median: pct(proxyLink, 50), n: proxyLink.length, unit: 'ms' },
];
writeBenchJson('proxy', { rows });
await proxy.close();
await server.close();
