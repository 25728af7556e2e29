// `spice-smartcard serve`: the headless bridge. Sessions come from a config file (--config) and/or the
// control API; the process runs until SIGINT/SIGTERM (sessions stopped, cards and readers removed
// from the VMs, exit 0). SIGHUP re-reads the config: sessions added, removed or changed to match; a
// config with errors is reported and the running sessions are kept.
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { LogLevel } from '../control/schema.js';
import { defaultConnectionFilePath } from '../control/token.js';
import { uiDirectory } from '../control/ui-files.js';
import { isLoopbackHost, ListenAddressError, parseListenAddress } from '../proxy/listen-address.js';
import { emptyServeConfig, LOG_FORMATS, LOG_LEVELS, loadServeConfig, ServeConfigError, type LogFormat, type ServeConfig } from '../serve/config-file.js';
import { ServeLogger } from '../serve/logger.js';
import type { ServeLog } from '../serve/serve-log.js';
import { ReloadQueue } from '../serve/reload-queue.js';
import { ServeStartError, startServe, type RunningServe } from '../serve/serve.js';
import { ExitCode, UsageError, type ExitCodeNumber } from './exit-codes.js';
import { parseCommandArgs } from './options.js';
import { untilSignalOr } from './run-until-stopped.js';

export const SERVE_HELP = `Usage: spice-smartcard serve [--config FILE] [--control HOST:PORT] [--control-any]
                            [--connection-file PATH] [--log-format human|json] [--log-level LEVEL]

Runs a bridge that holds any number of sessions (connect, passthru or proxy, each with its card) until
SIGINT/SIGTERM, which stops them all and removes their cards and readers from the VMs. Sessions come
from the config file (JSON or TOML; see docs/serve.md) and from the control API, a WebSocket on
loopback that the desktop app, the web UI (served at the same address) and scripts use.

  --config FILE           sessions and settings; SIGHUP re-reads it (an invalid file is reported and
                          the running sessions are kept)
  --control HOST:PORT     where the control API and web UI listen (default 127.0.0.1:7480; port 0: any)
  --control-any           allow a non-loopback --control address (the token is then all that protects it)
  --connection-file PATH  where the control URL and token are written, mode 0600
                          (default $XDG_RUNTIME_DIR/spice-smartcard/control.json)
  --log-format human|json human lines (default) or one JSON object per line, on stderr
  --log-level LEVEL       debug, info (default), warn or error

The token is never printed: clients read it from the connection file ("spice-smartcard control ui"
prints the web UI's address with it). Passwords come from files named in the config (passwordFile)
or through the control API, never from the command line.`;

const OPTIONS = {
  config: { type: 'string' },
  control: { type: 'string' },
  'control-any': { type: 'boolean', default: false },
  'connection-file': { type: 'string' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

function pick<T extends string>(value: string | undefined, allowed: readonly T[], option: string): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${option} takes one of ${allowed.join(', ')}, not "${value}".`);
  return value as T;
}

function reportConfigError(error: ServeConfigError, what: string): void {
  process.stderr.write(`${error.message}\n`);
  const n = error.problems.length;
  process.stderr.write(`spice-smartcard: ${n === 1 ? 'one problem' : `${n} problems`} in ${error.file}; ${what}\n`);
}

/**
 * Second line of defence: the bridge never logs a password, but should any message ever carry one,
 * the logger blanks out the content of every password file the config names.
 */
function redactPasswordFiles(config: ServeConfig, log: ServeLogger): void {
  for (const session of config.sessions) {
    if (session.passwordFile === undefined) continue;
    try {
      const text = readFileSync(session.passwordFile, 'utf8').replace(/\r?\n$/, '');
      if (text !== '') log.redact(text);
    } catch {
      // Unreadable: the session itself reports that, with what to do.
    }
  }
}

interface ControlPlan {
  host: string;
  port: number;
  allowRemote: boolean;
}

function controlPlan(listen: string, allowRemote: boolean, fromFlag: boolean): ControlPlan {
  let address;
  try {
    address = parseListenAddress(listen);
  } catch (e) {
    if (!(e instanceof ListenAddressError)) throw e;
    throw new UsageError(`--control: ${e.message}`);
  }
  if (!isLoopbackHost(address.host) && !allowRemote) {
    throw new UsageError(`${fromFlag ? '--control' : 'control.listen'} ${listen} is not a loopback address; add --control-any to accept other machines (the token is then all that protects the bridge).`);
  }
  return { host: address.host, port: address.port, allowRemote };
}

export async function runServe(args: string[]): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${SERVE_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length > 0) throw new UsageError('serve takes no arguments; sessions go in the config file (--config FILE) or come through the control API. Run "spice-smartcard serve --help".');
  const formatFlag = pick<LogFormat>(values['log-format'], LOG_FORMATS, '--log-format');
  const levelFlag = pick<LogLevel>(values['log-level'], LOG_LEVELS, '--log-level');
  const configFile = values.config;

  let config: ServeConfig = emptyServeConfig();
  if (configFile !== undefined) {
    try {
      config = await loadServeConfig(configFile);
    } catch (e) {
      if (!(e instanceof ServeConfigError)) throw e;
      reportConfigError(e, 'nothing was started.');
      return ExitCode.USAGE;
    }
  }
  const control = controlPlan(values.control ?? config.control.listen, values['control-any'] || config.control.allowRemote, values.control !== undefined);
  const connectionFile = values['connection-file'] ?? config.control.connectionFile ?? defaultConnectionFilePath();
  const log = new ServeLogger({ level: levelFlag ?? config.log.level, format: formatFlag ?? config.log.format });
  redactPasswordFiles(config, log);
  // Once serve runs, its lines go through the bridge so that control clients see them too.
  const say: ServeLog = { log: (level, message, session) => (started?.log ?? log).log(level, message, session) };

  // Signals are taken from here on: one that comes while sessions are starting is acted on once
  // they have (a stop still removes every card and reader; a SIGHUP still reloads).
  const stopRequested = untilSignalOr(new Promise<never>(() => undefined));
  let started: RunningServe | undefined;
  const reloads = new ReloadQueue(
    () => (started === undefined ? Promise.resolve() : reload(configFile, config, started, log, say, levelFlag)),
    (e: unknown) => say.log('error', `SIGHUP: the reload failed (${e instanceof Error ? e.message : String(e)}); the sessions are as they were left.`),
  );
  const onHangup = (): void => reloads.request();
  process.on('SIGHUP', onHangup);
  try {
    try {
      started = await startServe({ config, control: { ...control, connectionFile }, log, version: packageVersion() });
    } catch (e) {
      if (!(e instanceof ServeStartError)) throw e;
      process.stderr.write(`spice-smartcard: ${e.message}\n`);
      return /in use/.test(e.message) ? ExitCode.NETWORK : ExitCode.USAGE;
    }
    const running = started;
    if (running.initial.failed.length > 0) {
      // The config passed its checks but the bridge refused part of it: as with any config error,
      // nothing is left half-applied.
      for (const f of running.initial.failed) process.stderr.write(`${configFile ?? 'config'}: session "${f.name}": ${f.message}\n`);
      process.stderr.write(`spice-smartcard: the bridge refused ${running.initial.failed.length} of the config's sessions; stopping.\n`);
      await running.close();
      return ExitCode.USAGE;
    }
    const socketUrl = `${running.url.replace(/^http/, 'ws')}control`;
    say.log('info', `Control API at ${socketUrl}; the token is in ${connectionFile} (mode 0600).`);
    say.log(
      'info',
      uiDirectory() === undefined
        ? 'The web UI is not built (npm run build builds it); the control API works without it.'
        : `Web UI at ${running.url} ("spice-smartcard control ui${connectionFile === defaultConnectionFilePath() ? '' : ` --connection-file ${connectionFile}`}" prints its address with the token).`,
    );
    if (configFile === undefined) say.log('info', 'No --config: sessions are added through the control API.');
    reloads.start();

    const reason = await stopRequested;
    say.log('info', `${reason.kind === 'signal' ? reason.signal : 'Stop'}: stopping the sessions and removing their cards and readers from the VMs…`);
    await reloads.idle();
    await running.close();
    say.log('info', 'Stopped.');
  } finally {
    process.off('SIGHUP', onHangup);
  }
  return ExitCode.OK;
}

async function reload(configFile: string | undefined, started: ServeConfig, running: RunningServe, log: ServeLogger, say: ServeLog, levelFlag: LogLevel | undefined): Promise<void> {
  if (configFile === undefined) {
    say.log('info', 'SIGHUP: there is no config file to re-read (serve was started without --config).');
    return;
  }
  let next: ServeConfig;
  try {
    next = await loadServeConfig(configFile);
  } catch (e) {
    if (!(e instanceof ServeConfigError)) throw e;
    for (const line of e.message.split('\n')) say.log('error', line);
    say.log('error', `SIGHUP: ${configFile} has ${e.problems.length === 1 ? 'a problem' : `${e.problems.length} problems`}; the running sessions are kept unchanged.`);
    return;
  }
  if (levelFlag === undefined) log.setLevel(next.log.level);
  redactPasswordFiles(next, log);
  const summary = await running.reload(next);
  const parts = [
    summary.added.length > 0 ? `added ${summary.added.join(', ')}` : undefined,
    summary.removed.length > 0 ? `removed ${summary.removed.join(', ')}` : undefined,
    summary.changed.length > 0 ? `restarted ${summary.changed.join(', ')} (changed)` : undefined,
    summary.failed.length > 0 ? `could not add ${summary.failed.map((f) => f.name).join(', ')}` : undefined,
  ].filter((p) => p !== undefined);
  say.log(summary.failed.length > 0 ? 'warn' : 'info', `SIGHUP: re-read ${configFile}: ${parts.length === 0 ? 'no session changed' : parts.join('; ')}.`);
  if (!isDeepStrictEqual(next.control, started.control) || next.log.format !== started.log.format) {
    say.log('warn', 'SIGHUP: changes to control.* and log.format take effect when serve restarts.');
  }
}
