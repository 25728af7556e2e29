// `spice-smartcard control ...`: drives a running `serve` through its control API, found through the
// connection file serve writes (URL and token). Exit codes: 0 ok, 1 the bridge failed the request,
// 2 usage or a request the bridge refused (unknown session, bad spec), 3 serve not reachable,
// 4 token refused or connection file unsafe.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { ControlClientError, ControlConnectionError, type ControlClient } from '../control/client.js';
import { connectFromConnectionFile } from '../control/node-client.js';
import type { BridgeSnapshot, LogLine, SessionStatus } from '../control/schema.js';
import { ConnectionFileError, defaultConnectionFilePath, readConnectionFile } from '../control/token.js';
import { ExitCode, UsageError, type ExitCodeNumber } from './exit-codes.js';
import { parseCommandArgs } from './options.js';
import { untilSignalOr } from './run-until-stopped.js';

export const CONTROL_HELP = `Usage: spice-smartcard control COMMAND [--connection-file PATH] [--json]

Drives a running "spice-smartcard serve" through its control API.
  status                       the bridge, its sessions (phase, card, APDU counts) and PC/SC
  add --spec-file FILE [--password-file FILE]
                               add a session (FILE: one session as JSON, or TOML if it ends in .toml);
                               the SPICE password, if any, is read from the first line of --password-file
  remove NAME                  stop a session (card and reader leave the VM) and forget it
  start NAME | stop NAME       start or stop a session
  eject NAME | insert NAME     take the soft card out of the VM's reader, or put it back
  logs [--lines N] [--follow]  the bridge's last log lines; --follow prints new ones until Ctrl-C
  ui                           the web UI's address with the token, to open in a browser on this
                               machine (it holds the token: do not share or paste it elsewhere)

  --connection-file PATH  the file serve wrote (default $XDG_RUNTIME_DIR/spice-smartcard/control.json)
  --json                  print the API's answer as JSON (logs --follow: one line per log line)

Exit codes: 0 ok, 1 the bridge failed the request, 2 usage or refused request (unknown session,
invalid spec), 3 serve not reachable, 4 token refused or connection file unsafe.`;

const OPTIONS = {
  'connection-file': { type: 'string' },
  'spec-file': { type: 'string' },
  'password-file': { type: 'string' },
  lines: { type: 'string' },
  follow: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export interface ControlIo {
  out?: (text: string) => void;
  err?: (text: string) => void;
}

function readSpecFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`Cannot read the session spec ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return extname(file).toLowerCase() === '.toml' ? parseToml(text) : (JSON.parse(text) as unknown);
  } catch (e) {
    throw new UsageError(`${file} is not valid ${extname(file).toLowerCase() === '.toml' ? 'TOML' : 'JSON'}: ${(e as Error).message.split('\n')[0]}`);
  }
}

function readPassword(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`Cannot read the password file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return text.split(/\r?\n/)[0] ?? '';
}

const time = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');

function cardText(s: SessionStatus): string {
  const source = s.card.source;
  const what = source.kind === 'soft' || source.kind === 'replay' ? `${source.kind} ${source.path}` : source.kind === 'reader' ? `reader ${source.reader}` : source.kind;
  const where = s.vm.cardInserted ? 'in VM' : s.vm.readerAdded ? (s.card.present ? 'reader in VM, card out' : 'reader in VM, no card') : 'not in VM';
  return `${what} (${where})`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

export function formatStatus(snapshot: BridgeSnapshot): string {
  const lines = [`bridge ${snapshot.bridge.version}, pid ${snapshot.bridge.pid}, up since ${time(snapshot.bridge.startedAt)}`];
  lines.push(`PC/SC: ${snapshot.pcsc.available ? `available, ${snapshot.readers.length} reader(s)` : `not available${snapshot.pcsc.problem ? `: ${snapshot.pcsc.problem.message}` : ''}`}`);
  if (snapshot.sessions.length === 0) {
    lines.push('No sessions. Add one with "spice-smartcard control add --spec-file FILE" or in the config file.');
    return lines.join('\n');
  }
  const rows = [['SESSION', 'MODE', 'PHASE', 'TARGET', 'CARD', 'APDUS']];
  for (const s of snapshot.sessions) {
    rows.push([s.name, s.mode, s.phase, s.target, cardText(s), `${s.counters.answered}${s.counters.failed > 0 ? ` (${s.counters.failed} failed)` : ''}`]);
  }
  lines.push('', table(rows));
  for (const s of snapshot.sessions) {
    if (s.problem) lines.push(`${s.name}: ${s.problem.message}${s.retry ? ` (retry ${s.retry.attempt} at ${time(s.retry.at)})` : ''}`);
  }
  return lines.join('\n');
}

function formatSession(s: SessionStatus): string {
  return `${s.name}: ${s.phase}, card ${cardText(s)}${s.problem ? `; ${s.problem.message}` : ''}`;
}

function formatLog(line: LogLine): string {
  return `${time(line.time)} ${line.level.padEnd(5)} ${line.session !== undefined ? `[${line.session}] ` : ''}${line.message}`;
}

function oneName(positionals: string[], sub: string): string {
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length > 0) throw new UsageError(`Usage: spice-smartcard control ${sub} NAME`);
  return name;
}

function parseLines(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 100_000) throw new UsageError(`--lines takes a whole number, not "${text}".`);
  return n;
}

export async function runControl(args: string[], io: ControlIo = {}): Promise<ExitCodeNumber> {
  const out = io.out ?? ((t: string) => void process.stdout.write(t));
  const err = io.err ?? ((t: string) => void process.stderr.write(t));
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  const [sub, ...rest] = positionals;
  if (values.help || sub === undefined || sub === 'help') {
    out(`${CONTROL_HELP}\n`);
    return values.help || sub === 'help' ? ExitCode.OK : ExitCode.USAGE;
  }
  const known = ['status', 'add', 'remove', 'start', 'stop', 'eject', 'insert', 'logs', 'ui'];
  if (!known.includes(sub)) throw new UsageError(`Unknown control command "${sub}": use one of ${known.join(', ')}.`);
  if (sub !== 'add' && (values['spec-file'] !== undefined || values['password-file'] !== undefined)) throw new UsageError('--spec-file and --password-file go with "control add".');
  if (sub !== 'logs' && (values.follow || values.lines !== undefined)) throw new UsageError('--lines and --follow go with "control logs".');
  // Read local files before connecting, so a mistake costs no connection.
  let addParams: { spec: unknown; password?: string } | undefined;
  if (sub === 'add') {
    if (rest.length > 0) throw new UsageError('Usage: spice-smartcard control add --spec-file FILE [--password-file FILE]');
    if (values['spec-file'] === undefined) throw new UsageError('control add needs --spec-file FILE: one session as JSON (or TOML).');
    addParams = { spec: readSpecFile(values['spec-file']) };
    if (values['password-file'] !== undefined) addParams.password = readPassword(values['password-file']);
  }
  const name = ['remove', 'start', 'stop', 'eject', 'insert'].includes(sub) ? oneName(rest, sub) : undefined;
  if ((sub === 'status' || sub === 'logs' || sub === 'ui') && rest.length > 0) throw new UsageError(`control ${sub} takes no arguments.`);
  const lines = parseLines(values.lines);

  const file = values['connection-file'] ?? defaultConnectionFilePath();
  const print0 = (text: string): void => out(`${text}\n`);
  if (sub === 'ui') {
    // serve never prints its token (logs end up in journals); the user who can read the 0600 file
    // asks for it here. The token goes in the fragment, which browsers never send to the server.
    try {
      const info = readConnectionFile(file);
      const url = `${info.url}#token=${info.token}`;
      print0(values.json ? JSON.stringify({ url }) : url);
      return ExitCode.OK;
    } catch (e) {
      if (!(e instanceof ConnectionFileError)) throw e;
      err(`spice-smartcard: ${e.message}\n`);
      return e.reason === 'permissions' ? ExitCode.AUTH : ExitCode.NETWORK;
    }
  }
  let client: ControlClient;
  try {
    client = await connectFromConnectionFile(file);
  } catch (e) {
    if (e instanceof ConnectionFileError) {
      err(`spice-smartcard: ${e.message}\n`);
      return e.reason === 'permissions' ? ExitCode.AUTH : ExitCode.NETWORK;
    }
    if (e instanceof ControlConnectionError) {
      err(`spice-smartcard: ${e.message}\n`);
      return /refused the token/.test(e.message) ? ExitCode.AUTH : ExitCode.NETWORK;
    }
    throw e;
  }

  const print = (value: unknown, text: string): void => out(`${values.json ? JSON.stringify(value, null, 2) : text}\n`);
  try {
    switch (sub) {
      case 'status': {
        const snapshot = await client.request('status.get', {});
        print(snapshot, formatStatus(snapshot));
        break;
      }
      case 'add': {
        // The bridge checks the spec and names each wrong field; the CLI only carries it.
        const status = await client.request('session.add', addParams as { spec: never; password?: string });
        print(status, `added ${formatSession(status)}`);
        break;
      }
      case 'remove':
        print(await client.request('session.remove', { name: name as string }), `removed ${name as string}`);
        break;
      case 'start':
      case 'stop': {
        const status = await client.request(sub === 'start' ? 'session.start' : 'session.stop', { name: name as string });
        print(status, formatSession(status));
        break;
      }
      case 'eject':
      case 'insert': {
        const status = await client.request('session.insert', { name: name as string, present: sub === 'insert' });
        print(status, formatSession(status));
        break;
      }
      case 'logs':
        return await logs(client, lines, values.follow, values.json, out, err);
    }
    return ExitCode.OK;
  } catch (e) {
    if (e instanceof ControlClientError) {
      err(`spice-smartcard: ${e.message}${e.body.path !== undefined && !e.message.includes(e.body.path) ? ` (${e.body.path})` : ''}\n`);
      return ['bad-request', 'invalid-params', 'not-found', 'conflict'].includes(e.code) ? ExitCode.USAGE : ExitCode.INTERNAL;
    }
    if (e instanceof ControlConnectionError) {
      err(`spice-smartcard: ${e.message}\n`);
      return ExitCode.NETWORK;
    }
    throw e;
  } finally {
    await client.close();
  }
}

async function logs(client: ControlClient, lines: number | undefined, follow: boolean, json: boolean, out: (t: string) => void, err: (t: string) => void): Promise<ExitCodeNumber> {
  const write = (line: LogLine): void => out(`${json ? JSON.stringify(line) : formatLog(line)}\n`);
  // Lines logged while the tail is on its way arrive as events too: hold them, then skip those the tail had.
  const early: LogLine[] = [];
  let live = false;
  if (follow) {
    client.on('log', ({ line }) => {
      if (live) write(line);
      else early.push(line);
    });
  }
  const tail = await client.request('log.tail', lines === undefined ? {} : { lines });
  for (const line of tail.lines) write(line);
  if (!follow) return ExitCode.OK;
  const seen = new Set(tail.lines.map((l) => JSON.stringify(l)));
  for (const line of early) if (!seen.has(JSON.stringify(line))) write(line);
  live = true;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => client.on('closed', resolve));
  const stop = await untilSignalOr(closed);
  if (stop.kind === 'signal') return ExitCode.OK;
  const info = stop.error as { code: number; reason: string };
  err(`spice-smartcard: the control connection closed (${info.reason !== '' ? info.reason : `code ${info.code}`}).\n`);
  return info.code === 4503 ? ExitCode.OK : ExitCode.NETWORK;
}
