// `spice-smartcard open <file.vv|uri> [--viewer CMD]`: the proxy on a free loopback port, a .vv
// for the viewer pointing at it, the viewer itself; everything stops when the viewer exits.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CardProxy } from '../proxy/card-proxy.js';
import { viewerUri } from '../proxy/listen-address.js';
import { ViewerCommandError, findExecutable, missingViewerMessage, splitCommand } from '../proxy/viewer-command.js';
import { viewerFileText } from '../proxy/viewer-file.js';
import { CARD_OPTIONS, loadCards } from './card-options.js';
import { attachCardControls } from './card-controls.js';
import { EventLog } from './event-log.js';
import { ExitCode, UsageError, type ExitCodeNumber } from './exit-codes.js';
import { CONNECTION_OPTIONS, connectionFromOptions, parseCommandArgs } from './options.js';
import { followCardProxy, knownPasswordOf } from './proxy-command.js';
import { untilSignalOr } from './run-until-stopped.js';

const OPEN_HELP = `Usage: spice-smartcard open <file.vv|uri> [--viewer CMD]
                            [--soft-card PATH | --demo-card | --reader NAME] [--json-log]
                            [--password-file FILE] [--ca-file FILE] [--host-subject SUBJ]
                            [--timeout SECONDS] [--verbose]

Opens the VM in your SPICE viewer with the card in it: starts the proxy on a free loopback port,
hands the viewer a one-time .vv file that points at the proxy (no smartcard option, no VM
password: it is deleted once read), and stops when the viewer exits. A Proxmox or oVirt .vv file
works as it is; open it within its validity (Proxmox: 30 s).

  --viewer CMD   the viewer command; the .vv path is added as its last argument
                 (default: remote-viewer, from the Debian package virt-viewer)
  --soft-card PATH | --demo-card | --reader NAME   the card (default: first PC/SC reader, else demo)
  --json-log     one JSON event per line on stdout (as "proxy", plus viewer started/exited)`;

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...CARD_OPTIONS,
  viewer: { type: 'string', default: 'remote-viewer' },
  'json-log': { type: 'boolean', default: false },
} as const;

const VIEWER_STOP_GRACE_MS = 3_000;
/** A viewer ended by one of these was asked to stop (logout, kill PID), not failing. */
const ORDINARY_STOP_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGTERM', 'SIGINT', 'SIGHUP']);

interface ViewerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

export async function runOpen(args: string[]): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${OPEN_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length !== 1) throw new UsageError('open takes exactly one target: a .vv file or a spice:// URI. Run "spice-smartcard open --help".');
  let viewerArgv: string[];
  try {
    viewerArgv = splitCommand(values.viewer);
  } catch (e) {
    if (e instanceof ViewerCommandError) throw new UsageError(`--viewer: ${e.message}.`);
    throw e;
  }
  const viewerPath = findExecutable(viewerArgv[0]!, process.env['PATH'] ?? '');
  // Checked before anything else: a one-time .vv must not be spent on a viewer that cannot run.
  if (viewerPath === undefined) throw new UsageError(missingViewerMessage(viewerArgv[0]!));

  const json = values['json-log'];
  const log = new EventLog(json, values.verbose);
  const spec = await connectionFromOptions(positionals[0]!, values);
  const [card] = await loadCards(values, 1);
  if (card === undefined) throw new UsageError('No card source.');
  log.note(`Card: ${card.name}.`);
  log.followCard(card);

  // The viewer proves it is the one we started with this token; the VM's password stays with us.
  const viewerToken = randomBytes(24).toString('base64url');
  let proxy: CardProxy;
  try {
    proxy = await CardProxy.start({
      plan: spec.plan,
      secureChannels: spec.secureChannels,
      knownPassword: knownPasswordOf(spec),
      viewerToken,
      card,
      host: '127.0.0.1',
      port: 0,
    });
  } catch (e) {
    await card.close?.();
    throw e;
  }
  followCardProxy(log, proxy, card, spec.label, json, values.verbose);
  const address = proxy.server.address;
  log.emit({ event: 'listening', host: address.host, port: address.port, uri: viewerUri(address) });

  const dir = await mkdtemp(join(tmpdir(), 'spice-smartcard-open-'));
  const vvPath = join(dir, 'viewer.vv');
  const cleanups: (() => Promise<void>)[] = [() => rm(dir, { recursive: true, force: true })];
  let exit: ExitCodeNumber = ExitCode.OK;
  try {
    const text = viewerFileText({ host: address.host, port: address.port, password: viewerToken, ...(spec.target.title !== undefined ? { title: spec.target.title } : {}) });
    await writeFile(vvPath, text, { mode: 0o600, flag: 'wx' });
    // remote-viewer deletes it itself (delete-this-file=1); for a viewer that does not, it goes once the viewer is in.
    proxy.server.on('viewer-channel', (e) => {
      if (e.state === 'opened' && e.type === 1) void unlink(vvPath).catch(() => undefined);
    });

    const viewer = spawn(viewerPath, [...viewerArgv.slice(1), vvPath], { stdio: ['ignore', json ? 2 : 'inherit', 'inherit'] });
    const exited = new Promise<ViewerExit>((resolve) => {
      viewer.once('error', (error) => resolve({ code: null, signal: null, error }));
      viewer.once('exit', (code, signal) => resolve({ code, signal }));
    });
    log.emit({ event: 'viewer', state: 'started', ...(viewer.pid !== undefined ? { pid: viewer.pid } : {}) });
    const detachControls = attachCardControls(card, (t) => log.note(t), () => process.kill(process.pid, 'SIGINT'));
    const reason = await untilSignalOr(exited);
    detachControls();
    if (reason.kind === 'signal') {
      // The card leaves while the session is still up (CardRemove, ReaderRemove), then the viewer goes.
      log.note('Stopping: removing the card and the reader from the VM, then closing the viewer…');
      await proxy.injector.stop();
      viewer.kill('SIGTERM');
      const timer = setTimeout(() => viewer.kill('SIGKILL'), VIEWER_STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    const result = await exited;
    if (reason.kind !== 'signal') {
      if (result.error !== undefined) {
        log.emit({ event: 'error', code: 'viewer', message: `Could not start the viewer ${viewerArgv[0]}: ${result.error.message}`, fatal: true });
        exit = ExitCode.USAGE;
      } else if (result.code !== 0 && !(result.signal !== null && ORDINARY_STOP_SIGNALS.has(result.signal))) {
        log.note(`The viewer ended with ${result.signal !== null ? `signal ${result.signal}` : `status ${result.code}`}.`);
        exit = ExitCode.NETWORK;
      }
    }
    log.emit({ event: 'viewer', state: 'exited', code: result.code, signal: result.signal });
  } finally {
    await proxy.close();
    await card.close?.();
    for (const c of cleanups) await c();
  }
  log.emit({ event: 'closed' });
  log.close();
  return exit;
}
