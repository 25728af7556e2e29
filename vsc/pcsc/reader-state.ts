// SCARD_STATE_* bits -> what the card source needs to know about a reader. pcsc-lite puts an
// event counter in the high 16 bits of the state (0x10022 is PRESENT|CHANGED, count 1), so the
// value is masked before any bit is read.

const STATE_MASK = 0xffff;

/** pcsc-lite's SCARD_STATE_* values (identical on Windows and macOS). */
export const ScardState = {
  CHANGED: 0x0002,
  UNKNOWN: 0x0004,
  UNAVAILABLE: 0x0008,
  EMPTY: 0x0010,
  PRESENT: 0x0020,
  EXCLUSIVE: 0x0080,
  INUSE: 0x0100,
  MUTE: 0x0200,
} as const;

export type CardPresence = 'present' | 'empty' | 'mute' | 'unavailable';

export interface ReaderFlags {
  readonly presence: CardPresence;
  /** Another application has the card open exclusively. */
  readonly exclusive: boolean;
  /** Some application (maybe us) has the card open. */
  readonly inUse: boolean;
}

export function readerStateFlags(state: number): ReaderFlags {
  const s = state & STATE_MASK;
  let presence: CardPresence;
  if (s & (ScardState.UNKNOWN | ScardState.UNAVAILABLE)) presence = 'unavailable';
  else if (s & ScardState.MUTE) presence = 'mute';
  else if (s & ScardState.PRESENT) presence = 'present';
  else presence = 'empty';
  return { presence, exclusive: (s & ScardState.EXCLUSIVE) !== 0, inUse: (s & ScardState.INUSE) !== 0 };
}
