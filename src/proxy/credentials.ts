// Which ticket the proxy sends upstream for a viewer's link, and what password that gives the
// proxy for its own smartcard link. Pure: plaintexts in, a choice out.
//
// Rules, in order:
//  1. A viewer token is set (`open` writes it into the viewer's .vv) and the viewer's ticket is that
//     token: the proxy's known password goes upstream. Other local users, lacking the token, get
//     nothing from the proxy that they did not already know.
//  2. No token is set and the proxy knows a password (.vv, --password-file, SPICE_PASSWORD): the
//     known password goes upstream, whatever the viewer sent, so a viewer without it still links.
//  3. Otherwise the viewer's own plaintext goes upstream byte for byte, and the proxy learns it.
// A known password the server refused is forgotten, so the viewer's password prompt can take over.
import { ticketPlaintext } from '../../spice/ticket.js';

export type TicketSource = 'proxy' | 'viewer' | 'unreadable';

export interface TicketChoice {
  /** Plaintext to encrypt with the server's key; undefined: forward the viewer's ticket untouched. */
  plaintext: Uint8Array | undefined;
  /** The password as text, when there is one and it is valid UTF-8. */
  password: string | undefined;
  source: TicketSource;
}

export interface CredentialsOptions {
  knownPassword?: string;
  viewerToken?: string;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The password inside a ticket plaintext: the bytes before the first NUL, if they are UTF-8. */
export function passwordOf(plaintext: Uint8Array): string | undefined {
  const nul = plaintext.indexOf(0);
  try {
    return strictUtf8.decode(nul >= 0 ? plaintext.subarray(0, nul) : plaintext);
  } catch {
    return undefined;
  }
}

export class Credentials {
  private known: string | undefined;
  private readonly token: string | undefined;

  constructor(options: CredentialsOptions = {}) {
    this.known = options.knownPassword;
    this.token = options.viewerToken;
  }

  get knowsPassword(): boolean {
    return this.known !== undefined;
  }

  choose(viewerPlaintext: Uint8Array | undefined): TicketChoice {
    const viewerPassword = viewerPlaintext === undefined ? undefined : passwordOf(viewerPlaintext);
    const tokenMatches = this.token !== undefined && viewerPassword === this.token;
    if (tokenMatches || (this.token === undefined && this.known !== undefined)) {
      const password = this.known ?? '';
      return { plaintext: ticketPlaintext(password), password, source: 'proxy' };
    }
    if (viewerPlaintext === undefined) return { plaintext: undefined, password: undefined, source: 'unreadable' };
    return { plaintext: viewerPlaintext, password: viewerPassword, source: 'viewer' };
  }

  /** The server refused a ticket; returns true when that was the known password, now forgotten. */
  refused(source: TicketSource): boolean {
    if (source !== 'proxy' || this.known === undefined) return false;
    this.known = undefined;
    return true;
  }
}
