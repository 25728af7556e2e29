// Messages between the main process and the bridge's utility process (structured clone over the
// parent port). The bridge posts where its control server is; main sends control requests for what
// the OS opened and follows events for the tray.
import type { ControlErrorBody, RequestParams, RequestResult, RequestType } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';

export type ToBridge =
  | { [T in RequestType]: { kind: 'request'; id: number; type: T; params: RequestParams<T> } }[RequestType]
  /** Stop every session (cards and readers leave the VMs), then exit 0. */
  | { kind: 'stop' };

export type FromBridge =
  /** The control server is up: the window loads `url` with the token in the fragment. */
  | { kind: 'ready'; url: string; token: string }
  | { [T in RequestType]: { kind: 'result'; id: number; type: T; result: RequestResult<T> } }[RequestType]
  | { kind: 'error'; id: number; error: ControlErrorBody }
  | { kind: 'event'; event: ControlEvent }
  /** The bridge could not start; it exits after this. */
  | { kind: 'fatal'; message: string };

export function isFromBridge(value: unknown): value is FromBridge {
  if (typeof value !== 'object' || value === null) return false;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'ready' || kind === 'result' || kind === 'error' || kind === 'event' || kind === 'fatal';
}

export function isToBridge(value: unknown): value is ToBridge {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { kind?: unknown; id?: unknown; type?: unknown };
  return v.kind === 'stop' || (v.kind === 'request' && typeof v.id === 'number' && typeof v.type === 'string');
}
