// `spice-smartcard connect <uri|file.vv>`: its own SPICE session (main + smartcard channel),
// forwarding one card until SIGINT/SIGTERM.
import { SpiceError } from '../../spice/errors.js';
import { SpiceCardLink } from '../bridge/spice-card-link.js';
import { openSession } from '../open-session.js';
import { CONNECTION_OPTIONS, connectionFromOptions, parseCommandArgs } from './options.js';
import { CARD_OPTIONS, loadCards } from './card-options.js';
import { attachCardControls } from './card-controls.js';
import { EventLog } from './event-log.js';
import { ExitCode, UsageError, exitCodeFor, type ExitCodeNumber } from './exit-codes.js';
import { canPrompt, promptPassword } from './prompt.js';
import { untilSignalOr } from './run-until-stopped.js';
import { TRACE_HELP_LINES, TRACE_OPTIONS, startTrace } from '../trace/trace-options.js';

const CONNECT_HELP = `Usage: spice-smartcard connect <uri|file.vv> [--soft-card PATH | --demo-card | --reader NAME]
                               [--json-log] [--password-file FILE] [--ca-file FILE] [--host-subject SUBJ]
                               [--timeout SECONDS] [--verbose]

Opens a SPICE session of its own (main and smartcard channels) and forwards one card into the VM
until Ctrl-C, then removes the card and the reader cleanly. A SPICE server holds one session at a
time: a viewer connected to the same VM is disconnected.

  --soft-card PATH   a soft PIV card file (see "spice-smartcard card create")
  --demo-card        the built-in demo PIV card (RSA-2048 in 9A, P-256 in 9C, PIN 123456)
  --reader NAME      a PC/SC reader, by exact name or glob
  --json-log         one JSON event per line on stdout (linked, reader-added, card-inserted,
                     card-removed, apdu, error, closed)
${TRACE_HELP_LINES}
With no card option: the first PC/SC reader, else the demo card.

A soft card can be taken out and put back while connected: SIGUSR1 removes it, SIGUSR2 inserts
it (on a terminal: r and i).`;

const OPTIONS = { ...CONNECTION_OPTIONS, ...CARD_OPTIONS, ...TRACE_OPTIONS, 'json-log': { type: 'boolean', default: false } } as const;

export async function runConnect(args: string[]): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${CONNECT_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length !== 1) throw new UsageError('connect takes exactly one target: a spice:// URI or a .vv file. Run "spice-smartcard connect --help".');
  const log = new EventLog(values['json-log'], values.verbose);
  const spec = await connectionFromOptions(positionals[0]!, values);
  const [card] = await loadCards(values, 1);
  if (card === undefined) throw new UsageError('No card source.');
  log.note(`Card: ${card.name}.`);
  log.followCard(card);
  log.note('Note: a SPICE server holds one session at a time, so a viewer connected to this VM is disconnected now.');
  log.emit({ event: 'connecting', target: spec.label });

  const session = await openSession(spec, {
    ...(canPrompt() ? { askPassword: promptPassword } : {}),
    onNotify: (n) => log.note(`Server notice: ${n.message}`),
    log: (level, message) => {
      if (values.verbose || level === 'warn') log.note(message);
    },
  }).catch(async (e: unknown) => {
    await card.close?.();
    throw e;
  });
  log.emit({ event: 'linked', target: spec.label, ...(session.sessionId !== undefined ? { sessionId: session.sessionId } : {}), secure: session.mainSecure });

  let link: SpiceCardLink;
  let trace: ReturnType<typeof startTrace>;
  try {
    link = await SpiceCardLink.open(session, card, {
      beforeStart: (forwarder) => {
        trace = startTrace(values, spec.label, card.name, forwarder, (t) => process.stderr.write(`${t}\n`));
      },
    });
  } catch (e) {
    await session.close();
    await card.close?.();
    throw e;
  }
  log.follow(link.forwarder, card.name);

  const ended = new Promise<SpiceError | undefined>((resolve) => {
    link.once('closed', (error) => resolve(error ?? new SpiceError('network', 'The smartcard channel closed.')));
    session.once('closed', (error) => resolve(error ?? new SpiceError('network', 'The SPICE session closed.')));
    session.once('switch-host', (t) => resolve(new SpiceError('network', `The VM migrated to ${t.host} (port ${t.port}, TLS port ${t.tlsPort}); connect to it there.`)));
  });
  const detachControls = attachCardControls(card, (t) => log.note(t), () => process.kill(process.pid, 'SIGINT'));
  const reason = await untilSignalOr(ended);
  detachControls();
  let exit: ExitCodeNumber = ExitCode.OK;
  if (reason.kind === 'signal') {
    log.note('Stopping: removing the card and the reader from the VM…');
    await link.stop();
    log.emit({ event: 'closed' });
  } else {
    const error = reason.error instanceof SpiceError ? reason.error : new SpiceError('network', String(reason.error));
    log.emit({ event: 'error', code: error.kind, message: error.message, fatal: true });
    log.emit({ event: 'closed', reason: error.message });
    exit = exitCodeFor(error.kind);
  }
  await session.close();
  await card.close?.();
  trace?.close();
  log.close();
  return exit;
}
