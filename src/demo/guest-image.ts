// The tiny Linux VM's disk-less image: a Debian kernel and an initramfs with pcscd and OpenSC,
// built by guest/build-guest.sh from this host's Debian packages into a cache (~5 s cold, ~20 ms
// when fresh). The demo and the end-to-end tests boot it (guest-vm.ts).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { which } from '../host-command.js';

/** Directory of the guest sources (build-guest.sh, init, agent.sh): `guest/` at the package root, also from dist/. */
export const GUEST_DIR: string = findGuestDir();

function findGuestDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'guest');
    if (existsSync(join(candidate, 'build-guest.sh'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return join(dirname(fileURLToPath(import.meta.url)), 'guest');
}

/** The QEMU binary (env SPICE_SMARTCARD_QEMU overrides), or null when it is not installed. */
export function findQemu(): string | null {
  const fromEnv = process.env.SPICE_SMARTCARD_QEMU;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : which(fromEnv);
  return which('qemu-system-x86_64');
}

/** Installing QEMU with the modules the VM needs (spice, usb-ccid). */
export const QEMU_APT_LINE = 'apt-get install -y --no-install-recommends qemu-system-x86';

export interface GuestImages {
  /** Kernel to boot: the uncompressed ELF vmlinux (PVH entry) when available, else the bzImage. */
  kernel: string;
  /** Initramfs to boot: the uncompressed cpio (boots ~2x faster under TCG than the .gz). */
  initrd: string;
  /** The Debian bzImage (vmlinuz). */
  kernelBzImage: string;
  /** The same initramfs, gzip-compressed. */
  initrdGz: string;
  /** Cache key (hash of the guest sources and of the Debian package versions used). */
  key: string;
  /** true when the cache was fresh and nothing was built. */
  cached: boolean;
  /** Wall time of buildGuest(). */
  ms: number;
  cacheDir: string;
}

export interface BuildGuestOptions {
  /** Each progress line of the build script (stderr). */
  onProgress?: (line: string) => void;
  /** Rebuild even when the cache is fresh. */
  force?: boolean;
  /** Default: env SPICE_SMARTCARD_GUEST_CACHE, else <repo>/.cache/guest. */
  cacheDir?: string;
  /** Debian kernel ABI, e.g. 6.1.0-56-amd64 (default: the newest apt knows). */
  kernelVersion?: string;
  /** Default 15 minutes (a cold build downloads a 70 MB kernel package). */
  timeoutMs?: number;
  /** Stops the build (the script removes its work directory on SIGTERM). */
  signal?: AbortSignal;
}

/** Error of the build script; `missingPackagesHint` holds the apt-get line when host packages are missing. */
export class GuestBuildError extends Error {
  /** Debian packages the build needs and this host lacks (exit status 3 of the script). */
  readonly missingPackages: string[];

  constructor(
    message: string,
    readonly output: string,
    readonly missingPackagesHint: string | null,
  ) {
    super(message);
    this.name = 'GuestBuildError';
    this.missingPackages = missingPackagesIn(output);
  }
}

function missingPackagesIn(stderr: string): string[] {
  return /missing host packages: ([^\n]*)/.exec(stderr)?.[1]?.trim().split(/\s+/) ?? [];
}

/**
 * The Debian packages guest/build-guest.sh needs and this host lacks ([] when none), without
 * building; null when the check itself cannot run (no bash, not a Debian-like system).
 */
export function missingGuestBuildPackages(): Promise<string[] | null> {
  return new Promise((resolvePromise) => {
    const child = spawn('bash', [join(GUEST_DIR, 'build-guest.sh'), '--check'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', () => resolvePromise(null));
    child.on('close', (code) => resolvePromise(code === 0 ? [] : code === 3 ? missingPackagesIn(stderr) : null));
  });
}

const buildMemo = new Map<string, Promise<GuestImages>>();

/**
 * Builds (or finds in the cache) the guest kernel + initramfs. Cached calls take ~20 ms.
 * Concurrent calls in one process share one build; across processes the script takes a lock.
 */
export function buildGuest(options: BuildGuestOptions = {}): Promise<GuestImages> {
  const memoKey = JSON.stringify([options.cacheDir ?? '', options.kernelVersion ?? '']);
  if (!options.force) {
    const pending = buildMemo.get(memoKey);
    if (pending) return pending;
  }
  const p = runBuildScript(options);
  buildMemo.set(memoKey, p);
  p.catch(() => buildMemo.delete(memoKey));
  return p;
}

function runBuildScript(options: BuildGuestOptions): Promise<GuestImages> {
  const script = join(GUEST_DIR, 'build-guest.sh');
  const args: string[] = [];
  if (options.force) args.push('--force');
  if (options.cacheDir) args.push('--cache', resolve(options.cacheDir));
  if (options.kernelVersion) args.push('--kernel', options.kernelVersion);
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    // Its own process group, so that stopping the build also stops the apt-get or cpio it is running.
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killGroup = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      partial += d;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        options.onProgress?.(line);
      }
    });
    const timer = setTimeout(() => killGroup('SIGKILL'), options.timeoutMs ?? 15 * 60_000);
    const onAbort = (): void => killGroup('SIGTERM');
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      reject(new GuestBuildError(`cannot run ${script}: ${err.message}`, stderr, null));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (partial) options.onProgress?.(partial);
      if (code !== 0) {
        const hint = /apt-get install [^\n]*/.exec(stderr)?.[0].trim() ?? null;
        const why = signal ? `killed by ${signal}` : `exit status ${code}`;
        reject(new GuestBuildError(`build-guest.sh failed (${why}):\n${stderr.trim()}`, stderr, hint));
        return;
      }
      const kv = new Map<string, string>();
      for (const line of stdout.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) kv.set(line.slice(0, eq), line.slice(eq + 1));
      }
      const bz = kv.get('KERNEL');
      const gz = kv.get('INITRD');
      if (!bz || !gz) {
        reject(new GuestBuildError(`build-guest.sh printed no KERNEL=/INITRD=:\n${stdout}\n${stderr}`, stderr, null));
        return;
      }
      resolvePromise({
        kernel: kv.get('KERNEL_PVH') ?? bz,
        initrd: kv.get('INITRD_RAW') ?? gz,
        kernelBzImage: bz,
        initrdGz: gz,
        key: kv.get('KEY') ?? '',
        cached: kv.get('CACHED') === '1',
        ms: Date.now() - started,
        cacheDir: dirname(bz),
      });
    });
  });
}

