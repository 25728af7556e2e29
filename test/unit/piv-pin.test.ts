// PIN and PUK rules: retry counters, blocking, PUK reset, CHANGE REFERENCE DATA, and the
// access rule of each key slot (9C "PIN always", 9E no PIN).
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  changeReferenceDataApdu,
  exchangeChain,
  generalAuthenticateApdus,
  resetRetryCounterApdu,
  verifyPinApdu,
} from '../../vsc/piv/host-commands.js';
import type { SlotName } from '../../vsc/soft-card/algorithms.js';
import { parseCardDocument, type CardDocument } from '../../vsc/soft-card/card-file.js';
import type { CardDocumentStore } from '../../vsc/soft-card/card-store.js';
import { MemoryCardStore } from '../../vsc/soft-card/card-store.js';
import { CardVault } from '../../vsc/soft-card/card-vault.js';
import { createCertificate } from '../../vsc/soft-card/certificates.js';
import { createMemoryCard } from '../../vsc/soft-card/memory-card.js';
import { SoftCard } from '../../vsc/soft-card/soft-card.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

let p256: KeyObject;
let rsa: KeyObject;
beforeAll(() => {
  p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
});

async function makeCard(slots?: ReadonlyArray<readonly [SlotName, KeyObject]>): Promise<{ card: SoftCard; store: MemoryCardStore }> {
  const chosen = slots ?? [['9a', p256], ['9c', p256], ['9d', rsa], ['9e', p256]];
  const contents = await Promise.all(
    chosen.map(async ([slot, privateKey]) => ({ slot, privateKey, certificate: await createCertificate({ subject: `CN=${slot}`, privateKey, slot, days: 1 }) })),
  );
  return createMemoryCard({ name: 'test', pin: '123456', puk: '12345678', slots: contents, scryptCost: { N: 16, r: 1, p: 1 } });
}

const send = async (card: SoftCard, apdu: Uint8Array): Promise<string> => toHex(await card.transmit(apdu));
const sign = async (card: SoftCard, slot: number): Promise<number> => {
  const digest = createHash('sha256').update('x').digest();
  const apdus = slot === 0x9d ? generalAuthenticateApdus(0x07, slot, new Uint8Array(256)) : generalAuthenticateApdus(0x11, slot, digest);
  return (await exchangeChain((a) => card.transmit(a), apdus)).sw;
};

describe('VERIFY', () => {
  it('verifies, reports status, and resets', async () => {
    const { card } = await makeCard();
    expect(await send(card, verifyPinApdu())).toBe('63c3');
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
    expect(await send(card, verifyPinApdu())).toBe('9000');
    expect(await send(card, Uint8Array.of(0x00, 0x20, 0xff, 0x80))).toBe('9000');
    expect(await send(card, verifyPinApdu())).toBe('63c3');
  });

  it('counts wrong PINs down, blocks at zero, and then refuses even the right PIN', async () => {
    const { card } = await makeCard();
    expect(await send(card, verifyPinApdu('654321'))).toBe('63c2');
    expect(await send(card, verifyPinApdu())).toBe('63c2');
    expect(await send(card, verifyPinApdu('654321'))).toBe('63c1');
    expect(await send(card, verifyPinApdu('654321'))).toBe('63c0');
    expect(await send(card, verifyPinApdu('123456'))).toBe('6983');
    expect(await send(card, verifyPinApdu())).toBe('6983');
    expect(card.vault.triesLeft('pin')).toBe(0);
  });

  it('restores the counter on a right PIN', async () => {
    const { card } = await makeCard();
    expect(await send(card, verifyPinApdu('111111'))).toBe('63c2');
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
    expect(card.vault.triesLeft('pin')).toBe(3);
  });

  it('a wrong PIN clears an earlier verification', async () => {
    const { card } = await makeCard();
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
    expect(await sign(card, 0x9a)).toBe(0x9000);
    expect(await send(card, verifyPinApdu('000000'))).toBe('63c2');
    expect(await sign(card, 0x9a)).toBe(0x6982);
  });

  it('accepts 8-digit PINs', async () => {
    const { card } = await makeCard();
    expect(await send(card, changeReferenceDataApdu('pin', '123456', '87654321'))).toBe('9000');
    expect(await send(card, verifyPinApdu('87654321'))).toBe('9000');
  });

  it('counts the attempt before checking it, and refuses to check when that cannot be saved', async () => {
    const { card } = await makeCard();
    const failing: CardDocumentStore = { save: () => Promise.reject(new Error('disk full')) };
    const broken = new SoftCard({ name: 'broken', vault: new CardVault(card.vault.document, failing) });
    expect(await send(broken, verifyPinApdu('123456'))).toBe('6581');
    expect(await send(broken, verifyPinApdu())).toBe('63c3');
  });
});

describe('key access rules', () => {
  it('9A and 9D need the PIN once; 9C needs it before every signature', async () => {
    const { card } = await makeCard();
    expect(await sign(card, 0x9a)).toBe(0x6982);
    expect(await sign(card, 0x9c)).toBe(0x6982);
    expect(await sign(card, 0x9d)).toBe(0x6982);
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
    expect(await sign(card, 0x9c)).toBe(0x9000);
    expect(await sign(card, 0x9c)).toBe(0x6982);
    expect(await sign(card, 0x9a)).toBe(0x9000);
    expect(await sign(card, 0x9a)).toBe(0x9000);
    expect(await sign(card, 0x9d)).toBe(0x9000);
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
    expect(await sign(card, 0x9c)).toBe(0x9000);
  });

  it('9E needs no PIN once the keys have been unlocked since start', async () => {
    const { card } = await makeCard();
    expect(await sign(card, 0x9e)).toBe(0x6982);
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
    expect(await send(card, Uint8Array.of(0x00, 0x20, 0xff, 0x80))).toBe('9000');
    expect(await sign(card, 0x9a)).toBe(0x6982);
    expect(await sign(card, 0x9e)).toBe(0x9000);
    card.remove();
    card.insert();
    expect(await sign(card, 0x9e)).toBe(0x9000);
  });
});

describe('CHANGE REFERENCE DATA', () => {
  it('changes the PIN, and the change is in the saved document', async () => {
    const { card, store } = await makeCard();
    expect(await send(card, changeReferenceDataApdu('pin', '123456', '246810'))).toBe('9000');
    expect(await send(card, verifyPinApdu('123456'))).toBe('63c2');
    expect(await send(card, verifyPinApdu('246810'))).toBe('9000');

    const reloaded = reload(store);
    expect(await send(reloaded, verifyPinApdu('123456'))).toBe('63c2');
    expect(await send(reloaded, verifyPinApdu('246810'))).toBe('9000');
    expect(await sign(reloaded, 0x9a)).toBe(0x9000);
  });

  it('counts a wrong old PIN against the PIN', async () => {
    const { card } = await makeCard();
    expect(await send(card, changeReferenceDataApdu('pin', '000000', '246810'))).toBe('63c2');
    expect(await send(card, changeReferenceDataApdu('pin', '000000', '246810'))).toBe('63c1');
    expect(await send(card, changeReferenceDataApdu('pin', '000000', '246810'))).toBe('63c0');
    expect(await send(card, changeReferenceDataApdu('pin', '123456', '246810'))).toBe('6983');
  });

  it('does not spend a try on a new PIN of the wrong format', async () => {
    const { card } = await makeCard();
    expect(await send(card, changeReferenceDataApdu('pin', '123456', '12ab56'))).toBe('6a80');
    expect(card.vault.triesLeft('pin')).toBe(3);
  });

  it('changes the PUK', async () => {
    const { card, store } = await makeCard();
    expect(await send(card, changeReferenceDataApdu('puk', '12345678', 'abcdefgh'))).toBe('9000');
    expect(await send(card, resetRetryCounterApdu('12345678', '111111'))).toBe('63c2');
    const reloaded = reload(store);
    expect(await send(reloaded, resetRetryCounterApdu('abcdefgh', '111111'))).toBe('9000');
    expect(await send(reloaded, verifyPinApdu('111111'))).toBe('9000');
  });
});

describe('RESET RETRY COUNTER', () => {
  it('unblocks the PIN with the PUK and sets a new PIN', async () => {
    const { card, store } = await makeCard();
    for (let i = 0; i < 3; i += 1) await send(card, verifyPinApdu('000000'));
    expect(await send(card, verifyPinApdu())).toBe('6983');
    expect(await send(card, resetRetryCounterApdu('87654321', '222222'))).toBe('63c2');
    expect(card.vault.triesLeft('puk')).toBe(2);
    expect(await send(card, resetRetryCounterApdu('12345678', '222222'))).toBe('9000');
    expect(card.vault.triesLeft('pin')).toBe(3);
    expect(card.vault.triesLeft('puk')).toBe(3);
    // The reset leaves the PIN unverified.
    expect(await send(card, verifyPinApdu())).toBe('63c3');
    expect(await send(card, verifyPinApdu('123456'))).toBe('63c2');
    expect(await send(card, verifyPinApdu('222222'))).toBe('9000');
    const document = parseCardDocument(store.text ?? '');
    expect(document.pin.triesLeft).toBe(3);
  });

  it('blocks the PUK after its own retries', async () => {
    const { card } = await makeCard();
    expect(await send(card, resetRetryCounterApdu('00000000', '222222'))).toBe('63c2');
    expect(await send(card, resetRetryCounterApdu('00000000', '222222'))).toBe('63c1');
    expect(await send(card, resetRetryCounterApdu('00000000', '222222'))).toBe('63c0');
    expect(await send(card, resetRetryCounterApdu('12345678', '222222'))).toBe('6983');
    expect(card.vault.triesLeft('pin')).toBe(3);
    expect(await send(card, verifyPinApdu('123456'))).toBe('9000');
  });

  it('keeps counters across a reload', async () => {
    const { card, store } = await makeCard();
    await send(card, verifyPinApdu('000000'));
    await send(card, resetRetryCounterApdu('00000000', '222222'));
    const reloaded = reload(store);
    expect(await send(reloaded, verifyPinApdu())).toBe('63c2');
    expect(reloaded.vault.triesLeft('puk')).toBe(2);
  });
});

function reload(store: MemoryCardStore): SoftCard {
  const document: CardDocument = parseCardDocument(store.text ?? '');
  return new SoftCard({ name: 'reloaded', vault: new CardVault(document, store) });
}
