import { describe, expect, it } from 'vitest';
import { formatRdns, parseHostSubject, subjectMatches, subjectToRdns } from '../../spice/host-subject.js';
import { encodeConnectRequest, parseConnectResponse } from '../../spice/http-connect.js';
import { describeLinkError } from '../../spice/errors.js';

describe('host-subject', () => {
  it.each([
    ['C=XX,O=Org,CN=host', [['C', 'XX'], ['O', 'Org'], ['CN', 'host']]],
    ['OU=PVE Cluster Node, O=Proxmox Virtual Environment, CN=pve1', [['OU', 'PVE Cluster Node'], ['O', 'Proxmox Virtual Environment'], ['CN', 'pve1']]],
    ['/C=XX/O=Org/CN=host', [['C', 'XX'], ['O', 'Org'], ['CN', 'host']]],
    ['O=Acme\\, Inc.,cn=h', [['O', 'Acme, Inc.'], ['CN', 'h']]],
  ])('parses %s', (text, rdns) => {
    expect(parseHostSubject(text)).toEqual(rdns);
  });

  it.each(['', ' , ', 'CN', '=x'])('refuses "%s"', (text) => {
    expect(() => parseHostSubject(text)).toThrow();
  });

  it('matches a certificate subject in any order, and nothing more or less', () => {
    const expected = parseHostSubject('C=XX,O=Org,CN=host');
    expect(subjectMatches(expected, subjectToRdns({ CN: 'host', C: 'XX', O: 'Org' }))).toBe(true);
    expect(subjectMatches(expected, subjectToRdns({ CN: 'host', C: 'XX', O: 'Org', OU: 'x' }))).toBe(false);
    expect(subjectMatches(expected, subjectToRdns({ CN: 'other', C: 'XX', O: 'Org' }))).toBe(false);
    expect(subjectToRdns({ OU: ['a', 'b'] })).toEqual([['OU', 'a'], ['OU', 'b']]);
    expect(formatRdns([['O', 'A, B']])).toBe('O=A\\, B');
  });
});

describe('HTTP CONNECT', () => {
  it('sends what GLib sends, with Host equal to the target (Proxmox checks it)', () => {
    const req = Buffer.from(encodeConnectRequest({ host: 'proxy', port: 3128 }, 'pvespiceproxy:6500a1b2:100:pve1::abcdef', 61000)).toString('latin1');
    expect(req).toBe(
      'CONNECT pvespiceproxy:6500a1b2:100:pve1::abcdef:61000 HTTP/1.0\r\nHost: pvespiceproxy:6500a1b2:100:pve1::abcdef:61000\r\nProxy-Connection: keep-alive\r\nUser-Agent: spice-smartcard\r\n\r\n',
    );
    const auth = Buffer.from(encodeConnectRequest({ host: 'p', port: 1, username: 'u', password: 'p:w' }, 'h', 2)).toString('latin1');
    expect(auth).toContain(`Proxy-Authorization: Basic ${Buffer.from('u:p:w').toString('base64')}\r\n`);
  });

  it.each([
    ['HTTP/1.0 200 Connection established\r\n\r\n', { kind: 'ok', headerLength: 39 }],
    ['HTTP/1.1 200 OK\r\nProxy-agent: x\r\n\r\nREDQ', { kind: 'ok', headerLength: 35 }],
    ['HTTP/1.1 200 OK\r\n', { kind: 'incomplete' }],
    ['HTT', { kind: 'incomplete' }],
    ['HTTP/1.0 401 invalid ticket\r\n\r\n', { kind: 'refused', status: 401, reason: 'invalid ticket' }],
    ['HTTP/1.1 403\r\n\r\n', { kind: 'refused', status: 403, reason: '' }],
    ['SSH-2.0-OpenSSH\r\n\r\n', { kind: 'invalid', why: 'unexpected status line "SSH-2.0-OpenSSH"' }],
    ['REDQ\u0002\u0000', { kind: 'invalid', why: 'the proxy did not answer with HTTP' }],
  ])('reads %j', (text, expected) => {
    expect(parseConnectResponse(Buffer.from(text, 'latin1'))).toEqual(expected);
  });

  it('gives up on an answer that never ends its headers', () => {
    expect(parseConnectResponse(Buffer.from(`HTTP/1.1 200 OK\r\n${'X: y\r\n'.repeat(4000)}`)).kind).toBe('invalid');
  });
});

describe('link error messages', () => {
  it('say what happened and what to do for every SPICE_LINK_ERR', () => {
    for (let code = 1; code <= 10; code++) {
      const { message } = describeLinkError(code, 'main');
      expect(message.length).toBeGreaterThan(30);
      expect(message).toMatch(/main/);
    }
    expect(describeLinkError(7, 'main').kind).toBe('auth');
    expect(describeLinkError(5, 'smartcard').message).toMatch(/tls-port/);
  });
});
