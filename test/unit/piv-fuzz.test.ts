// 100,000 random and mutated APDUs (seeded, so a failure replays): every one gets an answer of
// 2..258 bytes ending in a valid status word, and nothing throws.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isValidStatusWord } from '../../vsc/iso7816/status-words.js';
import { changeReferenceDataApdu, generalAuthenticateApdus, getDataApdu, resetRetryCounterApdu, selectPivApdu, verifyPinApdu } from '../../vsc/piv/host-commands.js';
import type { SlotName } from '../../vsc/soft-card/algorithms.js';
import { createCertificate } from '../../vsc/soft-card/certificates.js';
import { createMemoryCard } from '../../vsc/soft-card/memory-card.js';

/** mulberry32: small, fast, and the same sequence for the same seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = 0x5eed_c0de;
const COUNT = 100_000;

describe('PIV fuzz', () => {
  it(`answers ${COUNT} random and mutated APDUs with a valid status word`, { timeout: 300_000 }, async () => {
    const keys: Array<readonly [SlotName, KeyObject]> = [
      ['9a', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey],
      ['9c', generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey],
      ['9d', generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey],
      ['9e', generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey],
    ];
    const slots = await Promise.all(keys.map(async ([slot, privateKey]) => ({ slot, privateKey, certificate: await createCertificate({ subject: `CN=${slot}`, privateKey, slot, days: 1 }) })));
    const { card } = await createMemoryCard({ name: 'fuzz', pin: '123456', puk: '12345678', slots, scryptCost: { N: 16, r: 1, p: 1 } });

    const corpus: Uint8Array[] = [
      selectPivApdu(),
      getDataApdu(0x7e),
      getDataApdu(0x5fc102),
      getDataApdu(0x5fc105),
      getDataApdu(0x5fc107),
      verifyPinApdu(),
      verifyPinApdu('123456'),
      verifyPinApdu('000000'),
      changeReferenceDataApdu('pin', '123456', '654321'),
      resetRetryCounterApdu('12345678', '123456'),
      ...generalAuthenticateApdus(0x07, 0x9a, new Uint8Array(256).fill(0x01)),
      ...generalAuthenticateApdus(0x11, 0x9c, new Uint8Array(32).fill(0x02)),
      ...generalAuthenticateApdus(0x14, 0x9d, Uint8Array.of(0x04, ...new Uint8Array(96).fill(0x03)), 'exponentiation'),
      ...generalAuthenticateApdus(0x11, 0x9e, new Uint8Array(32).fill(0x04)),
      Uint8Array.of(0x00, 0xc0, 0x00, 0x00, 0x00),
      Uint8Array.of(0x00, 0x20, 0xff, 0x80),
      Uint8Array.of(0x00, 0x87, 0x00, 0x9b, 0x04, 0x7c, 0x02, 0x81, 0x00),
    ];
    const random = prng(SEED);
    const byte = (): number => Math.floor(random() * 256);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;

    const mutate = (source: Uint8Array): Uint8Array => {
      const bytes = [...source];
      const edits = 1 + Math.floor(random() * 3);
      for (let i = 0; i < edits; i += 1) {
        const at = Math.floor(random() * (bytes.length + 1));
        switch (Math.floor(random() * 7)) {
          case 0:
            bytes[at] = byte();
            break;
          case 1:
            bytes.splice(at, 1);
            break;
          case 2:
            bytes.splice(at, 0, byte());
            break;
          case 3:
            bytes.length = Math.min(bytes.length, at);
            break;
          case 4:
            bytes[0] = pick([0x00, 0x10, 0x0c, 0x01, 0x80, 0xff, 0x40, 0x13]);
            break;
          case 5:
            bytes[4] = byte(); // Lc / Le
            break;
          default:
            bytes.push(...Array.from({ length: Math.floor(random() * 8) }, byte));
        }
      }
      return Uint8Array.from(bytes);
    };

    const counts = new Map<number, number>();
    for (let i = 0; i < COUNT; i += 1) {
      const roll = random();
      let apdu: Uint8Array;
      if (roll < 0.25) apdu = Uint8Array.from({ length: Math.floor(random() * 300) }, byte);
      else if (roll < 0.35) apdu = pick(corpus);
      else if (roll < 0.45) apdu = Uint8Array.of(0x00, 0xc0, 0x00, 0x00, byte());
      else apdu = mutate(pick(corpus));

      const response = await card.transmit(apdu);
      const sw1 = response[response.length - 2] ?? -1;
      const sw2 = response[response.length - 1] ?? -1;
      if (response.length < 2 || response.length > 258 || !isValidStatusWord(sw1, sw2)) {
        throw new Error(`APDU #${i} ${Buffer.from(apdu).toString('hex')} got ${Buffer.from(response).toString('hex')}`);
      }
      const sw = (sw1 << 8) | sw2;
      counts.set(sw, (counts.get(sw) ?? 0) + 1);
      // Now and then the card is pulled and put back, as a guest reset would.
      if (random() < 0.001) {
        card.remove();
        card.insert();
      }
    }
    // The run exercised success and error paths alike.
    expect(counts.get(0x9000) ?? 0).toBeGreaterThan(100);
    expect([...counts.keys()].filter((sw) => sw >> 8 !== 0x61).length).toBeGreaterThan(10);
  });
});
