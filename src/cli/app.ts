// spice-smartcard command line. Exit codes: 0 success, 1 internal error, 2 usage, 3 network or
// TLS failure, 4 authentication rejected, 5 smartcard channel missing or taken.
import { readFileSync } from 'node:fs';
import { SpiceError } from '../../spice/errors.js';
import { ExitCode, UsageError, exitCodeFor, type ExitCodeNumber } from './exit-codes.js';
import { runCard } from '../card-command.js';
import { runConnect } from './connect-command.js';
import { runControl } from './control-command.js';
import { runDoctor } from './doctor-command.js';
import { runOpen } from './open-command.js';
import { runPassthru } from './passthru-command.js';
import { runProbe } from './probe-command.js';
import { runProxy } from './proxy-command.js';
import { runReaders } from './readers-command.js';
import { runServe } from './serve-command.js';
import { runTrace } from './trace-command.js';

const HELP = `spice-smartcard — put a smartcard into a virtual machine over SPICE

Usage:
  spice-smartcard probe <uri|file.vv> [--json] [options]
      Link to the VM's SPICE server, list its channels, and check the smartcard channel.
  spice-smartcard connect <uri|file.vv> [card] [--json-log] [options]
      Open a SPICE session of its own and forward a card into the VM until Ctrl-C.
  spice-smartcard open <file.vv|uri> [--viewer CMD] [card] [--json-log] [options]
      Open the VM in remote-viewer through a local proxy that adds the card to its session.
  spice-smartcard proxy <uri|file.vv> [--listen 127.0.0.1:PORT] [card] [--json-log] [options]
      Relay your viewer's session on a loopback port and add the card to it (the viewer stays connected).
  spice-smartcard passthru HOST:PORT [HOST:PORT ...] [card per target] [--json-log]
      Forward cards straight to QEMU's smartcard sockets (libvirt mode='passthrough' type='tcp').
  spice-smartcard serve [--config FILE] [--control HOST:PORT] [--log-format human|json] [options]
      Run a headless bridge holding many sessions, from a config file and a control API (and web UI).
  spice-smartcard control status|add|remove|start|stop|eject|insert|logs|ui [options]
      Drive a running serve through its control API (run "spice-smartcard control --help").
  spice-smartcard readers [--json] [--watch]
      List the PC/SC readers with their cards, ATRs and protocols; --watch follows changes.
  spice-smartcard doctor [<uri|file.vv>] [--json] [--no-session]
      Check this machine (PC/SC, readers, viewer) and, given a VM, its SPICE endpoint and smartcard channel.
  spice-smartcard trace show FILE [--json]
      Decode an APDU trace recorded with connect/passthru --trace (PINs and keys redacted).
  spice-smartcard card create|import|show PATH ...
      Make and inspect soft PIV card files (run "spice-smartcard card --help").
  spice-smartcard help | --help
  spice-smartcard --version

Cards (connect, open, proxy, passthru):
  --soft-card PATH       a soft PIV card file        --demo-card    the built-in demo PIV card
  --reader NAME          a PC/SC reader (exact name or glob)
  --replay FILE          a recorded trace answering the guest's commands

Connection options:
  --password-file FILE   read the SPICE password from FILE (or set SPICE_PASSWORD)
  --ca-file FILE         CA certificate(s) (PEM) the server's TLS certificate must chain to
  --host-subject SUBJ    expected certificate subject, e.g. "C=XX,O=Org,CN=host" (instead of the host name)
  --timeout SECONDS      connection timeout (default 15)
  --verbose              show protocol details on stderr

Targets: spice://HOST:PORT[?tls-port=N]  spice://HOST?tls-port=N  spice+tls://HOST:N
         spice+unix:///path  ws://HOST:PORT  wss://HOST:PORT  or a virt-viewer .vv file.
Passwords are never taken from the command line: use the .vv file, --password-file, SPICE_PASSWORD,
or answer the prompt.

Exit codes: 0 ok, 1 internal error, 2 usage, 3 network/TLS, 4 authentication, 5 smartcard channel missing or taken.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<ExitCodeNumber> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${HELP}\n`);
      return command === undefined ? ExitCode.USAGE : ExitCode.OK;
    case '--version':
    case 'version':
      process.stdout.write(`${version()}\n`);
      return ExitCode.OK;
    case 'probe':
      return runProbe(rest);
    case 'connect':
      return runConnect(rest);
    case 'passthru':
      return runPassthru(rest);
    case 'readers':
      return (await runReaders(rest)) as ExitCodeNumber;
    case 'proxy':
      return runProxy(rest);
    case 'open':
      return runOpen(rest);
    case 'trace':
      return runTrace(rest);
    case 'doctor':
      return runDoctor(rest);
    case 'card':
      return (await runCard(rest)) as ExitCodeNumber;
    case 'serve':
      return runServe(rest);
    case 'control':
      return runControl(rest);
    default:
      throw new UsageError(`Unknown command "${command}". Run "spice-smartcard help" for the list.`);
  }
}

export function reportError(error: unknown): ExitCodeNumber {
  if (error instanceof UsageError) {
    process.stderr.write(`spice-smartcard: ${error.message}\n`);
    return ExitCode.USAGE;
  }
  if (error instanceof SpiceError) {
    process.stderr.write(`spice-smartcard: ${error.message}\n`);
    return exitCodeFor(error.kind);
  }
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`spice-smartcard: internal error, please report it:\n${detail}\n`);
  return ExitCode.INTERNAL;
}

export async function run(argv: string[]): Promise<ExitCodeNumber> {
  try {
    return await main(argv);
  } catch (e) {
    // parseArgs throws TypeErrors with codes for unknown or malformed options.
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return reportError(new UsageError(`${(e as Error).message}. Run "spice-smartcard help".`));
    return reportError(e);
  }
}


