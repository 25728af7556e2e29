// Which card goes into the VM: a soft PIV card file, the demo card, or a PC/SC reader.
import type { Card } from '../vsc/card.js';
import { firstReaderCard, openReaderCard } from '../vsc/pcsc/index.js';
import { loadSoftCard } from '../vsc/soft-card/card-source.js';
import { UsageError } from './cli/exit-codes.js';
import { ReplayCard } from './trace/replay-card.js';

export type CardChoice =
  | { kind: 'soft'; path: string }
  | { kind: 'demo' }
  | { kind: 'reader'; pattern: string }
  /** A recorded trace answering the guest's commands (--replay). */
  | { kind: 'replay'; path: string }
  /** Nothing chosen: the first PC/SC reader, else the demo card. */
  | { kind: 'default' };

async function loadOne(choice: CardChoice): Promise<Card> {
  switch (choice.kind) {
    case 'demo':
      return loadSoftCard({ demo: true });
    case 'default':
      return (await firstReaderCard()) ?? loadSoftCard({ demo: true });
    case 'soft':
      try {
        return await loadSoftCard({ softCardPath: choice.path });
      } catch (e) {
        const detail = e instanceof Error ? e.message : String(e);
        throw new UsageError(`Cannot use the soft card ${choice.path}: ${detail}`);
      }
    case 'reader':
      if (choice.pattern.trim() === '') throw new UsageError('--reader needs a reader name or a glob such as "Yubico*".');
      // Resolves even while the reader or pcscd is missing: the card is forwarded when it appears.
      return openReaderCard(choice.pattern);
    case 'replay':
      try {
        return ReplayCard.fromFile(choice.path);
      } catch (e) {
        const detail = e instanceof Error ? e.message : String(e);
        throw new UsageError(`Cannot replay the trace ${choice.path}: ${detail}`);
      }
  }
}

/** Loads every chosen card; on failure, closes the ones already open. */
export async function loadCardSources(choices: readonly CardChoice[]): Promise<Card[]> {
  const cards: Card[] = [];
  try {
    for (const choice of choices) cards.push(await loadOne(choice));
    return cards;
  } catch (e) {
    await Promise.all(cards.map((c) => c.close?.()));
    throw e;
  }
}
