// `spice-smartcard card create|import|show` and loadCardSource, driven as the CLI would.
import { execFileSync } from 'node:child_process';
import { createHash, verify, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardSummary, loadCardSource, runCard, type CardCommandIo, type CardSummary } from '../../src/card-command.js';
import { decodeSingleTlv, decodeTlvList, findTlv } from '../../vsc/iso7816/tlv.js';
import { exchange, exchangeChain, generalAuthenticateApdus, getDataApdu, verifyPinApdu } from '../../vsc/piv/host-commands.js';
import { readCardFile } from '../../vsc/soft-card/card-store.js';

let dir: string;
const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
  readonly prompts: string[];
}

async function card(args: string[], env: Record<string, string> = {}, answers?: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const prompts: string[] = [];
  const io: CardCommandIo = {
    env,
    out: (t) => (out += t),
    err: (t) => (err += t),
    prompt:
      answers === undefined
        ? undefined
        : (question) => {
            prompts.push(question);
            return Promise.resolve(answers.shift() ?? '');
          },
  };
  const code = await runCard(args, io);
  return { code, out, err, prompts };
}

const SECRETS = { SPICE_SMARTCARD_PIN: '24681357', SPICE_SMARTCARD_PUK: 'Puk-9876' };
const path = (name: string): string => join(dir, name);
const summary = async (name: string): Promise<CardSummary> => cardSummary(path(name), await readCardFile(path(name)));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'card-command-'));
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/O=Test Org/CN=Test Issuing CA', '-days', '30');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'user.key', '-out', 'user.crt', '-subj', '/CN=Imported User', '-days', '30');
  openssl('pkcs12', '-export', '-in', 'user.crt', '-inkey', 'user.key', '-out', 'user.p12', '-passout', 'pass:p12-pass');
  await writeFile(path('p12.pass'), 'p12-pass\n');
  await writeFile(path('pin.txt'), '11223344\n');
  await writeFile(path('puk.txt'), 'abcdefgh\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('card create', () => {
  it('makes a card with RSA-2048 keys in 9A and 9C by default', async () => {
    const run = await card(['create', path('a.json'), '--subject', 'CN=Jane Doe, O=Example'], SECRETS);
    expect(run.code).toBe(0);
    expect(run.err).toBe('');
    expect((await stat(path('a.json'))).mode & 0o777).toBe(0o600);
    const s = await summary('a.json');
    expect(s.slots.map((slot) => [slot.slot, slot.algorithm])).toEqual([['9a', 'rsa2048'], ['9c', 'rsa2048']]);
    expect(s.slots[0]?.subject).toBe('CN=Jane Doe, O=Example');
    expect(s.pin).toEqual({ triesLeft: 3, maxTries: 3 });
    for (const secret of Object.values(SECRETS)) expect(run.out + run.err).not.toContain(secret);
    // The PIN from the environment is the card's PIN.
    const loaded = await loadCardSource({ softCardPath: path('a.json') });
    expect(Buffer.from(await loaded.transmit(verifyPinApdu(SECRETS.SPICE_SMARTCARD_PIN))).toString('hex')).toBe('9000');
  });

  it('takes the algorithm, slots and validity, and secrets from files', async () => {
    const run = await card(['create', path('b.json'), '--subject', 'CN=B', '--key', 'p384', '--slots', '9a,9d,9e', '--days', '10', '--pin-file', path('pin.txt'), '--puk-file', path('puk.txt'), '--label', 'Lab card']);
    expect(run.code).toBe(0);
    const s = await summary('b.json');
    expect(s.slots.map((slot) => slot.slot)).toEqual(['9a', '9d', '9e']);
    expect(s.slots.every((slot) => slot.algorithm === 'p384')).toBe(true);
    expect(s.label).toBe('Lab card');
    const days = (Date.parse(s.slots[0]?.notAfter ?? '') - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(9.9);
    expect(days).toBeLessThan(10.1);
    const loaded = await loadCardSource({ softCardPath: path('b.json') });
    expect(Buffer.from(await loaded.transmit(verifyPinApdu('11223344'))).toString('hex')).toBe('9000');
  });

  it('signs the certificates with a given CA so the guest can trust them', async () => {
    const run = await card(['create', path('ca-signed.json'), '--subject', 'CN=Signed User', '--key', 'p256', '--ca-cert', path('ca.crt'), '--ca-key', path('ca.key')], SECRETS);
    expect(run.code).toBe(0);
    const document = await readCardFile(path('ca-signed.json'));
    const der = Buffer.from(document.slots['9a']?.certificate ?? '', 'base64');
    const certificate = new X509Certificate(der);
    const ca = new X509Certificate(await readFile(path('ca.crt')));
    expect(certificate.checkIssued(ca)).toBe(true);
    expect(certificate.verify(ca.publicKey)).toBe(true);
    await writeFile(path('signed.crt'), certificate.toString());
    expect(execFileSync('openssl', ['verify', '-CAfile', path('ca.crt'), path('signed.crt')]).toString()).toContain('OK');
  });

  it('uses the defaults with a warning when no PIN or PUK is given', async () => {
    const run = await card(['create', path('defaults.json'), '--subject', 'CN=D', '--key', 'p256', '--slots', '9a']);
    expect(run.code).toBe(0);
    expect(run.err).toMatch(/warning: the card uses the default PIN 123456 and PUK 12345678/);
    expect(run.err).toMatch(/change-pin/);
    const loaded = await loadCardSource({ softCardPath: path('defaults.json') });
    expect(Buffer.from(await loaded.transmit(verifyPinApdu('123456'))).toString('hex')).toBe('9000');
  });

  it('asks on a terminal, Enter meaning the default', async () => {
    const run = await card(['create', path('prompted.json'), '--subject', 'CN=P', '--key', 'p256', '--slots', '9a'], {}, ['55667788', '']);
    expect(run.code).toBe(0);
    expect(run.prompts.length).toBe(2);
    expect(run.err).toMatch(/default PUK 12345678/);
    expect(run.err).not.toMatch(/default PIN/);
    expect(run.out + run.err).not.toContain('55667788');
  });

  it.each([
    ['no path', ['create', '--subject', 'CN=x']],
    ['no subject', ['create', 'x.json']],
    ['unknown key type', ['create', 'x.json', '--subject', 'CN=x', '--key', 'rsa4096']],
    ['unknown slot', ['create', 'x.json', '--subject', 'CN=x', '--slots', '9a,9b']],
    ['bad days', ['create', 'x.json', '--subject', 'CN=x', '--days', '0']],
    ['CA cert without key', ['create', 'x.json', '--subject', 'CN=x', '--ca-cert', 'ca.crt']],
    ['unknown option', ['create', 'x.json', '--subject', 'CN=x', '--pin', '123456']],
    ['unreadable PIN file', ['create', 'x.json', '--subject', 'CN=x', '--pin-file', '/nonexistent/pin']],
    ['unknown subcommand', ['burn', 'x.json']],
    ['bad subject', ['create', 'x.json', '--subject', 'no equals sign here', '--key', 'p256', '--slots', '9a']],
  ])('exits 2 for %s', async (_name, args) => {
    const run = await card(args.map((a) => (a.endsWith('.json') || a === 'ca.crt' ? path(a) : a)), SECRETS);
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/^spice-smartcard: /);
  });

  it('exits 2 for a PIN of the wrong format', async () => {
    expect((await card(['create', path('x.json'), '--subject', 'CN=x'], { SPICE_SMARTCARD_PIN: '12ab' })).code).toBe(2);
  });

  it('refuses to replace a card unless told to', async () => {
    await card(['create', path('keep.json'), '--subject', 'CN=K', '--key', 'p256', '--slots', '9a'], SECRETS);
    const guid = (await readCardFile(path('keep.json'))).guid;
    const again = await card(['create', path('keep.json'), '--subject', 'CN=K', '--key', 'p256', '--slots', '9a'], SECRETS);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/--force/);
    expect((await readCardFile(path('keep.json'))).guid).toBe(guid);
    expect((await card(['create', path('keep.json'), '--subject', 'CN=K', '--key', 'p256', '--slots', '9a', '--force'], SECRETS)).code).toBe(0);
    expect((await readCardFile(path('keep.json'))).guid).not.toBe(guid);
  });
});

describe('card import', () => {
  it('creates a card from a PKCS#12 file, password from a file', async () => {
    const run = await card(['import', path('imported.json'), '--p12', path('user.p12'), '--p12-password-file', path('p12.pass'), '--slot', '9a'], SECRETS);
    expect(run.code).toBe(0);
    expect(run.out + run.err).not.toContain('p12-pass');
    const s = await summary('imported.json');
    expect(s.slots.map((slot) => [slot.slot, slot.algorithm, slot.subject])).toEqual([['9a', 'p256', 'CN=Imported User']]);
  });

  it('adds a key to an existing card with its PIN, and the card signs with it', async () => {
    await card(['create', path('existing.json'), '--subject', 'CN=E', '--key', 'p256', '--slots', '9a'], SECRETS);
    const run = await card(['import', path('existing.json'), '--cert', path('user.crt'), '--key', path('user.key'), '--slot', '9c'], SECRETS);
    expect(run.code).toBe(0);
    expect((await summary('existing.json')).slots.map((slot) => slot.slot)).toEqual(['9a', '9c']);

    const loaded = await loadCardSource({ softCardPath: path('existing.json') });
    const t = (a: Uint8Array): Promise<Uint8Array> => loaded.transmit(a);
    const cert = await exchange(t, getDataApdu(0x5fc10a));
    const der = findTlv(decodeTlvList(decodeSingleTlv(cert.data).value), 0x70)?.value ?? new Uint8Array();
    expect(new X509Certificate(der).subject).toBe('CN=Imported User');
    expect((await exchange(t, verifyPinApdu(SECRETS.SPICE_SMARTCARD_PIN))).sw).toBe(0x9000);
    const digest = createHash('sha256').update('hello').digest();
    const answer = await exchangeChain(t, generalAuthenticateApdus(0x11, 0x9c, digest));
    expect(answer.sw).toBe(0x9000);
    const signature = findTlv(decodeTlvList(decodeSingleTlv(answer.data).value), 0x82)?.value ?? new Uint8Array();
    expect(verify('sha256', Buffer.from('hello'), new X509Certificate(der).publicKey, signature)).toBe(true);
  });

  it('exits 2 for a wrong PKCS#12 password, and says so', async () => {
    const run = await card(['import', path('w.json'), '--p12', path('user.p12'), '--slot', '9a'], { ...SECRETS, SPICE_SMARTCARD_P12_PASSWORD: 'nope' });
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/wrong password/);
    expect(run.err).not.toContain('nope');
  });

  it('exits 2 for a wrong card PIN without touching the card', async () => {
    await card(['create', path('pinned.json'), '--subject', 'CN=P', '--key', 'p256', '--slots', '9a'], SECRETS);
    const run = await card(['import', path('pinned.json'), '--cert', path('user.crt'), '--key', path('user.key'), '--slot', '9c'], { SPICE_SMARTCARD_PIN: '00000000' });
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/wrong PIN/);
    const s = await summary('pinned.json');
    expect(s.slots.map((slot) => slot.slot)).toEqual(['9a']);
    expect(s.pin.triesLeft).toBe(3);
  });

  it.each([
    ['no slot', ['import', 'i.json', '--p12', 'user.p12']],
    ['bad slot', ['import', 'i.json', '--p12', 'user.p12', '--slot', '9b']],
    ['both sources', ['import', 'i.json', '--p12', 'user.p12', '--cert', 'user.crt', '--key', 'user.key', '--slot', '9a']],
    ['no source', ['import', 'i.json', '--slot', '9a']],
    ['cert without key', ['import', 'i.json', '--cert', 'user.crt', '--slot', '9a']],
    ['missing p12 file', ['import', 'i.json', '--p12', 'missing.p12', '--slot', '9a']],
    ['no p12 password anywhere', ['import', 'i.json', '--p12', 'user.p12', '--slot', '9a']],
    ['password as an argument', ['import', 'i.json', '--p12', 'user.p12', '--password', 'p12-pass', '--slot', '9a']],
  ])('exits 2 for %s', async (_name, args) => {
    const run = await card(args.map((a) => (/\.(json|p12|crt|key)$/.test(a) ? path(a) : a)), SECRETS);
    expect(run.code).toBe(2);
  });
});

describe('card show', () => {
  it('prints slots, subjects, expiry and tries left, without the PIN', async () => {
    const run = await card(['show', path('a.json')]);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/PIN: {4}3 of 3 tries left/);
    expect(run.out).toMatch(/PUK: {4}3 of 3 tries left/);
    expect(run.out).toMatch(/Slot 9A PIV Authentication: RSA-2048/);
    expect(run.out).toMatch(/subject {2}CN=Jane Doe, O=Example/);
    expect(run.out).toMatch(/expires {2}20\d\d-\d\d-\d\d/);
  });

  it('prints JSON', async () => {
    const run = await card(['show', path('b.json'), '--json']);
    expect(run.code).toBe(0);
    const parsed = JSON.parse(run.out) as CardSummary;
    expect(parsed.slots.map((slot) => slot.slot)).toEqual(['9a', '9d', '9e']);
    expect(parsed.puk.triesLeft).toBe(3);
  });

  it('reports blocked counters', async () => {
    const loaded = await loadCardSource({ softCardPath: path('defaults.json') });
    for (let i = 0; i < 3; i += 1) await loaded.transmit(verifyPinApdu('000000'));
    expect((await card(['show', path('defaults.json')])).out).toMatch(/PIN: {4}BLOCKED/);
  });

  it('exits 2 for a missing or damaged file', async () => {
    expect((await card(['show', path('missing.json')])).code).toBe(2);
    await writeFile(path('damaged.json'), '{"format": "nope"}');
    const run = await card(['show', path('damaged.json')]);
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/not a spice-smartcard soft card file/);
  });
});

describe('loadCardSource', () => {
  it('opens the demo card', async () => {
    const demo = await loadCardSource({ demo: true });
    expect(demo.atr()).toBeDefined();
    expect(Buffer.from(await demo.transmit(verifyPinApdu('123456'))).toString('hex')).toBe('9000');
  });

  it('wants exactly one source', async () => {
    await expect(loadCardSource({})).rejects.toThrow(TypeError);
    await expect(loadCardSource({ demo: true, softCardPath: path('a.json') })).rejects.toThrow(TypeError);
  });
});
