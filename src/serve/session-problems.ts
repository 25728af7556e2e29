// What a session does after a failure: retry (the cause may pass), ask for a password, or give up
// until the user changes something. Each outcome carries the schema's Problem: a stable code and
// one sentence saying what happened and what to do. Pure; no secret ever reaches a message.
import { SpiceError } from '../../spice/errors.js';
import type { Problem, SessionMode } from '../control/schema.js';
import { UsageError } from '../cli/exit-codes.js';
import { CardFileError } from '../../vsc/soft-card/card-file.js';
import { missingSmartcardAdvice } from '../smartcard-advice.js';

export type FailureOutcome = 'retry' | 'needs-password' | 'failed';

export interface ClassifiedFailure {
  outcome: FailureOutcome;
  problem: Problem;
}

export interface FailureContext {
  mode: SessionMode;
  /** A password was given (in memory or a password file): a refusal means it is wrong. */
  havePassword: boolean;
}

/** A failure the session's own configuration caused (unreadable files, a bad target): retrying cannot fix it. */
export class SessionConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionConfigError';
  }
}

/** The card source could not be opened (a broken soft card file, an unreadable trace). */
export class SessionCardError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionCardError';
  }
}

/** The advice of smartcard-advice.ts as one line, for a Problem's message. */
function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
}

export function classifyFailure(error: unknown, context: FailureContext): ClassifiedFailure {
  if (error instanceof SpiceError) {
    switch (error.kind) {
      case 'network':
        return { outcome: 'retry', problem: { code: 'network', message: error.message } };
      case 'protocol':
        // A server restarting mid-handshake looks like a protocol fault; the next attempt tells.
        return { outcome: 'retry', problem: { code: 'protocol', message: error.message } };
      case 'channel-taken':
        return { outcome: 'retry', problem: { code: 'channel-taken', message: oneLine(error.message) } };
      case 'channel-missing':
        return { outcome: 'failed', problem: { code: 'channel-missing', message: oneLine(missingSmartcardAdvice()) } };
      case 'tls':
        return { outcome: 'failed', problem: { code: 'tls', message: `${error.message} Fix the session's CA file or host subject, then start it again.` } };
      case 'auth':
        return context.havePassword
          ? { outcome: 'failed', problem: { code: 'auth', message: 'The server refused the password: send the right one with session.password (or fix the password file) and the session connects again.' } }
          : { outcome: 'needs-password', problem: { code: 'auth', message: 'The server wants a password and none was given: send it with session.password.' } };
    }
  }
  if (error instanceof SessionConfigError || error instanceof UsageError) {
    return { outcome: 'failed', problem: { code: 'config', message: `${error.message} Fix the session and start it again.` } };
  }
  if (error instanceof SessionCardError || error instanceof CardFileError) {
    return { outcome: 'failed', problem: { code: 'card', message: `${error.message} Fix the card source (session.card) and start the session again.` } };
  }
  const text = error instanceof Error ? error.message : String(error);
  // Unknown failures are retried: a long-running bridge should outlive a passing fault.
  return { outcome: 'retry', problem: { code: 'internal', message: `Unexpected failure: ${text}. Retrying; if it persists, report it with the log.` } };
}
