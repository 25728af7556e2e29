// What the tiny Linux VM's driver (guest-vm.ts) takes and gives: boot options, the running VM,
// command results and errors.
import type { GuestImages } from './guest-image.js';


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
  /** Stops the build and the boot: the VM is shut down and the promise rejects. */
  signal?: AbortSignal;
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
