// A long-running CLI command (connect, passthru) as a child process, with its JSON events.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { CLI_PATH } from './cli.js';

export interface JsonEvent {
  event: string;
  [key: string]: unknown;
}

export class CliProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly events: JsonEvent[] = [];
  stderr = '';
  private stdoutRest = '';
  readonly exited: Promise<number | null>;
  private readonly waiters: { match: (e: JsonEvent) => boolean; resolve: (e: JsonEvent) => void }[] = [];

  constructor(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [CLI_PATH, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => {
      const lines = (this.stdoutRest + d.toString()).split('\n');
      this.stdoutRest = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        const e = JSON.parse(line) as JsonEvent;
        this.events.push(e);
        for (const w of [...this.waiters]) {
          if (w.match(e)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(e);
          }
        }
      }
    });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  /** The next (or an already seen, after `from`) event of that name. */
  waitForEvent(name: string, timeoutMs = 30_000, from = 0): Promise<JsonEvent> {
    const seen = this.events.slice(from).find((e) => e.event === name);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${name}" event in ${timeoutMs} ms; events: ${JSON.stringify(this.events)}; stderr: ${this.stderr}`)), timeoutMs);
      this.waiters.push({
        match: (e) => e.event === name,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** SIGINT, then the exit code; SIGKILL if it does not exit in time. */
  async stop(timeoutMs = 20_000): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
