import { LinkError, linkErrorName } from './constants.js';

/**
 * What went wrong, in the categories a user acts on differently. The CLI maps them to exit codes:
 * network/tls/protocol → 3, auth → 4, channel-missing/channel-taken → 5.
 */
export type SpiceErrorKind =
  | 'network' // could not reach the server, or it went away
  | 'tls' // TLS handshake or certificate check failed
  | 'protocol' // the peer does not speak SPICE as we expect
  | 'auth' // password refused
  | 'channel-missing' // the server offers no such channel
  | 'channel-taken'; // another client holds the channel

export class SpiceError extends Error {
  readonly kind: SpiceErrorKind;
  /** SPICE_LINK_ERR_* when the error came from a link reply or link result. */
  readonly linkError: number | undefined;

  constructor(kind: SpiceErrorKind, message: string, options?: { cause?: unknown; linkError?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpiceError';
    this.kind = kind;
    this.linkError = options?.linkError;
  }
}

/** The human sentence for a SPICE_LINK_ERR_* code: what happened and what to do. */
export function describeLinkError(code: number, channel: string): { kind: SpiceErrorKind; message: string } {
  switch (code) {
    case LinkError.PERMISSION_DENIED:
      return {
        kind: 'auth',
        message:
          `The server refused the password for the ${channel} channel (PERMISSION_DENIED): it is wrong, ` +
          'has expired, or the server has a password set and none was given. Give the right password with ' +
          '--password-file FILE or SPICE_PASSWORD; Proxmox and oVirt tickets expire within seconds, so download a fresh .vv file.',
      };
    case LinkError.BAD_CONNECTION_ID:
      return {
        kind: 'network',
        message:
          `The server no longer knows this session (BAD_CONNECTION_ID on the ${channel} channel): ` +
          'it was closed or replaced by another client. Connect again.',
      };
    case LinkError.NEED_SECURED:
      return {
        kind: 'tls',
        message:
          `The server requires TLS for the ${channel} channel (NEED_SECURED) but no TLS port is known. ` +
          'Give it: spice://HOST?tls-port=N, spice+tls://HOST:N, or tls-port= in the .vv file.',
      };
    case LinkError.NEED_UNSECURED:
      return {
        kind: 'tls',
        message:
          `The server refuses TLS for the ${channel} channel (NEED_UNSECURED). Connect to its plain port instead.`,
      };
    case LinkError.VERSION_MISMATCH:
      return {
        kind: 'protocol',
        message:
          `The server refused the link (VERSION_MISMATCH on the ${channel} channel): it speaks another SPICE ` +
          'protocol version or requires SASL authentication, which spice-smartcard does not support.',
      };
    case LinkError.INVALID_MAGIC:
    case LinkError.INVALID_DATA:
      return {
        kind: 'protocol',
        message:
          `The server rejected our link message as malformed (${linkErrorName(code)} on the ${channel} channel). ` +
          'This is a bug in spice-smartcard or an incompatible server: please report it with the server version.',
      };
    case LinkError.CHANNEL_NOT_AVAILABLE:
      return {
        kind: 'channel-missing',
        message: `The server has no ${channel} channel (CHANNEL_NOT_AVAILABLE).`,
      };
    default:
      return {
        kind: 'protocol',
        message: `The server refused the ${channel} channel with link error ${code} (${linkErrorName(code)}).`,
      };
  }
}

export function linkFailure(code: number, channel: string): SpiceError {
  const { kind, message } = describeLinkError(code, channel);
  return new SpiceError(kind, message, { linkError: code });
}
