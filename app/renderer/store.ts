// The page's picture of the bridge: a snapshot from `status.get`, then kept current by events. Pure
// (no DOM, no socket) so the views only read it.
import type { ApduCounters, BridgeSnapshot, EventMap, LogLine, PcscStatus, ReaderInfo, SessionStatus } from '../../src/control/schema.js';

/** Log lines the page keeps; the bridge keeps its own tail for new clients. */
export const LOG_LINES_SHOWN = 300;

export interface BridgeView {
  bridge?: BridgeSnapshot['bridge'];
  sessions: Map<string, SessionStatus>;
  readers: ReaderInfo[];
  pcsc: PcscStatus;
  log: LogLine[];
}

export function emptyView(): BridgeView {
  return { sessions: new Map(), readers: [], pcsc: { available: false }, log: [] };
}

export function fromSnapshot(snapshot: BridgeSnapshot, log: LogLine[]): BridgeView {
  return {
    bridge: snapshot.bridge,
    sessions: new Map(snapshot.sessions.map((s) => [s.name, s])),
    readers: snapshot.readers,
    pcsc: snapshot.pcsc,
    log: log.slice(-LOG_LINES_SHOWN),
  };
}

export type ViewChange = 'sessions' | 'counters' | 'readers' | 'log';

/** Applies one event in place; returns what changed so only that part is drawn again. */
export function applyEvent<E extends keyof EventMap>(view: BridgeView, type: E, data: EventMap[E]): ViewChange | undefined {
  switch (type) {
    case 'session': {
      const { status } = data as EventMap['session'];
      view.sessions.set(status.name, status);
      return 'sessions';
    }
    case 'session.removed':
      view.sessions.delete((data as EventMap['session.removed']).name);
      return 'sessions';
    case 'counters': {
      const { name, counters } = data as EventMap['counters'];
      const session = view.sessions.get(name);
      if (session === undefined) return undefined;
      view.sessions.set(name, { ...session, counters: counters satisfies ApduCounters });
      return 'counters';
    }
    case 'readers': {
      const { readers, pcsc } = data as EventMap['readers'];
      view.readers = readers;
      view.pcsc = pcsc;
      return 'readers';
    }
    case 'log': {
      view.log.push((data as EventMap['log']).line);
      if (view.log.length > LOG_LINES_SHOWN) view.log.splice(0, view.log.length - LOG_LINES_SHOWN);
      return 'log';
    }
    default:
      return undefined;
  }
}
