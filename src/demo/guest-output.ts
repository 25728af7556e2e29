// Reading what OpenSC and OpenSSL print in the guest. Pure functions over their text output
// (OpenSC 0.23, OpenSSL 3), so the demo's checks can say what the guest saw in a few words.

export interface ListedReader {
  index: number;
  card: boolean;
  name: string;
}

/** `opensc-tool --list-readers`: "Nr.  Card  Features  Name" rows. */
export function parseReaderList(text: string): ListedReader[] {
  const readers: ListedReader[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(Yes|No)\s+(?:PIN pad\s+)?(.+?)\s*$/.exec(line);
    if (m) readers.push({ index: Number(m[1]), card: m[2] === 'Yes', name: m[3] ?? '' });
  }
  return readers;
}

/** `opensc-tool --atr`: the first "3b:0b:80:..." line, as lowercase hex without separators. */
export function parseAtrLine(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (/^[0-9a-f]{2}(:[0-9a-f]{2})+$/i.test(t)) return t.replace(/:/g, '').toLowerCase();
  }
  return undefined;
}

export interface ListedCertificate {
  /** The PKCS#15 object label, e.g. "Certificate for PIV Authentication". */
  label: string;
  /** The PKCS#15 ID (hex), what pkcs11-tool --id takes. */
  id: string;
}

/** `pkcs15-tool --list-certificates`: "X.509 Certificate [LABEL]" blocks with an "ID : 01" line. */
export function parseCertificateList(text: string): ListedCertificate[] {
  const certificates: ListedCertificate[] = [];
  let label: string | undefined;
  for (const line of text.split('\n')) {
    const head = /^X\.509 Certificate \[(.*)\]\s*$/.exec(line);
    if (head) {
      label = head[1] ?? '';
      continue;
    }
    const id = /^\s+ID\s+:\s+([0-9a-fA-F]+)\s*$/.exec(line);
    if (id && label !== undefined) {
      certificates.push({ label, id: (id[1] ?? '').toLowerCase() });
      label = undefined;
    }
  }
  return certificates;
}

export type PublicKeyKind = { kind: 'rsa'; bits: number } | { kind: 'ec'; bits: number } | { kind: 'other'; name: string };

/** `openssl x509 -noout -text`: the subject public key's algorithm and size. */
export function parsePublicKey(text: string): PublicKeyKind | undefined {
  const algorithm = /Public Key Algorithm:\s*(\S+)/.exec(text)?.[1];
  if (algorithm === undefined) return undefined;
  const bits = Number(/Public-Key:\s*\((\d+) bit\)/.exec(text)?.[1] ?? NaN);
  if (algorithm === 'rsaEncryption' && Number.isFinite(bits)) return { kind: 'rsa', bits };
  if (algorithm === 'id-ecPublicKey' && Number.isFinite(bits)) return { kind: 'ec', bits };
  return { kind: 'other', name: algorithm };
}

/** `openssl x509 -noout -subject`: "subject=CN = Alice, O = Example" → "CN=Alice, O=Example". */
export function parseSubject(text: string): string | undefined {
  const raw = /^subject=\s*(.*)$/m.exec(text)?.[1];
  return raw?.replace(/\s*=\s*/g, '=').trim();
}

export interface SignatureRecipe {
  /** pkcs11-tool --mechanism */
  mechanism: string;
  /** Extra pkcs11-tool arguments: ECDSA signatures in the DER form openssl verifies. */
  extraArgs: string;
  /** openssl dgst digest option. */
  digest: string;
  /** For people: "RSA-2048", "EC P-256". */
  keyLabel: string;
}

/** How to make and check a signature with a key of this kind, or undefined when the demo has no recipe. */
export function signatureRecipe(key: PublicKeyKind): SignatureRecipe | undefined {
  if (key.kind === 'rsa') return { mechanism: 'SHA256-RSA-PKCS', extraArgs: '', digest: '-sha256', keyLabel: `RSA-${key.bits}` };
  if (key.kind === 'ec' && key.bits === 256) return { mechanism: 'ECDSA-SHA256', extraArgs: '--signature-format openssl', digest: '-sha256', keyLabel: 'EC P-256' };
  if (key.kind === 'ec' && key.bits === 384) return { mechanism: 'ECDSA-SHA384', extraArgs: '--signature-format openssl', digest: '-sha384', keyLabel: 'EC P-384' };
  return undefined;
}

/** The last meaningful line of a tool's error output, for a one-line reason. */
export function lastErrorLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^Using (reader|slot)/.test(l) && l !== 'Aborting.');
  return lines.at(-1) ?? '(no output)';
}
