// `probe` against a real spice-server (QEMU without a guest), over every transport users meet.
import { mkdtemp, rm, writeFile, access } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, runCli, type CliResult } from '../helpers/cli.js';
import { checkBinaries } from '../helpers/process.js';
import { startSpiceServer, type SpiceServer } from '../helpers/qemu.js';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy.js';
import { makeTlsFixtures, type TlsFixtures } from '../helpers/tls.js';

const binaries = checkBinaries(['qemu-system-x86_64', 'tinyproxy', 'openssl', 'script']);

interface ProbeJson {
  channels: { type: number; id: number; name: string }[];
  smartcard: boolean;
  smartcardLink: string;
  secure: boolean;
  smartcardSecure?: boolean;
  problem?: string;
  error?: { kind: string; message: string };
}

function json(r: CliResult): ProbeJson {
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ProbeJson;
}

describe.skipIf(binaries.skip)(`probe against QEMU's spice-server ${binaries.reason}`, () => {
  let dir: string;
  let tls: TlsFixtures;
  const servers: SpiceServer[] = [];
  let open: SpiceServer; // no password, plain only
  let locked: SpiceServer; // password "s3cret"
  let tlsOnly: SpiceServer;
  let mainNeedsTls: SpiceServer; // plain + TLS, main channel TLS-only
  let smartcardNeedsTls: SpiceServer; // plain + TLS, smartcard channel TLS-only
  let noCard: SpiceServer;
  let proxy: Tinyproxy;

  async function server(options: Parameters<typeof startSpiceServer>[0]): Promise<SpiceServer> {
    const s = await startSpiceServer(options);
    servers.push(s);
    return s;
  }

  async function file(name: string, content: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, content, { mode: 0o600 });
    return path;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'probe-test-'));
    tls = await makeTlsFixtures(join(dir, 'tls'));
    [open, locked, tlsOnly, mainNeedsTls, smartcardNeedsTls, noCard] = await Promise.all([
      server({}),
      server({ password: 's3cret' }),
      server({ plainPort: false, tls: { x509Dir: tls.x509Dir } }),
      server({ tls: { x509Dir: tls.x509Dir }, tlsChannels: ['main'] }),
      server({ tls: { x509Dir: tls.x509Dir }, tlsChannels: ['smartcard'] }),
      server({ smartcard: false }),
    ]);
    proxy = await startTinyproxy({ connectPorts: [open.port!, tlsOnly.tlsPort!] });
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await proxy?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports the smartcard channel of a VM without a password', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${open.port}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Channels: .*smartcard/);
    expect(r.stdout).toMatch(/Smartcard: offered, and the smartcard channel links/);
    expect(r.stderr).toMatch(/a viewer connected to this VM is disconnected/);
  });

  it('prints one JSON object with --json', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${open.port}`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = json(r);
    expect(j.smartcard).toBe(true);
    expect(j.smartcardLink).toBe('linked');
    expect(j.channels).toContainEqual({ type: 8, id: 0, name: 'smartcard' });
    expect(j.secure).toBe(false);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('links with the right password from a file or the environment', async () => {
    const pw = await file('pw', 's3cret\n');
    const fromFile = await runCli(['probe', `spice://127.0.0.1:${locked.port}`, '--password-file', pw, '--json']);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(json(fromFile).smartcardLink).toBe('linked');
    const fromEnv = await runCli(['probe', `spice://127.0.0.1:${locked.port}`], { env: { SPICE_PASSWORD: 's3cret' } });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
  });

  it('exits 4 with a clear message on a wrong password, and never prints it', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${locked.port}`], { env: { SPICE_PASSWORD: 'wrong-pw-xyz' } });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/refused the password .*PERMISSION_DENIED/);
    expect(r.stdout + r.stderr).not.toContain('wrong-pw-xyz');
  });

  it('exits 4 and says a password is needed when none was given', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${locked.port}`]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/No password was given/);
  });

  it('asks on a terminal when the server wants a password, without echoing it', async () => {
    // `script` gives the CLI a pseudo-terminal; the answers are typed after the prompts appear.
    const command = `${process.execPath} ${CLI_PATH} probe spice://127.0.0.1:${locked.port}`;
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, SPICE_PASSWORD: undefined } });
      let out = '';
      let answered = 0;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const prompts = (out.match(/Password for|Wrong password, try again/g) ?? []).length;
        if (prompts > answered) {
          child.stdin.write(answered === 0 ? 'not-it\n' : 's3cret\n');
          answered++;
        }
      });
      child.on('close', (code) => resolve({ code, out }));
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/Wrong password, try again/);
    expect(r.out).toMatch(/smartcard channel links/);
    expect(r.out).not.toContain('s3cret');
    expect(r.out).not.toContain('not-it');
  });

  it('refuses a password in a URI on the command line (exit 2)', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${locked.port}?password=s3cret`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--password-file/);
    expect(r.stderr).not.toContain('s3cret');
  });

  it('links over TLS with the right CA', async () => {
    const r = await runCli(['probe', `spice+tls://localhost:${tlsOnly.tlsPort}`, '--ca-file', tls.caCertPath, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ secure: true, smartcard: true, smartcardLink: 'linked', smartcardSecure: true });
  });

  it('fails with exit 3 when the certificate is not signed by the given CA', async () => {
    const r = await runCli(['probe', `spice+tls://localhost:${tlsOnly.tlsPort}`, '--ca-file', tls.otherCaCertPath]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/TLS certificate of localhost:\d+ \(TLS\) was not accepted/);
  });

  it('checks host-subject instead of the host name, like virt-viewer', async () => {
    const ok = await runCli(['probe', `spice+tls://127.0.0.1:${tlsOnly.tlsPort}`, '--ca-file', tls.caCertPath, '--host-subject', tls.hostSubject]);
    expect(ok.code, ok.stderr).toBe(0);
    const wrong = await runCli(['probe', `spice+tls://127.0.0.1:${tlsOnly.tlsPort}`, '--ca-file', tls.caCertPath, '--host-subject', 'C=XX,O=someone else,CN=localhost']);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/subject "C=XX,O=spice-smartcard test,CN=localhost" is not the expected host-subject/);
  });

  it('moves to the TLS port when the plain port refuses the main channel', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${mainNeedsTls.port}?tls-port=${mainNeedsTls.tlsPort}`, '--ca-file', tls.caCertPath, '--host-subject', tls.hostSubject, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).secure).toBe(true);
  });

  it('exits 3 and names the missing TLS port when the plain port refuses and none is known', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${mainNeedsTls.port}`]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/requires TLS for the main channel \(NEED_SECURED\).*tls-port/);
  });

  it('moves only the smartcard channel to TLS when only it is secured', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${smartcardNeedsTls.port}?tls-port=${smartcardNeedsTls.tlsPort}`, '--ca-file', tls.caCertPath, '--host-subject', tls.hostSubject, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ secure: false, smartcardLink: 'linked', smartcardSecure: true });
  });

  it('links over a Unix socket (spice+unix://)', async () => {
    const unix = await server({ unixSocket: true });
    const r = await runCli(['probe', `spice+unix://${unix.unixSocket}`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ smartcard: true, smartcardLink: 'linked' });
  });

  it("speaks WebSocket straight to spice-server's plain and TLS ports", async () => {
    const plain = await runCli(['probe', `ws://127.0.0.1:${open.port}/`, '--json']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(json(plain).smartcardLink).toBe('linked');
    const secure = await runCli(['probe', `wss://localhost:${tlsOnly.tlsPort}/`, '--ca-file', tls.caCertPath, '--json']);
    expect(secure.code, secure.stderr).toBe(0);
    expect(json(secure).smartcardLink).toBe('linked');
  });

  it('goes through an HTTP CONNECT proxy from a .vv file, plain and with TLS inside the tunnel', async () => {
    const plain = await file('proxy.vv', `[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=${open.port}\nproxy=${proxy.url}\n`);
    const r = await runCli(['probe', plain, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).smartcardLink).toBe('linked');
    const ca = tls.caPem.trim().replaceAll('\n', '\\n');
    const secure = await file(
      'proxy-tls.vv',
      `[virt-viewer]\ntype=spice\nhost=127.0.0.1\ntls-port=${tlsOnly.tlsPort}\nproxy=${proxy.url}\nca=${ca}\nhost-subject=${tls.hostSubject}\ndelete-this-file=1\n`,
    );
    const s = await runCli(['probe', secure, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(json(s)).toMatchObject({ secure: true, smartcardLink: 'linked' });
    await expect(access(secure)).rejects.toThrow();
    const log = await proxy.log();
    expect(log).toMatch(new RegExp(`127\\.0\\.0\\.1:${tlsOnly.tlsPort}`));
  });

  it('exits 3 with the proxy refusal when the proxy forbids the port', async () => {
    const vv = await file('forbidden.vv', `[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=${locked.port}\nproxy=${proxy.url}\n`);
    const r = await runCli(['probe', vv]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/refused the tunnel .* HTTP 403/);
  });

  it('exits 5 and explains the domain XML when the VM has no smartcard device', async () => {
    const r = await runCli(['probe', `spice://127.0.0.1:${noCard.port}`]);
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/Smartcard: not offered/);
    expect(r.stderr).toContain("<smartcard mode='passthrough' type='spicevmc'/>");
    expect(r.stderr).toMatch(/Proxmox/);
    const j = await runCli(['probe', `spice://127.0.0.1:${noCard.port}`, '--json']);
    expect(j.code).toBe(5);
    expect(json(j).smartcard).toBe(false);
  });

  it('exits 3 when nothing listens', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const r = await runCli(['probe', `spice://127.0.0.1:${port}`]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/connection refused/);
  });

  it.each([
    ['before answering', (socket: net.Socket) => socket.destroy(), /closed the connection before answering/],
    ['in the middle of the link reply', (socket: net.Socket) => socket.end(Buffer.from('REDQ\x02\x00\x00\x00\x02\x00\x00\x00\xb6\x00\x00\x00\x00\x00', 'latin1')), /middle of the link reply/],
    ['with something that is not SPICE', (socket: net.Socket) => socket.end('RFB 003.008\n'), /VNC server/],
  ])('exits 3 when the server drops the connection %s', async (_what, behave, message) => {
    const server = net.createServer((socket) => socket.once('data', () => behave(socket)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const r = await runCli(['probe', `spice://127.0.0.1:${(server.address() as net.AddressInfo).port}`]);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(message);
    } finally {
      server.close();
    }
  });
});
