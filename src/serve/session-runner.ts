// Runs one session: the SessionMachine decides, this carries its actions out with real transports
// (session-links.ts), keeps the card source open across links (session-card.ts), follows each
// link's forwarder into the status, and reports every change. Anything a link or a callback throws
// is contained here and becomes this session's problem; it never reaches the other sessions.
import { EventEmitter } from 'node:events';
import type { Card } from '../../vsc/card.js';
import type { CardForwarder } from '../bridge/card-forwarder.js';
import type { ApduCounters, CardSourceSpec, LogLevel, SessionPhase, SessionSpec, SessionStatus } from '../control/schema.js';
import { CONTROL_LIMITS } from '../control/schema.js';
import { TraceRecorder } from '../trace/trace-recorder.js';
import { toolVersion } from '../trace/tool-version.js';
import { Backoff } from './backoff.js';
import { SessionCard, type LinkCard } from './session-card.js';
import type { ConnectionSpec } from '../connection-spec.js';
import { dialLink, sessionConnection, type DialContext, type LiveLink, type ProxyInfo } from './session-links.js';
import { SessionMachine, type MachineAction, type MachineEvent } from './session-machine.js';
import { SessionCardError, SessionConfigError } from './session-problems.js';

export type SessionRunnerEvents = {
  status: [status: SessionStatus];
  counters: [counters: ApduCounters];
};

export interface SessionRunnerOptions {
  spec: SessionSpec;
  password?: string;
  /** Opens a card source (the bridge resolves paths and shares its PC/SC source). */
  openCard: (source: CardSourceSpec) => Promise<Card>;
  /** The target as the user named it, when spec.target is a private copy (a .vv given as content). */
  displayTarget?: string;
  log: (level: LogLevel, message: string) => void;
  /** The transports; tests may replace them. */
  dial?: (context: DialContext) => Promise<LiveLink>;
  now?: () => number;
  random?: () => number;
  /** Bound on a stop (card and reader removed, link closed). */
  stopBoundMs?: number;
}

interface LinkSlot {
  view: LinkCard;
  abort: AbortController;
  link?: LiveLink;
  closing?: Promise<void>;
}

const DEFAULT_STOP_BOUND_MS = 15_000;

export class SessionRunner extends EventEmitter<SessionRunnerEvents> {
  private specValue: SessionSpec;
  private password: string | undefined;
  private readonly machine: SessionMachine;
  private readonly options: SessionRunnerOptions;
  private readonly dial: (context: DialContext) => Promise<LiveLink>;
  private readonly slots = new Map<number, LinkSlot>();
  private readonly timers = new Map<number, NodeJS.Timeout>();
  private readonly closings = new Set<Promise<void>>();
  private card: SessionCard | undefined;
  private cardOpening: Promise<SessionCard> | undefined;
  private trace: TraceRecorder | undefined;
  private vm = { readerAdded: false, cardInserted: false };
  private vmAtr: string | undefined;
  private proxy: ProxyInfo | undefined;
  private proxyLinked = false;
  readonly counters: ApduCounters = { answered: 0, failed: 0, cardMs: 0 };
  private countersTimer: NodeJS.Timeout | undefined;
  private countersDirty = false;
  private closed = false;
  /** A .vv file that deleted itself on the first read (delete-this-file) is read once; later dials reuse it. */
  private keptConnection: ConnectionSpec | undefined;
  private loggedPhase: SessionPhase = 'stopped';
  private loggedProblem: string | undefined;

  constructor(options: SessionRunnerOptions) {
    super();
    this.options = options;
    this.specValue = options.spec;
    this.password = options.password;
    this.dial = options.dial ?? dialLink;
    const reconnect = options.spec.reconnect ?? {};
    this.machine = new SessionMachine({
      mode: options.spec.mode,
      backoff: new Backoff({
        ...(reconnect.initialMs !== undefined ? { initialMs: reconnect.initialMs } : {}),
        ...(reconnect.maxMs !== undefined ? { maxMs: reconnect.maxMs } : {}),
        ...(options.now !== undefined ? { now: options.now } : {}),
        ...(options.random !== undefined ? { random: options.random } : {}),
      }),
      havePassword: options.password !== undefined || options.spec.passwordFile !== undefined,
      ...(options.now !== undefined ? { now: options.now } : {}),
    });
  }

  get name(): string {
    return this.specValue.name;
  }

  get spec(): SessionSpec {
    return this.specValue;
  }

  status(): SessionStatus {
    const spec = this.specValue;
    const m = this.machine;
    const card = this.card;
    return {
      name: spec.name,
      mode: spec.mode,
      target: this.options.displayTarget ?? spec.target,
      phase: m.phase,
      since: m.since,
      ...(m.problem !== undefined ? { problem: { ...m.problem } } : {}),
      ...(m.retry !== undefined ? { retry: { ...m.retry } } : {}),
      card: {
        source: spec.card,
        name: card?.name ?? describeSource(spec.card),
        present: card?.present ?? false,
        ...(this.vmAtr !== undefined && this.vm.cardInserted ? { atr: this.vmAtr } : {}),
      },
      vm: { ...this.vm },
      counters: { ...this.counters },
      ...(this.proxy !== undefined ? { proxy: { listen: this.proxy.listen, uri: this.proxy.uri, viewers: this.proxy.viewers(), linked: this.proxyLinked } } : {}),
      reconnects: m.reconnects,
      tracing: this.trace !== undefined,
      // Every status carries the spec, so a client (the desktop app after a bridge crash) can re-add it.
      spec,
    };
  }

  start(): SessionStatus {
    this.send({ kind: 'start' });
    return this.status();
  }

  /** Stops at once (a wait or a dial is abandoned); resolves when the link is closed, bounded in time. */
  async stop(): Promise<SessionStatus> {
    this.send({ kind: 'stop' });
    await this.settle();
    this.closeTrace();
    return this.status();
  }

  setPassword(password: string): SessionStatus {
    this.password = password;
    this.send({ kind: 'password' });
    return this.status();
  }

  /** Forwards another card source from now on; a running session links again with it. */
  async setCard(source: CardSourceSpec): Promise<SessionStatus> {
    const old = this.card;
    const opening = this.cardOpening;
    this.specValue = { ...this.specValue, card: source };
    this.card = undefined;
    this.cardOpening = undefined;
    this.send({ kind: 'relink' });
    await this.settle();
    await (old ?? (await opening?.catch(() => undefined)))?.close();
    this.changed();
    return this.status();
  }

  /** Takes a soft card out or puts it back (opening the source if the session never ran); false when it has no such control. */
  async setPresent(present: boolean): Promise<boolean> {
    const card = await this.openCard();
    const done = card.setPresent(present);
    if (done) this.changed();
    return done;
  }

  /** Stops and releases the card source. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.stop();
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    if (this.countersTimer !== undefined) clearTimeout(this.countersTimer);
    const card = this.card ?? (await this.cardOpening?.catch(() => undefined));
    await card?.close();
    this.removeAllListeners();
  }

  /** Waits for links being closed, within the stop bound. */
  private async settle(): Promise<void> {
    if (this.closings.size === 0) return;
    const bound = this.options.stopBoundMs ?? DEFAULT_STOP_BOUND_MS;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.closings]), new Promise<void>((r) => (timer = setTimeout(r, bound)))]);
    clearTimeout(timer);
  }

  private send(event: MachineEvent): void {
    if (this.closed) return;
    let actions: MachineAction[];
    try {
      actions = this.machine.handle(event);
    } catch (e) {
      this.options.log('error', `internal error in the session state machine: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    for (const action of actions) {
      try {
        this.run(action);
      } catch (e) {
        this.options.log('error', `internal error (${action.kind}): ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  private run(action: MachineAction): void {
    switch (action.kind) {
      case 'changed':
        this.changed();
        return;
      case 'dial':
        void this.runDial(action.dial);
        return;
      case 'abort-dial': {
        const slot = this.slots.get(action.dial);
        slot?.abort.abort(new Error('stopped'));
        // A dial that still yields a link is closed when it arrives (the machine answers 'linked' with close-link).
        return;
      }
      case 'close-link':
        this.closeLink(action.dial, action.graceful);
        return;
      case 'arm-timer': {
        const timer = setTimeout(() => {
          this.timers.delete(action.timer);
          this.send({ kind: 'retry-due', timer: action.timer });
        }, action.ms);
        this.timers.set(action.timer, timer);
        return;
      }
      case 'cancel-timer':
        clearTimeout(this.timers.get(action.timer));
        this.timers.delete(action.timer);
        return;
    }
  }

  private async runDial(dial: number): Promise<void> {
    const abort = new AbortController();
    let card: SessionCard;
    try {
      card = await this.openCard();
    } catch (e) {
      this.send({ kind: 'dial-failed', dial, error: e });
      return;
    }
    // A link still being closed (a relink, a quick stop and start) goes first: one VM, one client.
    await this.settle();
    if (this.machine.currentDial !== dial) return;
    const view = card.view();
    const slot: LinkSlot = { view, abort };
    this.slots.set(dial, slot);
    if (this.specValue.mode !== 'proxy') this.options.log('debug', `dialling ${this.specValue.target}`);
    try {
      const link = await this.dial({
        spec: this.specValue,
        password: this.password,
        card: view,
        signal: abort.signal,
        connection: () => this.resolveConnection(),
        observer: {
          forwarder: (f) => this.guard(dial, () => this.follow(dial, f)),
          idle: (error) =>
            this.guard(dial, () => {
              this.proxyLinked = false;
              this.resetVm();
              if (error !== undefined) this.options.log('warn', `the card left the viewer's session: ${error.message}`);
              this.send({ kind: 'idle', dial });
            }),
          down: (error) => this.guard(dial, () => this.send({ kind: 'down', dial, error })),
          note: (level, text) => this.options.log(level, text),
        },
      });
      if (this.closed) {
        // Closed while dialling: send() is dead now, so no 'linked' event could ever close this link,
        // and it would hold the VM's reader (or a proxy's port) with no session behind it.
        this.slots.delete(dial);
        void link
          .stop()
          .catch(() => undefined)
          .finally(() => view.retire());
        return;
      }
      if (this.slots.get(dial) !== slot) {
        // The link went down before the dial returned, and the session has moved on.
        void link.drop().catch(() => undefined);
        return;
      }
      slot.link = link;
      if (link.proxy !== undefined) this.proxy = link.proxy;
      this.send({ kind: 'linked', dial });
    } catch (e) {
      if (this.slots.get(dial) === slot) this.slots.delete(dial);
      view.retire();
      this.send({ kind: 'dial-failed', dial, error: e });
    }
  }

  private async resolveConnection(): Promise<ConnectionSpec> {
    const kept = this.keptConnection;
    if (kept !== undefined) {
      const copy = { ...kept };
      if (this.password !== undefined) {
        copy.password = this.password;
        copy.passwordSource = 'prompt';
      }
      return copy;
    }
    const connection = await sessionConnection(this.specValue, this.password);
    if (connection.vvDeleted) this.keptConnection = connection;
    // A password from the .vv file counts as given: a refusal then means it is wrong or expired.
    if (connection.passwordSource !== 'none') this.machine.havePassword = true;
    return connection;
  }

  /** Runs a link callback; a throw in it becomes this link's failure. */
  private guard(dial: number, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      // A config error is the session's problem, reported with its phase; anything else is a bug.
      if (!(e instanceof SessionConfigError)) this.options.log('error', `internal error: ${e instanceof Error ? e.message : String(e)}`);
      this.send({ kind: 'down', dial, error: e });
    }
  }

  private async openCard(): Promise<SessionCard> {
    if (this.card !== undefined) return this.card;
    if (this.cardOpening === undefined) {
      const source = this.specValue.card;
      const opening = this.options.openCard(source).then(
        (raw) => {
          const card = new SessionCard(raw);
          raw.on('inserted', () => this.changed());
          raw.on('removed', () => this.changed());
          if (this.cardOpening === opening) this.card = card;
          return card;
        },
        (e: unknown) => {
          if (this.cardOpening === opening) this.cardOpening = undefined;
          throw e instanceof Error && !(e instanceof TypeError) ? new SessionCardError(e.message) : e;
        },
      );
      this.cardOpening = opening;
    }
    return this.cardOpening;
  }

  private follow(dial: number, forwarder: CardForwarder): void {
    const current = (): boolean => this.machine.currentDial === dial;
    if (this.specValue.trace !== undefined) {
      const path = this.specValue.trace;
      try {
        this.trace ??= new TraceRecorder({ path, tool: toolVersion(), target: this.specValue.target, card: this.card?.name ?? describeSource(this.specValue.card), secrets: this.specValue.traceSecrets === true });
      } catch (e) {
        // The session's own setting: retrying cannot make the file writable (guard() fails the link with it).
        throw new SessionConfigError(`Cannot write the trace file ${path} (${(e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e))}): fix trace or remove it.`);
      }
      const trace = this.trace;
      forwarder.on('vsc', (dir, message) => {
        if (this.trace !== trace) return;
        try {
          trace.record(dir, message);
        } catch (e) {
          // A full disk stops the trace, never the card: a throw here would reach the forwarder.
          this.options.log('warn', `tracing stopped: cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e))})`);
          this.closeTrace();
          this.changed();
        }
      });
    }
    forwarder.on('reader-added', () => {
      if (!current()) return;
      this.vm.readerAdded = true;
      if (this.specValue.mode === 'proxy') this.proxyLinked = true;
      this.send({ kind: 'up', dial });
      this.changed();
    });
    forwarder.on('card-inserted', (atr) => {
      if (!current()) return;
      this.vm.cardInserted = true;
      this.vmAtr = Buffer.from(atr).toString('hex').toUpperCase();
      this.changed();
    });
    forwarder.on('card-removed', () => {
      if (!current()) return;
      this.vm.cardInserted = false;
      this.changed();
    });
    forwarder.on('reader-removed', () => {
      if (!current()) return;
      this.resetVm();
      this.changed();
    });
    // Counted whichever link the command came on: the bridge received it and the card answered or failed it.
    forwarder.on('apdu', (info) => {
      if (info.failed) this.counters.failed += 1;
      else this.counters.answered += 1;
      this.counters.cardMs += info.ms;
      if (info.sw !== undefined) this.counters.lastSw = info.sw;
      this.countersChanged();
    });
    forwarder.on('warning', (code, text) => this.options.log('debug', `${code}: ${text}`));
    forwarder.on('problem', (code, text, fatal) => this.options.log(fatal ? 'error' : 'warn', `${code}: ${text}`));
  }

  private closeLink(dial: number, graceful: boolean): void {
    const slot = this.slots.get(dial);
    if (dial === this.machine.currentDial || this.machine.currentDial === undefined) {
      this.resetVm();
      this.proxyLinked = false;
    }
    if (slot === undefined) return;
    this.slots.delete(dial);
    const link = slot.link;
    if (link === undefined) {
      slot.view.retire();
      return;
    }
    if (link.proxy !== undefined && this.proxy === link.proxy) this.proxy = undefined;
    const closing = (graceful ? link.stop() : link.drop())
      .catch((e: unknown) => this.options.log('debug', `closing the link: ${e instanceof Error ? e.message : String(e)}`))
      .finally(() => {
        slot.view.retire();
        this.closings.delete(closing);
      });
    this.closings.add(closing);
  }

  private resetVm(): void {
    this.vm = { readerAdded: false, cardInserted: false };
    this.vmAtr = undefined;
  }

  private changed(): void {
    if (this.closed) return;
    const status = this.status();
    if (status.phase !== this.loggedPhase) {
      const previous = this.loggedPhase;
      this.loggedPhase = status.phase;
      this.logPhase(status, previous);
    }
    this.safeEmit('status', status);
  }

  /** One line per phase change; a retry that fails the same way as the last one is only a debug line. */
  private logPhase(status: SessionStatus, previous: SessionPhase): void {
    const problem = status.problem;
    const key = problem !== undefined ? `${problem.code}\n${problem.message}` : undefined;
    switch (status.phase) {
      case 'waiting': {
        const inSeconds = Math.max(0, Math.round(((status.retry?.at ?? Date.now()) - Date.now()) / 100) / 10);
        if (key !== undefined && key === this.loggedProblem) {
          this.options.log('debug', `still down (${problem?.code ?? 'unknown'}); retry ${status.retry?.attempt ?? '?'} in ${inSeconds} s`);
        } else {
          this.options.log('warn', `down (${problem?.code ?? 'unknown'}): ${problem?.message ?? 'no reason given'} Retrying in ${inSeconds} s.`);
        }
        this.loggedProblem = key;
        return;
      }
      case 'failed':
      case 'needs-password':
        this.loggedProblem = key;
        this.options.log('error', `${status.phase} (${problem?.code ?? 'unknown'}): ${problem?.message ?? 'no reason given'}`);
        return;
      case 'connecting':
        this.options.log(previous === 'waiting' ? 'debug' : 'info', previous === 'waiting' ? `reconnecting (attempt ${status.reconnects})` : 'connecting');
        return;
      default:
        this.loggedProblem = undefined;
        this.options.log('info', status.phase);
    }
  }

  /** A listener that throws must not break the link whose event it was told about. */
  private safeEmit(event: 'status', value: SessionStatus): void;
  private safeEmit(event: 'counters', value: ApduCounters): void;
  private safeEmit(event: 'status' | 'counters', value: SessionStatus | ApduCounters): void {
    try {
      if (event === 'status') this.emit('status', value as SessionStatus);
      else this.emit('counters', value as ApduCounters);
    } catch (e) {
      this.options.log('error', `internal error in a ${event} listener: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private countersChanged(): void {
    if (this.countersTimer !== undefined) {
      this.countersDirty = true;
      return;
    }
    this.safeEmit('counters', { ...this.counters });
    const tick = (): void => {
      if (this.countersDirty && !this.closed) {
        this.countersDirty = false;
        this.safeEmit('counters', { ...this.counters });
        this.countersTimer = setTimeout(tick, CONTROL_LIMITS.countersIntervalMs);
      } else {
        this.countersTimer = undefined;
      }
    };
    this.countersTimer = setTimeout(tick, CONTROL_LIMITS.countersIntervalMs);
  }

  private closeTrace(): void {
    const trace = this.trace;
    this.trace = undefined;
    try {
      trace?.close();
    } catch {
      // The descriptor is released either way.
    }
  }
}

export function describeSource(source: CardSourceSpec): string {
  switch (source.kind) {
    case 'demo':
      return 'demo card';
    case 'soft':
      return `soft card ${source.path}`;
    case 'reader':
      return `reader ${source.reader}`;
    case 'replay':
      return `replay of ${source.path}`;
    case 'none':
      return 'no card';
  }
}
