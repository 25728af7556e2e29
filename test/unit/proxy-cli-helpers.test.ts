// The small pure parts of `proxy` and `open`: --listen, the viewer's .vv, --viewer splitting, and
// the ticket policy.
import { describe, expect, it } from 'vitest';
import { Credentials, passwordOf } from '../../src/proxy/credentials.js';
import { ListenAddressError, isLoopbackHost, parseListenAddress, viewerUri } from '../../src/proxy/listen-address.js';
import { ViewerCommandError, missingViewerMessage, splitCommand } from '../../src/proxy/viewer-command.js';
import { escapeKeyFileValue, viewerFileText } from '../../src/proxy/viewer-file.js';
import { parseVvFile } from '../../spice/vv-file.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('--listen', () => {
  it('reads PORT, HOST:PORT and [V6]:PORT', () => {
    expect(parseListenAddress('5930')).toEqual({ host: '127.0.0.1', port: 5930 });
    expect(parseListenAddress('127.0.0.2:0')).toEqual({ host: '127.0.0.2', port: 0 });
    expect(parseListenAddress('[::1]:5930')).toEqual({ host: '::1', port: 5930 });
    expect(parseListenAddress('localhost:1')).toEqual({ host: 'localhost', port: 1 });
  });

  it('refuses what is not an address', () => {
    for (const bad of ['', 'host', ':5930', '127.0.0.1:70000', '::1:5930', '[nothost]:1', '1.2.3.4:x']) {
      expect(() => parseListenAddress(bad), bad).toThrow(ListenAddressError);
    }
  });

  it('knows loopback from the rest', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '192.168.1.2', 'example.org', '128.0.0.1']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('gives the viewer a URI', () => {
    expect(viewerUri({ host: '127.0.0.1', port: 1234 })).toBe('spice://127.0.0.1:1234');
    expect(viewerUri({ host: '::1', port: 1234 })).toBe('spice://[::1]:1234');
  });
});

describe("the viewer's .vv", () => {
  it('points at the proxy, without smartcard, and asks to be deleted; our own parser reads it back', () => {
    const text = viewerFileText({ host: '127.0.0.1', port: 40000, password: 'tok-en_1', title: ' VM\\one\nx' });
    expect(text.split('\n')).toEqual(['[virt-viewer]', 'type=spice', 'host=127.0.0.1', 'port=40000', 'password=tok-en_1', 'title=\\sVM\\\\one\\nx', 'enable-smartcard=0', 'delete-this-file=1', '']);
    const target = parseVvFile(text);
    expect(target).toMatchObject({ host: '127.0.0.1', port: 40000, password: 'tok-en_1', title: ' VM\\one\nx', enableSmartcard: false });
  });

  it('escapes GLib key-file values', () => {
    expect(escapeKeyFileValue('a\tb\rc')).toBe('a\\tb\\rc');
    expect(escapeKeyFileValue('plain')).toBe('plain');
  });
});

describe('--viewer', () => {
  it('splits like a shell for the simple cases', () => {
    expect(splitCommand('remote-viewer')).toEqual(['remote-viewer']);
    expect(splitCommand('  remote-viewer   --spice-debug -f ')).toEqual(['remote-viewer', '--spice-debug', '-f']);
    expect(splitCommand(`"/opt/my viewer/bin" --title 'a b' x\\ y ""`)).toEqual(['/opt/my viewer/bin', '--title', 'a b', 'x y', '']);
    expect(splitCommand(`"say \\"hi\\"" 'it\\s'`)).toEqual(['say "hi"', 'it\\s']);
  });

  it('refuses an empty command or an open quote', () => {
    expect(() => splitCommand('   ')).toThrow(ViewerCommandError);
    expect(() => splitCommand(`remote-viewer "x`)).toThrow(/unclosed/);
  });

  it('names the package when remote-viewer is missing', () => {
    expect(missingViewerMessage('remote-viewer')).toMatch(/apt-get install virt-viewer/);
    expect(missingViewerMessage('/opt/v')).toMatch(/not executable/);
  });
});

describe('ticket policy', () => {
  it('reads the password up to the NUL, and only if it is UTF-8', () => {
    expect(passwordOf(bytes('pw\0'))).toBe('pw');
    expect(passwordOf(bytes('pw'))).toBe('pw');
    expect(passwordOf(Uint8Array.of(0xff, 0))).toBeUndefined();
  });

  it('without a known password passes the viewer’s plaintext as it is', () => {
    const c = new Credentials();
    const plain = Uint8Array.of(0x61, 0, 0x62);
    expect(c.choose(plain)).toEqual({ plaintext: plain, password: 'a', source: 'viewer' });
    expect(c.choose(undefined)).toEqual({ plaintext: undefined, password: undefined, source: 'unreadable' });
  });

  it('with a known password answers for every viewer, and forgets it once refused', () => {
    const c = new Credentials({ knownPassword: 'k' });
    expect(c.choose(bytes('other\0'))).toMatchObject({ password: 'k', source: 'proxy' });
    expect(c.choose(undefined)).toMatchObject({ password: 'k', source: 'proxy' });
    expect(c.refused('viewer')).toBe(false);
    expect(c.refused('proxy')).toBe(true);
    expect(c.choose(bytes('other\0'))).toMatchObject({ password: 'other', source: 'viewer' });
  });

  it('with a viewer token, the token (and only it) stands for the known password', () => {
    const c = new Credentials({ knownPassword: 'k', viewerToken: 't' });
    expect(c.choose(bytes('t\0'))).toMatchObject({ password: 'k', source: 'proxy' });
    expect(c.choose(bytes('k\0'))).toMatchObject({ password: 'k', source: 'viewer' });
    expect(c.choose(bytes('\0'))).toMatchObject({ password: '', source: 'viewer' });
    const noPassword = new Credentials({ viewerToken: 't' });
    expect(noPassword.choose(bytes('t\0'))).toMatchObject({ password: '', source: 'proxy' });
  });
});
