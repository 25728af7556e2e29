// The serve bridge: any number of sessions, each run by its own SessionRunner, changed at run time
// through the control API (ControlService). It also watches PC/SC readers, keeps the last log lines
// and serves the soft-card requests. A session that throws is that session's problem: every call
// into a runner is contained, and the others go on.
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  BridgeSnapshot,
  CardSourceSpec,
  LogLevel,
  LogLine,
  PcscStatus,
  ReaderInfo,
  RequestParams,
  RequestResult,
  RequestType,
  SessionSpec,
  SessionStatus,
} from '../control/schema.js';
import { CONTROL_API_VERSION, CONTROL_LIMITS } from '../control/schema.js';
import { ControlError, type ControlEvent, type ControlService } from '../control/service.js';
import type { Card } from '../../vsc/card.js';
import { TypedEmitter } from '../../vsc/card.js';
import { createPcscSource, openReaderCard, readerPattern, type PcscSource } from '../../vsc/pcsc/index.js';
import { loadSoftCard } from '../../vsc/soft-card/card-source.js';
import { ReplayCard } from '../trace/replay-card.js';
import type { ServeLog } from './serve-log.js';
import { validateSessionSpec } from './session-spec.js';
import { SessionRunner } from './session-runner.js';
import { checkRegularFile, defaultCardDirectory, MAX_CARD_FILE_BYTES, SoftCardService } from './softcards.js';

export interface ServeBridgeOptions {
  log: ServeLog;
  version: string;
  /** Where relative soft-card paths live (default $XDG_DATA_HOME/spice-smartcard/cards). */
  cardDirectory?: string;
  /** The PC/SC source to watch and share with reader sessions; false for none (default: the system's pcscd). */
  pcsc?: PcscSource | false;
  /** Bound on close() (every session stopped: card and reader removed from its VM). */
  closeBoundMs?: number;
}

const DEFAULT_CLOSE_BOUND_MS = 20_000;
/** A replayed trace is read whole into memory: bounded so that a wrong path cannot exhaust it. */
const MAX_TRACE_FILE_BYTES = 256 * 1024 * 1024;

/** A card source that never has a card: `card: { kind: 'none' }` adds the reader only. */
function emptyCard(): Card {
  const events = new TypedEmitter<{ inserted: [Uint8Array]; removed: [] }>();
  return {
    name: 'spice-smartcard reader',
    atr: () => undefined,
    transmit: () => Promise.reject(new Error('no card')),
    on: (e, l) => events.on(e, l),
    off: (e, l) => events.off(e, l),
  };
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex').toUpperCase();

export class ServeBridge implements ControlService {
  private readonly sessions = new Map<string, SessionRunner>();
  private readonly listeners = new Set<(event: ControlEvent) => void>();
  private readonly lines: LogLine[] = [];
  private readonly options: ServeBridgeOptions;
  private readonly startedAt = Date.now();
  private readonly softcards: SoftCardService;
  private readonly pcsc: PcscSource | undefined;
  private readonly ownsPcsc: boolean;
  /** Temp dirs holding .vv contents given in session.add, removed with their session. */
  private readonly vvDirs = new Map<string, string>();
  private closing: Promise<void> | undefined;

  constructor(options: ServeBridgeOptions) {
    this.options = options;
    this.softcards = new SoftCardService(options.cardDirectory ?? defaultCardDirectory(), (text) => this.log('warn', text));
    if (options.pcsc === false) {
      this.pcsc = undefined;
      this.ownsPcsc = false;
    } else {
      this.ownsPcsc = options.pcsc === undefined;
      this.pcsc = options.pcsc ?? createPcscSource();
      this.watchReaders(this.pcsc);
    }
  }

  get cardDirectory(): string {
    return this.softcards.directory;
  }

  // -------------------------------------------------------------------------------------------
  // ControlService

  subscribe(listener: (event: ControlEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async request<T extends RequestType>(type: T, params: RequestParams<T>): Promise<RequestResult<T>> {
    if (this.closing !== undefined) throw new ControlError('conflict', 'The bridge is shutting down.');
    try {
      return (await this.dispatch(type, params as never)) as RequestResult<T>;
    } catch (e) {
      if (e instanceof ControlError) throw e;
      // Messages of this code base never hold a secret; the error's own text says what failed.
      throw new ControlError('failed', e instanceof Error ? e.message : String(e));
    }
  }

  private async dispatch(type: RequestType, params: never): Promise<unknown> {
    switch (type) {
      case 'status.get':
        return this.snapshot();
      case 'session.add': {
        const p = params as RequestParams<'session.add'>;
        return this.add(p.spec, p.password, p.vv);
      }
      case 'session.remove': {
        const p = params as RequestParams<'session.remove'>;
        await this.remove(p.name);
        return {};
      }
      case 'session.start':
        return this.runner((params as RequestParams<'session.start'>).name).start();
      case 'session.stop':
        return this.runner((params as RequestParams<'session.stop'>).name).stop();
      case 'session.password': {
        const p = params as RequestParams<'session.password'>;
        if (typeof p.password !== 'string' || p.password === '') throw new ControlError('invalid-params', 'The password is empty.', 'password');
        const runner = this.runner(p.name);
        this.redact(p.password);
        return runner.setPassword(p.password);
      }
      case 'session.card':
        return this.changeCard(params as RequestParams<'session.card'>);
      case 'session.insert':
        return this.insert(params as RequestParams<'session.insert'>);
      case 'readers.list':
        return { readers: this.readers(), pcsc: this.pcscStatus() };
      case 'softcard.show':
        return this.softcards.show(params as RequestParams<'softcard.show'>);
      case 'softcard.create':
        return this.softcards.create(params as RequestParams<'softcard.create'>);
      case 'softcard.import':
        return this.softcards.import(params as RequestParams<'softcard.import'>);
      case 'log.tail': {
        const n = (params as RequestParams<'log.tail'>).lines ?? CONTROL_LIMITS.logLinesKept;
        const count = Math.max(0, Math.min(CONTROL_LIMITS.logLinesKept, Math.floor(Number.isFinite(n) ? n : 0)));
        return { lines: count === 0 ? [] : this.lines.slice(-count) };
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Sessions

  /** Adds a session (and starts it unless autostart is false). The password stays in memory only. */
  addSession(spec: SessionSpec, secrets: { password?: string } = {}): Promise<SessionStatus> {
    return this.add(spec, secrets.password, undefined);
  }

  snapshot(): BridgeSnapshot {
    return {
      apiVersion: CONTROL_API_VERSION,
      bridge: { version: this.options.version, pid: process.pid, startedAt: this.startedAt },
      sessions: [...this.sessions.values()].map((r) => r.status()),
      readers: this.readers(),
      pcsc: this.pcscStatus(),
    };
  }

  /** Stops every session (card and reader removed from each VM), bounded in time, and lets go of PC/SC. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const runners = [...this.sessions.values()];
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((r) => (timer = setTimeout(r, this.options.closeBoundMs ?? DEFAULT_CLOSE_BOUND_MS)));
      await Promise.race([Promise.all(runners.map((r) => r.close().catch(() => undefined))), bound]);
      clearTimeout(timer);
      this.sessions.clear();
      for (const dir of this.vvDirs.values()) await rm(dir, { recursive: true, force: true });
      this.vvDirs.clear();
      if (this.ownsPcsc) this.pcsc?.close();
    })();
    return this.closing;
  }

  private async add(given: unknown, password: string | undefined, vv: string | undefined): Promise<SessionStatus> {
    const checked = validateSessionSpec(given, 'spec');
    if (!checked.ok) {
      const [first, ...rest] = checked.errors;
      // A few paths say enough; all of them could outgrow the largest message a client accepts.
      const shown = rest.slice(0, 10).map((e) => e.path);
      const more = rest.length > 0 ? ` (and ${rest.length} more: ${shown.join(', ')}${rest.length > shown.length ? ', …' : ''})` : '';
      throw new ControlError('invalid-params', `${first?.path ?? 'spec'}: ${first?.message ?? 'is not a session'}${more}`, first?.path ?? 'spec');
    }
    const spec = checked.spec;
    if (this.sessions.has(spec.name)) throw new ControlError('invalid-params', `A session named "${spec.name}" exists already; choose another name or remove it first.`, 'spec.name');
    if (password !== undefined && (typeof password !== 'string' || password === '')) throw new ControlError('invalid-params', 'The password is empty.', 'password');
    if (password !== undefined) this.redact(password);
    if (spec.card.kind === 'soft') this.softcards.resolve(spec.card.path, 'spec.card.path');
    let runSpec = spec;
    let vvDir: string | undefined;
    if (vv !== undefined) {
      if (spec.mode === 'passthru') throw new ControlError('invalid-params', 'A passthru session talks to a QEMU socket; a .vv file does not apply.', 'vv');
      // The .vv content may hold a password: a private file, removed with the session.
      const dir = await mkdtemp(join(tmpdir(), 'spice-smartcard-vv-'));
      const file = join(dir, 'session.vv');
      await writeFile(file, vv, { mode: 0o600 });
      vvDir = dir;
      runSpec = { ...spec, target: file };
    }
    // close() may have begun while the .vv file was written: it took its list of sessions already, so
    // a session added now would dial on (and keep its .vv copy, password and all) after the bridge closed.
    if (this.closing !== undefined) {
      if (vvDir !== undefined) await rm(vvDir, { recursive: true, force: true });
      throw new ControlError('conflict', 'The bridge is shutting down.');
    }
    // Another add of the same name may have finished while the .vv file was written.
    if (this.sessions.has(spec.name)) {
      if (vvDir !== undefined) await rm(vvDir, { recursive: true, force: true });
      throw new ControlError('invalid-params', `A session named "${spec.name}" exists already; choose another name or remove it first.`, 'spec.name');
    }
    const runner = new SessionRunner({
      spec: runSpec,
      ...(password !== undefined ? { password } : {}),
      openCard: (source) => this.openCard(source, spec.name),
      ...(vv !== undefined ? { displayTarget: spec.target } : {}),
      log: (level, message) => this.log(level, message, spec.name),
    });
    runner.on('status', (status) => this.emit({ type: 'session', data: { status } }));
    runner.on('counters', (counters) => this.emit({ type: 'counters', data: { name: spec.name, counters } }));
    this.sessions.set(spec.name, runner);
    if (vvDir !== undefined) this.vvDirs.set(spec.name, vvDir);
    this.log('info', `session added (${spec.mode} ${spec.target})`, spec.name);
    if (spec.autostart !== false) runner.start();
    const status: SessionStatus = runner.status();
    this.emit({ type: 'session', data: { status } });
    return status;
  }

  private async remove(name: string): Promise<void> {
    const runner = this.runner(name);
    this.sessions.delete(name);
    await runner.close().catch((e: unknown) => this.log('error', `closing failed: ${e instanceof Error ? e.message : String(e)}`, name));
    const dir = this.vvDirs.get(name);
    if (dir !== undefined) {
      this.vvDirs.delete(name);
      await rm(dir, { recursive: true, force: true });
    }
    this.log('info', 'session removed', name);
    this.emit({ type: 'session.removed', data: { name } });
  }

  private async changeCard(params: RequestParams<'session.card'>): Promise<SessionStatus> {
    const runner = this.runner(params.name);
    const checked = validateSessionSpec({ ...runner.spec, card: params.card }, '');
    if (!checked.ok) {
      const issue = checked.errors[0];
      throw new ControlError('invalid-params', `${issue?.path ?? 'card'}: ${issue?.message ?? 'is not a card source'}`, issue?.path ?? 'card');
    }
    if (params.card.kind === 'soft') this.softcards.resolve(params.card.path, 'card.path');
    this.log('info', `card source changed to ${params.card.kind}`, params.name);
    return runner.setCard(checked.spec.card);
  }

  private async insert(params: RequestParams<'session.insert'>): Promise<SessionStatus> {
    const runner = this.runner(params.name);
    const kind = runner.spec.card.kind;
    if (kind !== 'soft' && kind !== 'demo') throw new ControlError('conflict', `The session's card is a ${kind} source; only soft and demo cards can be taken out and put back from here.`);
    if (!(await runner.setPresent(params.present))) throw new ControlError('conflict', 'The card source cannot be taken out or put back.');
    return runner.status();
  }

  private runner(name: string): SessionRunner {
    const runner = typeof name === 'string' ? this.sessions.get(name) : undefined;
    if (runner === undefined) throw new ControlError('not-found', `No session named "${String(name)}"; status.get lists them.`, 'name');
    return runner;
  }

  private async openCard(source: CardSourceSpec, session: string): Promise<Card> {
    switch (source.kind) {
      case 'demo':
        return loadSoftCard({ demo: true });
      case 'soft': {
        const path = this.softcards.resolve(source.path, 'card.path');
        await checkRegularFile(path, MAX_CARD_FILE_BYTES, 'a soft card file');
        return loadSoftCard({ softCardPath: path });
      }
      case 'reader': {
        const card = await openReaderCard(source.reader, this.pcsc !== undefined ? { source: this.pcsc } : {});
        card.on('notice', (n) => this.log(n.code === 'card-error' || n.code === 'card-unsupported' ? 'warn' : 'info', n.message, session));
        return card;
      }
      case 'replay':
        await checkRegularFile(source.path, MAX_TRACE_FILE_BYTES, 'a trace file');
        return ReplayCard.fromFile(source.path, (text) => this.log('warn', text, session));
      case 'none':
        return emptyCard();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Readers

  private watchReaders(source: PcscSource): void {
    const changed = (): void => this.emit({ type: 'readers', data: { readers: this.readers(), pcsc: this.pcscStatus() } });
    source.on('reader-added', changed);
    source.on('reader-removed', changed);
    source.on('card-inserted', changed);
    source.on('card-removed', changed);
    source.on('notice', (n) => {
      if (n.code === 'service-down' || n.code === 'service-up' || n.code === 'service-restarted' || n.code === 'pcsc-unavailable') {
        // Only a warning for those who need PC/SC: a bridge of soft cards runs fine without pcscd.
        const needed = [...this.sessions.values()].some((r) => r.spec.card.kind === 'reader');
        this.log(n.code === 'service-up' || !needed ? 'info' : 'warn', n.message);
        changed();
      }
    });
    source.start();
  }

  private readers(): ReaderInfo[] {
    if (this.pcsc === undefined) return [];
    const users = [...this.sessions.values()].flatMap((r) => {
      const card = r.spec.card;
      if (card.kind !== 'reader') return [];
      try {
        return [{ name: r.name, pattern: readerPattern(card.reader) }];
      } catch {
        return [];
      }
    });
    return this.pcsc.readers().map((info) => ({
      name: info.name,
      cardPresent: info.presence === 'present',
      ...(info.atr !== undefined ? { atr: hex(info.atr) } : {}),
      usedBy: users.filter((u) => u.pattern.matches(info.name)).map((u) => u.name),
    }));
  }

  private pcscStatus(): PcscStatus {
    const source = this.pcsc;
    if (source === undefined) return { available: false, problem: { code: 'pcsc', message: 'PC/SC is not used by this bridge; reader sessions are not available.' } };
    if (source.serviceAvailable) return { available: true };
    const message = source.outageNotice?.message ?? source.unavailableReason ?? 'The PC/SC service (pcscd) is not answering: start it (systemctl start pcscd.socket).';
    return { available: false, problem: { code: 'pcsc', message } };
  }

  // -------------------------------------------------------------------------------------------
  // Log and events

  /** Lines from serve itself (control address, reloads) join the bridge's own in log.tail and the log events. */
  record(level: LogLevel, message: string, session?: string): void {
    this.log(level, message, session);
  }

  private log(level: LogLevel, message: string, session?: string): void {
    // The same lines as the log writes: debug lines below its level would crowd the 500 kept out.
    if (!this.enabled(level)) return;
    // log.tail and log events are copies of the log: they get its redaction too, not the raw text.
    const line: LogLine = { time: Date.now(), level, message: this.scrub(message), ...(session !== undefined ? { session: this.scrub(session) } : {}) };
    this.lines.push(line);
    if (this.lines.length > CONTROL_LIMITS.logLinesKept) this.lines.splice(0, this.lines.length - CONTROL_LIMITS.logLinesKept);
    try {
      this.options.log.log(level, message, session);
    } catch {
      // A broken log sink must not take a session down.
    }
    this.emit({ type: 'log', data: { line } });
  }

  private enabled(level: LogLevel): boolean {
    try {
      return this.options.log.enabled?.(level) ?? true;
    } catch {
      return true;
    }
  }

  private scrub(text: string): string {
    try {
      return this.options.log.scrub?.(text) ?? text;
    } catch {
      return text;
    }
  }

  /** A password given through the API joins the secrets the log blanks out. */
  private redact(secret: string): void {
    try {
      this.options.log.redact?.(secret);
    } catch {
      // Redaction is the second line of defence; the first is never logging a secret.
    }
  }

  private emit(event: ControlEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // One client's listener failing is the control server's business, not the sessions'.
      }
    }
  }
}
