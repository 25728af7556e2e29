// `spice-smartcard proxy <uri|file.vv> --listen 127.0.0.1:PORT`: a loopback SPICE proxy for the
// user's own viewer that adds the card to the viewer's session (see docs/proxy.md).
import type { Card } from '../../vsc/card.js';
import { CardProxy } from '../proxy/card-proxy.js';
import { ListenAddressError, isLoopbackHost, parseListenAddress, viewerUri, type ListenAddress } from '../proxy/listen-address.js';
import { missingSmartcardAdvice } from '../smartcard-advice.js';
import type { ConnectionSpec } from '../connection-spec.js';
import { CARD_OPTIONS, loadCards } from './card-options.js';
import { attachCardControls } from './card-controls.js';
import { EventLog } from './event-log.js';
import { ExitCode, UsageError, type ExitCodeNumber } from './exit-codes.js';
import { CONNECTION_OPTIONS, connectionFromOptions, parseCommandArgs } from './options.js';
import { untilSignalOr } from './run-until-stopped.js';

const PROXY_HELP = `Usage: spice-smartcard proxy <uri|file.vv> [--listen HOST:PORT] [--listen-any]
                             [--soft-card PATH | --demo-card | --reader NAME] [--json-log]
                             [--password-file FILE] [--ca-file FILE] [--host-subject SUBJ]
                             [--timeout SECONDS] [--verbose]

Listens on a loopback port for your SPICE viewer (remote-viewer, virt-viewer) and relays its
session to the VM, adding the card to that session: the viewer keeps its display, and the VM gets
the card. Point the viewer at the printed spice:// address, without smartcard support (the proxy
brings the card). When the viewer reconnects, the card follows it into the new session.

  --listen HOST:PORT  where to listen (default 127.0.0.1:0, a free port; PORT alone means 127.0.0.1)
  --listen-any        allow a non-loopback address. Anyone who can reach it gets the VM's session
                      (and, with a known password, the VM): think twice.
  --soft-card PATH | --demo-card | --reader NAME   the card (default: first PC/SC reader, else demo)
  --json-log          one JSON event per line on stdout: listening, viewer-channel, linked,
                      unlinked, reader-added, card-inserted, card-removed, apdu, warning, error, closed

Password: with --password-file, SPICE_PASSWORD or a password in the .vv file the proxy answers
for the viewer (a viewer without the password links too). Without one, the viewer's own password
is passed on, and the proxy reuses it for the card's channel. Runs until Ctrl-C, then removes the
card and the reader from the VM.`;

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...CARD_OPTIONS,
  listen: { type: 'string', default: '127.0.0.1:0' },
  'listen-any': { type: 'boolean', default: false },
  'json-log': { type: 'boolean', default: false },
} as const;

/** --listen, refused off loopback unless --listen-any. */
export function listenAddressFrom(text: string, listenAny: boolean, log: EventLog): ListenAddress {
  let address: ListenAddress;
  try {
    address = parseListenAddress(text);
  } catch (e) {
    if (e instanceof ListenAddressError) throw new UsageError(`--listen: ${e.message}`);
    throw e;
  }
  if (!isLoopbackHost(address.host)) {
    if (!listenAny) {
      throw new UsageError(
        `--listen ${text} is not a loopback address. The proxy gives whoever connects the VM's session (and the password it knows): ` +
          'keep it on 127.0.0.1, or add --listen-any if you really mean it.',
      );
    }
    log.note(`Warning: listening on ${address.host}, not loopback: anyone who can reach this port gets the VM's session.`);
  }
  return address;
}

/** The password the user gave, if any: the proxy then answers for the viewer. */
export function knownPasswordOf(spec: ConnectionSpec): string | undefined {
  return spec.passwordSource === 'none' ? undefined : spec.password;
}

/** Reports what the proxy and its card do, the same way `connect` does, plus the viewer's channels. */
export function followCardProxy(log: EventLog, proxy: CardProxy, card: Card, target: string, json: boolean, verbose: boolean): void {
  const { server, injector } = proxy;
  server.on('viewer-channel', (e) => log.emit({ event: 'viewer-channel', ...e }));
  server.on('note', (level, text) => {
    if (level === 'warn') {
      if (json) log.emit({ event: 'warning', code: 'proxy', message: text });
      else log.note(`Warning: ${text}`);
    } else if (verbose) {
      log.note(text);
    }
  });
  server.on('switch-host', (t) =>
    log.note(`The VM is moving to ${t.host} (port ${t.port}, TLS port ${t.tlsPort}): the viewer will connect there directly, and the card will not follow it.`),
  );
  injector.on('linking', (sessionId) => {
    if (verbose) log.note(`Linking the card into session 0x${sessionId.toString(16).padStart(8, '0')}…`);
  });
  injector.on('note', (text) => {
    if (verbose) log.note(text);
  });
  injector.on('linked', ({ sessionId, secure, link }) => {
    log.emit({ event: 'linked', target, sessionId, secure });
    log.follow(link.forwarder, card.name);
  });
  injector.on('unlinked', (sessionId, error) => log.emit({ event: 'unlinked', sessionId, ...(error !== undefined ? { reason: error.message } : {}) }));
  injector.on('failed', (sessionId, error) => {
    const advice = error.kind === 'channel-missing' ? ` ${missingSmartcardAdvice()}` : '';
    log.emit({ event: 'error', code: error.kind, message: `Could not add the card to session 0x${sessionId.toString(16).padStart(8, '0')}: ${error.message}${advice}`, fatal: false });
  });
}

export async function runProxy(args: string[]): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${PROXY_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length !== 1) throw new UsageError('proxy takes exactly one target: a spice:// URI or a .vv file. Run "spice-smartcard proxy --help".');
  const json = values['json-log'];
  const log = new EventLog(json, values.verbose);
  const listen = listenAddressFrom(values.listen, values['listen-any'], log);
  const spec = await connectionFromOptions(positionals[0]!, values);
  const [card] = await loadCards(values, 1);
  if (card === undefined) throw new UsageError('No card source.');
  log.note(`Card: ${card.name}.`);
  log.followCard(card);

  let proxy: CardProxy;
  try {
    proxy = await CardProxy.start({
      plan: spec.plan,
      secureChannels: spec.secureChannels,
      knownPassword: knownPasswordOf(spec),
      card,
      host: listen.host,
      port: listen.port,
    });
  } catch (e) {
    await card.close?.();
    throw e;
  }
  followCardProxy(log, proxy, card, spec.label, json, values.verbose);
  const address = proxy.server.address;
  log.emit({ event: 'listening', host: address.host, port: address.port, uri: viewerUri(address) });
  log.note(`Relaying to ${spec.label}. Connect the viewer without smartcard support; the card is added to its session.`);
  if (knownPasswordOf(spec) === undefined) log.note("No password given: the viewer's own password is passed on and reused for the card.");

  const detachControls = attachCardControls(card, (t) => log.note(t), () => process.kill(process.pid, 'SIGINT'));
  const reason = await untilSignalOr(new Promise<never>(() => undefined));
  detachControls();
  if (reason.kind === 'signal') log.note('Stopping: removing the card and the reader from the VM, closing the viewer connections…');
  await proxy.close();
  await card.close?.();
  log.emit({ event: 'closed' });
  log.close();
  return ExitCode.OK;
}

