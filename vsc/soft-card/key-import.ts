// Reading an existing key and certificate for a slot: from a PKCS#12 file (node-forge, which
// reads the AES files OpenSSL 3 writes and the RC2-40 / 3DES files older tools and Windows
// write, and checks the MAC), or from PEM/DER certificate and key files (node:crypto).

import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { describeKey, keyAlgorithmOf } from './algorithms.js';

export type KeyImportErrorKind = 'wrong-password' | 'needs-password' | 'unreadable' | 'no-key' | 'no-certificate' | 'unsupported-key' | 'mismatch';

export class KeyImportError extends Error {
  readonly kind: KeyImportErrorKind;
  constructor(kind: KeyImportErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyImportError';
    this.kind = kind;
  }
}

export interface ImportedIdentity {
  readonly privateKey: KeyObject;
  /** DER certificate of `privateKey`. */
  readonly certificate: Uint8Array;
  /** Other certificates the file held (issuers), DER. Not put on the card. */
  readonly others: readonly Uint8Array[];
}

function binary(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('binary');
}

function derOf(node: forge.asn1.Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(node).getBytes(), 'binary');
}

function spkiOf(key: KeyObject): Buffer {
  return (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'der', type: 'spki' });
}

/** Picks the certificate of `privateKey` and checks the key is one a PIV slot can hold. */
function identityOf(privateKey: KeyObject, certificates: readonly Uint8Array[]): ImportedIdentity {
  if (keyAlgorithmOf(privateKey) === undefined) {
    throw new KeyImportError('unsupported-key', `the key is ${describeKey(privateKey)}; a PIV slot here holds RSA-2048, EC P-256 or EC P-384`);
  }
  const spki = spkiOf(privateKey);
  const own = certificates.find((der) => spkiOf(new X509Certificate(der).publicKey).equals(spki));
  if (own === undefined) {
    throw new KeyImportError(certificates.length === 0 ? 'no-certificate' : 'mismatch', certificates.length === 0 ? 'no certificate found' : 'no certificate matches the private key');
  }
  return { privateKey, certificate: own, others: certificates.filter((der) => der !== own) };
}

/** Reads a PKCS#12 (.p12/.pfx) file holding one private key and its certificate. */
export function readPkcs12(file: Uint8Array, password: string): ImportedIdentity {
  let pfx: forge.pkcs12.Pkcs12Pfx;
  try {
    const asn1 = forge.asn1.fromDer(forge.util.createBuffer(binary(file)));
    pfx = forge.pkcs12.pkcs12FromAsn1(asn1, true, password);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/password/i.test(message)) throw new KeyImportError('wrong-password', 'wrong password for the PKCS#12 file (its MAC or encryption did not check out)', { cause: error });
    throw new KeyImportError('unreadable', `not a PKCS#12 file this tool can read: ${message}`, { cause: error });
  }

  const keys: KeyObject[] = [];
  const certificates: Uint8Array[] = [];
  for (const contents of pfx.safeContents) {
    for (const bag of contents.safeBags) {
      if (bag.type === forge.pki.oids['certBag']) {
        // forge parses RSA certificates and leaves others as ASN.1; both give the same DER.
        certificates.push(bag.cert !== undefined && bag.cert !== null ? derOf(forge.pki.certificateToAsn1(bag.cert)) : derOf(bag.asn1));
      } else if (bag.type === forge.pki.oids['pkcs8ShroudedKeyBag'] || bag.type === forge.pki.oids['keyBag']) {
        const pkcs8 = bag.key !== undefined && bag.key !== null ? derOf(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(bag.key))) : derOf(bag.asn1);
        try {
          keys.push(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }));
        } catch (error) {
          throw new KeyImportError('unsupported-key', 'the PKCS#12 file holds a private key node cannot read', { cause: error });
        } finally {
          pkcs8.fill(0);
        }
      }
    }
  }
  if (keys.length === 0) throw new KeyImportError('no-key', 'the PKCS#12 file holds no private key');
  if (keys.length > 1) throw new KeyImportError('no-key', `the PKCS#12 file holds ${keys.length} private keys; export one identity per file`);
  return identityOf(keys[0] as KeyObject, certificates);
}

/** Certificates from a PEM file (one or more blocks) or a DER file. */
export function readCertificates(file: Uint8Array): Uint8Array[] {
  const text = Buffer.from(file).toString('latin1');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  try {
    if (blocks === null) return [new Uint8Array(new X509Certificate(file).raw)];
    return blocks.map((block) => new Uint8Array(new X509Certificate(block).raw));
  } catch (error) {
    throw new KeyImportError('unreadable', 'not a PEM or DER X.509 certificate', { cause: error });
  }
}

/**
 * A private key from PEM (PKCS#8, PKCS#1 or SEC1, encrypted or not) or DER (PKCS#8, PKCS#1,
 * SEC1). `passphrase` is asked only when the key turns out to be encrypted.
 */
export async function readPrivateKey(file: Uint8Array, passphrase?: () => Promise<string>): Promise<KeyObject> {
  const buffer = Buffer.from(file);
  if (buffer.includes('-----BEGIN')) {
    // PKCS#8 "ENCRYPTED PRIVATE KEY" or a legacy OpenSSL header; node's error codes for a
    // missing passphrase differ between the two, so look at the text instead.
    const encrypted = buffer.includes('ENCRYPTED PRIVATE KEY') || buffer.includes('Proc-Type: 4,ENCRYPTED');
    if (!encrypted) {
      try {
        return createPrivateKey({ key: buffer, format: 'pem' });
      } catch (error) {
        throw new KeyImportError('unreadable', 'not a private key this tool can read', { cause: error });
      }
    }
    if (passphrase === undefined) throw new KeyImportError('needs-password', 'the private key is encrypted and no password was given');
    const secret = await passphrase();
    try {
      return createPrivateKey({ key: buffer, format: 'pem', passphrase: secret });
    } catch (error) {
      throw new KeyImportError('wrong-password', 'wrong password for the private key', { cause: error });
    }
  }
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      return createPrivateKey({ key: buffer, format: 'der', type });
    } catch {
      // try the next encoding
    }
  }
  throw new KeyImportError('unreadable', 'not a private key this tool can read (PEM, or DER PKCS#8 / PKCS#1 / SEC1)');
}

/** A certificate file and a key file that belong together. */
export async function readPemIdentity(certificateFile: Uint8Array, keyFile: Uint8Array, passphrase?: () => Promise<string>): Promise<ImportedIdentity> {
  return identityOf(await readPrivateKey(keyFile, passphrase), readCertificates(certificateFile));
}
