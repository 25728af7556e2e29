// Turns what the user named (a URI or a .vv file, plus options) into what the SPICE layer needs:
// a dial plan, the password and where it came from, and which channels must use TLS.
import { readFile } from 'node:fs/promises';
import { channelTypeByName } from '../spice/constants.js';
import type { DialPlan } from '../spice/transport.js';
import { passwordProblem, SpiceTargetError, type SpiceTarget } from '../spice/target.js';
import { parseSpiceUri } from '../spice/uri.js';
import { readVvFile } from '../spice/vv-file.js';
import { UsageError } from './cli/exit-codes.js';

export type PasswordSource = 'password-file' | 'environment' | 'vv-file' | 'uri' | 'prompt' | 'none';

export interface ConnectionSpec {
  target: SpiceTarget;
  /** How the user named the server, without secrets, for messages. */
  label: string;
  plan: DialPlan;
  password: string;
  passwordSource: PasswordSource;
  secureChannels: ReadonlySet<number> | 'all';
  /** The .vv file asked to be deleted and was. */
  vvDeleted: boolean;
}

export interface ConnectionInputs {
  /** URI or path of a .vv file. */
  target: string;
  passwordFile?: string;
  caFile?: string;
  hostSubject?: string;
  env: Readonly<Record<string, string | undefined>>;
  connectTimeoutMs?: number;
}

const URI_PATTERN = /^(spice|spice\+tls|spice\+unix|ws|wss):/i;

async function readPasswordFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(`Cannot read the password file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`);
  }
  // A trailing newline is how editors and `echo` end files; it is never part of the password.
  return text.replace(/\r?\n$/, '');
}

function describeTarget(t: SpiceTarget): string {
  if (t.unixPath !== undefined) return `spice+unix://${t.unixPath}`;
  if (t.webSocketUrl !== undefined) return t.webSocketUrl;
  const host = t.host?.includes(':') && !t.host.startsWith('pvespiceproxy') ? `[${t.host}]` : (t.host ?? '?');
  const shownHost = host.startsWith('pvespiceproxy:') ? 'pvespiceproxy:…' : host;
  const ports = [t.port !== undefined ? `port ${t.port}` : undefined, t.tlsPort !== undefined ? `tls-port ${t.tlsPort}` : undefined].filter(Boolean).join(', ');
  const via = t.proxy !== undefined ? ` via ${t.proxy.url}` : '';
  return `${shownHost} (${ports})${via}`;
}

function secureChannelSet(t: SpiceTarget): ReadonlySet<number> | 'all' {
  // Without a plain port everything goes to TLS anyway.
  if ((t.port ?? 0) <= 0 && (t.tlsPort ?? 0) > 0) return 'all';
  const names = t.tls.secureChannels ?? [];
  if (names.includes('all')) return 'all';
  const set = new Set<number>();
  for (const n of names) {
    const type = channelTypeByName(n);
    if (type !== undefined) set.add(type);
  }
  return set;
}

export async function resolveConnection(inputs: ConnectionInputs): Promise<ConnectionSpec> {
  let target: SpiceTarget;
  let vvDeleted = false;
  try {
    if (URI_PATTERN.test(inputs.target)) {
      target = parseSpiceUri(inputs.target);
      if (target.password !== undefined) {
        throw new UsageError(
          'The URI carries a password. On the command line it is visible to every user of this machine (ps): ' +
            'remove it from the URI and use --password-file FILE or the SPICE_PASSWORD environment variable.',
        );
      }
    } else {
      const read = await readVvFile(inputs.target, { env: inputs.env });
      target = read.target;
      vvDeleted = read.deleted;
    }
  } catch (e) {
    if (e instanceof SpiceTargetError) throw new UsageError(e.message);
    throw e;
  }

  let password = '';
  let passwordSource: PasswordSource = 'none';
  if (inputs.passwordFile !== undefined) {
    password = await readPasswordFile(inputs.passwordFile);
    passwordSource = 'password-file';
  } else if (inputs.env['SPICE_PASSWORD'] !== undefined) {
    password = inputs.env['SPICE_PASSWORD'];
    passwordSource = 'environment';
  } else if (target.password !== undefined) {
    password = target.password;
    passwordSource = target.source === 'vv' ? 'vv-file' : 'uri';
  }
  const problem = passwordProblem(password);
  if (problem !== undefined) throw new UsageError(`Unusable password from ${passwordSource}: ${problem}.`);

  const tls = { ...target.tls };
  if (inputs.caFile !== undefined) {
    try {
      tls.ca = await readFile(inputs.caFile, 'utf8');
    } catch (e) {
      throw new UsageError(`Cannot read the CA file ${inputs.caFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`);
    }
  }
  if (inputs.hostSubject !== undefined) tls.hostSubject = inputs.hostSubject;
  target = { ...target, tls };

  const plan: DialPlan = { tls: {} };
  if (target.host !== undefined) plan.host = target.host;
  if (target.port !== undefined && target.port > 0) plan.port = target.port;
  if (target.tlsPort !== undefined && target.tlsPort > 0) plan.tlsPort = target.tlsPort;
  if (target.unixPath !== undefined) plan.unixPath = target.unixPath;
  if (target.webSocketUrl !== undefined) plan.webSocketUrl = target.webSocketUrl;
  if (target.proxy !== undefined) {
    plan.proxy = { host: target.proxy.host, port: target.proxy.port };
    if (target.proxy.username !== undefined) plan.proxy.username = target.proxy.username;
    if (target.proxy.password !== undefined) plan.proxy.password = target.proxy.password;
  }
  if (tls.ca !== undefined) plan.tls.ca = tls.ca;
  if (tls.hostSubject !== undefined) plan.tls.hostSubject = tls.hostSubject;
  if (inputs.connectTimeoutMs !== undefined) plan.connectTimeoutMs = inputs.connectTimeoutMs;

  return { target, label: describeTarget(target), plan, password, passwordSource, secureChannels: secureChannelSet(target), vvDeleted };
}
