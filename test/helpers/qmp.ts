import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface QmpEvent {
  event: string;
  data: unknown;
  timestamp: { seconds: number; microseconds: number } | undefined;
}

/** A command QEMU answered with `{"error": ...}`. */
export class QmpError extends Error {
  constructor(readonly errorClass: string, description: string, readonly command: string) {
    super(`QMP ${command} failed: ${errorClass}: ${description}`);
    this.name = 'QmpError';
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** QEMU Machine Protocol over a unix socket: newline-delimited JSON, answers matched to commands by id. */
export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly recorded: QmpEvent[] = [];
  private readonly eventWaiters = new Set<() => void>();
  private closedError: Error | undefined;
  private greeted: (() => void) | undefined;
  private greetingFailed: ((error: Error) => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (error) => this.onClose(error));
    socket.on('close', () => this.onClose(new Error('QMP connection closed')));
  }

  /** Connects (retrying while the socket does not exist yet) and negotiates capabilities. */
  static async connect(path: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<QmpClient> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    for (;;) {
      options.signal?.throwIfAborted();
      try {
        const socket = await openSocket(path);
        const client = new QmpClient(socket);
        await client.handshake(Math.max(1000, deadline - Date.now()));
        return client;
      } catch (error) {
        const code = isRecord(error) ? error['code'] : undefined;
        const retry = code === 'ENOENT' || code === 'ECONNREFUSED';
        if (!retry || Date.now() >= deadline) {
          throw new Error(`cannot open QMP socket ${path}: ${error instanceof Error ? error.message : String(error)}`);
        }
        await sleep(25);
      }
    }
  }

  /** Runs a command; resolves with its `return` value. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = `c${this.nextId++}`;
    const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Every event received since connecting, oldest first. */
  get events(): readonly QmpEvent[] {
    return this.recorded;
  }

  /** Resolves with the first event named `name` at index >= `fromIndex` of {@link events}. */
  async waitForEvent(name: string, options: { timeoutMs?: number; fromIndex?: number } = {}): Promise<QmpEvent> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const find = (): QmpEvent | undefined => this.recorded.slice(options.fromIndex ?? 0).find((event) => event.event === name);
    const found = find();
    if (found !== undefined) return found;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const event = find();
        if (event === undefined) return;
        finish();
        resolve(event);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no QMP event ${name} within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.eventWaiters.delete(check);
      };
      this.eventWaiters.add(check);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private async handshake(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.greeted = resolve;
        this.greetingFailed = reject;
        timer = setTimeout(() => reject(new Error(`no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
      });
      await this.execute('qmp_capabilities');
    } catch (error) {
      this.close();
      throw error;
    } finally {
      clearTimeout(timer);
      this.greeted = undefined;
      this.greetingFailed = undefined;
    }
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) !== -1) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line !== '') this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.onClose(new Error(`QMP sent something that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if (!isRecord(message)) return;
    if ('QMP' in message) {
      this.greeted?.();
      return;
    }
    if (typeof message['event'] === 'string') {
      const timestamp = message['timestamp'];
      this.recorded.push({
        event: message['event'],
        data: message['data'],
        timestamp: isRecord(timestamp) && typeof timestamp['seconds'] === 'number' && typeof timestamp['microseconds'] === 'number'
          ? { seconds: timestamp['seconds'], microseconds: timestamp['microseconds'] }
          : undefined,
      });
      for (const waiter of [...this.eventWaiters]) waiter();
      return;
    }
    const id = message['id'];
    const pending = typeof id === 'string' ? this.pending.get(id) : undefined;
    if (pending === undefined || typeof id !== 'string') return;
    this.pending.delete(id);
    const error = message['error'];
    if (isRecord(error)) {
      pending.reject(new QmpError(String(error['class']), String(error['desc']), pending.command));
    } else {
      pending.resolve(message['return']);
    }
  }

  private onClose(error: Error): void {
    this.closedError ??= error;
    this.greetingFailed?.(this.closedError);
    for (const pending of this.pending.values()) pending.reject(this.closedError);
    this.pending.clear();
    this.socket.destroy();
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
