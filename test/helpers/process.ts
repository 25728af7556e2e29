import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Keeps the last part of a process's output for error messages; QEMU can be chatty. */
const OUTPUT_LIMIT = 64 * 1024;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  error?: Error;
}

export interface ManagedProcess {
  readonly pid: number | undefined;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (or failed to start). Never rejects. */
  readonly exited: Promise<ExitInfo>;
  /** Exit status once known. */
  exitInfo(): ExitInfo | undefined;
  /** The tail of stdout and stderr, interleaved as they arrived. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // If a test run dies without its afterAll, do not leave QEMU or tinyproxy behind (only our own children).
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

export function startProcess(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): ManagedProcess {
  installExitHook();
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let output = '';
  const append = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  let info: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.on('error', (error) => {
      // 'error' without a later 'exit' means the process never ran.
      if (child.pid === undefined) {
        info = { code: null, signal: null, error };
        live.delete(child);
        resolve(info);
      }
    });
    child.once('exit', (code, signal) => {
      info = { code, signal };
      live.delete(child);
      resolve(info);
    });
  });
  return {
    pid: child.pid,
    child,
    exited,
    exitInfo: () => info,
    output: () => output,
    async stop(graceMs = 5000) {
      if (info !== undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export function describeExit(info: ExitInfo): string {
  if (info.error !== undefined) return `could not start: ${info.error.message}`;
  if (info.signal !== null) return `killed by ${info.signal}`;
  return `exited with status ${String(info.code)}`;
}

/** Full path of an executable on PATH, or undefined. */
export function findExecutable(name: string, pathVariable: string = process.env['PATH'] ?? ''): string | undefined {
  for (const dir of pathVariable.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export interface BinaryCheck {
  missing: string[];
  /** True only when something is missing and CI is not set: in CI a missing binary must fail the run. */
  skip: boolean;
  reason: string;
}

export function checkBinaries(names: readonly string[], env: NodeJS.ProcessEnv = process.env): BinaryCheck {
  const missing = names.filter((name) => findExecutable(name, env['PATH'] ?? '') === undefined);
  const inCi = env['CI'] !== undefined && env['CI'] !== '';
  const reason = missing.length === 0
    ? ''
    : `${missing.join(', ')} not installed (Debian: apt-get install -y ${missing.map(debianPackage).join(' ')})`;
  return { missing, skip: missing.length > 0 && !inCi, reason };
}

function debianPackage(binary: string): string {
  return binary === 'qemu-system-x86_64' ? 'qemu-system-x86' : binary;
}
