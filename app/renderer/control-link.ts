// The page's one connection to the bridge: the control API's browser client on the page's own origin,
// with the token from the URL fragment (a fragment never reaches the server or its logs).
import type { EventMap, EventType, RequestParams, RequestResult, RequestType } from '../../src/control/schema.js';

export interface ControlLink {
  request<T extends RequestType>(type: T, params: RequestParams<T>): Promise<RequestResult<T>>;
  on<E extends EventType>(type: E, listener: (data: EventMap[E]) => void): void;
  /** Called once when the socket closes, with the reason as the client reports it. */
  onClosed(listener: (reason: string) => void): void;
  close(): void;
}

/** The token from `#token=HEX` (other fragment keys are ignored). */
export function tokenFromFragment(hash: string): string | undefined {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const token = params.get('token');
  return token !== null && /^[0-9a-f]{16,128}$/i.test(token) ? token : undefined;
}

/** The control server is the one that served the page; the client finds its socket from this base URL. */
export function controlUrlFor(location: { protocol: string; host: string }): string {
  return `${location.protocol}//${location.host}/`;
}

/** Text of an error from a request: the bridge's own message when it sent one. */
export function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const body = (error as { body?: { message?: unknown } }).body;
    if (body !== undefined && typeof body.message === 'string') return body.message;
    const message = (error as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  }
  return String(error);
}
