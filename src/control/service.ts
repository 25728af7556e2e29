// What the control server needs from the bridge: carry out a request, and tell it about events.
// `serve`'s bridge implements it; the WebSocket server only checks, decodes and dispatches.
import type { ControlErrorBody, ErrorCode, EventMap, EventType, RequestParams, RequestResult, RequestType } from './schema.js';

export type ControlEvent = { [E in EventType]: { type: E; data: EventMap[E] } }[EventType];

export interface ControlService {
  /** Params have the schema's shape (the server checked it); their content is the service's to judge. */
  request<T extends RequestType>(type: T, params: RequestParams<T>): Promise<RequestResult<T>>;
  /** Calls `listener` for every event until the returned function is called. */
  subscribe(listener: (event: ControlEvent) => void): () => void;
}

/** A request that cannot be carried out; its body goes to the client as is, so it must hold no secret. */
export class ControlError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'ControlError';
  }

  toBody(): ControlErrorBody {
    return { code: this.code, message: this.message, ...(this.path !== undefined ? { path: this.path } : {}) };
  }
}
