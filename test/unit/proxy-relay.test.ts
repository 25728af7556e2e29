// The relay on real loopback sockets: bytes arrive unchanged and in order, a stalled reader pushes
// back on the writer instead of filling the proxy's memory, and an end is passed on.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { relay } from '../../src/proxy/relay.js';

interface Pair {
  a: net.Socket;
  b: net.Socket;
}

const sockets: net.Socket[] = [];
const servers: net.Server[] = [];

async function socketPair(): Promise<Pair> {
  const server = net.createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const a = net.connect(port, '127.0.0.1');
  const b = await accepted;
  sockets.push(a, b);
  return { a, b };
}

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('relay', () => {
  it('delivers every byte in order, taps them in order, and pushes back on a stalled reader', async () => {
    const upstream = await socketPair(); // producer = upstream.a, proxy side = upstream.b
    const downstream = await socketPair(); // proxy side = downstream.a, consumer = downstream.b
    const consumer = downstream.b;
    consumer.pause();
    const tapped = createHash('sha256');
    const stats = relay(upstream.b, downstream.a, { tap: (c) => tapped.update(c) });

    const total = 24 * 1024 * 1024;
    const data = pattern(total, 7);
    let writerBlocked = false;
    let offset = 0;
    const produce = (): void => {
      while (offset < total) {
        const piece = data.subarray(offset, offset + 65536);
        offset += piece.byteLength;
        if (!upstream.a.write(piece)) {
          writerBlocked = true;
          upstream.a.once('drain', produce);
          return;
        }
      }
      upstream.a.end();
    };
    produce();
    await new Promise((r) => setTimeout(r, 400));
    // Nothing is read downstream: the proxy paused its upstream side and holds little itself.
    expect(stats.pauses).toBeGreaterThan(0);
    expect(writerBlocked).toBe(true);
    expect(downstream.a.writableLength).toBeLessThan(1024 * 1024);
    expect(stats.bytes).toBeLessThan(total);

    const received = createHash('sha256');
    let count = 0;
    const ended = new Promise<void>((resolve) => consumer.once('end', resolve));
    consumer.on('data', (c: Buffer) => {
      received.update(c);
      count += c.byteLength;
    });
    consumer.resume();
    await ended;
    const want = createHash('sha256').update(data).digest('hex');
    expect(count).toBe(total);
    expect(received.digest('hex')).toBe(want);
    expect(tapped.digest('hex')).toBe(want);
    expect(stats.bytes).toBe(total);
  }, 30_000);

  it('stops writing once the destination is gone', async () => {
    const upstream = await socketPair();
    const downstream = await socketPair();
    const stats = relay(upstream.b, downstream.a);
    downstream.a.destroy();
    upstream.a.write('late bytes');
    await new Promise((r) => setTimeout(r, 100));
    expect(stats.bytes).toBe(0);
  });
});
