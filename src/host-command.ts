// Finding the host programs the product drives (QEMU, pcscd, remote-viewer) without running them.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The sbin directories a normal user's PATH often lacks, though daemons such as pcscd live there. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of an executable found in PATH (and, with `sbin`, the sbin directories), or null. */
export function which(command: string, options: { sbin?: boolean } = {}): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  if (options.sbin) dirs.push(...SBIN_DIRS);
  for (const dir of dirs) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}
