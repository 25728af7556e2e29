// startServe: the one entry that runs a headless bridge — the CLI `serve` command and the desktop
// app's utility process both call it. It owns the order of things: control server first (a port in
// use fails before any VM is touched), then the config's sessions, then the connection file; and
// close() undoes them in reverse, bounded in time.
import { isDeepStrictEqual } from 'node:util';
import type { SessionSpec } from '../control/schema.js';
import { startControlServer, type ControlServer } from '../control/server.js';
import { defaultConnectionFilePath, newControlToken, removeConnectionFile, writeConnectionFile } from '../control/token.js';
import { uiMounts } from '../control/ui-files.js';
import { ServeBridge } from './bridge.js';
import { loadServeConfig, type ServeConfig } from './config-file.js';
import type { ServeLog } from './serve-log.js';

export interface ServeOptions {
  /** A loaded config, or the path of one; none: an empty bridge driven by the control API. */
  config?: ServeConfig | string;
  control: {
    host: string;
    /** 0 picks a free port. */
    port: number;
    allowRemote?: boolean;
    /** Where to write url, token and pid (0600); default defaultConnectionFilePath(); false: no file. */
    connectionFile?: string | false;
  };
  log: ServeLog;
  /** Reported in status.get. */
  version: string;
  /** Overrides the config's cardDirectory. */
  cardDirectory?: string;
  /** Static files on the control server; default: the built web UI, if any. */
  staticMounts?: Record<string, string>;
  /** Origins besides the control server's own that may open the WebSocket (the desktop app's page). */
  allowedOrigins?: string[];
  /** Bound on close(); default 25 s. */
  closeTimeoutMs?: number;
}

export interface ReloadSummary {
  added: string[];
  removed: string[];
  changed: string[];
  /** Sessions the bridge refused, with why. */
  failed: Array<{ name: string; message: string }>;
}

export interface RunningServe {
  /** The control server's base URL (the WebSocket is at /control, the web UI at /). */
  url: string;
  token: string;
  bridge: ServeBridge;
  /** Logs a line where control clients see it too (log.tail, log events). */
  log: ServeLog;
  /** The connection file written, if any. */
  connectionFile?: string;
  /** How the config's sessions were added at start (`failed`: the bridge refused them). */
  initial: ReloadSummary;
  /** Brings the config's sessions in line with `config` (SIGHUP). Sessions added through the API are left alone. */
  reload(config: ServeConfig): Promise<ReloadSummary>;
  close(): Promise<void>;
}

/** Thrown when serve cannot start; the message says what to change. */
export class ServeStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServeStartError';
  }
}

/** Above the bridge's own bound (20 s), so its sessions get their full time; under systemd's 30 s stop timeout. */
const DEFAULT_CLOSE_TIMEOUT_MS = 25_000;

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function withDeadline(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true, () => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts the bridge, its control server and the config's sessions, then writes the connection file.
 * Throws ServeConfigError (a config path that does not load) or ServeStartError (the control port in
 * use, the connection file not writable), with nothing left running. A session the bridge refuses
 * does not stop the start: it is logged and listed in `initial.failed`.
 */
export async function startServe(options: ServeOptions): Promise<RunningServe> {
  const log = options.log;
  const config = typeof options.config === 'string' ? await loadServeConfig(options.config) : options.config;
  const cardDirectory = options.cardDirectory ?? config?.cardDirectory;
  const bridge = new ServeBridge({ log, version: options.version, ...(cardDirectory !== undefined ? { cardDirectory } : {}) });
  const token = newControlToken();
  // serve's own lines go through the bridge so that control clients see them too.
  const bridgeLog: ServeLog = { log: (level, message, session) => bridge.record(level, message, session) };

  let server: ControlServer;
  try {
    server = await startControlServer({
      service: bridge,
      host: options.control.host,
      port: options.control.port,
      token,
      ...(options.control.allowRemote !== undefined ? { allowRemote: options.control.allowRemote } : {}),
      staticMounts: options.staticMounts ?? uiMounts(),
      ...(options.allowedOrigins !== undefined ? { allowedOrigins: options.allowedOrigins } : {}),
      log: bridgeLog,
    });
  } catch (e) {
    await bridge.close();
    const message = describe(e);
    if (/in use/i.test(message)) {
      throw new ServeStartError(`The control port ${options.control.host}:${options.control.port} is already in use (another serve?). Choose another with --control HOST:PORT (or control.listen in the config; port 0 picks a free one).`);
    }
    throw new ServeStartError(message);
  }

  /** Names of the sessions the config declared, with the spec they were added with. */
  let managed = new Map<string, SessionSpec>();

  const add = async (spec: SessionSpec, summary: ReloadSummary): Promise<boolean> => {
    try {
      await bridge.addSession(spec);
      managed.set(spec.name, spec);
      return true;
    } catch (e) {
      summary.failed.push({ name: spec.name, message: describe(e) });
      bridgeLog.log('error', `Cannot add the session: ${describe(e)}`, spec.name);
      return false;
    }
  };

  const remove = async (name: string): Promise<void> => {
    managed.delete(name);
    try {
      await bridge.request('session.remove', { name });
    } catch (e) {
      bridgeLog.log('warn', `Removing the session: ${describe(e)}`, name);
    }
  };

  const reload = async (next: ServeConfig): Promise<ReloadSummary> => {
    const summary: ReloadSummary = { added: [], removed: [], changed: [], failed: [] };
    const wanted = new Map(next.sessions.map((s) => [s.name, s]));
    for (const name of [...managed.keys()]) {
      if (!wanted.has(name)) {
        await remove(name);
        summary.removed.push(name);
      }
    }
    const existing = new Set(bridge.snapshot().sessions.map((s) => s.name));
    for (const spec of next.sessions) {
      const before = managed.get(spec.name);
      // A config session removed through the API since is not "unchanged": the config brings it back.
      if (before !== undefined && isDeepStrictEqual(before, spec) && existing.has(spec.name)) continue;
      // A changed session, or one of the same name added through the API: the config's spec wins.
      if (existing.has(spec.name)) await remove(spec.name);
      if (await add(spec, summary)) (existing.has(spec.name) ? summary.changed : summary.added).push(spec.name);
    }
    managed = new Map([...managed].filter(([name]) => wanted.has(name)));
    return summary;
  };

  const initial: ReloadSummary = config === undefined ? { added: [], removed: [], changed: [], failed: [] } : await reload(config);

  const connectionFile = options.control.connectionFile === false ? undefined : (options.control.connectionFile ?? defaultConnectionFilePath());
  if (connectionFile !== undefined) {
    try {
      writeConnectionFile(connectionFile, { url: server.url, token, pid: process.pid });
    } catch (e) {
      await withDeadline(Promise.all([bridge.close(), server.close()]), options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
      throw new ServeStartError(`Cannot write the connection file ${connectionFile}: ${(e as NodeJS.ErrnoException).code ?? describe(e)}. Choose another place with --connection-file PATH.`);
    }
  }

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    const bound = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    if (connectionFile !== undefined) removeConnectionFile(connectionFile, token);
    // The bridge first: clients see each session stop before the server says goodbye.
    const bridgeClosed = await withDeadline(bridge.close(), bound);
    if (!bridgeClosed) bridgeLog.log('warn', `The sessions did not all stop within ${bound / 1000} s; exiting anyway.`);
    await withDeadline(server.close(), Math.min(5_000, bound));
  };

  return {
    url: server.url,
    token,
    bridge,
    log: bridgeLog,
    ...(connectionFile !== undefined ? { connectionFile } : {}),
    initial,
    reload,
    close: () => (closing ??= close()),
  };
}
