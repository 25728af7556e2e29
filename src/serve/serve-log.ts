// Where `serve` and its sessions say what happens. The implementation writes human or JSON lines and
// keeps the last lines for the control API; callers never pass a password, PIN or key.
import type { LogLevel } from '../control/schema.js';

export interface ServeLog {
  log(level: LogLevel, message: string, session?: string): void;
  /** Whether a line of this level is written at all (the bridge keeps and sends only those). */
  enabled?(level: LogLevel): boolean;
  /** Never lets `secret` reach a line from now on (second line of defence; see ServeLogger). */
  redact?(secret: string): void;
  /** The text as this log would write it (secrets blanked, controls escaped), for copies kept elsewhere. */
  scrub?(text: string): string;
}
