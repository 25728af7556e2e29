// A loaded soft card's secrets: the PIV applet's credential store (PIN and PUK checks, retry
// counters, secret changes) and its key source. Keys stay sealed until a right PIN or PUK
// unwraps the data key; from then on they live in memory until lock().

import { createHmac, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { PivAlgorithmId, PivSlotId } from '../piv/constants.js';
import type { PivCredentialChange, PivCredentials, PivSecretName } from '../piv/credentials.js';
import { isValidPin, isValidPuk } from '../piv/reference-data.js';
import { PIV_ALGORITHM_OF, SLOT_ID_OF, SLOT_NAMES, slotNameOf, type SlotName } from './algorithms.js';
import type { CardDocument, SecretRecord, SlotRecord } from './card-file.js';
import { dataKeyContext, openSlotKey, sealSlotRecord } from './card-keys.js';
import type { CardDocumentStore } from './card-store.js';
import type { SlotKeySource } from './node-key-operations.js';
import { unwrapDataKey, wrapDataKey } from './sealing.js';

export class VaultLockedError extends Error {
  constructor() {
    super('the card is locked: verify the PIN or PUK first');
    this.name = 'VaultLockedError';
  }
}

export class CardVault implements PivCredentials, SlotKeySource {
  #document: CardDocument;
  readonly #store: CardDocumentStore;
  #dataKey: Buffer | undefined;
  readonly #keys = new Map<PivSlotId, KeyObject>();
  // Secrets accepted since start, as HMACs under a per-process key: a repeated VERIFY with the
  // same PIN then skips scrypt. It adds nothing an attacker could use: once a PIN has been
  // accepted, the data key itself is in this process's memory anyway.
  readonly #macKey = randomBytes(32);
  readonly #accepted = new Map<PivSecretName, Buffer>();
  #writes: Promise<void> = Promise.resolve();

  constructor(document: CardDocument, store: CardDocumentStore) {
    this.#document = document;
    this.#store = store;
  }

  get document(): CardDocument {
    return this.#document;
  }

  /** True once a right PIN or PUK has opened the keys. */
  get unlocked(): boolean {
    return this.#dataKey !== undefined;
  }

  triesLeft(secret: PivSecretName): number {
    return this.#record(secret).triesLeft;
  }

  maxTries(secret: PivSecretName): number {
    return this.#record(secret).maxTries;
  }

  async check(secret: PivSecretName, value: string): Promise<boolean> {
    const mac = this.#mac(value);
    const known = this.#accepted.get(secret);
    if (known !== undefined && timingSafeEqual(known, mac)) return true;
    const record = this.#record(secret);
    const dataKey = await unwrapDataKey(record.wrappedDataKey, value, dataKeyContext(this.#document.guid, secret));
    if (dataKey === undefined) return false;
    this.#unlock(dataKey);
    this.#accepted.set(secret, mac);
    return true;
  }

  commit(change: PivCredentialChange): Promise<void> {
    // One write at a time, each built on the document the previous one left.
    const next = this.#writes.then(() => this.#apply(change));
    this.#writes = next.catch(() => undefined);
    return next;
  }

  algorithmOf(slot: PivSlotId): PivAlgorithmId | undefined {
    const record = this.#document.slots[slotNameOf(slot)];
    return record === undefined ? undefined : PIV_ALGORITHM_OF[record.algorithm];
  }

  privateKey(slot: PivSlotId): KeyObject | undefined {
    return this.#keys.get(slot);
  }

  /** Puts a key and its certificate into a slot, replacing what was there. Needs the vault unlocked. */
  installSlot(slot: SlotName, privateKey: KeyObject, certificate: Uint8Array): Promise<void> {
    const dataKey = this.#dataKey;
    if (dataKey === undefined) return Promise.reject(new VaultLockedError());
    const record = sealSlotRecord(dataKey, this.#document.guid, slot, privateKey, certificate);
    const next = this.#writes.then(async () => {
      const document: CardDocument = { ...this.#document, slots: { ...this.#document.slots, [slot]: record } };
      await this.#store.save(document);
      this.#document = document;
      this.#keys.set(SLOT_ID_OF[slot], privateKey);
    });
    this.#writes = next.catch(() => undefined);
    return next;
  }

  /** Forgets the data key and the private keys (card removed, bridge stopping). */
  lock(): void {
    this.#dataKey?.fill(0);
    this.#dataKey = undefined;
    this.#keys.clear();
    this.#accepted.clear();
  }

  async #apply(change: PivCredentialChange): Promise<void> {
    const current = this.#document;
    const pin = await this.#updatedRecord('pin', current.pin, change.pinTriesLeft, change.newPin);
    const puk = await this.#updatedRecord('puk', current.puk, change.pukTriesLeft, change.newPuk);
    const document: CardDocument = { ...current, pin, puk };
    await this.#store.save(document);
    this.#document = document;
    if (change.newPin !== undefined) this.#accepted.set('pin', this.#mac(change.newPin));
    if (change.newPuk !== undefined) this.#accepted.set('puk', this.#mac(change.newPuk));
  }

  async #updatedRecord(secret: PivSecretName, record: SecretRecord, triesLeft: number | undefined, newValue: string | undefined): Promise<SecretRecord> {
    let updated = record;
    if (triesLeft !== undefined) updated = { ...updated, triesLeft: Math.max(0, Math.min(updated.maxTries, triesLeft)) };
    if (newValue !== undefined) {
      if (!(secret === 'pin' ? isValidPin(newValue) : isValidPuk(newValue))) throw new RangeError(`the new ${secret.toUpperCase()} has the wrong format`);
      const dataKey = this.#dataKey;
      if (dataKey === undefined) throw new VaultLockedError();
      const { N, r, p } = record.wrappedDataKey.kdf;
      updated = { ...updated, wrappedDataKey: await wrapDataKey(dataKey, newValue, dataKeyContext(this.#document.guid, secret), { N, r, p }) };
    }
    return updated;
  }

  #unlock(dataKey: Buffer): void {
    if (this.#dataKey !== undefined) {
      dataKey.fill(0);
      return;
    }
    const keys = new Map<PivSlotId, KeyObject>();
    for (const name of SLOT_NAMES) {
      const record: SlotRecord | undefined = this.#document.slots[name];
      if (record !== undefined) keys.set(SLOT_ID_OF[name], openSlotKey(dataKey, this.#document.guid, name, record));
    }
    this.#dataKey = dataKey;
    for (const [slot, key] of keys) this.#keys.set(slot, key);
  }

  #record(secret: PivSecretName): SecretRecord {
    return secret === 'pin' ? this.#document.pin : this.#document.puk;
  }

  #mac(value: string): Buffer {
    return createHmac('sha256', this.#macKey).update(value, 'utf8').digest();
  }
}
