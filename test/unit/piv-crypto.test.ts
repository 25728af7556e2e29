// GENERAL AUTHENTICATE results checked with node:crypto: the card signs, decrypts and agrees
// keys exactly as a host's middleware expects.
import {
  constants,
  createECDH,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  publicEncrypt,
  randomBytes,
  verify,
  type KeyObject,
} from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeSingleTlv, decodeTlvList, findTlv } from '../../vsc/iso7816/tlv.js';
import { exchange, exchangeChain, generalAuthenticateApdus, verifyPinApdu, type Transmit } from '../../vsc/piv/host-commands.js';
import type { SlotName } from '../../vsc/soft-card/algorithms.js';
import { createCertificate } from '../../vsc/soft-card/certificates.js';
import { createMemoryCard } from '../../vsc/soft-card/memory-card.js';
import type { SoftCard } from '../../vsc/soft-card/soft-card.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const keys: Record<'rsa' | 'p256' | 'p384', KeyObject[]> = { rsa: [], p256: [], p384: [] };
const ALG = { rsa: 0x07, p256: 0x11, p384: 0x14 } as const;
const SLOT_ID: Record<SlotName, number> = { '9a': 0x9a, '9c': 0x9c, '9d': 0x9d, '9e': 0x9e };

beforeAll(() => {
  for (let i = 0; i < 2; i += 1) {
    keys.rsa.push(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    keys.p256.push(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
    keys.p384.push(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey);
  }
});

async function makeCard(slots: ReadonlyArray<readonly [SlotName, KeyObject]>): Promise<SoftCard> {
  const contents = await Promise.all(
    slots.map(async ([slot, privateKey]) => ({ slot, privateKey, certificate: await createCertificate({ subject: `CN=${slot}`, privateKey, slot, days: 1 }) })),
  );
  return (await createMemoryCard({ name: 'test', pin: '123456', puk: '12345678', slots: contents, scryptCost: { N: 16, r: 1, p: 1 } })).card;
}

/** The 82 value of a 7C { 82 ... } answer. */
function result(data: Uint8Array): Uint8Array {
  const template = decodeSingleTlv(data);
  expect(template.tag).toBe(0x7c);
  const value = findTlv(decodeTlvList(template.value), 0x82)?.value;
  if (value === undefined) throw new Error('no 82 in the answer');
  return value;
}

/** PKCS#1 v1.5 signature block for SHA-256, as a host middleware pads it. */
function pkcs1Sha256Block(message: Uint8Array): Uint8Array {
  const digestInfo = Buffer.concat([hex('3031300d060960864801650304020105000420'), createHash('sha256').update(message).digest()]);
  const block = Buffer.alloc(256, 0xff);
  block[0] = 0x00;
  block[1] = 0x01;
  block[256 - digestInfo.length - 1] = 0x00;
  digestInfo.copy(block, 256 - digestInfo.length);
  return block;
}

async function authenticate(card: SoftCard, algorithm: number, slot: number, input: Uint8Array, kind: 'challenge' | 'exponentiation' = 'challenge'): Promise<{ sw: number; data: Uint8Array }> {
  const t: Transmit = (a) => card.transmit(a);
  return exchangeChain(t, generalAuthenticateApdus(algorithm, slot, input, kind));
}

async function verifyPin(card: SoftCard): Promise<void> {
  expect((await exchange((a) => card.transmit(a), verifyPinApdu('123456'))).sw).toBe(0x9000);
}

describe('RSA-2048 signatures (raw private operation on the padded block)', () => {
  it.each(['9a', '9c', '9d', '9e'] as const)('slot %s', async (slot) => {
    const key = keys.rsa[0] as KeyObject;
    const card = await makeCard([[slot, key]]);
    await verifyPin(card);
    const message = randomBytes(100);
    const answer = await authenticate(card, ALG.rsa, SLOT_ID[slot], pkcs1Sha256Block(message));
    expect(answer.sw).toBe(0x9000);
    const signature = result(answer.data);
    expect(signature.length).toBe(256);
    expect(verify('sha256', message, createPublicKey(key), signature)).toBe(true);
  });
});

describe('ECDSA over the host\'s digest', () => {
  const cases = [
    ['p256', 'sha256', '9a'],
    ['p256', 'sha256', '9c'],
    ['p256', 'sha256', '9e'],
    ['p384', 'sha384', '9a'],
    ['p384', 'sha384', '9c'],
    ['p384', 'sha384', '9e'],
    // A longer digest is cut to the curve's size, a shorter one taken as a smaller number (FIPS 186-4).
    ['p256', 'sha384', '9a'],
    ['p256', 'sha512', '9a'],
    ['p384', 'sha256', '9a'],
    ['p384', 'sha1', '9a'],
  ] as const;
  it.each(cases)('%s with a %s digest in slot %s', async (curve, hash, slot) => {
    const key = keys[curve][0] as KeyObject;
    const card = await makeCard([[slot, key]]);
    await verifyPin(card);
    for (let i = 0; i < 5; i += 1) {
      const message = randomBytes(64);
      const answer = await authenticate(card, ALG[curve], SLOT_ID[slot], createHash(hash).update(message).digest());
      expect(answer.sw).toBe(0x9000);
      const signature = result(answer.data);
      expect(signature[0]).toBe(0x30); // DER SEQUENCE { r, s }
      expect(verify(hash, message, createPublicKey(key), signature)).toBe(true);
      if (slot === '9c') await verifyPin(card);
    }
  });

  it('answers a zero-length digest with 6A80', async () => {
    const card = await makeCard([['9a', keys.p256[0] as KeyObject]]);
    await verifyPin(card);
    expect(toHex(await card.transmit(hex('00 87 11 9a 04 7c 02 82 00')))).toBe('6a80');
    expect(toHex(await card.transmit(hex('00 87 11 9a 06 7c 04 82 00 81 00')))).toBe('6a80');
  });
});

describe('slot 9D key management', () => {
  it('decrypts RSA PKCS#1 v1.5 and OAEP ciphertexts with the raw operation', async () => {
    const key = keys.rsa[1] as KeyObject;
    const card = await makeCard([['9d', key]]);
    await verifyPin(card);
    const secret = randomBytes(32);

    const v15 = publicEncrypt({ key: createPublicKey(key), padding: constants.RSA_PKCS1_PADDING }, secret);
    const answer = await authenticate(card, ALG.rsa, 0x9d, v15);
    expect(answer.sw).toBe(0x9000);
    const block = result(answer.data);
    expect(block.length).toBe(256);
    expect([block[0], block[1]]).toEqual([0x00, 0x02]);
    expect(toHex(block.subarray(block.indexOf(0, 2) + 1))).toBe(toHex(secret));

    const oaep = publicEncrypt({ key: createPublicKey(key), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
    const raw = result((await authenticate(card, ALG.rsa, 0x9d, oaep)).data);
    // Re-encrypting the card's raw output with no padding gives the ciphertext back.
    expect(toHex(publicEncrypt({ key: createPublicKey(key), padding: constants.RSA_NO_PADDING }, raw))).toBe(toHex(oaep));
  });

  it.each([
    ['p256', 'prime256v1'],
    ['p384', 'secp384r1'],
  ] as const)('agrees an ECDH secret on %s with node', async (curve, nodeCurve) => {
    const key = keys[curve][1] as KeyObject;
    const card = await makeCard([['9d', key]]);
    await verifyPin(card);
    const host = createECDH(nodeCurve);
    const hostPoint = host.generateKeys();
    const answer = await authenticate(card, ALG[curve], 0x9d, hostPoint, 'exponentiation');
    expect(answer.sw).toBe(0x9000);
    const cardPoint = Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x ?? '', 'base64url');
    const cardPublic = Buffer.concat([Buffer.of(0x04), cardPoint, Buffer.from(createPublicKey(key).export({ format: 'jwk' }).y ?? '', 'base64url')]);
    expect(toHex(result(answer.data))).toBe(toHex(host.computeSecret(cardPublic)));
  });

  it('refuses bad ECDH input with 6A80', async () => {
    const card = await makeCard([['9d', keys.p256[1] as KeyObject], ['9a', keys.p256[0] as KeyObject]]);
    await verifyPin(card);
    const good = createECDH('prime256v1').generateKeys();
    const notOnCurve = Buffer.from(good);
    notOnCurve[64] = (notOnCurve[64] ?? 0) ^ 0x01;
    const other = createECDH('prime256v1');
    other.generateKeys();
    const compressed = other.getPublicKey(undefined, 'compressed');
    for (const point of [notOnCurve, compressed, good.subarray(0, 64)]) {
      expect((await authenticate(card, ALG.p256, 0x9d, point, 'exponentiation')).sw).toBe(0x6a80);
    }
    // Key agreement belongs to 9D only.
    expect((await authenticate(card, ALG.p256, 0x9a, good, 'exponentiation')).sw).toBe(0x6a80);
  });

  it('refuses RSA input that is not one modulus-sized block below the modulus', async () => {
    const card = await makeCard([['9d', keys.rsa[1] as KeyObject]]);
    await verifyPin(card);
    expect((await authenticate(card, ALG.rsa, 0x9d, new Uint8Array(255))).sw).toBe(0x6a80);
    expect((await authenticate(card, ALG.rsa, 0x9d, new Uint8Array(257))).sw).toBe(0x6a80);
    expect((await authenticate(card, ALG.rsa, 0x9d, new Uint8Array(256).fill(0xff))).sw).toBe(0x6a80);
    expect((await authenticate(card, ALG.rsa, 0x9d, new Uint8Array(256).fill(0xff), 'exponentiation')).sw).toBe(0x6a80);
  });
});

describe('malformed dynamic authentication templates', () => {
  it.each([
    ['empty template', '7c 00'],
    ['no input', '7c 02 82 00'],
    ['empty challenge', '7c 04 82 00 81 00'],
    ['response not empty', '7c 05 82 01 00 81 00'],
    ['witness (9B mutual authentication)', '7c 04 82 00 80 00'],
    ['wrong outer tag', '7d 06 82 00 81 02 01 02'],
    ['trailing bytes', '7c 06 82 00 81 02 01 02 00'],
    ['truncated', '7c 08 82 00 81 04 01 02'],
    ['three items', '7c 09 82 00 81 01 01 85 02 01 02'],
  ])('%s -> 6A80', async (_name, template) => {
    const card = await makeCard([['9a', keys.p256[0] as KeyObject]]);
    await verifyPin(card);
    const body = hex(template);
    expect(toHex(await card.transmit(Uint8Array.of(0x00, 0x87, 0x11, 0x9a, body.length, ...body)))).toBe('6a80');
  });
});
