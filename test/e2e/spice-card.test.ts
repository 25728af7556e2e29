// A card forwarded over the SPICE smartcard channel reaches the guest's PC/SC stack (QEMU
// usb-ccid + ccid-card-passthru, guest pcscd + libccid + OpenSC). One boot for the group.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiceSession } from '../../spice/session.js';
import { createTransport } from '../../spice/transport.js';
import { SpiceCardLink } from '../../src/bridge/spice-card-link.js';
import { toHex } from '../../spice/bytes.js';
import { ScriptedCard, SCRIPTED_ATR } from '../helpers/scripted-card.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const qemu = findQemu();
const skip = qemu === null && !process.env['CI'];

describe.skipIf(skip)('card over the SPICE smartcard channel, seen by a real guest', () => {
  let vm: GuestVm;
  let session: SpiceSession;
  let link: SpiceCardLink;
  const card = new ScriptedCard();
  const events: string[] = [];

  beforeAll(async () => {
    const images = await buildGuest();
    vm = await bootGuestVm({ images });
    session = new SpiceSession({ transport: createTransport({ host: '127.0.0.1', port: vm.spicePort!, tls: {} }), password: '' });
    await session.connect();
    link = await SpiceCardLink.open(session, card);
    for (const e of ['reader-added', 'card-inserted', 'card-removed'] as const) link.forwarder.on(e, () => events.push(e));
  }, 180_000);

  afterAll(async () => {
    await link?.stop();
    await session?.close();
    await vm?.shutdown();
  });

  it('the guest lists the QEMU reader with a card, and its ATR', async () => {
    await vm.waitFor('card_present', 30_000);
    const atr = await vm.run('opensc-tool --atr', { check: true });
    expect(atr.stdout.toLowerCase()).toContain(toHex(SCRIPTED_ATR, ':'));
  });

  it("the guest's commands reach the card and its answers come back", async () => {
    const r = await vm.run("opensc-tool --send-apdu 00:B0:00:05:08", { check: true });
    expect(r.stdout).toMatch(/Received \(SW1=0x90, SW2=0x00\)/);
    expect(r.stdout).toMatch(/05 06 07 08 09 0A 0B 0C/);
    expect(card.commands.some((c) => toHex(c) === '00 b0 00 05 08')).toBe(true);
    expect(link.forwarder.stats.count).toBeGreaterThan(0);
  });

  it('a card removed and inserted again is seen by the guest', async () => {
    card.remove();
    await vm.waitFor('! card_present', 30_000);
    card.insert();
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('opensc-tool --send-apdu 00:B0:00:00:02', { check: true });
    expect(r.stdout).toMatch(/00 01/);
    expect(events).toEqual(['reader-added', 'card-inserted', 'card-removed', 'card-inserted']);
  });

  it('stopping removes the card and the reader cleanly, and the session survives', async () => {
    await link.stop();
    await vm.waitFor('! card_present', 30_000);
    expect(link.forwarder.state).toBe('stopped');
    expect(session.state).toBe('ready');
  });
});
