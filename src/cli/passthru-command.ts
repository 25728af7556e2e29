// `spice-smartcard passthru HOST:PORT [HOST:PORT ...]`: VSC straight to QEMU's ccid-card-passthru
// socket chardevs, one card per socket, until SIGINT/SIGTERM.
import { SpiceError } from '../../spice/errors.js';
import type { Card } from '../../vsc/card.js';
import { PassthruLink, parseEndpoint, type PassthruEndpoint } from '../bridge/passthru-link.js';
import { parseCommandArgs } from './options.js';
import { CARD_OPTIONS, loadCards } from './card-options.js';
import { EventLog } from './event-log.js';
import { ExitCode, UsageError, exitCodeFor, type ExitCodeNumber } from './exit-codes.js';
import { untilSignalOr } from './run-until-stopped.js';
import { TRACE_HELP_LINES, TRACE_OPTIONS, startTrace } from '../trace/trace-options.js';
import type { TraceRecorder } from '../trace/trace-recorder.js';

const PASSTHRU_HELP = `Usage: spice-smartcard passthru HOST:PORT [HOST:PORT ...] [card options, one per target] [--json-log] [--verbose]

Speaks VSC directly to QEMU's ccid-card-passthru on TCP socket chardevs — libvirt's
<smartcard mode='passthrough' type='tcp'> — one socket per reader, so several cards can go to
one VM. Card options are matched to targets in order: --soft-card PATH, --reader NAME, or
--demo-card (a demo card for every target). No SPICE session is involved, so a viewer stays connected.
${TRACE_HELP_LINES}
A trace records one target: with --trace, give one HOST:PORT.`;

const OPTIONS = {
  ...CARD_OPTIONS,
  ...TRACE_OPTIONS,
  'json-log': { type: 'boolean', default: false },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export async function runPassthru(args: string[]): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${PASSTHRU_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length === 0) throw new UsageError('passthru needs at least one HOST:PORT of a QEMU smartcard socket. Run "spice-smartcard passthru --help".');
  const endpoints: PassthruEndpoint[] = positionals.map((text) => {
    const e = parseEndpoint(text);
    if (e === undefined) throw new UsageError(`"${text}" is not HOST:PORT (IPv6: [::1]:PORT).`);
    return e;
  });
  if (values.trace !== undefined && endpoints.length !== 1) throw new UsageError('--trace records one target; give one HOST:PORT (run passthru once per socket to trace several).');
  const log = new EventLog(values['json-log'], values.verbose);
  const cards = await loadCards(values, endpoints.length);
  for (const card of cards) log.followCard(card);
  const links: PassthruLink[] = [];
  let trace: TraceRecorder | undefined;
  const closeAll = async (): Promise<void> => {
    await Promise.all(links.map((l) => l.stop()));
    await Promise.all(cards.map((c: Card) => c.close?.()));
    trace?.close();
    log.close();
  };
  try {
    for (const [i, endpoint] of endpoints.entries()) {
      const where = `${endpoint.host}:${endpoint.port}`;
      log.emit({ event: 'connecting', target: where });
      const link = await PassthruLink.open(endpoint, cards[i]!, {
        beforeStart: (forwarder) => {
          trace ??= startTrace(values, where, cards[i]!.name, forwarder, (t) => process.stderr.write(`${t}\n`));
        },
      });
      log.emit({ event: 'linked', target: where, secure: false });
      log.follow(link.forwarder, where);
      links.push(link);
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  // One socket failing does not stop the others; the command ends when none is left.
  const ended = new Promise<SpiceError | undefined>((resolve) => {
    let open = links.length;
    let last: SpiceError | undefined;
    for (const link of links) {
      const onClosed = (error: SpiceError | undefined): void => {
        if (error !== undefined) {
          last = error;
          log.emit({ event: 'error', reader: link.where, code: error.kind, message: error.message, fatal: true });
        }
        if (--open === 0) resolve(last);
      };
      // A link may have closed already, while later endpoints were opening or right after connect.
      if (link.isOpen) link.once('closed', onClosed);
      else onClosed(link.closeError);
    }
  });
  const reason = await untilSignalOr(ended);
  let exit: ExitCodeNumber = ExitCode.OK;
  if (reason.kind === 'signal') {
    log.note('Stopping: removing the cards and readers from the VM…');
  } else if (reason.error instanceof SpiceError) {
    exit = exitCodeFor(reason.error.kind);
  }
  await closeAll();
  log.emit({ event: 'closed', ...(reason.kind === 'ended' && reason.error instanceof SpiceError ? { reason: reason.error.message } : {}) });
  return exit;
}
