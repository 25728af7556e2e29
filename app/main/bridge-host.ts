// Runs the bridge in an Electron utility process, so a native crash in PC/SC takes down only that
// process: it is started again (with a notice), and the window is pointed at its new address. Each
// start asks for the control port the last one had, so that address changes only when another
// program took the port meanwhile.
import { EventEmitter } from 'node:events';
import { utilityProcess, type UtilityProcess } from 'electron';
import type { RequestParams, RequestResult, RequestType } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';
import { bridgeArgs, isPreferredPort, type BridgeArgs } from '../bridge/bridge-args.js';
import { isFromBridge, type FromBridge, type ToBridge } from '../shared/bridge-messages.js';

export interface BridgeEndpoint {
  url: string;
  token: string;
}

/** The port of the bridge's http://127.0.0.1:PORT/ address; undefined for anything else (nothing to ask for again). */
export function portOf(url: string): number | undefined {
  try {
    const parsed = new URL(url);
    const port = Number(parsed.port);
    return parsed.protocol === 'http:' && parsed.hostname === '127.0.0.1' && isPreferredPort(port) ? port : undefined;
  } catch {
    return undefined;
  }
}

export interface BridgeHostOptions {
  /** The compiled app/bridge/utility-entry.js. */
  entry: string;
  /** What the utility process is started with; the port comes from `preferredPort`. */
  args?: Omit<BridgeArgs, 'port'>;
  /** Wait before restart number `attempt` (1, 2, ...). Default: 1 s doubling up to 30 s. */
  restartDelayMs?: (attempt: number) => number;
  /** A process that ran this long without crashing resets the attempt count. Default 60 s. */
  stableAfterMs?: number;
  /** Bound for a clean stop before the process is killed. Default 10 s. */
  stopTimeoutMs?: number;
}

export interface BridgeHostEvents {
  ready: [BridgeEndpoint];
  event: [ControlEvent];
  /** Something the user should know: the bridge crashed and restarts, or cannot start. */
  notice: [string];
}

export class BridgeRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BridgeRequestError';
  }
}

interface Pending {
  resolve: (result: never) => void;
  reject: (error: Error) => void;
}

export function defaultRestartDelay(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

export class BridgeHost extends EventEmitter<BridgeHostEvents> {
  private child: UtilityProcess | undefined;
  private endpointNow: BridgeEndpoint | undefined;
  private stopping = false;
  private crashes = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /**
   * The control port the next start asks for: main sets the one it kept from the last run, and every
   * 'ready' replaces it with the port the bridge got (the same one, or a free one if it was taken).
   */
  preferredPort: number | undefined;

  constructor(private readonly options: BridgeHostOptions) {
    super();
  }

  get endpoint(): BridgeEndpoint | undefined {
    return this.endpointNow;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.stopping || this.child !== undefined) return;
    const args = bridgeArgs({ version: 'unknown', ...this.options.args, ...(this.preferredPort !== undefined ? { port: this.preferredPort } : {}) });
    const child = utilityProcess.fork(this.options.entry, args, { serviceName: 'spice-smartcard bridge', stdio: 'inherit' });
    this.child = child;
    this.startedAt = Date.now();
    child.on('message', (message: unknown) => this.onMessage(message));
    child.on('exit', (code: number) => this.onExit(child, code));
  }

  /** A control request carried out by the bridge (the same requests the page sends over the socket). */
  request<T extends RequestType>(type: T, params: RequestParams<T>): Promise<RequestResult<T>> {
    const child = this.child;
    if (child === undefined || this.endpointNow === undefined) {
      return Promise.reject(new BridgeRequestError('unavailable', 'The bridge is not running yet; try again in a moment.'));
    }
    const id = this.nextId++;
    return new Promise<RequestResult<T>>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (result: never) => void, reject });
      const message = { kind: 'request', id, type, params } as ToBridge;
      child.postMessage(message);
    });
  }

  /** Stops every session cleanly (bounded), then the process; no restart after this. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const stop: ToBridge = { kind: 'stop' };
    child.postMessage(stop);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.options.stopTimeoutMs ?? 10_000);
    });
    const outcome = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      child.kill();
      await exited;
    }
  }

  private onMessage(message: unknown): void {
    if (!isFromBridge(message)) return;
    const m: FromBridge = message;
    switch (m.kind) {
      case 'ready':
        this.preferredPort = portOf(m.url) ?? this.preferredPort;
        this.endpointNow = { url: m.url, token: m.token };
        this.emit('ready', this.endpointNow);
        return;
      case 'event':
        this.emit('event', m.event);
        return;
      case 'result':
      case 'error': {
        const pending = this.pending.get(m.id);
        if (pending === undefined) return;
        this.pending.delete(m.id);
        if (m.kind === 'result') pending.resolve(m.result as never);
        else pending.reject(new BridgeRequestError(m.error.code, m.error.message));
        return;
      }
      case 'fatal':
        this.emit('notice', `The bridge could not start: ${m.message}`);
        return;
    }
  }

  private onExit(child: UtilityProcess, code: number): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.endpointNow = undefined;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new BridgeRequestError('unavailable', 'The bridge stopped before it answered.'));
    }
    if (this.stopping) return;
    if (Date.now() - this.startedAt >= (this.options.stableAfterMs ?? 60_000)) this.crashes = 0;
    this.crashes++;
    const delay = (this.options.restartDelayMs ?? defaultRestartDelay)(this.crashes);
    this.emit(
      'notice',
      `The bridge process stopped unexpectedly (exit code ${code}); its sessions ended and their cards left the VMs. Restarting it in ${Math.round(delay / 1000)} s; its sessions are added again then (a password you typed is asked for again).`,
    );
    this.restartTimer = setTimeout(() => this.start(), delay);
  }
}
