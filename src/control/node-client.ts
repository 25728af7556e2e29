// Connecting to a running serve from Node: read the connection file, open the socket with `ws`
// (token in an Authorization header, message size bounded), and say clearly why it failed.
import { WebSocket } from 'ws';
import { ControlClient, ControlConnectionError, type WebSocketLike } from './client.js';
import { CONTROL_LIMITS, CONTROL_SUBPROTOCOL } from './schema.js';
import { defaultConnectionFilePath, readConnectionFile } from './token.js';

export function openNodeSocket(url: string, token: string): WebSocketLike {
  return new WebSocket(url, [CONTROL_SUBPROTOCOL], {
    headers: { Authorization: `Bearer ${token}` },
    maxPayload: CONTROL_LIMITS.maxMessageBytes,
    perMessageDeflate: false,
    handshakeTimeout: 10_000,
  });
}

function explain(error: unknown, url: string, file: string | undefined): Error {
  if (!(error instanceof ControlConnectionError)) return error instanceof Error ? error : new Error(String(error));
  const from = file === undefined ? '' : ` (from ${file})`;
  const status = /Unexpected server response: (\d+)/.exec(error.message)?.[1];
  if (status === '401') return new ControlConnectionError(`The control server at ${url} refused the token${from}: the file may be left over from an earlier serve; restart serve or point at its current connection file.`, error.close);
  if (status !== undefined) return new ControlConnectionError(`The control server at ${url} refused the connection (HTTP ${status}).`, error.close);
  if (/ECONNREFUSED/.test(error.message)) return new ControlConnectionError(`Nothing listens at ${url}${from}: is "spice-smartcard serve" running?`, error.close);
  return error;
}

/** A connected client for this url and token. */
export async function connectNode(url: string, token: string, file?: string): Promise<ControlClient> {
  const client = new ControlClient({ open: openNodeSocket });
  try {
    await client.connect(url, token);
  } catch (error) {
    throw explain(error, url, file);
  }
  return client;
}

/** A connected client for the serve that wrote the connection file (default: defaultConnectionFilePath()). */
export function connectFromConnectionFile(path: string = defaultConnectionFilePath()): Promise<ControlClient> {
  const info = readConnectionFile(path);
  return connectNode(info.url, info.token, path);
}
