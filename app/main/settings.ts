// The app's user settings: a small JSON file in Electron's userData folder, kept by main. What it
// holds is checked on every read (the file is the user's to edit or break); a file that does not
// pass is ignored with a notice and replaced by the next save, which is atomic (temp file + rename).
// Besides the user's "open with" choice it keeps the bridge's last control port, so that the page's
// origin (and with it its localStorage) is the same from one start to the next.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { isPreferredPort } from '../bridge/bridge-args.js';
import type { OpenDefaults } from '../shared/desktop-api.js';

export const SETTINGS_FILE_NAME = 'settings.json';
const SETTINGS_VERSION = 1;
/** A settings file is a few hundred bytes; anything much larger is not one. */
const MAX_SETTINGS_BYTES = 64 * 1024;
const MAX_TEXT = 1024;

export interface AppSettings {
  /** None until the user saves one in the window. */
  open?: OpenDefaults;
  /** The control port the bridge listened on last; the app writes it, not the user. */
  port?: number;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isText = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '' && v.length <= MAX_TEXT && !v.includes('\0');

/** The "open with" defaults from untrusted input (the page or the file); `where` names it in messages. */
export function checkOpenDefaults(value: unknown, where = 'open'): Checked<OpenDefaults> {
  if (!isRecord(value)) return { ok: false, message: `${where} is not an object` };
  const { mode, card } = value;
  if (mode !== 'proxy' && mode !== 'connect') return { ok: false, message: `${where}.mode must be "proxy" (with my viewer) or "connect" (standalone)` };
  if (!isRecord(card)) return { ok: false, message: `${where}.card is not an object` };
  switch (card['kind']) {
    case 'demo':
    case 'none':
      return { ok: true, value: { mode, card: { kind: card['kind'] } } };
    case 'reader':
      if (!isText(card['reader'])) return { ok: false, message: `${where}.card.reader must name a reader (or "*" for the first one)` };
      return { ok: true, value: { mode, card: { kind: 'reader', reader: card['reader'] } } };
    case 'soft':
      if (!isText(card['path'])) return { ok: false, message: `${where}.card.path must be the path of a soft card file` };
      return { ok: true, value: { mode, card: { kind: 'soft', path: card['path'] } } };
    default:
      return { ok: false, message: `${where}.card.kind must be "reader", "soft", "demo" or "none"` };
  }
}

export function checkSettings(value: unknown): Checked<AppSettings> {
  if (!isRecord(value)) return { ok: false, message: 'it is not a JSON object' };
  if (value['version'] !== SETTINGS_VERSION) return { ok: false, message: `its version is not ${SETTINGS_VERSION}` };
  const settings: AppSettings = {};
  // A file saved before the port was kept has only "open"; one saved before the user chose has only "port".
  if (value['open'] !== undefined) {
    const open = checkOpenDefaults(value['open']);
    if (!open.ok) return open;
    settings.open = open.value;
  }
  // A bad port is dropped on its own: it costs a free port (and the page's localStorage) once, whereas
  // ignoring the whole file would also cost the user's own choice.
  if (isPreferredPort(value['port'])) settings.port = value['port'];
  return { ok: true, value: settings };
}

export interface LoadedSettings {
  /** Undefined when there is no usable file: the caller's defaults apply. */
  settings: AppSettings | undefined;
  /** Why the file was ignored, for the user. */
  notice?: string;
}

export async function readSettings(path: string): Promise<LoadedSettings> {
  let text: string;
  try {
    text = await readBounded(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { settings: undefined };
    return { settings: undefined, notice: ignored(path, error instanceof Error ? error.message : String(error)) };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { settings: undefined, notice: ignored(path, 'it is not valid JSON') };
  }
  const checked = checkSettings(parsed);
  return checked.ok ? { settings: checked.value } : { settings: undefined, notice: ignored(path, checked.message) };
}

/** Writes the whole file atomically: a reader sees the old settings or the new ones, never half. */
export async function writeSettings(path: string, settings: AppSettings): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify({ version: SETTINGS_VERSION, ...settings }, null, 2)}\n`);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Saves one after the other, so two quick changes land in the order they were made. */
export class SettingsStore {
  private current: AppSettings | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  /** Reads the file; resolves to a notice when it was there but not usable. */
  async load(): Promise<string | undefined> {
    const loaded = await readSettings(this.path);
    this.current = loaded.settings;
    return loaded.notice;
  }

  get settings(): AppSettings | undefined {
    return this.current;
  }

  save(settings: AppSettings): Promise<void> {
    return this.update(() => settings);
  }

  /**
   * Changes some settings and keeps the others. The change is applied to what the previous save
   * left, not to what was there when update was called, so two changes made at once (the page saving
   * "open with" while main records the port) both land.
   */
  update(patch: Partial<AppSettings> | ((current: AppSettings | undefined) => AppSettings)): Promise<void> {
    const write = this.writing.then(async () => {
      const next = typeof patch === 'function' ? patch(this.current) : { ...this.current, ...patch };
      await writeSettings(this.path, next);
      this.current = next;
    });
    this.writing = write.catch(() => undefined);
    return write;
  }
}

function ignored(path: string, why: string): string {
  return `Your settings file ${basename(path)} (in ${dirname(path)}) was ignored: ${why}. The defaults apply (with my viewer, first PC/SC reader); the app replaces the file the next time it saves a setting.`;
}

async function readBounded(path: string): Promise<string> {
  // Non-blocking: a FIFO in place of the file must not hang the app.
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error('it is not a regular file');
    if (stat.size > MAX_SETTINGS_BYTES) throw new Error(`it is ${stat.size} bytes, too large for a settings file`);
    return await readFile(handle, 'utf8');
  } finally {
    await handle.close();
  }
}
