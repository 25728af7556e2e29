/**
 * Where and how to reach one SPICE server, as read from a `spice://` URI or a virt-viewer `.vv` file.
 *
 * Exactly one endpoint is used, in this order: `unixPath`, then `webSocketUrl`, then `host` with
 * `port` and/or `tlsPort`. The parsers guarantee at least one usable endpoint is present.
 */
export interface SpiceTarget {
  /** Host name, IPv4 or IPv6 literal (no brackets), or an opaque proxy ticket such as Proxmox's `pvespiceproxy:...`. */
  host?: string;
  /** Plain (non-TLS) port. */
  port?: number;
  /** TLS port. With no `port`, every channel goes straight to TLS. */
  tlsPort?: number;
  unixPath?: string;
  /** `ws://` or `wss://` URL of spice-server itself or of a WebSocket proxy in front of it (password removed). */
  webSocketUrl?: string;
  /** SPICE ticket (at most {@link MAX_PASSWORD_BYTES} UTF-8 bytes). */
  password?: string;
  /** HTTP CONNECT proxy; every channel connection opens its own tunnel through it. */
  proxy?: SpiceProxy;
  tls: SpiceTls;
  title?: string;
  /** What the file's producer asked for (oVirt's "Smartcard enabled"); undefined when it did not say. */
  enableSmartcard?: boolean;
  source: 'uri' | 'vv';
}

export interface SpiceProxy {
  /** The proxy as given, without credentials, for display. */
  url: string;
  host: string;
  port: number;
  username?: string;
  password?: string;
}

export interface SpiceTls {
  /** PEM text of the CA certificate(s) the server's chain must verify against. */
  ca?: string;
  /** Expected server certificate subject as `K=V,K=V` (virt-viewer's form); turns on subject checking. */
  hostSubject?: string;
  /** Channels that must use TLS (`main`, `smartcard`, ... or `all`), lower case. */
  secureChannels?: string[];
}

/** spice-server copies the ticket into a 60-byte field; spice-gtk refuses anything longer. */
export const MAX_PASSWORD_BYTES = 60;

/** Channel names virt-viewer knows for `secure-channels`; a typo there would silently weaken security. */
export const SPICE_CHANNEL_NAMES: readonly string[] = [
  'all', 'main', 'display', 'inputs', 'cursor', 'playback', 'record', 'smartcard', 'usbredir', 'port', 'webdav',
];

/**
 * Raised for any problem with a URI or `.vv` file. The message says what is wrong and what to do, and never
 * contains the password.
 */
export class SpiceTargetError extends Error {
  /** The message without the file and line prefix. */
  readonly detail: string;
  /** 1-based line of a `.vv` file, when the problem is on one line. */
  readonly line: number | undefined;
  readonly file: string | undefined;

  constructor(detail: string, options: { line?: number; file?: string; cause?: unknown } = {}) {
    const where = [options.file, options.line === undefined ? undefined : `line ${options.line}`]
      .filter((part) => part !== undefined);
    super(where.length === 0 ? detail : `${where.join(': ')}: ${detail}`,
      options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpiceTargetError';
    this.detail = detail;
    this.line = options.line;
    this.file = options.file;
  }
}

/** Returns a reason the password cannot be sent as a SPICE ticket, or undefined when it can. */
export function passwordProblem(password: string): string | undefined {
  // The server NUL-terminates the decrypted ticket and compares with strcmp: anything after a NUL is lost.
  if (password.includes('\0')) return 'the password contains a NUL character, which SPICE cannot carry';
  const bytes = Buffer.byteLength(password, 'utf8');
  if (bytes > MAX_PASSWORD_BYTES) {
    return `the password is ${bytes} bytes long; SPICE allows at most ${MAX_PASSWORD_BYTES} bytes (UTF-8)`;
  }
  return undefined;
}

/** Parses a decimal TCP port, or returns undefined when the text is not one. */
export function parsePortNumber(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}
