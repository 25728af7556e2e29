// The control API's own client with the browser's WebSocket, behind the page's ControlLink.
import { ControlClient, type WebSocketConstructorLike } from '../../src/control/client.js';
import type { ControlLink } from './control-link.js';

export async function openLink(url: string, token: string): Promise<ControlLink> {
  // The DOM's send() takes ArrayBuffer-backed views only; the client sends exactly those (msgpack's
  // encode output), which TypeScript cannot see through Uint8Array<ArrayBufferLike>.
  const client = new ControlClient({ WebSocket: WebSocket as unknown as WebSocketConstructorLike });
  await client.connect(url, token);
  return {
    request: (type, params) => client.request(type, params),
    on: (type, listener) => {
      client.on(type, listener);
    },
    onClosed: (listener) => {
      client.on('closed', (info) => listener(info.reason !== '' ? info.reason : `code ${info.code}`));
    },
    close: () => void client.close(),
  };
}
