import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitForPort } from '../helpers/ports.js';
import { checkBinaries } from '../helpers/process.js';
import { QEMU_BINARY, startSpiceServer, type SpiceServer } from '../helpers/qemu.js';
import { startTinyproxy, TINYPROXY_BINARY, type Tinyproxy } from '../helpers/tinyproxy.js';
import { makeTlsFixtures, type TlsFixtures } from '../helpers/tls.js';

const binaries = checkBinaries([QEMU_BINARY, 'openssl', TINYPROXY_BINARY]);
if (binaries.skip) console.warn(`test/integration/fixtures.test.ts skipped: ${binaries.reason}; set CI=1 to fail instead`);

/** Link header (REDQ, version 2.2, size 22) + main-channel link message: connection 0, 1 common caps word 0x09. */
const MAIN_LINK = Buffer.from(
  '52454451' + '02000000' + '02000000' + '16000000' +
    '00000000' + '01' + '00' + '01000000' + '00000000' + '12000000' + '09000000',
  'hex',
);
const LINK_ERR_OK = 0;
const LINK_ERR_NEED_SECURED = 5;
const PASSWORD = 'not-on-the-command-line';

/** Collects a stream's bytes so a test can read exact amounts; fails on timeout or early end. */
class ByteReader {
  private buffered = Buffer.alloc(0);
  private ended: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(stream: Socket) {
    stream.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake?.();
    });
    stream.on('end', () => this.finish(new Error('stream ended')));
    stream.on('close', () => this.finish(new Error('stream closed')));
    stream.on('error', (error) => this.finish(error));
  }

  async read(count: number, timeoutMs = 5000): Promise<Buffer> {
    await this.waitFor(() => this.buffered.length >= count, `${count} bytes`, timeoutMs);
    const out = this.buffered.subarray(0, count);
    this.buffered = this.buffered.subarray(count);
    return out;
  }

  async readUntil(marker: string, timeoutMs = 5000): Promise<string> {
    await this.waitFor(() => this.buffered.includes(marker), JSON.stringify(marker), timeoutMs);
    const end = this.buffered.indexOf(marker) + marker.length;
    const out = this.buffered.subarray(0, end).toString('latin1');
    this.buffered = this.buffered.subarray(end);
    return out;
  }

  private finish(error: Error): void {
    this.ended ??= error;
    this.wake?.();
  }

  private async waitFor(ready: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      if (this.ended !== undefined) throw new Error(`waiting for ${what}: ${this.ended.message} (had ${this.buffered.length} bytes)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waiting for ${what}: timed out (had ${this.buffered.length} bytes)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }
}

interface LinkReply {
  magic: string;
  size: number;
  error: number;
}

async function sendMainLink(stream: Socket, reader: ByteReader): Promise<LinkReply> {
  stream.write(MAIN_LINK);
  const header = await reader.read(16);
  const size = header.readUInt32LE(12);
  const body = await reader.read(size);
  return { magic: header.subarray(0, 4).toString('latin1'), size, error: body.readUInt32LE(0) };
}

function openTcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function openTls(port: number, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

async function proxyConnect(proxy: Tinyproxy, target: string, authorization?: string): Promise<{ status: string; socket: Socket; reader: ByteReader }> {
  const socket = await openTcp(proxy.port);
  const reader = new ByteReader(socket);
  const auth = authorization === undefined ? '' : `Proxy-Authorization: Basic ${Buffer.from(authorization).toString('base64')}\r\n`;
  socket.write(`CONNECT ${target} HTTP/1.0\r\nHost: ${target}\r\n${auth}\r\n`);
  const head = await reader.readUntil('\r\n\r\n');
  return { status: head.split('\r\n')[0] ?? '', socket, reader };
}

describe.skipIf(binaries.skip)(`fixtures against real QEMU, openssl and tinyproxy${binaries.skip ? ` (skipped: ${binaries.reason})` : ''}`, () => {
  let dir: string;
  let certs: TlsFixtures;
  let plain: SpiceServer;
  let secure: SpiceServer;
  let proxy: Tinyproxy;
  let authProxy: Tinyproxy;
  const sockets: Socket[] = [];
  const track = <T extends Socket>(socket: T): T => {
    sockets.push(socket);
    return socket;
  };

  beforeAll(async () => {
    // In CI a missing program must fail loudly rather than skip.
    if (binaries.missing.length > 0) throw new Error(binaries.reason);
    dir = await mkdtemp(join(tmpdir(), 'fixtures-test-'));
    const started = Date.now();
    certs = await makeTlsFixtures(join(dir, 'tls'));
    const certsMs = Date.now() - started;
    [plain, secure] = await Promise.all([
      startSpiceServer({ password: PASSWORD, socketReaders: 1 }),
      startSpiceServer({ tls: { x509Dir: certs.x509Dir }, tlsChannels: ['main'], smartcard: false }),
    ]);
    const qemuMs = Date.now() - started - certsMs;
    const plainPort = plain.port ?? 0;
    [proxy, authProxy] = await Promise.all([
      startTinyproxy({ connectPorts: [plainPort] }),
      startTinyproxy({ connectPorts: [plainPort], auth: { username: 'spice', password: 'pr0xy' } }),
    ]);
    console.info(`fixtures up: certs ${certsMs} ms, 2 x QEMU ${qemuMs} ms, 2 x tinyproxy ${Date.now() - started - certsMs - qemuMs} ms`);
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all([plain?.stop(), secure?.stop(), proxy?.stop(), authProxy?.stop()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('has every program it needs', () => {
    expect(binaries.missing, binaries.reason).toEqual([]);
  });

  it('QEMU answers a main-channel link with a REDQ link reply', async () => {
    const socket = track(await openTcp(plain.port ?? 0));
    const reply = await sendMainLink(socket, new ByteReader(socket));
    expect(reply).toEqual({ magic: 'REDQ', size: 178 + 4 * 2, error: LINK_ERR_OK });
  });

  it('query-spice over QMP reports the server', async () => {
    expect(await plain.qmp('query-spice')).toMatchObject({ enabled: true, host: '127.0.0.1', port: plain.port, auth: 'spice' });
    const info = await secure.qmp('query-spice');
    expect(info).toMatchObject({ enabled: true, 'tls-port': secure.tlsPort, auth: 'none' });
  });

  it('passes the password through a file, not the command line', async () => {
    const cmdline = await readFile(`/proc/${plain.pid}/cmdline`, 'utf8');
    expect(cmdline).toContain('password-secret=spicepw0');
    expect(cmdline).not.toContain(PASSWORD);
  });

  it('has the SPICE smartcard chardev only when asked', async () => {
    const names = async (server: SpiceServer): Promise<string[]> => {
      const list = await server.qmp('query-chardev');
      return Array.isArray(list) ? list.map((entry: unknown) => String((entry as { label?: unknown }).label)) : [];
    };
    expect(await names(plain)).toContain('charsmartcard0');
    expect(await names(secure)).not.toContain('charsmartcard0');
  });

  it('listens on the socket-chardev reader port', async () => {
    expect(plain.socketReaderPorts).toHaveLength(1);
    track(await openTcp(plain.socketReaderPorts[0] ?? 0));
  });

  it('refuses a plaintext main link when main is a TLS channel', async () => {
    const socket = track(await openTcp(secure.port ?? 0));
    const reply = await sendMainLink(socket, new ByteReader(socket));
    expect(reply).toMatchObject({ magic: 'REDQ', error: LINK_ERR_NEED_SECURED });
  });

  it('completes a TLS handshake with the right CA and links inside it', async () => {
    const socket = track(await openTls(secure.tlsPort ?? 0, certs.caPem));
    expect(socket.authorized).toBe(true);
    expect(socket.getPeerX509Certificate()?.subject.split('\n').join(',')).toBe(certs.hostSubject);
    expect(certs.hostSubject).toBe('C=XX,O=spice-smartcard test,CN=localhost');
    const reply = await sendMainLink(socket, new ByteReader(socket));
    expect(reply).toMatchObject({ magic: 'REDQ', error: LINK_ERR_OK });
  });

  it('fails the TLS handshake with an unrelated CA', async () => {
    // spice-server sends its CA along with the server certificate (OpenSSL builds the chain from ca-cert.pem),
    // so the client sees a self-signed root it does not trust rather than a missing issuer.
    await expect(openTls(secure.tlsPort ?? 0, certs.otherCaPem)).rejects.toMatchObject({
      code: 'SELF_SIGNED_CERT_IN_CHAIN',
    });
  });

  it('tunnels through tinyproxy CONNECT to the SPICE port', async () => {
    const { status, socket, reader } = await proxyConnect(proxy, `127.0.0.1:${plain.port}`);
    track(socket);
    expect(status).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(await sendMainLink(socket, reader)).toMatchObject({ magic: 'REDQ', error: LINK_ERR_OK });
  });

  it('tinyproxy refuses CONNECT to a port not in its list', async () => {
    const { status, socket } = await proxyConnect(proxy, `127.0.0.1:${secure.port}`);
    track(socket);
    expect(status).toMatch(/^HTTP\/1\.[01] 403 /);
  });

  it('tinyproxy with BasicAuth wants credentials', async () => {
    const refused = await proxyConnect(authProxy, `127.0.0.1:${plain.port}`);
    track(refused.socket);
    expect(refused.status).toMatch(/^HTTP\/1\.[01] 407 /);
    // tinyproxy 1.11 answers wrong credentials with 401, not 407: clients must treat both as "proxy auth failed".
    const wrong = await proxyConnect(authProxy, `127.0.0.1:${plain.port}`, 'spice:wrong');
    track(wrong.socket);
    expect(wrong.status).toMatch(/^HTTP\/1\.[01] 401 /);
    const allowed = await proxyConnect(authProxy, `127.0.0.1:${plain.port}`, 'spice:pr0xy');
    track(allowed.socket);
    expect(allowed.status).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(await sendMainLink(allowed.socket, allowed.reader)).toMatchObject({ magic: 'REDQ', error: LINK_ERR_OK });
  });

  it('starts a TLS-only server and cleans up after stop()', async () => {
    const server = await startSpiceServer({ plainPort: false, tls: { x509Dir: certs.x509Dir } });
    try {
      expect(server.port).toBeUndefined();
      const socket = track(await openTls(server.tlsPort ?? 0, certs.caPem));
      expect(await sendMainLink(socket, new ByteReader(socket))).toMatchObject({ magic: 'REDQ', error: LINK_ERR_OK });
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dir)).toBe(false);
    expect(() => process.kill(server.pid ?? 0, 0)).toThrow(/ESRCH/);
  });

  it('reports QEMU start-up failures with QEMU\'s own message', async () => {
    await expect(startSpiceServer({ extraArgs: ['-device', 'no-such-device-model'] }))
      .rejects.toThrow(/QEMU SPICE server did not come up: QEMU exited with status 1[^]*no-such-device-model/);
  });
});

describe('fixture plumbing', () => {
  it('skips for a missing program only outside CI', () => {
    const env = { PATH: '/nonexistent-dir' };
    expect(checkBinaries(['no-such-program-xyz'], env)).toMatchObject({ missing: ['no-such-program-xyz'], skip: true });
    expect(checkBinaries(['no-such-program-xyz'], { ...env, CI: 'true' })).toMatchObject({ skip: false });
    expect(checkBinaries(['sh'], { PATH: '/usr/bin:/bin' })).toMatchObject({ missing: [], skip: false, reason: '' });
  });

  it('gives up waiting for a port within its bound', async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(waitForPort(port, { timeoutMs: 200 })).rejects.toThrow(`nothing accepted TCP connections on 127.0.0.1:${port} within 200 ms`);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
