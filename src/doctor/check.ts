// One finding of `doctor`: what was checked, what was seen, and what to do about it.
import type { ExitCodeNumber } from '../cli/exit-codes.js';

/**
 * ok: fine. warning: worth knowing, does not stop anything (no effect on the exit status).
 * problem: stops something from working (sets the exit status). skipped: could not be checked
 * because an earlier check failed, or was not asked for.
 */
export type CheckStatus = 'ok' | 'warning' | 'problem' | 'skipped';

export interface DoctorCheck {
  id: string;
  title: string;
  status: CheckStatus;
  /** What was seen, in one line. */
  summary: string;
  /** More lines: one per reader, the channels of the VM. */
  details?: string[];
  /** What to do, for warnings and problems. */
  fix?: string;
  /** The exit status a problem stands for (3 network/TLS/PC/SC, 4 password, 5 smartcard channel). */
  exitCode?: ExitCodeNumber;
}

export function skipped(id: string, title: string, summary: string): DoctorCheck {
  return { id, title, status: 'skipped', summary };
}
