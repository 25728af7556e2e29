// Opens the soft card a `connect --soft-card PATH` or `--demo-card` asks for. Loading a card
// file needs no PIN: its keys open when the guest sends VERIFY. An optional PIN given here
// opens them at once, which makes the no-PIN slot 9E usable before the guest's first VERIFY.

import { basename } from 'node:path';
import { CardFileStore, readCardFile } from './card-store.js';
import { CardFileError } from './card-file.js';
import { CardVault } from './card-vault.js';
import { createDemoCard } from './demo-card.js';
import { SoftCard } from './soft-card.js';

export interface SoftCardSourceOptions {
  readonly softCardPath?: string;
  readonly demo?: boolean;
  /** Reader name shown to the VM; default names the file. */
  readonly name?: string;
  /** Unlock the keys now (not counted against the retry counter, and not "verified" for the guest). */
  readonly unlockPin?: string;
}

export async function loadSoftCard(options: SoftCardSourceOptions): Promise<SoftCard> {
  if ((options.softCardPath !== undefined) === (options.demo === true)) {
    throw new TypeError('give exactly one of softCardPath and demo');
  }
  if (options.demo === true) return createDemoCard(options.name !== undefined ? { name: options.name } : {});
  const path = options.softCardPath ?? '';
  const document = await readCardFile(path);
  const vault = new CardVault(document, new CardFileStore(path));
  if (options.unlockPin !== undefined && !(await vault.check('pin', options.unlockPin))) {
    throw new CardFileError(`the PIN given to unlock ${path} is wrong`);
  }
  return new SoftCard({ name: options.name ?? `spice-smartcard soft card (${basename(path)})`, vault });
}
