import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/exit-codes.js';
import { resolveConnection } from '../../src/connection-spec.js';

describe('resolveConnection', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spec-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes the password from --password-file first, then SPICE_PASSWORD, then the .vv file', async () => {
    const vv = join(dir, 'a.vv');
    await writeFile(vv, '[virt-viewer]\ntype=spice\nhost=h\nport=5900\npassword=fromvv\n');
    const pwFile = join(dir, 'pw');
    await writeFile(pwFile, 'fromfile\n');
    const a = await resolveConnection({ target: vv, env: { SPICE_PASSWORD: 'fromenv' }, passwordFile: pwFile });
    expect([a.password, a.passwordSource]).toEqual(['fromfile', 'password-file']);
    const b = await resolveConnection({ target: vv, env: { SPICE_PASSWORD: 'fromenv' } });
    expect([b.password, b.passwordSource]).toEqual(['fromenv', 'environment']);
    const c = await resolveConnection({ target: vv, env: {} });
    expect([c.password, c.passwordSource]).toEqual(['fromvv', 'vv-file']);
    const d = await resolveConnection({ target: 'spice://h:5900', env: {} });
    expect([d.password, d.passwordSource]).toEqual(['', 'none']);
  });

  it('refuses a password in a command-line URI without echoing it', async () => {
    await expect(resolveConnection({ target: 'spice://h:5900?password=topsecret', env: {} })).rejects.toThrow(UsageError);
    await expect(resolveConnection({ target: 'spice://h:5900?password=topsecret', env: {} })).rejects.not.toThrow(/topsecret/);
  });

  it('turns .vv errors and unreadable files into usage errors', async () => {
    await expect(resolveConnection({ target: join(dir, 'missing.vv'), env: {} })).rejects.toThrow(UsageError);
    await expect(resolveConnection({ target: 'spice://h:5900', env: {}, passwordFile: join(dir, 'nope') })).rejects.toThrow(/Cannot read the password file/);
    await expect(resolveConnection({ target: 'spice://h:5900', env: { SPICE_PASSWORD: 'x'.repeat(61) } })).rejects.toThrow(/at most 60 bytes/);
  });

  it('sends every channel to TLS when only a TLS port is known, and honours secure-channels', async () => {
    const tlsOnly = await resolveConnection({ target: 'spice+tls://h:5901', env: {} });
    expect(tlsOnly.secureChannels).toBe('all');
    const vv = join(dir, 'b.vv');
    await writeFile(vv, '[virt-viewer]\ntype=spice\nhost=h\nport=5900\ntls-port=5901\nsecure-channels=main;smartcard\n');
    const some = await resolveConnection({ target: vv, env: {} });
    expect(some.secureChannels).toEqual(new Set([1, 8]));
    expect(some.plan).toMatchObject({ host: 'h', port: 5900, tlsPort: 5901 });
  });

  it('lets --ca-file and --host-subject override the file', async () => {
    const ca = join(dir, 'ca.pem');
    await writeFile(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const s = await resolveConnection({ target: 'spice+tls://h:5901', env: {}, caFile: ca, hostSubject: 'CN=h' });
    expect(s.plan.tls).toEqual({ ca: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', hostSubject: 'CN=h' });
  });
});
