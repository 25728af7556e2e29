// HTTP CONNECT tunnels, as virt-viewer's `proxy=` key asks for (Proxmox spiceproxy, squid, tinyproxy).
// Every SPICE channel opens its own tunnel. Proxmox authenticates the tunnel by the Host header,
// so it must be exactly "<host>:<port>" as GLib sends it.
import net from 'node:net';
import { SpiceError } from './errors.js';

export interface HttpProxy {
  host: string;
  port: number;
  username?: string;
  password?: string;
}

/** A proxy answer bigger than this is not a CONNECT reply. */
export const MAX_CONNECT_RESPONSE = 16 * 1024;

export function encodeConnectRequest(proxy: HttpProxy, host: string, port: number): Uint8Array {
  const target = `${host}:${port}`;
  const lines = [`CONNECT ${target} HTTP/1.0`, `Host: ${target}`, 'Proxy-Connection: keep-alive', 'User-Agent: spice-smartcard'];
  if (proxy.username !== undefined) {
    const token = Buffer.from(`${proxy.username}:${proxy.password ?? ''}`, 'utf8').toString('base64');
    lines.push(`Proxy-Authorization: Basic ${token}`);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

export type ConnectResponse =
  | { kind: 'incomplete' }
  | { kind: 'ok'; headerLength: number }
  | { kind: 'refused'; status: number; reason: string }
  | { kind: 'invalid'; why: string };

/** Reads the proxy's answer so far; the tunnel starts right after the blank line. */
export function parseConnectResponse(bytes: Uint8Array): ConnectResponse {
  const text = Buffer.from(bytes).toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) {
    if (bytes.byteLength > MAX_CONNECT_RESPONSE) return { kind: 'invalid', why: 'the proxy answer has no end of headers' };
    if (bytes.byteLength >= 5 && !text.startsWith('HTTP/')) return { kind: 'invalid', why: 'the proxy did not answer with HTTP' };
    return { kind: 'incomplete' };
  }
  const statusLine = text.slice(0, text.indexOf('\r\n'));
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (m === null) return { kind: 'invalid', why: `unexpected status line "${statusLine.slice(0, 80)}"` };
  const status = Number(m[1]);
  if (status >= 200 && status < 300) return { kind: 'ok', headerLength: end + 4 };
  return { kind: 'refused', status, reason: (m[2] ?? '').trim() };
}

function refusalAdvice(status: number): string {
  if (status === 407) return 'The proxy wants credentials: put them in the proxy URL (http://user:pass@host:port).';
  if (status === 401) return 'The proxy refused the credentials, or the ticket in the host name has expired (Proxmox tickets last 40 s): download a fresh .vv file.';
  if (status === 403) return 'The proxy does not allow tunnels to that port (tinyproxy: ConnectPort; squid: SSL_ports).';
  return 'Check the proxy address and that it allows CONNECT to the SPICE port.';
}

export function openConnectTunnel(proxy: HttpProxy, host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<net.Socket> {
  const where = `proxy ${proxy.host}:${proxy.port}`;
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host: proxy.host, port: proxy.port });
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (err: SpiceError | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      if (err !== undefined) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const timer = setTimeout(() => finish(new SpiceError('network', `The ${where} did not open a tunnel within ${Math.round(timeoutMs / 1000)} s.`)), timeoutMs);
    const onAbort = (): void => finish(new SpiceError('network', 'Connecting was cancelled.'));
    signal?.addEventListener('abort', onAbort, { once: true });
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const r = parseConnectResponse(received);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'invalid') return finish(new SpiceError('network', `The ${where} sent an invalid answer to CONNECT: ${r.why}. Check that it is an HTTP proxy.`));
      if (r.kind === 'refused') {
        return finish(new SpiceError('network', `The ${where} refused the tunnel to ${host}:${port} with HTTP ${r.status}${r.reason ? ` ${r.reason}` : ''}. ${refusalAdvice(r.status)}`));
      }
      // Bytes after the headers already belong to the tunnel: give them back to the stream.
      const rest = received.subarray(r.headerLength);
      socket.off('data', onData);
      socket.pause();
      if (rest.byteLength > 0) socket.unshift(rest);
      finish(undefined);
    };
    socket.on('data', onData);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      socket.write(encodeConnectRequest(proxy, host, port));
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      const what = e.code === 'ECONNREFUSED' ? `Nothing is listening on the ${where} (connection refused). Check the proxy= address.` : `Could not reach the ${where}: ${e.message}.`;
      finish(new SpiceError('network', what, { cause: e }));
    });
    socket.once('end', () => finish(new SpiceError('network', `The ${where} closed the connection before opening the tunnel.`)));
  });
}
