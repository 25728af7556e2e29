// virt-viewer's `host-subject` check: instead of matching the host name, the server certificate's
// subject must equal a given "C=XX,O=Org,CN=name" string. Proxmox needs it because its .vv "host"
// is an opaque proxy ticket, not a name the certificate could carry.

export type Rdn = [key: string, value: string];

/** Splits "C=XX, O=Org\, Inc.,CN=host" into key/value pairs; backslash escapes a separator. */
export function parseHostSubject(text: string): Rdn[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) {
      current += text[i + 1];
      i++;
    } else if (c === ',' || c === '/') {
      if (c === '/' && current === '' && parts.length === 0) continue; // OpenSSL's "/C=XX/O=..." form
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  const rdns: Rdn[] = [];
  for (const part of parts) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) throw new Error(`host-subject: "${trimmed}" is not KEY=VALUE`);
    rdns.push([trimmed.slice(0, eq).trim().toUpperCase(), trimmed.slice(eq + 1).trim()]);
  }
  if (rdns.length === 0) throw new Error('host-subject is empty');
  return rdns;
}

/** Node's peer certificate subject: each key maps to one value or, for repeated RDNs, an array. */
export type CertSubject = Record<string, string | string[] | undefined>;

export function subjectToRdns(subject: CertSubject): Rdn[] {
  const out: Rdn[] = [];
  for (const [key, value] of Object.entries(subject)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push([key.toUpperCase(), v]);
  }
  return out;
}

export function formatRdns(rdns: readonly Rdn[]): string {
  return rdns.map(([k, v]) => `${k}=${v.replace(/([,\\])/g, '\\$1')}`).join(',');
}

/** Same attributes with the same values, in any order (Node does not keep the DER order reliably). */
export function subjectMatches(expected: readonly Rdn[], actual: readonly Rdn[]): boolean {
  if (expected.length !== actual.length) return false;
  const key = (r: Rdn): string => `${r[0]}=${r[1]}`;
  const remaining = actual.map(key).sort();
  const wanted = expected.map(key).sort();
  return remaining.every((v, i) => v === wanted[i]);
}
