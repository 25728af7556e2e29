// Soft card files and the SoftCard class: atomic writes, 0600, no secret in the clear,
// state that survives a restart, and the Card interface.
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SOFT_PIV_ATR } from '../../vsc/piv/atr.js';
import { exchange, exchangeChain, generalAuthenticateApdus, getDataApdu, verifyPinApdu, changeReferenceDataApdu } from '../../vsc/piv/host-commands.js';
import { writeFileAtomic } from '../../vsc/soft-card/atomic-write.js';
import { createCardDocument, type SlotContent } from '../../vsc/soft-card/card-builder.js';
import { CardFileError, parseCardDocument, serializeCardDocument } from '../../vsc/soft-card/card-file.js';
import { loadSoftCard } from '../../vsc/soft-card/card-source.js';
import { CardFileStore, readCardFile } from '../../vsc/soft-card/card-store.js';
import { CardVault } from '../../vsc/soft-card/card-vault.js';
import { createCertificate } from '../../vsc/soft-card/certificates.js';
import { DEMO_CARD_PIN, createDemoCard } from '../../vsc/soft-card/demo-card.js';
import { CardNotPresentError, SoftCard } from '../../vsc/soft-card/soft-card.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const PIN = '97531864';
const PUK = 'zq7Kx2pW';
const CHEAP = { N: 16, r: 1, p: 1 };

let dir: string;
let rsa: KeyObject;
let p256: KeyObject;
let slots: SlotContent[];

beforeAll(async () => {
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  slots = [
    { slot: '9a', privateKey: rsa, certificate: await createCertificate({ subject: 'CN=Auth', privateKey: rsa, slot: '9a', days: 5 }) },
    { slot: '9e', privateKey: p256, certificate: await createCertificate({ subject: 'CN=Card Auth', privateKey: p256, slot: '9e', days: 5 }) },
  ];
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'soft-card-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeCard(path: string): Promise<void> {
  await new CardFileStore(path).save(await createCardDocument({ pin: PIN, puk: PUK, slots, scryptCost: CHEAP }));
}

const send = async (card: SoftCard, apdu: Uint8Array): Promise<string> => toHex(await card.transmit(apdu));

describe('card files', () => {
  it('are written with mode 0600', async () => {
    const path = join(dir, 'card.json');
    await writeCard(path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('hold no PIN, PUK or key material in the clear', async () => {
    const path = join(dir, 'card.json');
    await new CardFileStore(path).save(await createCardDocument({ pin: PIN, puk: PUK, slots })); // default scrypt cost
    const text = await readFile(path, 'utf8');
    expect(text).not.toContain(PIN);
    expect(text).not.toContain(PUK);
    expect(text).not.toContain(Buffer.from(PIN).toString('base64'));
    expect(text).not.toContain(Buffer.from(PIN).toString('hex'));

    const secrets: Buffer[] = [];
    for (const key of [rsa, p256]) {
      const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
      expect(text).not.toContain(pkcs8.toString('base64').slice(0, 40));
      expect(text).not.toContain(pkcs8.toString('hex').slice(0, 40));
      const jwk = key.export({ format: 'jwk' });
      for (const field of [jwk.d, jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi]) {
        if (field === undefined) continue;
        expect(text).not.toContain(field.slice(0, 20));
        secrets.push(Buffer.from(field, 'base64url'));
      }
    }
    // Nor inside any base64 field once decoded: no 16-byte window of a private value appears.
    const decoded = Buffer.concat((text.match(/"[A-Za-z0-9+/]{16,}={0,2}"/g) ?? []).map((s) => Buffer.from(s.slice(1, -1), 'base64')));
    for (const secret of secrets) {
      for (let i = 0; i + 16 <= secret.length; i += 8) expect(decoded.includes(secret.subarray(i, i + 16))).toBe(false);
    }
    // The data key is wrapped under the PIN and under the PUK with scrypt, nothing else.
    const document = parseCardDocument(text);
    expect(document.pin.wrappedDataKey.kdf).toMatchObject({ name: 'scrypt', N: 65536, r: 8, p: 1 });
    expect(Object.keys(document.pin).sort()).toEqual(['maxTries', 'triesLeft', 'wrappedDataKey']);
  });

  it('load without the PIN; keys open on VERIFY', async () => {
    const path = join(dir, 'card.json');
    await writeCard(path);
    const card = await loadSoftCard({ softCardPath: path });
    expect(card.vault.unlocked).toBe(false);
    expect(toHex(card.atr() ?? new Uint8Array())).toBe(toHex(SOFT_PIV_ATR));
    const cert = await exchange((a) => card.transmit(a), getDataApdu(0x5fc105));
    expect(cert.sw).toBe(0x9000);
    expect(await send(card, verifyPinApdu(PIN))).toBe('9000');
    expect(card.vault.unlocked).toBe(true);
  });

  it('keep retry counters and PIN changes across a restart', async () => {
    const path = join(dir, 'card.json');
    await writeCard(path);
    const first = await loadSoftCard({ softCardPath: path });
    expect(await send(first, verifyPinApdu('00000000'))).toBe('63c2');
    expect((await readCardFile(path)).pin.triesLeft).toBe(2);
    expect(await send(first, changeReferenceDataApdu('pin', PIN, '11223344'))).toBe('9000');
    await first.close();

    const second = await loadSoftCard({ softCardPath: path });
    expect(await send(second, verifyPinApdu())).toBe('63c3');
    expect(await send(second, verifyPinApdu(PIN))).toBe('63c2');
    expect(await send(second, verifyPinApdu('11223344'))).toBe('9000');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const digest = new Uint8Array(256).fill(1);
    digest[0] = 0;
    expect((await exchangeChain((a) => second.transmit(a), generalAuthenticateApdus(0x07, 0x9a, digest))).sw).toBe(0x9000);
  });

  it('can be unlocked at load so 9E works before any VERIFY', async () => {
    const path = join(dir, 'card.json');
    await writeCard(path);
    await expect(loadSoftCard({ softCardPath: path, unlockPin: '00000000' })).rejects.toThrow(CardFileError);
    expect((await readCardFile(path)).pin.triesLeft).toBe(3);
    const card = await loadSoftCard({ softCardPath: path, unlockPin: PIN });
    expect((await exchangeChain((a) => card.transmit(a), generalAuthenticateApdus(0x11, 0x9e, new Uint8Array(32).fill(7)))).sw).toBe(0x9000);
    expect(await send(card, verifyPinApdu())).toBe('63c3');
  });

  it('refuse damaged files with the field at fault', async () => {
    const document = await createCardDocument({ pin: PIN, puk: PUK, slots, scryptCost: CHEAP });
    const good = serializeCardDocument(document);
    expect(parseCardDocument(good)).toEqual(document);
    const broken: ReadonlyArray<readonly [string, string, RegExp]> = [
      ['not JSON', '{', /not valid JSON/],
      ['other JSON', '{"a":1}', /not a spice-smartcard soft card file/],
      ['newer version', good.replace('"version": 1', '"version": 2'), /version 2.*upgrade/],
      ['bad tries', good.replace('"triesLeft": 3', '"triesLeft": 9'), /card\.pin\.triesLeft/],
      ['bad slot', good.replace('"9e":', '"9b":'), /unknown slot "9b"/],
      ['bad algorithm', good.replace('"algorithm": "p256"', '"algorithm": "ed25519"'), /not supported/],
      ['bad GUID', good.replace(document.guid, 'xyz'), /card\.guid/],
      ['bad KDF', good.replace('"name": "scrypt"', '"name": "pbkdf2"'), /scrypt/],
    ];
    for (const [, text, message] of broken) expect(() => parseCardDocument(text)).toThrow(message);
    await expect(readCardFile(join(dir, 'missing.json'))).rejects.toThrow(/no card file/);
  });

  it('detect sealed keys moved between slots', async () => {
    const document = await createCardDocument({ pin: PIN, puk: PUK, slots: [slots[0] as SlotContent, { ...(slots[0] as SlotContent), slot: '9c' }], scryptCost: CHEAP });
    const swapped = { ...document, slots: { '9a': document.slots['9c'], '9c': document.slots['9a'] } };
    const path = join(dir, 'card.json');
    await writeFile(path, JSON.stringify(swapped));
    const card = await loadSoftCard({ softCardPath: path });
    // The PIN is right, but the keys do not open: the applet reports no precise diagnosis.
    expect(await send(card, verifyPinApdu(PIN))).toBe('6f00');
  });
});

describe('atomic writes', () => {
  it('leave the old file whole when the write stops before the rename', async () => {
    const path = join(dir, 'card.json');
    await writeFile(path, 'old content', { mode: 0o600 });
    let seenTemp: string | undefined;
    const crash = writeFileAtomic(path, 'new content', {
      beforeRename: async (temp) => {
        seenTemp = temp;
        expect(temp.startsWith(join(dir, '.card.json.'))).toBe(true);
        expect((await stat(temp)).mode & 0o777).toBe(0o600);
        expect(await readFile(temp, 'utf8')).toBe('new content');
        expect(await readFile(path, 'utf8')).toBe('old content');
        throw new Error('power cut');
      },
    });
    await expect(crash).rejects.toThrow('power cut');
    expect(await readFile(path, 'utf8')).toBe('old content');
    expect(seenTemp).toBeDefined();
    expect(await readdir(dir)).toEqual(['card.json']);
  });

  it('are not disturbed by a temp file a real crash left behind', async () => {
    const path = join(dir, 'card.json');
    await writeCard(path);
    await writeFile(join(dir, '.card.json.deadbeef0000.tmp'), '{"half": ', { mode: 0o600 });
    const card = await loadSoftCard({ softCardPath: path });
    expect(await send(card, verifyPinApdu('00000000'))).toBe('63c2');
    expect((await readCardFile(path)).pin.triesLeft).toBe(2);
  });

  it('make a card unusable for VERIFY when saving fails, without a free try', async () => {
    const path = join(dir, 'card.json');
    await writeCard(path);
    const document = await readCardFile(path);
    const failing = new CardFileStore(join(dir, 'no-such-dir', 'card.json'));
    const card = new SoftCard({ name: 'x', vault: new CardVault(document, failing) });
    expect(await send(card, verifyPinApdu(PIN))).toBe('6581');
    expect(card.vault.unlocked).toBe(false);
  });

  it('replace a file with a new inode and mode 0600 even under a loose umask', async () => {
    const path = join(dir, 'card.json');
    await writeFile(path, 'x', { mode: 0o644 });
    const before = await stat(path);
    const umask = process.umask(0o000);
    try {
      await writeFileAtomic(path, 'y');
    } finally {
      process.umask(umask);
    }
    const after = await stat(path);
    expect(after.ino).not.toBe(before.ino);
    expect(after.mode & 0o777).toBe(0o600);
  });
});

describe('SoftCard', () => {
  it('emits inserted and removed, and refuses commands while out', async () => {
    const card = await createDemoCard();
    const events: string[] = [];
    card.on('inserted', (atr) => events.push(`in ${toHex(atr)}`));
    card.on('removed', () => events.push('out'));
    expect(card.atr()).toBeDefined();
    card.remove();
    expect(card.atr()).toBeUndefined();
    await expect(card.transmit(verifyPinApdu())).rejects.toThrow(CardNotPresentError);
    card.insert();
    expect(events).toEqual(['out', `in ${toHex(SOFT_PIV_ATR)}`]);
    expect(await send(card, verifyPinApdu())).toBe('63c3');
  });

  it('runs commands one at a time, in order', async () => {
    const card = await createDemoCard();
    // Fired together: the VERIFY (which awaits scrypt and a save) must finish before the status query runs.
    const [verified, status, wrong, after] = await Promise.all([
      card.transmit(verifyPinApdu(DEMO_CARD_PIN)),
      card.transmit(verifyPinApdu()),
      card.transmit(verifyPinApdu('000000')),
      card.transmit(verifyPinApdu()),
    ]);
    expect([verified, status, wrong, after].map(toHex)).toEqual(['9000', '9000', '63c2', '63c2']);
  });

  it('answers reads at once when idle, and queues them behind a command that needs I/O', async () => {
    const card = await createDemoCard();
    const chuid = getDataApdu(0x5fc102);
    const atOnce = card.transmitNow(chuid);
    expect(atOnce).toBeInstanceOf(Uint8Array);
    expect(toHex(atOnce as Uint8Array)).toBe(toHex(await card.transmit(chuid)));
    // A VERIFY awaits scrypt and a save: it is queued, and a read sent meanwhile waits for it.
    const order: string[] = [];
    const verify = card.transmitNow(verifyPinApdu(DEMO_CARD_PIN));
    const read = card.transmitNow(chuid);
    expect(verify).toBeInstanceOf(Promise);
    expect(read).toBeInstanceOf(Promise);
    await Promise.all([Promise.resolve(verify).then(() => order.push('verify')), Promise.resolve(read).then(() => order.push('read'))]);
    expect(order).toEqual(['verify', 'read']);
    expect(toHex((await verify) as Uint8Array)).toBe('9000');
    expect(card.transmitNow(chuid)).toBeInstanceOf(Uint8Array);
    card.remove();
    await expect(Promise.resolve(card.transmitNow(chuid))).rejects.toThrow(CardNotPresentError);
  });

  it('a demo card has fresh RSA-2048 and P-256 keys and self-signed certificates', async () => {
    const [a, b] = await Promise.all([createDemoCard(), createDemoCard()]);
    const certOf = async (card: SoftCard, tag: number): Promise<X509Certificate> => {
      const answer = await exchange((x) => card.transmit(x), getDataApdu(tag));
      return new X509Certificate(answer.data.subarray(8, answer.data.length - 5));
    };
    const auth = await certOf(a, 0x5fc105);
    const sign = await certOf(a, 0x5fc10a);
    expect(auth.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(sign.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(auth.verify(auth.publicKey)).toBe(true);
    expect((await certOf(b, 0x5fc105)).fingerprint256).not.toBe(auth.fingerprint256);
    expect(a.vault.document.guid).not.toBe(b.vault.document.guid);
  });

  it('closes: forgets keys and stops events', async () => {
    const card = await createDemoCard();
    await card.transmit(verifyPinApdu(DEMO_CARD_PIN));
    let events = 0;
    card.on('removed', () => (events += 1));
    await card.close();
    expect(card.vault.unlocked).toBe(false);
    card.remove();
    expect(events).toBe(0);
    await expect(card.transmit(verifyPinApdu())).rejects.toThrow(CardNotPresentError);
  });
});
