// --trace FILE / --trace-secrets for connect and passthru: records the forwarder's VSC messages.
import type { ParseArgsConfig } from 'node:util';
import type { CardForwarder } from '../bridge/card-forwarder.js';
import { TraceRecorder } from './trace-recorder.js';
import { toolVersion } from './tool-version.js';

export const TRACE_OPTIONS = {
  trace: { type: 'string' },
  'trace-secrets': { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

export interface TraceOptionValues {
  trace?: string | undefined;
  'trace-secrets'?: boolean | undefined;
}

export const TRACE_HELP_LINES = `  --trace FILE       append every VSC message of the session to FILE (msgpack, mode 0600); PINs
                     and key material are replaced by FF bytes ("spice-smartcard trace show FILE")
  --trace-secrets    keep PINs and key material in the trace (the file then holds secrets)
  --replay FILE      the card is a recorded trace: its answers, in order, to the same commands`;

/** Starts recording a forwarder when --trace was given; returns the recorder to close at the end. */
export function startTrace(values: TraceOptionValues, target: string, card: string, forwarder: CardForwarder, warn: (text: string) => void): TraceRecorder | undefined {
  const path = values.trace;
  if (path === undefined) return undefined;
  const secrets = values['trace-secrets'] === true;
  const recorder = new TraceRecorder({ path, tool: toolVersion(), target, card, secrets });
  if (secrets) warn(`Warning: the trace ${path} holds PINs and key material (--trace-secrets); keep it private and delete it after use.`);
  forwarder.on('vsc', (dir, message) => recorder.record(dir, message));
  return recorder;
}
