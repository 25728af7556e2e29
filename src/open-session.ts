// Opens a SPICE session for a resolved connection, asking for the password on a terminal when the
// server refuses the one we had (or we had none) and nobody said where else to find it.
import { LinkError } from '../spice/constants.js';
import { SpiceError } from '../spice/errors.js';
import type { Notify } from '../spice/messages.js';
import { SpiceSession, type SessionLogLevel } from '../spice/session.js';
import { createTransport } from '../spice/transport.js';
import type { ConnectionSpec } from './connection-spec.js';

export interface OpenSessionOptions {
  /** Asks the user for a password; absent when there is no terminal. */
  askPassword?: (question: string) => Promise<string>;
  log?: (level: SessionLogLevel, message: string) => void;
  /** Server notices (SPICE NOTIFY) are meant for the user: show them. */
  onNotify?: (notify: Notify) => void;
  signal?: AbortSignal;
}

export async function openSession(spec: ConnectionSpec, options: OpenSessionOptions = {}): Promise<SpiceSession> {
  const transport = createTransport(spec.plan);
  let password = spec.password;
  for (let attempt = 0; ; attempt++) {
    const session = new SpiceSession({ transport, password, secureChannels: spec.secureChannels });
    if (options.log) session.on('log', options.log);
    if (options.onNotify) session.on('notify', options.onNotify);
    try {
      await session.connect(options.signal);
      if (attempt > 0) spec.passwordSource = 'prompt';
      spec.password = password;
      return session;
    } catch (e) {
      const canAsk = options.askPassword !== undefined && (spec.passwordSource === 'none' || attempt > 0) && attempt < 3;
      if (e instanceof SpiceError && e.linkError === LinkError.PERMISSION_DENIED && canAsk && options.askPassword) {
        password = await options.askPassword(attempt === 0 ? `Password for ${spec.label}: ` : 'Wrong password, try again: ');
        continue;
      }
      throw e;
    }
  }
}
