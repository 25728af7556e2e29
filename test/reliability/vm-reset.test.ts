// The VM reset while a card is forwarded: `connect --demo-card` puts the card into a real guest,
// QMP system_reset reboots the guest (the SPICE session and the smartcard channel survive a
// reset), and after the reboot the guest's fresh pcscd and OpenSC see the card again, while the
// bridge never stopped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProcess } from '../helpers/cli-process.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from '../e2e/guest-vm.js';

const skip = findQemu() === null && !process.env['CI'];

describe.skipIf(skip)('VM reset while a card is present', () => {
  let vm: GuestVm;
  let cli: CliProcess;
  let agentStarts = 0;
  const agentWaiters = new Set<() => void>();

  function agentStarted(count: number, timeoutMs: number): Promise<void> {
    if (agentStarts >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the guest agent did not start again within ${timeoutMs} ms; console:\n${vm.console.slice(-3000)}`)), timeoutMs);
      const check = (): void => {
        if (agentStarts < count) return;
        clearTimeout(timer);
        agentWaiters.delete(check);
        resolve();
      };
      agentWaiters.add(check);
    });
  }

  beforeAll(async () => {
    vm = await bootGuestVm({
      images: await buildGuest(),
      // The driver passes -no-reboot (a guest reboot ends QEMU); here a reset must reboot.
      extraQemuArgs: ['-action', 'reboot=reset'],
      onConsoleLine: (line) => {
        if (!line.includes('GUEST-EVENT: agent-ready')) return;
        agentStarts++;
        for (const w of [...agentWaiters]) w();
      },
    });
    cli = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, '--demo-card', '--json-log']);
    await cli.waitForEvent('card-inserted', 60_000);
    await vm.waitFor('card_present', 30_000);
  }, 180_000);

  afterAll(async () => {
    await cli?.stop();
    await vm?.shutdown();
  });

  it('the guest reboots on system_reset and sees the card again', async () => {
    const before = agentStarts;
    // The guest's root file system lives in RAM: a marker file does not survive a reboot.
    await vm.run('touch /tmp/before-reset', { check: true });
    await vm.qmp('system_reset');
    await agentStarted(before + 1, 120_000);
    expect((await vm.run('test -e /tmp/before-reset')).rc).not.toBe(0);
    await vm.waitFor('card_present', 60_000);
    const atr = await vm.run('opensc-tool --atr', { check: true });
    expect(atr.stdout.toLowerCase()).toContain('80:f9:a0:00:00:03:08:00:00:10:00');
  }, 180_000);

  it('OpenSC in the rebooted guest lists the certificates, and the bridge never stopped', async () => {
    const r = await vm.run('pkcs15-tool --list-certificates', { timeoutMs: 60_000 });
    expect(r.rc, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    expect(cli.child.exitCode).toBeNull();
    expect(cli.events.filter((e) => e.event === 'error' && e['fatal'] === true)).toEqual([]);
    expect(cli.events.filter((e) => e.event === 'closed')).toEqual([]);
  }, 90_000);

  it('connect still stops cleanly and takes the card out of the rebooted guest', async () => {
    expect(await cli.stop()).toBe(0);
    await vm.waitFor('! card_present', 30_000);
  }, 60_000);
});
