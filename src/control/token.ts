// The per-launch control token and the connection file that hands it to local clients. The file is
// the only way to learn the token, so it must be readable by its owner alone.
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface ConnectionInfo {
  /** The control server's base URL, e.g. http://127.0.0.1:PORT/ (the WebSocket is at /control). */
  url: string;
  token: string;
  /** The serve process, so a client can tell a stale file from a live server. */
  pid: number;
}

/** A connection file that is missing, unsafe or malformed; the message says what to do. */
export class ConnectionFileError extends Error {
  constructor(
    message: string,
    readonly reason: 'missing' | 'permissions' | 'malformed' | 'unreadable',
  ) {
    super(message);
    this.name = 'ConnectionFileError';
  }
}

const TOKEN_PATTERN = /^[0-9a-f]{64}$/;

/** 32 random bytes as lowercase hex: new for every launch of serve. */
export function newControlToken(): string {
  return randomBytes(32).toString('hex');
}

export function isWellFormedToken(token: string): boolean {
  return TOKEN_PATTERN.test(token);
}

/** $XDG_RUNTIME_DIR/spice-smartcard/control.json, else ~/.cache/spice-smartcard/control.json. */
export function defaultConnectionFilePath(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env['XDG_RUNTIME_DIR'];
  const base = runtime !== undefined && runtime !== '' ? runtime : join(homedir(), '.cache');
  return join(base, 'spice-smartcard', 'control.json');
}

const checksPermissions = process.platform !== 'win32';

/**
 * Writes the file atomically (temporary file, then rename) with mode 0600; a directory it has to create
 * gets mode 0700. A reader never sees a half-written file, and never a file others could read.
 */
export function writeConnectionFile(path: string, info: ConnectionInfo): void {
  const dir = dirname(path);
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined && checksPermissions) chmodSync(dir, 0o700);
  const temporary = join(dir, `.control-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeFileSync(temporary, `${JSON.stringify(info)}\n`, { mode: 0o600, flag: 'wx' });
    if (checksPermissions) chmodSync(temporary, 0o600);
    renameSync(temporary, path);
  } catch (e) {
    rmSync(temporary, { force: true });
    throw e;
  }
}

/** Removes the file if it still holds this token (a newer serve may have replaced it). Never throws. */
export function removeConnectionFile(path: string, token: string): void {
  try {
    const info = JSON.parse(readFileSync(path, 'utf8')) as Partial<ConnectionInfo>;
    if (info.token === token) unlinkSync(path);
  } catch {
    // Already gone or not ours: nothing to clean up.
  }
}

/** Reads and checks a connection file; throws ConnectionFileError with what to do. */
export function readConnectionFile(path: string): ConnectionInfo {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConnectionFileError(`No control connection file at ${path}: is "spice-smartcard serve" running? (Pass --connection-file PATH if it writes the file elsewhere.)`, 'missing');
    }
    throw new ConnectionFileError(`Cannot read the control connection file ${path}: ${(e as Error).message}`, 'unreadable');
  }
  if (stat.isSymbolicLink()) stat = statSync(path);
  if (!stat.isFile()) throw new ConnectionFileError(`${path} is not a file; expected the control connection file written by "spice-smartcard serve".`, 'malformed');
  if (checksPermissions) {
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new ConnectionFileError(
        `${path} can be read by other users (mode ${mode}) and it holds the control token; refusing to use it. Run "chmod 600 ${path}" if you trust its content, or restart serve.`,
        'permissions',
      );
    }
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      throw new ConnectionFileError(`${path} belongs to another user (uid ${stat.uid}); refusing to use it.`, 'permissions');
    }
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConnectionFileError(`Cannot read the control connection file ${path}: ${(e as Error).message}`, 'unreadable');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ConnectionFileError(`${path} is not JSON; expected {"url", "token", "pid"} as written by "spice-smartcard serve". Restart serve to rewrite it.`, 'malformed');
  }
  const info = value as Partial<Record<keyof ConnectionInfo, unknown>>;
  const problem =
    typeof value !== 'object' || value === null || Array.isArray(value)
      ? 'it is not a JSON object'
      : typeof info.url !== 'string' || !/^(https?|wss?):\/\//.test(info.url)
        ? '"url" is not an http:// or ws:// URL'
        : typeof info.token !== 'string' || !isWellFormedToken(info.token)
          ? '"token" is not 64 hex digits'
          : typeof info.pid !== 'number' || !Number.isInteger(info.pid) || info.pid <= 0
            ? '"pid" is not a process id'
            : undefined;
  if (problem !== undefined) throw new ConnectionFileError(`${path} is not a valid control connection file: ${problem}. Restart serve to rewrite it.`, 'malformed');
  return { url: info.url as string, token: info.token as string, pid: info.pid as number };
}
