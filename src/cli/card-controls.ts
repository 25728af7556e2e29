// Lets the user take a soft card out of the VM and put it back while the bridge runs, as a
// viewer's smartcard hotkeys do: SIGUSR1 removes, SIGUSR2 inserts; on a terminal, "r" and "i".
import { isInsertable, type Card } from '../../vsc/card.js';

export function attachCardControls(card: Card, note: (text: string) => void, onQuit: () => void): () => void {
  if (!isInsertable(card)) return () => undefined;
  const remove = (): void => {
    if (card.atr() === undefined) return note('The card is already out.');
    note('Removing the card…');
    card.remove();
  };
  const insert = (): void => {
    if (card.atr() !== undefined) return note('The card is already in.');
    note('Inserting the card…');
    card.insert();
  };
  process.on('SIGUSR1', remove);
  process.on('SIGUSR2', insert);
  const stdin = process.stdin;
  const keys = stdin.isTTY === true;
  const onKey = (data: Buffer): void => {
    const key = data.toString('utf8');
    if (key === 'r') remove();
    else if (key === 'i') insert();
    else if (key === 'q' || key === '\u0003') onQuit();
  };
  if (keys) {
    stdin.setRawMode(true);
    stdin.on('data', onKey);
    stdin.resume();
    note('Keys: r = remove the card, i = insert it, q = quit.');
  }
  return () => {
    process.off('SIGUSR1', remove);
    process.off('SIGUSR2', insert);
    if (keys) {
      stdin.off('data', onKey);
      stdin.setRawMode(false);
      stdin.pause();
    }
  };
}
