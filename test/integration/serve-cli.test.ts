// The built CLI `serve --config` against QEMU's spice-server (no guest): config errors, the connection
// file, sessions reaching 'active' over the control API, JSON log lines, SIGHUP adding, changing and
// removing sessions, and SIGTERM removing the cards and readers before exiting 0. The SPICE password
// never shows. Then startServe on its own, as the desktop app calls it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlClient } from '../../src/control/client.js';
import { connectNode } from '../../src/control/node-client.js';
import type { SessionSpec, SessionStatus } from '../../src/control/schema.js';
import { readConnectionFile } from '../../src/control/token.js';
import { emptyServeConfig, type ServeConfig } from '../../src/serve/config-file.js';
import { ServeStartError, startServe } from '../../src/serve/serve.js';
import { CLI_PATH, runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { checkBinaries } from '../helpers/process.js';
import { startSpiceServer, type SpiceServer } from '../helpers/qemu.js';

const binaries = checkBinaries(['qemu-system-x86_64']);
const PASSWORD = 'Serve-itest-pw-4821';

/** `serve` as a child process, its stderr kept line by line. */
class ServeProcess {
  readonly child: ChildProcessWithoutNullStreams;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: readonly string[]) {
    const env = { ...process.env };
    delete env['SPICE_PASSWORD'];
    this.child = spawn(process.execPath, [CLI_PATH, 'serve', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  lines(): string[] {
    return this.stderr.split('\n').filter((l) => l.trim() !== '');
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, context: () => string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function smartcardChannels(vm: SpiceServer): Promise<number> {
  const r = (await vm.qmp('query-spice')) as { channels?: { 'channel-type': number }[] };
  return (r.channels ?? []).filter((c) => c['channel-type'] === 8).length;
}

describe.skipIf(binaries.skip)(`serve --config against QEMU ${binaries.reason}`, () => {
  let vm: SpiceServer;
  let dir: string;
  let serve: ServeProcess | undefined;
  let client: ControlClient | undefined;
  const sessionEvents: SessionStatus[] = [];

  const configText = (sessions: string[]): string => ['[log]', 'level = "debug"', '', ...sessions].join('\n');
  const connectSession = (): string =>
    ['[[sessions]]', 'name = "vm1"', 'mode = "connect"', `target = "spice://127.0.0.1:${vm.port!}"`, 'passwordFile = "vm1.pw"', 'card = { kind = "demo" }', 'reconnect = { initialMs = 200, maxMs = 2000 }', ''].join('\n');
  const passthruSession = (): string =>
    ['[[sessions]]', 'name = "vm1-ccid"', 'mode = "passthru"', `target = "127.0.0.1:${vm.socketReaderPorts[0]!}"`, 'card.kind = "demo"', ''].join('\n');
  const context = (): string => `serve stderr:\n${serve?.stderr ?? ''}`;

  beforeAll(async () => {
    vm = await startSpiceServer({ password: PASSWORD, socketReaders: 1 });
    dir = await mkdtemp(join(tmpdir(), 'serve-cli-'));
    await writeFile(join(dir, 'vm1.pw'), `${PASSWORD}\n`, { mode: 0o600 });
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await serve?.kill();
    await vm?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('refuses a config with errors: exit 2, every problem with its line, nothing started', async () => {
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, ['[[sessions]]', 'name = "vm1"', 'mode = "conect"', 'target = "spice://127.0.0.1:1"', 'card = { kind = "pcsc" }', '', '[log]', 'levle = "debug"', ''].join('\n'));
    const connectionFile = join(dir, 'never.json');
    const result = await runCli(['serve', '--config', bad, '--control', '127.0.0.1:0', '--connection-file', connectionFile]);
    expect(result.code).toBe(2);
    expect(result.stderr.split('\n').slice(0, 3)).toStrictEqual([
      `${bad}:3: sessions[0].mode: must be one of connect, passthru, proxy (got "conect")`,
      `${bad}:5: sessions[0].card.kind: must be one of demo, soft, reader, replay, none (got "pcsc")`,
      `${bad}:8: log.levle: unknown key; did you mean "level"?`,
    ]);
    expect(result.stderr).toContain('3 problems');
    expect(existsSync(connectionFile)).toBe(false);
  });

  it('says which port is in use and which option changes it', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const result = await runCli(['serve', '--control', `127.0.0.1:${port}`, '--connection-file', join(dir, 'taken.json')]);
      expect(result.code).toBe(3);
      expect(result.stderr).toContain(`The control port 127.0.0.1:${port} is already in use`);
      expect(result.stderr).toContain('--control HOST:PORT');
      expect(result.stderr).not.toContain('internal error');
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('writes a 0600 connection file with url and token, and brings the session to active over the control API', async () => {
    const config = join(dir, 'serve.toml');
    await writeFile(config, configText([connectSession()]));
    const connectionFile = join(dir, 'run', 'control.json');
    serve = new ServeProcess(['--config', config, '--control', '127.0.0.1:0', '--connection-file', connectionFile, '--log-format', 'json']);
    await until('the connection file', () => existsSync(connectionFile) || undefined, context);
    expect(statSync(connectionFile).mode & 0o777).toBe(0o600);
    const info = readConnectionFile(connectionFile);
    expect(info.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(info.token).toMatch(/^[0-9a-f]{64}$/);
    expect(info.pid).toBe(serve.child.pid);
    expect(serve.stderr).not.toContain(info.token);

    client = await connectNode(info.url, info.token);
    client.on('session', (data) => sessionEvents.push(data.status));
    const c = client;
    const active = await until(
      'vm1 active with the card in the VM',
      async () => (await c.request('status.get', {})).sessions.find((s) => s.name === 'vm1' && s.phase === 'active' && s.vm.cardInserted),
      context,
    );
    expect(active.card.atr).toMatch(/^3B/);
    expect(active.target).not.toContain(PASSWORD);
    expect(await smartcardChannels(vm)).toBe(1);
  });

  it('logs one JSON object per line on stderr, nothing on stdout', () => {
    const lines = serve!.lines();
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      expect(Object.keys(parsed).filter((k) => k !== 'session')).toStrictEqual(['time', 'level', 'message']);
      expect(new Date(parsed['time'] as string).toISOString()).toBe(parsed['time']);
    }
    expect(lines.some((l) => (JSON.parse(l) as { session?: string }).session === 'vm1')).toBe(true);
    expect(serve!.stdout).toBe('');
  });

  it('SIGHUP with an added session brings it up and keeps the first one running', async () => {
    const config = join(dir, 'serve.toml');
    await writeFile(config, configText([connectSession(), passthruSession()]));
    const before = sessionEvents.length;
    serve!.child.kill('SIGHUP');
    const c = client!;
    await until(
      'vm1-ccid active',
      async () => (await c.request('status.get', {})).sessions.find((s) => s.name === 'vm1-ccid' && s.phase === 'active' && s.vm.readerAdded),
      context,
    );
    const vm1 = (await c.request('status.get', {})).sessions.find((s) => s.name === 'vm1');
    expect(vm1?.phase).toBe('active');
    // vm1 was not restarted: no event put it anywhere but active since the reload.
    expect(sessionEvents.slice(before).filter((s) => s.name === 'vm1' && s.phase !== 'active')).toStrictEqual([]);
    expect(serve!.stderr).toMatch(/SIGHUP: re-read .*: added vm1-ccid/);
  });

  it('SIGHUP restarts a changed session and removes a dropped one, leaving the others alone', async () => {
    const config = join(dir, 'serve.toml');
    const c = client!;
    const before = sessionEvents.length;
    await writeFile(config, configText([connectSession(), passthruSession().replace('card.kind = "demo"', 'card.kind = "none"')]));
    serve!.child.kill('SIGHUP');
    await until(
      'vm1-ccid restarted without a card',
      async () => (await c.request('status.get', {})).sessions.find((s) => s.name === 'vm1-ccid' && s.phase === 'active' && s.card.source.kind === 'none'),
      context,
    );
    expect(serve!.stderr).toMatch(/SIGHUP: re-read .*: restarted vm1-ccid \(changed\)/);

    const removed = new Promise<string>((resolve) => c.on('session.removed', (data) => resolve(data.name)));
    await writeFile(config, configText([connectSession()]));
    serve!.child.kill('SIGHUP');
    expect(await removed).toBe('vm1-ccid');
    await until('the removal logged', () => /SIGHUP: re-read .*: removed vm1-ccid/.test(serve!.stderr) || undefined, context);
    expect(sessionEvents.slice(before).filter((st) => st.name === 'vm1' && st.phase !== 'active')).toStrictEqual([]);

    // Back to both, for the tests that follow.
    await writeFile(config, configText([connectSession(), passthruSession()]));
    serve!.child.kill('SIGHUP');
    await until('vm1-ccid back', async () => (await c.request('status.get', {})).sessions.find((st) => st.name === 'vm1-ccid' && st.phase === 'active' && st.vm.cardInserted), context);
  });

  it('SIGHUP with a broken config keeps the sessions and says why', async () => {
    const config = join(dir, 'serve.toml');
    await writeFile(config, `${configText([connectSession()])}\nbogus = 1\n`);
    const mark = serve!.stderr.length;
    serve!.child.kill('SIGHUP');
    await until('the reload refusal', () => /running sessions are kept/.test(serve!.stderr.slice(mark)) || undefined, context);
    expect(serve!.stderr.slice(mark)).toContain('bogus: unknown key');
    // serve's own lines reach control clients too, not only its stderr.
    const tail = (await client!.request('log.tail', {})).lines.map((l) => l.message);
    expect(tail.some((m) => /^Control API at ws:/.test(m))).toBe(true);
    expect(tail.some((m) => /running sessions are kept/.test(m))).toBe(true);
    const names = (await client!.request('status.get', {})).sessions.map((s) => [s.name, s.phase]);
    expect(names).toStrictEqual([
      ['vm1', 'active'],
      ['vm1-ccid', 'active'],
    ]);
  });

  it('SIGTERM stops every session (readers out of the VM, channel closed) and exits 0', async () => {
    const connectionFile = join(dir, 'run', 'control.json');
    const before = sessionEvents.length;
    serve!.child.kill('SIGTERM');
    expect(await serve!.exited).toBe(0);
    const last = new Map(sessionEvents.slice(before).map((s) => [s.name, s]));
    for (const name of ['vm1', 'vm1-ccid']) {
      expect(last.get(name)?.phase, name).toBe('stopped');
      expect(last.get(name)?.vm, name).toStrictEqual({ readerAdded: false, cardInserted: false });
    }
    await until('the smartcard channel closed', async () => ((await smartcardChannels(vm)) === 0 ? true : undefined), context, 10_000);
    expect(existsSync(connectionFile)).toBe(false);
    expect(serve!.stderr).toContain('Stopped.');
  });

  it('without --config: an empty bridge that the control API fills; SIGINT exits 0', async () => {
    const connectionFile = join(dir, 'empty', 'control.json');
    const bare = new ServeProcess(['--control', '127.0.0.1:0', '--connection-file', connectionFile]);
    try {
      await until('the connection file', () => existsSync(connectionFile) || undefined, () => bare.stderr);
      const info = readConnectionFile(connectionFile);
      const c = await connectNode(info.url, info.token);
      try {
        expect((await c.request('status.get', {})).sessions).toStrictEqual([]);
        await c.request('session.add', { spec: { name: 'api', mode: 'passthru', target: `127.0.0.1:${vm.socketReaderPorts[0]!}`, card: { kind: 'demo' } } });
        await until('api active', async () => (await c.request('status.get', {})).sessions.find((s) => s.name === 'api' && s.phase === 'active' && s.vm.cardInserted), () => bare.stderr);
      } finally {
        await c.close();
      }
      expect(bare.stderr).toMatch(/^\S+Z info  No --config: sessions are added through the control API\.$/m);
      // The session's own lines carry its name (their wording is the bridge's).
      expect(bare.stderr).toMatch(/^\S+Z info  \[api\] \S/m);
      bare.child.kill('SIGINT');
      expect(await bare.exited).toBe(0);
    } finally {
      await bare.kill();
    }
  });

  it('never shows the password file content', async () => {
    expect(serve!.stderr).not.toContain(PASSWORD);
    expect(serve!.stdout).not.toContain(PASSWORD);
    expect(await readFile(join(dir, 'serve.toml'), 'utf8')).not.toContain(PASSWORD);
  });
});

// startServe itself, as the desktop app calls it: no QEMU needed, sessions that never start.
describe('startServe', () => {
  const quiet = { log: () => undefined };
  const idle = (name: string, port: number, card: SessionSpec['card'] = { kind: 'none' }): SessionSpec => ({ name, mode: 'passthru', target: `127.0.0.1:${port}`, card, autostart: false });
  const withSessions = (sessions: SessionSpec[]): ServeConfig => ({ ...emptyServeConfig(), sessions });

  it('reload adds, removes and restarts the config\'s sessions; the config wins over an API session of the same name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'serve-reload-'));
    const running = await startServe({ config: withSessions([idle('a', 2001), idle('b', 2002)]), control: { host: '127.0.0.1', port: 0, connectionFile: false }, log: quiet, version: 'test', cardDirectory: dir });
    try {
      expect(running.initial).toStrictEqual({ added: ['a', 'b'], removed: [], changed: [], failed: [] });
      expect(running.connectionFile).toBeUndefined();
      await running.bridge.request('session.add', { spec: idle('api', 2003) });
      await running.bridge.request('session.add', { spec: idle('c', 2004) });
      const first = await running.reload(withSessions([idle('a', 2001), idle('b', 2002, { kind: 'demo' }), idle('c', 2005), idle('d', 2006)]));
      expect(first).toStrictEqual({ added: ['d'], removed: [], changed: ['b', 'c'], failed: [] });
      const targets = (): string[][] => running.bridge.snapshot().sessions.map((st) => [st.name, st.target]).sort((x, y) => x[0]!.localeCompare(y[0]!));
      expect(targets()).toStrictEqual([
        ['a', '127.0.0.1:2001'],
        ['api', '127.0.0.1:2003'],
        ['b', '127.0.0.1:2002'],
        ['c', '127.0.0.1:2005'],
        ['d', '127.0.0.1:2006'],
      ]);
      const second = await running.reload(withSessions([idle('b', 2002, { kind: 'demo' })]));
      expect(second).toStrictEqual({ added: [], removed: ['a', 'c', 'd'], changed: [], failed: [] });
      // The API's own session is not the config's to remove.
      expect(targets().map(([name]) => name)).toStrictEqual(['api', 'b']);
    } finally {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a connection file it cannot write stops the start, and the control port is free again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'serve-start-'));
    try {
      const notADirectory = join(dir, 'file');
      await writeFile(notADirectory, '');
      const port = await freePort();
      const error: unknown = await startServe({ control: { host: '127.0.0.1', port, connectionFile: join(notADirectory, 'control.json') }, log: quiet, version: 'test', cardDirectory: dir }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ServeStartError);
      expect((error as Error).message).toMatch(/^Cannot write the connection file .*control\.json: (ENOTDIR|EEXIST)\. Choose another place with --connection-file PATH\.$/);
      const again = createServer();
      await new Promise<void>((resolve, reject) => {
        again.once('error', reject);
        again.listen(port, '127.0.0.1', resolve);
      });
      await new Promise((resolve) => again.close(resolve));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
