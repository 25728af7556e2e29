import { describe, expect, it } from 'vitest';
import { SpiceTargetError, type SpiceTarget } from '../../spice/target.js';
import { parseSpiceUri } from '../../spice/uri.js';

const valid: Array<[string, Partial<SpiceTarget>]> = [
  ['spice://example.org:5900', { host: 'example.org', port: 5900 }],
  ['spice://example.org:5900/', { host: 'example.org', port: 5900 }],
  ['  spice://example.org:5900\n', { host: 'example.org', port: 5900 }],
  ['SPICE://Example.org:5900', { host: 'Example.org', port: 5900 }],
  ['spice://10.0.0.5:5900?tls-port=5901', { host: '10.0.0.5', port: 5900, tlsPort: 5901 }],
  ['spice://10.0.0.5:5900?tls-port=5901&password=s3cret', { port: 5900, tlsPort: 5901, password: 's3cret' }],
  ['spice://10.0.0.5:5900?tls-port=5901;password=s3cret', { tlsPort: 5901, password: 's3cret' }],
  ['spice://h?port=5900', { host: 'h', port: 5900 }],
  ['spice://h?tls-port=5901', { host: 'h', tlsPort: 5901 }],
  ['spice://h?tls-port=5901&', { host: 'h', tlsPort: 5901 }],
  ['spice://h:5900?password=a%20b%26c%3Dd%25', { password: 'a b&c=d%' }],
  ['spice://h:5900?password=a+b', { password: 'a+b' }],
  ['spice://h:5900?password=%E2%82%AC', { password: '€' }],
  ['spice://h:5900?password=', { host: 'h', port: 5900 }],
  ['spice://h:5900#fragment', { host: 'h', port: 5900 }],
  ['spice+tls://h:5901', { host: 'h', tlsPort: 5901 }],
  ['spice+tls://h?tls-port=5901', { host: 'h', tlsPort: 5901 }],
  ['spice+tls://h:5901?password=pw', { tlsPort: 5901, password: 'pw' }],
  ['spice://[::1]:5900', { host: '::1', port: 5900 }],
  ['spice://[2001:db8::2]?tls-port=5901', { host: '2001:db8::2', tlsPort: 5901 }],
  ['spice://[fe80::1%25eth0]:5900', { host: 'fe80::1%eth0', port: 5900 }],
  ['spice+unix:///run/vm/spice.sock', { unixPath: '/run/vm/spice.sock' }],
  ['spice+unix:///tmp/my%20vm.sock?password=pw', { unixPath: '/tmp/my vm.sock', password: 'pw' }],
  ['ws://127.0.0.1:5900', { host: '127.0.0.1', webSocketUrl: 'ws://127.0.0.1:5900/' }],
  ['ws://proxy.example/websockify?token=vm1', { host: 'proxy.example', webSocketUrl: 'ws://proxy.example/websockify?token=vm1' }],
  ['wss://h:5901/path?token=t&password=p%40ss', { host: 'h', webSocketUrl: 'wss://h:5901/path?token=t', password: 'p@ss' }],
  ['wss://[::1]:5901/', { host: '::1', webSocketUrl: 'wss://[::1]:5901/' }],
];

describe('parseSpiceUri: accepted forms', () => {
  it.each(valid)('%s', (uri, expected) => {
    const target = parseSpiceUri(uri);
    expect(target).toMatchObject({ ...expected, source: 'uri', tls: {} });
  });

  it('leaves out what was not given', () => {
    expect(parseSpiceUri('spice://h:5900')).toEqual({ host: 'h', port: 5900, tls: {}, source: 'uri' });
    expect(parseSpiceUri('spice+tls://h:5901')).toEqual({ host: 'h', tlsPort: 5901, tls: {}, source: 'uri' });
  });

  it('accepts a 60-byte password', () => {
    expect(parseSpiceUri(`spice://h:1?password=${'x'.repeat(60)}`).password).toHaveLength(60);
  });
});

const invalid: Array<[string, RegExp]> = [
  ['', /empty URI/],
  ['example.org:5900', /no scheme.*spice:\/\/HOST:PORT/s],
  ['example.org', /no scheme/],
  ['vnc://h:5900', /unsupported URI scheme "vnc:".*VNC.*spice\+unix:\/\//s],
  ['http://h:5900', /unsupported URI scheme "http:".*ws:\/\//s],
  ['ftp://h', /unsupported URI scheme "ftp:"[^]*spice:\/\/HOST:PORT/],
  ['spice:h:5900', /expected "spice:\/\/"/],
  ['spice://h', /no port in the URI; SPICE has no default port.*spice:\/\/h:5900.*tls-port=5901/],
  ['spice+tls://h', /no port in the URI/],
  ['spice://[::1]', /no port.*spice:\/\/\[::1\]:5900/],
  ['spice://h:0', /"0" is not a valid port/],
  ['spice://h:65536', /"65536" is not a valid port/],
  ['spice://h:59a0', /"59a0" is not a valid port/],
  ['spice://h:', /"" is not a valid port/],
  ['spice://h:5900?tls-port=x', /tls-port=x is not a valid port/],
  ['spice://h:5900?port=5901', /port is given twice/],
  ['spice://h:5900?tls-port=1&tls-port=2', /"tls-port" is given twice/],
  ['spice+tls://h:5901?tls-port=5902', /TLS port is given twice/],
  ['spice+tls://h:5901?port=5900', /TLS only/],
  ['spice://h:5900?pasword=x', /unknown query parameter "pasword"; accepted: port, tls-port, password/],
  ['spice://h:5900?password', /"password" has no value/],
  ['spice://h:5900/vm1', /unexpected path "\/vm1"/],
  ['spice://user@h:5900', /user names are not supported/],
  ['spice://::1:5900', /IPv6 addresses must be written in brackets/],
  ['spice://[::1:5900', /missing its closing "\]"/],
  ['spice://[nothex]:5900', /not an IPv6 address/],
  ['spice://[::1]x:5900', /after the IPv6 address/],
  ['spice://:5900', /no host name/],
  ['spice://h%2Fx:5900', /not a valid host name/],
  ['spice://h 1:5900', /spaces or control characters/],
  ['spice://h:5900?password=%ZZ', /bad percent-encoding in the password/],
  ['spice://h:5900?password=a%00b', /NUL character/],
  [`spice://h:5900?password=${'x'.repeat(61)}`, /61 bytes long; SPICE allows at most 60/],
  [`spice://h:5900?password=${'é'.repeat(31)}`, /62 bytes long/],
  ['spice+unix://relative/sock', /absolute socket path/],
  ['spice+unix:///s?tls-port=1', /unknown query parameter "tls-port"; accepted: password/],
  ['ws://', /malformed/],
  ['ws://user:pw@h/', /user names are not supported/],
  ['wss://h/?password=a&password=b', /given twice/],
  [`spice://h:5900?${'a'.repeat(9000)}`, /longer than 8192/],
];

describe('parseSpiceUri: rejected input', () => {
  it.each(invalid)('%s', (uri, message) => {
    let caught: unknown;
    try {
      parseSpiceUri(uri);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SpiceTargetError);
    expect((caught as SpiceTargetError).message).toMatch(message);
  });

  it.each([
    'spice://h:5900?password=TopSecret%ZZ',
    'h:5900?password=TopSecret',
    'spice://h?password=TopSecret',
    `spice://h:5900?password=TopSecret${'x'.repeat(60)}`,
  ])('never puts the password in an error message: %s', (uri) => {
    expect(() => parseSpiceUri(uri)).toThrow(SpiceTargetError);
    try {
      parseSpiceUri(uri);
    } catch (error) {
      expect(String(error)).not.toContain('TopSecret');
    }
  });
});

describe('parseSpiceUri: random input', () => {
  const alphabet = ['spice://', 'spice+tls://', 'spice+unix://', 'ws://', 'wss://', '[', ']', ':', '?', '&', ';', '=',
    '%', '%2', '%41', '/', '@', '#', 'h', '0', '5900', '65535', '99999', 'port', 'tls-port', 'password', ' ', '\0', 'é',
    '\uD800', '::1'];

  it('throws nothing but SpiceTargetError', () => {
    let seed = 12345;
    const next = (limit: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % limit;
    };
    let accepted = 0;
    for (let round = 0; round < 20000; round++) {
      let uri = round % 2 === 0 ? 'spice://h:5900' : '';
      const parts = next(12);
      for (let i = 0; i < parts; i++) uri += alphabet[next(alphabet.length)];
      try {
        const target = parseSpiceUri(uri);
        const endpoints = [target.unixPath, target.webSocketUrl, target.port ?? target.tlsPort].filter((e) => e !== undefined);
        expect(endpoints.length).toBeGreaterThan(0);
        accepted++;
      } catch (error) {
        if (!(error instanceof SpiceTargetError)) throw new Error(`unexpected ${String(error)} for ${JSON.stringify(uri)}`);
      }
    }
    expect(accepted).toBeGreaterThan(100);
  });
});
