// One schema-conforming value per request's params, per result and per event of the control API,
// shared by the validator tests and the round trips over a real socket. Typed by the schema, so a
// new request or event fails to compile here until it has its sample.
import type { EventMap, EventType, RequestParams, RequestResult, RequestType, SessionStatus, SoftCardInfo } from '../../src/control/schema.js';

export const SAMPLE_STATUS: SessionStatus = {
  name: 'lab-vm',
  mode: 'connect',
  target: 'spice://127.0.0.1:5930',
  phase: 'active',
  since: 1_764_000_000_123,
  problem: { code: 'network', message: 'The VM restarted; reconnected.' },
  retry: { attempt: 2, at: 1_764_000_005_000 },
  card: { source: { kind: 'soft', path: '/tmp/alice.card' }, name: 'spice-smartcard alice', present: true, atr: '3b0b80f9a0000003080000100' },
  vm: { readerAdded: true, cardInserted: true },
  counters: { answered: 211, failed: 3, cardMs: 1234.5, lastSw: 0x9000 },
  proxy: { listen: '127.0.0.1:5931', uri: 'spice://127.0.0.1:5931', viewers: 1, linked: true },
  reconnects: 1,
  tracing: false,
  spec: { name: 'lab-vm', mode: 'connect', target: 'spice://127.0.0.1:5930', card: { kind: 'soft', path: '/tmp/alice.card' }, reconnect: { initialMs: 500 } },
};

const SOFTCARD: SoftCardInfo = {
  path: '/tmp/alice.card',
  label: 'Alice',
  slots: [
    { slot: '9a', algorithm: 'RSA-2048', subject: 'CN=Alice', notAfter: '2027-11-27T00:00:00Z' },
    { slot: '9c', algorithm: 'EC P-256', subject: 'CN=Alice Signature', notAfter: '2027-11-27T00:00:00Z' },
  ],
  pinTriesLeft: 3,
  pukTriesLeft: 10,
};

/** Bytes that cover every value (and msgpack's bin 8/16 boundaries do not hide a bug). */
export const P12_BYTES = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);

export const VALID_PARAMS: { [T in RequestType]: RequestParams<T> } = {
  'status.get': {},
  'session.add': {
    spec: { name: 'lab-vm', mode: 'connect', target: 'spice://127.0.0.1:5930', card: { kind: 'demo' }, autostart: false, reconnect: { initialMs: 500, maxMs: 10_000 } },
    password: 's3cret',
    vv: '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=5930\n',
  },
  'session.remove': { name: 'lab-vm' },
  'session.start': { name: 'lab-vm' },
  'session.stop': { name: 'lab-vm' },
  'session.password': { name: 'lab-vm', password: 'another' },
  'session.card': { name: 'lab-vm', card: { kind: 'reader', reader: 'Yubico*' } },
  'session.insert': { name: 'lab-vm', present: false },
  'readers.list': {},
  'softcard.show': { path: '/tmp/alice.card' },
  'softcard.create': { path: '/tmp/bob.card', subject: 'CN=Bob', key: 'p256', slots: ['9a', '9c'], days: 365, label: 'Bob', pin: '123456', puk: '12345678' },
  'softcard.import': { path: '/tmp/alice.card', slot: '9d', p12: P12_BYTES, p12Password: 'p12pass', pin: '123456', label: 'Alice' },
  'log.tail': { lines: 50 },
};

export const SAMPLE_RESULTS: { [T in RequestType]: RequestResult<T> } = {
  'status.get': {
    apiVersion: 1,
    bridge: { version: '0.1.0', pid: 4242, startedAt: 1_764_000_000_000 },
    sessions: [SAMPLE_STATUS, { ...SAMPLE_STATUS, name: 'idle', phase: 'stopped', problem: undefined, retry: undefined, proxy: undefined }],
    readers: [{ name: 'Yubico YubiKey 00 00', cardPresent: true, atr: '3bfd1300008131fe158073c021c057597562694b657940', usedBy: ['lab-vm'] }],
    pcsc: { available: true },
  },
  'session.add': SAMPLE_STATUS,
  'session.remove': {},
  'session.start': { ...SAMPLE_STATUS, phase: 'connecting' },
  'session.stop': { ...SAMPLE_STATUS, phase: 'stopped' },
  'session.password': { ...SAMPLE_STATUS, phase: 'connecting' },
  'session.card': { ...SAMPLE_STATUS, card: { source: { kind: 'reader', reader: 'Yubico*' }, name: 'Yubico YubiKey', present: false } },
  'session.insert': { ...SAMPLE_STATUS, vm: { readerAdded: true, cardInserted: false } },
  'readers.list': { readers: [], pcsc: { available: false, problem: { code: 'pcsc', message: 'pcscd is not running: start it (systemctl start pcscd.socket).' } } },
  'softcard.show': SOFTCARD,
  'softcard.create': { ...SOFTCARD, path: '/tmp/bob.card', label: 'Bob' },
  'softcard.import': SOFTCARD,
  'log.tail': {
    lines: [
      { time: 1_764_000_000_001, level: 'info', message: 'serve started' },
      { time: 1_764_000_000_002, level: 'warn', session: 'lab-vm', message: 'VM gone; retrying in 1 s' },
    ],
  },
};

export const SAMPLE_EVENTS: { [E in EventType]: EventMap[E] } = {
  session: { status: SAMPLE_STATUS },
  'session.removed': { name: 'lab-vm' },
  counters: { name: 'lab-vm', counters: { answered: 12, failed: 0, cardMs: 40, lastSw: 0x6982 } },
  readers: { readers: [{ name: 'Yubico YubiKey 00 00', cardPresent: false, usedBy: [] }], pcsc: { available: true } },
  log: { line: { time: 1_764_000_000_003, level: 'error', session: 'lab-vm', message: 'wrong password' } },
};
