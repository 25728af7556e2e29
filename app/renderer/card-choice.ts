// The card-source chooser's options: the first reader, each reader, a soft card file, the demo card, none.
import type { ReaderInfo } from '../../src/control/schema.js';
import { h } from './dom.js';

const ANY_READER = '*';

export function cardOptions(select: HTMLSelectElement, readers: readonly ReaderInfo[]): void {
  const previous = select.value;
  const options: Array<[string, string]> = [
    [`reader:${ANY_READER}`, 'First PC/SC reader'],
    ...readers.map((r): [string, string] => [`reader:${r.name}`, `Reader: ${r.name}${r.cardPresent ? '' : ' (no card)'}`]),
    ['soft', 'Soft card file'],
    ['demo', 'Demo card'],
    ['none', 'No card'],
  ];
  select.replaceChildren(...options.map(([value, label]) => h('option', { value }, label)));
  if (options.some(([value]) => value === previous)) select.value = previous;
  // Whatever depends on the choice (the soft card path field) follows.
  if (select.value !== previous) select.dispatchEvent(new Event('change'));
}
