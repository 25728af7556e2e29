import type { SpiceErrorKind } from '../../spice/errors.js';

/** Exit codes shared by every command of the CLI. */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  NETWORK: 3,
  AUTH: 4,
  SMARTCARD: 5,
} as const;
export type ExitCodeNumber = (typeof ExitCode)[keyof typeof ExitCode];

export function exitCodeFor(kind: SpiceErrorKind): ExitCodeNumber {
  switch (kind) {
    case 'auth':
      return ExitCode.AUTH;
    case 'channel-missing':
    case 'channel-taken':
      return ExitCode.SMARTCARD;
    case 'network':
    case 'tls':
    case 'protocol':
      return ExitCode.NETWORK;
  }
}

/** A mistake in how the command was called: exit code 2 with this message. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
