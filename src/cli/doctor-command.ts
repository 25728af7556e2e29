// `spice-smartcard doctor [<uri|file.vv>] [--json] [--no-session]`: checks this machine and, given
// a VM, its SPICE endpoint, and prints each finding with what to do about it.
import type { DoctorCheck } from '../doctor/check.js';
import { checkHost, type HostCheckOptions } from '../doctor/host-checks.js';
import { checkVm } from '../doctor/vm-checks.js';
import { ExitCode, UsageError, type ExitCodeNumber } from './exit-codes.js';
import { CONNECTION_OPTIONS, connectionFromOptions, parseCommandArgs } from './options.js';
import { canPrompt, promptPassword } from './prompt.js';

const DOCTOR_HELP = `Usage: spice-smartcard doctor [<uri|file.vv>] [--json] [--no-session] [--password-file FILE]
                              [--ca-file FILE] [--host-subject SUBJ] [--timeout SECONDS]

Checks this machine: the PC/SC module and service, readers and cards, a SPICE viewer. Given a VM,
also its SPICE endpoint: reachable, TLS, password, smartcard channel offered, and free. Each check
is printed as ok, warning or problem, with what to do.

The password and the smartcard channel are checked by linking that channel on its own, which
disturbs no one. Whether another client already holds the channel can only be seen in a SPICE
session of our own, and a SPICE server holds one session at a time: a viewer connected to the VM
is disconnected. --no-session skips that check and leaves a viewer connected.

  --json         one JSON object on stdout: {"target", "checks": [{"scope", "id", "title", "status",
                 "summary", "details", "fix"}], "problems", "warnings", "exitCode"}
  --no-session   do not open a SPICE session (a connected viewer stays connected)

Exit status: 0 no problem (warnings allowed), 2 usage, 3 network or TLS failure, or PC/SC unusable
on this machine, 4 password refused, 5 smartcard channel missing or taken. When both this machine
and the VM have problems, the VM's decides.`;

const OPTIONS = { ...CONNECTION_OPTIONS, 'no-session': { type: 'boolean', default: false } } as const;

type Scope = 'host' | 'vm';

export interface DoctorIo {
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
  host?: HostCheckOptions;
}

const STATUS_LABEL: Record<DoctorCheck['status'], string> = { ok: 'ok', warning: 'warning', problem: 'PROBLEM', skipped: 'skipped' };
const TITLE_WIDTH = 24;

function formatSection(heading: string, checks: readonly DoctorCheck[]): string {
  const lines = [heading];
  for (const c of checks) {
    lines.push(`  ${STATUS_LABEL[c.status].padEnd(9)}${c.title.padEnd(TITLE_WIDTH)}${c.summary}`);
    const pad = ' '.repeat(11 + TITLE_WIDTH);
    for (const d of c.details ?? []) lines.push(`${pad}${d}`);
    if (c.fix !== undefined) {
      const [first, ...rest] = c.fix.split('\n');
      lines.push(`${pad}${c.status === 'ok' ? 'note' : 'fix'}: ${first ?? ''}`);
      for (const r of rest) lines.push(`${pad}${r}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The VM's first problem decides; else this machine's; else 0. */
export function doctorExitCode(host: readonly DoctorCheck[], vm: readonly DoctorCheck[]): ExitCodeNumber {
  for (const checks of [vm, host]) {
    const problem = checks.find((c) => c.status === 'problem');
    if (problem) return problem.exitCode ?? ExitCode.INTERNAL;
  }
  return ExitCode.OK;
}

function closingLine(all: readonly DoctorCheck[]): string {
  const problems = all.filter((c) => c.status === 'problem').length;
  const warnings = all.filter((c) => c.status === 'warning').length;
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (problems === 0 && warnings === 0) return 'No problems found.';
  if (problems === 0) return `No problems; ${plural(warnings, 'warning')}.`;
  return `${plural(problems, 'problem')}${warnings > 0 ? `, ${plural(warnings, 'warning')}` : ''}.`;
}

export async function runDoctor(args: string[], io: DoctorIo = {}): Promise<ExitCodeNumber> {
  const out = io.out ?? process.stdout;
  const err = io.err ?? process.stderr;
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    out.write(`${DOCTOR_HELP}\n`);
    return ExitCode.OK;
  }
  if (positionals.length > 1) {
    throw new UsageError('doctor takes at most one target: a spice:// URI or a .vv file. Run "spice-smartcard doctor --help".');
  }
  const json = values.json;
  const target = positionals[0];
  // Read the target first: a mistake in it is a usage error, before any check runs.
  const spec = target === undefined ? undefined : await connectionFromOptions(target, values);
  if (spec?.vvDeleted) err.write(`Read and deleted ${target ?? ''} (it asked for delete-this-file=1).\n`);

  const host = await checkHost(io.host ?? {});
  if (!json) out.write(formatSection('This machine', host));

  let vm: DoctorCheck[] = [];
  if (spec !== undefined) {
    vm = await checkVm(spec, {
      session: !values['no-session'],
      ...(canPrompt() && !json ? { askPassword: promptPassword } : {}),
      onSessionOpening: () =>
        err.write('Opening a SPICE session of our own to see whether the smartcard channel is free: a viewer connected to this VM is disconnected now (--no-session avoids this).\n'),
    });
    if (!json) out.write(`\n${formatSection(`VM ${spec.label}`, vm)}`);
  }

  const exitCode = doctorExitCode(host, vm);
  const all = [...host, ...vm];
  if (json) {
    const withScope = (scope: Scope) => (c: DoctorCheck) => ({ scope, ...c });
    const result = {
      target: spec?.label ?? null,
      session: spec !== undefined && !values['no-session'],
      checks: [...host.map(withScope('host')), ...vm.map(withScope('vm'))],
      problems: all.filter((c) => c.status === 'problem').length,
      warnings: all.filter((c) => c.status === 'warning').length,
      exitCode,
    };
    out.write(`${JSON.stringify(result)}\n`);
  } else {
    out.write(`\n${closingLine(all)}\n`);
  }
  return exitCode;
}
