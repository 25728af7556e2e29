// serve's log: human lines or JSON lines on stderr, a level filter, and listeners that receive the
// same lines as LogLine (the bridge keeps them for `log.tail` and sends them as `log` events).
// Callers never pass secrets; as a second line of defence, any secret registered with `redact` is
// replaced wherever it appears, and control characters cannot forge extra lines.
import type { LogLevel, LogLine } from '../control/schema.js';
import type { ServeLog } from './serve-log.js';

export type ServeLogFormat = 'human' | 'json';

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
/** Short secrets would redact ordinary words; a SPICE password this short is refused elsewhere anyway. */
const MIN_REDACTED_LENGTH = 4;
const REDACTED = '[redacted]';

export interface ServeLoggerOptions {
  level?: LogLevel;
  format?: ServeLogFormat;
  /** Where formatted lines go (default: stderr). Gets one line without its newline. */
  write?: (line: string) => void;
  now?: () => number;
}

export class ServeLogger implements ServeLog {
  private level: LogLevel;
  private readonly format: ServeLogFormat;
  private readonly write: (line: string) => void;
  private readonly now: () => number;
  private readonly listeners = new Set<(line: LogLine) => void>();
  private readonly secrets = new Set<string>();

  constructor(options: ServeLoggerOptions = {}) {
    this.level = options.level ?? 'info';
    this.format = options.format ?? 'human';
    this.write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
    this.now = options.now ?? Date.now;
  }

  setLevel(level: LogLevel): void {
    this.level = level;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  /** Lines at or above the level, as written; returns the unsubscribe function. */
  onLine(listener: (line: LogLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Never lets `secret` reach a log line (a password read from a file, a PIN given in a request). */
  redact(secret: string): void {
    if (secret.length >= MIN_REDACTED_LENGTH) this.secrets.add(secret);
  }

  scrub(text: string): string {
    return this.clean(text);
  }

  log(level: LogLevel, message: string, session?: string): void {
    if (!this.enabled(level)) return;
    const line: LogLine = { time: this.now(), level, message: this.clean(message) };
    if (session !== undefined) line.session = this.clean(session);
    this.write(formatLogLine(line, this.format));
    for (const listener of this.listeners) {
      try {
        listener(line);
      } catch {
        // A broken listener must not stop the log (or the code that logged).
      }
    }
  }

  private clean(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join(REDACTED);
    // One call is one line: newlines and other controls are shown escaped, never interpreted.
    return out.replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  }
}

export function formatLogLine(line: LogLine, format: ServeLogFormat): string {
  const time = new Date(line.time).toISOString();
  if (format === 'json') {
    return JSON.stringify({ time, level: line.level, ...(line.session !== undefined ? { session: line.session } : {}), message: line.message });
  }
  return `${time} ${line.level.padEnd(5)} ${line.session !== undefined ? `[${line.session}] ` : ''}${line.message}`;
}
