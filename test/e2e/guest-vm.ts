/**
 * End-to-end guest harness: builds the tiny Linux guest (test/e2e/guest/build-guest.sh) and boots it
 * in QEMU with a real spice-server and usb-ccid + ccid-card-passthru readers, then runs commands in
 * the guest through the agent on its second serial port (test/e2e/guest/agent.sh).
 *
 *   const vm = await bootGuestVm({ smartcard: 'spicevmc' });
 *   // connect the client to 127.0.0.1:vm.spicePort, send VSC ReaderAdd + ATR ...
 *   await vm.waitFor('card_present', 20_000);
 *   const r = await vm.run('opensc-tool -a');
 *   await vm.shutdown();
 *
 * See test/e2e/README.md.
 */
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Paths, host checks

/** Directory of the guest sources (build-guest.sh, init, agent.sh), also when run from dist/. */
export const GUEST_DIR: string = findGuestDir();

function findGuestDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const direct = join(here, 'guest');
  if (existsSync(join(direct, 'build-guest.sh'))) return direct;
  let dir = here;
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'test', 'e2e', 'guest');
    if (existsSync(join(candidate, 'build-guest.sh'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return direct;
}

/** Absolute path of an executable found in PATH, or null. */
export function which(command: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** The QEMU binary (env SPICE_SMARTCARD_QEMU overrides), or null when it is not installed. */
export function findQemu(): string | null {
  const fromEnv = process.env.SPICE_SMARTCARD_QEMU;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : which(fromEnv);
  return which('qemu-system-x86_64');
}

/** Installing QEMU with the modules the harness needs (spice, usb-ccid). */
export const QEMU_APT_LINE = 'apt-get install -y --no-install-recommends qemu-system-x86';

// ---------------------------------------------------------------------------------------------
// Build

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
}

/** Error of the build script; `missingPackagesHint` holds the apt-get line when host packages are missing. */
export class GuestBuildError extends Error {
  constructor(
    message: string,
    readonly output: string,
    readonly missingPackagesHint: string | null,
  ) {
    super(message);
    this.name = 'GuestBuildError';
  }
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
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15 * 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new GuestBuildError(`cannot run ${script}: ${err.message}`, stderr, null));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
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

// ---------------------------------------------------------------------------------------------
// Boot options and results

export type UsbController = 'uhci' | 'ehci' | 'xhci';

/**
 * 'spicevmc': one reader on the SPICE smartcard channel (libvirt `<smartcard mode='passthrough'
 * type='spicevmc'/>`). {sockets: n}: n readers, each its own usb-ccid + ccid-card-passthru on a TCP
 * socket chardev (libvirt `mode='passthrough' type='tcp'`); readers 2..n sit behind a usb-hub.
 */
export type SmartcardMode = 'spicevmc' | { sockets: number };

export interface SpiceTlsOptions {
  /** TLS port (default: a free port). */
  port?: number;
  /** Directory with ca-cert.pem, server-cert.pem, server-key.pem (default: a throwaway CA made with openssl). */
  x509Dir?: string;
  /** No plain port, TLS only. */
  tlsOnly?: boolean;
}

export interface BootGuestOptions {
  /** Kernel + initramfs (default: `await buildGuest()`). */
  images?: Pick<GuestImages, 'kernel' | 'initrd'>;
  /** Plain SPICE port on 127.0.0.1 (default: a free port). */
  spicePort?: number;
  /** SPICE ticket; passed to QEMU in a file (-object secret,file=...), never on the command line. */
  spicePassword?: string;
  /** SPICE TLS port (true: free port + generated certificates). */
  tls?: boolean | SpiceTlsOptions;
  /** Default 'uhci' (QEMU 7.2's usb-ccid loses sync on xhci after a 64-byte CCID answer). */
  usb?: UsbController;
  /** Default 'spicevmc'. */
  smartcard?: SmartcardMode;
  /** Default 'none': our client needs no display (spice-gtk clients do: use 'qxl' for them). */
  display?: 'none' | 'qxl';
  /** Default 'auto': KVM only when /dev/kvm is usable and the CPU has vmx/svm, else TCG. */
  accel?: 'auto' | 'tcg' | 'kvm';
  /** Default 256. */
  memoryMb?: number;
  /** Guest pcscd arguments (default ['-d'], debug log in /tmp/pcscd.log; add '-a' to log APDUs). */
  pcscdArgs?: string[];
  /** Extra kernel command line words. */
  kernelArgs?: string[];
  /** Extra QEMU arguments. */
  extraQemuArgs?: string[];
  /** From spawn to the agent being ready (default 90 s). */
  bootTimeoutMs?: number;
  /** Fail the boot when pcscd does not list every reader (default true). */
  requireReaders?: boolean;
  /** Keep the run directory after shutdown (default: env SPICE_SMARTCARD_E2E_KEEP=1). */
  keepRunDir?: boolean;
  /** Every console (ttyS0) line as it arrives. */
  onConsoleLine?: (line: string) => void;
  /** Build progress lines (when images are not given). */
  onProgress?: (line: string) => void;
  /** QEMU binary (default: findQemu()). */
  qemuBinary?: string;
  /** QEMU -name (default 'spice-smartcard-e2e'). */
  name?: string;
}

export interface GuestRunOptions {
  /** Guest-side limit: the command's process group is killed after it (default 30 s). */
  timeoutMs?: number;
  /** Throw a GuestCommandError when rc is not 0. */
  check?: boolean;
}

export interface GuestRunResult {
  rc: number;
  /** stdout as UTF-8 text. */
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
  stderrBytes: Buffer;
  /** Time the command took in the guest. */
  ms: number;
  /** Round trip seen from the host (adds the serial transfer). */
  hostMs: number;
  timedOut: boolean;
}

export interface GuestEvent {
  /** e.g. 'pcscd-ready' (console line `GUEST-EVENT: pcscd-ready uptime_ms=... readers=1`). */
  name: string;
  uptimeMs: number;
  /** Milliseconds from QEMU spawn to the line reaching the host. */
  hostMs: number;
  fields: Record<string, string>;
  line: string;
}

export interface ShutdownResult {
  how: 'poweroff' | 'sigterm' | 'sigkill' | 'already-exited';
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
}

export interface GuestVm {
  /** Plain SPICE port on 127.0.0.1 (null with tls.tlsOnly). */
  readonly spicePort: number | null;
  /** SPICE TLS port (null without tls). */
  readonly tlsPort: number | null;
  readonly spicePassword: string | null;
  /** CA certificate that signed the TLS server certificate (null without tls or with a given x509Dir). */
  readonly caCertFile: string | null;
  /** TCP ports of the socket chardevs, reader order ({sockets: n} mode; [] for spicevmc). */
  readonly socketPorts: readonly number[];
  /** Number of CCID readers the VM has. */
  readonly readerCount: number;
  readonly runDir: string;
  readonly pid: number;
  /** QEMU argv (binary first). */
  readonly qemuArgs: readonly string[];
  /** The same, shell-quoted. */
  readonly commandLine: string;
  /** Console (ttyS0) text so far. */
  readonly console: string;
  /** QEMU stderr so far. */
  readonly qemuStderr: string;
  readonly events: readonly GuestEvent[];
  /** QMP events received so far. */
  readonly qmpEvents: readonly QmpEvent[];
  readonly exited: boolean;
  /** Runs a shell command in the guest (busybox ash, helpers of agent.sh defined). */
  run(cmd: string, options?: GuestRunOptions): Promise<GuestRunResult>;
  /** Polls predicateCmd in the guest until it exits 0; returns its last run. Throws GuestTimeoutError. */
  waitFor(predicateCmd: string, timeoutMs?: number, options?: { intervalMs?: number }): Promise<GuestRunResult>;
  /** Waits for a console line matching pattern (also looks at lines already received). */
  waitForConsole(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** First event with that name, if any. */
  event(name: string): GuestEvent | undefined;
  /** QMP command; resolves with its "return" value, rejects with its "error". */
  qmp<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
  /** Agent EXIT -> guest powers off; else SIGTERM, then SIGKILL. Bounded (~10 s). Idempotent. */
  shutdown(): Promise<ShutdownResult>;
}

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
}

export class GuestVmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestVmError';
  }
}

export class GuestTimeoutError extends GuestVmError {
  constructor(
    message: string,
    readonly result: GuestRunResult | null,
  ) {
    super(message);
    this.name = 'GuestTimeoutError';
  }
}

export class GuestCommandError extends GuestVmError {
  constructor(
    message: string,
    readonly result: GuestRunResult,
  ) {
    super(message);
    this.name = 'GuestCommandError';
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Distinct free TCP ports on 127.0.0.1 (all held open together, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import('node:net').Server>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

function execFileP(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((res, rej) => {
    execFile(cmd, args, { cwd }, (err, _out, stderr) => {
      if (err) rej(new GuestVmError(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else res();
    });
  });
}

/** Throwaway CA + server certificate (CN/SAN 127.0.0.1, localhost) for the SPICE TLS port. */
async function makeTlsDir(dir: string): Promise<{ dir: string; caCert: string }> {
  await mkdir(dir, { recursive: true });
  const days = '2';
  await execFileP('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem',
    '-days', days, '-subj', '/CN=spice-smartcard e2e CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  await execFileP('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr',
    '-subj', '/CN=127.0.0.1'], dir);
  await writeFile(join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  await execFileP('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem',
    '-CAcreateserial', '-out', 'server-cert.pem', '-days', days, '-extfile', 'server.ext'], dir);
  return { dir, caCert: join(dir, 'ca-cert.pem') };
}

function kvmUsable(): boolean {
  try {
    if (!existsSync('/dev/kvm')) return false;
    const r = spawnSync('grep', ['-qwE', 'vmx|svm', '/proc/cpuinfo']);
    if (r.status !== 0) return false;
    const access = spawnSync('sh', ['-c', '[ -r /dev/kvm ] && [ -w /dev/kvm ]']);
    return access.status === 0;
  } catch {
    return false;
  }
}

let setprivChecked: boolean | null = null;
/** util-linux setpriv --pdeathsig: QEMU dies with the test process even when it is killed hard. */
function pdeathsigPrefix(): string[] {
  if (setprivChecked === null) {
    const r = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
    setprivChecked = r.status === 0 && r.stdout.includes('--pdeathsig');
  }
  return setprivChecked ? ['setpriv', '--pdeathsig', 'SIGKILL', '--'] : [];
}

const liveVms = new Set<QemuGuestVm>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const vm of liveVms) vm.killNow();
  });
}

// ---------------------------------------------------------------------------------------------
// QEMU command line

interface QemuPlan {
  args: string[];
  spicePort: number | null;
  tlsPort: number | null;
  socketPorts: number[];
  readerCount: number;
  caCertFile: string | null;
}

function usbControllerArgs(usb: UsbController): string[] {
  switch (usb) {
    case 'uhci':
      return ['-device', 'piix3-usb-uhci,id=usb'];
    case 'xhci':
      return ['-device', 'qemu-xhci,id=usb'];
    case 'ehci':
      // EHCI with a UHCI companion (full-speed devices such as usb-ccid are handed to the companion)
      return [
        '-device', 'ich9-usb-ehci1,id=usb,addr=1d.7,multifunction=on',
        '-device', 'ich9-usb-uhci1,id=usb-uhci,masterbus=usb.0,firstport=0,addr=1d.0,multifunction=on',
      ];
  }
}

async function planQemu(
  qemu: string,
  opts: BootGuestOptions,
  images: Pick<GuestImages, 'kernel' | 'initrd'>,
  runDir: string,
): Promise<QemuPlan> {
  const mode: SmartcardMode = opts.smartcard ?? 'spicevmc';
  const readerCount = mode === 'spicevmc' ? 1 : mode.sockets;
  if (!Number.isInteger(readerCount) || readerCount < 1 || readerCount > 9) {
    throw new GuestVmError(`smartcard.sockets must be 1..9 (one root port + an 8-port hub), got ${readerCount}`);
  }
  const tls: SpiceTlsOptions | null = opts.tls === true ? {} : opts.tls ? opts.tls : null;
  const plain = !(tls?.tlsOnly ?? false);
  const want = (plain && opts.spicePort === undefined ? 1 : 0) + (tls && tls.port === undefined ? 1 : 0) +
    (mode === 'spicevmc' ? 0 : readerCount);
  const free = await freePorts(want);
  const take = (): number => {
    const p = free.shift();
    if (p === undefined) throw new Error('port allocation');
    return p;
  };
  const spicePort = plain ? (opts.spicePort ?? take()) : null;
  const tlsPort = tls ? (tls.port ?? take()) : null;
  const socketPorts = mode === 'spicevmc' ? [] : Array.from({ length: readerCount }, take);

  const accelWanted = opts.accel ?? 'auto';
  const accel = accelWanted === 'auto' ? (kvmUsable() ? 'kvm' : 'tcg') : accelWanted;
  const kernelArgs = [
    'console=ttyS0,115200', 'quiet', 'loglevel=3', 'panic=-1',
    `guest.ccid=${readerCount}`, `guest.pcscd=${(opts.pcscdArgs ?? ['-d']).join(',')}`,
    ...(opts.kernelArgs ?? []),
  ];

  const args: string[] = [
    qemu,
    '-name', opts.name ?? 'spice-smartcard-e2e',
    '-nodefaults', '-no-user-config',
    '-machine', 'q35',
    '-accel', accel, '-cpu', accel === 'kvm' ? 'host' : 'max',
    '-smp', '1', '-m', String(opts.memoryMb ?? 256),
    '-no-reboot', '-display', 'none',
    ...((opts.display ?? 'none') === 'qxl' ? ['-device', 'qxl-vga'] : ['-vga', 'none']),
    '-kernel', images.kernel, '-initrd', images.initrd, '-append', kernelArgs.join(' '),
    '-chardev', 'stdio,id=con0,signal=off', '-serial', 'chardev:con0',
    '-chardev', `socket,id=agent0,path=${join(runDir, 'agent.sock')},server=on,wait=off`, '-serial', 'chardev:agent0',
    '-qmp', `unix:${join(runDir, 'qmp.sock')},server=on,wait=off`,
    '-pidfile', join(runDir, 'qemu.pid'),
  ];

  const spice = ['addr=127.0.0.1'];
  if (spicePort !== null) spice.push(`port=${spicePort}`);
  if (opts.spicePassword !== undefined) {
    const pwFile = join(runDir, 'spice.pw');
    await writeFile(pwFile, opts.spicePassword, { mode: 0o600 });
    args.push('-object', `secret,id=spicepw0,file=${pwFile}`);
    spice.push('password-secret=spicepw0');
  } else {
    spice.push('disable-ticketing=on');
  }
  let caCertFile: string | null = null;
  if (tls && tlsPort !== null) {
    let x509Dir = tls.x509Dir;
    if (!x509Dir) {
      const made = await makeTlsDir(join(runDir, 'tls'));
      x509Dir = made.dir;
      caCertFile = made.caCert;
    }
    spice.push(`tls-port=${tlsPort}`, `x509-dir=${resolve(x509Dir)}`);
  }
  args.push('-spice', spice.join(','));

  args.push(...usbControllerArgs(opts.usb ?? 'uhci'));
  if (mode === 'spicevmc') {
    args.push(
      '-device', 'usb-ccid,id=ccid0,bus=usb.0,port=1',
      '-chardev', 'spicevmc,id=charsmartcard0,name=smartcard',
      '-device', 'ccid-card-passthru,chardev=charsmartcard0,id=smartcard0,bus=ccid0.0',
    );
  } else {
    if (readerCount > 1) args.push('-device', 'usb-hub,id=hub0,bus=usb.0,port=2');
    socketPorts.forEach((port, i) => {
      args.push(
        '-chardev', `socket,id=charsmartcard${i},host=127.0.0.1,port=${port},server=on,wait=off`,
        '-device', `usb-ccid,id=ccid${i},bus=usb.0,port=${i === 0 ? '1' : `2.${i}`}`,
        '-device', `ccid-card-passthru,chardev=charsmartcard${i},id=smartcard${i},bus=ccid${i}.0`,
      );
    });
  }
  args.push(...(opts.extraQemuArgs ?? []));
  return { args, spicePort, tlsPort, socketPorts, readerCount, caCertFile };
}

// ---------------------------------------------------------------------------------------------
// Line-oriented socket with reconnect-free lifetime

class LineSocket {
  private buf = '';
  private closedFlag = false;
  constructor(
    readonly socket: Socket,
    onLine: (line: string) => void,
    onClose: () => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        onLine(line);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closedFlag = true;
      onClose();
    });
  }
  get closed(): boolean {
    return this.closedFlag;
  }
  write(line: string): void {
    if (!this.closedFlag) this.socket.write(line + '\n');
  }
  destroy(): void {
    this.socket.destroy();
  }
}

async function connectUnix(path: string, deadline: number, alive: () => boolean): Promise<Socket> {
  let lastErr = '';
  while (Date.now() < deadline && alive()) {
    if (existsSync(path)) {
      try {
        return await new Promise<Socket>((res, rej) => {
          const s = connect(path);
          s.once('connect', () => {
            s.removeAllListeners('error');
            res(s);
          });
          s.once('error', rej);
        });
      } catch (e) {
        lastErr = e instanceof Error ? e.message : String(e);
      }
    }
    await sleep(20);
  }
  throw new GuestVmError(`cannot connect ${path}${lastErr ? `: ${lastErr}` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// The VM

interface PendingRun {
  id: string;
  resolve: (r: GuestRunResult) => void;
  reject: (e: Error) => void;
  started: number;
  timer: NodeJS.Timeout;
  out: string[];
  err: string[];
  section: 'none' | 'out' | 'err';
}

interface PendingQmp {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface ConsoleWaiter {
  pattern: RegExp;
  resolve: (line: string) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class QemuGuestVm implements GuestVm {
  readonly spicePort: number | null;
  readonly tlsPort: number | null;
  readonly spicePassword: string | null;
  readonly caCertFile: string | null;
  readonly socketPorts: readonly number[];
  readonly readerCount: number;
  readonly qemuArgs: readonly string[];
  readonly commandLine: string;
  readonly pid: number;
  readonly events: GuestEvent[] = [];
  readonly qmpEvents: QmpEvent[] = [];

  private consoleText = '';
  private consolePartial = '';
  private stderrText = '';
  private readonly spawnedAt = Date.now();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exitWaiters: Array<() => void> = [];
  private readonly consoleWaiters = new Set<ConsoleWaiter>();
  private readonly consoleLog: WriteStream;
  private agent: LineSocket | null = null;
  private qmpSock: LineSocket | null = null;
  private qmpReady: Promise<void> | null = null;
  private readonly qmpPending = new Map<string, PendingQmp>();
  private qmpCounter = 0;
  private pendingRun: PendingRun | null = null;
  private readonly pongWaiters = new Map<string, () => void>();
  private runQueue: Promise<unknown> = Promise.resolve();
  private counter = 0;
  private shutdownPromise: Promise<ShutdownResult> | null = null;

  constructor(
    private readonly child: ChildProcess,
    plan: QemuPlan,
    readonly runDir: string,
    private readonly opts: BootGuestOptions,
  ) {
    this.spicePort = plan.spicePort;
    this.tlsPort = plan.tlsPort;
    this.spicePassword = opts.spicePassword ?? null;
    this.caCertFile = plan.caCertFile;
    this.socketPorts = plan.socketPorts;
    this.readerCount = plan.readerCount;
    this.qemuArgs = plan.args;
    this.commandLine = plan.args.map(shellQuote).join(' ');
    this.pid = child.pid ?? -1;
    this.consoleLog = createWriteStream(join(runDir, 'console.log'));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => this.onConsoleData(d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderrText += d;
    });
    // 'close' (not 'exit'): stdout/stderr are fully read by then, so errors carry all of QEMU's stderr
    child.on('close', (code, signal) => {
      this.exitInfo = { code, signal };
      liveVms.delete(this);
      const err = new GuestVmError(`QEMU exited (${signal ?? `status ${code}`})${this.diagnostics()}`);
      this.failPending(err);
      for (const w of this.consoleWaiters) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      this.consoleWaiters.clear();
      for (const w of this.exitWaiters.splice(0)) w();
    });
  }

  get console(): string {
    return this.consoleText;
  }
  get qemuStderr(): string {
    return this.stderrText;
  }
  get exited(): boolean {
    return this.exitInfo !== null;
  }
  event(name: string): GuestEvent | undefined {
    return this.events.find((e) => e.name === name);
  }

  /** Console tail + QEMU stderr + command line, for error messages. */
  diagnostics(): string {
    const tail = this.consoleText.split('\n').slice(-40).join('\n');
    return (
      `\n--- console (last 40 lines) ---\n${tail}` +
      `\n--- qemu stderr ---\n${this.stderrText.trim() || '(empty)'}` +
      `\n--- qemu command ---\n${this.commandLine}\n--- run dir: ${this.runDir}`
    );
  }

  private onConsoleData(d: string): void {
    this.consoleLog.write(d);
    this.consolePartial += d;
    let nl: number;
    while ((nl = this.consolePartial.indexOf('\n')) >= 0) {
      const line = this.consolePartial.slice(0, nl).replace(/\r$/, '');
      this.consolePartial = this.consolePartial.slice(nl + 1);
      this.onConsoleLine(line);
    }
  }

  private onConsoleLine(line: string): void {
    this.consoleText += line + '\n';
    const m = /GUEST-EVENT: (\S+) uptime_ms=(\d+)\s*(.*)$/.exec(line);
    if (m) {
      const fields: Record<string, string> = {};
      for (const kv of (m[3] ?? '').matchAll(/(\w[\w.-]*)=(\S*)/g)) fields[kv[1] ?? ''] = kv[2] ?? '';
      this.events.push({ name: m[1] ?? '', uptimeMs: Number(m[2]), hostMs: Date.now() - this.spawnedAt, fields, line });
    }
    this.opts.onConsoleLine?.(line);
    for (const w of this.consoleWaiters) {
      if (w.pattern.test(line)) {
        clearTimeout(w.timer);
        this.consoleWaiters.delete(w);
        w.resolve(line);
      }
    }
  }

  waitForConsole(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const seen = this.consoleText.split('\n').find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.exited) return Promise.reject(new GuestVmError(`QEMU has exited${this.diagnostics()}`));
    return new Promise((res, rej) => {
      const w: ConsoleWaiter = {
        pattern,
        resolve: res,
        reject: rej,
        timer: setTimeout(() => {
          this.consoleWaiters.delete(w);
          rej(new GuestTimeoutError(`no console line matching ${pattern} within ${timeoutMs} ms${this.diagnostics()}`, null));
        }, timeoutMs),
      };
      this.consoleWaiters.add(w);
    });
  }

  private waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    return new Promise((res) => {
      const t = setTimeout(() => res(false), timeoutMs);
      this.exitWaiters.push(() => {
        clearTimeout(t);
        res(true);
      });
    });
  }

  killNow(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  // ----- agent -----

  async connectAgent(deadline: number): Promise<void> {
    const sock = await connectUnix(join(this.runDir, 'agent.sock'), deadline, () => !this.exited);
    this.agent = new LineSocket(sock, (l) => this.onAgentLine(l), () =>
      this.failPending(new GuestVmError(`agent connection closed${this.diagnostics()}`)),
    );
  }

  private failPending(err: Error): void {
    const p = this.pendingRun;
    if (p) {
      clearTimeout(p.timer);
      this.pendingRun = null;
      p.reject(err);
    }
    for (const q of this.qmpPending.values()) q.reject(err);
    this.qmpPending.clear();
  }

  private onAgentLine(line: string): void {
    const p = this.pendingRun;
    const words = line.split(' ');
    const [verb, id] = words;
    switch (verb) {
      case 'AGENT-BEGIN':
        if (p && id === p.id) p.section = 'out';
        return;
      case 'AGENT-STDERR':
        if (p && id === p.id) p.section = 'err';
        return;
      case 'AGENT-END': {
        if (!p || id !== p.id) return;
        const num = (k: string) => Number(/(\d+)/.exec(words.find((w) => w.startsWith(`${k}=`)) ?? '')?.[1] ?? NaN);
        const stdoutBytes = Buffer.from(p.out.join(''), 'base64');
        const stderrBytes = Buffer.from(p.err.join(''), 'base64');
        const result: GuestRunResult = {
          rc: num('rc'),
          stdout: stdoutBytes.toString('utf8'),
          stderr: stderrBytes.toString('utf8'),
          stdoutBytes,
          stderrBytes,
          ms: num('ms'),
          hostMs: Date.now() - p.started,
          timedOut: num('timeout') === 1,
        };
        clearTimeout(p.timer);
        this.pendingRun = null;
        p.resolve(result);
        return;
      }
      case 'AGENT-PONG':
      case 'AGENT-BYE': {
        const w = id === undefined ? undefined : this.pongWaiters.get(id);
        if (w && id !== undefined) {
          this.pongWaiters.delete(id);
          w();
        }
        return;
      }
      case 'AGENT-ERROR':
        if (p && id === p.id) {
          clearTimeout(p.timer);
          this.pendingRun = null;
          p.reject(new GuestVmError(`agent rejected the request: ${line}`));
        }
        return;
      default:
        if (p && p.section !== 'none' && /^[A-Za-z0-9+/=]+$/.test(line)) {
          (p.section === 'out' ? p.out : p.err).push(line);
        }
    }
  }

  /** PING until the agent answers (data sent before the guest opened ttyS1 is lost). */
  async pingAgent(deadline: number): Promise<void> {
    while (Date.now() < deadline && !this.exited) {
      const id = `p${++this.counter}`;
      const answered = await new Promise<boolean>((res) => {
        const t = setTimeout(() => {
          this.pongWaiters.delete(id);
          res(false);
        }, 1000);
        this.pongWaiters.set(id, () => {
          clearTimeout(t);
          res(true);
        });
        this.agent?.write(`PING ${id}`);
      });
      if (answered) return;
    }
    throw new GuestVmError(`the guest agent does not answer${this.diagnostics()}`);
  }

  run(cmd: string, options: GuestRunOptions = {}): Promise<GuestRunResult> {
    const next = this.runQueue.then(() => this.runNow(cmd, options));
    this.runQueue = next.catch(() => undefined);
    return next;
  }

  private runNow(cmd: string, options: GuestRunOptions): Promise<GuestRunResult> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (this.exited) return Promise.reject(new GuestVmError(`QEMU has exited${this.diagnostics()}`));
    if (!this.agent || this.agent.closed) return Promise.reject(new GuestVmError('the guest agent is not connected'));
    const id = `c${++this.counter}`;
    const b64 = Buffer.from(cmd, 'utf8').toString('base64');
    return new Promise<GuestRunResult>((res, rej) => {
      const pending: PendingRun = {
        id,
        resolve: res,
        reject: rej,
        started: Date.now(),
        out: [],
        err: [],
        section: 'none',
        // the guest kills the command at timeoutMs; the host gives the answer some slack to arrive
        timer: setTimeout(() => {
          if (this.pendingRun === pending) this.pendingRun = null;
          rej(new GuestTimeoutError(`guest agent gave no answer within ${timeoutMs + 10_000} ms to: ${cmd}${this.diagnostics()}`, null));
        }, timeoutMs + 10_000),
      };
      this.pendingRun = pending;
      const tmo = Math.max(0, Math.round(timeoutMs));
      // short commands inline; long ones length-prefixed (the guest then reads them in blocks)
      if (b64.length <= 2048) this.agent?.write(`RUN ${id} ${tmo} ${b64}`);
      else this.agent?.write(`RUNX ${id} ${tmo} ${b64.length}\n${b64}`);
    }).then((r) => {
      if (r.timedOut) {
        throw new GuestTimeoutError(
          `guest command timed out after ${timeoutMs} ms: ${cmd}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
          r,
        );
      }
      if (options.check && r.rc !== 0) {
        throw new GuestCommandError(`guest command failed (rc=${r.rc}): ${cmd}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`, r);
      }
      return r;
    });
  }

  async waitFor(predicateCmd: string, timeoutMs = 30_000, options: { intervalMs?: number } = {}): Promise<GuestRunResult> {
    const intervalUs = Math.max(10, options.intervalMs ?? 100) * 1000;
    const b64 = Buffer.from(predicateCmd, 'utf8').toString('base64');
    // polled inside the guest: one serial round trip instead of one per attempt
    const script = [
      `__p=$(printf %s '${b64}' | base64 -d)`,
      `__end=$(( $(uptime_ms) + ${Math.round(timeoutMs)} )); __n=0`,
      'while :; do',
      '  __n=$((__n + 1))',
      '  if ( eval "$__p" ) > /tmp/agent/wf.out 2> /tmp/agent/wf.err; then cat /tmp/agent/wf.out; cat /tmp/agent/wf.err >&2; exit 0; fi',
      `  if [ "$(uptime_ms)" -ge "$__end" ]; then cat /tmp/agent/wf.out; cat /tmp/agent/wf.err >&2; echo "waitFor: gave up after $__n attempts" >&2; exit 124; fi`,
      `  usleep ${intervalUs}`,
      'done',
    ].join('\n');
    const r = await this.run(script, { timeoutMs: timeoutMs + 5_000 });
    if (r.rc === 124 && r.stderr.includes('waitFor: gave up')) {
      throw new GuestTimeoutError(
        `waitFor(${predicateCmd}) still false after ${timeoutMs} ms\nlast stdout: ${r.stdout}\nlast stderr: ${r.stderr}`,
        r,
      );
    }
    if (r.rc !== 0) throw new GuestCommandError(`waitFor(${predicateCmd}) failed: rc=${r.rc} ${r.stderr}`, r);
    return r;
  }

  // ----- QMP -----

  connectQmp(deadline: number): Promise<void> {
    this.qmpReady ??= (async () => {
      const sock = await connectUnix(join(this.runDir, 'qmp.sock'), deadline, () => !this.exited);
      let greeted: (() => void) | null = null;
      const greeting = new Promise<void>((r) => (greeted = r));
      this.qmpSock = new LineSocket(
        sock,
        (line) => {
          let msg: unknown;
          try {
            msg = JSON.parse(line);
          } catch {
            return;
          }
          if (typeof msg !== 'object' || msg === null) return;
          const o = msg as Record<string, unknown>;
          if ('QMP' in o) {
            greeted?.();
            return;
          }
          if (typeof o.event === 'string') {
            this.qmpEvents.push(o as unknown as QmpEvent);
            return;
          }
          const id = typeof o.id === 'string' ? o.id : undefined;
          const p = id === undefined ? undefined : this.qmpPending.get(id);
          if (!p || id === undefined) return;
          this.qmpPending.delete(id);
          if ('error' in o) {
            const e = o.error as { class?: string; desc?: string };
            p.reject(new GuestVmError(`QMP error ${e.class ?? ''}: ${e.desc ?? JSON.stringify(o.error)}`));
          } else {
            p.resolve(o.return);
          }
        },
        () => {
          for (const q of this.qmpPending.values()) q.reject(new GuestVmError('QMP connection closed'));
          this.qmpPending.clear();
        },
      );
      await greeting;
      await this.qmpSend('qmp_capabilities');
    })();
    return this.qmpReady;
  }

  private qmpSend(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = `q${++this.qmpCounter}`;
    return new Promise((res, rej) => {
      if (!this.qmpSock || this.qmpSock.closed) {
        rej(new GuestVmError('QMP is not connected'));
        return;
      }
      this.qmpPending.set(id, { resolve: res, reject: rej });
      this.qmpSock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }));
    });
  }

  async qmp<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    await this.connectQmp(Date.now() + 10_000);
    return (await this.qmpSend(command, args)) as T;
  }

  // ----- shutdown -----

  shutdown(): Promise<ShutdownResult> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<ShutdownResult> {
    const t0 = Date.now();
    let how: ShutdownResult['how'] = 'already-exited';
    if (!this.exited) {
      // the agent's EXIT makes /init power off (the guest has no acpid: QMP system_powerdown would not)
      const agentIdle = this.agent !== null && !this.agent.closed && this.pendingRun === null;
      if (agentIdle) this.agent?.write(`EXIT x${++this.counter}`);
      how = 'poweroff';
      if (!(agentIdle && (await this.waitExit(5_000)))) {
        how = 'sigterm';
        this.child.kill('SIGTERM');
        if (!(await this.waitExit(3_000))) {
          how = 'sigkill';
          this.child.kill('SIGKILL');
          await this.waitExit(3_000);
        }
      }
    }
    this.agent?.destroy();
    this.qmpSock?.destroy();
    await new Promise<void>((r) => this.consoleLog.end(() => r()));
    const keep = this.opts.keepRunDir ?? process.env.SPICE_SMARTCARD_E2E_KEEP === '1';
    if (!keep) rmSync(this.runDir, { recursive: true, force: true });
    liveVms.delete(this);
    return { how, exitCode: this.exitInfo?.code ?? null, signal: this.exitInfo?.signal ?? null, ms: Date.now() - t0 };
  }
}

// ---------------------------------------------------------------------------------------------
// Boot

/**
 * Boots the guest and resolves once the agent answers (pcscd is then running and lists the
 * reader(s); no card is needed: the card comes when a client sends VSC ATR).
 */
export async function bootGuestVm(options: BootGuestOptions = {}): Promise<GuestVm> {
  const qemu = options.qemuBinary ?? findQemu();
  if (!qemu) throw new GuestVmError(`qemu-system-x86_64 not found; install it: ${QEMU_APT_LINE}`);
  const images = options.images ?? (await buildGuest(options.onProgress ? { onProgress: options.onProgress } : {}));
  const portsGiven = options.spicePort !== undefined && (options.smartcard ?? 'spicevmc') === 'spicevmc';
  for (let attempt = 1; ; attempt++) {
    try {
      return await bootOnce(qemu, images, options);
    } catch (e) {
      // a free port taken by someone else between the probe and QEMU's bind: retry with new ports
      const portRace = e instanceof GuestVmError && /Address already in use|Failed to bind|Failed to setup spice/i.test(e.message);
      if (!portRace || portsGiven || attempt >= 3) throw e;
    }
  }
}

const RUN_DIR_PREFIX = 'spice-smartcard-vm-';

/** Removes run dirs left by test processes that were killed hard (older than 1 h, QEMU gone). */
function sweepStaleRunDirs(): void {
  try {
    const root = tmpdir();
    for (const name of readdirSync(root)) {
      if (!name.startsWith(RUN_DIR_PREFIX)) continue;
      const dir = join(root, name);
      if (Date.now() - statSync(dir).mtimeMs < 3600_000) continue;
      let alive = false;
      try {
        const pid = Number(readFileSync(join(dir, 'qemu.pid'), 'utf8').trim());
        if (pid > 0) {
          process.kill(pid, 0);
          alive = true;
        }
      } catch {
        alive = false;
      }
      if (!alive) rmSync(dir, { recursive: true, force: true });
    }
  } catch {
    // best effort
  }
}

async function bootOnce(qemu: string, images: Pick<GuestImages, 'kernel' | 'initrd'>, options: BootGuestOptions): Promise<GuestVm> {
  sweepStaleRunDirs();
  const runDir = mkdtempSync(join(tmpdir(), RUN_DIR_PREFIX));
  let vm: QemuGuestVm | null = null;
  try {
    const plan = await planQemu(qemu, options, images, runDir);
    await writeFile(join(runDir, 'cmdline.txt'), plan.args.map(shellQuote).join(' ') + '\n');
    const [bin, ...rest] = [...pdeathsigPrefix(), ...plan.args];
    if (bin === undefined) throw new Error('empty command');
    const child = spawn(bin, rest, { stdio: ['ignore', 'pipe', 'pipe'], cwd: runDir });
    const spawnError = new Promise<never>((_, rej) =>
      child.once('error', (err) => rej(new GuestVmError(`cannot start ${qemu}: ${err.message}`))),
    );
    spawnError.catch(() => undefined);
    vm = new QemuGuestVm(child, plan, runDir, options);
    liveVms.add(vm);
    installExitHook();
    const v = vm;
    const timeoutMs = options.bootTimeoutMs ?? 90_000;
    const deadline = Date.now() + timeoutMs;
    const ready = (async () => {
      await v.connectQmp(deadline);
      await v.connectAgent(deadline);
      await v.waitForConsole(/GUEST-EVENT: (agent-ready|agent-missing|agent-failed)/, Math.max(1, deadline - Date.now()));
      if (!v.event('agent-ready')) throw new GuestVmError(`the guest agent did not start${v.diagnostics()}`);
      await v.pingAgent(deadline);
    })();
    await Promise.race([ready, spawnError]);
    if (!vm.event('pcscd-ready') && (options.requireReaders ?? true)) {
      const log = await vm.run('tail -n 60 /tmp/pcscd.log; echo; opensc-tool -l', { timeoutMs: 10_000 }).catch(() => null);
      throw new GuestVmError(
        `pcscd in the guest does not list the ${vm.readerCount} reader(s)` +
          `\n--- guest pcscd log / opensc-tool -l ---\n${log?.stdout ?? '(unavailable)'}${vm.diagnostics()}`,
      );
    }
    return vm;
  } catch (e) {
    if (!vm) {
      rmSync(runDir, { recursive: true, force: true });
      throw e;
    }
    await vm.shutdown().catch(() => undefined);
    const message = e instanceof Error ? e.message : String(e);
    if (message.includes('--- qemu stderr ---')) throw e;
    throw new GuestVmError(`boot failed: ${message}${vm.diagnostics()}`);
  }
}
