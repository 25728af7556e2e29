// The desktop app's settings file: what is accepted from the page or the file, a missing or broken
// file (ignored, with a notice that says why), writes that replace the file atomically, and the
// bridge's last control port kept next to the user's choice (older files without it still read).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkOpenDefaults, readSettings, SettingsStore, writeSettings } from '../../app/main/settings.js';

describe('"open with" defaults from untrusted input', () => {
  it('accepts each card kind a VM can be given by default, keeping only the known fields', () => {
    expect(checkOpenDefaults({ mode: 'proxy', card: { kind: 'reader', reader: '*' } })).toEqual({ ok: true, value: { mode: 'proxy', card: { kind: 'reader', reader: '*' } } });
    expect(checkOpenDefaults({ mode: 'connect', card: { kind: 'soft', path: '/home/u/alice.card', extra: 1 }, more: true })).toEqual({
      ok: true,
      value: { mode: 'connect', card: { kind: 'soft', path: '/home/u/alice.card' } },
    });
    expect(checkOpenDefaults({ mode: 'connect', card: { kind: 'demo' } })).toMatchObject({ ok: true });
    expect(checkOpenDefaults({ mode: 'proxy', card: { kind: 'none' } })).toMatchObject({ ok: true });
  });

  it('refuses what is not a default, saying which field', () => {
    const problem = (value: unknown): string => {
      const checked = checkOpenDefaults(value);
      if (checked.ok) throw new Error(`accepted ${JSON.stringify(value)}`);
      return checked.message;
    };
    expect(problem(null)).toBe('open is not an object');
    expect(problem([])).toBe('open is not an object');
    expect(problem({ mode: 'passthru', card: { kind: 'demo' } })).toContain('open.mode');
    expect(problem({ mode: 'proxy' })).toBe('open.card is not an object');
    expect(problem({ mode: 'proxy', card: { kind: 'replay', path: '/t.trace' } })).toContain('open.card.kind');
    expect(problem({ mode: 'proxy', card: { kind: 'reader', reader: '  ' } })).toContain('open.card.reader');
    expect(problem({ mode: 'proxy', card: { kind: 'reader', reader: 'x'.repeat(2000) } })).toContain('open.card.reader');
    expect(problem({ mode: 'proxy', card: { kind: 'soft', path: 42 } })).toContain('open.card.path');
    expect(problem({ mode: 'proxy', card: { kind: 'soft', path: 'a\0b' } })).toContain('open.card.path');
  });
});

describe('settings file', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'app-settings-'));
    file = join(dir, 'userData', 'settings.json');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const SETTINGS = { open: { mode: 'connect' as const, card: { kind: 'soft' as const, path: '/home/u/alice.card' } } };

  it('no file is no settings and nothing to say', async () => {
    expect(await readSettings(file)).toEqual({ settings: undefined });
  });

  it('writes the file (creating the folder, private to the user) and reads it back', async () => {
    await writeSettings(file, SETTINGS);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ version: 1, ...SETTINGS });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readSettings(file)).toEqual({ settings: SETTINGS });
    expect(await readdir(join(dir, 'userData'))).toEqual(['settings.json']);
  });

  it('replaces the file as a whole: the old file is never written in place', async () => {
    await writeSettings(file, { open: { mode: 'proxy', card: { kind: 'demo' } } });
    const before = await readFile(file, 'utf8');
    // An open handle keeps the old file: after an atomic rename it still reads the old content.
    const old = await open(file, 'r');
    try {
      await writeSettings(file, SETTINGS);
      expect(await old.readFile('utf8')).toBe(before);
    } finally {
      await old.close();
    }
    expect((await readSettings(file)).settings).toEqual(SETTINGS);
    expect(await readdir(join(dir, 'userData'))).toEqual(['settings.json']);
  });

  it('a failed write leaves no temp file and the old settings in place', async () => {
    await writeSettings(file, SETTINGS);
    const blocked = join(dir, 'userData', 'blocked.json');
    await mkdir(join(blocked, 'inside'), { recursive: true });
    await expect(writeSettings(blocked, SETTINGS)).rejects.toThrow();
    expect((await readdir(join(dir, 'userData'))).sort()).toEqual(['blocked.json', 'settings.json']);
    await expect(writeSettings(join(file, 'under-a-file.json'), SETTINGS)).rejects.toThrow();
    expect((await readSettings(file)).settings).toEqual(SETTINGS);
  });

  it('ignores a broken file with a notice that says which file, why, and what happens', async () => {
    await mkdir(join(dir, 'userData'));
    const cases: Array<[string, string]> = [
      ['{"version": 1, "open": ', 'it is not valid JSON'],
      ['[1, 2]', 'it is not a JSON object'],
      ['{"version": 2, "open": {"mode": "proxy", "card": {"kind": "demo"}}}', 'its version is not 1'],
      ['{"version": 1, "open": {"mode": "sideways", "card": {"kind": "demo"}}}', 'open.mode must be'],
      ['{"version": 1, "open": 5}', 'open is not an object'],
      [`{"version": 1, "pad": "${'x'.repeat(70_000)}"}`, 'too large for a settings file'],
    ];
    for (const [content, why] of cases) {
      await writeFile(file, content);
      const loaded = await readSettings(file);
      expect(loaded.settings).toBeUndefined();
      expect(loaded.notice).toContain('settings.json');
      expect(loaded.notice).toContain(why);
      expect(loaded.notice).toContain('The defaults apply');
    }
    await rm(file);
    await mkdir(file);
    expect((await readSettings(file)).notice).toContain('not a regular file');
  });

  it('a FIFO in place of the file does not hang the app', async () => {
    await mkdir(join(dir, 'userData'));
    execFileSync('mkfifo', [file]);
    const loaded = await readSettings(file);
    expect(loaded.settings).toBeUndefined();
    expect(loaded.notice).toContain('not a regular file');
  });

  it('reads a file from before the port was kept, and one with only the port', async () => {
    await mkdir(join(dir, 'userData'));
    await writeFile(file, JSON.stringify({ version: 1, ...SETTINGS }));
    expect(await readSettings(file)).toEqual({ settings: SETTINGS });
    await writeFile(file, '{"version": 1, "port": 41234}');
    expect(await readSettings(file)).toEqual({ settings: { port: 41234 } });
    await writeFile(file, '{"version": 1}');
    expect(await readSettings(file)).toEqual({ settings: {} });
    await writeSettings(file, { ...SETTINGS, port: 50001 });
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ version: 1, ...SETTINGS, port: 50001 });
    expect(await readSettings(file)).toEqual({ settings: { ...SETTINGS, port: 50001 } });
  });

  it('drops a bad port on its own: the user\'s choice in the same file is kept, without a notice', async () => {
    await mkdir(join(dir, 'userData'));
    for (const port of ['"41234"', '0', '80', '1023', '65536', '4.5', '-41234', 'null', '[41234]', '{"n": 41234}', '1e400']) {
      await writeFile(file, `{"version": 1, "open": ${JSON.stringify(SETTINGS.open)}, "port": ${port}}`);
      expect(await readSettings(file), port).toEqual({ settings: SETTINGS });
    }
    for (const port of [1024, 65535]) {
      await writeFile(file, JSON.stringify({ version: 1, port }));
      expect((await readSettings(file)).settings).toEqual({ port });
    }
  });

  it('two changes made at once both land: the port recorded while the user saves "open with"', async () => {
    await writeSettings(file, { open: { mode: 'proxy', card: { kind: 'demo' } }, port: 40000 });
    const store = new SettingsStore(file);
    expect(await store.load()).toBeUndefined();
    await Promise.all([store.update({ port: 41234 }), store.update({ open: SETTINGS.open })]);
    expect(store.settings).toEqual({ ...SETTINGS, port: 41234 });
    expect((await readSettings(file)).settings).toEqual({ ...SETTINGS, port: 41234 });
  });

  it('a failed change leaves what the store holds as it was; the next change builds on that', async () => {
    const store = new SettingsStore(file);
    await store.update({ port: 41234 });
    // A folder in the file's place: the rename at the end of the write fails.
    await rm(file);
    await mkdir(join(file, 'in-the-way'), { recursive: true });
    await expect(store.update({ port: 41235 })).rejects.toThrow();
    expect(store.settings).toEqual({ port: 41234 });
    expect(await readdir(join(dir, 'userData'))).toEqual(['settings.json']);

    await rm(file, { recursive: true });
    await store.update({ open: SETTINGS.open });
    expect(store.settings).toEqual({ port: 41234, ...SETTINGS });
    expect((await readSettings(file)).settings).toEqual({ port: 41234, ...SETTINGS });
  });

  it('the store saves in order: the last change made is the one kept', async () => {
    const store = new SettingsStore(file);
    expect(await store.load()).toBeUndefined();
    expect(store.settings).toBeUndefined();
    const first = store.save({ open: { mode: 'proxy', card: { kind: 'demo' } } });
    const second = store.save(SETTINGS);
    await Promise.all([first, second]);
    expect(store.settings).toEqual(SETTINGS);
    expect((await readSettings(file)).settings).toEqual(SETTINGS);
    const again = new SettingsStore(file);
    expect(await again.load()).toBeUndefined();
    expect(again.settings).toEqual(SETTINGS);
  });
});
