// Replaces a file so that a crash at any moment leaves either the old or the new content,
// never a mix: write a temporary file in the same directory, fsync it, rename it over the
// target (atomic on POSIX within one file system), then fsync the directory so the rename
// itself survives a power cut. Card files hold retry counters, so losing or tearing a write
// would hand out free PIN tries or brick the card.

import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file; card files are 0600 (owner read/write only). */
  readonly mode?: number;
  /** Test hook: runs after the temporary file is complete, before the rename. Throwing aborts the write. */
  readonly beforeRename?: (tempPath: string) => void | Promise<void>;
}

/** `.NAME.RANDOM.tmp` beside the target: hidden, and recognisable as ours. */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const tempPath = temporaryPathFor(path);
  // 'wx': never follow or reuse an existing file; the mode applies from creation, so the
  // content is never readable by others, not even for a moment.
  const handle = await open(tempPath, 'wx', mode);
  let renamed = false;
  try {
    try {
      await handle.writeFile(data);
      await handle.chmod(mode); // the umask applies at creation; the result must be exactly `mode`
      await handle.sync();
    } finally {
      await handle.close();
    }
    await options.beforeRename?.(tempPath);
    await rename(tempPath, path);
    renamed = true;
    await syncDirectory(dirname(path));
  } finally {
    if (!renamed) await unlink(tempPath).catch(() => undefined);
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await handle.close();
  }
}
