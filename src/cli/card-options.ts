// The card-source options shared by connect, passthru and (later) proxy.
import type { ParseArgsConfig } from 'node:util';
import type { Card } from '../../vsc/card.js';
import { loadCardSources, type CardChoice } from '../card-source.js';
import { UsageError } from './exit-codes.js';

export const CARD_OPTIONS = {
  'soft-card': { type: 'string', multiple: true },
  'demo-card': { type: 'boolean', default: false },
  reader: { type: 'string', multiple: true },
  replay: { type: 'string', multiple: true },
} as const satisfies ParseArgsConfig['options'];

export interface CardOptionValues {
  'soft-card'?: string[] | undefined;
  'demo-card'?: boolean | undefined;
  reader?: string[] | undefined;
  replay?: string[] | undefined;
}

/** One card choice per reader slot, in the order given; `count` slots are needed. */
export function cardChoices(values: CardOptionValues, count: number): CardChoice[] {
  const choices: CardChoice[] = [
    ...(values['soft-card'] ?? []).map((path): CardChoice => ({ kind: 'soft', path })),
    ...(values.reader ?? []).map((pattern): CardChoice => ({ kind: 'reader', pattern })),
    ...(values.replay ?? []).map((path): CardChoice => ({ kind: 'replay', path })),
  ];
  if (values['demo-card']) while (choices.length < count) choices.push({ kind: 'demo' });
  if (choices.length === 0) while (choices.length < count) choices.push({ kind: 'default' });
  if (choices.length !== count) {
    throw new UsageError(
      count === 1
        ? 'Give one card source: --soft-card PATH, --demo-card, --reader NAME or --replay FILE.'
        : `${count} targets need ${count} card sources (one --soft-card, --reader or --demo-card each, in order); got ${choices.length}.`,
    );
  }
  return choices;
}

export function loadCards(values: CardOptionValues, count: number): Promise<Card[]> {
  return loadCardSources(cardChoices(values, count));
}
