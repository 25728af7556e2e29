/**
 * The tiny Linux VM: boots the image of guest-image.ts under QEMU with a real spice-server and
 * usb-ccid + ccid-card-passthru readers, then runs commands in the guest through the agent on its
 * second serial port (guest/agent.sh). The demo and the end-to-end tests use it.
 *
 *   const vm = await bootGuestVm({ smartcard: 'spicevmc' });
 *   // connect a client to 127.0.0.1:vm.spicePort; it sends VSC ReaderAdd + ATR ...
 *   await vm.waitFor('card_present', 20_000);
 *   const r = await vm.run('opensc-tool -a');
 *   await vm.shutdown();
 *
 * See test/e2e/README.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGuest, findQemu, QEMU_APT_LINE, type GuestImages } from './guest-image.js';
import {
  GuestCommandError,
  GuestTimeoutError,
  GuestVmError,
  type BootGuestOptions,
  type GuestEvent,
  type GuestRunOptions,
  type GuestRunResult,
  type GuestVm,
  type QmpEvent,
  type ShutdownResult,
} from './guest-vm-types.js';
import { connectUnix, LineSocket } from './line-socket.js';
import { planQemu, shellQuote, type QemuPlan } from './qemu-command.js';

let setprivChecked: boolean | null = null;
/** util-linux setpriv --pdeathsig: QEMU dies with the test process even when it is killed hard. */
function pdeathsigPrefix(): string[] {
  if (setprivChecked === null) {
    const r = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
    setprivChecked = r.status === 0 && r.stdout.includes('--pdeathsig');
  }
  return setprivChecked ? ['setpriv', '--pdeathsig', 'SIGKILL', '--'] : [];
}

const liveVms = new Set<QemuGuestVm>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const vm of liveVms) vm.killNow();
  });
}

// ---------------------------------------------------------------------------------------------
// The VM

interface PendingRun {
  id: string;
  resolve: (r: GuestRunResult) => void;
  reject: (e: Error) => void;
  started: number;
  timer: NodeJS.Timeout;
  out: string[];
  err: string[];
  section: 'none' | 'out' | 'err';
}

interface PendingQmp {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface ConsoleWaiter {
  pattern: RegExp;
  resolve: (line: string) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class QemuGuestVm implements GuestVm {
  readonly spicePort: number | null;
  readonly tlsPort: number | null;
  readonly spicePassword: string | null;
  readonly caCertFile: string | null;
  readonly socketPorts: readonly number[];
  readonly readerCount: number;
  readonly qemuArgs: readonly string[];
  readonly commandLine: string;
  readonly pid: number;
  readonly events: GuestEvent[] = [];
  readonly qmpEvents: QmpEvent[] = [];

  private consoleText = '';
  private consolePartial = '';
  private stderrText = '';
  private readonly spawnedAt = Date.now();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exitWaiters: Array<() => void> = [];
  private readonly consoleWaiters = new Set<ConsoleWaiter>();
  private readonly consoleLog: WriteStream;
  private agent: LineSocket | null = null;
  private qmpSock: LineSocket | null = null;
  private qmpReady: Promise<void> | null = null;
  private readonly qmpPending = new Map<string, PendingQmp>();
  private qmpCounter = 0;
  private pendingRun: PendingRun | null = null;
  private readonly pongWaiters = new Map<string, () => void>();
  private runQueue: Promise<unknown> = Promise.resolve();
  private counter = 0;
  private shutdownPromise: Promise<ShutdownResult> | null = null;

  constructor(
    private readonly child: ChildProcess,
    plan: QemuPlan,
    readonly runDir: string,
    private readonly opts: BootGuestOptions,
  ) {
    this.spicePort = plan.spicePort;
    this.tlsPort = plan.tlsPort;
    this.spicePassword = opts.spicePassword ?? null;
    this.caCertFile = plan.caCertFile;
    this.socketPorts = plan.socketPorts;
    this.readerCount = plan.readerCount;
    this.qemuArgs = plan.args;
    this.commandLine = plan.args.map(shellQuote).join(' ');
    this.pid = child.pid ?? -1;
    this.consoleLog = createWriteStream(join(runDir, 'console.log'));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => this.onConsoleData(d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderrText += d;
    });
    // 'close' (not 'exit'): stdout/stderr are fully read by then, so errors carry all of QEMU's stderr
    child.on('close', (code, signal) => {
      this.exitInfo = { code, signal };
      liveVms.delete(this);
      const err = new GuestVmError(`QEMU exited (${signal ?? `status ${code}`})${this.diagnostics()}`);
      this.failPending(err);
      for (const w of this.consoleWaiters) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      this.consoleWaiters.clear();
      for (const w of this.exitWaiters.splice(0)) w();
    });
  }

  get console(): string {
    return this.consoleText;
  }
  get qemuStderr(): string {
    return this.stderrText;
  }
  get exited(): boolean {
    return this.exitInfo !== null;
  }
  event(name: string): GuestEvent | undefined {
    return this.events.find((e) => e.name === name);
  }

  /** Console tail + QEMU stderr + command line, for error messages. */
  diagnostics(): string {
    const tail = this.consoleText.split('\n').slice(-40).join('\n');
    return (
      `\n--- console (last 40 lines) ---\n${tail}` +
      `\n--- qemu stderr ---\n${this.stderrText.trim() || '(empty)'}` +
      `\n--- qemu command ---\n${this.commandLine}\n--- run dir: ${this.runDir}`
    );
  }

  private onConsoleData(d: string): void {
    this.consoleLog.write(d);
    this.consolePartial += d;
    let nl: number;
    while ((nl = this.consolePartial.indexOf('\n')) >= 0) {
      const line = this.consolePartial.slice(0, nl).replace(/\r$/, '');
      this.consolePartial = this.consolePartial.slice(nl + 1);
      this.onConsoleLine(line);
    }
  }

  private onConsoleLine(line: string): void {
    this.consoleText += line + '\n';
    const m = /GUEST-EVENT: (\S+) uptime_ms=(\d+)\s*(.*)$/.exec(line);
    if (m) {
      const fields: Record<string, string> = {};
      for (const kv of (m[3] ?? '').matchAll(/(\w[\w.-]*)=(\S*)/g)) fields[kv[1] ?? ''] = kv[2] ?? '';
      this.events.push({ name: m[1] ?? '', uptimeMs: Number(m[2]), hostMs: Date.now() - this.spawnedAt, fields, line });
    }
    this.opts.onConsoleLine?.(line);
    for (const w of this.consoleWaiters) {
      if (w.pattern.test(line)) {
        clearTimeout(w.timer);
        this.consoleWaiters.delete(w);
        w.resolve(line);
      }
    }
  }

  waitForConsole(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const seen = this.consoleText.split('\n').find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.exited) return Promise.reject(new GuestVmError(`QEMU has exited${this.diagnostics()}`));
    return new Promise((res, rej) => {
      const w: ConsoleWaiter = {
        pattern,
        resolve: res,
        reject: rej,
        timer: setTimeout(() => {
          this.consoleWaiters.delete(w);
          rej(new GuestTimeoutError(`no console line matching ${pattern} within ${timeoutMs} ms${this.diagnostics()}`, null));
        }, timeoutMs),
      };
      this.consoleWaiters.add(w);
    });
  }

  private waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    return new Promise((res) => {
      const t = setTimeout(() => res(false), timeoutMs);
      this.exitWaiters.push(() => {
        clearTimeout(t);
        res(true);
      });
    });
  }

  killNow(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  // ----- agent -----

  async connectAgent(deadline: number): Promise<void> {
    const sock = await connectUnix(join(this.runDir, 'agent.sock'), deadline, () => !this.exited);
    this.agent = new LineSocket(sock, (l) => this.onAgentLine(l), () =>
      this.failPending(new GuestVmError(`agent connection closed${this.diagnostics()}`)),
    );
  }

  private failPending(err: Error): void {
    const p = this.pendingRun;
    if (p) {
      clearTimeout(p.timer);
      this.pendingRun = null;
      p.reject(err);
    }
    for (const q of this.qmpPending.values()) q.reject(err);
    this.qmpPending.clear();
  }

  private onAgentLine(line: string): void {
    const p = this.pendingRun;
    const words = line.split(' ');
    const [verb, id] = words;
    switch (verb) {
      case 'AGENT-BEGIN':
        if (p && id === p.id) p.section = 'out';
        return;
      case 'AGENT-STDERR':
        if (p && id === p.id) p.section = 'err';
        return;
      case 'AGENT-END': {
        if (!p || id !== p.id) return;
        const num = (k: string) => Number(/(\d+)/.exec(words.find((w) => w.startsWith(`${k}=`)) ?? '')?.[1] ?? NaN);
        const stdoutBytes = Buffer.from(p.out.join(''), 'base64');
        const stderrBytes = Buffer.from(p.err.join(''), 'base64');
        const result: GuestRunResult = {
          rc: num('rc'),
          stdout: stdoutBytes.toString('utf8'),
          stderr: stderrBytes.toString('utf8'),
          stdoutBytes,
          stderrBytes,
          ms: num('ms'),
          hostMs: Date.now() - p.started,
          timedOut: num('timeout') === 1,
        };
        clearTimeout(p.timer);
        this.pendingRun = null;
        p.resolve(result);
        return;
      }
      case 'AGENT-PONG':
      case 'AGENT-BYE': {
        const w = id === undefined ? undefined : this.pongWaiters.get(id);
        if (w && id !== undefined) {
          this.pongWaiters.delete(id);
          w();
        }
        return;
      }
      case 'AGENT-ERROR':
        if (p && id === p.id) {
          clearTimeout(p.timer);
          this.pendingRun = null;
          p.reject(new GuestVmError(`agent rejected the request: ${line}`));
        }
        return;
      default:
        if (p && p.section !== 'none' && /^[A-Za-z0-9+/=]+$/.test(line)) {
          (p.section === 'out' ? p.out : p.err).push(line);
        }
    }
  }

  /** PING until the agent answers (data sent before the guest opened ttyS1 is lost). */
  async pingAgent(deadline: number): Promise<void> {
    while (Date.now() < deadline && !this.exited) {
      const id = `p${++this.counter}`;
      const answered = await new Promise<boolean>((res) => {
        const t = setTimeout(() => {
          this.pongWaiters.delete(id);
          res(false);
        }, 1000);
        this.pongWaiters.set(id, () => {
          clearTimeout(t);
          res(true);
        });
        this.agent?.write(`PING ${id}`);
      });
      if (answered) return;
    }
    throw new GuestVmError(`the guest agent does not answer${this.diagnostics()}`);
  }

  run(cmd: string, options: GuestRunOptions = {}): Promise<GuestRunResult> {
    const next = this.runQueue.then(() => this.runNow(cmd, options));
    this.runQueue = next.catch(() => undefined);
    return next;
  }

  private runNow(cmd: string, options: GuestRunOptions): Promise<GuestRunResult> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (this.exited) return Promise.reject(new GuestVmError(`QEMU has exited${this.diagnostics()}`));
    if (!this.agent || this.agent.closed) return Promise.reject(new GuestVmError('the guest agent is not connected'));
    const id = `c${++this.counter}`;
    const b64 = Buffer.from(cmd, 'utf8').toString('base64');
    return new Promise<GuestRunResult>((res, rej) => {
      const pending: PendingRun = {
        id,
        resolve: res,
        reject: rej,
        started: Date.now(),
        out: [],
        err: [],
        section: 'none',
        // the guest kills the command at timeoutMs; the host gives the answer some slack to arrive
        timer: setTimeout(() => {
          if (this.pendingRun === pending) this.pendingRun = null;
          rej(new GuestTimeoutError(`guest agent gave no answer within ${timeoutMs + 10_000} ms to: ${cmd}${this.diagnostics()}`, null));
        }, timeoutMs + 10_000),
      };
      this.pendingRun = pending;
      const tmo = Math.max(0, Math.round(timeoutMs));
      // short commands inline; long ones length-prefixed (the guest then reads them in blocks)
      if (b64.length <= 2048) this.agent?.write(`RUN ${id} ${tmo} ${b64}`);
      else this.agent?.write(`RUNX ${id} ${tmo} ${b64.length}\n${b64}`);
    }).then((r) => {
      if (r.timedOut) {
        throw new GuestTimeoutError(
          `guest command timed out after ${timeoutMs} ms: ${cmd}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
          r,
        );
      }
      if (options.check && r.rc !== 0) {
        throw new GuestCommandError(`guest command failed (rc=${r.rc}): ${cmd}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`, r);
      }
      return r;
    });
  }

  async waitFor(predicateCmd: string, timeoutMs = 30_000, options: { intervalMs?: number } = {}): Promise<GuestRunResult> {
    const intervalUs = Math.max(10, options.intervalMs ?? 100) * 1000;
    const b64 = Buffer.from(predicateCmd, 'utf8').toString('base64');
    // polled inside the guest: one serial round trip instead of one per attempt
    const script = [
      `__p=$(printf %s '${b64}' | base64 -d)`,
      `__end=$(( $(uptime_ms) + ${Math.round(timeoutMs)} )); __n=0`,
      'while :; do',
      '  __n=$((__n + 1))',
      '  if ( eval "$__p" ) > /tmp/agent/wf.out 2> /tmp/agent/wf.err; then cat /tmp/agent/wf.out; cat /tmp/agent/wf.err >&2; exit 0; fi',
      `  if [ "$(uptime_ms)" -ge "$__end" ]; then cat /tmp/agent/wf.out; cat /tmp/agent/wf.err >&2; echo "waitFor: gave up after $__n attempts" >&2; exit 124; fi`,
      `  usleep ${intervalUs}`,
      'done',
    ].join('\n');
    const r = await this.run(script, { timeoutMs: timeoutMs + 5_000 });
    if (r.rc === 124 && r.stderr.includes('waitFor: gave up')) {
      throw new GuestTimeoutError(
        `waitFor(${predicateCmd}) still false after ${timeoutMs} ms\nlast stdout: ${r.stdout}\nlast stderr: ${r.stderr}`,
        r,
      );
    }
    if (r.rc !== 0) throw new GuestCommandError(`waitFor(${predicateCmd}) failed: rc=${r.rc} ${r.stderr}`, r);
    return r;
  }

  // ----- QMP -----

  connectQmp(deadline: number): Promise<void> {
    this.qmpReady ??= (async () => {
      const sock = await connectUnix(join(this.runDir, 'qmp.sock'), deadline, () => !this.exited);
      let greeted: (() => void) | null = null;
      const greeting = new Promise<void>((r) => (greeted = r));
      this.qmpSock = new LineSocket(
        sock,
        (line) => {
          let msg: unknown;
          try {
            msg = JSON.parse(line);
          } catch {
            return;
          }
          if (typeof msg !== 'object' || msg === null) return;
          const o = msg as Record<string, unknown>;
          if ('QMP' in o) {
            greeted?.();
            return;
          }
          if (typeof o.event === 'string') {
            this.qmpEvents.push(o as unknown as QmpEvent);
            return;
          }
          const id = typeof o.id === 'string' ? o.id : undefined;
          const p = id === undefined ? undefined : this.qmpPending.get(id);
          if (!p || id === undefined) return;
          this.qmpPending.delete(id);
          if ('error' in o) {
            const e = o.error as { class?: string; desc?: string };
            p.reject(new GuestVmError(`QMP error ${e.class ?? ''}: ${e.desc ?? JSON.stringify(o.error)}`));
          } else {
            p.resolve(o.return);
          }
        },
        () => {
          for (const q of this.qmpPending.values()) q.reject(new GuestVmError('QMP connection closed'));
          this.qmpPending.clear();
        },
      );
      await greeting;
      await this.qmpSend('qmp_capabilities');
    })();
    return this.qmpReady;
  }

  private qmpSend(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = `q${++this.qmpCounter}`;
    return new Promise((res, rej) => {
      if (!this.qmpSock || this.qmpSock.closed) {
        rej(new GuestVmError('QMP is not connected'));
        return;
      }
      this.qmpPending.set(id, { resolve: res, reject: rej });
      this.qmpSock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }));
    });
  }

  async qmp<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    await this.connectQmp(Date.now() + 10_000);
    return (await this.qmpSend(command, args)) as T;
  }

  // ----- shutdown -----

  shutdown(): Promise<ShutdownResult> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<ShutdownResult> {
    const t0 = Date.now();
    let how: ShutdownResult['how'] = 'already-exited';
    if (!this.exited) {
      // the agent's EXIT makes /init power off (the guest has no acpid: QMP system_powerdown would not)
      const agentIdle = this.agent !== null && !this.agent.closed && this.pendingRun === null;
      if (agentIdle) this.agent?.write(`EXIT x${++this.counter}`);
      how = 'poweroff';
      if (!(agentIdle && (await this.waitExit(5_000)))) {
        how = 'sigterm';
        this.child.kill('SIGTERM');
        if (!(await this.waitExit(3_000))) {
          how = 'sigkill';
          this.child.kill('SIGKILL');
          await this.waitExit(3_000);
        }
      }
    }
    this.agent?.destroy();
    this.qmpSock?.destroy();
    await new Promise<void>((r) => this.consoleLog.end(() => r()));
    const keep = this.opts.keepRunDir ?? process.env.SPICE_SMARTCARD_E2E_KEEP === '1';
    if (!keep) rmSync(this.runDir, { recursive: true, force: true });
    liveVms.delete(this);
    return { how, exitCode: this.exitInfo?.code ?? null, signal: this.exitInfo?.signal ?? null, ms: Date.now() - t0 };
  }
}

// ---------------------------------------------------------------------------------------------
// Boot

/**
 * Boots the guest and resolves once the agent answers (pcscd is then running and lists the
 * reader(s); no card is needed: the card comes when a client sends VSC ATR).
 */
export async function bootGuestVm(options: BootGuestOptions = {}): Promise<GuestVm> {
  const qemu = options.qemuBinary ?? findQemu();
  if (!qemu) throw new GuestVmError(`qemu-system-x86_64 not found; install it: ${QEMU_APT_LINE}`);
  const images =
    options.images ??
    (await buildGuest({
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    }));
  const portsGiven = options.spicePort !== undefined && (options.smartcard ?? 'spicevmc') === 'spicevmc';
  for (let attempt = 1; ; attempt++) {
    try {
      return await bootOnce(qemu, images, options);
    } catch (e) {
      // a free port taken by someone else between the probe and QEMU's bind: retry with new ports
      const portRace = e instanceof GuestVmError && /Address already in use|Failed to bind|Failed to setup spice/i.test(e.message);
      if (!portRace || portsGiven || attempt >= 3) throw e;
    }
  }
}

/** Rejects when the signal aborts (never settles without one); the boot's catch then shuts the VM down. */
function aborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (!signal) return;
    const fail = (): void => reject(new GuestVmError('the boot was cancelled'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

const RUN_DIR_PREFIX = 'spice-smartcard-vm-';

/** Removes run dirs left by test processes that were killed hard (older than 1 h, QEMU gone). */
function sweepStaleRunDirs(): void {
  try {
    const root = tmpdir();
    for (const name of readdirSync(root)) {
      if (!name.startsWith(RUN_DIR_PREFIX)) continue;
      const dir = join(root, name);
      if (Date.now() - statSync(dir).mtimeMs < 3600_000) continue;
      let alive = false;
      try {
        const pid = Number(readFileSync(join(dir, 'qemu.pid'), 'utf8').trim());
        if (pid > 0) {
          process.kill(pid, 0);
          alive = true;
        }
      } catch {
        alive = false;
      }
      if (!alive) rmSync(dir, { recursive: true, force: true });
    }
  } catch {
    // best effort
  }
}

async function bootOnce(qemu: string, images: Pick<GuestImages, 'kernel' | 'initrd'>, options: BootGuestOptions): Promise<GuestVm> {
  sweepStaleRunDirs();
  const runDir = mkdtempSync(join(tmpdir(), RUN_DIR_PREFIX));
  let vm: QemuGuestVm | null = null;
  try {
    const plan = await planQemu(qemu, options, images, runDir);
    await writeFile(join(runDir, 'cmdline.txt'), plan.args.map(shellQuote).join(' ') + '\n');
    const [bin, ...rest] = [...pdeathsigPrefix(), ...plan.args];
    if (bin === undefined) throw new Error('empty command');
    const child = spawn(bin, rest, { stdio: ['ignore', 'pipe', 'pipe'], cwd: runDir });
    const spawnError = new Promise<never>((_, rej) =>
      child.once('error', (err) => rej(new GuestVmError(`cannot start ${qemu}: ${err.message}`))),
    );
    spawnError.catch(() => undefined);
    vm = new QemuGuestVm(child, plan, runDir, options);
    liveVms.add(vm);
    installExitHook();
    const v = vm;
    const timeoutMs = options.bootTimeoutMs ?? 90_000;
    const deadline = Date.now() + timeoutMs;
    const ready = (async () => {
      await v.connectQmp(deadline);
      await v.connectAgent(deadline);
      await v.waitForConsole(/GUEST-EVENT: (agent-ready|agent-missing|agent-failed)/, Math.max(1, deadline - Date.now()));
      if (!v.event('agent-ready')) throw new GuestVmError(`the guest agent did not start${v.diagnostics()}`);
      await v.pingAgent(deadline);
    })();
    await Promise.race([ready, spawnError, aborted(options.signal)]);
    if (!vm.event('pcscd-ready') && (options.requireReaders ?? true)) {
      const log = await vm.run('tail -n 60 /tmp/pcscd.log; echo; opensc-tool -l', { timeoutMs: 10_000 }).catch(() => null);
      throw new GuestVmError(
        `pcscd in the guest does not list the ${vm.readerCount} reader(s)` +
          `\n--- guest pcscd log / opensc-tool -l ---\n${log?.stdout ?? '(unavailable)'}${vm.diagnostics()}`,
      );
    }
    return vm;
  } catch (e) {
    if (!vm) {
      rmSync(runDir, { recursive: true, force: true });
      throw e;
    }
    // Cancelled: nothing in the guest is worth a clean poweroff, and the user is waiting.
    if (options.signal?.aborted) vm.killNow();
    await vm.shutdown().catch(() => undefined);
    const message = e instanceof Error ? e.message : String(e);
    if (message.includes('--- qemu stderr ---')) throw e;
    throw new GuestVmError(`boot failed: ${message}${vm.diagnostics()}`);
  }
}
