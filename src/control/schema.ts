// The control API's messages: one module shared by the bridge (`serve`), its WebSocket server, the
// Node client and the app's renderer. It has no imports, so it runs unchanged in a browser.
// Every message is a msgpack map; binary fields are Uint8Array. docs/control-api.md documents it.

export const CONTROL_API_VERSION = 1;
/** WebSocket subprotocol a client asks for; the server refuses any other. */
export const CONTROL_SUBPROTOCOL = 'spice-smartcard.control.v1';

export const CONTROL_LIMITS = {
  /** Largest message either side accepts (a PKCS#12 import is the biggest request). */
  maxMessageBytes: 1024 * 1024,
  /** Requests a client may have unanswered at once; more are refused with 'busy'. */
  maxPendingRequests: 32,
  /** Log lines the bridge keeps for `log.tail` and new clients. */
  logLinesKept: 500,
  /** APDU counters are sent at most this often per session. */
  countersIntervalMs: 250,
} as const;

// ---------------------------------------------------------------------------------------------
// What a session is

export type SessionMode = 'connect' | 'passthru' | 'proxy';

export type CardSourceSpec =
  | { kind: 'demo' }
  /** A soft PIV card file (spice-smartcard card create/import). */
  | { kind: 'soft'; path: string }
  /** A PC/SC reader by exact name or glob; the card follows the reader's insertions and removals. */
  | { kind: 'reader'; reader: string }
  /** A recorded trace answering the guest's commands. */
  | { kind: 'replay'; path: string }
  /** connect/passthru without a card: nothing is forwarded (proxy: the viewer's own channels only). */
  | { kind: 'none' };

export interface ReconnectPolicy {
  /** First wait after a failure. Default 1 000 ms. */
  initialMs?: number;
  /** Waits double up to this. Default 60 000 ms. */
  maxMs?: number;
}

/** A session as declared in the config file or sent in `session.add`. Never holds a password. */
export interface SessionSpec {
  /** Unique, [A-Za-z0-9._-]{1,64}: how logs, events and requests name the session. */
  name: string;
  mode: SessionMode;
  /** connect/proxy: a spice://, spice+tls://, spice+unix://, ws(s):// URI or a .vv file path. passthru: HOST:PORT or unix:PATH. */
  target: string;
  card: CardSourceSpec;
  /** A file holding the SPICE password (first line). */
  passwordFile?: string;
  caFile?: string;
  hostSubject?: string;
  /** proxy: where viewers connect, HOST:PORT on loopback unless listenAny. */
  listen?: string;
  listenAny?: boolean;
  /** Record the session's VSC messages to this file (secrets redacted unless traceSecrets). */
  trace?: string;
  traceSecrets?: boolean;
  /** Start when added or when serve starts. Default true. */
  autostart?: boolean;
  reconnect?: ReconnectPolicy;
}

// ---------------------------------------------------------------------------------------------
// What the bridge reports

export type SessionPhase =
  /** Not running: never started, or stopped by a request. */
  | 'stopped'
  /** Dialling, linking, adding the reader. */
  | 'connecting'
  /** The reader is in the VM (and the card, if present). proxy: listening, linked into the viewer's session. */
  | 'active'
  /** proxy: listening, no viewer session yet. */
  | 'listening'
  /** Down for a reason that may pass (server gone, VM stopped): retrying at `retry.at`. */
  | 'waiting'
  /** The server wants a password and none was given: send `session.password`. */
  | 'needs-password'
  /** Down for a reason retrying cannot fix (bad config, wrong password, no smartcard device): see `problem`. */
  | 'failed';

export interface Problem {
  /** Stable machine code: network, tls, protocol, auth, channel-missing, channel-taken, card, config, pcsc, ... */
  code: string;
  /** One sentence: what happened and what to do. Never holds a secret. */
  message: string;
}

export interface ApduCounters {
  /** Commands answered by the card. */
  answered: number;
  /** Commands the card failed (the guest got an error status). */
  failed: number;
  /** Total time the card took, ms. */
  cardMs: number;
  /** Status word of the last answer, e.g. 0x9000. */
  lastSw?: number;
}

export interface SessionStatus {
  name: string;
  mode: SessionMode;
  /** The target as the user named it, without secrets. */
  target: string;
  phase: SessionPhase;
  /** ms since the epoch when `phase` last changed. */
  since: number;
  /** Why the session is not active (waiting, needs-password, failed), or the last warning. */
  problem?: Problem;
  retry?: { attempt: number; at: number };
  card: {
    source: CardSourceSpec;
    /** The card's name as the VM's reader shows it. */
    name: string;
    /** A card is in the source (a soft card not ejected, a card in the reader). */
    present: boolean;
    /** Hex ATR as the VM sees it, when inserted in the VM. */
    atr?: string;
  };
  /** The VM's reader exists; the card is inserted in it. */
  vm: { readerAdded: boolean; cardInserted: boolean };
  counters: ApduCounters;
  /** proxy only. */
  proxy?: { listen: string; uri: string; viewers: number; linked: boolean };
  /** Restarts since serve started (reconnections after a failure). */
  reconnects: number;
  tracing: boolean;
  /**
   * The session's spec as the bridge runs it (current card; never a password), so a client can add it
   * again. When a .vv was given as content, `spec.target` is the bridge's private copy of it (then it
   * differs from `target`). Sent in status.get, session events and the session.add result.
   */
  spec?: SessionSpec;
}

export interface ReaderInfo {
  name: string;
  cardPresent: boolean;
  /** Hex ATR of the card in the reader. */
  atr?: string;
  /** Sessions forwarding this reader. */
  usedBy: string[];
}

export interface PcscStatus {
  /** pcscd answered. */
  available: boolean;
  problem?: Problem;
}

export interface SoftCardInfo {
  path: string;
  label: string;
  slots: Array<{ slot: '9a' | '9c' | '9d' | '9e'; algorithm: string; subject: string; notAfter: string }>;
  pinTriesLeft: number;
  pukTriesLeft: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogLine {
  time: number;
  level: LogLevel;
  /** The session it concerns, if any. */
  session?: string;
  message: string;
}

export interface BridgeSnapshot {
  apiVersion: number;
  bridge: { version: string; pid: number; startedAt: number };
  sessions: SessionStatus[];
  readers: ReaderInfo[];
  pcsc: PcscStatus;
}

// ---------------------------------------------------------------------------------------------
// Requests: type → params and result

export interface RequestMap {
  /** Everything at once; a client calls it after connecting, then follows events. */
  'status.get': { params: Record<string, never>; result: BridgeSnapshot };
  /** Adds (and, unless autostart is false, starts) a session. The password, if given, is kept in memory only. */
  'session.add': { params: { spec: SessionSpec; password?: string; /** .vv file content instead of a path in spec.target */ vv?: string }; result: SessionStatus };
  /** Stops the session (card and reader removed from the VM) and forgets it. */
  'session.remove': { params: { name: string }; result: Record<string, never> };
  'session.start': { params: { name: string }; result: SessionStatus };
  'session.stop': { params: { name: string }; result: SessionStatus };
  /** Gives the password a session in 'needs-password' (or any session) uses from now on. */
  'session.password': { params: { name: string; password: string }; result: SessionStatus };
  /** Forwards another card source in this session from now on. */
  'session.card': { params: { name: string; card: CardSourceSpec }; result: SessionStatus };
  /** Takes a soft card out of the VM's reader (present: false) or puts it back (present: true). */
  'session.insert': { params: { name: string; present: boolean }; result: SessionStatus };
  'readers.list': { params: Record<string, never>; result: { readers: ReaderInfo[]; pcsc: PcscStatus } };
  'softcard.show': { params: { path: string }; result: SoftCardInfo };
  'softcard.create': {
    params: { path: string; subject: string; key: 'rsa2048' | 'p256' | 'p384'; slots: Array<'9a' | '9c' | '9d' | '9e'>; days?: number; label?: string; pin?: string; puk?: string };
    result: SoftCardInfo;
  };
  'softcard.import': {
    params: { path: string; slot: '9a' | '9c' | '9d' | '9e'; p12: Uint8Array; p12Password: string; /** PIN of an existing card (to seal the key), or of the new one. */ pin?: string; label?: string };
    result: SoftCardInfo;
  };
  'log.tail': { params: { lines?: number }; result: { lines: LogLine[] } };
}

export type RequestType = keyof RequestMap;
export type RequestParams<T extends RequestType> = RequestMap[T]['params'];
export type RequestResult<T extends RequestType> = RequestMap[T]['result'];

// ---------------------------------------------------------------------------------------------
// Events: type → data, sent to every authenticated client

export interface EventMap {
  /** A session was added or changed phase, card, VM state or problem. */
  session: { status: SessionStatus };
  'session.removed': { name: string };
  /** At most every CONTROL_LIMITS.countersIntervalMs per session while commands flow. */
  counters: { name: string; counters: ApduCounters };
  readers: { readers: ReaderInfo[]; pcsc: PcscStatus };
  log: { line: LogLine };
}

export type EventType = keyof EventMap;

// ---------------------------------------------------------------------------------------------
// Envelopes

export type ErrorCode =
  /** The message is not one of this schema's (unknown type, missing or wrongly typed field). */
  | 'bad-request'
  /** The params are well formed but not acceptable (a bad session spec, a duplicate name). */
  | 'invalid-params'
  | 'not-found'
  /** The request conflicts with the current state (e.g. session.insert on a reader card). */
  | 'conflict'
  /** Too many requests pending. */
  | 'busy'
  /** The request was valid but carrying it out failed (file unreadable, wrong .p12 password). */
  | 'failed'
  | 'internal';

export interface ControlErrorBody {
  code: ErrorCode;
  /** What happened and what to do. */
  message: string;
  /** For invalid-params: where, as a key path such as "spec.card.path". */
  path?: string;
}

export type ClientMessage = { [T in RequestType]: { kind: 'request'; id: number; type: T; params: RequestParams<T> } }[RequestType];

export type ServerMessage =
  | { [T in RequestType]: { kind: 'result'; id: number; type: T; result: RequestResult<T> } }[RequestType]
  | { kind: 'error'; id: number; error: ControlErrorBody }
  | { [E in EventType]: { kind: 'event'; type: E; data: EventMap[E] } }[EventType];

export const REQUEST_TYPES: readonly RequestType[] = [
  'status.get',
  'session.add',
  'session.remove',
  'session.start',
  'session.stop',
  'session.password',
  'session.card',
  'session.insert',
  'readers.list',
  'softcard.show',
  'softcard.create',
  'softcard.import',
  'log.tail',
];

export const EVENT_TYPES: readonly EventType[] = ['session', 'session.removed', 'counters', 'readers', 'log'];

/** WebSocket close codes the server uses (4000–4999 are the application's). */
export const CONTROL_CLOSE = {
  /** A text frame, or a message that is not msgpack or has no readable id (one over the size limit closes with 1009). */
  protocolError: 4400,
  /** The client left too many messages unread (it may reconnect and call status.get). */
  tooSlow: 4408,
  /** The bridge is shutting down. */
  shuttingDown: 4503,
} as const;
