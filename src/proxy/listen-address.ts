// Where the proxy listens: "PORT", "HOST:PORT" or "[V6]:PORT", and whether that is loopback only.
// The proxy hands out a session (and, with a known password, the VM) to whoever connects, so
// anything but loopback must be asked for explicitly.
import net from 'node:net';

export interface ListenAddress {
  host: string;
  /** 0: any free port. */
  port: number;
}

export class ListenAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenAddressError';
  }
}

function parsePort(text: string, whole: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535) throw new ListenAddressError(`"${whole}" has no valid port (0-65535; 0 picks a free one).`);
  return Number(text);
}

export function parseListenAddress(text: string): ListenAddress {
  const t = text.trim();
  if (/^[0-9]+$/.test(t)) return { host: '127.0.0.1', port: parsePort(t, text) };
  const v6 = /^\[([^\]]+)\]:([^:]*)$/.exec(t);
  if (v6 !== null) {
    if (net.isIPv6(v6[1]!) === false) throw new ListenAddressError(`"${text}": ${v6[1]} is not an IPv6 address.`);
    return { host: v6[1]!, port: parsePort(v6[2]!, text) };
  }
  const colon = t.lastIndexOf(':');
  if (colon <= 0 || t.indexOf(':') !== colon) throw new ListenAddressError(`"${text}" is not HOST:PORT (write IPv6 addresses as [::1]:PORT).`);
  return { host: t.slice(0, colon), port: parsePort(t.slice(colon + 1), text) };
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

/** The spice:// URI a viewer should be given for this address. */
export function viewerUri(address: ListenAddress): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `spice://${host}:${address.port}`;
}
