// What main keeps to add sessions again after the bridge's utility process crashed: the spec the
// real bridge reports (never a password), and the bridge's private copy of a .vv given as content.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SessionSpec, SessionStatus } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { isVvCopy, removeLeftover, restorePlan, SessionMemory } from '../../app/main/session-restore.js';

const VV = '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=5999\npassword=one-time-ticket\ndelete-this-file=1\n';

function status(spec: SessionSpec, phase: SessionStatus['phase'], target = spec.target): SessionStatus {
  return {
    name: spec.name,
    mode: spec.mode,
    target,
    phase,
    since: 0,
    card: { source: spec.card, name: 'c', present: true },
    vm: { readerAdded: false, cardInserted: false },
    counters: { answered: 0, failed: 0, cardMs: 0 },
    reconnects: 0,
    tracing: false,
    spec,
  };
}

describe('session restore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'app-restore-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the bridge reports each session spec, without the password, and keeps a .vv given as content', async () => {
    const bridge = new ServeBridge({ log: { log: () => undefined }, version: 't', pcsc: false, cardDirectory: dir });
    const events: ControlEvent[] = [];
    bridge.subscribe((e) => events.push(e));
    try {
      const plain: SessionSpec = { name: 'typed', mode: 'connect', target: 'spice://127.0.0.1:5999', card: { kind: 'demo' }, autostart: false };
      const added = await bridge.request('session.add', { spec: plain, password: 'typed-secret' });
      expect(added.spec).toEqual(plain);
      const fromVv = await bridge.request('session.add', { spec: { name: 'portal', mode: 'connect', target: 'portal.vv', card: { kind: 'demo' }, autostart: false }, vv: VV });
      expect(fromVv.target).toBe('portal.vv');
      expect(fromVv.spec?.target).not.toBe('portal.vv');
      const sessionEvents = events.flatMap((e) => (e.type === 'session' ? [e.data.status] : []));
      expect(sessionEvents.map((s) => s.spec?.name)).toEqual(['typed', 'portal']);
      const snapshot = bridge.snapshot();
      expect(JSON.stringify(snapshot)).not.toContain('typed-secret');

      // The bridge's process dies here (nothing is closed): main has what it remembered.
      const memory = new SessionMemory();
      for (const s of snapshot.sessions) memory.remember(s);
      const missing = memory.takeMissing(new Set());
      expect(missing.map((r) => r.spec.name)).toEqual(['typed', 'portal']);
      expect(memory.takeMissing(new Set())).toEqual([]);

      const typed = await restorePlan(missing[0]!);
      expect(typed).toEqual({ ok: true, params: { spec: { ...plain, autostart: false } } });
      const portal = await restorePlan(missing[1]!);
      if (!portal.ok) throw new Error(portal.reason);
      expect(portal.params).toEqual({ spec: { name: 'portal', mode: 'connect', target: 'portal.vv', card: { kind: 'demo' }, autostart: false }, vv: VV });
      expect(portal.leftover).toBe(dirname(fromVv.spec!.target));
      await removeLeftover(portal.leftover!);
      expect(existsSync(portal.leftover!)).toBe(false);
    } finally {
      await bridge.close();
    }
  });

  it('a session stopped by the user comes back stopped; a running one runs again', async () => {
    const spec: SessionSpec = { name: 'vm', mode: 'proxy', target: 'spice://10.0.0.5:5900', card: { kind: 'reader', reader: '*' } };
    const memory = new SessionMemory();
    memory.remember(status(spec, 'stopped'));
    expect(await restorePlan(memory.takeMissing(new Set())[0]!)).toEqual({ ok: true, params: { spec: { ...spec, autostart: false } } });
    memory.remember(status(spec, 'needs-password'));
    expect(await restorePlan(memory.takeMissing(new Set())[0]!)).toEqual({ ok: true, params: { spec } });
    // Added stopped, started since: it runs again.
    memory.remember(status({ ...spec, autostart: false }, 'active'));
    expect(await restorePlan(memory.takeMissing(new Set())[0]!)).toEqual({ ok: true, params: { spec } });
  });

  it('remembers only what the bridge reported a spec for, forgets removed sessions, restores only the missing', () => {
    const spec = (name: string): SessionSpec => ({ name, mode: 'connect', target: 'spice://h:1', card: { kind: 'demo' } });
    const memory = new SessionMemory();
    const { spec: _dropped, ...noSpec } = status(spec('old-bridge'), 'active');
    memory.remember(noSpec);
    memory.remember({ ...status(spec('a'), 'active'), name: 'not-a' });
    memory.remember(status(spec('kept'), 'active'));
    memory.remember(status(spec('removed'), 'active'));
    memory.remember(status(spec('back'), 'active'));
    memory.forget('removed');
    expect(memory.size).toBe(2);
    expect(memory.takeMissing(new Set(['back'])).map((r) => r.spec.name)).toEqual(['kept']);
  });

  it('says why a .vv session cannot come back when its copy is gone or empty', async () => {
    const copyDir = join(dir, 'spice-smartcard-vv-AbC123');
    const spec: SessionSpec = { name: 'portal', mode: 'proxy', target: join(copyDir, 'session.vv'), card: { kind: 'demo' } };
    const memory = new SessionMemory();
    memory.remember(status(spec, 'active', 'portal.vv'));
    const [remembered] = memory.takeMissing(new Set());
    expect(isVvCopy(remembered!)).toBe(true);
    const gone = await restorePlan(remembered!);
    expect(gone).toEqual({ ok: false, reason: expect.stringContaining('the copy of its .vv file is gone') as unknown });
    expect(gone.ok ? '' : gone.reason).toContain('open the .vv file from your VM portal again');
    await mkdir(copyDir);
    await writeFile(spec.target, '  \n');
    expect(await restorePlan(remembered!)).toEqual({ ok: false, reason: expect.stringContaining('is empty') as unknown });
    await rm(spec.target);
    await mkdir(spec.target);
    expect(await restorePlan(remembered!)).toEqual({ ok: false, reason: expect.stringContaining('not a regular file') as unknown });
  });

  it('a .vv path the user named is not a copy, and only the bridge copy folders are ever removed', async () => {
    const spec: SessionSpec = { name: 'lab', mode: 'connect', target: join(dir, 'lab.vv'), card: { kind: 'demo' } };
    const memory = new SessionMemory();
    memory.remember(status(spec, 'active'));
    memory.remember(status({ ...spec, name: 'elsewhere' }, 'active', 'shown.vv'));
    const [lab, elsewhere] = memory.takeMissing(new Set());
    expect(isVvCopy(lab!)).toBe(false);
    expect(await restorePlan(lab!)).toEqual({ ok: true, params: { spec } });
    // target differs from what is shown, but the folder is not one the bridge made: used as the spec says.
    expect(isVvCopy(elsewhere!)).toBe(false);
    await removeLeftover(dir);
    expect(existsSync(dir)).toBe(true);
  });
});
