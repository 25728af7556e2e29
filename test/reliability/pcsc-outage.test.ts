// The host's PC/SC service killed while a guest command is in flight: a card in a private
// pcscd's reader (vpcd + a TypeScript card that holds its answer to one command) is forwarded by
// `connect --reader` into a real guest; the guest sends that command, pcscd gets SIGKILL while
// the card sits on it. The guest must get an error status (not wait forever), the bridge must
// say the service is down and keep running, and after pcscd restarts the card is back in the guest.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/cli-process.js';
import { startHeldReaderGuest, type HeldReaderGuest } from '../helpers/held-reader-guest.js';
import { HELD_COMMAND_HEX, type HoldingCard, isHeldCommand } from '../helpers/holding-card.js';
import { pcscdLogTail, pcscRigSkipReason, type PcscRig } from '../helpers/pcsc-rig.js';
import type { VpcdCard } from '../helpers/vpcd-card.js';
import { findQemu, type GuestVm } from '../e2e/guest-vm.js';

/** Waits for the bridge's notice with that code (the reader's own notice may come first). */
async function waitForNotice(cli: CliProcess, code: string, from: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cli.events.slice(from).some((e) => e.event === 'notice' && e['code'] === code)) {
    if (Date.now() > deadline) throw new Error(`no "${code}" notice; events: ${JSON.stringify(cli.events.slice(from))}; stderr: ${cli.stderr}`);
    await sleep(50);
  }
}

const rigProblem = pcscRigSkipReason();
const skip = (findQemu() === null || rigProblem !== undefined) && !process.env['CI'];

describe.skipIf(skip)(`PC/SC service killed mid-APDU ${rigProblem ?? ''}`, () => {
  let rig: PcscRig;
  let vm: GuestVm;
  let card: HoldingCard;
  let vcard: VpcdCard;
  let cli: CliProcess;
  let outageFrom = 0;

  let harness: HeldReaderGuest | undefined;

  beforeAll(async () => {
    harness = await startHeldReaderGuest();
    ({ rig, vm, card, vcard, cli } = harness);
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  it('the guest gets an error status for the command in flight, and the bridge says the service is down', async () => {
    const from = cli.events.length;
    outageFrom = from;
    const held = card.holdNext(isHeldCommand);
    const guest = vm.run(`opensc-tool -s ${HELD_COMMAND_HEX}`, { timeoutMs: 45_000 });
    await held;
    const pid = rig.pid();
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    await rig.stop();

    const r = await guest;
    // A hang would end in the agent's timeout; an answer would print the card's SW.
    expect(r.timedOut, `guest output: ${r.stdout}${r.stderr}`).toBe(false);
    expect(r.rc, `guest output: ${r.stdout}${r.stderr}`).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/SW1=0x6f/i);

    await waitForNotice(cli, 'service-down', from);
    const failed = cli.events.slice(from).find((e) => e.event === 'apdu' && e['failed'] === true);
    expect(failed, JSON.stringify(cli.events.slice(from))).toBeDefined();
    expect(cli.child.exitCode).toBeNull();
  }, 90_000);

  it('the card leaves the guest while the service is down', async () => {
    await cli.waitForEvent('card-removed', 30_000, outageFrom);
    await vm.waitFor('! card_present', 30_000);
    expect(cli.child.exitCode).toBeNull();
  }, 60_000);

  it('pcscd restarted: the bridge recovers and the guest reads the card again', async () => {
    const from = cli.events.length;
    card.release();
    await rig.start();
    await vcard.insert();
    await cli.waitForEvent('card-inserted', 60_000, from);
    await waitForNotice(cli, 'service-up', from);
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('pkcs15-tool --list-certificates', { timeoutMs: 60_000 });
    expect(r.rc, `${r.stdout}${r.stderr}\npcscd:\n${pcscdLogTail(rig)}`).toBe(0);
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    expect(cli.child.exitCode).toBeNull();
  }, 120_000);
});
