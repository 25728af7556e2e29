// A control API client that completes the WebSocket upgrade and then never reads: Node stops
// pulling from the kernel once its small read buffer is full, so the server's writes back up.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { CONTROL_SUBPROTOCOL } from '../../src/control/schema.js';

export interface StalledClient {
  socket: Socket;
  /** Settles when the server closes the connection. */
  gone: Promise<void>;
  /** The upgrade's response head, for assertions. */
  head: string;
}

export async function openStalledClient(port: number, token: string): Promise<StalledClient> {
  const socket = connect(port, '127.0.0.1');
  const gone = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(
    `GET /control HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Protocol: ${CONTROL_SUBPROTOCOL}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
  );
  const head = await new Promise<string>((resolve) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause();
      resolve(text);
    };
    socket.on('data', onData);
  });
  return { socket, gone, head };
}
