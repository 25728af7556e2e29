// Who may open the control WebSocket: decided on the HTTP upgrade request, before any WebSocket exists.
// A refused request gets an HTTP status and a one-line reason, never a socket.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { CONTROL_SUBPROTOCOL } from './schema.js';

/** The subprotocol entry that carries the token from a browser, which cannot set headers. */
export const TOKEN_PROTOCOL_PREFIX = 'token.';

export interface Refusal {
  status: number;
  reason: string;
}

export interface GuardConfig {
  token: string;
  /** Origins (scheme://host:port, lowercase) the server itself serves, plus the allowed ones. */
  origins: ReadonlySet<string>;
  /** Host header values the server answers to; undefined when any host is accepted (allowRemote). */
  hosts: ReadonlySet<string> | undefined;
  /** Also accept the origin the Host header names (remote binds, where the server's own names are not known). */
  acceptHostOrigin?: boolean;
}

/** The origins a page served by this server has, for a server listening on `port`. */
export function ownOrigins(port: number, extraHosts: readonly string[] = []): string[] {
  const hosts = ['127.0.0.1', 'localhost', '[::1]', ...extraHosts];
  return hosts.map((h) => `http://${h}:${port}`);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Compares without leaking, through timing, how much of the token a guess got right (or its length). */
export function tokensEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

export function requestedProtocols(req: IncomingMessage): string[] {
  return (header(req, 'sec-websocket-protocol') ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

function presentedToken(req: IncomingMessage, protocols: readonly string[]): string | undefined {
  const authorization = header(req, 'authorization');
  const bearer = authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
  if (bearer !== undefined) return bearer;
  const entry = protocols.find((p) => p.startsWith(TOKEN_PROTOCOL_PREFIX));
  return entry?.slice(TOKEN_PROTOCOL_PREFIX.length);
}

/** A Host header naming something else points at DNS rebinding: a foreign page reaching loopback by name. */
export function checkHost(req: IncomingMessage, hosts: ReadonlySet<string> | undefined): Refusal | undefined {
  if (hosts === undefined) return undefined;
  const host = header(req, 'host')?.toLowerCase();
  if (host === undefined || !hosts.has(host)) return { status: 421, reason: 'This server answers only to its loopback address.' };
  return undefined;
}

/** Undefined when the upgrade may proceed. */
export function checkUpgrade(req: IncomingMessage, config: GuardConfig): Refusal | undefined {
  const host = checkHost(req, config.hosts);
  if (host) return host;
  // Browsers always send Origin; Node and Electron's main process send none and pass on the token alone.
  const origin = header(req, 'origin');
  const hostOrigin = config.acceptHostOrigin ? `http://${header(req, 'host')?.toLowerCase() ?? ''}` : undefined;
  if (origin !== undefined && !config.origins.has(origin.toLowerCase()) && origin.toLowerCase() !== hostOrigin) {
    return { status: 403, reason: `Origin ${origin} is not allowed to use the control API.` };
  }
  const protocols = requestedProtocols(req);
  const token = presentedToken(req, protocols);
  if (token === undefined) return { status: 401, reason: `No control token: send it as "Authorization: Bearer TOKEN" or as the subprotocol "${TOKEN_PROTOCOL_PREFIX}TOKEN".` };
  if (!tokensEqual(token, config.token)) return { status: 401, reason: 'Wrong control token: read it from the connection file of the running serve.' };
  if (!protocols.includes(CONTROL_SUBPROTOCOL)) return { status: 400, reason: `Ask for the WebSocket subprotocol "${CONTROL_SUBPROTOCOL}".` };
  return undefined;
}
