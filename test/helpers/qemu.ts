import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeExit, startProcess, type ManagedProcess } from './process.js';
import { freePorts, LOOPBACK, waitForPort } from './ports.js';
import { QmpClient, type QmpEvent } from './qmp.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

/** Only a few attempts: a taken port is a rare race between the listen-on-0 probe and QEMU's bind. */
const START_ATTEMPTS = 3;
const PORT_IN_USE = /reds_init_socket: binding socket|Failed to bind socket|Address already in use/;
/** Longest unix socket path Linux takes (sun_path is 108 bytes including the NUL). */
const MAX_UNIX_PATH = 107;

export interface SpiceServerOptions {
  /** Ticket password (passed through a file, never on the command line). Without it: disable-ticketing=on. */
  password?: string;
  /** Open a plain port (default true). Set false with `tls` for a TLS-only server. */
  plainPort?: boolean;
  /** Listen on a Unix socket (`-spice unix=on,addr=PATH`) instead of TCP ports (spice+unix://). */
  unixSocket?: boolean;
  /** Open a TLS port using a spice-server x509 dir (ca-cert.pem, server-cert.pem, server-key.pem). */
  tls?: { x509Dir: string };
  /** Channels that must use TLS (`tls-channel=`), e.g. ['main', 'smartcard'] or ['default']. */
  tlsChannels?: string[];
  /** Channels that must be plaintext (`plaintext-channel=`). */
  plaintextChannels?: string[];
  /** The SPICE smartcard device (usb-ccid + ccid-card-passthru on a spicevmc chardev); default true. */
  smartcard?: boolean;
  /** Extra readers, each a usb-ccid + ccid-card-passthru on its own TCP socket chardev (libcacard's vscclient side). */
  socketReaders?: number;
  /** Add a qxl-vga display: spice-gtk viewers only open their other channels when a display exists. */
  qxl?: boolean;
  /** Appended verbatim to the QEMU command line. */
  extraArgs?: readonly string[];
  /** Extra environment for QEMU, e.g. { SPICE_DEBUG_ALLOW_MC: '1' }. */
  env?: Readonly<Record<string, string>>;
  /** Bound for QEMU to start listening (default 20 s). */
  startTimeoutMs?: number;
}

export interface SpiceServer {
  readonly host: string;
  readonly port: number | undefined;
  readonly tlsPort: number | undefined;
  /** TCP ports of the socket-chardev readers, in order. */
  readonly socketReaderPorts: readonly number[];
  /** Path of the SPICE Unix socket, with `unixSocket: true`. */
  readonly unixSocket: string | undefined;
  readonly dir: string;
  readonly pid: number | undefined;
  readonly args: readonly string[];
  qmp(command: string, args?: Record<string, unknown>): Promise<unknown>;
  /** QMP events received since start (SPICE_CONNECTED, SPICE_INITIALIZED, SPICE_DISCONNECTED, ...). */
  readonly qmpEvents: readonly QmpEvent[];
  waitForQmpEvent(name: string, options?: { timeoutMs?: number; fromIndex?: number }): Promise<QmpEvent>;
  /** QEMU's stdout and stderr so far. */
  output(): string;
  /** Kills QEMU (SIGTERM, then SIGKILL) and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface QemuLayout {
  dir: string;
  port: number | undefined;
  tlsPort: number | undefined;
  socketReaderPorts: readonly number[];
  passwordFile: string | undefined;
  qmpSocket: string;
  unixSocket?: string;
}

/** QEMU option values are comma-separated: a literal comma is written twice. */
function optValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** The QEMU command line (without the binary) for the given options and chosen ports and paths. */
export function buildQemuArgs(options: SpiceServerOptions, layout: QemuLayout): string[] {
  // A paused machine with no guest: spice-server is fully up, and nothing burns CPU under TCG.
  const args = [
    '-name', 'spice-smartcard-test', '-S', '-machine', 'q35', '-accel', 'tcg', '-m', '64',
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-qmp', `unix:${optValue(layout.qmpSocket)},server=on,wait=off`,
  ];
  args.push(...(options.qxl === true ? ['-device', 'qxl-vga'] : ['-vga', 'none']));

  const spice = layout.unixSocket !== undefined ? ['unix=on', `addr=${optValue(layout.unixSocket)}`] : [`addr=${LOOPBACK}`];
  if (layout.port !== undefined) spice.push(`port=${layout.port}`);
  if (layout.tlsPort !== undefined) {
    if (options.tls === undefined) throw new Error('tlsPort needs options.tls');
    spice.push(`tls-port=${layout.tlsPort}`, `x509-dir=${optValue(options.tls.x509Dir)}`);
  }
  if (layout.passwordFile !== undefined) {
    args.push('-object', `secret,id=spicepw0,file=${optValue(layout.passwordFile)}`);
    spice.push('password-secret=spicepw0');
  } else {
    spice.push('disable-ticketing=on');
  }
  for (const channel of options.tlsChannels ?? []) spice.push(`tls-channel=${channel}`);
  for (const channel of options.plaintextChannels ?? []) spice.push(`plaintext-channel=${channel}`);
  args.push('-spice', spice.join(','));

  const readers = layout.socketReaderPorts.length;
  if (options.smartcard !== false || readers > 0) args.push('-device', 'piix3-usb-uhci,id=usb');
  if (options.smartcard !== false) {
    args.push(
      '-device', 'usb-ccid,id=ccid0,bus=usb.0,port=1',
      '-chardev', 'spicevmc,id=charsmartcard0,name=smartcard',
      '-device', 'ccid-card-passthru,chardev=charsmartcard0,id=smartcard0,bus=ccid0.0',
    );
  }
  if (readers > 0) {
    // UHCI has two root ports; port 1 is the SPICE reader's, so socket readers sit behind a hub on port 2.
    if (readers > 8) throw new Error('at most 8 socket readers (one usb-hub)');
    args.push('-device', 'usb-hub,bus=usb.0,port=2');
    layout.socketReaderPorts.forEach((port, index) => {
      const n = index + 1;
      args.push(
        '-device', `usb-ccid,id=ccidsock${n},bus=usb.0,port=2.${n}`,
        '-chardev', `socket,id=charsock${n},host=${LOOPBACK},port=${port},server=on,wait=off`,
        '-device', `ccid-card-passthru,chardev=charsock${n},id=cardsock${n},bus=ccidsock${n}.0`,
      );
    });
  }
  args.push(...(options.extraArgs ?? []));
  return args;
}

/** Starts QEMU with a SPICE server on loopback and waits until it accepts connections and answers QMP. */
export async function startSpiceServer(options: SpiceServerOptions = {}): Promise<SpiceServer> {
  const plain = options.plainPort !== false && options.unixSocket !== true;
  if (!plain && options.tls === undefined && options.unixSocket !== true) throw new Error('a SPICE server needs a plain port, a TLS port, or both');
  const dir = await mkdtemp(join(tmpdir(), 'spice-qemu-'));
  try {
    const qmpSocket = join(dir, 'qmp.sock');
    if (Buffer.byteLength(qmpSocket) > MAX_UNIX_PATH) {
      throw new Error(`temp dir path too long for a unix socket (${qmpSocket}); set TMPDIR to a shorter directory`);
    }
    let passwordFile: string | undefined;
    if (options.password !== undefined) {
      passwordFile = join(dir, 'spice.pw');
      await writeFile(passwordFile, options.password, { mode: 0o600 });
      await chmod(passwordFile, 0o600);
    }
    for (let attempt = 1; ; attempt++) {
      const wanted = (plain ? 1 : 0) + (options.tls !== undefined ? 1 : 0) + (options.socketReaders ?? 0);
      const ports = await freePorts(wanted);
      const port = plain ? ports.shift() : undefined;
      const tlsPort = options.tls !== undefined ? ports.shift() : undefined;
      const layout: QemuLayout = { dir, port, tlsPort, socketReaderPorts: ports, passwordFile, qmpSocket };
      if (options.unixSocket === true) layout.unixSocket = join(dir, 'spice.sock');
      try {
        return await launch(options, layout);
      } catch (error) {
        if (!(error instanceof PortTakenError) || attempt >= START_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

class PortTakenError extends Error {}

async function launch(options: SpiceServerOptions, layout: QemuLayout): Promise<SpiceServer> {
  const args = buildQemuArgs(options, layout);
  await rm(layout.qmpSocket, { force: true });
  const child = startProcess(QEMU_BINARY, args, { cwd: layout.dir, env: { ...process.env, ...options.env } });
  const died = new AbortController();
  void child.exited.then((info) => died.abort(new Error(`QEMU ${describeExit(info)}`)));
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  let qmp: QmpClient;
  try {
    const listening = [layout.port, layout.tlsPort, ...layout.socketReaderPorts].filter((p): p is number => p !== undefined);
    for (const port of listening) await waitForPort(port, { timeoutMs, signal: died.signal });
    // spice-server listens before QEMU has created the devices (a bad -device fails after that), while the QMP
    // greeting only comes from the main loop: a working QMP session is the real "QEMU is up".
    qmp = await QmpClient.connect(layout.qmpSocket, { timeoutMs, signal: died.signal });
  } catch (error) {
    // A failure seen on a socket is often just the echo of QEMU exiting: report the exit when there is one.
    const exit = await Promise.race([child.exited, sleep(1000).then(() => undefined)]);
    await child.stop(1000);
    const output = child.output().trim();
    const reason = exit !== undefined ? `QEMU ${describeExit(exit)}` : error instanceof Error ? error.message : String(error);
    const message = `QEMU SPICE server did not come up: ${reason}\ncommand: ${QEMU_BINARY} ${args.join(' ')}\n` +
      `QEMU output:\n${output === '' ? '(none)' : output}`;
    throw PORT_IN_USE.test(output) ? new PortTakenError(message) : new Error(message, { cause: error });
  }
  return makeServer(layout, args, child, qmp);
}

function makeServer(layout: QemuLayout, args: string[], child: ManagedProcess, qmp: QmpClient): SpiceServer {
  let stopping: Promise<void> | undefined;
  return {
    host: LOOPBACK,
    port: layout.port,
    tlsPort: layout.tlsPort,
    socketReaderPorts: layout.socketReaderPorts,
    unixSocket: layout.unixSocket,
    dir: layout.dir,
    pid: child.pid,
    args,
    qmp: (command, commandArgs) => qmp.execute(command, commandArgs),
    get qmpEvents() {
      return qmp.events;
    },
    waitForQmpEvent: (name, waitOptions) => qmp.waitForEvent(name, waitOptions),
    output: () => child.output(),
    stop() {
      stopping ??= (async () => {
        qmp.close();
        await child.stop(5000);
        await rm(layout.dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
