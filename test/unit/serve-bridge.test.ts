// The serve bridge's requests with real demo and soft cards and no VM: validation errors with
// their key paths, duplicate names, unknown sessions, soft cards made and read in a temp card
// directory, PC/SC absent reported as a status, and a session answering APDUs from a passthru
// socket played in-process (test/helpers/passthru-vm.ts).
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlEvent } from '../../src/control/service.js';
import { ControlError } from '../../src/control/service.js';
import type { SessionSpec } from '../../src/control/schema.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { defaultCardDirectory, resolveCardPath } from '../../src/serve/softcards.js';
import { generatePrivateKey } from '../../vsc/soft-card/algorithms.js';
import { createCertificate } from '../../vsc/soft-card/certificates.js';
import { PassthruVm } from '../helpers/passthru-vm.js';

// A PC/SC service that is certainly absent: libpcsclite reads this once, at the first context.
process.env['PCSCLITE_CSOCK_NAME'] = join(tmpdir(), `no-pcscd-${process.pid}`, 'pcscd.comm');

async function rejection(promise: Promise<unknown>): Promise<ControlError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof ControlError) return e;
    throw e;
  }
  throw new Error('expected a ControlError');
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function makeP12(password: string): Promise<Uint8Array> {
  const privateKey = await generatePrivateKey('rsa2048');
  const certificate = await createCertificate({ subject: 'CN=Imported Person', privateKey, slot: '9a', days: 30 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = forge.pki.certificateFromAsn1(forge.asn1.fromDer(forge.util.createBuffer(Buffer.from(certificate).toString('binary'))));
  const p12 = forge.pkcs12.toPkcs12Asn1(forge.pki.privateKeyFromPem(pem), [cert], password, { algorithm: '3des' });
  return Uint8Array.from(Buffer.from(forge.asn1.toDer(p12).getBytes(), 'binary'));
}

describe('ServeBridge requests', () => {
  let dir: string;
  let bridge: ServeBridge;
  const events: ControlEvent[] = [];
  const logged: string[] = [];
  const passthru = (name: string, port: number, extra: Partial<SessionSpec> = {}): SessionSpec => ({
    name,
    mode: 'passthru',
    target: `127.0.0.1:${port}`,
    card: { kind: 'demo' },
    reconnect: { initialMs: 100, maxMs: 500 },
    ...extra,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'serve-bridge-'));
    bridge = new ServeBridge({ log: { log: (level, message, session) => logged.push(`${level} ${session ?? '-'} ${message}`) }, version: '9.9.9', cardDirectory: join(dir, 'cards') });
    bridge.subscribe((e) => events.push(e));
  });

  afterAll(async () => {
    await bridge?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('status.get and readers.list: no session, and an absent pcscd is a status with advice, not an error', async () => {
    const snap = await bridge.request('status.get', {});
    expect(snap.apiVersion).toBe(1);
    expect(snap.bridge).toMatchObject({ version: '9.9.9', pid: process.pid });
    expect(snap.sessions).toEqual([]);
    await until('PC/SC judged absent', () => bridge.snapshot().pcsc.problem !== undefined);
    const { readers, pcsc } = await bridge.request('readers.list', {});
    expect(readers).toEqual([]);
    expect(pcsc.available).toBe(false);
    expect(pcsc.problem?.code).toBe('pcsc');
    expect(pcsc.problem?.message).toMatch(/pcscd/);
  });

  it('session.add refuses a bad spec with the key path of the first problem', async () => {
    const badMode = await rejection(bridge.request('session.add', { spec: { ...passthru('x', 1), mode: 'teleport' } as unknown as SessionSpec }));
    expect(badMode.code).toBe('invalid-params');
    expect(badMode.path).toBe('spec.mode');
    const badName = await rejection(bridge.request('session.add', { spec: passthru('no spaces please', 1) }));
    expect(badName.path).toBe('spec.name');
    const badTarget = await rejection(bridge.request('session.add', { spec: passthru('t', 1, { target: 'not an endpoint' }) }));
    expect(badTarget.path).toBe('spec.target');
    const notObject = await rejection(bridge.request('session.add', { spec: 42 as unknown as SessionSpec }));
    expect(notObject.code).toBe('invalid-params');
    const escape = await rejection(bridge.request('session.add', { spec: passthru('esc', 1, { card: { kind: 'soft', path: '../../etc/passwd' } }) }));
    expect(escape.code).toBe('invalid-params');
    expect(escape.path).toBe('spec.card.path');
    expect(bridge.snapshot().sessions).toEqual([]);
  });

  it('duplicate names are refused; unknown names are not-found', async () => {
    const added = await bridge.request('session.add', { spec: passthru('one', 9, { autostart: false }) });
    expect(added).toMatchObject({ name: 'one', mode: 'passthru', phase: 'stopped', reconnects: 0, tracing: false, vm: { readerAdded: false, cardInserted: false } });
    const dup = await rejection(bridge.request('session.add', { spec: passthru('one', 10) }));
    expect(dup.code).toBe('invalid-params');
    expect(dup.path).toBe('spec.name');
    for (const type of ['session.start', 'session.stop', 'session.remove'] as const) {
      const e = await rejection(bridge.request(type, { name: 'nobody' }));
      expect(e.code).toBe('not-found');
    }
    expect((await rejection(bridge.request('session.password', { name: 'nobody', password: 'x' }))).code).toBe('not-found');
    await bridge.request('session.remove', { name: 'one' });
    expect(events.some((e) => e.type === 'session.removed' && e.data.name === 'one')).toBe(true);
  });

  it('a session to a socket nobody listens on waits with a network problem and stops at once', async () => {
    const [port] = await (async () => {
      const vm = await PassthruVm.listen();
      const p = vm.port;
      await vm.close();
      return [p];
    })();
    await bridge.request('session.add', { spec: passthru('nobody-home', port!) });
    await until('waiting', () => bridge.snapshot().sessions.find((s) => s.name === 'nobody-home')?.phase === 'waiting');
    const s = bridge.snapshot().sessions.find((x) => x.name === 'nobody-home')!;
    expect(s.problem?.code).toBe('network');
    expect(s.problem?.message).toContain('connection refused');
    expect(s.retry?.attempt).toBe(1);
    expect((await bridge.request('session.stop', { name: 'nobody-home' })).phase).toBe('stopped');
    await bridge.request('session.remove', { name: 'nobody-home' });
  });

  it('softcard.create / show / import in the card directory; secrets never logged', async () => {
    const created = await bridge.request('softcard.create', { path: 'alice.card', subject: 'CN=Alice', key: 'p256', slots: ['9a', '9c'], pin: '24681357', puk: '87654321', label: 'Alice' });
    expect(created.path).toBe(join(dir, 'cards', 'alice.card'));
    expect(created).toMatchObject({ label: 'Alice', pinTriesLeft: 3 });
    expect(created.slots.map((s) => [s.slot, s.algorithm, s.subject])).toEqual([
      ['9a', 'p256', 'CN=Alice'],
      ['9c', 'p256', 'CN=Alice'],
    ]);
    expect((await stat(created.path)).mode & 0o777).toBe(0o600);
    const shown = await bridge.request('softcard.show', { path: 'alice.card' });
    expect(shown).toEqual(created);
    expect((await rejection(bridge.request('softcard.create', { path: 'alice.card', subject: 'CN=Again', key: 'p256', slots: ['9a'] }))).code).toBe('conflict');
    expect((await rejection(bridge.request('softcard.show', { path: 'nobody.card' }))).code).toBe('not-found');
    const out = await rejection(bridge.request('softcard.show', { path: '../outside.card' }));
    expect(out.code).toBe('invalid-params');
    expect(out.path).toBe('path');
    expect((await rejection(bridge.request('softcard.create', { path: 'bad.card', subject: 'CN=Bad', key: 'p256', slots: ['9a'], pin: '12' }))).code).toBe('failed');

    const p12 = await makeP12('p12-secret-word');
    const wrongPassword = await rejection(bridge.request('softcard.import', { path: 'bob.card', slot: '9a', p12, p12Password: 'not-it' }));
    expect(wrongPassword.code).toBe('failed');
    const bob = await bridge.request('softcard.import', { path: 'bob.card', slot: '9a', p12, p12Password: 'p12-secret-word', pin: '11223344' });
    expect(bob.slots.map((s) => [s.slot, s.subject])).toEqual([['9a', 'CN=Imported Person']]);
    const wrongPin = await rejection(bridge.request('softcard.import', { path: 'alice.card', slot: '9d', p12, p12Password: 'p12-secret-word', pin: '99999999' }));
    expect(wrongPin.code).toBe('failed');
    expect(wrongPin.message).toContain('wrong PIN');
    const noPin = await rejection(bridge.request('softcard.import', { path: 'alice.card', slot: '9d', p12, p12Password: 'p12-secret-word' }));
    expect(noPin.path).toBe('pin');
    const alice = await bridge.request('softcard.import', { path: 'alice.card', slot: '9d', p12, p12Password: 'p12-secret-word', pin: '24681357' });
    expect(alice.slots.map((s) => s.slot)).toEqual(['9a', '9c', '9d']);
    expect((await readdir(join(dir, 'cards'))).sort()).toEqual(['alice.card', 'bob.card']);

    const everything = [logged.join('\n'), JSON.stringify(events), JSON.stringify((await bridge.request('log.tail', {})).lines)].join('\n');
    for (const secret of ['24681357', '87654321', 'p12-secret-word', '11223344', '99999999']) expect(everything).not.toContain(secret);
  });

  it('a soft card session over a passthru socket answers the VM, and is taken out and put back', async () => {
    const vm = await PassthruVm.listen();
    try {
      await bridge.request('session.add', { spec: passthru('alice', vm.port, { card: { kind: 'soft', path: 'alice.card' } }) });
      await until('active', () => bridge.snapshot().sessions.find((s) => s.name === 'alice')?.vm.cardInserted === true);
      const answer = await vm.apdu(Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x09, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00]));
      expect(answer.kind).toBe('response');
      if (answer.kind === 'response') expect(Buffer.from(answer.data.subarray(-2)).toString('hex')).toBe('9000');
      await until('counted', () => bridge.snapshot().sessions.find((s) => s.name === 'alice')!.counters.answered === 1);
      const status = bridge.snapshot().sessions.find((s) => s.name === 'alice')!;
      expect(status.card.name).toContain('alice.card');
      expect(status.counters.lastSw).toBe(0x9000);
      await until('a counters event', () => events.some((e) => e.type === 'counters' && e.data.name === 'alice' && e.data.counters.answered === 1));

      expect((await bridge.request('session.insert', { name: 'alice', present: false })).card.present).toBe(false);
      await until('the VM was told', () => vm.atr === undefined);
      expect((await bridge.request('session.insert', { name: 'alice', present: true })).card.present).toBe(true);
      await until('the VM has the card again', () => vm.atr !== undefined);

      // Another card source from now on: the session links again with it.
      const changed = await bridge.request('session.card', { name: 'alice', card: { kind: 'demo' } });
      expect(changed.card.source).toEqual({ kind: 'demo' });
      await until('active with the demo card', () => {
        const s = bridge.snapshot().sessions.find((x) => x.name === 'alice')!;
        return s.phase === 'active' && s.vm.cardInserted && !s.card.name.includes('alice.card');
      });
      const bad = await rejection(bridge.request('session.card', { name: 'alice', card: { kind: 'soft', path: '../../x' } }));
      expect(bad.code).toBe('invalid-params');
      await bridge.request('session.remove', { name: 'alice' });
      await until('the reader left the VM', () => !vm.connected);
    } finally {
      await vm.close();
    }
  });

  it('a passthru target on a Unix socket (unix:PATH) works like HOST:PORT', async () => {
    const vm = await PassthruVm.listen();
    const path = join(dir, 'ccid.sock');
    // The chardev's Unix socket, relayed to the in-process VM side.
    const relay = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: vm.port });
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => relay.listen(path, r));
    try {
      await bridge.request('session.add', { spec: passthru('unix', 1, { target: `unix:${path}` }) });
      await until('active', () => bridge.snapshot().sessions.find((s) => s.name === 'unix')?.vm.cardInserted === true);
      expect((await vm.apdu(Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x09, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00]))).kind).toBe('response');
      await bridge.request('session.remove', { name: 'unix' });
      await bridge.request('session.add', { spec: passthru('unix-missing', 1, { target: `unix:${join(dir, 'nothing.sock')}` }) });
      await until('waiting', () => bridge.snapshot().sessions.find((s) => s.name === 'unix-missing')?.phase === 'waiting');
      expect(bridge.snapshot().sessions.find((s) => s.name === 'unix-missing')?.problem?.message).toContain('unix:');
      await bridge.request('session.remove', { name: 'unix-missing' });
    } finally {
      await new Promise<void>((r) => relay.close(() => r()));
      await vm.close();
    }
  });

  it('session.add with .vv content: the session dials what the file says and shows the name it was given', async () => {
    const vv = '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=1\n';
    const added = await bridge.request('session.add', { spec: { name: 'from-vv', mode: 'connect', target: 'console.vv', card: { kind: 'demo' } }, vv });
    expect(added.target).toBe('console.vv');
    await until('waiting', () => bridge.snapshot().sessions.find((s) => s.name === 'from-vv')?.phase === 'waiting');
    const s = bridge.snapshot().sessions.find((x) => x.name === 'from-vv')!;
    expect(s.target).toBe('console.vv');
    expect(s.problem?.code).toBe('network');
    await bridge.request('session.remove', { name: 'from-vv' });
    const wrongMode = await rejection(bridge.request('session.add', { spec: passthru('vv-passthru', 5), vv }));
    expect(wrongMode.path).toBe('vv');
  });

  it('a session whose card file is broken fails with a card problem; the session beside it is not disturbed', async () => {
    const vm = await PassthruVm.listen();
    const other = await PassthruVm.listen();
    await writeFile(join(dir, 'cards', 'broken.card'), 'this is not a card file\n', { mode: 0o600 });
    try {
      await bridge.request('session.add', { spec: passthru('good', vm.port) });
      await bridge.request('session.add', { spec: passthru('broken', other.port, { card: { kind: 'soft', path: 'broken.card' } }) });
      const find = (name: string) => bridge.snapshot().sessions.find((s) => s.name === name);
      await until('broken failed', () => find('broken')?.phase === 'failed');
      expect(find('broken')?.problem?.code).toBe('card');
      expect(find('broken')?.problem?.message).toContain('broken.card');
      await until('good active', () => find('good')?.phase === 'active' && find('good')?.vm.cardInserted === true);
      expect((await vm.apdu(Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x09, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00]))).kind).toBe('response');
      expect(other.readerAdded).toBe(false);
      await bridge.request('session.remove', { name: 'broken' });
      await bridge.request('session.remove', { name: 'good' });
    } finally {
      await Promise.all([vm.close(), other.close()]);
    }
  });

  it('a reader session without pcscd puts its reader into the VM, with no card until the reader has one', async () => {
    const vm = await PassthruVm.listen();
    try {
      await bridge.request('session.add', { spec: passthru('yubi', vm.port, { card: { kind: 'reader', reader: 'Yubico*' } }) });
      const find = () => bridge.snapshot().sessions.find((s) => s.name === 'yubi');
      await until('active', () => find()?.phase === 'active', 15_000);
      expect(find()?.vm).toEqual({ readerAdded: true, cardInserted: false });
      expect(find()?.card.present).toBe(false);
      expect(vm.readerAdded).toBe(true);
      expect(vm.atr).toBeUndefined();
      await bridge.request('session.remove', { name: 'yubi' });
    } finally {
      await vm.close();
    }
  });

  it('session.insert on a reader session is a conflict; log.tail returns the last lines', async () => {
    await bridge.request('session.add', { spec: passthru('reader', 9, { card: { kind: 'reader', reader: 'Nobody*' }, autostart: false }) });
    const e = await rejection(bridge.request('session.insert', { name: 'reader', present: false }));
    expect(e.code).toBe('conflict');
    expect(bridge.snapshot().readers).toEqual([]);
    await bridge.request('session.remove', { name: 'reader' });
    const tail = await bridge.request('log.tail', { lines: 2 });
    expect(tail.lines.length).toBe(2);
    expect(tail.lines.at(-1)?.message).toBe('session removed');
    expect((await bridge.request('log.tail', { lines: 0 })).lines).toEqual([]);
  });

  it('relative card paths stay in the card directory; the default directory follows XDG_DATA_HOME', () => {
    expect(resolveCardPath('a/b.card', '/data/cards', 'path')).toBe('/data/cards/a/b.card');
    expect(resolveCardPath('/abs/c.card', '/data/cards', 'path')).toBe('/abs/c.card');
    for (const bad of ['..', '../x', 'a/../../x', '', 'a/..']) expect(() => resolveCardPath(bad, '/data/cards', 'path')).toThrow(ControlError);
    expect(defaultCardDirectory({ XDG_DATA_HOME: '/xdg' })).toBe('/xdg/spice-smartcard/cards');
    expect(defaultCardDirectory({ XDG_DATA_HOME: '' })).toMatch(/\.local\/share\/spice-smartcard\/cards$/);
  });

  it('close() stops every session and refuses requests after', async () => {
    const vm = await PassthruVm.listen();
    try {
      await bridge.addSession(passthru('last', vm.port));
      await until('active', () => bridge.snapshot().sessions.find((s) => s.name === 'last')?.vm.cardInserted === true);
      await bridge.close();
      expect(vm.received.map((m) => m.type)).toContain(4 /* CardRemove */);
      expect((await rejection(bridge.request('status.get', {}))).code).toBe('conflict');
    } finally {
      await vm.close();
    }
  });
});
