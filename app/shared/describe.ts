// Words for what the bridge reports: a session's phase as a short label, a tone for its colour, and
// what the user can do about it. Pure, so the desktop tray and the page say the same thing.
import type { CardSourceSpec, SessionStatus } from '../../src/control/schema.js';

export type Tone = 'ok' | 'busy' | 'warn' | 'bad' | 'idle';

export interface PhaseText {
  label: string;
  tone: Tone;
  /** What happened and what to do, when there is anything to say. */
  advice?: string;
}

export function describeSession(status: SessionStatus, now: number = Date.now()): PhaseText {
  const problem = status.problem?.message;
  switch (status.phase) {
    case 'active':
      if (status.vm.cardInserted) return { label: 'Card in the VM', tone: 'ok' };
      if (status.vm.readerAdded) {
        return {
          label: 'Reader in the VM, no card',
          tone: 'warn',
          advice: status.card.present ? 'The card is being inserted.' : cardAbsentAdvice(status.card.source),
        };
      }
      return { label: 'Linked', tone: 'busy', advice: 'Adding the reader to the VM.' };
    case 'connecting':
      return { label: 'Connecting', tone: 'busy' };
    case 'listening':
      return {
        label: 'Waiting for your viewer',
        tone: 'busy',
        advice: status.proxy !== undefined ? `Open ${status.proxy.uri} in your SPICE viewer (remote-viewer); the card joins its session.` : 'Open the VM in your SPICE viewer.',
      };
    case 'waiting': {
      const when = status.retry !== undefined ? `retrying in ${Math.max(0, Math.round((status.retry.at - now) / 1000))} s (attempt ${status.retry.attempt})` : 'retrying';
      return { label: 'Waiting', tone: 'warn', advice: problem !== undefined ? `${problem} Meanwhile ${when}.` : `The VM cannot be reached; ${when}.` };
    }
    case 'needs-password':
      return { label: 'Password needed', tone: 'warn', advice: 'The VM asks for a password and none was given: enter the SPICE password (not your card PIN).' };
    case 'failed':
      if (status.problem?.code === 'auth') return { label: 'Wrong password', tone: 'bad', advice: 'The VM refused the password: enter the right SPICE password (not your card PIN).' };
      return { label: 'Failed', tone: 'bad', advice: problem ?? 'The session stopped; check the log below.' };
    case 'stopped':
      return { label: 'Stopped', tone: 'idle', advice: 'Start it to put the card in the VM.' };
  }
}

function cardAbsentAdvice(source: CardSourceSpec): string {
  switch (source.kind) {
    case 'reader':
      return `Insert a card in ${source.reader === '*' ? 'the reader' : `"${source.reader}"`}.`;
    case 'none':
      return 'No card source is chosen for this session.';
    default:
      return 'The card is ejected: use Insert to put it back.';
  }
}

export function describeCardSource(source: CardSourceSpec): string {
  switch (source.kind) {
    case 'demo':
      return 'Demo card';
    case 'soft':
      return `Soft card ${source.path}`;
    case 'reader':
      return source.reader === '*' ? 'First PC/SC reader' : `Reader ${source.reader}`;
    case 'replay':
      return `Replay of ${source.path}`;
    case 'none':
      return 'No card';
  }
}

export function describeMode(mode: SessionStatus['mode']): string {
  switch (mode) {
    case 'proxy':
      return 'with my viewer';
    case 'connect':
      return 'standalone';
    case 'passthru':
      return 'QEMU passthru socket';
  }
}

/** Soft, demo and replay cards can be taken out and put back from here; a reader's card is pulled by hand. */
export function canEject(source: CardSourceSpec): boolean {
  return source.kind === 'soft' || source.kind === 'demo' || source.kind === 'replay';
}

export function formatSw(sw: number | undefined): string {
  return sw === undefined ? '—' : sw.toString(16).toUpperCase().padStart(4, '0');
}

/** One line for the tray tooltip and the page title: how many sessions have their card in a VM. */
export function summarize(sessions: Iterable<SessionStatus>): { text: string; tone: Tone } {
  let total = 0;
  let inVm = 0;
  let trouble = 0;
  for (const s of sessions) {
    total++;
    if (s.phase === 'active' && s.vm.cardInserted) inVm++;
    if (s.phase === 'failed' || s.phase === 'needs-password' || s.phase === 'waiting') trouble++;
  }
  if (total === 0) return { text: 'No sessions', tone: 'idle' };
  const parts = [`${inVm} of ${total} card${total === 1 ? '' : 's'} in a VM`];
  if (trouble > 0) parts.push(`${trouble} need${trouble === 1 ? 's' : ''} attention`);
  return { text: parts.join(', '), tone: trouble > 0 ? 'warn' : inVm > 0 ? 'ok' : 'busy' };
}
