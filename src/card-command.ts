// `spice-smartcard card create|import|show`: making and inspecting soft PIV card files, and
// `loadCardSource`, which `connect --soft-card PATH` / `--demo-card` use to open one.
// Secrets (PIN, PUK, passwords) come from files, environment variables or a terminal prompt,
// never from arguments (they would show in `ps` and shell history), and are never printed.

import { access, readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Card } from '../vsc/card.js';
import { isValidPin, isValidPuk } from '../vsc/piv/reference-data.js';
import { generatePrivateKey, isKeyAlgorithmName, isSlotName, SLOT_NAMES, SLOT_TITLE, type KeyAlgorithmName, type SlotName } from '../vsc/soft-card/algorithms.js';
import { createCardDocument, DEFAULT_PIN, DEFAULT_PUK, type SlotContent } from '../vsc/soft-card/card-builder.js';
import { CardFileError, type CardDocument } from '../vsc/soft-card/card-file.js';
import { loadSoftCard, type SoftCardSourceOptions } from '../vsc/soft-card/card-source.js';
import { CardFileStore, readCardFile } from '../vsc/soft-card/card-store.js';
import { CardVault } from '../vsc/soft-card/card-vault.js';
import { createCertificate, type CertificateAuthority } from '../vsc/soft-card/certificates.js';
import { KeyImportError, readCertificates, readPemIdentity, readPkcs12, readPrivateKey, type ImportedIdentity } from '../vsc/soft-card/key-import.js';
import { ExitCode, UsageError } from './cli/exit-codes.js';
import { canPrompt, promptPassword } from './cli/prompt.js';

/** Opens the card a `connect` asks for: a soft card file (no PIN needed) or the demo card. */
export function loadCardSource(options: SoftCardSourceOptions): Promise<Card> {
  return loadSoftCard(options);
}

const CARD_HELP = `Usage: spice-smartcard card create PATH --subject "CN=..." [--key rsa2048|p256|p384] [--slots 9a,9c]
                                  [--ca-cert FILE --ca-key FILE] [--days N] [--label TEXT] [--force]
       spice-smartcard card import PATH --p12 FILE --slot 9a [--p12-password-file FILE]
       spice-smartcard card import PATH --cert FILE --key FILE --slot 9c [--key-password-file FILE]
       spice-smartcard card show PATH [--json]

Makes and inspects soft PIV card files for "connect --soft-card PATH".

create   new card with fresh keys in the given slots (default 9a,9c) and certificates for them,
         self-signed or signed by --ca-cert/--ca-key (valid --days, default 365)
import   puts an existing key and certificate into a slot; creates the card if PATH is new
show     slots, algorithms, subjects, expiry, and PIN/PUK tries left (no PIN needed)

Secrets are never taken as arguments:
  PIN, PUK of a new card   --pin-file/--puk-file FILE, or SPICE_SMARTCARD_PIN/SPICE_SMARTCARD_PUK, or a
                           prompt; otherwise the defaults 123456 / 12345678 (change them in the guest with
                           "pkcs11-tool --change-pin" or "yubico-piv-tool -a change-pin")
  PIN of an existing card  the same PIN sources (needed by import to seal the new key)
  .p12 password            --p12-password-file FILE, or SPICE_SMARTCARD_P12_PASSWORD, or a prompt
  encrypted key password   --key-password-file FILE, or SPICE_SMARTCARD_KEY_PASSWORD, or a prompt

Slots: 9a PIV Authentication (PIN), 9c Digital Signature (PIN before each use), 9d Key Management (PIN),
9e Card Authentication (no PIN). Card files are written atomically with mode 0600.`;

const SECRET_OPTIONS = {
  'pin-file': { type: 'string' },
  'puk-file': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

const CREATE_OPTIONS = {
  ...SECRET_OPTIONS,
  subject: { type: 'string' },
  key: { type: 'string', default: 'rsa2048' },
  slots: { type: 'string', default: '9a,9c' },
  'ca-cert': { type: 'string' },
  'ca-key': { type: 'string' },
  'key-password-file': { type: 'string' },
  days: { type: 'string', default: '365' },
  label: { type: 'string' },
  force: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

const IMPORT_OPTIONS = {
  ...SECRET_OPTIONS,
  slot: { type: 'string' },
  p12: { type: 'string' },
  'p12-password-file': { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'key-password-file': { type: 'string' },
  label: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

const SHOW_OPTIONS = {
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

/** Where the command reads secrets and writes messages; tests replace it. */
export interface CardCommandIo {
  readonly env: NodeJS.ProcessEnv;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Undefined when there is no terminal to ask. */
  readonly prompt: ((question: string) => Promise<string>) | undefined;
}

function defaultIo(): CardCommandIo {
  return {
    env: process.env,
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    prompt: canPrompt() ? promptPassword : undefined,
  };
}

/** Runs `card ...`; returns the exit code (0 ok, 1 internal error, 2 usage). Never throws. */
export async function runCard(args: string[], io: CardCommandIo = defaultIo()): Promise<number> {
  try {
    const [sub, ...rest] = args;
    switch (sub) {
      case 'create':
        return await createCommand(rest, io);
      case 'import':
        return await importCommand(rest, io);
      case 'show':
        return await showCommand(rest, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(`${CARD_HELP}\n`);
        return sub === undefined ? ExitCode.USAGE : ExitCode.OK;
      default:
        throw new UsageError(`unknown card command "${sub}": use create, import or show`);
    }
  } catch (error) {
    return reportCardError(error, io);
  }
}

function reportCardError(error: unknown, io: CardCommandIo): number {
  if (error instanceof UsageError || error instanceof CardFileError || error instanceof KeyImportError || error instanceof RangeError) {
    io.err(`spice-smartcard: ${error.message}\n`);
    return ExitCode.USAGE;
  }
  if (error instanceof TypeError && (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) {
    io.err(`spice-smartcard: ${error.message}\n`);
    return ExitCode.USAGE;
  }
  io.err(`spice-smartcard: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
  return ExitCode.INTERNAL;
}

type ParsedValues<O extends ParseArgsConfig['options']> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>['values'];

/** Strict parsing: unknown options are usage errors; at most one positional, the card path. */
function parse<O extends ParseArgsConfig['options']>(args: string[], options: O): { values: ParsedValues<O>; path: string | undefined } {
  const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
  if (positionals.length > 1) throw new UsageError(`one card file path expected, got ${positionals.length}`);
  return { values, path: positionals[0] };
}

function requirePath(path: string | undefined): string {
  if (path === undefined) throw new UsageError('give the card file PATH. Run "spice-smartcard card --help".');
  return path;
}

async function readInput(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new UsageError(`cannot read ${what} ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** First line of a secret file, without its line ending. */
async function readSecretFile(path: string, what: string): Promise<string> {
  const text = (await readInput(path, what)).toString('utf8');
  return text.split(/\r?\n/, 1)[0] ?? '';
}

/** Whether something is at `path` (a card file about to be created must not overwrite it). */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

interface SecretSource {
  readonly file: string | undefined;
  readonly envName: string;
  readonly label: string;
}

/** A secret from its file, its environment variable or the terminal, in that order; undefined if none. */
async function findSecret(source: SecretSource, io: CardCommandIo, question: string): Promise<string | undefined> {
  if (source.file !== undefined) return readSecretFile(source.file, `the ${source.label} file`);
  const fromEnv = io.env[source.envName];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (io.prompt !== undefined) return io.prompt(question);
  return undefined;
}

function checkSecret(kind: 'pin' | 'puk', value: string): string {
  if (kind === 'pin' && !isValidPin(value)) throw new UsageError('the PIN must be 6 to 8 digits');
  if (kind === 'puk' && !isValidPuk(value)) throw new UsageError('the PUK must be 6 to 8 printable ASCII characters');
  return value;
}

export interface NewSecrets {
  readonly pin: string;
  readonly puk: string;
}

/** PIN and PUK of a new card; the defaults, with a warning, when none is given. */
async function newCardSecrets(values: { 'pin-file'?: string | undefined; 'puk-file'?: string | undefined }, io: CardCommandIo): Promise<NewSecrets> {
  const pin = await findSecret({ file: values['pin-file'], envName: 'SPICE_SMARTCARD_PIN', label: 'PIN' }, io, `PIN for the new card (6-8 digits; Enter for ${DEFAULT_PIN}): `);
  const puk = await findSecret({ file: values['puk-file'], envName: 'SPICE_SMARTCARD_PUK', label: 'PUK' }, io, `PUK for the new card (6-8 characters; Enter for ${DEFAULT_PUK}): `);
  const defaults: string[] = [];
  if (pin === undefined || pin === '') defaults.push(`PIN ${DEFAULT_PIN}`);
  if (puk === undefined || puk === '') defaults.push(`PUK ${DEFAULT_PUK}`);
  if (defaults.length > 0) {
    io.err(
      `spice-smartcard: warning: the card uses the default ${defaults.join(' and ')}. Change ` +
        `${defaults.length > 1 ? 'them' : 'it'} in the guest: "pkcs11-tool --change-pin" / "pkcs11-tool --login --login-type so --change-pin" (OpenSC) or "yubico-piv-tool -a change-pin" / "-a change-puk".\n`,
    );
  }
  return {
    pin: checkSecret('pin', pin === undefined || pin === '' ? DEFAULT_PIN : pin),
    puk: checkSecret('puk', puk === undefined || puk === '' ? DEFAULT_PUK : puk),
  };
}

function parseSlots(text: string): SlotName[] {
  const names = text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  const slots: SlotName[] = [];
  for (const name of names) {
    if (!isSlotName(name)) throw new UsageError(`unknown slot "${name}": use ${SLOT_NAMES.join(', ')}`);
    if (!slots.includes(name)) slots.push(name);
  }
  if (slots.length === 0) throw new UsageError('--slots names no slot');
  return slots;
}

function parseDays(text: string): number {
  const days = Number(text);
  if (!Number.isInteger(days) || days < 1 || days > 36_500) throw new UsageError(`--days takes a whole number of days from 1 to 36500, not "${text}"`);
  return days;
}

function keyPassword(file: string | undefined, io: CardCommandIo, what: string): () => Promise<string> {
  return async () => {
    const secret = await findSecret({ file, envName: 'SPICE_SMARTCARD_KEY_PASSWORD', label: 'key password' }, io, `Password for ${what}: `);
    if (secret === undefined) throw new UsageError(`${what} is encrypted: give its password with --key-password-file or SPICE_SMARTCARD_KEY_PASSWORD`);
    return secret;
  };
}

async function readAuthority(values: { 'ca-cert'?: string | undefined; 'ca-key'?: string | undefined; 'key-password-file'?: string | undefined }, io: CardCommandIo): Promise<CertificateAuthority | undefined> {
  const certPath = values['ca-cert'];
  const keyPath = values['ca-key'];
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) throw new UsageError('--ca-cert and --ca-key go together');
  const [certificate] = readCertificates(await readInput(certPath, 'the CA certificate'));
  if (certificate === undefined) throw new UsageError(`${certPath} holds no certificate`);
  const privateKey = await readPrivateKey(await readInput(keyPath, 'the CA key'), keyPassword(values['key-password-file'], io, `the CA key ${keyPath}`));
  if (!new X509Certificate(certificate).checkPrivateKey(privateKey)) throw new UsageError(`the CA key ${keyPath} does not belong to ${certPath}`);
  return { certificate, privateKey };
}

export interface CreateSoftCardInput {
  readonly path: string;
  readonly subject: string;
  readonly algorithm: KeyAlgorithmName;
  readonly slots: readonly SlotName[];
  readonly days: number;
  readonly pin: string;
  readonly puk: string;
  readonly label?: string;
  readonly issuer?: CertificateAuthority;
}

/**
 * Makes a new soft card file with fresh keys and certificates: the core of `card create`, shared
 * with the control API. The caller has checked that it may write `path`.
 */
export async function createSoftCardFile(input: CreateSoftCardInput): Promise<CardDocument> {
  if (input.subject.trim() === '') throw new UsageError('the subject is empty: give one such as "CN=Jane Doe"');
  if (input.slots.length === 0) throw new UsageError('no slot to fill');
  checkSecret('pin', input.pin);
  checkSecret('puk', input.puk);
  const contents: SlotContent[] = [];
  for (const slot of input.slots) {
    const privateKey = await generatePrivateKey(input.algorithm);
    contents.push({
      slot,
      privateKey,
      certificate: await createCertificate({ subject: input.subject, privateKey, slot, days: input.days, ...(input.issuer !== undefined ? { issuer: input.issuer } : {}) }),
    });
  }
  const document = await createCardDocument({ pin: input.pin, puk: input.puk, slots: contents, ...(input.label !== undefined ? { label: input.label } : {}) });
  await new CardFileStore(input.path).save(document);
  return document;
}

export interface ImportSoftCardInput {
  readonly path: string;
  readonly slot: SlotName;
  readonly identity: ImportedIdentity;
  /** The PIN of the existing card at `path`, asked only when there is one. */
  readonly pinOfExisting: () => Promise<string>;
  /** PIN and PUK of a new card, asked only when `path` does not exist yet. */
  readonly newSecrets: () => Promise<NewSecrets>;
  readonly label?: string;
}

/** Puts a key and certificate into a slot, creating the card if needed: the core of `card import`. */
export async function importIntoSoftCard(input: ImportSoftCardInput): Promise<{ document: CardDocument; created: boolean }> {
  const { path, slot, identity } = input;
  if (await exists(path)) {
    const vault = new CardVault(await readCardFile(path), new CardFileStore(path));
    const pin = await input.pinOfExisting();
    // An administrator's unlock on the host: not counted against the guest-visible retry counter.
    if (!(await vault.check('pin', pin))) throw new UsageError(`wrong PIN for ${path}`);
    await vault.installSlot(slot, identity.privateKey, identity.certificate);
    vault.lock();
    return { document: vault.document, created: false };
  }
  const secrets = await input.newSecrets();
  checkSecret('pin', secrets.pin);
  checkSecret('puk', secrets.puk);
  const document = await createCardDocument({ ...secrets, slots: [{ slot, privateKey: identity.privateKey, certificate: identity.certificate }], ...(input.label !== undefined ? { label: input.label } : {}) });
  await new CardFileStore(path).save(document);
  return { document, created: true };
}

async function createCommand(args: string[], io: CardCommandIo): Promise<number> {
  const { values, path: given } = parse(args, CREATE_OPTIONS);
  if (values.help) {
    io.out(`${CARD_HELP}\n`);
    return ExitCode.OK;
  }
  const path = requirePath(given);
  const subject = values.subject;
  if (subject === undefined || subject.trim() === '') throw new UsageError('card create needs --subject "CN=..."');
  if (!isKeyAlgorithmName(values.key)) throw new UsageError(`--key takes rsa2048, p256 or p384, not "${values.key}"`);
  const algorithm: KeyAlgorithmName = values.key;
  const slots = parseSlots(values.slots);
  const days = parseDays(values.days);
  if (!values.force && (await exists(path))) throw new UsageError(`${path} exists; use --force to replace it (its keys are lost)`);
  const issuer = await readAuthority(values, io);
  const secrets = await newCardSecrets(values, io);
  const document = await createSoftCardFile({ path, subject, algorithm, slots, days, ...secrets, ...(values.label !== undefined ? { label: values.label } : {}), ...(issuer !== undefined ? { issuer } : {}) });
  io.out(`Created ${path}.\n${describeCard(path, document)}`);
  return ExitCode.OK;
}

async function importCommand(args: string[], io: CardCommandIo): Promise<number> {
  const { values, path: given } = parse(args, IMPORT_OPTIONS);
  if (values.help) {
    io.out(`${CARD_HELP}\n`);
    return ExitCode.OK;
  }
  const path = requirePath(given);
  const slotText = values.slot?.toLowerCase();
  if (slotText === undefined || !isSlotName(slotText)) throw new UsageError(`card import needs --slot ${SLOT_NAMES.join('|')}`);
  const slot: SlotName = slotText;
  const fromP12 = values.p12 !== undefined;
  const fromPem = values.cert !== undefined || values.key !== undefined;
  if (fromP12 === fromPem) throw new UsageError('give either --p12 FILE or --cert FILE --key FILE');

  let identity: ImportedIdentity;
  if (values.p12 !== undefined) {
    const file = await readInput(values.p12, 'the PKCS#12 file');
    const password = await findSecret({ file: values['p12-password-file'], envName: 'SPICE_SMARTCARD_P12_PASSWORD', label: 'PKCS#12 password' }, io, `Password for ${values.p12}: `);
    if (password === undefined) throw new UsageError('give the PKCS#12 password with --p12-password-file FILE or SPICE_SMARTCARD_P12_PASSWORD');
    identity = readPkcs12(file, password);
  } else {
    if (values.cert === undefined || values.key === undefined) throw new UsageError('--cert and --key go together');
    identity = await readPemIdentity(await readInput(values.cert, 'the certificate'), await readInput(values.key, 'the key'), keyPassword(values['key-password-file'], io, `the key ${values.key}`));
  }

  const pinOfExisting = async (): Promise<string> => {
    const pin = await findSecret({ file: values['pin-file'], envName: 'SPICE_SMARTCARD_PIN', label: 'PIN' }, io, `PIN of ${path}: `);
    if (pin === undefined) throw new UsageError(`the PIN of ${path} is needed to seal the new key: give --pin-file FILE or SPICE_SMARTCARD_PIN`);
    return pin;
  };
  const result = await importIntoSoftCard({
    path,
    slot,
    identity,
    pinOfExisting,
    newSecrets: () => newCardSecrets(values, io),
    ...(values.label !== undefined ? { label: values.label } : {}),
  });
  io.out(
    result.created
      ? `Created ${path} with the key in slot ${slot}.\n${describeCard(path, result.document)}`
      : `Put the key and certificate into slot ${slot} of ${path}.\n${describeCard(path, result.document)}`,
  );
  if (identity.others.length > 0) {
    io.err(`spice-smartcard: note: ${identity.others.length} other certificate(s) in the input (issuers) were not put on the card; install them in the guest's trust store if it needs them.\n`);
  }
  return ExitCode.OK;
}

async function showCommand(args: string[], io: CardCommandIo): Promise<number> {
  const { values, path: given } = parse(args, SHOW_OPTIONS);
  if (values.help) {
    io.out(`${CARD_HELP}\n`);
    return ExitCode.OK;
  }
  const path = requirePath(given);
  const document = await readCardFile(path);
  io.out(values.json ? `${JSON.stringify(cardSummary(path, document), null, 2)}\n` : describeCard(path, document));
  return ExitCode.OK;
}

interface SlotSummary {
  readonly slot: SlotName;
  readonly title: string;
  readonly algorithm: KeyAlgorithmName;
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly expired: boolean;
  readonly fingerprint256: string;
}

export interface CardSummary {
  readonly path: string;
  readonly guid: string;
  readonly label: string | undefined;
  readonly chuidExpiry: string;
  readonly pin: { readonly triesLeft: number; readonly maxTries: number };
  readonly puk: { readonly triesLeft: number; readonly maxTries: number };
  readonly slots: readonly SlotSummary[];
}

export function cardSummary(path: string, document: CardDocument, now: Date = new Date()): CardSummary {
  const slots: SlotSummary[] = [];
  for (const slot of SLOT_NAMES) {
    const record = document.slots[slot];
    if (record === undefined) continue;
    const certificate = new X509Certificate(Buffer.from(record.certificate, 'base64'));
    const notAfter = new Date(certificate.validTo);
    slots.push({
      slot,
      title: SLOT_TITLE[slot],
      algorithm: record.algorithm,
      subject: certificate.subject.replaceAll('\n', ', '),
      issuer: certificate.issuer.replaceAll('\n', ', '),
      serialNumber: certificate.serialNumber,
      notBefore: new Date(certificate.validFrom).toISOString(),
      notAfter: notAfter.toISOString(),
      expired: notAfter.getTime() < now.getTime(),
      fingerprint256: certificate.fingerprint256,
    });
  }
  return {
    path,
    guid: document.guid,
    label: document.label,
    chuidExpiry: `${document.expiry.slice(0, 4)}-${document.expiry.slice(4, 6)}-${document.expiry.slice(6)}`,
    pin: { triesLeft: document.pin.triesLeft, maxTries: document.pin.maxTries },
    puk: { triesLeft: document.puk.triesLeft, maxTries: document.puk.maxTries },
    slots,
  };
}

const ALGORITHM_LABEL: Readonly<Record<KeyAlgorithmName, string>> = { rsa2048: 'RSA-2048', p256: 'EC P-256', p384: 'EC P-384' };

function tries(counter: { triesLeft: number; maxTries: number }): string {
  return counter.triesLeft === 0 ? `BLOCKED (0 of ${counter.maxTries} tries left)` : `${counter.triesLeft} of ${counter.maxTries} tries left`;
}

function describeCard(path: string, document: CardDocument): string {
  const summary = cardSummary(path, document);
  const lines = [
    `Card:   ${path}${summary.label !== undefined ? ` (${summary.label})` : ''}`,
    `GUID:   ${summary.guid}`,
    `PIN:    ${tries(summary.pin)}`,
    `PUK:    ${tries(summary.puk)}`,
  ];
  if (summary.slots.length === 0) lines.push('Slots:  none');
  for (const slot of summary.slots) {
    lines.push(
      `Slot ${slot.slot.toUpperCase()} ${slot.title}: ${ALGORITHM_LABEL[slot.algorithm]}`,
      `    subject  ${slot.subject}`,
      `    issuer   ${slot.issuer === slot.subject ? '(self-signed)' : slot.issuer}`,
      `    expires  ${slot.notAfter.slice(0, 10)}${slot.expired ? ' (EXPIRED)' : ''}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
