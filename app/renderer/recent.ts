// Recent connections, kept in the page's localStorage. Only URIs are kept: a .vv file's content holds a
// one-time ticket and is never stored.
import type { CardSourceSpec, SessionMode } from '../../src/control/schema.js';

export interface RecentConnection {
  target: string;
  mode: SessionMode;
  card: CardSourceSpec;
  usedAt: number;
}

const KEY = 'spice-smartcard.recent';

/** What is used of localStorage (a structural type, so the module is testable without a DOM). */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}
export const RECENT_KEPT = 8;

export function loadRecent(storage: Pick<KeyValueStore, 'getItem'>): RecentConnection[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(storage.getItem(KEY) ?? '[]');
  } catch {
    return [];
  }
  return Array.isArray(parsed) ? parsed.filter(isRecent).slice(0, RECENT_KEPT) : [];
}

export function rememberRecent(storage: KeyValueStore, entry: RecentConnection): RecentConnection[] {
  const list = [entry, ...loadRecent(storage).filter((r) => r.target !== entry.target)].slice(0, RECENT_KEPT);
  storage.setItem(KEY, JSON.stringify(list));
  return list;
}

/** A URI with a password in it is not remembered (the bridge refuses those anyway). */
export function rememberable(target: string): boolean {
  return /^(spice|spice\+tls|spice\+unix|wss?):\/\//.test(target) && !/[?&]password=/i.test(target) && !/\/\/[^/@]*:[^/@]*@/.test(target);
}

function isRecent(value: unknown): value is RecentConnection {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  const card = r['card'] as Record<string, unknown> | undefined;
  return (
    typeof r['target'] === 'string' &&
    (r['mode'] === 'proxy' || r['mode'] === 'connect') &&
    typeof r['usedAt'] === 'number' &&
    typeof card === 'object' &&
    card !== null &&
    typeof card['kind'] === 'string' &&
    ['demo', 'soft', 'reader', 'none'].includes(card['kind'])
  );
}
