// `serve --config FILE`: reads a JSON or TOML config, checks every key, and returns the ServeConfig or
// one ServeConfigError listing every problem, each with the file, line and key path.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LogLevel, SessionSpec } from '../control/schema.js';
import { isLoopbackHost, ListenAddressError, parseListenAddress } from '../proxy/listen-address.js';
import { ConfigSyntaxError, type ParsedSource, type SourcePosition } from './config-source.js';
import { unknownKeyMessage } from './config-suggest.js';
import { describeType, IssueList, isPlainObject, joinPath, type SpecIssue } from './config-value.js';
import { parseJsonWithPositions } from './json-positions.js';
import { SESSION_NAME_PATTERN, validateSessionSpec } from './session-spec.js';
import { parseTomlWithPositions } from './toml-positions.js';

export type LogFormat = 'human' | 'json';

export interface ServeConfig {
  control: {
    /** HOST:PORT of the control API and web UI. */
    listen: string;
    /** Let the control API listen on a non-loopback address. */
    allowRemote: boolean;
    /** Where the URL and token are written (0600). Default: see defaultConnectionFilePath(). */
    connectionFile?: string;
  };
  log: { level: LogLevel; format: LogFormat };
  /** Where soft card files made through the control API go. */
  cardDirectory?: string;
  sessions: SessionSpec[];
}

export const DEFAULT_CONTROL_LISTEN = '127.0.0.1:7480';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const LOG_FORMATS: readonly LogFormat[] = ['human', 'json'];
/** No config is this big; refusing early keeps a wrong path (a disk image) from being parsed. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** A wrong file (or a generated config gone wrong) must not flood the terminal. */
const MAX_PROBLEMS_SHOWN = 100;

const TOP_KEYS = ['control', 'log', 'cardDirectory', 'sessions'];
const CONTROL_KEYS = ['listen', 'allowRemote', 'connectionFile'];
const LOG_KEYS = ['level', 'format'];

export interface ConfigProblem {
  line?: number;
  column?: number;
  /** Key path, absent for problems with the file as a whole. */
  path?: string;
  message: string;
}

/** Everything wrong with a config file; `message` has one problem per line. */
export class ServeConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    const shown = problems.slice(0, MAX_PROBLEMS_SHOWN).map((p) => formatProblem(file, p));
    if (problems.length > MAX_PROBLEMS_SHOWN) shown.push(`${file}: … and ${problems.length - MAX_PROBLEMS_SHOWN} more problems`);
    super(shown.join('\n'));
    this.name = 'ServeConfigError';
  }
}

export function formatProblem(file: string, p: ConfigProblem): string {
  const where = [file, p.line, p.column].filter((part) => part !== undefined).join(':');
  return `${where}: ${p.path !== undefined ? `${p.path === '' ? '(top level)' : p.path}: ` : ''}${p.message}`;
}

export function emptyServeConfig(): ServeConfig {
  return { control: { listen: DEFAULT_CONTROL_LISTEN, allowRemote: false }, log: { level: 'info', format: 'human' }, sessions: [] };
}

function parentPath(p: string): string | undefined {
  if (p === '') return undefined;
  const m = /^(.*?)(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[[^\]]*\]|\["(?:[^"\\]|\\.)*"\])$/.exec(p);
  return m === null ? '' : m[1]!;
}

/** The line of the key, or of the nearest enclosing key the file has (a missing key's table). */
function lineOf(positions: Map<string, SourcePosition>, keyPath: string): number | undefined {
  for (let p: string | undefined = keyPath; p !== undefined; p = parentPath(p)) {
    const at = positions.get(p);
    if (at !== undefined) return at.line;
  }
  return undefined;
}

function sniffFormat(file: string, text: string): 'json' | 'toml' {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.toml') return 'toml';
  // A TOML file cannot start with "{"; a JSON config always does.
  return /^\uFEFF?\s*\{/.test(text) ? 'json' : 'toml';
}

function listenPort(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return parseListenAddress(value).port;
  } catch (e) {
    if (e instanceof ListenAddressError) return undefined;
    throw e;
  }
}

function checkSessions(value: unknown, issues: IssueList, controlPort: number | undefined): SessionSpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    issues.add('sessions', `must be a list of sessions ([[sessions]] tables in TOML, an array in JSON; got ${isPlainObject(value) ? 'one table' : describeType(value)})`);
    return [];
  }
  const sessions: SessionSpec[] = [];
  const names = new Map<string, number>();
  const ports = new Map<number, number>();
  value.forEach((item, index) => {
    const at = joinPath('sessions', index);
    const result = validateSessionSpec(item, at);
    if (result.ok) {
      sessions.push(result.spec);
      const card = result.spec.card;
      // The bridge looks a relative soft card path up inside cardDirectory and refuses one that leaves it.
      if (card.kind === 'soft' && !path.isAbsolute(card.path) && path.normalize(card.path).split(/[\\/]/)[0] === '..') {
        issues.add(joinPath(joinPath(at, 'card'), 'path'), 'leaves cardDirectory; give a file name inside it, or an absolute path');
      }
    } else {
      for (const e of result.errors) issues.add(e.path, e.message);
    }
    // Clashes between sessions are checked on whatever parts are well formed, so they are reported
    // together with each session's own problems rather than after those are fixed.
    if (!isPlainObject(item)) return;
    const name = item['name'];
    if (typeof name === 'string' && SESSION_NAME_PATTERN.test(name)) {
      const first = names.get(name);
      if (first !== undefined) issues.add(joinPath(at, 'name'), `"${name}" is already the name of sessions[${first}]; names must be unique`);
      else names.set(name, index);
    }
    const port = item['mode'] === 'proxy' ? listenPort(item['listen']) : undefined;
    if (port !== undefined && port !== 0) {
      const other = ports.get(port);
      if (other !== undefined) issues.add(joinPath(at, 'listen'), `port ${port} is already the listen port of sessions[${other}]; give each proxy session its own port`);
      else if (port === controlPort) issues.add(joinPath(at, 'listen'), `port ${port} is the control API's port (control.listen); pick another`);
      else ports.set(port, index);
    }
  });
  return sessions;
}

function checkTop(value: unknown): { config: ServeConfig; issues: SpecIssue[] } {
  const issues = new IssueList();
  const config = emptyServeConfig();
  const top = issues.object(value, '', true);
  if (top === undefined) return { config, issues: issues.issues };
  for (const key of Object.keys(top)) if (!TOP_KEYS.includes(key)) issues.add(joinPath('', key), unknownKeyMessage(key, TOP_KEYS));

  let controlPort: number | undefined = parseListenAddress(DEFAULT_CONTROL_LISTEN).port;
  const control = issues.object(top['control'], 'control', false);
  if (control !== undefined) {
    for (const key of Object.keys(control)) if (!CONTROL_KEYS.includes(key)) issues.add(joinPath('control', key), unknownKeyMessage(key, CONTROL_KEYS));
    const allowRemote = issues.boolean(control, 'allowRemote', 'control');
    if (allowRemote !== undefined) config.control.allowRemote = allowRemote;
    const listen = issues.string(control, 'listen', 'control', false, 'HOST:PORT');
    if (listen !== undefined) {
      try {
        const address = parseListenAddress(listen);
        controlPort = address.port;
        if (!isLoopbackHost(address.host) && !config.control.allowRemote) {
          issues.add('control.listen', 'is not a loopback address; set control.allowRemote = true to accept other machines (the token is then all that protects the bridge)');
        }
        config.control.listen = listen;
      } catch (e) {
        if (!(e instanceof ListenAddressError)) throw e;
        controlPort = undefined;
        issues.add('control.listen', 'must be PORT, HOST:PORT or [IPv6]:PORT (port 0-65535; 0 picks a free one)');
      }
    }
    const connectionFile = issues.string(control, 'connectionFile', 'control', false, 'a file path');
    if (connectionFile !== undefined) config.control.connectionFile = connectionFile;
  }

  const log = issues.object(top['log'], 'log', false);
  if (log !== undefined) {
    for (const key of Object.keys(log)) if (!LOG_KEYS.includes(key)) issues.add(joinPath('log', key), unknownKeyMessage(key, LOG_KEYS));
    config.log.level = issues.oneOf(log, 'level', 'log', LOG_LEVELS, false) ?? config.log.level;
    config.log.format = issues.oneOf(log, 'format', 'log', LOG_FORMATS, false) ?? config.log.format;
  }
  const cardDirectory = issues.string(top, 'cardDirectory', '', false, 'a directory path');
  if (cardDirectory !== undefined) config.cardDirectory = cardDirectory;
  config.sessions = checkSessions(top['sessions'], issues, controlPort === 0 ? undefined : controlPort);
  return { config, issues: issues.issues };
}

/**
 * Relative paths in a config mean relative to the config file, wherever serve was started from; except
 * soft card paths, which are relative to cardDirectory like those sent through the control API.
 */
function resolvePaths(config: ServeConfig, baseDir: string): ServeConfig {
  const abs = (p: string): string => path.resolve(baseDir, p);
  const sessions = config.sessions.map((s): SessionSpec => {
    // A soft card's relative path stays relative: the bridge looks it up in cardDirectory.
    const out: SessionSpec = { ...s, card: s.card.kind === 'replay' ? { ...s.card, path: abs(s.card.path) } : s.card };
    if (s.mode !== 'passthru' && !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(s.target)) out.target = abs(s.target);
    if (s.mode === 'passthru' && s.target.startsWith('unix:')) out.target = `unix:${abs(s.target.slice(5))}`;
    for (const key of ['passwordFile', 'caFile', 'trace'] as const) {
      const value = s[key];
      if (value !== undefined) out[key] = abs(value);
    }
    return out;
  });
  const control = { ...config.control };
  if (control.connectionFile !== undefined) control.connectionFile = abs(control.connectionFile);
  return {
    ...config,
    control,
    ...(config.cardDirectory !== undefined ? { cardDirectory: abs(config.cardDirectory) } : {}),
    sessions,
  };
}

export interface ParseConfigOptions {
  /** How messages name the file. */
  file: string;
  format?: 'json' | 'toml';
  /** Directory relative paths are resolved against; default: the file's directory. */
  baseDir?: string;
}

/** Parses and validates config text; throws ServeConfigError listing every problem. */
export function parseServeConfig(text: string, options: ParseConfigOptions): ServeConfig {
  const format = options.format ?? sniffFormat(options.file, text);
  let parsed: ParsedSource;
  try {
    parsed = format === 'json' ? parseJsonWithPositions(text) : parseTomlWithPositions(text);
  } catch (e) {
    if (!(e instanceof ConfigSyntaxError)) throw e;
    throw new ServeConfigError(options.file, [{ line: e.position.line, column: e.position.column, message: `${e.detail} (not valid ${format.toUpperCase()})` }]);
  }
  const { config, issues } = checkTop(parsed.value);
  if (issues.length > 0) {
    const problems = issues.map((issue): ConfigProblem => {
      const line = lineOf(parsed.positions, issue.path);
      return { ...(line !== undefined ? { line } : {}), path: issue.path, message: issue.message };
    });
    // In file order, so the list reads top to bottom like the file.
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ServeConfigError(options.file, problems);
  }
  return resolvePaths(config, options.baseDir ?? path.dirname(path.resolve(options.file)));
}

export async function loadServeConfig(file: string): Promise<ServeConfig> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (code ?? String(e));
    throw new ServeConfigError(file, [{ message: `cannot read the config file: ${why}` }]);
  }
  if (bytes.length > MAX_CONFIG_BYTES) throw new ServeConfigError(file, [{ message: `the file is ${bytes.length} bytes; a config is at most ${MAX_CONFIG_BYTES} (is this the right file?)` }]);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ServeConfigError(file, [{ message: 'the file is not UTF-8 text (is this the right file?)' }]);
  }
  return parseServeConfig(text, { file });
}
