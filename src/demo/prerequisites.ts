// What the demo needs from the host, checked before anything starts, so that a missing piece is
// named with the exact line that installs it instead of failing halfway through a boot.
import { spawnSync } from 'node:child_process';
import { which } from '../host-command.js';
import { loadPcsclite } from '../../vsc/pcsc/pcsclite-backend.js';
import { findQemu, missingGuestBuildPackages } from './guest-image.js';

export interface DemoPrerequisites {
  /** Debian packages to install, for one apt-get line. */
  missingPackages: string[];
  /** What no Debian package fixes (another OS, a QEMU without smartcard devices). */
  problems: string[];
}

export const OTHER_SYSTEMS_ADVICE =
  "The demo's VM is built from this machine's Debian packages and boots an x86-64 Linux kernel under QEMU: " +
  'run the demo on Debian 12 or Ubuntu (x86-64), in a VM or container if need be. ' +
  'Or skip it: spice-smartcard probe and connect work on any system against a VM of your own (README, "Using it").';

/** The smartcard devices of the VM; Debian's and Ubuntu's qemu-system-x86 have them. */
const QEMU_DEVICES = ['usb-ccid', 'ccid-card-passthru'];

export async function checkDemoPrerequisites(options: { reader: boolean }): Promise<DemoPrerequisites> {
  const missing = new Set<string>();
  const problems: string[] = [];
  if (process.platform !== 'linux' || process.arch !== 'x64' || which('apt-get', { sbin: true }) === null || which('dpkg', { sbin: true }) === null) {
    problems.push(`This is not a Debian-like x86-64 Linux (${process.platform}/${process.arch}). ${OTHER_SYSTEMS_ADVICE}`);
    return { missingPackages: [], problems };
  }
  const qemu = findQemu();
  if (qemu === null) missing.add('qemu-system-x86');
  else {
    const help = spawnSync(qemu, ['-device', 'help'], { encoding: 'utf8', timeout: 10_000 });
    const absent = QEMU_DEVICES.filter((d) => !help.stdout?.includes(`"${d}"`));
    if (absent.length > 0) problems.push(`${qemu} has no ${absent.join(' or ')} device: it was built without smartcard support. Install Debian's or Ubuntu's qemu-system-x86.`);
  }
  // openssl goes into the guest when the host has it: the guest verifies the card's signature with it.
  if (which('openssl') === null) missing.add('openssl');
  const forBuild = await missingGuestBuildPackages();
  if (forBuild === null) problems.push('guest/build-guest.sh could not check the packages it needs (is bash installed?).');
  else for (const p of forBuild) missing.add(p);
  if (options.reader) {
    try {
      loadPcsclite();
    } catch (e) {
      missing.add('libpcsclite-dev');
      problems.push(`${e instanceof Error ? e.message : String(e)}.`);
    }
  }
  return { missingPackages: [...missing], problems };
}

/** What to tell the user: the apt-get line first, then the rest. */
export function prerequisitesAdvice(p: DemoPrerequisites, isRoot: boolean = process.getuid?.() === 0): string {
  const lines: string[] = [];
  if (p.missingPackages.length > 0) {
    lines.push('The demo needs system packages this machine lacks. Install them with:');
    lines.push(`  ${isRoot ? '' : 'sudo '}apt-get install -y --no-install-recommends ${p.missingPackages.join(' ')}`);
    lines.push('then run `npm run demo` again.');
  }
  lines.push(...p.problems);
  if (p.missingPackages.length > 0 && !p.problems.some((t) => t.includes(OTHER_SYSTEMS_ADVICE))) lines.push(`On other systems: ${OTHER_SYSTEMS_ADVICE}`);
  return lines.join('\n');
}
