// The control server: one HTTP server on loopback that serves the web UI's files and upgrades
// /control to the control WebSocket. It checks who connects and what they send, and passes
// well-formed requests to the ControlService; what a request means is the service's business.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { decode, encode } from '@msgpack/msgpack';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import type { ServeLog } from '../serve/serve-log.js';
import { CONTROL_CLOSE, CONTROL_LIMITS, CONTROL_SUBPROTOCOL, type ControlErrorBody, type ServerMessage } from './schema.js';
import { ControlError, type ControlEvent, type ControlService } from './service.js';
import { createStaticFiles, type StaticFiles } from './static-files.js';
import { checkHost, checkUpgrade, ownOrigins, type GuardConfig, type Refusal } from './upgrade-guard.js';
import { validateClientMessage } from './validate.js';

export const CONTROL_PATH = '/control';
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export interface ControlServerOptions {
  service: ControlService;
  host: string;
  /** 0 picks a free port. */
  port: number;
  token: string;
  /** Permits a non-loopback host; clients still need the token, and browsers an allowed origin. */
  allowRemote?: boolean;
  /** URL prefix → directory of static files (the web UI). */
  staticMounts?: Record<string, string>;
  /** Origins besides the server's own that may open the WebSocket (e.g. the desktop app's page). */
  allowedOrigins?: string[];
  log?: ServeLog;
  /** Ping period; a client that missed the previous pong is dropped. Default 30 s. */
  keepaliveMs?: number;
  /** Bytes queued for one client beyond which it is closed instead of buffered. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** How long close() waits for clients to say goodbye before cutting them off. Default 2 s. */
  closeTimeoutMs?: number;
}

export interface ControlServer {
  /** http://HOST:PORT/ — the UI's address; the WebSocket is at ws://HOST:PORT/control. */
  url: string;
  port: number;
  close(): Promise<void>;
}

const DECODE_OPTIONS = {
  // No declared length can exceed the bytes of a message that maxPayload already bounded.
  maxStrLength: CONTROL_LIMITS.maxMessageBytes,
  maxBinLength: CONTROL_LIMITS.maxMessageBytes,
  maxArrayLength: CONTROL_LIMITS.maxMessageBytes,
  maxMapLength: CONTROL_LIMITS.maxMessageBytes,
  maxExtLength: CONTROL_LIMITS.maxMessageBytes,
} as const;

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function hostForUrl(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/** A close reason fits in a control frame: at most 123 bytes of UTF-8. */
function closeReason(text: string): string {
  let reason = text;
  while (Buffer.byteLength(reason) > 123) reason = reason.slice(0, -1);
  return reason;
}

function refuse(socket: Duplex, refusal: Refusal): void {
  const body = `${refusal.reason}\n`;
  const statusText: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 421: 'Misdirected Request', 503: 'Service Unavailable' };
  socket.end(
    `HTTP/1.1 ${refusal.status} ${statusText[refusal.status] ?? 'Refused'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  // A client that keeps its side open must not hold the socket.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Error text can quote what the client sent (a path, a key): kept well under the message limit. */
const MAX_ERROR_TEXT = 4096;

function shortened(body: ControlErrorBody): ControlErrorBody {
  const cut = (text: string): string => (text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text);
  return { code: body.code, message: cut(body.message), ...(body.path !== undefined ? { path: cut(body.path) } : {}) };
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

interface Client {
  ws: WebSocket;
  pending: number;
  alive: boolean;
}

export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  if (!options.allowRemote && !isLoopbackHost(options.host)) {
    throw new Error(
      `The control API listens on loopback only (127.0.0.1, ::1, localhost), not on "${options.host}": anyone who can reach it and learns the token controls the bridge. Allow a remote address explicitly if you mean it.`,
    );
  }
  if (options.token === '') throw new Error('The control server needs a token.');
  const log = options.log;
  const maxBuffered = options.maxBufferedBytes ?? 8 * 1024 * 1024;
  const statics: StaticFiles | undefined = options.staticMounts === undefined ? undefined : createStaticFiles(options.staticMounts);
  const clients = new Set<Client>();
  let guard: GuardConfig | undefined;
  let baseHeaders: Record<string, string> = {};
  let closing: Promise<void> | undefined;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: CONTROL_LIMITS.maxMessageBytes,
    perMessageDeflate: false,
    // The token entry is never echoed: the answer names the control protocol only.
    handleProtocols: (protocols) => (protocols.has(CONTROL_SUBPROTOCOL) ? CONTROL_SUBPROTOCOL : false),
  });

  const httpServer = createServer((req: IncomingMessage, res: ServerResponse) => {
    const hostRefusal = guard === undefined ? undefined : checkHost(req, guard.hosts);
    if (hostRefusal) {
      res.writeHead(hostRefusal.status, { ...baseHeaders, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${hostRefusal.reason}\n`);
      return;
    }
    const pathname = (req.url ?? '/').split('?')[0];
    if (pathname === CONTROL_PATH) {
      res.writeHead(426, { ...baseHeaders, Upgrade: 'websocket', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${CONTROL_PATH} is the control WebSocket; see docs/control-api.md.\n`);
      return;
    }
    if (statics?.handle(req, res, baseHeaders)) return;
    res.writeHead(404, { ...baseHeaders, 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('Not found.\n');
  });

  /** Sends encoded bytes, or closes a client that has stopped reading rather than queue without bound. */
  const sendBytes = (client: Client, bytes: Uint8Array): void => {
    if (client.ws.readyState !== WebSocket.OPEN) return;
    if (client.ws.bufferedAmount > maxBuffered) {
      // Closing first takes the client out of OPEN: the log line is itself a log event sent to every
      // client, and must not come back here for this one (a recursion that flooded the log).
      client.ws.close(CONTROL_CLOSE.tooSlow, 'Too many unread messages: read them as they come.');
      setTimeout(() => client.ws.terminate(), 1000).unref();
      log?.log('warn', 'A control client stopped reading its messages; closing its connection.');
      return;
    }
    client.ws.send(bytes, { binary: true });
  };
  const send = (client: Client, message: ServerMessage): void => sendBytes(client, encode(message, { ignoreUndefined: true }));

  const protocolError = (client: Client, reason: string): void => {
    client.ws.close(CONTROL_CLOSE.protocolError, closeReason(reason));
  };

  const reply = (client: Client, id: number, body: ControlErrorBody): void => {
    send(client, { kind: 'error', id, error: shortened(body) });
  };

  const onMessage = (client: Client, data: RawData, isBinary: boolean): void => {
    if (!isBinary) return protocolError(client, 'Text frames are not accepted: send msgpack in binary frames.');
    let value: unknown;
    try {
      value = decode(toBytes(data), DECODE_OPTIONS);
    } catch {
      return protocolError(client, 'The message is not valid msgpack.');
    }
    const checked = validateClientMessage(value);
    if (!checked.ok) {
      if (checked.id === undefined) return protocolError(client, checked.error.message);
      return reply(client, checked.id, checked.error);
    }
    const { id, type, params } = checked.message;
    if (client.pending >= CONTROL_LIMITS.maxPendingRequests) {
      return reply(client, id, { code: 'busy', message: `More than ${CONTROL_LIMITS.maxPendingRequests} requests are waiting for an answer: wait for some before sending more.` });
    }
    client.pending++;
    Promise.resolve()
      .then(() => options.service.request(type, params as never))
      .then(
        (result) => {
          const message = { kind: 'result', id, type, result } as ServerMessage;
          let bytes: Uint8Array;
          try {
            bytes = encode(message, { ignoreUndefined: true });
          } catch (error) {
            log?.log('error', `The answer to control request ${type} cannot be encoded: ${error instanceof Error ? error.message : String(error)}`);
            return reply(client, id, { code: 'internal', message: 'The bridge produced an answer it cannot send; its log says why.' });
          }
          if (bytes.byteLength > CONTROL_LIMITS.maxMessageBytes) {
            log?.log('error', `The answer to control request ${type} is larger than ${CONTROL_LIMITS.maxMessageBytes} bytes; sent an error instead.`);
            return reply(client, id, { code: 'internal', message: 'The answer is too large to send.' });
          }
          sendBytes(client, bytes);
        },
        (error: unknown) => {
          if (error instanceof ControlError) return reply(client, id, error.toBody());
          log?.log('error', `Control request ${type} failed unexpectedly: ${error instanceof Error ? error.message : String(error)}`);
          reply(client, id, { code: 'internal', message: 'The bridge failed to carry out the request; its log says why.' });
        },
      )
      .catch((error: unknown) => log?.log('error', `Could not answer control request ${type}: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => client.pending--);
  };

  wss.on('connection', (ws: WebSocket) => {
    const client: Client = { ws, pending: 0, alive: true };
    clients.add(client);
    ws.on('message', (data, isBinary) => onMessage(client, data, isBinary));
    ws.on('pong', () => (client.alive = true));
    // Oversized frames and protocol violations arrive here; ws closes the socket itself.
    ws.on('error', (error) => log?.log('debug', `Control client dropped: ${error.message}`));
    ws.on('close', () => clients.delete(client));
  });

  const onEvent = (event: ControlEvent): void => {
    if (clients.size === 0) return;
    const message = { kind: 'event', type: event.type, data: event.data } as ServerMessage;
    let bytes: Uint8Array;
    try {
      bytes = encode(message, { ignoreUndefined: true });
    } catch (error) {
      log?.log('error', `Could not encode the ${event.type} event: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (bytes.byteLength > CONTROL_LIMITS.maxMessageBytes) {
      log?.log('error', `Dropped a ${event.type} event larger than ${CONTROL_LIMITS.maxMessageBytes} bytes.`);
      return;
    }
    for (const client of clients) sendBytes(client, bytes);
  };

  // Any local user can knock without the token: one line per interval, so knocking cannot push the
  // bridge's own lines out of the log kept for clients, nor flood every client with log events.
  let lastRefusalLogged: number | undefined;
  let refusalsUnlogged = 0;
  const noteRefusal = (refusal: Refusal): void => {
    const now = Date.now();
    if (lastRefusalLogged !== undefined && now - lastRefusalLogged < REFUSAL_LOG_INTERVAL_MS) {
      refusalsUnlogged++;
      return;
    }
    const more = refusalsUnlogged > 0 ? ` (and ${refusalsUnlogged} more refused since the last such line)` : '';
    lastRefusalLogged = now;
    refusalsUnlogged = 0;
    log?.log('warn', `Refused a control connection (${refusal.status}): ${refusal.reason}${more}`);
  };

  httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const pathname = (req.url ?? '/').split('?')[0];
    if (closing !== undefined || guard === undefined) return refuse(socket, { status: 503, reason: 'The control server is shutting down.' });
    if (pathname !== CONTROL_PATH) return refuse(socket, { status: 404, reason: `The control WebSocket is at ${CONTROL_PATH}.` });
    const refusal = checkUpgrade(req, guard);
    if (refusal) {
      noteRefusal(refusal);
      return refuse(socket, refusal);
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', (error: NodeJS.ErrnoException) => {
      const where = `${hostForUrl(options.host)}:${options.port}`;
      reject(
        new Error(
          error.code === 'EADDRINUSE'
            ? `The control port ${where} is already in use: pick another port, or stop the other serve.`
            : `Cannot listen for control clients on ${where}: ${error.message}`,
        ),
      );
    });
    httpServer.listen(options.port, options.host, () => resolve());
  });
  httpServer.on('error', (error) => log?.log('error', `Control server: ${error.message}`));

  const address = httpServer.address() as AddressInfo;
  const port = address.port;
  const boundHost = hostForUrl(address.address);
  // Any other bound address (127.0.0.2, a remote one) is a name clients use too: the connection file's
  // URL names it, so a Host or Origin naming it is this server's own.
  const loopbackNames = ['127.0.0.1', 'localhost', '[::1]'];
  const remote = options.allowRemote === true && !isLoopbackHost(address.address);
  const extraHosts = loopbackNames.includes(boundHost) ? [] : [boundHost];
  const origins = new Set([...ownOrigins(port, extraHosts), ...(options.allowedOrigins ?? []).map((o) => o.toLowerCase().replace(/\/+$/, ''))]);
  guard = {
    token: options.token,
    origins,
    // allowRemote permits a remote bind; a loopback bind keeps its DNS-rebinding guard all the same.
    hosts: remote ? undefined : new Set([...loopbackNames, ...extraHosts].map((h) => `${h}:${port}`)),
    acceptHostOrigin: remote,
  };
  // CSP host sources cannot name an IPv6 literal (Chromium drops `ws://[::1]:PORT` as invalid);
  // 'self' already covers a page loaded from one, in browsers that follow CSP 3.
  const wsSelf = ['127.0.0.1', 'localhost', ...extraHosts]
    .filter((h) => !h.startsWith('['))
    .map((h) => `ws://${h}:${port}`)
    .join(' ');
  baseHeaders = {
    'Content-Security-Policy': `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self' ${wsSelf}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
  };

  const unsubscribe = options.service.subscribe(onEvent);
  const keepalive = setInterval(() => {
    for (const client of clients) {
      if (!client.alive) {
        client.ws.terminate();
        continue;
      }
      client.alive = false;
      client.ws.ping();
    }
  }, options.keepaliveMs ?? 30_000);
  keepalive.unref();

  const close = async (): Promise<void> => {
    unsubscribe();
    clearInterval(keepalive);
    const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
    const goodbyes = [...clients].map(
      (client) =>
        new Promise<void>((resolve) => {
          if (client.ws.readyState === WebSocket.CLOSED) return resolve();
          client.ws.once('close', () => resolve());
          client.ws.close(CONTROL_CLOSE.shuttingDown, 'spice-smartcard serve is shutting down.');
        }),
    );
    const timeoutMs = options.closeTimeoutMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(goodbyes), deadline]);
    for (const client of clients) client.ws.terminate();
    httpServer.closeAllConnections();
    await Promise.race([closed, deadline]);
    clearTimeout(timer);
    wss.close();
  };

  return {
    url: `http://${boundHost}:${port}/`,
    port,
    close: () => (closing ??= close()),
  };
}
