// Two cards forwarded straight to two ccid-card-passthru socket chardevs of one VM (libvirt's
// <smartcard mode='passthrough' type='tcp'>), each its own reader in the guest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '../../spice/bytes.js';
import { PassthruLink } from '../../src/bridge/passthru-link.js';
import { CliProcess } from '../helpers/cli-process.js';
import { ScriptedCard } from '../helpers/scripted-card.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const qemu = findQemu();
const skip = qemu === null && !process.env['CI'];

const atrA = Uint8Array.from([0x3b, 0x06, ...Buffer.from('CARD-A')]);
const atrB = Uint8Array.from([0x3b, 0x06, ...Buffer.from('CARD-B')]);

describe.skipIf(skip)('passthru: two readers on socket chardevs', () => {
  let vm: GuestVm;
  const links: PassthruLink[] = [];
  const cardA = new ScriptedCard(() => Uint8Array.of(0xaa, 0x90, 0x00), atrA);
  const cardB = new ScriptedCard(() => Uint8Array.of(0xbb, 0x90, 0x00), atrB);

  beforeAll(async () => {
    vm = await bootGuestVm({ images: await buildGuest(), smartcard: { sockets: 2 } });
    for (const [i, card] of [cardA, cardB].entries()) {
      links.push(await PassthruLink.open({ host: '127.0.0.1', port: vm.socketPorts[i]! }, card));
    }
  }, 180_000);

  afterAll(async () => {
    await Promise.all(links.map((l) => l.stop()));
    await vm?.shutdown();
  });

  it('the guest sees both cards, each in its own reader', async () => {
    await vm.waitFor('card_present 0 && card_present 1', 30_000);
    const atrs = [];
    for (const reader of [0, 1]) atrs.push((await vm.run(`opensc-tool --reader ${reader} --atr`, { check: true })).stdout.toLowerCase());
    expect(atrs.join(' ')).toContain(toHex(atrA, ':'));
    expect(atrs.join(' ')).toContain(toHex(atrB, ':'));
    const answers = [];
    for (const reader of [0, 1]) answers.push((await vm.run(`opensc-tool --reader ${reader} --send-apdu 00:CA:00:00:01`, { check: true })).stdout);
    expect(answers.join('\n')).toMatch(/AA/);
    expect(answers.join('\n')).toMatch(/BB/);
  });

  it('one card removed leaves the other in place', async () => {
    cardA.remove();
    await vm.waitFor('card_present && ! (card_present 0 && card_present 1)', 30_000);
    cardA.insert();
    await vm.waitFor('card_present 0 && card_present 1', 30_000);
  });

  it('stopping removes both cards', async () => {
    await Promise.all(links.map((l) => l.stop()));
    await vm.waitFor('! card_present', 30_000);
    for (const l of links) expect(l.forwarder.state).toBe('stopped');
  });
});

describe.skipIf(skip)('passthru command: two demo cards into two socket readers', () => {
  let vm: GuestVm;
  let cli: CliProcess;

  beforeAll(async () => {
    vm = await bootGuestVm({ images: await buildGuest(), smartcard: { sockets: 2 } });
    cli = new CliProcess(['passthru', ...vm.socketPorts.map((p) => `127.0.0.1:${p}`), '--demo-card', '--json-log']);
    await cli.waitForEvent('card-inserted', 60_000);
  }, 180_000);

  afterAll(async () => {
    await cli?.stop();
    await vm?.shutdown();
  });

  it("each reader holds a PIV card whose certificates the guest's OpenSC lists", async () => {
    await vm.waitFor('card_present 0 && card_present 1', 60_000);
    for (const reader of [0, 1]) {
      const r = await vm.run(`pkcs15-tool --reader ${reader} --list-certificates`, { check: true, timeoutMs: 60_000 });
      expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    }
    expect(new Set(cli.events.filter((e) => e.event === 'card-inserted').map((e) => e['reader'])).size).toBe(2);
  });

  it('Ctrl-C removes both cards and exits 0', async () => {
    expect(await cli.stop()).toBe(0);
    await vm.waitFor('! card_present', 30_000);
  });
});
