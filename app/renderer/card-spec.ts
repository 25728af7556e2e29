// The card-source chooser's value ("demo", "reader:NAME", "soft", "none") to a CardSourceSpec and back.
// Pure, with the soft card's path from its own field.
import type { CardSourceSpec } from '../../src/control/schema.js';

/** The chosen source, or a message saying what is missing. */
export function chosenCard(choice: string, softPath: string): CardSourceSpec | string {
  if (choice === 'demo') return { kind: 'demo' };
  if (choice === 'none') return { kind: 'none' };
  if (choice.startsWith('reader:')) return { kind: 'reader', reader: choice.slice('reader:'.length) };
  if (choice === 'soft') {
    const path = softPath.trim();
    return path === '' ? 'Enter the path of the soft card file (made with "card create" or below under Soft cards).' : { kind: 'soft', path };
  }
  return 'Choose a card.';
}

export function choiceFor(source: CardSourceSpec): string {
  switch (source.kind) {
    case 'reader':
      return `reader:${source.reader}`;
    case 'soft':
    case 'replay':
      return 'soft';
    default:
      return source.kind;
  }
}
