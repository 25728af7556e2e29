// A serve session reconnects by itself: the demo card is in a real guest (its pcscd and OpenSC see
// it), QEMU is killed, the session waits and says why, QEMU starts again on the same SPICE port with
// the same guest image, and the session goes connecting → active on its own: the new guest sees the
// card. One boot per QEMU, both in this file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionPhase, SessionStatus } from '../../src/control/schema.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { bootGuestVm, buildGuest, findQemu, type GuestImages, type GuestVm } from './guest-vm.js';

const skip = findQemu() === null && !process.env['CI'];

describe.skipIf(skip)('serve: a session follows its VM through a QEMU restart', () => {
  let images: Pick<GuestImages, 'kernel' | 'initrd'>;
  let first: GuestVm | undefined;
  let second: GuestVm | undefined;
  let bridge: ServeBridge;
  const seen: Array<{ phase: SessionPhase; problem?: string }> = [];

  const status = (): SessionStatus => bridge.snapshot().sessions[0]!;
  const until = async (what: string, check: () => boolean, timeoutMs: number): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(status())}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    images = await buildGuest();
    first = await bootGuestVm({ images });
    bridge = new ServeBridge({ log: { log: () => undefined }, version: 'e2e', pcsc: false });
    bridge.subscribe((e) => {
      if (e.type !== 'session') return;
      const last = seen.at(-1);
      if (last?.phase !== e.data.status.phase) seen.push({ phase: e.data.status.phase, ...(e.data.status.problem !== undefined ? { problem: e.data.status.problem.code } : {}) });
    });
    await bridge.addSession({
      name: 'vm',
      mode: 'connect',
      target: `spice://127.0.0.1:${first.spicePort!}`,
      card: { kind: 'demo' },
      reconnect: { initialMs: 500, maxMs: 2_000 },
    });
  }, 240_000);

  afterAll(async () => {
    await bridge?.close();
    await Promise.all([first?.shutdown(), second?.shutdown()]);
  });

  it('the guest sees the demo card and its two certificates', async () => {
    await until('active', () => status().phase === 'active' && status().vm.cardInserted, 30_000);
    await first!.waitFor('card_present', 30_000);
    const list = await first!.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(list.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    expect(list.stdout).toContain('Certificate for PIV Authentication');
  }, 120_000);

  it('QEMU killed and started again on the same port: waiting (why) → connecting → active by itself, and the guest sees the card again', async () => {
    const port = first!.spicePort!;
    const mark = seen.length;
    process.kill(first!.pid, 'SIGKILL');
    await until('waiting', () => status().phase === 'waiting', 20_000);
    expect(status().problem?.code).toBe('network');
    expect(status().problem?.message).toMatch(/closed|went away|refused|stopped/i);
    expect(status().retry?.at).toBeGreaterThan(Date.now() - 60_000);
    await first!.shutdown();

    second = await bootGuestVm({ images, spicePort: port });
    await until('active again', () => status().phase === 'active' && status().vm.cardInserted, 60_000);
    const after = seen.slice(mark).map((s) => s.phase);
    const waiting = after.indexOf('waiting');
    const connecting = after.indexOf('connecting', waiting);
    const active = after.indexOf('active', connecting);
    expect(waiting).toBeGreaterThanOrEqual(0);
    expect(connecting).toBeGreaterThan(waiting);
    expect(active).toBeGreaterThan(connecting);
    expect(after).not.toContain('stopped');
    expect(after).not.toContain('failed');
    expect(status().reconnects).toBeGreaterThanOrEqual(1);

    await second.waitFor('card_present', 60_000);
    const list = await second.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(list.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
  }, 180_000);

  it('stopping the session takes the card out of the guest', async () => {
    await bridge.request('session.stop', { name: 'vm' });
    await second!.waitFor('! card_present', 30_000);
    expect(status().phase).toBe('stopped');
  }, 60_000);
});
