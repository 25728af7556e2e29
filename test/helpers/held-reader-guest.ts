// The rig of the mid-APDU reliability tests: a demo card that can hold its answer to one command,
// in a private pcscd's vpcd reader, forwarded by the built `connect --reader` into a booted guest.
import { createDemoCard } from '../../vsc/soft-card/demo-card.js';
import { bootGuestVm, buildGuest, type GuestVm } from '../e2e/guest-vm.js';
import { CliProcess } from './cli-process.js';
import { HoldingCard } from './holding-card.js';
import { RIG_READERS, startPcscRig, type PcscRig } from './pcsc-rig.js';
import { VpcdCard } from './vpcd-card.js';

export interface HeldReaderGuest {
  rig: PcscRig;
  vm: GuestVm;
  card: HoldingCard;
  vcard: VpcdCard;
  cli: CliProcess;
  dispose(): Promise<void>;
}

/** Ready when the guest sees the card. */
export async function startHeldReaderGuest(): Promise<HeldReaderGuest> {
  const [images, rig] = await Promise.all([buildGuest(), startPcscRig()]);
  const card = new HoldingCard(await createDemoCard());
  const vcard = new VpcdCard(card, rig.connector(0));
  let vm: GuestVm | undefined;
  let cli: CliProcess | undefined;
  const dispose = async (): Promise<void> => {
    card.release();
    await cli?.stop();
    vcard.remove();
    await vm?.shutdown();
    await rig.dispose();
  };
  try {
    await vcard.insert();
    vm = await bootGuestVm({ images });
    cli = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, '--reader', RIG_READERS[0], '--json-log'], rig.env);
    await cli.waitForEvent('card-inserted', 60_000);
    await vm.waitFor('card_present', 30_000);
    return { rig, vm, card, vcard, cli, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}
