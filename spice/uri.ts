import { parsePortNumber, passwordProblem, SpiceTargetError, type SpiceTarget } from './target.js';

/** Longer input is certainly not a connection URI; refusing early keeps error messages readable. */
const MAX_URI_LENGTH = 8192;

export const ACCEPTED_URI_FORMS: readonly string[] = [
  'spice://HOST:PORT[?tls-port=TLSPORT][&password=PASSWORD]',
  'spice://HOST?tls-port=TLSPORT   (TLS only)',
  'spice+tls://HOST:TLSPORT',
  'spice+unix:///path/to/socket',
  'ws://HOST:PORT/PATH or wss://HOST:PORT/PATH   (WebSocket)',
  'IPv6 addresses go in brackets: spice://[::1]:5900',
];

const SPICE_QUERY_KEYS = ['port', 'tls-port', 'password'];

/** Parses a SPICE connection URI in the forms spice-gtk and remote-viewer accept, plus WebSocket URLs. */
export function parseSpiceUri(text: string): SpiceTarget {
  const uri = text.trim();
  if (uri.length === 0) throw new SpiceTargetError(`empty URI; use one of:\n${formsList()}`);
  if (uri.length > MAX_URI_LENGTH) throw new SpiceTargetError(`URI is longer than ${MAX_URI_LENGTH} characters`);
  if (/[\u0000-\u0020\u007f]/.test(uri)) {
    throw new SpiceTargetError('URI contains spaces or control characters; percent-encode them (a space is %20)');
  }
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(uri);
  const scheme = match?.[1]?.toLowerCase();
  const rest = match?.[2] ?? '';
  const known: readonly string[] = ['spice', 'spice+tls', 'spice+unix', 'ws', 'wss'];
  if (scheme === undefined || (!known.includes(scheme) && /^[0-9]/.test(rest))) {
    // "host:5900" parses as scheme "host"; the digits give it away. Not echoed: it may hold a password.
    throw new SpiceTargetError(`the address has no scheme; write it as spice://HOST:PORT. Accepted forms:\n${formsList()}`);
  }
  switch (scheme) {
    case 'spice':
    case 'spice+tls':
      return parseNetworkUri(scheme, requireSlashes(scheme, rest));
    case 'spice+unix':
      return parseUnixUri(requireSlashes(scheme, rest));
    case 'ws':
    case 'wss':
      return parseWebSocketUri(uri);
    default:
      throw new SpiceTargetError(`unsupported URI scheme "${scheme}:"${schemeHint(scheme)}; accepted forms:\n${formsList()}`);
  }
}

function formsList(): string {
  return ACCEPTED_URI_FORMS.map((form) => `  ${form}`).join('\n');
}

function schemeHint(scheme: string): string {
  if (scheme === 'vnc') return ' (this is a VNC address, not SPICE)';
  if (scheme === 'http' || scheme === 'https') return ' (for a WebSocket endpoint use ws:// or wss://)';
  return '';
}

function requireSlashes(scheme: string, rest: string): string {
  if (!rest.startsWith('//')) throw new SpiceTargetError(`expected "${scheme}://" at the start of the URI`);
  return rest.slice(2);
}

interface SplitUri {
  beforeQuery: string;
  query: string | undefined;
}

function splitQuery(rest: string): SplitUri {
  const hash = rest.indexOf('#');
  const withoutFragment = hash === -1 ? rest : rest.slice(0, hash);
  const question = withoutFragment.indexOf('?');
  if (question === -1) return { beforeQuery: withoutFragment, query: undefined };
  return { beforeQuery: withoutFragment.slice(0, question), query: withoutFragment.slice(question + 1) };
}

function parseNetworkUri(scheme: 'spice' | 'spice+tls', rest: string): SpiceTarget {
  const { beforeQuery, query } = splitQuery(rest);
  const slash = beforeQuery.indexOf('/');
  const authority = slash === -1 ? beforeQuery : beforeQuery.slice(0, slash);
  const path = slash === -1 ? '' : beforeQuery.slice(slash);
  if (path !== '' && path !== '/') {
    throw new SpiceTargetError(`unexpected path "${path}" in a ${scheme}:// URI; only HOST:PORT is allowed`);
  }
  if (authority.includes('@')) {
    throw new SpiceTargetError('user names are not supported in SPICE URIs; pass the password as ?password=...');
  }
  const { host, port: authorityPort } = parseHostPort(authority);
  const params = parseQuery(query, SPICE_QUERY_KEYS);
  const queryPort = portParam(params, 'port');
  const queryTlsPort = portParam(params, 'tls-port');

  let port: number | undefined;
  let tlsPort: number | undefined;
  if (scheme === 'spice+tls') {
    if (queryPort !== undefined) {
      throw new SpiceTargetError('spice+tls:// is TLS only and cannot have ?port=; use spice://HOST:PORT?tls-port=TLSPORT for both');
    }
    if (authorityPort !== undefined && queryTlsPort !== undefined) {
      throw new SpiceTargetError('the TLS port is given twice (HOST:PORT in spice+tls:// and ?tls-port=); give it once');
    }
    tlsPort = authorityPort ?? queryTlsPort;
  } else {
    if (authorityPort !== undefined && queryPort !== undefined) {
      throw new SpiceTargetError('the port is given twice (HOST:PORT and ?port=); give it once');
    }
    port = authorityPort ?? queryPort;
    tlsPort = queryTlsPort;
  }
  if (port === undefined && tlsPort === undefined) {
    throw new SpiceTargetError(
      `no port in the URI; SPICE has no default port. Add one, e.g. ${scheme}://${formatHost(host)}:5900` +
        (scheme === 'spice' ? ` or ${scheme}://${formatHost(host)}?tls-port=5901` : ''),
    );
  }
  const target: SpiceTarget = { host, tls: {}, source: 'uri' };
  if (port !== undefined) target.port = port;
  if (tlsPort !== undefined) target.tlsPort = tlsPort;
  addPassword(target, params.get('password'));
  return target;
}

/** Splits `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT` (percent-decoded, brackets removed). */
export function parseHostPort(authority: string): { host: string; port: number | undefined } {
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw new SpiceTargetError('IPv6 address is missing its closing "]"');
    host = decode(authority.slice(1, close), 'host');
    if (!/^[0-9A-Fa-f:.]+(%[^\]]+)?$/.test(host) || !host.includes(':')) {
      throw new SpiceTargetError(`"${host}" in brackets is not an IPv6 address`);
    }
    const after = authority.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) {
      throw new SpiceTargetError(`unexpected "${after}" after the IPv6 address; write [ADDRESS]:PORT`);
    }
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const colons = authority.split(':').length - 1;
    if (colons > 1) throw new SpiceTargetError('IPv6 addresses must be written in brackets, e.g. [::1]:5900');
    const colon = authority.indexOf(':');
    host = decode(colon === -1 ? authority : authority.slice(0, colon), 'host');
    portText = colon === -1 ? undefined : authority.slice(colon + 1);
    if (host.length === 0) throw new SpiceTargetError('no host name; write it as HOST:PORT');
    if (/[\s\u0000-\u001f\u007f/\\?#@\[\]]/.test(host)) throw new SpiceTargetError(`"${host}" is not a valid host name`);
  }
  if (portText === undefined) return { host, port: undefined };
  const port = parsePortNumber(portText);
  if (port === undefined) throw new SpiceTargetError(`"${portText}" is not a valid port (1-65535)`);
  return { host, port };
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function parseQuery(query: string | undefined, allowed: readonly string[]): Map<string, string> {
  const params = new Map<string, string>();
  if (query === undefined || query === '') return params;
  // spice-gtk accepts both separators.
  for (const part of query.split(/[&;]/)) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    if (equals === -1) throw new SpiceTargetError(`query parameter "${part}" has no value; write KEY=VALUE`);
    const key = decode(part.slice(0, equals), 'query parameter name').toLowerCase();
    if (!allowed.includes(key)) {
      throw new SpiceTargetError(`unknown query parameter "${key}"; accepted: ${allowed.join(', ')}`);
    }
    if (params.has(key)) throw new SpiceTargetError(`query parameter "${key}" is given twice; give it once`);
    params.set(key, decode(part.slice(equals + 1), key));
  }
  return params;
}

function portParam(params: Map<string, string>, key: string): number | undefined {
  const text = params.get(key);
  if (text === undefined) return undefined;
  const port = parsePortNumber(text);
  if (port === undefined) throw new SpiceTargetError(`${key}=${text} is not a valid port (1-65535)`);
  return port;
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch (error) {
    // Never echo the text: it may be the password.
    throw new SpiceTargetError(`bad percent-encoding in the ${what}; write a literal "%" as %25`, { cause: error });
  }
}

function addPassword(target: SpiceTarget, password: string | undefined): void {
  if (password === undefined || password === '') return;
  const problem = passwordProblem(password);
  if (problem !== undefined) throw new SpiceTargetError(problem);
  target.password = password;
}

function parseUnixUri(rest: string): SpiceTarget {
  const { beforeQuery, query } = splitQuery(rest);
  if (!beforeQuery.startsWith('/')) {
    throw new SpiceTargetError('spice+unix:// needs an absolute socket path, e.g. spice+unix:///run/vm/spice.sock');
  }
  const unixPath = decode(beforeQuery, 'socket path');
  if (unixPath.includes('\0')) throw new SpiceTargetError('the socket path contains a NUL character');
  const params = parseQuery(query, ['password']);
  const target: SpiceTarget = { unixPath, tls: {}, source: 'uri' };
  addPassword(target, params.get('password'));
  return target;
}

function parseWebSocketUri(uri: string): SpiceTarget {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (error) {
    throw new SpiceTargetError('this WebSocket URL is malformed; write it as ws://HOST:PORT/PATH', { cause: error });
  }
  if (url.hostname === '') throw new SpiceTargetError('no host in the WebSocket URL; write it as ws://HOST:PORT/PATH');
  if (url.username !== '' || url.password !== '') {
    throw new SpiceTargetError('user names are not supported in WebSocket URLs; pass the SPICE password as ?password=...');
  }
  // The SPICE password is ours, not the WebSocket server's: take it out so it never goes on the wire in clear.
  let password: string | undefined;
  const kept: string[] = [];
  const query = url.search.startsWith('?') ? url.search.slice(1) : '';
  for (const part of query.split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    const key = decode(equals === -1 ? part : part.slice(0, equals), 'query parameter name');
    if (key.toLowerCase() !== 'password') {
      kept.push(part);
      continue;
    }
    if (password !== undefined) throw new SpiceTargetError('query parameter "password" is given twice; give it once');
    password = equals === -1 ? '' : decode(part.slice(equals + 1), 'password');
  }
  url.search = kept.length === 0 ? '' : `?${kept.join('&')}`;
  url.hash = '';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const target: SpiceTarget = { host, webSocketUrl: url.href, tls: {}, source: 'uri' };
  addPassword(target, password);
  return target;
}
