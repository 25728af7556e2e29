// What main remembers of each session so it can add them again after the bridge's utility process
// crashed and came back empty. Only the spec is kept (the bridge never reports a password): a session
// whose password was typed comes back asking for it again. A .vv given as content comes back from
// the bridge's private copy, which the crashed process left behind.
import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { RequestParams, SessionSpec, SessionStatus } from '../../src/control/schema.js';
import { MAX_VV_BYTES } from './open-targets.js';

export interface Remembered {
  spec: SessionSpec;
  /** The target as the user named it (a .vv's file name when spec.target is the bridge's copy). */
  shownTarget: string;
  /** Stopped by the user: it comes back stopped. */
  stopped: boolean;
}

/** The bridge names its private .vv copies like this (src/serve/bridge.ts); nothing else is removed. */
const BRIDGE_VV_COPY = /^spice-smartcard-vv-[^/\\]+$/;

export class SessionMemory {
  private readonly entries = new Map<string, Remembered>();

  /** Follows a status the bridge reported; one without a spec (an older bridge) is not restorable. */
  remember(status: SessionStatus): void {
    if (status.spec === undefined || status.spec.name !== status.name) return;
    this.entries.set(status.name, { spec: status.spec, shownTarget: status.target, stopped: status.phase === 'stopped' });
  }

  /** Keeps one taken by takeMissing for the next restart (the bridge went away again before adding it). */
  keep(remembered: Remembered): void {
    if (!this.entries.has(remembered.spec.name)) this.entries.set(remembered.spec.name, remembered);
  }

  forget(name: string): void {
    this.entries.delete(name);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Sessions remembered but not in the bridge now (it restarted without them), forgotten as they are returned. */
  takeMissing(present: ReadonlySet<string>): Remembered[] {
    const missing = [...this.entries.values()].filter((r) => !present.has(r.spec.name));
    for (const r of missing) this.entries.delete(r.spec.name);
    return missing;
  }
}

/** True when the spec's target is the bridge's private copy of a .vv given as content. */
export function isVvCopy(r: Remembered): boolean {
  return r.spec.mode !== 'passthru' && r.spec.target !== r.shownTarget && BRIDGE_VV_COPY.test(basename(dirname(r.spec.target)));
}

export type RestorePlan =
  | { ok: true; params: RequestParams<'session.add'>; /** The crashed bridge's .vv copy, to remove once the new one has its own. */ leftover?: string }
  | { ok: false; reason: string };

/** The session.add that brings a remembered session back, or why it cannot come back. */
export async function restorePlan(r: Remembered): Promise<RestorePlan> {
  // It comes back as it was: a session added stopped and started since runs again, and the other way round.
  const { autostart: _asAdded, ...rest } = r.spec;
  const spec: SessionSpec = r.stopped ? { ...rest, autostart: false } : rest;
  if (!isVvCopy(r)) return { ok: true, params: { spec } };
  let content: string;
  try {
    content = await readCopy(r.spec.target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'the copy of its .vv file is gone' : `the copy of its .vv file cannot be read (${error instanceof Error ? error.message : String(error)})`;
    return { ok: false, reason: `${why}; open the .vv file from your VM portal again (a portal usually hands out a new one).` };
  }
  if (content.trim() === '') return { ok: false, reason: 'the copy of its .vv file is empty; open the .vv file from your VM portal again.' };
  return { ok: true, params: { spec: { ...spec, target: r.shownTarget }, vv: content }, leftover: dirname(r.spec.target) };
}

/** Removes a crashed bridge's .vv copy (it may hold a one-time ticket); only a directory named as the bridge names them. */
export async function removeLeftover(dir: string): Promise<void> {
  if (!BRIDGE_VV_COPY.test(basename(dir))) return;
  await rm(dir, { recursive: true, force: true });
}

async function readCopy(path: string): Promise<string> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > MAX_VV_BYTES) throw new Error(`${stat.size} bytes, too large for a .vv file`);
    return (await handle.readFile()).toString('utf8');
  } finally {
    await handle.close();
  }
}
