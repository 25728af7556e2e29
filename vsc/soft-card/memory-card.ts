// A soft card that lives in memory only: the demo card, tests and benchmarks. Same vault and
// applet as a file-backed card; its "file" is a string nobody writes to disk.

import { createCardDocument, type NewCardOptions } from './card-builder.js';
import { MemoryCardStore } from './card-store.js';
import { CardVault } from './card-vault.js';
import { SoftCard } from './soft-card.js';

export interface MemoryCardOptions extends NewCardOptions {
  readonly name: string;
}

export async function createMemoryCard(options: MemoryCardOptions): Promise<{ card: SoftCard; store: MemoryCardStore }> {
  const document = await createCardDocument(options);
  const store = new MemoryCardStore();
  await store.save(document);
  return { card: new SoftCard({ name: options.name, vault: new CardVault(document, store) }), store };
}
