// Where `serve` and its sessions say what happens. The implementation writes human or JSON lines and
// keeps the last lines for the control API; callers never pass a password, PIN or key.
import type { LogLevel } from '../control/schema.js';

export interface ServeLog {
  log(level: LogLevel, message: string, session?: string): void;
}
