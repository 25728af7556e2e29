// `spice-smartcard control ...` as a user runs it (the built CLI), against a real ServeBridge behind a
// control server started here, found through a connection file in a temp dir.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BridgeSnapshot, SessionStatus } from '../../src/control/schema.js';
import { startControlServer, type ControlServer } from '../../src/control/server.js';
import { newControlToken, writeConnectionFile } from '../../src/control/token.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import type { ServeLog } from '../../src/serve/serve-log.js';
import { CLI_PATH, runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';

describe('spice-smartcard control', () => {
  let dir: string;
  let bridge: ServeBridge;
  let server: ControlServer;
  let connection: string;
  let deadPort: number;
  const token = newControlToken();
  const logged: string[] = [];
  const log: ServeLog = { log: (level, message, session) => logged.push(`${level} ${session ?? '-'} ${message}`) };
  const control = (...args: string[]) => runCli(['control', ...args, '--connection-file', connection]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'control-cli-'));
    bridge = new ServeBridge({ log, version: '0.1.0-test', cardDirectory: join(dir, 'cards'), pcsc: false });
    server = await startControlServer({ service: bridge, host: '127.0.0.1', port: 0, token, log });
    connection = join(dir, 'run', 'control.json');
    writeConnectionFile(connection, { url: server.url, token, pid: process.pid });
    deadPort = await freePort();
  });

  afterAll(async () => {
    await server?.close();
    await bridge?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('status of a bridge without sessions', async () => {
    const r = await control('status');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^bridge 0\.1\.0-test, pid \d+, up since /);
    expect(r.stdout).toContain('No sessions.');
    const json = await control('status', '--json');
    expect((JSON.parse(json.stdout) as BridgeSnapshot).sessions).toEqual([]);
  });

  it('ui prints the address with the token in the fragment, which opens the control API', async () => {
    const r = await control('ui');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`${server.url}#token=${token}`);
    const json = await control('ui', '--json');
    expect(JSON.parse(json.stdout)).toEqual({ url: `${server.url}#token=${token}` });
    const missing = await runCli(['control', 'ui', '--connection-file', join(dir, 'nowhere.json')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/is "spice-smartcard serve" running\?/);
  });

  it('add, start, stop, eject, logs and remove a session', async () => {
    const spec = join(dir, 'lab.json');
    await writeFile(spec, JSON.stringify({ name: 'lab', mode: 'connect', target: `spice://127.0.0.1:${deadPort}`, card: { kind: 'demo' }, autostart: false }));
    const password = join(dir, 'password');
    await writeFile(password, 'hunter2\nignored\n', { mode: 0o600 });

    const added = await control('add', '--spec-file', spec, '--password-file', password);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/^added lab: stopped, card demo/);

    const status = await control('status', '--json');
    const snapshot = JSON.parse(status.stdout) as BridgeSnapshot;
    expect(snapshot.sessions.map((s) => [s.name, s.mode, s.phase, s.target])).toEqual([['lab', 'connect', 'stopped', `spice://127.0.0.1:${deadPort}`]]);
    expect((await control('status')).stdout).toMatch(/\nlab\s+connect\s+stopped\s+spice:\/\/127\.0\.0\.1:\d+\s+demo \(not in VM\)\s+0\n/);

    const started = await control('start', 'lab', '--json');
    expect(started.code).toBe(0);
    expect((JSON.parse(started.stdout) as SessionStatus).phase).not.toBe('stopped');

    const ejected = await control('eject', 'lab', '--json');
    expect(ejected.code).toBe(0);
    expect((JSON.parse(ejected.stdout) as SessionStatus).card.present).toBe(false);
    const inserted = await control('insert', 'lab', '--json');
    expect(inserted.code).toBe(0);
    expect((JSON.parse(inserted.stdout) as SessionStatus).card.present).toBe(true);

    const stopped = await control('stop', 'lab');
    expect([stopped.code, stopped.stdout]).toEqual([0, expect.stringMatching(/^lab: stopped/)]);

    const logs = await control('logs', '--lines', '100');
    expect(logs.code).toBe(0);
    expect(logs.stdout).toMatch(/\[lab\]/);
    expect(logs.stdout + logged.join('\n')).not.toContain('hunter2');

    const removed = await control('remove', 'lab');
    expect([removed.code, removed.stdout]).toEqual([0, 'removed lab\n']);
    expect((JSON.parse((await control('status', '--json')).stdout) as BridgeSnapshot).sessions).toEqual([]);
  });

  it('logs --follow prints the tail, then new lines as they come, until Ctrl-C', async () => {
    const child = spawn(process.execPath, [CLI_PATH, 'control', 'logs', '--follow', '--json', '--connection-file', connection], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      await expect.poll(() => stdout, { timeout: 10_000 }).toMatch(/session removed/);
      const before = stdout.split('\n').length;
      await bridge.request('session.add', { spec: { name: 'followed', mode: 'connect', target: 'spice://127.0.0.1:1', card: { kind: 'none' }, autostart: false } });
      await expect.poll(() => stdout, { timeout: 10_000 }).toMatch(/"session":"followed"/);
      const fresh = stdout.split('\n').slice(before - 1).filter((l) => l !== '');
      expect(fresh.map((l) => (JSON.parse(l) as { session?: string }).session)).toContain('followed');
      await bridge.request('session.remove', { name: 'followed' });
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  });

  it('says what the bridge refused, with exit code 2', async () => {
    const missing = await control('stop', 'nobody');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^spice-smartcard: .*nobody/);
    const spec = join(dir, 'bad.json');
    await writeFile(spec, JSON.stringify({ name: 'bad name!', mode: 'connect', target: 'spice://127.0.0.1:1', card: { kind: 'demo' } }));
    const bad = await control('add', '--spec-file', spec);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/spec\.name/);
    const notJson = join(dir, 'bad.txt');
    await writeFile(notJson, '{ nope');
    expect((await control('add', '--spec-file', notJson)).stderr).toMatch(/is not valid JSON/);
    expect((await control('frobnicate')).code).toBe(2);
    expect((await control('start')).code).toBe(2);
  });

  it('explains a missing, unsafe or stale connection file', async () => {
    const none = await runCli(['control', 'status', '--connection-file', join(dir, 'nothing.json')]);
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/is "spice-smartcard serve" running\?/);

    const loose = join(dir, 'loose.json');
    await writeFile(loose, JSON.stringify({ url: server.url, token, pid: process.pid }));
    await chmod(loose, 0o644);
    const unsafe = await runCli(['control', 'status', '--connection-file', loose]);
    expect(unsafe.code).toBe(4);
    expect(unsafe.stderr).toMatch(/can be read by other users \(mode 0644\)/);

    const stale = join(dir, 'stale', 'control.json');
    writeConnectionFile(stale, { url: server.url, token: newControlToken(), pid: 1 });
    const refused = await runCli(['control', 'status', '--connection-file', stale]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/refused the token/);

    const gone = join(dir, 'gone', 'control.json');
    writeConnectionFile(gone, { url: `http://127.0.0.1:${deadPort}/`, token, pid: 1 });
    const unreachable = await runCli(['control', 'status', '--connection-file', gone]);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toMatch(/Nothing listens/);
  });
});
