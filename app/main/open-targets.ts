// Turns what the OS opened into `session.add`: a .vv file is read here (its content goes to the bridge,
// and the file is removed when it says delete-this-file=1: its ticket is a one-time secret), a link as is.
import { constants } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { RequestParams } from '../../src/control/schema.js';
import type { OpenDefaults } from '../shared/desktop-api.js';
import { sessionNameFor } from '../shared/session-name.js';
import type { OpenTarget } from './targets.js';

export const MAX_VV_BYTES = 1024 * 1024;

export type { OpenDefaults };

/** "With my viewer", forwarding the first PC/SC reader: what a user opening a portal's .vv expects. */
export const DEFAULT_OPEN: OpenDefaults = { mode: 'proxy', card: { kind: 'reader', reader: '*' } };

export class VvReadError extends Error {
  override name = 'VvReadError';
}

/** Reads a .vv file (bounded; a FIFO does not hang) and removes it when it asks to be. */
export async function readVv(path: string): Promise<{ content: string; deleted: boolean }> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new VvReadError(`Cannot open ${basename(path)}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file (a portal file that was already used is often deleted)' : (error as Error).message}.`);
  }
  let content: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new VvReadError(`${basename(path)} is not a regular file.`);
    if (stat.size > MAX_VV_BYTES) throw new VvReadError(`${basename(path)} is ${stat.size} bytes: too large for a .vv file.`);
    content = (await handle.readFile()).toString('utf8');
  } finally {
    await handle.close();
  }
  let deleted = false;
  if (asksToBeDeleted(content)) {
    try {
      await unlink(path);
      deleted = true;
    } catch {
      // The session can still go ahead; the caller says the file is left.
    }
  }
  return { content, deleted };
}

/** `delete-this-file=1` (or true) in the [virt-viewer] group. */
export function asksToBeDeleted(content: string): boolean {
  let group = '';
  for (const raw of content.split(/\r?\n/)) {
    const line = raw.trim();
    const header = /^\[(.+)\]$/.exec(line);
    if (header !== null) {
      group = header[1]!.trim();
      continue;
    }
    const entry = /^delete-this-file\s*=\s*(.*)$/.exec(line);
    if (group === 'virt-viewer' && entry !== null) return /^(1|true)$/i.test(entry[1]!.trim());
  }
  return false;
}

export async function sessionAddFor(target: OpenTarget, defaults: OpenDefaults, taken: ReadonlySet<string>): Promise<RequestParams<'session.add'>> {
  if (target.kind === 'uri') {
    return { spec: { name: sessionNameFor(target.uri, taken), mode: defaults.mode, target: target.uri, card: defaults.card } };
  }
  const { content } = await readVv(target.path);
  const fileName = basename(target.path);
  return { spec: { name: sessionNameFor(fileName, taken), mode: defaults.mode, target: fileName, card: defaults.card }, vv: content };
}
