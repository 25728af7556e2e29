import { createConnection, createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const LOOPBACK = '127.0.0.1';

/**
 * Ports the kernel says are free right now. All probes stay open until every port is picked, so the ports
 * are distinct; another process can still take one before the caller binds it (callers retry on that).
 */
export async function freePorts(count: number, host: string = LOOPBACK): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => resolve());
      });
    }
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('listen-on-0 probe gave no TCP port');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

export async function freePort(host: string = LOOPBACK): Promise<number> {
  const [port] = await freePorts(1, host);
  if (port === undefined) throw new Error('no free port');
  return port;
}

export interface WaitForPortOptions {
  host?: string;
  /** Overall bound (default 15 s). */
  timeoutMs?: number;
  /** Pause between attempts (default 25 ms). */
  intervalMs?: number;
  /** Stops waiting early, e.g. when the server process has exited; rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, options: WaitForPortOptions = {}): Promise<void> {
  const host = options.host ?? LOOPBACK;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt made';
  for (;;) {
    options.signal?.throwIfAborted();
    const result = await tryConnect(host, port, Math.max(100, Math.min(1000, deadline - Date.now())));
    if (result === undefined) return;
    lastError = result;
    options.signal?.throwIfAborted();
    if (Date.now() >= deadline) {
      throw new Error(`nothing accepted TCP connections on ${host}:${port} within ${timeoutMs} ms (last: ${lastError})`);
    }
    await sleep(intervalMs);
  }
}

/** Returns undefined when a connection was accepted (and closes it), else the error text. */
function tryConnect(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.setTimeout(timeoutMs);
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve('connect timed out');
    });
    socket.once('error', (error) => {
      socket.destroy();
      resolve(error.message);
    });
  });
}
