// Checks one session as declared in the config file or sent in `session.add`, and returns either the
// typed SessionSpec or every problem with its key path. Shared by the config loader and the bridge,
// so a session means the same thing whichever way it arrives.
import type { CardSourceSpec, ReconnectPolicy, SessionMode, SessionSpec } from '../control/schema.js';
import { parseEndpoint } from '../bridge/passthru-link.js';
import { isLoopbackHost, ListenAddressError, parseListenAddress } from '../proxy/listen-address.js';
import { SpiceTargetError } from '../../spice/target.js';
import { parseSpiceUri } from '../../spice/uri.js';
import { BACKOFF_DEFAULTS } from './backoff.js';
import { unknownKeyMessage } from './config-suggest.js';
import { describeType, IssueList, joinPath, quoteShort, type PlainObject, type SpecIssue } from './config-value.js';

export type { SpecIssue } from './config-value.js';

export type SessionSpecResult = { ok: true; spec: SessionSpec } | { ok: false; errors: SpecIssue[] };

export const SESSION_MODES: readonly SessionMode[] = ['connect', 'passthru', 'proxy'];
export const CARD_KINDS: readonly CardSourceSpec['kind'][] = ['demo', 'soft', 'reader', 'replay', 'none'];
export const SESSION_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const SESSION_KEYS = [
  'name',
  'mode',
  'target',
  'card',
  'passwordFile',
  'caFile',
  'hostSubject',
  'listen',
  'listenAny',
  'trace',
  'traceSecrets',
  'autostart',
  'reconnect',
] as const;
const RECONNECT_KEYS = ['initialMs', 'maxMs'] as const;
const CARD_KEYS: Record<CardSourceSpec['kind'], readonly string[]> = {
  demo: ['kind'],
  soft: ['kind', 'path'],
  reader: ['kind', 'reader'],
  replay: ['kind', 'path'],
  none: ['kind'],
};
const ALL_CARD_KEYS = ['kind', 'path', 'reader'];

/** The forms connection-spec.ts treats as URIs; anything else is the path of a .vv file. */
const URI_PATTERN = /^(spice|spice\+tls|spice\+unix|ws|wss):/i;

export const RECONNECT_LIMITS = { minMs: 100, maxMs: 24 * 3600 * 1000 } as const;

function checkKeys(obj: PlainObject, base: string, known: readonly string[], issues: IssueList): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const path = joinPath(base, key);
    if (/^(spice)?(pass|passwd|pwd|ticket|secret|pa?s?s?wo?r?d)$/.test(key.replace(/[-_\s]/g, '').toLowerCase())) {
      issues.add(path, 'passwords are not kept in the config; put it in a file readable only by the service and name it with passwordFile');
    } else if (/^(pin|puk|pincode|userpin|sopin)$/.test(key.replace(/[-_\s]/g, '').toLowerCase())) {
      issues.add(path, 'a PIN is never kept in the config: the software in the VM asks for it and the card checks it');
    } else {
      issues.add(path, unknownKeyMessage(key, known));
    }
  }
}

function checkName(obj: PlainObject, base: string, issues: IssueList): string | undefined {
  const name = obj['name'];
  const path = joinPath(base, 'name');
  if (name === undefined) {
    issues.add(path, 'missing; every session needs a name (letters, digits, ".", "_", "-"; at most 64)');
    return undefined;
  }
  if (typeof name !== 'string' || !SESSION_NAME_PATTERN.test(name)) {
    // A name is an identifier shown in every log line, never a secret: echoing it helps find it.
    const why = typeof name !== 'string' ? ` (got ${describeType(name)})` : name.length > 64 ? ` (got ${name.length} characters)` : ` (got ${quoteShort(name)})`;
    issues.add(path, `must be 1 to 64 letters, digits, ".", "_" or "-"${why}`);
    return undefined;
  }
  return name;
}

/** Words of the parser's own vocabulary, which may stay in a message even when the URI holds them. */
const URI_WORDS = new Set(['spice', 'spice+tls', 'spice+unix', 'tls', 'unix', 'ws', 'wss', 'port', 'tls-port', 'password', 'host', 'path']);

function withoutPartsOf(target: string, message: string): string {
  const parts = target
    .split(/[:/?&=@[\]#%]+/)
    .filter((part) => part.length >= 2 && !URI_WORDS.has(part.toLowerCase()))
    .sort((a, b) => b.length - a.length);
  let out = message;
  for (const part of parts) out = out.split(part).join('…');
  return out;
}

function checkTarget(mode: SessionMode | undefined, obj: PlainObject, base: string, issues: IssueList): string | undefined {
  const path = joinPath(base, 'target');
  const what = mode === 'passthru' ? 'HOST:PORT or unix:PATH of a QEMU smartcard socket' : 'a spice://, spice+tls://, spice+unix://, ws(s):// URI or a .vv file path';
  const target = issues.string(obj, 'target', base, true, what);
  if (target === undefined || mode === undefined) return undefined;
  if (mode === 'passthru') {
    if (target.startsWith('unix:')) {
      if (target.slice(5).trim() === '') {
        issues.add(path, 'unix: needs the socket path after it, e.g. unix:/run/qemu/vm1-ccid.sock');
        return undefined;
      }
      return target;
    }
    if (parseEndpoint(target) === undefined) {
      issues.add(path, 'must be HOST:PORT (IPv6: [::1]:PORT, port 1-65535) or unix:PATH of a QEMU smartcard socket');
      return undefined;
    }
    return target;
  }
  if (!URI_PATTERN.test(target.trim())) {
    if (/^[A-Za-z0-9.-]+:[0-9]+$/.test(target.trim()) || /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(target.trim())) {
      // "host:5900" or "vnc://..." is a mistaken address, not a file name.
      issues.add(path, `is neither a SPICE URI nor a .vv file path; write it as spice://HOST:PORT`);
      return undefined;
    }
    return target;
  }
  try {
    const parsed = parseSpiceUri(target);
    if (parsed.password !== undefined) {
      issues.add(path, 'the URI carries a password; remove it and name a file holding it with passwordFile');
      return undefined;
    }
  } catch (e) {
    if (!(e instanceof SpiceTargetError)) throw e;
    // The parser never repeats the password, but may quote other parts of the URI, and a password
    // typed in the wrong place (as the port, say) must not come back: every part is blanked out.
    issues.add(path, `not a usable SPICE URI: ${withoutPartsOf(target, e.detail).replace(/\s*\n\s*/g, '; ')}`);
    return undefined;
  }
  return target;
}

function checkCard(obj: PlainObject, base: string, issues: IssueList): CardSourceSpec | undefined {
  const path = joinPath(base, 'card');
  const card = issues.object(obj['card'], path, true, obj['card'] === undefined ? '; every session names its card source: kind demo, soft (with path), reader (with reader), replay (with path) or none' : '');
  if (card === undefined) return undefined;
  const kind = issues.oneOf(card, 'kind', path, CARD_KINDS, true);
  if (kind !== undefined) {
    for (const key of Object.keys(card)) {
      if (ALL_CARD_KEYS.includes(key) && !CARD_KEYS[kind].includes(key)) issues.add(joinPath(path, key), `does not apply to a ${kind} card; remove it`);
    }
  }
  checkKeys(card, path, ALL_CARD_KEYS, issues);
  switch (kind) {
    case undefined:
      return undefined;
    case 'demo':
    case 'none':
      return { kind };
    case 'soft':
    case 'replay': {
      const file = issues.string(card, 'path', path, true, kind === 'soft' ? 'the path of a soft card file' : 'the path of a trace file');
      return file === undefined ? undefined : { kind, path: file };
    }
    case 'reader': {
      const reader = issues.string(card, 'reader', path, true, 'a reader name or glob');
      return reader === undefined ? undefined : { kind, reader };
    }
  }
}

function checkReconnect(obj: PlainObject, base: string, issues: IssueList): ReconnectPolicy | undefined {
  const path = joinPath(base, 'reconnect');
  const r = issues.object(obj['reconnect'], path, false);
  if (r === undefined) return undefined;
  checkKeys(r, path, RECONNECT_KEYS, issues);
  const before = issues.count;
  const initialMs = issues.integer(r, 'initialMs', path, RECONNECT_LIMITS.minMs, RECONNECT_LIMITS.maxMs, ' ms');
  const maxMs = issues.integer(r, 'maxMs', path, RECONNECT_LIMITS.minMs, RECONNECT_LIMITS.maxMs, ' ms');
  const firstWait = initialMs ?? BACKOFF_DEFAULTS.initialMs;
  if (maxMs !== undefined && maxMs < firstWait) {
    issues.add(joinPath(path, 'maxMs'), `must not be less than initialMs (${maxMs} < ${firstWait}${initialMs === undefined ? ', the default' : ''})`);
  }
  if (issues.count !== before) return undefined;
  return { ...(initialMs !== undefined ? { initialMs } : {}), ...(maxMs !== undefined ? { maxMs } : {}) };
}

function checkListen(mode: SessionMode | undefined, obj: PlainObject, base: string, issues: IssueList): { listen?: string; listenAny?: boolean } {
  const listenAny = issues.boolean(obj, 'listenAny', base);
  const listen = issues.string(obj, 'listen', base, false, 'HOST:PORT');
  if (mode !== undefined && mode !== 'proxy') {
    for (const key of ['listen', 'listenAny']) {
      if (obj[key] !== undefined) issues.add(joinPath(base, key), `only proxy sessions listen (this one's mode is ${mode}); remove it`);
    }
    return {};
  }
  if (listen !== undefined) {
    try {
      const address = parseListenAddress(listen);
      if (!isLoopbackHost(address.host) && listenAny !== true) {
        issues.add(joinPath(base, 'listen'), 'is not a loopback address: whoever connects gets the VM; set listenAny = true to allow it');
      }
    } catch (e) {
      if (!(e instanceof ListenAddressError)) throw e;
      issues.add(joinPath(base, 'listen'), 'must be PORT, HOST:PORT or [IPv6]:PORT (port 0-65535; 0 picks a free one)');
    }
  }
  return { ...(listen !== undefined ? { listen } : {}), ...(listenAny !== undefined ? { listenAny } : {}) };
}

/**
 * Validates one session. `path` is where it sits ("sessions[2]" in a config file, "spec" in a request);
 * every error names the full key path. No message repeats a value that could be a secret.
 */
export function validateSessionSpec(value: unknown, path: string): SessionSpecResult {
  const issues = new IssueList();
  const obj = issues.object(value, path === '' ? 'session' : path, true);
  if (obj === undefined) return { ok: false, errors: issues.issues };
  checkKeys(obj, path, SESSION_KEYS, issues);
  const name = checkName(obj, path, issues);
  const mode = issues.oneOf(obj, 'mode', path, SESSION_MODES, true);
  const target = checkTarget(mode, obj, path, issues);
  const card = checkCard(obj, path, issues);
  const passwordFile = issues.string(obj, 'passwordFile', path, false, 'a file path');
  const caFile = issues.string(obj, 'caFile', path, false, 'a file path');
  const hostSubject = issues.string(obj, 'hostSubject', path, false, 'a certificate subject such as "C=XX,O=Org,CN=host"');
  if (mode === 'passthru') {
    for (const key of ['passwordFile', 'caFile', 'hostSubject']) {
      if (obj[key] !== undefined) issues.add(joinPath(path, key), 'passthru sessions talk to a QEMU socket, not a SPICE server; remove it');
    }
  }
  const listen = checkListen(mode, obj, path, issues);
  const trace = issues.string(obj, 'trace', path, false, 'a file path');
  const traceSecrets = issues.boolean(obj, 'traceSecrets', path);
  if (traceSecrets === true && obj['trace'] === undefined) {
    issues.add(joinPath(path, 'traceSecrets'), 'only applies with trace; add trace = "FILE" or remove it');
  }
  const autostart = issues.boolean(obj, 'autostart', path);
  const reconnect = checkReconnect(obj, path, issues);
  if (issues.count > 0 || name === undefined || mode === undefined || target === undefined || card === undefined) {
    return { ok: false, errors: issues.issues };
  }
  const spec: SessionSpec = { name, mode, target, card };
  if (passwordFile !== undefined) spec.passwordFile = passwordFile;
  if (caFile !== undefined) spec.caFile = caFile;
  if (hostSubject !== undefined) spec.hostSubject = hostSubject;
  if (listen.listen !== undefined) spec.listen = listen.listen;
  if (listen.listenAny !== undefined) spec.listenAny = listen.listenAny;
  if (trace !== undefined) spec.trace = trace;
  if (traceSecrets !== undefined) spec.traceSecrets = traceSecrets;
  if (autostart !== undefined) spec.autostart = autostart;
  if (reconnect !== undefined) spec.reconnect = reconnect;
  return { ok: true, spec };
}
