// The web UI's pure parts: the bridge picture kept from events, the words for each phase, recent
// connections, session names, the token in the fragment, the card chooser's values.
import { describe, expect, it } from 'vitest';
import type { BridgeSnapshot, SessionStatus } from '../../src/control/schema.js';
import { canEject, describeSession, formatSw, summarize } from '../../app/shared/describe.js';
import { sessionNameFor } from '../../app/shared/session-name.js';
import { chosenCard, choiceFor } from '../../app/renderer/card-spec.js';
import { controlUrlFor, errorText, tokenFromFragment } from '../../app/renderer/control-link.js';
import { loadRecent, RECENT_KEPT, rememberable, rememberRecent, type KeyValueStore } from '../../app/renderer/recent.js';
import { applyEvent, fromSnapshot, LOG_LINES_SHOWN } from '../../app/renderer/store.js';

function status(over: Partial<SessionStatus> = {}): SessionStatus {
  return {
    name: 'vm1',
    mode: 'connect',
    target: 'spice://h:1',
    phase: 'active',
    since: 0,
    card: { source: { kind: 'soft', path: '/c/a.card' }, name: 'a', present: true },
    vm: { readerAdded: true, cardInserted: true },
    counters: { answered: 0, failed: 0, cardMs: 0 },
    reconnects: 0,
    tracing: false,
    ...over,
  };
}

const SNAPSHOT: BridgeSnapshot = { apiVersion: 1, bridge: { version: '1', pid: 2, startedAt: 3 }, sessions: [status()], readers: [], pcsc: { available: true } };

describe('store', () => {
  it('follows session, counters, readers, removal and log events, saying what changed', () => {
    const view = fromSnapshot(SNAPSHOT, []);
    expect(applyEvent(view, 'counters', { name: 'vm1', counters: { answered: 5, failed: 1, cardMs: 9, lastSw: 0x6982 } })).toBe('counters');
    expect(view.sessions.get('vm1')?.counters.answered).toBe(5);
    expect(applyEvent(view, 'counters', { name: 'ghost', counters: { answered: 1, failed: 0, cardMs: 0 } })).toBeUndefined();
    expect(applyEvent(view, 'session', { status: status({ name: 'vm2', phase: 'waiting' }) })).toBe('sessions');
    expect([...view.sessions.keys()]).toEqual(['vm1', 'vm2']);
    expect(applyEvent(view, 'session.removed', { name: 'vm1' })).toBe('sessions');
    expect([...view.sessions.keys()]).toEqual(['vm2']);
    expect(applyEvent(view, 'readers', { readers: [{ name: 'R', cardPresent: true, usedBy: [] }], pcsc: { available: true } })).toBe('readers');
    expect(view.readers).toHaveLength(1);
  });

  it('keeps only the last log lines', () => {
    const view = fromSnapshot(SNAPSHOT, []);
    for (let i = 0; i < LOG_LINES_SHOWN + 20; i++) applyEvent(view, 'log', { line: { time: i, level: 'info', message: `m${i}` } });
    expect(view.log).toHaveLength(LOG_LINES_SHOWN);
    expect(view.log[0]?.message).toBe('m20');
  });
});

describe('describeSession', () => {
  it('names each phase with what to do', () => {
    expect(describeSession(status())).toEqual({ label: 'Card in the VM', tone: 'ok' });
    expect(describeSession(status({ vm: { readerAdded: true, cardInserted: false }, card: { source: { kind: 'soft', path: 'p' }, name: 'a', present: false } }))).toMatchObject({
      label: 'Reader in the VM, no card',
      advice: 'The card is ejected: use Insert to put it back.',
    });
    expect(describeSession(status({ vm: { readerAdded: true, cardInserted: false }, card: { source: { kind: 'reader', reader: 'Yubi*' }, name: 'a', present: false } })).advice).toBe('Insert a card in "Yubi*".');
    expect(describeSession(status({ phase: 'needs-password' })).label).toBe('Password needed');
    expect(describeSession(status({ phase: 'failed', problem: { code: 'auth', message: 'x' } })).label).toBe('Wrong password');
    expect(describeSession(status({ phase: 'failed', problem: { code: 'channel-missing', message: 'The VM has no smartcard device: add one.' } })).advice).toBe('The VM has no smartcard device: add one.');
    expect(describeSession(status({ phase: 'waiting', retry: { attempt: 3, at: 10_000 }, problem: { code: 'network', message: 'Connection refused.' } }), 4_000).advice).toBe(
      'Connection refused. Meanwhile retrying in 6 s (attempt 3).',
    );
    expect(describeSession(status({ phase: 'listening', proxy: { listen: '127.0.0.1:5930', uri: 'spice://127.0.0.1:5930', viewers: 0, linked: false } })).advice).toContain('spice://127.0.0.1:5930');
  });

  it('summarises sessions for the tray and the title', () => {
    expect(summarize([])).toEqual({ text: 'No sessions', tone: 'idle' });
    expect(summarize([status(), status({ name: 'b', phase: 'failed' })])).toEqual({ text: '1 of 2 cards in a VM, 1 needs attention', tone: 'warn' });
  });

  it('ejects only cards the bridge holds, formats status words', () => {
    expect(canEject({ kind: 'demo' })).toBe(true);
    expect(canEject({ kind: 'reader', reader: '*' })).toBe(false);
    expect(formatSw(0x9000)).toBe('9000');
    expect(formatSw(0x6a82)).toBe('6A82');
    expect(formatSw(undefined)).toBe('—');
  });
});

describe('sessionNameFor', () => {
  it('takes the host or file name, within the bridge name rule, unique', () => {
    expect(sessionNameFor('spice://10.0.0.5:5900', new Set())).toBe('10.0.0.5-5900');
    expect(sessionNameFor('spice+tls://user@vm.example:5901/?x=1', new Set())).toBe('user-vm.example-5901');
    expect(sessionNameFor('/tmp/Portal Console (3).vv', new Set())).toBe('Portal-Console-3');
    expect(sessionNameFor('C:\\Users\\me\\pve.vv', new Set(['pve', 'pve-2']))).toBe('pve-3');
    expect(sessionNameFor('ünïcode.vv', new Set())).toBe('n-code');
    expect(sessionNameFor('///.vv', new Set())).toBe('vm');
    for (const target of ['spice://' + 'a'.repeat(200), '日本.vv', 'x'.repeat(80) + '.vv']) expect(sessionNameFor(target, new Set())).toMatch(/^[A-Za-z0-9._-]{1,64}$/);
  });
});

describe('recent connections', () => {
  const store = (): KeyValueStore & { data: Map<string, string> } => {
    const data = new Map<string, string>();
    return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) };
  };

  it('keeps the newest first, no duplicates, a bounded list', () => {
    const s = store();
    for (let i = 0; i < RECENT_KEPT + 3; i++) rememberRecent(s, { target: `spice://h:${i}`, mode: 'connect', card: { kind: 'demo' }, usedAt: i });
    rememberRecent(s, { target: 'spice://h:5', mode: 'proxy', card: { kind: 'demo' }, usedAt: 99 });
    const list = loadRecent(s);
    expect(list).toHaveLength(RECENT_KEPT);
    expect(list[0]).toMatchObject({ target: 'spice://h:5', mode: 'proxy' });
    expect(list.filter((r) => r.target === 'spice://h:5')).toHaveLength(1);
  });

  it('survives garbage in storage', () => {
    const s = store();
    for (const junk of ['{', 'null', '42', '[1, {"target": 3}]', '[{"target":"spice://h","mode":"passthru","card":{"kind":"demo"},"usedAt":1}]']) {
      s.data.set('spice-smartcard.recent', junk);
      expect(loadRecent(s)).toEqual([]);
    }
  });

  it('never remembers a URI with a password', () => {
    expect(rememberable('spice://h:5900')).toBe(true);
    expect(rememberable('spice://h:5900?password=x')).toBe(false);
    expect(rememberable('spice://user:pw@h:5900')).toBe(false);
    expect(rememberable('console.vv')).toBe(false);
  });
});

describe('page plumbing', () => {
  it('reads the token from the fragment only when it looks like one', () => {
    expect(tokenFromFragment('#token=' + 'a1'.repeat(32))).toBe('a1'.repeat(32));
    expect(tokenFromFragment('#x=1&token=' + 'ff'.repeat(16))).toBe('ff'.repeat(16));
    expect(tokenFromFragment('')).toBeUndefined();
    expect(tokenFromFragment('#token=<script>')).toBeUndefined();
  });

  it('connects to the server that served the page', () => {
    expect(controlUrlFor({ protocol: 'http:', host: '127.0.0.1:7480' })).toBe('http://127.0.0.1:7480/');
  });

  it('shows the bridge error message when there is one', () => {
    expect(errorText({ body: { code: 'invalid-params', message: 'spec.target: bad' }, message: 'x' })).toBe('spec.target: bad');
    expect(errorText(new Error('boom'))).toBe('boom');
    expect(errorText('plain')).toBe('plain');
  });

  it('maps the card chooser to a card source and back', () => {
    expect(chosenCard('demo', '')).toEqual({ kind: 'demo' });
    expect(chosenCard('reader:ACS ACR 00 00', '')).toEqual({ kind: 'reader', reader: 'ACS ACR 00 00' });
    expect(chosenCard('soft', ' /c/a.card ')).toEqual({ kind: 'soft', path: '/c/a.card' });
    expect(chosenCard('soft', '  ')).toMatch(/path of the soft card/);
    expect(chosenCard('bogus', '')).toBe('Choose a card.');
    expect(choiceFor({ kind: 'reader', reader: '*' })).toBe('reader:*');
    expect(choiceFor({ kind: 'soft', path: 'p' })).toBe('soft');
  });
});
