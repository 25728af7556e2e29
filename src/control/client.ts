// A client of the control API for any JavaScript runtime: the app's renderer, a browser, or Node
// (with `ws`, see node-client.ts). No Node imports: it gets its WebSocket from the caller.
import { decode, encode } from '@msgpack/msgpack';
import {
  CONTROL_LIMITS,
  CONTROL_SUBPROTOCOL,
  EVENT_TYPES,
  type ControlErrorBody,
  type EventMap,
  type EventType,
  type RequestParams,
  type RequestResult,
  type RequestType,
} from './schema.js';

/** The token travels as this subprotocol entry, next to CONTROL_SUBPROTOCOL, where headers cannot be set. */
export const TOKEN_SUBPROTOCOL_PREFIX = 'token.';

/**
 * What the client uses of a WHATWG WebSocket (the browser's, or `ws`'s). Handler parameters are typed
 * `never` so both implementations' own event types fit; the client reads only the fields it names.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: never) => void) | null;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
}

export type WebSocketConstructorLike = new (url: string, protocols: string[]) => WebSocketLike;

export type ControlClientOptions =
  /** A WebSocket constructor: the token goes in the subprotocol list (what browsers can do). */
  | { WebSocket: WebSocketConstructorLike }
  /** Opens the socket itself, e.g. with the token in an Authorization header (Node). */
  | { open: (url: string, token: string) => WebSocketLike };

export interface ControlCloseInfo {
  code: number;
  reason: string;
}

/** The server answered the request with an error. */
export class ControlClientError extends Error {
  constructor(readonly body: ControlErrorBody) {
    super(body.message);
    this.name = 'ControlClientError';
  }

  get code(): ControlErrorBody['code'] {
    return this.body.code;
  }
}

/** No answer can come: the connection failed, was refused, or closed. */
export class ControlConnectionError extends Error {
  constructor(
    message: string,
    readonly close?: ControlCloseInfo,
  ) {
    super(message);
    this.name = 'ControlConnectionError';
  }
}

const OPEN = 1;

interface Pending {
  type: RequestType;
  resolve: (result: never) => void;
  reject: (error: Error) => void;
}

type EventListener = (data: never) => void;

/** The WebSocket address of a control server given by its http(s):// base URL (or a ws(s):// URL). */
export function controlSocketUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ControlConnectionError(`"${url}" is not a URL of a control server.`);
  }
  if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
    parsed.protocol = parsed.protocol === 'https:' ? 'wss:' : 'ws:';
    parsed.pathname = '/control';
  } else if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    throw new ControlConnectionError(`${url} is not an http(s):// or ws(s):// URL of a control server.`);
  }
  parsed.search = '';
  parsed.hash = '';
  return parsed.toString();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function isErrorBody(value: unknown): value is ControlErrorBody {
  return isRecord(value) && typeof value['code'] === 'string' && typeof value['message'] === 'string';
}

export class ControlClient {
  private socket: WebSocketLike | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly closeListeners = new Set<(info: ControlCloseInfo) => void>();
  private closeInfo: ControlCloseInfo | undefined;

  constructor(private readonly options: ControlClientOptions) {}

  /** Opens the connection; rejects with a ControlConnectionError when it is refused or fails. */
  connect(url: string, token: string): Promise<void> {
    if (this.socket !== undefined) return Promise.reject(new ControlConnectionError('This client is already connected; make a new one to connect again.'));
    let socketUrl: string;
    let socket: WebSocketLike;
    try {
      socketUrl = controlSocketUrl(url);
      socket = 'open' in this.options ? this.options.open(socketUrl, token) : new this.options.WebSocket(socketUrl, [CONTROL_SUBPROTOCOL, `${TOKEN_SUBPROTOCOL_PREFIX}${token}`]);
    } catch (error) {
      return Promise.reject(error instanceof ControlConnectionError ? error : new ControlConnectionError(`Cannot connect to ${url}: ${error instanceof Error ? error.message : String(error)}`));
    }
    this.socket = socket;
    socket.binaryType = 'arraybuffer';
    return new Promise<void>((resolve, reject) => {
      let opened = false;
      let failure: string | undefined;
      socket.onopen = () => {
        opened = true;
        resolve();
      };
      socket.onerror = (event: { message?: unknown }) => {
        // Browsers give no detail (not even the HTTP status); ws says "Unexpected server response: 401".
        if (typeof event.message === 'string') failure = event.message;
      };
      socket.onmessage = (event: { data: unknown }) => this.onMessage(event.data);
      socket.onclose = (event: { code: number; reason: string }) => {
        const info = { code: event.code, reason: event.reason };
        this.onClosed(info);
        if (!opened) reject(new ControlConnectionError(`Could not connect to the control server at ${socketUrl}: ${failure ?? `closed with code ${info.code}${info.reason ? ` (${info.reason})` : ''}`}.`, info));
      };
    });
  }

  get connected(): boolean {
    return this.socket?.readyState === OPEN;
  }

  /** Resolves with the result, or rejects with ControlClientError (the server's error) or ControlConnectionError. */
  request<T extends RequestType>(type: T, params: RequestParams<T>): Promise<RequestResult<T>> {
    const socket = this.socket;
    if (socket === undefined || socket.readyState !== OPEN) {
      return Promise.reject(new ControlConnectionError(`Cannot send ${type}: the control connection is ${this.closeInfo ? `closed (${this.describeClose(this.closeInfo)})` : 'not open'}.`, this.closeInfo));
    }
    const id = this.nextId++;
    const bytes = encode({ kind: 'request', id, type, params }, { ignoreUndefined: true });
    if (bytes.byteLength > CONTROL_LIMITS.maxMessageBytes) {
      return Promise.reject(new ControlClientError({ code: 'bad-request', message: `The ${type} request is ${bytes.byteLength} bytes; the control API takes at most ${CONTROL_LIMITS.maxMessageBytes}.` }));
    }
    return new Promise<RequestResult<T>>((resolve, reject) => {
      this.pending.set(id, { type, resolve: resolve as (result: never) => void, reject });
      socket.send(bytes);
    });
  }

  /** Calls `listener` for every event of that type; returns a function that stops it. */
  on<E extends EventType>(type: E, listener: (data: EventMap[E]) => void): () => void;
  /** Calls `listener` once the connection has closed, with the server's close code and reason. */
  on(type: 'closed', listener: (info: ControlCloseInfo) => void): () => void;
  on(type: string, listener: (data: never) => void): () => void {
    if (type === 'closed') {
      const fn = listener as (info: ControlCloseInfo) => void;
      this.closeListeners.add(fn);
      return () => this.closeListeners.delete(fn);
    }
    let set = this.listeners.get(type);
    if (set === undefined) this.listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Closes the connection; pending requests fail. Resolves once the socket has closed. */
  close(): Promise<ControlCloseInfo> {
    const socket = this.socket;
    if (this.closeInfo !== undefined || socket === undefined) return Promise.resolve(this.closeInfo ?? { code: 1000, reason: '' });
    return new Promise((resolve) => {
      this.closeListeners.add(resolve);
      socket.close(1000, 'client closing');
    });
  }

  private describeClose(info: ControlCloseInfo): string {
    return `code ${info.code}${info.reason ? `: ${info.reason}` : ''}`;
  }

  private onClosed(info: ControlCloseInfo): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = info;
    const error = (type: RequestType): ControlConnectionError =>
      new ControlConnectionError(`The control connection closed (${this.describeClose(info)}) before the answer to ${type} came.`, info);
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(error(p.type));
    }
    for (const listener of [...this.closeListeners]) listener(info);
  }

  /** The server broke the protocol: stop here rather than guess. */
  private protocolFailure(reason: string): void {
    this.socket?.close(4400, reason.slice(0, 120));
  }

  private onMessage(data: unknown): void {
    // Another realm's ArrayBuffer (an isolated renderer) fails instanceof, so ask its tag as well.
    if (!(data instanceof ArrayBuffer || Object.prototype.toString.call(data) === '[object ArrayBuffer]')) return this.protocolFailure('The server sent a text frame.');
    const buffer = data as ArrayBuffer;
    if (buffer.byteLength > CONTROL_LIMITS.maxMessageBytes) return this.protocolFailure('The server sent a message over the size limit.');
    let message: unknown;
    try {
      message = decode(new Uint8Array(buffer));
    } catch {
      return this.protocolFailure('The server sent a message that is not msgpack.');
    }
    if (!isRecord(message)) return this.protocolFailure('The server sent a message that is not a map.');
    switch (message['kind']) {
      case 'result':
      case 'error': {
        const id = message['id'];
        const pending = typeof id === 'number' ? this.pending.get(id) : undefined;
        if (pending === undefined) return this.protocolFailure('The server answered a request that was not sent.');
        this.pending.delete(id as number);
        if (message['kind'] === 'result') return pending.resolve(message['result'] as never);
        const body = message['error'];
        pending.reject(new ControlClientError(isErrorBody(body) ? body : { code: 'internal', message: 'The server sent an error without a description.' }));
        return;
      }
      case 'event': {
        const type = message['type'];
        if (typeof type !== 'string' || !(EVENT_TYPES as readonly string[]).includes(type)) return; // a newer server's event
        for (const listener of [...(this.listeners.get(type) ?? [])]) {
          try {
            listener(message['data'] as never);
          } catch (error) {
            // One faulty listener must not keep the others from their events.
            queueMicrotask(() => {
              throw error;
            });
          }
        }
        return;
      }
      default:
        return; // kinds added by a newer server
    }
  }
}
