// One session's life as a state machine over the schema's SessionPhase: events in, actions out.
// Dials, links and retry timers carry ids; an event from an older dial or timer is stale and never
// moves the session (a link that comes up after a stop or a newer dial is closed at once), which is
// what keeps an old link's traffic off a new one. No I/O and no timers here: see session-runner.ts.
import type { Problem, SessionMode, SessionPhase } from '../control/schema.js';
import { Backoff } from './backoff.js';
import { classifyFailure } from './session-problems.js';

export type MachineEvent =
  /** The user (or autostart) starts the session. */
  | { kind: 'start' }
  /** The user stops it: honoured at once, whatever is under way. */
  | { kind: 'stop' }
  /** The dial finished with a live link (connect: SPICE session + channel; passthru: socket; proxy: listening). */
  | { kind: 'linked'; dial: number }
  /** The dial failed before a link existed. */
  | { kind: 'dial-failed'; dial: number; error: unknown }
  /** The VM added the reader (connect/passthru), or the card joined a viewer's session (proxy). */
  | { kind: 'up'; dial: number }
  /** proxy: the viewer's session ended; the proxy listens on. */
  | { kind: 'idle'; dial: number }
  /** The live link went away. */
  | { kind: 'down'; dial: number; error: unknown }
  | { kind: 'retry-due'; timer: number }
  /** A new password is known. */
  | { kind: 'password' }
  /** The card source changed: a running session links again with it. */
  | { kind: 'relink' };

export type MachineAction =
  | { kind: 'dial'; dial: number }
  /** Abandon a dial in progress; if it still yields a link, close that link. */
  | { kind: 'abort-dial'; dial: number }
  /** Close a live link: `graceful` removes the card and reader first (the server is still there). */
  | { kind: 'close-link'; dial: number; graceful: boolean }
  | { kind: 'arm-timer'; timer: number; ms: number }
  | { kind: 'cancel-timer'; timer: number }
  /** The status changed (phase, problem or retry): publish it. */
  | { kind: 'changed' };

export interface MachineOptions {
  mode: SessionMode;
  backoff: Backoff;
  havePassword: boolean;
  now?: () => number;
}

type LinkStage = 'dialing' | 'linked';

export class SessionMachine {
  private phaseValue: SessionPhase = 'stopped';
  private sinceValue: number;
  private problemValue: Problem | undefined;
  private retryValue: { attempt: number; at: number } | undefined;
  private reconnectsValue = 0;
  private dialId = 0;
  private timerId = 0;
  /** The current dial and how far it got; undefined when nothing is dialing or linked. */
  private link: { id: number; stage: LinkStage; upEarly?: boolean } | undefined;
  private timer: number | undefined;
  private readonly mode: SessionMode;
  private readonly backoff: Backoff;
  private readonly now: () => number;
  havePassword: boolean;

  constructor(options: MachineOptions) {
    this.mode = options.mode;
    this.backoff = options.backoff;
    this.havePassword = options.havePassword;
    this.now = options.now ?? Date.now;
    this.sinceValue = this.now();
  }

  get phase(): SessionPhase {
    return this.phaseValue;
  }
  get since(): number {
    return this.sinceValue;
  }
  get problem(): Problem | undefined {
    return this.problemValue;
  }
  get retry(): { attempt: number; at: number } | undefined {
    return this.retryValue;
  }
  get reconnects(): number {
    return this.reconnectsValue;
  }
  /** The dial whose link may carry traffic now; undefined when none. */
  get currentDial(): number | undefined {
    return this.link?.id;
  }

  /** Sets a warning on a running session without changing its phase (proxy: a viewer session the card could not join). */
  warn(problem: Problem): MachineAction[] {
    this.problemValue = problem;
    return [{ kind: 'changed' }];
  }

  handle(event: MachineEvent): MachineAction[] {
    switch (event.kind) {
      case 'start':
        if (this.phaseValue !== 'stopped' && this.phaseValue !== 'failed' && this.phaseValue !== 'needs-password') return [];
        this.backoff.reset();
        return this.dial(false);
      case 'stop':
        return this.stop();
      case 'password':
        this.havePassword = true;
        if (this.phaseValue === 'needs-password' || (this.phaseValue === 'failed' && this.problemValue?.code === 'auth')) {
          this.backoff.reset();
          return this.dial(false);
        }
        if (this.phaseValue === 'waiting') return [...this.cancelTimer(), ...this.dial(true)];
        // A dial under way started without this password: its refusal would be blamed on a password it
        // never sent (and fail the session for good), so it is abandoned for one that sends it.
        if (this.link?.stage === 'dialing') return [...this.dropLink(true), ...this.dial(false)];
        return [];
      case 'relink': {
        if (this.link === undefined) return [];
        const actions = this.dropLink(true);
        return [...actions, ...this.dial(false)];
      }
      case 'retry-due':
        if (this.phaseValue !== 'waiting' || event.timer !== this.timer) return [];
        this.timer = undefined;
        return this.dial(true);
      case 'linked':
        if (!this.isCurrent(event.dial, 'dialing')) return [{ kind: 'close-link', dial: event.dial, graceful: true }];
        if (this.link?.upEarly === true) {
          this.link = { id: event.dial, stage: 'linked' };
          return this.handle({ kind: 'up', dial: event.dial });
        }
        this.link = { id: event.dial, stage: 'linked' };
        if (this.mode === 'proxy') {
          this.backoff.up();
          return this.enter('listening', undefined);
        }
        return [];
      case 'up':
        // The server can answer ReaderAdd before the dial has handed its link over.
        if (this.isCurrent(event.dial, 'dialing')) {
          this.link = { id: event.dial, stage: 'dialing', upEarly: true };
          return [];
        }
        if (!this.isCurrent(event.dial, 'linked')) return [];
        if (this.mode !== 'proxy') this.backoff.up();
        return this.enter('active', undefined);
      case 'idle':
        if (!this.isCurrent(event.dial, 'linked') || this.phaseValue !== 'active') return [];
        return this.enter('listening', undefined);
      case 'dial-failed':
        if (!this.isCurrent(event.dial, 'dialing')) return [];
        this.link = undefined;
        return this.fail(event.error);
      case 'down':
        // A link can die before its dial returned (a socket reset right after connect).
        if (!this.isCurrent(event.dial, 'linked') && !this.isCurrent(event.dial, 'dialing')) return [];
        this.link = undefined;
        this.backoff.down();
        return [{ kind: 'close-link', dial: event.dial, graceful: false }, ...this.fail(event.error)];
    }
  }

  private isCurrent(dial: number, stage: LinkStage): boolean {
    return this.link !== undefined && this.link.id === dial && this.link.stage === stage;
  }

  private dial(reconnect: boolean): MachineAction[] {
    if (reconnect) this.reconnectsValue += 1;
    const id = ++this.dialId;
    this.link = { id, stage: 'dialing' };
    // A reconnection keeps the last problem visible until the link is up again.
    return [...this.enter('connecting', reconnect ? this.problemValue : undefined), { kind: 'dial', dial: id }];
  }

  private stop(): MachineAction[] {
    if (this.phaseValue === 'stopped') return [];
    const actions = [...this.cancelTimer(), ...this.dropLink(true)];
    return [...actions, ...this.enter('stopped', undefined)];
  }

  private dropLink(graceful: boolean): MachineAction[] {
    const link = this.link;
    this.link = undefined;
    if (link === undefined) return [];
    return [link.stage === 'dialing' ? { kind: 'abort-dial', dial: link.id } : { kind: 'close-link', dial: link.id, graceful }];
  }

  private cancelTimer(): MachineAction[] {
    const timer = this.timer;
    this.timer = undefined;
    return timer === undefined ? [] : [{ kind: 'cancel-timer', timer }];
  }

  private fail(error: unknown): MachineAction[] {
    const { outcome, problem } = classifyFailure(error, { mode: this.mode, havePassword: this.havePassword });
    if (outcome !== 'retry') return this.enter(outcome, problem);
    const attempt = this.backoff.attempt + 1;
    const ms = this.backoff.next();
    const timer = ++this.timerId;
    this.timer = timer;
    const actions = this.enter('waiting', problem, { attempt, at: this.now() + ms });
    return [...actions, { kind: 'arm-timer', timer, ms }];
  }

  private enter(phase: SessionPhase, problem: Problem | undefined, retry?: { attempt: number; at: number }): MachineAction[] {
    if (phase !== this.phaseValue) this.sinceValue = this.now();
    this.phaseValue = phase;
    this.problemValue = problem;
    this.retryValue = retry;
    return [{ kind: 'changed' }];
  }
}
