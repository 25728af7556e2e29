// PKCS#12 and PEM import, with files made by OpenSSL the way users make them.
import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyImportError, readPemIdentity, readPkcs12, readPrivateKey } from '../../vsc/soft-card/key-import.js';

let dir: string;
const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'key-import-'));
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa.key', '-out', 'rsa.crt', '-subj', '/CN=RSA User', '-days', '5');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'p256.key', '-out', 'p256.crt', '-subj', '/CN=P256 User', '-days', '5');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', 'p384.key', '-out', 'p384.crt', '-subj', '/CN=P384 User', '-days', '5');
  openssl('req', '-x509', '-newkey', 'rsa:1024', '-nodes', '-keyout', 'rsa1024.key', '-out', 'rsa1024.crt', '-subj', '/CN=Small', '-days', '5');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=Issuer', '-days', '5');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const file = (name: string): Promise<Buffer> => readFile(join(dir, name));
const derOf = async (name: string): Promise<Buffer> => new X509Certificate(await file(name)).raw;

/** RC2-40 certificates and a 3DES key, as Windows and OpenSSL 1.x export by default. */
async function legacyP12(key: string, crt: string, out: string): Promise<void> {
  try {
    openssl('pkcs12', '-export', '-legacy', '-in', crt, '-inkey', key, '-out', out, '-passout', 'pass:s3cret');
  } catch {
    // No legacy provider in this OpenSSL: make the same encodings with node-forge (RSA keys only).
    const p12 = forge.pkcs12.toPkcs12Asn1(forge.pki.privateKeyFromPem((await file(key)).toString()), [forge.pki.certificateFromPem((await file(crt)).toString())], 's3cret', { algorithm: '3des' });
    await writeFile(join(dir, out), Buffer.from(forge.asn1.toDer(p12).getBytes(), 'binary'));
  }
}

describe('PKCS#12 import', () => {
  it.each([
    ['OpenSSL 3 default (AES-256, PBKDF2, SHA-256 MAC)', 'rsa', []],
    ['OpenSSL 3 default, EC P-256', 'p256', []],
    ['OpenSSL 3 default, EC P-384', 'p384', []],
    ['3DES for key and certificate, SHA-1 MAC', 'p256', ['-certpbe', 'PBE-SHA1-3DES', '-keypbe', 'PBE-SHA1-3DES', '-macalg', 'sha1']],
    ['3DES, RSA', 'rsa', ['-certpbe', 'PBE-SHA1-3DES', '-keypbe', 'PBE-SHA1-3DES', '-macalg', 'sha1']],
    ['with the issuer certificate', 'rsa', ['-certfile', 'ca.crt']],
  ] as const)('%s', async (_name, base, extra) => {
    const out = `${base}-${extra.length}-${Math.random().toString(36).slice(2)}.p12`;
    openssl('pkcs12', '-export', '-in', `${base}.crt`, '-inkey', `${base}.key`, '-out', out, '-passout', 'pass:s3cret', ...extra);
    const identity = readPkcs12(await file(out), 's3cret');
    expect(Buffer.from(identity.certificate).equals(await derOf(`${base}.crt`))).toBe(true);
    const spki = createPublicKey(identity.privateKey).export({ format: 'der', type: 'spki' });
    expect(spki.equals(new X509Certificate(await file(`${base}.crt`)).publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    expect(identity.others.length).toBe((extra as readonly string[]).includes('-certfile') ? 1 : 0);
  });

  it('reads legacy RC2-40/3DES files', async () => {
    await legacyP12('rsa.key', 'rsa.crt', 'legacy.p12');
    const identity = readPkcs12(await file('legacy.p12'), 's3cret');
    expect(Buffer.from(identity.certificate).equals(await derOf('rsa.crt'))).toBe(true);
  });

  it('says the password is wrong, for every encoding', async () => {
    await legacyP12('rsa.key', 'rsa.crt', 'legacy2.p12');
    openssl('pkcs12', '-export', '-in', 'rsa.crt', '-inkey', 'rsa.key', '-out', 'aes.p12', '-passout', 'pass:s3cret');
    for (const name of ['legacy2.p12', 'aes.p12']) {
      let caught: unknown;
      try {
        readPkcs12(await file(name), 'wrong');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(KeyImportError);
      expect((caught as KeyImportError).kind).toBe('wrong-password');
    }
  });

  it('refuses what is not a PKCS#12 file, and keys a slot cannot hold', async () => {
    expect(() => readPkcs12(Buffer.from('hello'), 'x')).toThrow(KeyImportError);
    openssl('pkcs12', '-export', '-in', 'rsa1024.crt', '-inkey', 'rsa1024.key', '-out', 'small.p12', '-passout', 'pass:x');
    expect(() => readPkcs12(readFileSync(join(dir, 'small.p12')), 'x')).toThrow(/RSA-1024/);
    openssl('pkcs12', '-export', '-nocerts', '-inkey', 'rsa.key', '-out', 'nocert.p12', '-passout', 'pass:x');
    expect(() => readPkcs12(readFileSync(join(dir, 'nocert.p12')), 'x')).toThrow(/no certificate/);
  });
});

describe('PEM import', () => {
  it.each(['rsa', 'p256', 'p384'])('reads %s certificate and key files', async (base) => {
    const identity = await readPemIdentity(await file(`${base}.crt`), await file(`${base}.key`));
    expect(Buffer.from(identity.certificate).equals(await derOf(`${base}.crt`))).toBe(true);
  });

  it('reads PKCS#1, SEC1 and DER keys', async () => {
    openssl('pkey', '-in', 'rsa.key', '-traditional', '-out', 'rsa-pkcs1.key');
    openssl('ec', '-in', 'p256.key', '-out', 'p256-sec1.key');
    openssl('pkey', '-in', 'p384.key', '-outform', 'DER', '-out', 'p384.der');
    openssl('x509', '-in', 'p384.crt', '-outform', 'DER', '-out', 'p384.cer');
    expect((await readPrivateKey(await file('rsa-pkcs1.key'))).asymmetricKeyType).toBe('rsa');
    expect((await readPrivateKey(await file('p256-sec1.key'))).asymmetricKeyType).toBe('ec');
    const identity = await readPemIdentity(await file('p384.cer'), await file('p384.der'));
    expect(identity.privateKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
  });

  it('asks for the password of an encrypted key only when needed', async () => {
    openssl('pkey', '-in', 'p256.key', '-aes256', '-passout', 'pass:k3y', '-out', 'p256-enc.key');
    let asked = 0;
    const identity = await readPemIdentity(await file('p256.crt'), await file('p256-enc.key'), () => {
      asked += 1;
      return Promise.resolve('k3y');
    });
    expect(asked).toBe(1);
    expect(identity.privateKey.type).toBe('private');
    await expect(readPemIdentity(await file('p256.crt'), await file('p256-enc.key'), () => Promise.resolve('nope'))).rejects.toMatchObject({ kind: 'wrong-password' });
    await expect(readPemIdentity(await file('p256.crt'), await file('p256-enc.key'))).rejects.toMatchObject({ kind: 'needs-password' });
    // The traditional OpenSSL form (Proc-Type: 4,ENCRYPTED) too.
    openssl('rsa', '-in', 'rsa.key', '-aes256', '-traditional', '-passout', 'pass:k3y', '-out', 'rsa-enc.key');
    expect((await readFile(join(dir, 'rsa-enc.key'), 'utf8')).includes('Proc-Type: 4,ENCRYPTED')).toBe(true);
    const rsa = await readPemIdentity(await file('rsa.crt'), await file('rsa-enc.key'), () => Promise.resolve('k3y'));
    expect(rsa.privateKey.asymmetricKeyType).toBe('rsa');
  });

  it('refuses a key that does not match the certificate', async () => {
    await expect(readPemIdentity(await file('rsa.crt'), await file('ca.key'))).rejects.toMatchObject({ kind: 'mismatch' });
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' });
    await expect(readPemIdentity(await file('rsa.crt'), Buffer.from(ed))).rejects.toMatchObject({ kind: 'unsupported-key' });
  });
});
