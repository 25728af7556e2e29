// Table-driven APDU tests of the PIV applet behind the ISO front end: exact bytes in, exact bytes out.
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkAtr } from '../../vsc/codec.js';
import { PivCardEngine } from '../../vsc/piv/applet.js';
import { SOFT_PIV_ATR } from '../../vsc/piv/atr.js';
import type { PivCredentials } from '../../vsc/piv/credentials.js';
import type { PivKeyOperations } from '../../vsc/piv/key-operations.js';
import { isoChunkPolicy } from '../../vsc/iso7816/response-chaining.js';
import { exchange, exchangeChain, generalAuthenticateApdus, getDataApdu, verifyPinApdu } from '../../vsc/piv/host-commands.js';
import { decodeSingleTlv, decodeTlvList, findTlv } from '../../vsc/iso7816/tlv.js';
import type { SlotName } from '../../vsc/soft-card/algorithms.js';
import { createCertificate } from '../../vsc/soft-card/certificates.js';
import { createMemoryCard } from '../../vsc/soft-card/memory-card.js';
import type { SoftCard } from '../../vsc/soft-card/soft-card.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const spaced = (s: string): string => s.replace(/\s+/g, '').toLowerCase();

let rsa: KeyObject;
let p256: KeyObject;
let p384: KeyObject;
const certificatesOf = new WeakMap<SoftCard, Map<SlotName, Uint8Array>>();

async function makeCard(slots: ReadonlyArray<readonly [SlotName, KeyObject]>): Promise<SoftCard> {
  const contents = await Promise.all(
    slots.map(async ([slot, privateKey]) => ({ slot, privateKey, certificate: await createCertificate({ subject: `CN=Test ${slot}`, privateKey, slot, days: 10 }) })),
  );
  const { card } = await createMemoryCard({ name: 'test', pin: '123456', puk: '12345678', slots: contents, label: 'Test PIV', scryptCost: { N: 16, r: 1, p: 1 } });
  certificatesOf.set(card, new Map(contents.map((c) => [c.slot, c.certificate])));
  return card;
}

beforeAll(() => {
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
});

const APT =
  '61 29 4f 06 00 00 10 00 01 00 79 07 4f 05 a0 00 00 03 08 50 08 54 65 73 74 20 50 49 56 ' +
  'ac 0c 80 01 07 80 01 11 80 01 14 06 01 00';

describe('ATR', () => {
  it('is the T=0 PIV ATR and passes QEMU\'s check', () => {
    expect(toHex(SOFT_PIV_ATR)).toBe(spaced('3b 0b 80 f9 a0 00 00 03 08 00 00 10 00'));
    expect(checkAtr(SOFT_PIV_ATR)).toEqual({ ok: true });
    expect(SOFT_PIV_ATR.length).toBeLessThanOrEqual(40);
    // Not the contactless form OpenSC treats specially: 3B 8x 80 01.
    expect((SOFT_PIV_ATR[1] ?? 0) & 0xf0).not.toBe(0x80);
  });
});

describe('PIV applet commands', () => {
  let card: SoftCard;
  beforeAll(async () => {
    card = await makeCard([['9a', rsa], ['9c', p256], ['9e', p384]]);
  });

  const table: ReadonlyArray<readonly [string, string, string]> = [
    // SELECT
    ['SELECT truncated AID, T=0 (no Le)', '00 a4 04 00 09 a0 00 00 03 08 00 00 10 00', '61 2b'],
    ['SELECT truncated AID with Le', '00 a4 04 00 09 a0 00 00 03 08 00 00 10 00 00', `${APT} 90 00`],
    ['SELECT full AID with Le', '00 a4 04 00 0b a0 00 00 03 08 00 00 10 00 01 00 00', `${APT} 90 00`],
    ['SELECT RID only (partial name)', '00 a4 04 00 05 a0 00 00 03 08 00', `${APT} 90 00`],
    ['SELECT P2=0C: no answer data', '00 a4 04 0c 09 a0 00 00 03 08 00 00 10 00', '90 00'],
    ['SELECT Microsoft PnP AID', '00 a4 04 00 0b a0 00 00 03 97 43 49 44 5f 01 00 00', '6a 82'],
    ['SELECT GIDS AID', '00 a4 04 00 09 a0 00 00 03 97 42 54 46 59 00', '6a 82'],
    ['SELECT shorter than the RID', '00 a4 04 00 04 a0 00 00 03 00', '6a 82'],
    ['SELECT AID with a wrong byte', '00 a4 04 00 09 a0 00 00 03 08 00 00 10 01', '6a 82'],
    ['SELECT without AID', '00 a4 04 00 00', '6a 82'],
    ['SELECT MF by file id', '00 a4 00 00 02 3f 00', '6a 82'],
    ['SELECT EF.ATR by path', '00 a4 08 00 02 2f 01', '6a 82'],
    ['SELECT bad P1', '00 a4 05 00 09 a0 00 00 03 08 00 00 10 00', '6a 86'],
    ['SELECT bad P2', '00 a4 04 04 09 a0 00 00 03 08 00 00 10 00', '6a 86'],
    // GET DATA
    ['GET DATA discovery', '00 cb 3f ff 03 5c 01 7e 00', '7e 12 4f 0b a0 00 00 03 08 00 00 10 00 01 00 5f 2f 02 40 00 90 00'],
    ['GET DATA discovery, T=0', '00 cb 3f ff 03 5c 01 7e', '61 14'],
    ['GET DATA key history', '00 cb 3f ff 05 5c 03 5f c1 0c 00', '53 08 c1 01 00 c2 01 00 fe 00 90 00'],
    ['GET DATA security object (absent)', '00 cb 3f ff 05 5c 03 5f c1 06 00', '6a 82'],
    ['GET DATA printed info (absent)', '00 cb 3f ff 05 5c 03 5f c1 09 00', '6a 82'],
    ['GET DATA key management cert (empty slot)', '00 cb 3f ff 05 5c 03 5f c1 0b 00', '6a 82'],
    ['GET DATA BIT group template (absent)', '00 cb 3f ff 04 5c 02 7f 61 00', '6a 82'],
    ['GET DATA bad P1-P2', '00 cb 3f fe 03 5c 01 7e 00', '6a 86'],
    ['GET DATA without tag list', '00 cb 3f ff 00', '6a 80'],
    ['GET DATA truncated tag list', '00 cb 3f ff 02 5c 03', '6a 80'],
    ['GET DATA wrong list tag', '00 cb 3f ff 03 5d 01 7e', '6a 80'],
    ['GET DATA empty tag', '00 cb 3f ff 02 5c 00', '6a 80'],
    ['GET DATA 4-byte tag', '00 cb 3f ff 06 5c 04 5f c1 02 01', '6a 80'],
    ['GET DATA trailing bytes', '00 cb 3f ff 04 5c 01 7e 00', '6a 80'],
    // VERIFY forms that need no PIN
    ['VERIFY status, case 1', '00 20 00 80', '63 c3'],
    ['VERIFY status, T=0 case 1 with P3=00', '00 20 00 80 00', '63 c3'],
    ['VERIFY reset', '00 20 ff 80', '90 00'],
    ['VERIFY reset with data', '00 20 ff 80 08 31 32 33 34 35 36 ff ff', '67 00'],
    ['VERIFY wrong PIN length', '00 20 00 80 06 31 32 33 34 35 36', '67 00'],
    ['VERIFY non-digit PIN', '00 20 00 80 08 31 32 33 34 35 41 ff ff', '6a 80'],
    ['VERIFY 5-digit PIN', '00 20 00 80 08 31 32 33 34 35 ff ff ff', '6a 80'],
    ['VERIFY padding inside the PIN', '00 20 00 80 08 31 32 ff 34 35 36 37 ff', '6a 80'],
    ['VERIFY PUK reference', '00 20 00 81 08 31 32 33 34 35 36 37 38', '6a 88'],
    ['VERIFY global PIN reference', '00 20 00 00 08 31 32 33 34 35 36 ff ff', '6a 88'],
    ['VERIFY bad P1', '00 20 01 80 08 31 32 33 34 35 36 ff ff', '6a 86'],
    // CHANGE REFERENCE DATA / RESET RETRY COUNTER malformed
    ['CHANGE REFERENCE DATA short data', '00 24 00 80 08 31 32 33 34 35 36 ff ff', '67 00'],
    ['CHANGE REFERENCE DATA bad reference', '00 24 00 9a 10 31 32 33 34 35 36 ff ff 31 32 33 34 35 36 ff ff', '6a 88'],
    ['CHANGE REFERENCE DATA bad P1', '00 24 01 80 10 31 32 33 34 35 36 ff ff 31 32 33 34 35 36 ff ff', '6a 86'],
    ['CHANGE REFERENCE DATA bad new PIN', '00 24 00 80 10 31 32 33 34 35 36 ff ff 31 32 33 ff ff ff ff ff', '6a 80'],
    ['RESET RETRY COUNTER bad reference', '00 2c 00 81 10 31 32 33 34 35 36 37 38 31 32 33 34 35 36 ff ff', '6a 88'],
    ['RESET RETRY COUNTER short data', '00 2c 00 80 08 31 32 33 34 35 36 37 38', '67 00'],
    ['RESET RETRY COUNTER bad new PIN', '00 2c 00 80 10 31 32 33 34 35 36 37 38 41 42 43 44 45 46 ff ff', '6a 80'],
    ['RESET RETRY COUNTER bad P1', '00 2c 01 80 10 31 32 33 34 35 36 37 38 31 32 33 34 35 36 ff ff', '6a 86'],
    // GENERAL AUTHENTICATE parameter and security errors
    ['GA management key 9B with an asymmetric algorithm', '00 87 07 9b 04 7c 02 81 00', '6a 86'],
    ['GA management key 9B witness (no management key here)', '00 87 03 9b 04 7c 02 80 00', '6a 80'],
    ['GA management key 9B, challenge plus more', '00 87 03 9b 06 7c 04 81 00 82 00', '6a 80'],
    ['GA retired key 82', '00 87 07 82 04 7c 02 81 00', '6a 86'],
    ['GA unknown algorithm', '00 87 06 9a 04 7c 02 81 00', '6a 86'],
    ['GA empty slot 9D', '00 87 11 9d 06 7c 04 82 00 81 00', '6a 88'],
    ['GA algorithm not the slot\'s', '00 87 11 9a 06 7c 04 82 00 81 00', '6a 86'],
    ['GA 9A without PIN', '00 87 07 9a 06 7c 04 82 00 81 00', '69 82'],
    ['GA 9C without PIN', '00 87 11 9c 06 7c 04 82 00 81 00', '69 82'],
    ['GA 9E before any PIN unlocked the keys', '00 87 14 9e 24 7c 22 82 00 81 1e 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d', '69 82'],
    // Others
    ['unknown instruction', '00 ca 01 00 00', '6d 00'],
    ['PUT DATA (not implemented)', '00 db 3f ff 03 5c 01 7e', '6d 00'],
    ['GENERATE ASYMMETRIC KEY PAIR (not implemented)', '00 47 00 9a 05 ac 03 80 01 11', '6d 00'],
    ['GET RESPONSE with nothing pending', '00 c0 00 00 00', '6a 88'],
  ];

  it.each(table)('%s', async (_name, input, expected) => {
    expect(toHex(await card.transmit(hex(input)))).toBe(spaced(expected));
  });

  it('serves the CHUID with a 16-byte GUID, a FASC-N and an expiry', async () => {
    const answer = await exchange((a) => card.transmit(a), getDataApdu(0x5fc102));
    expect(answer.sw).toBe(0x9000);
    const chuid = decodeSingleTlv(answer.data);
    expect(chuid.tag).toBe(0x53);
    const items = decodeTlvList(chuid.value);
    expect(items.map((t) => t.tag)).toEqual([0x30, 0x34, 0x35, 0x3e, 0xfe]);
    expect(findTlv(items, 0x30)?.value.length).toBe(25);
    expect(toHex(findTlv(items, 0x34)?.value ?? new Uint8Array())).toBe(card.vault.document.guid);
    expect(Buffer.from(findTlv(items, 0x35)?.value ?? []).toString()).toMatch(/^20[0-9]{6}$/);
  });

  it('gives different cards different GUIDs', async () => {
    const other = await makeCard([['9a', rsa]]);
    expect(other.vault.document.guid).not.toBe(card.vault.document.guid);
  });

  it('serves a CCC that OpenSC will not take for a CAC card', async () => {
    const answer = await exchange((a) => card.transmit(a), getDataApdu(0x5fc107));
    const items = decodeTlvList(decodeSingleTlv(answer.data).value);
    expect(findTlv(items, 0xf0)?.value.length).toBe(21);
    expect(findTlv(items, 0xf3)?.value.length).toBe(0);
  });

  it.each([
    ['9a', 0x5fc105],
    ['9c', 0x5fc10a],
    ['9e', 0x5fc101],
  ] as const)('serves the slot %s certificate as 53 { 70 cert, 71 00, FE 00 }', async (slot, tag) => {
    const answer = await exchange((a) => card.transmit(a), getDataApdu(tag));
    expect(answer.sw).toBe(0x9000);
    const items = decodeTlvList(decodeSingleTlv(answer.data).value);
    expect(items.map((t) => t.tag)).toEqual([0x70, 0x71, 0xfe]);
    const der = findTlv(items, 0x70)?.value ?? new Uint8Array();
    expect(toHex(der)).toBe(toHex(certificatesOf.get(card)?.get(slot) ?? new Uint8Array()));
    expect(new X509Certificate(der).subject).toBe(`CN=Test ${slot}`);
    expect(toHex(findTlv(items, 0x71)?.value ?? new Uint8Array())).toBe('00');
  });

  it('keeps the PIN state across SELECT and a failed SELECT', async () => {
    const fresh = await makeCard([['9a', rsa]]);
    const t = (a: Uint8Array): Promise<Uint8Array> => fresh.transmit(a);
    expect((await exchange(t, verifyPinApdu('123456'))).sw).toBe(0x9000);
    await fresh.transmit(hex('00 a4 04 00 09 a0 00 00 03 08 00 00 10 00'));
    await fresh.transmit(hex('00 a4 04 00 0b a0 00 00 03 97 43 49 44 5f 01 00'));
    expect(toHex(await fresh.transmit(hex('00 20 00 80')))).toBe('9000');
  });

  it('forgets the PIN state on re-insertion', async () => {
    const fresh = await makeCard([['9a', rsa]]);
    expect((await exchange((a) => fresh.transmit(a), verifyPinApdu('123456'))).sw).toBe(0x9000);
    fresh.remove();
    fresh.insert();
    expect(toHex(await fresh.transmit(hex('00 20 00 80')))).toBe('63c3');
  });

  it.each([
    ['3DES (OpenSC asks with algorithm 00)', 0x00, 8],
    ['3DES', 0x03, 8],
    ['AES-128', 0x08, 16],
    ['AES-256', 0x0c, 16],
  ])('gives a random 9B challenge for %s, as OpenSC\'s C_GenerateRandom asks', async (_name, algorithm, size) => {
    const first = await exchange((a) => card.transmit(a), Uint8Array.of(0x00, 0x87, algorithm, 0x9b, 0x04, 0x7c, 0x02, 0x81, 0x00));
    const second = await exchange((a) => card.transmit(a), Uint8Array.of(0x00, 0x87, algorithm, 0x9b, 0x04, 0x7c, 0x02, 0x81, 0x00));
    expect(first.sw).toBe(0x9000);
    expect(toHex(first.data.subarray(0, 4))).toBe(`7c${(size + 2).toString(16).padStart(2, '0')}81${size.toString(16).padStart(2, '0')}`);
    expect(first.data.length).toBe(4 + size);
    expect(toHex(first.data)).not.toBe(toHex(second.data));
  });

  it('accepts RSA-2048 GENERAL AUTHENTICATE only as a command chain of two', async () => {
    const apdus = generalAuthenticateApdus(0x07, 0x9a, new Uint8Array(256));
    expect(apdus.map((a) => a[0])).toEqual([0x10, 0x00]);
    expect(apdus.reduce((n, a) => n + a.length - 5, 0)).toBe(266);
    const answer = await exchangeChain((a) => card.transmit(a), apdus);
    expect(answer.sw).toBe(0x6982);
  });
});

describe('answer lengths a guest behind QEMU xHCI can take', () => {
  const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
  const noKeys: PivKeyOperations = {
    algorithmOf: () => undefined,
    isUsable: () => false,
    rsaPrivate: () => new Uint8Array(0),
    ecdsaSign: () => new Uint8Array(0),
    ecdh: () => new Uint8Array(0),
  };
  const noCredentials: PivCredentials = { triesLeft: () => 3, maxTries: () => 3, check: () => Promise.resolve(false), commit: () => Promise.resolve() };
  /** Printed information (5FC109) holds `size` bytes; every other object is absent. */
  const engineWithObjectOf = (size: () => number, chunkPolicy?: typeof isoChunkPolicy): PivCardEngine =>
    new PivCardEngine({ objects: { get: (tag) => (tag === 0x5fc109 ? pattern(size()) : undefined) }, keys: noKeys, credentials: noCredentials }, chunkPolicy ? { chunkPolicy } : undefined);

  /** A T=0 host: 61 XX -> GET RESPONSE XX, 6C XX -> the command again with Le=XX. Every response is kept. */
  async function read(engine: PivCardEngine, command: Uint8Array): Promise<{ responses: Uint8Array[]; data: Uint8Array; sw: number }> {
    const responses: Uint8Array[] = [];
    const data: number[] = [];
    let next: Uint8Array | undefined = command;
    let sw = 0;
    while (next !== undefined) {
      if (responses.length > 20) throw new Error('endless exchange');
      const response = await engine.transmit(next);
      responses.push(response);
      sw = ((response.at(-2) ?? 0) << 8) | (response.at(-1) ?? 0);
      const sent: Uint8Array = next;
      next = undefined;
      if (sw >> 8 === 0x6c) next = Uint8Array.of(...sent.subarray(0, sent.length - 1), sw & 0xff);
      else {
        data.push(...response.subarray(0, -2));
        if (sw >> 8 === 0x61) next = Uint8Array.of(0x00, 0xc0, 0x00, 0x00, sw & 0xff);
      }
    }
    return { responses, data: Uint8Array.from(data), sw };
  }
  const getData = (le?: number): Uint8Array => Uint8Array.of(0x00, 0xcb, 0x3f, 0xff, 0x05, 0x5c, 0x03, 0x5f, 0xc1, 0x09, ...(le === undefined ? [] : [le & 0xff]));
  // QEMU's usb-ccid sends each response in a CCID message of 10 header bytes + the response.
  const risky = (response: Uint8Array): boolean => (10 + response.length) % 64 === 0;

  it('by default, GET DATA of objects of 0..300 bytes: data intact, no response in a CCID message of a multiple of 64 bytes', async () => {
    let size = 0;
    const engine = engineWithObjectOf(() => size);
    for (size = 0; size <= 300; size++) {
      const forms: [string, Uint8Array][] = [
        ['T=0 (no Le)', getData()],
        ['Le=00', getData(0)],
      ];
      if (size >= 1 && size <= 256) forms.push(['exact Le', getData(size)]);
      for (const [form, command] of forms) {
        const label = `size=${size} ${form}`;
        const r = await read(engine, command);
        expect(r.data, label).toEqual(pattern(size));
        expect(r.sw, label).toBe(0x9000);
        for (const response of r.responses) {
          expect(risky(response), `${label}: response of ${response.length} bytes`).toBe(false);
          expect(response.length, label).toBeLessThanOrEqual(258);
        }
      }
    }
  });

  it('with the plain ISO policy given explicitly, a 52-byte object goes out whole (the case avoided by default)', async () => {
    const engine = engineWithObjectOf(() => 52, isoChunkPolicy);
    const r = await read(engine, getData(52));
    expect(r.responses.map((x) => x.length)).toEqual([54]);
    expect(risky(r.responses[0] ?? new Uint8Array(0))).toBe(true);
    const safe = await read(engineWithObjectOf(() => 52), getData(52));
    expect(safe.responses.map((x) => x.length)).toEqual([53, 3]);
  });
});
