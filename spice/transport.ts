// How bytes reach a spice-server: every SPICE channel is its own stream, opened through one small
// interface. Implementations: plain TCP, a Unix socket, TLS (CA + host-subject check), WebSocket
// straight to spice-server (which accepts it on its own ports), and an HTTP CONNECT proxy with TLS
// inside the tunnel. Each error becomes a SpiceError saying what happened and what to do.
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import WebSocket, { createWebSocketStream } from 'ws';
import { SpiceError } from './errors.js';
import { formatRdns, parseHostSubject, subjectMatches, subjectToRdns, type CertSubject } from './host-subject.js';
import { openConnectTunnel, type HttpProxy } from './http-connect.js';

export interface TlsSettings {
  /** PEM text of the CA(s) the server certificate must chain to; the system store when absent. */
  ca?: string;
  /** "C=..,O=..,CN=.." that must equal the certificate subject; replaces the host name check. */
  hostSubject?: string;
}

export interface DialPlan {
  host?: string;
  port?: number;
  tlsPort?: number;
  unixPath?: string;
  /** ws:// or wss:// URL of the SPICE port itself (or of a websockify-style gateway). */
  webSocketUrl?: string;
  proxy?: HttpProxy;
  tls: TlsSettings;
  connectTimeoutMs?: number;
}

/** Opens one byte stream for one channel; `secure` asks for TLS (the tls-port, or TLS in the tunnel). */
export interface Transport {
  readonly canPlain: boolean;
  readonly canSecure: boolean;
  open(secure: boolean, signal?: AbortSignal): Promise<Duplex>;
  describe(secure: boolean): string;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;

function isIpLiteral(host: string): boolean {
  return net.isIP(host.replace(/^\[|\]$/g, '')) !== 0;
}

/** SNI only for real DNS names (a Proxmox "pvespiceproxy:..." host must not be sent). */
function sniFor(host: string | undefined): string | undefined {
  if (host === undefined || isIpLiteral(host) || !/^[A-Za-z0-9.-]+$/.test(host)) return undefined;
  return host;
}

function networkError(err: unknown, where: string, timeoutMs: number): SpiceError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return new SpiceError('network', `Nothing is listening on ${where} (connection refused). Check the port, and that the VM is running with SPICE graphics.`, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new SpiceError('network', `The host of ${where} could not be resolved (${code}). Check the host name.`, { cause: err });
    case 'ETIMEDOUT':
      return new SpiceError('network', `No answer from ${where} within ${Math.round(timeoutMs / 1000)} s. Check the host, the port and any firewall between.`, { cause: err });
    case 'ENOENT':
      return new SpiceError('network', `The socket ${where} does not exist. Check the path and that the VM is running.`, { cause: err });
    case 'EACCES':
      return new SpiceError('network', `Permission denied opening ${where}. Run as a user allowed to use that socket.`, { cause: err });
    case 'ECONNRESET':
    case 'EPIPE':
      return new SpiceError('network', `The connection to ${where} was reset by the server.`, { cause: err });
    default:
      return new SpiceError('network', `Could not connect to ${where}: ${err instanceof Error ? err.message : String(err)}.`, { cause: err });
  }
}

const CERT_ERROR_HINTS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the server certificate is not signed by the given CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the server certificate is not signed by the given CA',
  SELF_SIGNED_CERT_IN_CHAIN: 'the server certificate chains to a CA that was not given',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the server certificate is self-signed and was not given as the CA',
  CERT_HAS_EXPIRED: 'the server certificate has expired',
  CERT_NOT_YET_VALID: 'the server certificate is not valid yet (check the clocks)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the server certificate is for another host name',
};

function tlsError(err: unknown, where: string): SpiceError {
  if (err instanceof SpiceError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const hint = code !== undefined ? CERT_ERROR_HINTS[code] : undefined;
  if (hint !== undefined) {
    return new SpiceError(
      'tls',
      `The TLS certificate of ${where} was not accepted: ${hint} (${code}). Give the right CA (--ca-file, or ca= in the .vv) and, when the host name is not in the certificate, its subject (--host-subject or host-subject=).`,
      { cause: err },
    );
  }
  if (typeof code === 'string' && code.startsWith('ERR_SSL')) {
    return new SpiceError('tls', `The TLS handshake with ${where} failed (${code}). Check that this is the TLS port.`, { cause: err });
  }
  return networkError(err, where, 0);
}

function checkIdentity(settings: TlsSettings, host: string | undefined): ((hostname: string, cert: tls.PeerCertificate) => Error | undefined) | undefined {
  if (settings.hostSubject !== undefined) {
    const expected = parseHostSubject(settings.hostSubject);
    return (_hostname, cert) => {
      const actual = subjectToRdns(cert.subject as unknown as CertSubject);
      if (subjectMatches(expected, actual)) return undefined;
      return new SpiceError(
        'tls',
        `The server certificate subject "${formatRdns(actual)}" is not the expected host-subject "${formatRdns(expected)}". Check host-subject, or that you reached the right server.`,
      );
    };
  }
  if (host === undefined) return undefined;
  const name = host.replace(/^\[|\]$/g, '');
  return (_hostname, cert) => tls.checkServerIdentity(name, cert);
}

function tlsOptions(settings: TlsSettings, host: string | undefined): tls.ConnectionOptions {
  const options: tls.ConnectionOptions = { rejectUnauthorized: true };
  if (settings.ca !== undefined) options.ca = settings.ca;
  const sni = sniFor(host);
  if (sni !== undefined) options.servername = sni;
  const check = checkIdentity(settings, host);
  if (check !== undefined) options.checkServerIdentity = check;
  return options;
}

function withTimeout<T>(work: (fail: (e: unknown) => void) => Promise<T>, timeoutMs: number, onTimeout: () => SpiceError, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(onTimeout())), timeoutMs);
    const onAbort = (): void => finish(() => reject(new SpiceError('network', 'Connecting was cancelled.')));
    signal?.addEventListener('abort', onAbort, { once: true });
    work((e) => finish(() => reject(e))).then(
      (v) => finish(() => resolve(v)),
      (e: unknown) => finish(() => reject(e)),
    );
  });
}

function connectTcp(options: net.NetConnectOpts, where: string, timeoutMs: number, signal?: AbortSignal): Promise<net.Socket> {
  let socket: net.Socket | undefined;
  return withTimeout(
    () =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(options);
        socket = s;
        s.once('connect', () => {
          s.off('error', reject);
          if ('port' in options) {
            s.setNoDelay(true);
            s.setKeepAlive(true, 30_000);
          }
          resolve(s);
        });
        s.once('error', (e) => reject(networkError(e, where, timeoutMs)));
      }),
    timeoutMs,
    () => {
      socket?.destroy();
      return networkError(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }), where, timeoutMs);
    },
    signal,
  ).catch((e: unknown) => {
    socket?.destroy();
    throw e;
  });
}

function startTls(options: tls.ConnectionOptions, where: string, timeoutMs: number, signal?: AbortSignal): Promise<tls.TLSSocket> {
  let socket: tls.TLSSocket | undefined;
  return withTimeout(
    () =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect(options);
        socket = s;
        s.once('secureConnect', () => {
          s.off('error', onError);
          resolve(s);
        });
        const onError = (e: unknown): void => reject(tlsError(e, where));
        s.once('error', onError);
      }),
    timeoutMs,
    () => {
      socket?.destroy();
      return new SpiceError('tls', `The TLS handshake with ${where} did not finish within ${Math.round(timeoutMs / 1000)} s. Check that this is the TLS port.`);
    },
    signal,
  ).catch((e: unknown) => {
    socket?.destroy();
    throw e;
  });
}

function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') && net.isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Direct TCP or TLS to host:port / host:tlsPort, optionally through an HTTP CONNECT proxy. */
class TcpTransport implements Transport {
  constructor(private readonly plan: DialPlan & { host: string }) {}

  get canPlain(): boolean {
    return this.plan.port !== undefined && this.plan.port > 0;
  }

  get canSecure(): boolean {
    return this.plan.tlsPort !== undefined && this.plan.tlsPort > 0;
  }

  describe(secure: boolean): string {
    const port = secure ? this.plan.tlsPort : this.plan.port;
    const base = hostPort(this.plan.host, port ?? 0) + (secure ? ' (TLS)' : '');
    return this.plan.proxy ? `${base} via proxy ${this.plan.proxy.host}:${this.plan.proxy.port}` : base;
  }

  async open(secure: boolean, signal?: AbortSignal): Promise<Duplex> {
    const port = secure ? this.plan.tlsPort : this.plan.port;
    if (port === undefined || port <= 0) {
      throw new SpiceError('network', secure ? 'No TLS port is known for this server.' : 'No plain port is known for this server.');
    }
    const timeoutMs = this.plan.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const where = this.describe(secure);
    let raw: net.Socket | undefined;
    if (this.plan.proxy !== undefined) {
      raw = await openConnectTunnel(this.plan.proxy, this.plan.host, port, timeoutMs, signal);
    } else if (!secure) {
      return connectTcp({ host: this.plan.host.replace(/^\[|\]$/g, ''), port }, where, timeoutMs, signal);
    }
    const options = tlsOptions(this.plan.tls, this.plan.host);
    if (raw !== undefined) {
      if (!secure) return raw;
      options.socket = raw;
    } else {
      options.host = this.plan.host.replace(/^\[|\]$/g, '');
      options.port = port;
    }
    return startTls(options, where, timeoutMs, signal);
  }
}

/** spice-server listening on a Unix socket (spice+unix://): plain only. */
class UnixTransport implements Transport {
  readonly canPlain = true;
  readonly canSecure = false;

  constructor(private readonly path: string, private readonly timeoutMs: number) {}

  describe(): string {
    return this.path;
  }

  open(secure: boolean, signal?: AbortSignal): Promise<Duplex> {
    if (secure) return Promise.reject(new SpiceError('tls', `The server asks for TLS, which a Unix socket (${this.path}) cannot offer.`));
    return connectTcp({ path: this.path }, this.path, this.timeoutMs, signal);
  }
}

/**
 * WebSocket with subprotocol "binary". spice-server reads the whole upgrade request in one read,
 * which `ws` satisfies: it writes the request headers in one piece. wss:// is TLS outside the
 * WebSocket; a channel that needs TLS behind a ws:// gateway gets TLS inside the stream.
 */
class WebSocketTransport implements Transport {
  readonly canPlain: boolean;
  readonly canSecure = true;
  private readonly url: URL;

  constructor(private readonly plan: DialPlan & { webSocketUrl: string }) {
    this.url = new URL(plan.webSocketUrl);
    this.canPlain = this.url.protocol === 'ws:';
  }

  describe(secure: boolean): string {
    return `${this.url.protocol}//${this.url.host}${this.url.pathname}${secure && this.url.protocol === 'ws:' ? ' (TLS inside)' : ''}`;
  }

  async open(secure: boolean, signal?: AbortSignal): Promise<Duplex> {
    const timeoutMs = this.plan.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const where = this.describe(false);
    const outerTls = this.url.protocol === 'wss:';
    const options: WebSocket.ClientOptions = { handshakeTimeout: timeoutMs, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 };
    if (outerTls) {
      // Our own TLS socket, so the CA and host-subject checks are exactly those of the other transports.
      const t = tlsOptions(this.plan.tls, this.url.hostname);
      const connectTls = (o: { host?: string | null; port?: number | string | null }): tls.TLSSocket =>
        tls.connect({ ...t, host: String(o.host ?? this.url.hostname).replace(/^\[|\]$/g, ''), port: Number(o.port ?? 443) });
      options.createConnection = connectTls as unknown as typeof net.createConnection;
    }
    const ws = new WebSocket(this.url, 'binary', options);
    const stream = await withTimeout(
      () =>
        new Promise<Duplex>((resolve, reject) => {
          ws.once('open', () => {
            ws.off('error', onError);
            resolve(createWebSocketStream(ws));
          });
          ws.once('unexpected-response', (_req, res) => {
            ws.off('error', onError);
            reject(new SpiceError('network', `${where} answered HTTP ${res.statusCode} instead of a WebSocket: check the URL.`));
            ws.terminate();
          });
          const onError = (e: Error): void => reject(outerTls && (e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' ? tlsError(e, where) : networkError(e, where, timeoutMs));
          ws.once('error', onError);
        }),
      timeoutMs,
      () => {
        ws.terminate();
        return new SpiceError('network', `${where} did not complete the WebSocket handshake within ${Math.round(timeoutMs / 1000)} s.`);
      },
      signal,
    );
    if (!secure || outerTls) return stream;
    const inner = tlsOptions(this.plan.tls, this.url.hostname);
    inner.socket = stream;
    return startTls(inner, this.describe(true), timeoutMs, signal);
  }
}

export function createTransport(plan: DialPlan): Transport {
  const timeoutMs = plan.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (plan.webSocketUrl !== undefined) return new WebSocketTransport({ ...plan, webSocketUrl: plan.webSocketUrl });
  if (plan.unixPath !== undefined) return new UnixTransport(plan.unixPath, timeoutMs);
  if (plan.host === undefined) throw new SpiceError('network', 'No server address: give a host with a port or tls-port, a Unix socket, or a WebSocket URL.');
  if ((plan.port ?? 0) <= 0 && (plan.tlsPort ?? 0) <= 0) {
    throw new SpiceError('network', `No port for ${plan.host}: give port= or tls-port=.`);
  }
  return new TcpTransport({ ...plan, host: plan.host });
}
