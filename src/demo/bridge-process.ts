// The real `spice-smartcard connect`, run as a child process with --json-log, as a user would
// run it: the demo shows the product, not a test double of it.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** The compiled CLI next to this module (dist/src/cli/main.js). */
export const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface BridgeEventLine {
  event: string;
  [key: string]: unknown;
}

export class BridgeProcess {
  /** Its JSON events except APDUs, which are only counted. */
  readonly events: BridgeEventLine[] = [];
  /** APDUs the bridge forwarded so far. */
  apdus = 0;
  /** The command as a user would type it. */
  readonly commandLine: string;
  private readonly child: ChildProcessByStdio<null, Readable, Readable>;
  private stderrText = '';
  private rest = '';
  private readonly listeners = new Set<(e: BridgeEventLine) => void>();
  private exitCode: number | null | undefined;
  private readonly exitedPromise: Promise<number | null>;

  constructor(args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
    this.commandLine = `spice-smartcard ${args.join(' ')}`;
    const childEnv = { ...env };
    // The demo VM has no password; one meant for another VM must not travel to it.
    delete childEnv['SPICE_PASSWORD'];
    this.child = spawn(process.execPath, [CLI_MAIN, ...args, '--json-log'], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => this.onStdout(d));
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderrText += d));
    this.exitedPromise = new Promise((resolve) => {
      this.child.on('error', (e) => {
        this.stderrText += `${e.message}\n`;
        this.exitCode = null;
        resolve(null);
      });
      this.child.on('close', (code) => {
        this.exitCode = code;
        resolve(code);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get stderr(): string {
    return this.stderrText;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  exited(): Promise<number | null> {
    return this.exitedPromise;
  }

  /** Every event as it arrives (and not the ones before). */
  onEvent(listener: (e: BridgeEventLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The first event of that name (seen already or to come); rejects when the bridge exits first or time runs out. */
  waitForEvent(name: string, timeoutMs: number, signal?: AbortSignal): Promise<BridgeEventLine> {
    const seen = this.events.find((e) => e.event === name);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const finish = (error: Error | undefined, event?: BridgeEventLine): void => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else if (event) resolve(event);
      };
      const off = this.onEvent((e) => {
        if (e.event === name) finish(undefined, e);
      });
      const timer = setTimeout(() => finish(new Error(`no "${name}" from the bridge within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      const onAbort = (): void => finish(new Error('cancelled'));
      signal?.addEventListener('abort', onAbort, { once: true });
      void this.exitedPromise.then((code) => finish(new Error(`the bridge exited (status ${code ?? 'unknown'}) before "${name}": ${this.reason()}`)));
    });
  }

  /** Why the bridge failed, in its own words: its last error event, else its last stderr line. */
  reason(): string {
    const error = [...this.events].reverse().find((e) => e.event === 'error' && typeof e['message'] === 'string');
    if (error) return String(error['message']);
    return this.stderrText.trim().split('\n').at(-1) ?? '(no output)';
  }

  /** Ctrl-C, as a user would stop it; SIGKILL when it does not end within the bound. Resolves with its exit status. */
  async stop(timeoutMs = 10_000): Promise<number | null> {
    if (!this.running) return this.exitCode ?? null;
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.kill(), timeoutMs);
    const code = await this.exitedPromise;
    clearTimeout(timer);
    return code;
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }

  private onStdout(data: string): void {
    const lines = (this.rest + data).split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { event?: unknown }).event !== 'string') continue;
      const e = parsed as BridgeEventLine;
      // APDU events would only grow the list: the demo counts them instead.
      if (e.event === 'apdu') this.apdus += 1;
      else this.events.push(e);
      for (const listener of [...this.listeners]) listener(e);
    }
  }
}
