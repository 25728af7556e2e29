// `probe`: link to the server, read its channel list, and check that the smartcard channel links.
import { ChannelType } from '../spice/constants.js';
import { SpiceError } from '../spice/errors.js';
import type { SpiceChannel } from '../spice/channel.js';
import type { ConnectionSpec } from './connection-spec.js';
import { openSession, type OpenSessionOptions } from './open-session.js';

export type SmartcardLinkStatus = 'linked' | 'taken' | 'not-offered' | 'failed';

export interface ProbeResult {
  target: string;
  /** The main channel runs over TLS. */
  secure: boolean;
  sessionId: number;
  vmName?: string;
  vmUuid?: string;
  channels: { type: number; id: number; name: string }[];
  smartcard: boolean;
  smartcardLink: SmartcardLinkStatus;
  smartcardSecure?: boolean;
  /** Why the smartcard link failed, when it did. */
  smartcardError?: SpiceError;
}

/** How long a freshly linked channel is watched: spice-server closes a duplicate at once, and pings a live one within ~100 ms. */
const SETTLE_MS = 1_000;

function settle(channel: SpiceChannel): Promise<'alive' | 'closed'> {
  return new Promise((resolve) => {
    if (!channel.isOpen) return resolve('closed');
    const timer = setTimeout(() => done('alive'), SETTLE_MS);
    const poll = setInterval(() => {
      if (channel.pingsAnswered > 0) done('alive');
    }, 20);
    const onClose = (): void => done('closed');
    const done = (r: 'alive' | 'closed'): void => {
      clearTimeout(timer);
      clearInterval(poll);
      channel.off('close', onClose);
      resolve(r);
    };
    channel.on('close', onClose);
  });
}

export async function probe(spec: ConnectionSpec, options: OpenSessionOptions = {}): Promise<ProbeResult> {
  const session = await openSession(spec, options);
  try {
    const result: ProbeResult = {
      target: spec.label,
      secure: session.mainSecure,
      sessionId: session.sessionId ?? 0,
      channels: session.channels.map((c) => ({ type: c.type, id: c.id, name: c.name })),
      smartcard: session.hasChannel(ChannelType.SMARTCARD, 0),
      smartcardLink: 'not-offered',
    };
    if (session.name !== undefined) result.vmName = session.name;
    if (session.uuid !== undefined) result.vmUuid = session.uuid;
    if (result.smartcard) {
      try {
        const channel = await session.openChannel(ChannelType.SMARTCARD, 0, options.signal);
        channel.on('close', () => undefined);
        channel.start();
        result.smartcardSecure = channel.secure;
        result.smartcardLink = (await settle(channel)) === 'alive' ? 'linked' : 'taken';
        await channel.close();
      } catch (e) {
        result.smartcardLink = 'failed';
        result.smartcardError = e instanceof SpiceError ? e : new SpiceError('network', String(e), { cause: e });
      }
    }
    return result;
  } finally {
    await session.close();
  }
}
