// `doctor`'s look at a VM's SPICE endpoint, cheapest and least disturbing first:
//  1. reachable: a plain stream to the server (TCP, Unix socket, WebSocket or proxy tunnel);
//  2. TLS: a TLS stream, with the CA and host name or host-subject checks;
//  3. password and smartcard channel: the smartcard channel linked on its own, with a connection
//     id no session has. spice-server checks the channel exists (else it closes at once), then
//     the password (PERMISSION_DENIED), and only then the connection id (BAD_CONNECTION_ID): so
//     BAD_CONNECTION_ID means "channel offered, password accepted", and no session is created;
//  4. smartcard channel free: only in a session of our own (probe), which replaces a connected
//     viewer's session; skipped with --no-session or when anything before failed.
import { randomInt } from 'node:crypto';
import { SpiceChannel } from '../../spice/channel.js';
import { ChannelType, LinkError } from '../../spice/constants.js';
import { SpiceError } from '../../spice/errors.js';
import { createTransport, type Transport } from '../../spice/transport.js';
import { ExitCode, exitCodeFor } from '../cli/exit-codes.js';
import type { ConnectionSpec } from '../connection-spec.js';
import { probe } from '../probe.js';
import { missingSmartcardAdvice, takenSmartcardAdvice } from '../smartcard-advice.js';
import { skipped, type DoctorCheck } from './check.js';

export interface VmCheckOptions {
  /** Also open a session of our own to see whether the smartcard channel is free (disconnects a viewer). */
  session: boolean;
  /** Asks for the password on a terminal when the server refuses the one given (or none was). */
  askPassword?: (question: string) => Promise<string>;
  /** Told just before the session is opened, so the user knows a viewer is about to be disconnected. */
  onSessionOpening?: () => void;
}

type LinkOutcome =
  | { kind: 'accepted' }
  | { kind: 'denied'; error: SpiceError }
  | { kind: 'no-channel' }
  | { kind: 'failed'; error: SpiceError };

const LINK_TIMEOUT_MS = 10_000;

function asSpiceError(e: unknown): SpiceError {
  return e instanceof SpiceError ? e : new SpiceError('network', e instanceof Error ? e.message : String(e), { cause: e });
}

function isLoopback(spec: ConnectionSpec): boolean {
  if (spec.plan.unixPath !== undefined) return true;
  const host = spec.plan.webSocketUrl !== undefined ? new URL(spec.plan.webSocketUrl).hostname : spec.plan.host;
  return host !== undefined && spec.plan.proxy === undefined && /^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$/.test(host);
}

async function openAndClose(transport: Transport, secure: boolean): Promise<void> {
  const stream = await transport.open(secure);
  stream.destroy();
}

/** Links `type` with a connection id no session has: what the server answers tells the channel and the password apart. */
async function orphanLink(transport: Transport, spec: ConnectionSpec, type: number): Promise<LinkOutcome> {
  const secure = spec.secureChannels === 'all' || spec.secureChannels.has(type);
  try {
    const channel = await SpiceChannel.link({
      transport,
      secure,
      connectionId: randomInt(1, 2 ** 31),
      channelType: type,
      channelId: 0,
      password: spec.password,
      linkTimeoutMs: LINK_TIMEOUT_MS,
    });
    // Only a server that does not check connection ids gets here; the password passed all the same.
    await channel.close();
    return { kind: 'accepted' };
  } catch (e) {
    const error = asSpiceError(e);
    if (error.linkError === LinkError.BAD_CONNECTION_ID) return { kind: 'accepted' };
    if (error.linkError === LinkError.PERMISSION_DENIED) return { kind: 'denied', error };
    if (error.kind === 'channel-missing') return { kind: 'no-channel' };
    return { kind: 'failed', error };
  }
}

/** The password check, asking again on a terminal like `connect` does. */
async function passwordOutcome(transport: Transport, spec: ConnectionSpec, type: number, options: VmCheckOptions): Promise<LinkOutcome> {
  for (let attempt = 0; ; attempt++) {
    const outcome = await orphanLink(transport, spec, type);
    const mayAsk = options.askPassword !== undefined && (spec.passwordSource === 'none' || attempt > 0) && attempt < 3;
    if (outcome.kind !== 'denied' || !mayAsk || options.askPassword === undefined) return outcome;
    spec.password = await options.askPassword(attempt === 0 ? `Password for ${spec.label}: ` : 'Wrong password, try again: ');
    spec.passwordSource = 'prompt';
  }
}

function deniedCheck(spec: ConnectionSpec, error: SpiceError): DoctorCheck {
  const given = spec.passwordSource === 'none' ? 'none was given' : `the one from ${spec.passwordSource} was refused`;
  return {
    id: 'password',
    title: 'password',
    status: 'problem',
    summary: `the server wants a password and ${given} (PERMISSION_DENIED)`,
    fix: 'give the right one with --password-file FILE or SPICE_PASSWORD, or a fresh .vv file (oVirt and Proxmox tickets expire within seconds).',
    exitCode: exitCodeFor(error.kind),
  };
}

function problem(id: string, title: string, error: SpiceError, fix?: string): DoctorCheck {
  return { id, title, status: 'problem', summary: error.message, ...(fix !== undefined ? { fix } : {}), exitCode: exitCodeFor(error.kind) };
}

export async function checkVm(spec: ConnectionSpec, options: VmCheckOptions): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const skipRest = (why: string): DoctorCheck[] => {
    const all = [
      ['tls', 'TLS'],
      ['password', 'password'],
      ['smartcard-channel', 'smartcard channel'],
      ['smartcard-free', 'smartcard channel free'],
    ] as const;
    for (const [id, title] of all) if (!checks.some((c) => c.id === id)) checks.push(skipped(id, title, `not checked: ${why}`));
    return checks;
  };

  let transport: Transport;
  try {
    transport = createTransport(spec.plan);
  } catch (e) {
    checks.push(problem('reachable', 'reachable', asSpiceError(e)));
    return skipRest('no server address');
  }

  // 1 + 2: a plain stream when there is a plain way in, then TLS when there is a TLS way in.
  const plainFirst = transport.canPlain;
  try {
    await openAndClose(transport, !plainFirst);
    checks.push({ id: 'reachable', title: 'reachable', status: 'ok', summary: transport.describe(!plainFirst) });
  } catch (e) {
    const error = asSpiceError(e);
    if (error.kind !== 'tls') {
      checks.push(problem('reachable', 'reachable', error));
      return skipRest('the server is not reachable');
    }
    checks.push({ id: 'reachable', title: 'reachable', status: 'ok', summary: transport.describe(true) });
    checks.push(problem('tls', 'TLS', error));
    return skipRest('TLS failed');
  }
  if (transport.canSecure && plainFirst) {
    try {
      await openAndClose(transport, true);
    } catch (e) {
      checks.push(problem('tls', 'TLS', asSpiceError(e)));
      return skipRest('TLS failed');
    }
  }
  if (transport.canSecure) {
    const how = spec.plan.tls.hostSubject !== undefined ? `subject ${spec.plan.tls.hostSubject}` : 'host name';
    checks.push({ id: 'tls', title: 'TLS', status: 'ok', summary: `${transport.describe(true)}: certificate verified (CA: ${spec.plan.tls.ca !== undefined ? 'given' : 'system store'}; ${how} matches)` });
  } else if (isLoopback(spec)) {
    checks.push({ id: 'tls', title: 'TLS', status: 'ok', summary: 'not used (the server is on this machine)' });
  } else {
    checks.push({
      id: 'tls',
      title: 'TLS',
      status: 'warning',
      summary: 'not used: SPICE traffic, including the PIN the VM sends to the card, crosses the network unencrypted',
      fix: "give the VM a TLS port (libvirt: <graphics type='spice' autoport='yes'> with spice_tls = 1 in qemu.conf) and connect with tls-port=.",
    });
  }

  // 3: password and smartcard channel, without a session.
  const smartcard = await passwordOutcome(transport, spec, ChannelType.SMARTCARD, options);
  let channelOffered = false;
  if (smartcard.kind === 'failed') {
    const error = smartcard.error;
    if (error.kind === 'protocol') {
      checks.splice(0, checks.length, { id: 'reachable', title: 'reachable', status: 'problem', summary: error.message, exitCode: exitCodeFor(error.kind) });
      return skipRest('no SPICE server answers there');
    }
    if (error.kind === 'tls') checks.splice(checks.findIndex((c) => c.id === 'tls'), 1, problem('tls', 'TLS', error));
    else checks.push(problem('password', 'password', error));
    return skipRest('the smartcard channel could not be linked');
  }
  if (smartcard.kind === 'no-channel') {
    // No smartcard channel: the password is checked on the inputs channel, which QEMU always has.
    const inputs = await passwordOutcome(transport, spec, ChannelType.INPUTS, options);
    if (inputs.kind === 'accepted') checks.push({ id: 'password', title: 'password', status: 'ok', summary: passwordText(spec) });
    else if (inputs.kind === 'denied') checks.push(deniedCheck(spec, inputs.error));
    else checks.push(skipped('password', 'password', 'not checked: it needs a channel the server offers, and without a session only the smartcard and inputs channels are tried'));
  } else if (smartcard.kind === 'denied') {
    checks.push(deniedCheck(spec, smartcard.error));
    channelOffered = true;
  } else {
    checks.push({ id: 'password', title: 'password', status: 'ok', summary: passwordText(spec) });
    channelOffered = true;
  }
  if (channelOffered) checks.push({ id: 'smartcard-channel', title: 'smartcard channel', status: 'ok', summary: 'offered: the VM has a smartcard passthrough device' });
  else {
    checks.push({
      id: 'smartcard-channel',
      title: 'smartcard channel',
      status: 'problem',
      summary: 'not offered: the server closes the smartcard channel at once',
      fix: missingSmartcardAdvice(),
      exitCode: ExitCode.SMARTCARD,
    });
  }
  if (checks.some((c) => c.status === 'problem')) return skipRest('an earlier check failed');
  if (!options.session) return skipRest('--no-session (seeing whether another client holds it takes a session of our own, which disconnects a viewer)');

  // 4: a session of our own.
  options.onSessionOpening?.();
  try {
    const result = await probe(spec, options.askPassword !== undefined ? { askPassword: options.askPassword } : {});
    const vm = result.vmName !== undefined ? `${result.vmName}; ` : '';
    const details = [`channels: ${result.channels.map((c) => `${c.name}${c.id !== 0 ? `:${c.id}` : ''}`).join(', ')}`];
    if (result.smartcardLink === 'linked') {
      checks.push({ id: 'smartcard-free', title: 'smartcard channel free', status: 'ok', summary: `${vm}it links in a session of our own and stays up: no other client holds it`, details });
    } else if (result.smartcardLink === 'taken') {
      checks.push({ id: 'smartcard-free', title: 'smartcard channel free', status: 'problem', summary: `${vm}the server closes our smartcard channel at once: another client holds it`, details, fix: takenSmartcardAdvice(), exitCode: ExitCode.SMARTCARD });
    } else if (result.smartcardLink === 'not-offered') {
      // The channel was there for the link on its own: a server with several clients
      // (SPICE_DEBUG_ALLOW_MC) lists it only to the client that holds it.
      const summary = `${vm}our session is not offered the smartcard channel the server has: another client holds it`;
      checks.push({ id: 'smartcard-free', title: 'smartcard channel free', status: 'problem', summary, details, fix: takenSmartcardAdvice(), exitCode: ExitCode.SMARTCARD });
    } else {
      const error = result.smartcardError ?? new SpiceError('network', 'the smartcard channel could not be linked');
      checks.push({ ...problem('smartcard-free', 'smartcard channel free', error), details });
    }
  } catch (e) {
    checks.push(problem('smartcard-free', 'smartcard channel free', asSpiceError(e)));
  }
  return checks;
}

function passwordText(spec: ConnectionSpec): string {
  switch (spec.passwordSource) {
    case 'none':
      return 'none needed';
    case 'prompt':
      return 'accepted (typed at the prompt)';
    default:
      return `accepted (from ${spec.passwordSource})`;
  }
}
