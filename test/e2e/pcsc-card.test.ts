// A card in a host PC/SC reader (a real, private pcscd with vsmartcard's vpcd; the card served
// in TypeScript) forwarded by `connect --reader` into a real guest: the guest sees the card's
// historical bytes under a T=0 ATR and its answers, OpenSC lists the PIV certificates through
// the whole PC/SC path, host removal/reinsertion shows in the guest, and a pcscd restart on the
// host leaves the bridge running and forwarding again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Card } from '../../vsc/card.js';
import { createDemoCard } from '../../vsc/soft-card/demo-card.js';
import { CliProcess } from '../helpers/cli-process.js';
import { pcscRigSkipReason, RIG_READERS, startPcscRig, type PcscRig } from '../helpers/pcsc-rig.js';
import { VpcdCard } from '../helpers/vpcd-card.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const rigProblem = pcscRigSkipReason();
const skip = (findQemu() === null || rigProblem !== undefined) && !process.env['CI'];

describe.skipIf(skip)(`PC/SC reader passthrough into a real guest ${rigProblem ?? ''}`, () => {
  let rig: PcscRig;
  let vm: GuestVm;
  let vcard: VpcdCard;
  let cli: CliProcess;

  beforeAll(async () => {
    rig = await startPcscRig();
    const demo = await createDemoCard();
    vcard = new VpcdCard(demo, rig.connector(0));
    await vcard.insert();
    vm = await bootGuestVm({ images: await buildGuest() });
    cli = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, '--reader', RIG_READERS[0], '--json-log'], rig.env);
    await cli.waitForEvent('card-inserted', 60_000);
  }, 180_000);

  afterAll(async () => {
    await cli?.stop();
    vcard?.remove();
    await vm?.shutdown();
    await rig?.dispose();
  });

  it("the guest sees the card's ATR (historical bytes kept, T=0) and its answers", async () => {
    await vm.waitFor('card_present', 30_000);
    const atr = (await vm.run('opensc-tool --atr', { check: true })).stdout.toLowerCase();
    // The demo card's historical bytes: 80 F9 A0 00 00 03 08 00 00 10 00 (the PIV AID, compact-TLV).
    expect(atr).toContain('80:f9:a0:00:00:03:08:00:00:10:00');
    const select = await vm.run('opensc-tool --send-apdu 00:A4:04:00:09:A0:00:00:03:08:00:00:10:00:00', { check: true });
    expect(select.stdout).toMatch(/SW1=0x90, SW2=0x00/);
    expect(select.stdout).toMatch(/61 .* 4F/);
  });

  it('pkcs15-tool lists the PIV certificates through the PC/SC path', async () => {
    const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
  });

  it('a card removed on the host disappears in the guest and comes back when reinserted', async () => {
    const from = cli.events.length;
    vcard.remove();
    await cli.waitForEvent('card-removed', 30_000, from);
    await vm.waitFor('! card_present', 30_000);
    await vcard.insert();
    await cli.waitForEvent('card-inserted', 30_000, from);
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(r.stdout).toMatch(/X\.509 Certificate/);
  });

  it('pcscd restarted on the host: the bridge keeps running and forwards the card again', async () => {
    const from = cli.events.length;
    vcard.remove();
    await rig.restart();
    await vcard.insert();
    await cli.waitForEvent('card-inserted', 60_000, from);
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    expect(cli.child.exitCode).toBeNull();
    expect(cli.events.some((e) => e.event === 'notice')).toBe(true);
  });

  it('a T=1 card (a YubiKey-like ATR) is shown to the guest as T=0, and OpenSC still reads it', async () => {
    expect(await cli.stop()).toBe(0);
    await vm.waitFor('! card_present', 30_000);
    // The same PIV applet behind a T=1 ATR: pcscd speaks T=1 to it, the guest T=0 to QEMU.
    const demo = await createDemoCard();
    const t1Atr = Uint8Array.from(Buffer.from('3bfd1300008131fe158073c021c057597562694b657940', 'hex'));
    const t1Card: Card = {
      name: 'T=1 PIV card',
      atr: () => t1Atr,
      transmit: (apdu) => demo.transmit(apdu),
      on: (event, listener) => demo.on(event, listener),
      off: (event, listener) => demo.off(event, listener),
    };
    const t1 = new VpcdCard(t1Card, rig.connector(1));
    await t1.insert();
    const second = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, '--reader', RIG_READERS[1], '--json-log'], rig.env);
    try {
      const inserted = await second.waitForEvent('card-inserted', 60_000);
      expect(inserted['atr']).toBe('3b1d138073c021c057597562694b6579');
      await vm.waitFor('card_present', 30_000);
      const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
      expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    } finally {
      expect(await second.stop()).toBe(0);
      t1.remove();
    }
  });
});
