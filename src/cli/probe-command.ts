// `spice-smartcard probe <uri|file.vv> [--json]`
import { NotifySeverity } from '../../spice/constants.js';
import { SpiceError } from '../../spice/errors.js';
import type { DialPlan } from '../../spice/transport.js';
import { probe, type ProbeResult } from '../probe.js';
import { missingSmartcardAdvice, takenSmartcardAdvice } from '../smartcard-advice.js';
import { CONNECTION_OPTIONS, connectionFromOptions, parseCommandArgs } from './options.js';
import { ExitCode, UsageError, exitCodeFor, type ExitCodeNumber } from './exit-codes.js';
import { canPrompt, promptPassword } from './prompt.js';

const PROBE_HELP = `Usage: spice-smartcard probe <uri|file.vv> [--json] [--password-file FILE] [--ca-file FILE]
                             [--host-subject SUBJ] [--timeout SECONDS] [--verbose]

Links to the VM's SPICE server, prints its channels and whether a smartcard channel is offered,
and checks that the smartcard channel links. Probing opens a SPICE session of its own: a viewer
connected to the same VM is disconnected (a SPICE server holds one session at a time).`;

function transportLabel(plan: DialPlan, secure: boolean): string {
  if (plan.unixPath !== undefined) return 'a Unix socket';
  const base = plan.webSocketUrl !== undefined ? 'WebSocket' : plan.proxy !== undefined ? 'an HTTP CONNECT tunnel' : 'TCP';
  return secure ? `${base} with TLS` : `plain ${base}`.replace('plain an', 'a plain');
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

function jsonResult(r: ProbeResult): Record<string, unknown> {
  const out: Record<string, unknown> = {
    target: r.target,
    secure: r.secure,
    sessionId: r.sessionId,
    channels: r.channels,
    smartcard: r.smartcard,
    smartcardLink: r.smartcardLink,
  };
  if (r.vmName !== undefined) out['vmName'] = r.vmName;
  if (r.vmUuid !== undefined) out['vmUuid'] = r.vmUuid;
  if (r.smartcardSecure !== undefined) out['smartcardSecure'] = r.smartcardSecure;
  return out;
}

export async function runProbe(args: string[]): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, CONNECTION_OPTIONS);
  if (values.help) {
    process.stdout.write(`${PROBE_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length !== 1) throw new UsageError('probe takes exactly one target: a spice:// URI or a .vv file. Run "spice-smartcard probe --help".');
  const json = values.json;
  const say = (line: string): void => {
    if (!json || values.verbose) process.stderr.write(`${line}\n`);
  };
  const spec = await connectionFromOptions(positionals[0]!, values);
  if (spec.vvDeleted) say(`Read and deleted ${positionals[0]!} (it asked for delete-this-file=1).`);
  say(`Probing ${spec.label}. Note: this opens a SPICE session of its own, so a viewer connected to this VM is disconnected.`);

  let result: ProbeResult;
  try {
    result = await probe(spec, {
      ...(canPrompt() ? { askPassword: promptPassword } : {}),
      onNotify: (n) => say(`Server notice (${NotifySeverity[n.severity] ?? 'info'}): ${n.message}`),
      log: (level, message) => {
        if (values.verbose || level !== 'debug') say(`  ${message}`);
      },
    });
  } catch (e) {
    if (e instanceof SpiceError && json) {
      process.stdout.write(`${JSON.stringify({ target: spec.label, error: { kind: e.kind, message: e.message } })}\n`);
    }
    if (e instanceof SpiceError && e.kind === 'auth' && spec.passwordSource === 'none') {
      throw new SpiceError('auth', `${e.message} No password was given: this server needs one.`, { cause: e });
    }
    throw e;
  }

  let exit: ExitCodeNumber = ExitCode.OK;
  let problem: string | undefined;
  if (!result.smartcard) {
    problem = missingSmartcardAdvice();
    exit = ExitCode.SMARTCARD;
  } else if (result.smartcardLink === 'taken') {
    problem = takenSmartcardAdvice();
    exit = ExitCode.SMARTCARD;
  } else if (result.smartcardLink === 'failed' && result.smartcardError !== undefined) {
    problem = `The smartcard channel is offered but could not be linked: ${result.smartcardError.message}`;
    exit = exitCodeFor(result.smartcardError.kind);
  }

  if (json) {
    const out = jsonResult(result);
    if (problem !== undefined) out['problem'] = problem;
    process.stdout.write(`${JSON.stringify(out)}\n`);
    if (problem !== undefined) process.stderr.write(`spice-smartcard: ${problem}\n`);
    return exit;
  }
  const lines = [
    `Server:    ${result.target}`,
    `Session:   ${hex32(result.sessionId)} (main channel over ${transportLabel(spec.plan, result.secure)})`,
  ];
  if (result.vmName !== undefined) lines.push(`VM:        ${result.vmName}${result.vmUuid !== undefined ? ` (${result.vmUuid})` : ''}`);
  lines.push(`Channels:  ${result.channels.map((c) => `${c.name}${c.id !== 0 ? `:${c.id}` : ''}`).join(', ')}`);
  if (result.smartcardLink === 'linked') {
    lines.push(`Smartcard: offered, and the smartcard channel links${result.smartcardSecure ? ' (over TLS)' : ''}. Ready for a card.`);
  } else {
    lines.push(`Smartcard: ${result.smartcard ? 'offered, but not usable' : 'not offered'}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (problem !== undefined) process.stderr.write(`spice-smartcard: ${problem}\n`);
  return exit;
}
