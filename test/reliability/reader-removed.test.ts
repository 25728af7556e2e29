// The card pulled from the host reader while a guest command is in flight: a card in a private
// pcscd's reader (vpcd + a TypeScript card that holds its answer to one command) is forwarded by
// `connect --reader` into a real guest; the guest sends that command and the card leaves the
// reader while it sits on it. The guest must get an error status (not wait forever), the card
// must leave the guest, the bridge must keep running, and a reinserted card must work again.
// (vpcd's reader cannot be unplugged, only its card: pulling the card is what reaches the guest.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/cli-process.js';
import { startHeldReaderGuest, type HeldReaderGuest } from '../helpers/held-reader-guest.js';
import { HELD_COMMAND_HEX, type HoldingCard, isHeldCommand } from '../helpers/holding-card.js';
import { pcscdLogTail, pcscRigSkipReason, type PcscRig } from '../helpers/pcsc-rig.js';
import type { VpcdCard } from '../helpers/vpcd-card.js';
import { findQemu, type GuestVm } from '../e2e/guest-vm.js';

const rigProblem = pcscRigSkipReason();
const skip = (findQemu() === null || rigProblem !== undefined) && !process.env['CI'];

describe.skipIf(skip)(`card pulled from the host reader mid-APDU ${rigProblem ?? ''}`, () => {
  let rig: PcscRig;
  let vm: GuestVm;
  let card: HoldingCard;
  let vcard: VpcdCard;
  let cli: CliProcess;

  let harness: HeldReaderGuest | undefined;

  beforeAll(async () => {
    harness = await startHeldReaderGuest();
    ({ rig, vm, card, vcard, cli } = harness);
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  it('the guest gets an error status for the command in flight', async () => {
    const from = cli.events.length;
    const held = card.holdNext(isHeldCommand);
    const guest = vm.run(`opensc-tool -s ${HELD_COMMAND_HEX}`, { timeoutMs: 45_000 });
    await held;
    vcard.remove();

    const r = await guest;
    // A hang would end in the agent's timeout; an answer would print the card's SW.
    expect(r.timedOut, `guest output: ${r.stdout}${r.stderr}`).toBe(false);
    expect(r.rc, `guest output: ${r.stdout}${r.stderr}`).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/SW1=0x6f/i);
    await cli.waitForEvent('card-removed', 30_000, from);
    const failed = cli.events.slice(from).find((e) => e.event === 'apdu' && e['failed'] === true);
    expect(failed, JSON.stringify(cli.events.slice(from))).toBeDefined();
  }, 90_000);

  it('the card leaves the guest, and the bridge keeps running', async () => {
    await vm.waitFor('! card_present', 30_000);
    const readers = await vm.run('opensc-tool --list-readers', { timeoutMs: 30_000 });
    expect(readers.stdout).toMatch(/No\s+.*CCID/);
    expect(cli.child.exitCode).toBeNull();
    expect(cli.events.filter((e) => e.event === 'error' && e['fatal'] === true)).toEqual([]);
  }, 60_000);

  it('the card reinserted works in the guest again', async () => {
    const from = cli.events.length;
    card.release();
    await vcard.insert();
    await cli.waitForEvent('card-inserted', 60_000, from);
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('pkcs15-tool --list-certificates', { timeoutMs: 60_000 });
    expect(r.rc, `${r.stdout}${r.stderr}\npcscd:\n${pcscdLogTail(rig)}`).toBe(0);
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    expect(cli.child.exitCode).toBeNull();
  }, 120_000);
});
