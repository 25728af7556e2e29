// `spice-smartcard connect --demo-card` as a user runs it, checked by the guest's own OpenSC:
// the reader with a card, the ATR, the PIV certificates, removal and re-insertion.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProcess } from '../helpers/cli-process.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const skip = findQemu() === null && !process.env['CI'];

describe.skipIf(skip)('connect --demo-card into a real guest', () => {
  let vm: GuestVm;
  let cli: CliProcess;

  beforeAll(async () => {
    vm = await bootGuestVm({ images: await buildGuest(), spicePassword: 'e2e-pw' });
    cli = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, '--demo-card', '--json-log'], { SPICE_PASSWORD: 'e2e-pw' });
    await cli.waitForEvent('card-inserted', 60_000);
  }, 180_000);

  afterAll(async () => {
    await cli?.stop();
    await vm?.shutdown();
  });

  it('the guest lists the QEMU reader with a card', async () => {
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('opensc-tool --list-readers', { check: true });
    expect(r.stdout).toMatch(/Yes\s+.*CCID/);
  });

  it("opensc-tool --atr prints the card's ATR", async () => {
    const inserted = cli.events.find((e) => e.event === 'card-inserted');
    const atr = String(inserted?.['atr']).match(/../g)!.join(':');
    const r = await vm.run('opensc-tool --atr', { check: true });
    expect(r.stdout.trim().toLowerCase()).toContain(atr);
  });

  it('pkcs15-tool --list-certificates lists the PIV certificates', async () => {
    const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(r.stdout).toMatch(/X\.509 Certificate \[.*PIV AUTH/i);
    expect(r.stdout).toMatch(/X\.509 Certificate \[.*SIGNATURE/i);
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    const apdus = cli.events.filter((e) => e.event === 'apdu');
    expect(apdus.length).toBeGreaterThan(5);
    expect(apdus.every((e) => e['data'] === undefined)).toBe(true);
  });

  it('a card removed and inserted again is seen by the guest', async () => {
    const from = cli.events.length;
    cli.signal('SIGUSR1');
    await cli.waitForEvent('card-removed', 30_000, from);
    await vm.waitFor('! card_present', 30_000);
    cli.signal('SIGUSR2');
    await cli.waitForEvent('card-inserted', 30_000, from);
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(r.stdout).toMatch(/PIV AUTH/i);
  });

  it('Ctrl-C removes the card and the reader, and exits 0', async () => {
    expect(await cli.stop()).toBe(0);
    expect(cli.events.at(-1)?.event).toBe('closed');
    await vm.waitFor('! card_present', 30_000);
  });
});
