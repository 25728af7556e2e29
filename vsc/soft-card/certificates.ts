// X.509 certificates for soft card keys, self-signed or signed by a CA the guest can be told to
// trust. Node can parse certificates but not make them; @peculiar/x509 builds them on node's
// WebCrypto, for RSA and EC keys alike.

// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { createPublicKey, randomBytes, webcrypto, X509Certificate as NodeX509Certificate, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { keyAlgorithmOf, type SlotName } from './algorithms.js';

export interface CertificateAuthority {
  /** DER certificate of the issuing CA. */
  readonly certificate: Uint8Array;
  readonly privateKey: KeyObject;
}

export interface CertificateOptions {
  /** "CN=Jane Doe, O=Example" */
  readonly subject: string;
  readonly privateKey: KeyObject;
  /** Which slot the key goes into: decides key usage and extended key usage. */
  readonly slot: SlotName;
  readonly days: number;
  /** Absent: self-signed. */
  readonly issuer?: CertificateAuthority;
  readonly now?: Date;
}

const crypto: webcrypto.Crypto = webcrypto;
type ImportParams = webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;

const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_EMAIL_PROTECTION = '1.3.6.1.5.5.7.3.4';
/** Microsoft smart card logon: Windows wants it on the PIV authentication certificate. */
const OID_SMARTCARD_LOGON = '1.3.6.1.4.1.311.20.2.2';

/** The WebCrypto algorithm a key signs certificates with. */
function signingAlgorithm(key: KeyObject): ImportParams {
  const algorithm = keyAlgorithmOf(key);
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  if (algorithm === 'p256' || details?.namedCurve === 'prime256v1') return { name: 'ECDSA', namedCurve: 'P-256' };
  if (algorithm === 'p384' || details?.namedCurve === 'secp384r1') return { name: 'ECDSA', namedCurve: 'P-384' };
  throw new RangeError('certificates can be signed with RSA, EC P-256 or EC P-384 keys only');
}

function signatureParameters(algorithm: ImportParams): webcrypto.Algorithm | webcrypto.EcdsaParams {
  if (algorithm.name === 'ECDSA') return { name: 'ECDSA', hash: (algorithm as webcrypto.EcKeyImportParams).namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  return algorithm;
}

async function importPrivate(key: KeyObject): Promise<{ key: webcrypto.CryptoKey; algorithm: ImportParams }> {
  const algorithm = signingAlgorithm(key);
  const der = key.export({ format: 'der', type: 'pkcs8' });
  try {
    return { key: await crypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']), algorithm };
  } finally {
    der.fill(0);
  }
}

async function importPublic(key: KeyObject): Promise<webcrypto.CryptoKey> {
  const spki = key.type === 'private' ? createPublicKey(key) : key;
  return crypto.subtle.importKey('spki', spki.export({ format: 'der', type: 'spki' }), signingAlgorithm(key), true, ['verify']);
}

function keyUsage(slot: SlotName, key: KeyObject): x509.KeyUsageFlags {
  const rsa = key.asymmetricKeyType === 'rsa';
  const F = x509.KeyUsageFlags;
  switch (slot) {
    case '9a':
      return rsa ? F.digitalSignature | F.keyEncipherment : F.digitalSignature;
    case '9c':
      return F.digitalSignature | F.nonRepudiation;
    case '9d':
      return rsa ? F.keyEncipherment | F.dataEncipherment : F.keyAgreement;
    case '9e':
      return F.digitalSignature;
  }
}

function extendedKeyUsage(slot: SlotName): string[] {
  switch (slot) {
    case '9a':
      return [OID_CLIENT_AUTH, OID_SMARTCARD_LOGON];
    case '9c':
      return [OID_EMAIL_PROTECTION];
    case '9d':
      return [OID_EMAIL_PROTECTION];
    case '9e':
      return [OID_CLIENT_AUTH];
  }
}

/** A positive 16-byte serial (RFC 5280 §4.1.2.2: positive, at most 20 bytes). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** Makes a certificate for `privateKey`'s public key and returns it as DER. */
export async function createCertificate(options: CertificateOptions): Promise<Uint8Array> {
  if (!Number.isInteger(options.days) || options.days < 1 || options.days > 36_500) throw new RangeError('validity must be 1 to 36500 days');
  let subject: x509.Name;
  try {
    subject = new x509.Name(options.subject);
  } catch (error) {
    throw new RangeError(`cannot read the subject "${options.subject}": write it like "CN=Jane Doe, O=Example"`, { cause: error });
  }
  if (subject.toArrayBuffer().byteLength <= 2) throw new RangeError('the subject must not be empty');

  const issuerKey = options.issuer?.privateKey ?? options.privateKey;
  const signer = await importPrivate(issuerKey);
  const publicKey = await importPublic(options.privateKey);
  let issuerName = subject;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(keyUsage(options.slot, options.privateKey), true),
    new x509.ExtendedKeyUsageExtension(extendedKeyUsage(options.slot), false),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
  ];
  if (options.issuer !== undefined) {
    const ca = new NodeX509Certificate(options.issuer.certificate);
    if (!ca.checkPrivateKey(options.issuer.privateKey)) throw new RangeError('the CA key does not belong to the CA certificate');
    const caCertificate = new x509.X509Certificate(options.issuer.certificate);
    // The CA's subject exactly as encoded, so chain building matches it byte for byte.
    issuerName = new x509.Name(caCertificate.subjectName.toArrayBuffer());
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(caCertificate, false, crypto));
  }
  const now = options.now ?? new Date();
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject,
      issuer: issuerName,
      // A minute of slack for guests whose clock runs a little behind the host's.
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + options.days * 86_400_000),
      publicKey,
      signingKey: signer.key,
      signingAlgorithm: signatureParameters(signer.algorithm),
      extensions,
    },
    crypto,
  );
  return new Uint8Array(certificate.rawData);
}
