// What the guest's own software sees of the forwarded card, each as one check: its reader, the
// card's ATR, its certificates, and a signature made and verified in the guest. Every check runs
// the same commands a user would type in the VM, and keeps them for the report.
import {
  lastErrorLine,
  parseAtrLine,
  parseCertificateList,
  parsePublicKey,
  parseReaderList,
  parseSubject,
  signatureRecipe,
  type PublicKeyKind,
} from './guest-output.js';

export type CheckStatus = 'ok' | 'failed' | 'skipped';

export interface DemoCheck {
  id: 'reader' | 'card' | 'certificates' | 'signature' | 'removal';
  title: string;
  status: CheckStatus;
  /** One line: what was seen, or why it failed. */
  summary: string;
  /** Further lines (one per certificate, the output that explains a failure). */
  details: string[];
  /** The commands run in the guest, as shown to the user (PINs of real cards masked). */
  commands: string[];
  ms: number;
}

/** The part of the VM the checks need: running a shell command in the guest. */
export interface GuestShell {
  run(cmd: string, options?: { timeoutMs?: number }): Promise<{ rc: number; stdout: string; stderr: string }>;
}

export interface CertificateSeen {
  id: string;
  label: string;
  subject: string | undefined;
  key: PublicKeyKind | undefined;
}

const TOOL_TIMEOUT_MS = 60_000;

function check(id: DemoCheck['id'], title: string, started: number, fields: Pick<DemoCheck, 'status' | 'summary' | 'commands'> & Partial<DemoCheck>): DemoCheck {
  return { id, title, details: [], ...fields, ms: Date.now() - started };
}

/** The guest's pcscd lists the reader, with a card in it. */
export async function checkReader(shell: GuestShell): Promise<DemoCheck> {
  const started = Date.now();
  const command = 'opensc-tool --list-readers';
  const r = await shell.run(command, { timeoutMs: TOOL_TIMEOUT_MS });
  const readers = parseReaderList(r.stdout);
  const withCard = readers.find((reader) => reader.card);
  if (withCard) return check('reader', 'reader', started, { status: 'ok', summary: `${withCard.name}, card present`, commands: [command] });
  const summary = readers.length === 0 ? `no reader listed (${lastErrorLine(r.stderr || r.stdout)})` : `${readers.map((x) => x.name).join(', ')}: no card in it`;
  return check('reader', 'reader', started, { status: 'failed', summary, commands: [command] });
}

/** The guest reads the card's ATR, and it is the one the bridge sent. */
export async function checkAtr(shell: GuestShell, sentAtr: string | undefined): Promise<DemoCheck> {
  const started = Date.now();
  const command = 'opensc-tool --atr';
  const r = await shell.run(command, { timeoutMs: TOOL_TIMEOUT_MS });
  const atr = parseAtrLine(r.stdout);
  const shown = (hex: string): string => hex.replace(/(..)(?!$)/g, '$1:');
  if (atr === undefined) return check('card', 'card ATR', started, { status: 'failed', summary: `no ATR read (${lastErrorLine(r.stderr || r.stdout)})`, commands: [command] });
  const sent = sentAtr?.toLowerCase();
  if (sent !== undefined && sent !== atr) {
    return check('card', 'card ATR', started, { status: 'failed', summary: `${shown(atr)}, but the bridge sent ${shown(sent)}`, commands: [command] });
  }
  return check('card', 'card ATR', started, { status: 'ok', summary: `${shown(atr)}${sent !== undefined ? ', the ATR the bridge sent' : ''}`, commands: [command] });
}

/** The guest's OpenSC lists the card's certificates; each is read back for its subject and key. */
export async function checkCertificates(shell: GuestShell): Promise<{ check: DemoCheck; certificates: CertificateSeen[] }> {
  const started = Date.now();
  const command = 'pkcs15-tool --list-certificates';
  const r = await shell.run(command, { timeoutMs: TOOL_TIMEOUT_MS });
  const listed = parseCertificateList(r.stdout);
  if (listed.length === 0) {
    const why = r.rc === 0 ? 'the card holds no certificate OpenSC can list' : lastErrorLine(r.stderr || r.stdout);
    return { check: check('certificates', 'certificates', started, { status: 'failed', summary: why, commands: [command] }), certificates: [] };
  }
  const certificates: CertificateSeen[] = [];
  for (const c of listed) {
    const read = await shell.run(`pkcs15-tool --read-certificate ${c.id} > /tmp/cert-${c.id}.pem && openssl x509 -in /tmp/cert-${c.id}.pem -noout -subject -text`, { timeoutMs: TOOL_TIMEOUT_MS });
    certificates.push({ id: c.id, label: c.label, subject: parseSubject(read.stdout), key: parsePublicKey(read.stdout) });
  }
  const details = certificates.map((c) => `${c.id}  ${c.label}: ${c.subject ?? '(subject unreadable)'}${c.key ? ` (${keyText(c.key)})` : ''}`);
  const n = certificates.length;
  return {
    check: check('certificates', 'certificates', started, { status: 'ok', summary: `${n} certificate${n === 1 ? '' : 's'}`, details, commands: [command, 'pkcs15-tool --read-certificate ID | openssl x509 -noout -subject -text'] }),
    certificates,
  };
}

function keyText(key: PublicKeyKind): string {
  if (key.kind === 'rsa') return `RSA-${key.bits}`;
  if (key.kind === 'ec') return `EC ${key.bits} bit`;
  return key.name;
}

export interface SignatureOptions {
  /** undefined: no PIN was given, so the check is skipped (a guessed PIN would cost a try). */
  pin: string | undefined;
  /** Show the PIN in the commands (the demo card's PIN is public; a real card's never is). */
  showPin: boolean;
}

/** Logs in with the PIN, signs with the first certificate's key in the guest, verifies with openssl in the guest. */
export async function checkSignature(shell: GuestShell, certificates: readonly CertificateSeen[], options: SignatureOptions): Promise<DemoCheck> {
  const started = Date.now();
  const skip = (summary: string): DemoCheck => check('signature', 'signature', started, { status: 'skipped', summary, commands: [] });
  const cert = certificates.find((c) => c.key !== undefined && signatureRecipe(c.key) !== undefined);
  if (cert === undefined || cert.key === undefined) return skip('no certificate with an RSA or P-256/P-384 key to sign with');
  const recipe = signatureRecipe(cert.key);
  if (recipe === undefined) return skip('no usable key');
  if (options.pin === undefined) return skip('no PIN given (set SPICE_SMARTCARD_PIN, or run on a terminal to be asked)');
  const sign = (pin: string): string =>
    `pkcs11-tool --login --pin ${pin} --sign --id ${cert.id} --mechanism ${recipe.mechanism}${recipe.extraArgs ? ` ${recipe.extraArgs}` : ''} -i /tmp/data -o /tmp/sig`;
  const verify = [`openssl x509 -in /tmp/cert-${cert.id}.pem -pubkey -noout > /tmp/pub.pem`, `openssl dgst ${recipe.digest} -verify /tmp/pub.pem -signature /tmp/sig /tmp/data`];
  const script = ['echo "signed in the VM by spice-smartcard demo" > /tmp/data', sign(`'${options.pin.replace(/'/g, `'\\''`)}'`), ...verify].join(' && ');
  const r = await shell.run(script, { timeoutMs: 2 * TOOL_TIMEOUT_MS });
  const commands = [sign(options.showPin ? options.pin : '******'), ...verify];
  if (r.rc === 0 && /Verified OK/.test(r.stdout)) {
    return check('signature', 'signature', started, {
      status: 'ok',
      summary: `made in the VM with key ${cert.id} (${recipe.keyLabel}, ${recipe.mechanism}) after PIN login; openssl in the VM: Verified OK`,
      commands,
    });
  }
  return check('signature', 'signature', started, { status: 'failed', summary: lastErrorLine(`${r.stderr}\n${r.stdout}`), commands });
}
