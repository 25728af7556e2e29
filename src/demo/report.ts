// The demo's report on stdout: how the card got into the VM, then what the VM's own software saw
// of it, one check a row with the commands that showed it, and a closing line.
import type { CheckStatus, DemoCheck } from './guest-checks.js';

export interface DemoSetup {
  /** e.g. "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)", TCG or KVM. */
  vm: string;
  /** The connect command line the demo ran. */
  bridge: string;
  /** What the bridge reported: linked session, card inserted. */
  bridgeState: string;
}

const LABEL: Record<CheckStatus, string> = { ok: 'ok', failed: 'FAILED', skipped: 'skipped' };
const COLUMN = 24;

function row(status: CheckStatus, title: string, text: string): string {
  return `  ${LABEL[status].padEnd(8)}${title.padEnd(COLUMN - 10)}${text}`;
}

function indent(text: string): string {
  return `${' '.repeat(COLUMN)}${text}`;
}

export function formatReport(setup: DemoSetup, checks: readonly DemoCheck[]): string {
  const lines = [
    'spice-smartcard demo: a smartcard put into a VM over SPICE',
    '',
    `  VM      ${setup.vm}`,
    `  bridge  ${setup.bridge}`,
    `          ${setup.bridgeState}`,
    '',
    "What the VM's own software sees (pcscd and OpenSC in the guest):",
    '',
  ];
  for (const c of checks) {
    lines.push(row(c.status, c.title, c.summary));
    for (const d of c.details) lines.push(indent(d));
    for (const cmd of c.commands) lines.push(indent(`$ ${cmd}`));
  }
  lines.push('', verdict(checks));
  return `${lines.join('\n')}\n`;
}

export function verdict(checks: readonly DemoCheck[]): string {
  const count = (s: CheckStatus): number => checks.filter((c) => c.status === s).length;
  const failed = count('failed');
  const skipped = count('skipped');
  if (failed > 0) return `${failed} of ${checks.length} checks FAILED.`;
  const tail = skipped > 0 ? ` (${skipped} skipped)` : '';
  return `All ${checks.length - skipped} checks passed${tail}: the card went over SPICE into the VM, and the VM's own middleware used it.`;
}

export function allPassed(checks: readonly DemoCheck[]): boolean {
  return checks.length > 0 && checks.every((c) => c.status !== 'failed');
}
