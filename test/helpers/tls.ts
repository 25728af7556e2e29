import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SERVER_SUBJECT = '/C=XX/O=spice-smartcard test/CN=localhost';

export interface TlsFixtures {
  /** spice-server's x509-dir: ca-cert.pem, server-cert.pem, server-key.pem and nothing secret besides. */
  x509Dir: string;
  caCertPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  caPem: string;
  /** A second, unrelated CA: a client trusting only this one must reject the server. */
  otherCaCertPath: string;
  otherCaPem: string;
  /** The server certificate's subject the way virt-viewer's host-subject writes it. */
  hostSubject: string;
}

/**
 * Creates a throw-away CA, a server certificate for spice-server (CN=localhost, SAN DNS:localhost and
 * IP:127.0.0.1, RSA 2048, PKCS#8 key) and an unrelated second CA, under `dir` (created if needed).
 */
export async function makeTlsFixtures(dir: string): Promise<TlsFixtures> {
  const x509Dir = join(dir, 'x509');
  const otherDir = join(dir, 'other-ca');
  const privateDir = join(dir, 'private');
  await Promise.all([x509Dir, otherDir, privateDir].map((path) => mkdir(path, { recursive: true, mode: 0o700 })));

  const caCertPath = join(x509Dir, 'ca-cert.pem');
  const caKeyPath = join(privateDir, 'ca-key.pem');
  const serverCertPath = join(x509Dir, 'server-cert.pem');
  const serverKeyPath = join(x509Dir, 'server-key.pem');
  const csrPath = join(privateDir, 'server.csr');
  const extPath = join(privateDir, 'server-ext.cnf');
  const otherCaCertPath = join(otherDir, 'ca-cert.pem');

  await makeCa('/C=XX/O=spice-smartcard test/CN=spice-smartcard test CA', caKeyPath, caCertPath);
  await makeCa('/C=XX/O=somebody else/CN=unrelated test CA', join(privateDir, 'other-ca-key.pem'), otherCaCertPath);

  await openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', SERVER_SUBJECT,
    '-keyout', serverKeyPath, '-out', csrPath]);
  await writeFile(extPath, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '',
  ].join('\n'));
  await openssl(['x509', '-req', '-in', csrPath, '-CA', caCertPath, '-CAkey', caKeyPath,
    '-set_serial', `0x${randomSerial()}`, '-days', '3650', '-sha256', '-extfile', extPath, '-out', serverCertPath]);
  await rm(csrPath, { force: true });

  const caPem = await readFile(caCertPath, 'utf8');
  const otherCaPem = await readFile(otherCaCertPath, 'utf8');
  const serverPem = await readFile(serverCertPath, 'utf8');
  // Taken from the certificate itself, so it is right whatever openssl did with the -subj text.
  const hostSubject = new X509Certificate(serverPem).subject.split('\n').join(',');
  return { x509Dir, caCertPath, serverCertPath, serverKeyPath, caPem, otherCaCertPath, otherCaPem, hostSubject };
}

async function makeCa(subject: string, keyPath: string, certPath: string): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650', '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', keyPath, '-out', certPath]);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 60_000 });
  } catch (error) {
    const stderr = typeof error === 'object' && error !== null && 'stderr' in error ? String(error.stderr) : '';
    throw new Error(`openssl ${args[0] ?? ''} failed: ${error instanceof Error ? error.message : String(error)}\n${stderr}`,
      { cause: error });
  }
}

function randomSerial(): string {
  // Positive and non-zero: the top nibble is forced into 1..7.
  const hex = randomBytes(16).toString('hex');
  return `${(1 + (parseInt(hex[0] ?? '0', 16) % 7)).toString(16)}${hex.slice(1)}`;
}
