// The demo card: fresh keys every run (RSA-2048 in 9A, EC P-256 in 9C), self-signed
// certificates, PIN 123456 and PUK 12345678, kept in memory only. For trying the bridge and
// for tests; nothing it holds is worth protecting, so its key wrapping is cheap.

import { generatePrivateKey, type KeyAlgorithmName, type SlotName } from './algorithms.js';
import { DEFAULT_PIN, DEFAULT_PUK, type SlotContent } from './card-builder.js';
import { createCertificate } from './certificates.js';
import { createMemoryCard } from './memory-card.js';
import type { SoftCard } from './soft-card.js';

export const DEMO_CARD_PIN = DEFAULT_PIN;
export const DEMO_CARD_PUK = DEFAULT_PUK;
export const DEMO_CARD_NAME = 'spice-smartcard demo card';

const DEMO_SLOTS: ReadonlyArray<readonly [SlotName, KeyAlgorithmName, string]> = [
  ['9a', 'rsa2048', 'CN=Demo Card Authentication, O=spice-smartcard demo'],
  ['9c', 'p256', 'CN=Demo Card Signature, O=spice-smartcard demo'],
];

export interface DemoCardOptions {
  readonly name?: string;
}

export async function createDemoCard(options: DemoCardOptions = {}): Promise<SoftCard> {
  const slots: SlotContent[] = await Promise.all(
    DEMO_SLOTS.map(async ([slot, algorithm, subject]) => {
      const privateKey = await generatePrivateKey(algorithm);
      return { slot, privateKey, certificate: await createCertificate({ subject, privateKey, slot, days: 30 }) };
    }),
  );
  const { card } = await createMemoryCard({
    name: options.name ?? DEMO_CARD_NAME,
    pin: DEMO_CARD_PIN,
    puk: DEMO_CARD_PUK,
    slots,
    label: 'spice-smartcard demo',
    scryptCost: { N: 2 ** 10, r: 8, p: 1 },
  });
  return card;
}
