import { constants } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import {
  parsePortNumber, passwordProblem, SPICE_CHANNEL_NAMES, SpiceTargetError,
  type SpiceProxy, type SpiceTarget,
} from './target.js';
import { parseHostPort } from './uri.js';

/** Real .vv files are a few KiB (a CA certificate is the largest value); anything bigger is not one. */
export const MAX_VV_FILE_BYTES = 1024 * 1024;

const GROUP = 'virt-viewer';
const DEFAULT_HTTP_PROXY_PORT = 3128;

export interface VvParseOptions {
  /** Environment to take `SPICE_PROXY` from when the file has no `proxy` key (pass `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Parses a virt-viewer connection file (GLib key-file syntax) into a target. Throws only {@link SpiceTargetError}. */
export function parseVvFile(input: string | Uint8Array, options: VvParseOptions = {}): SpiceTarget {
  const result = analyseVvFile(input, options);
  if (result.error !== undefined) throw result.error;
  return result.target;
}

export interface VvFileResult {
  target: SpiceTarget;
  /** True when the file asked for `delete-this-file=1` and was removed. */
  deleted: boolean;
}

/**
 * Reads and parses a `.vv` file, then removes it if it says `delete-this-file=1` (its password is a one-time
 * secret). The file is removed even when it turns out to be invalid, as long as that key could be read.
 */
export async function readVvFile(path: string, options: VvParseOptions = {}): Promise<VvFileResult> {
  const bytes = await readBounded(path);
  const result = analyseVvFile(bytes, options);
  let deleted = false;
  if (result.deleteThisFile) {
    try {
      await unlink(path);
      deleted = true;
    } catch {
      // Leaving the file behind is the caller's to report (deleted: false); the connection can still go ahead.
    }
  }
  if (result.error !== undefined) {
    const note = deleted ? ' (the file has been deleted, as its delete-this-file=1 asks)' : '';
    throw new SpiceTargetError(result.error.detail + note, { line: result.error.line, file: path, cause: result.error });
  }
  return { target: result.target, deleted };
}

async function readBounded(path: string): Promise<Uint8Array> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new SpiceTargetError(`cannot open the file: ${systemMessage(error)}`, { file: path, cause: error });
  }
  try {
    const info = await handle.stat();
    // Reading a FIFO or a device might never end; connection files are regular files.
    if (!info.isFile()) throw new SpiceTargetError('not a regular file', { file: path });
    if (info.size > MAX_VV_FILE_BYTES) throw tooBig(path);
    const bytes = await handle.readFile();
    if (bytes.length > MAX_VV_FILE_BYTES) throw tooBig(path);
    return bytes;
  } catch (error) {
    if (error instanceof SpiceTargetError) throw error;
    throw new SpiceTargetError(`cannot read the file: ${systemMessage(error)}`, { file: path, cause: error });
  } finally {
    await handle.close();
  }
}

function tooBig(file?: string): SpiceTargetError {
  return new SpiceTargetError(
    `larger than ${MAX_VV_FILE_BYTES} bytes; this is not a virt-viewer connection file`, file === undefined ? {} : { file },
  );
}

function systemMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type Analysis =
  | { target: SpiceTarget; error: undefined; deleteThisFile: boolean }
  | { target: undefined; error: SpiceTargetError; deleteThisFile: boolean };

interface Entry {
  raw: string;
  line: number;
}

interface Scan {
  /** Keys of the [virt-viewer] group, last occurrence wins. */
  keys: Map<string, Entry>;
  sawGroup: boolean;
  /** The first syntax error; scanning goes on so that delete-this-file is still seen. */
  error: SpiceTargetError | undefined;
}

function analyseVvFile(input: string | Uint8Array, options: VvParseOptions): Analysis {
  const decoded = decodeInput(input);
  if (decoded.text === undefined) return { target: undefined, error: decoded.error, deleteThisFile: false };
  const scan = scanKeyFile(decoded.text);
  const deleteThisFile = wantsDeletion(scan.keys.get('delete-this-file'));
  const error = decoded.error ?? scan.error;
  if (error !== undefined) return { target: undefined, error, deleteThisFile };
  try {
    return { target: buildTarget(scan, options), error: undefined, deleteThisFile };
  } catch (caught) {
    const failure = caught instanceof SpiceTargetError
      ? caught
      : new SpiceTargetError(`internal error while reading the file: ${systemMessage(caught)}`, { cause: caught });
    return { target: undefined, error: failure, deleteThisFile };
  }
}

type Decoded =
  | { text: string; error: SpiceTargetError | undefined }
  | { text: undefined; error: SpiceTargetError };

function decodeInput(input: string | Uint8Array): Decoded {
  if (typeof input === 'string') {
    if (input.length > MAX_VV_FILE_BYTES || Buffer.byteLength(input, 'utf8') > MAX_VV_FILE_BYTES) {
      return { text: undefined, error: tooBig() };
    }
    return { text: input, error: undefined };
  }
  if (input.length > MAX_VV_FILE_BYTES) return { text: undefined, error: tooBig() };
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(input), error: undefined };
  } catch {
    // Still scanned (lossily) so that a delete-this-file=1 in it is honoured.
    return {
      text: new TextDecoder('utf-8').decode(input),
      error: new SpiceTargetError('the file is not UTF-8 text; virt-viewer files must be UTF-8'),
    };
  }
}

function scanKeyFile(source: string): Scan {
  const text = source.startsWith('\uFEFF') ? source.slice(1) : source;
  const scan: Scan = { keys: new Map(), sawGroup: false, error: undefined };
  const fail = (message: string, line: number): void => {
    scan.error ??= new SpiceTargetError(message, { line });
  };
  // undefined: before any group; null: after a malformed group header (its keys are skipped silently).
  let group: string | null | undefined;
  const lines = text.split(/\r\n|\n|\r/);
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const line = (lines[index] ?? '').trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.includes('\0')) {
      fail('contains a NUL character; this is not a text file', lineNumber);
      continue;
    }
    if (line.startsWith('[')) {
      const header = /^\[([^\[\]]+)\]$/.exec(line);
      if (header === null) {
        fail('malformed group header; write it as [group-name]', lineNumber);
        group = null;
        continue;
      }
      group = (header[1] ?? '').trim();
      if (group === GROUP) scan.sawGroup = true;
      continue;
    }
    const equals = line.indexOf('=');
    if (equals === -1) {
      fail('expected KEY=VALUE, a [group] header or a # comment', lineNumber);
      continue;
    }
    const key = line.slice(0, equals).trim();
    if (!/^[A-Za-z0-9_.-]+(\[[^\[\]=]*\])?$/.test(key)) {
      fail(`"${key.slice(0, 40)}" is not a valid key name`, lineNumber);
      continue;
    }
    if (group === undefined) {
      fail(`key "${key}" comes before any [group] header; the file must start with [${GROUP}]`, lineNumber);
      continue;
    }
    if (group === GROUP) scan.keys.set(key, { raw: line.slice(equals + 1).trim(), line: lineNumber });
  }
  return scan;
}

function wantsDeletion(entry: Entry | undefined): boolean {
  if (entry === undefined) return false;
  const value = entry.raw.toLowerCase();
  return value === '1' || value === 'true';
}

/** GLib key-file string unescaping; GLib rejects unknown escapes, and so do we, for the keys we read. */
function unescapeValue(raw: string, key: string, line: number): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i];
    if (char !== '\\') {
      out += char;
      continue;
    }
    const next = raw[++i];
    switch (next) {
      case 's': out += ' '; break;
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case undefined:
        throw new SpiceTargetError(`${key}= ends with a lone backslash; write a backslash as \\\\`, { line });
      default:
        throw new SpiceTargetError(`${key}= contains the invalid escape "\\${next}"; write a backslash as \\\\`, { line });
    }
  }
  return out;
}

class Reader {
  constructor(private readonly keys: Map<string, Entry>) {}

  line(key: string): number | undefined {
    return this.keys.get(key)?.line;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  string(key: string): string | undefined {
    const entry = this.keys.get(key);
    return entry === undefined ? undefined : unescapeValue(entry.raw, key, entry.line);
  }

  nonEmpty(key: string): string | undefined {
    const value = this.string(key);
    return value === undefined || value === '' ? undefined : value;
  }

  /** A port; -1 (what oVirt writes) and 0 mean "none". */
  port(key: string): number | undefined {
    const entry = this.keys.get(key);
    if (entry === undefined) return undefined;
    const text = unescapeValue(entry.raw, key, entry.line).trim();
    if (text === '-1' || text === '0' || text === '') return undefined;
    const port = parsePortNumber(text.startsWith('+') ? text.slice(1) : text);
    if (port === undefined) {
      throw new SpiceTargetError(`${key}=${text.slice(0, 20)} is not a valid port (1-65535, or -1 for none)`, { line: entry.line });
    }
    return port;
  }

  boolean(key: string): boolean | undefined {
    const entry = this.keys.get(key);
    if (entry === undefined) return undefined;
    const text = entry.raw.toLowerCase();
    if (text === '1' || text === 'true') return true;
    if (text === '0' || text === 'false') return false;
    throw new SpiceTargetError(`${key}=${entry.raw.slice(0, 20)} is not a valid value; use 1 or 0`, { line: entry.line });
  }
}

function buildTarget(scan: Scan, options: VvParseOptions): SpiceTarget {
  if (!scan.sawGroup) {
    throw new SpiceTargetError(`not a virt-viewer connection file: the [${GROUP}] group is missing`);
  }
  const keys = new Reader(scan.keys);
  checkType(keys);

  const target: SpiceTarget = { tls: {}, source: 'vv' };
  const host = keys.nonEmpty('host');
  if (host !== undefined) target.host = checkHost(host, keys.line('host'));
  const port = keys.port('port');
  if (port !== undefined) target.port = port;
  const tlsPort = keys.port('tls-port');
  if (tlsPort !== undefined) target.tlsPort = tlsPort;
  const unixPath = keys.nonEmpty('unix-path');
  if (unixPath !== undefined) target.unixPath = unixPath;
  checkEndpoint(target);

  const password = keys.nonEmpty('password');
  if (password !== undefined) {
    const problem = passwordProblem(password);
    if (problem !== undefined) throw new SpiceTargetError(problem, { line: keys.line('password') });
    target.password = password;
  }

  const proxy = readProxy(keys, options);
  if (proxy !== undefined) target.proxy = proxy;

  const ca = keys.nonEmpty('ca');
  if (ca !== undefined) {
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw new SpiceTargetError('ca= holds no PEM certificate (expected -----BEGIN CERTIFICATE----- with \\n line breaks)',
        { line: keys.line('ca') });
    }
    target.tls.ca = ca;
  }
  const hostSubject = keys.nonEmpty('host-subject');
  if (hostSubject !== undefined) {
    if (!hostSubject.includes('=')) {
      throw new SpiceTargetError('host-subject= must look like C=XX,O=Example,CN=host', { line: keys.line('host-subject') });
    }
    target.tls.hostSubject = hostSubject;
  }
  const secureChannels = readChannelList(keys);
  if (secureChannels !== undefined) target.tls.secureChannels = secureChannels;

  const title = keys.nonEmpty('title');
  if (title !== undefined) target.title = title;
  const enableSmartcard = keys.boolean('enable-smartcard');
  if (enableSmartcard !== undefined) target.enableSmartcard = enableSmartcard;
  // Validated here so that a typo is reported; the deletion itself happens in readVvFile.
  keys.boolean('delete-this-file');
  return target;
}

function checkType(keys: Reader): void {
  const type = keys.string('type')?.trim().toLowerCase();
  const line = keys.line('type');
  if (type === undefined || type === '') {
    throw new SpiceTargetError(`type= is missing in [${GROUP}]; a SPICE connection file says type=spice`, { line });
  }
  if (type === 'spice') return;
  if (type === 'vnc') {
    throw new SpiceTargetError('this is a VNC connection file (type=vnc), not a SPICE connection; a smartcard cannot be passed over VNC',
      { line });
  }
  if (type === 'ovirt') {
    throw new SpiceTargetError('type=ovirt files need an oVirt login; download the console file of type SPICE from oVirt instead',
      { line });
  }
  throw new SpiceTargetError(`unknown type=${type.slice(0, 20)}; only type=spice is supported`, { line });
}

function checkHost(host: string, line: number | undefined): string {
  // Proxmox hosts are opaque tickets with colons (pvespiceproxy:...:node::sig): keep them verbatim.
  const bare = /^\[[^\]]*\]$/.test(host) ? host.slice(1, -1) : host;
  if (/[\s\u0000-\u001f\u007f/\\@]/.test(bare) || bare === '') {
    throw new SpiceTargetError(`host=${bare.slice(0, 60)} is not a valid host name`, { line });
  }
  return bare;
}

function checkEndpoint(target: SpiceTarget): void {
  if (target.unixPath !== undefined) {
    if (!target.unixPath.startsWith('/')) throw new SpiceTargetError('unix-path= must be an absolute path');
    return;
  }
  if (target.host === undefined) {
    throw new SpiceTargetError(`host= is missing in [${GROUP}]; the file does not say which server to connect to`);
  }
  if (target.port === undefined && target.tlsPort === undefined) {
    throw new SpiceTargetError(`neither port= nor tls-port= gives a port in [${GROUP}]; the file cannot be used to connect`);
  }
}

function readChannelList(keys: Reader): string[] | undefined {
  const raw = keys.string('secure-channels');
  if (raw === undefined) return undefined;
  const names: string[] = [];
  for (const part of raw.split(';')) {
    const name = part.trim().toLowerCase();
    if (name === '' || names.includes(name)) continue;
    if (!SPICE_CHANNEL_NAMES.includes(name)) {
      throw new SpiceTargetError(
        `secure-channels= names an unknown channel "${name.slice(0, 20)}"; use ${SPICE_CHANNEL_NAMES.join(', ')} separated by ";"`,
        { line: keys.line('secure-channels') },
      );
    }
    names.push(name);
  }
  return names.length === 0 ? undefined : names;
}

function readProxy(keys: Reader, options: VvParseOptions): SpiceProxy | undefined {
  if (keys.has('proxy')) {
    // An empty proxy= in the file explicitly means "direct", overriding SPICE_PROXY.
    const value = keys.string('proxy')?.trim() ?? '';
    if (value === '') return undefined;
    return parseProxy(value, (message) => new SpiceTargetError(`proxy=: ${message}`, { line: keys.line('proxy') }));
  }
  const fromEnv = options.env?.['SPICE_PROXY']?.trim();
  if (fromEnv === undefined || fromEnv === '') return undefined;
  return parseProxy(fromEnv, (message) => new SpiceTargetError(`SPICE_PROXY environment variable: ${message}`));
}

/** `http://[user:pass@]host[:port][/]`; the scheme may be left out, as spice-gtk allows. */
function parseProxy(text: string, fail: (message: string) => SpiceTargetError): SpiceProxy {
  const match = /^(?:([A-Za-z][A-Za-z0-9+.-]*):\/\/)?([^/?#]*)(.*)$/s.exec(text);
  const scheme = (match?.[1] ?? 'http').toLowerCase();
  const authority = match?.[2] ?? '';
  const rest = match?.[3] ?? '';
  if (scheme !== 'http') throw fail(`only http:// proxies are supported, not ${scheme}://`);
  if (rest !== '' && rest !== '/') throw fail('a proxy address has no path; write it as http://HOST:PORT');
  const at = authority.lastIndexOf('@');
  const hostPort = at === -1 ? authority : authority.slice(at + 1);
  let parsed: { host: string; port: number | undefined };
  try {
    parsed = parseHostPort(hostPort);
  } catch (error) {
    throw fail(error instanceof SpiceTargetError ? error.detail : 'malformed address');
  }
  const port = parsed.port ?? DEFAULT_HTTP_PROXY_PORT;
  const shownHost = parsed.host.includes(':') ? `[${parsed.host}]` : parsed.host;
  const proxy: SpiceProxy = { url: `http://${shownHost}:${port}`, host: parsed.host, port };
  if (at !== -1) {
    const userInfo = authority.slice(0, at);
    const colon = userInfo.indexOf(':');
    const username = decodeCredential(colon === -1 ? userInfo : userInfo.slice(0, colon), fail);
    if (username !== '') proxy.username = username;
    if (colon !== -1) proxy.password = decodeCredential(userInfo.slice(colon + 1), fail);
  }
  return proxy;
}

function decodeCredential(text: string, fail: (message: string) => SpiceTargetError): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw fail('bad percent-encoding in the proxy user name or password; write a literal "%" as %25');
  }
}
