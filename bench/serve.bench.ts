// What `serve` costs: the memory of a ServeBridge holding 1, 10 and 100 connect sessions of demo
// cards to QEMU VMs without guests (paused, -S), and the APDU turnaround of passthru sessions under
// load (every session fed commands back to back by a socket playing QEMU's ccid-card-passthru).
// The bridge runs in a child process of its own, so the numbers are its own and not the harness's.
// Printed only; nothing is asserted.
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freemem } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { SessionSpec } from '../src/control/schema.js';
import { ServeBridge } from '../src/serve/bridge.js';
import { encodeVscMessage, VscStreamParser, type VscMessage } from '../vsc/codec.js';
import { VSC_MAGIC_BYTES, VSC_VERSION, VscErrorCode, VscMsgType } from '../vsc/constants.js';
import { startSpiceServer, type SpiceServer } from '../test/helpers/qemu.js';
import { percentiles, writeBenchJson, type BenchRow } from './results.js';

const MiB = 1024 * 1024;
const SESSION_COUNTS = [1, 10, 100];
const LOAD_COUNTS = [1, 10, 50];
const LOAD_SECONDS = 5;
/** What one paused QEMU with a SPICE server and a smartcard device takes, with room to spare. */
const QEMU_BUDGET_BYTES = 120 * MiB;
const SELECT_PIV = Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x09, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00]);

// ---------------------------------------------------------------------------------------------
// The child: one ServeBridge, driven over IPC.

type ToChild = { kind: 'add'; specs: SessionSpec[] } | { kind: 'measure' } | { kind: 'close' };
type FromChild =
  | { kind: 'ready' }
  | { kind: 'active'; count: number; ms: number }
  | { kind: 'memory'; rss: number; heapUsed: number; external: number }
  | { kind: 'closed' }
  | { kind: 'error'; message: string };

async function child(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const bridge = new ServeBridge({ log: { log: () => undefined }, version: 'bench', pcsc: false });
  const send = (m: FromChild): void => void process.send?.(m);
  process.on('message', (m: ToChild) => {
    void (async () => {
      try {
        if (m.kind === 'add') {
          const started = performance.now();
          await Promise.all(m.specs.map((s) => bridge.addSession(s)));
          for (;;) {
            const sessions = bridge.snapshot().sessions;
            if (sessions.every((s) => s.phase === 'active' && s.vm.cardInserted)) break;
            const broken = sessions.find((s) => s.phase === 'failed' || s.phase === 'needs-password');
            if (broken !== undefined) throw new Error(`session ${broken.name}: ${broken.problem?.message ?? broken.phase}`);
            await new Promise((r) => setTimeout(r, 50));
          }
          send({ kind: 'active', count: m.specs.length, ms: performance.now() - started });
        } else if (m.kind === 'measure') {
          for (let i = 0; i < 3; i++) gc?.();
          await new Promise((r) => setTimeout(r, 200));
          gc?.();
          const mem = process.memoryUsage();
          send({ kind: 'memory', rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external + mem.arrayBuffers });
        } else {
          await bridge.close();
          send({ kind: 'closed' });
          process.exit(0);
        }
      } catch (e) {
        send({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
      }
    })();
  });
  send({ kind: 'ready' });
}

class BridgeChild {
  private readonly proc: ChildProcess;
  private readonly inbox: FromChild[] = [];
  private waiter: (() => void) | undefined;

  constructor() {
    this.proc = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: FromChild) => {
      this.inbox.push(m);
      this.waiter?.();
    });
  }

  async next<K extends FromChild['kind']>(kind: K, timeoutMs = 600_000): Promise<Extract<FromChild, { kind: K }>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => m.kind === kind || m.kind === 'error');
      if (i >= 0) {
        const [m] = this.inbox.splice(i, 1);
        if (m!.kind === 'error') throw new Error(`bridge: ${m!.message}`);
        return m as Extract<FromChild, { kind: K }>;
      }
      if (Date.now() > end) throw new Error(`bridge: no ${kind} in time`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 1000);
      });
    }
  }

  send(m: ToChild): void {
    this.proc.send(m);
  }

  async close(): Promise<void> {
    this.send({ kind: 'close' });
    await this.next('closed', 60_000).catch(() => this.proc.kill('SIGKILL'));
  }
}

// ---------------------------------------------------------------------------------------------
// Memory with 1, 10, 100 connect sessions.

async function startQemus(count: number): Promise<SpiceServer[]> {
  const servers: SpiceServer[] = [];
  const batch = 8;
  for (let i = 0; i < count; i += batch) {
    servers.push(...(await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => startSpiceServer({})))));
  }
  return servers;
}

async function memoryRows(): Promise<{ rows: BenchRow[]; table: string[]; note: string }> {
  const affordable = Math.floor((freemem() - 2048 * MiB) / QEMU_BUDGET_BYTES);
  const counts = SESSION_COUNTS.filter((n) => n <= affordable);
  const note = `free memory ${(freemem() / 1024 / MiB).toFixed(1)} GiB at start: room for ${affordable} paused QEMUs${counts.length < SESSION_COUNTS.length ? `; skipped ${SESSION_COUNTS.filter((n) => !counts.includes(n)).join(', ')} sessions` : ''}`;
  const rows: BenchRow[] = [];
  const table: string[] = [];
  const bridge = new BridgeChild();
  await bridge.next('ready');
  bridge.send({ kind: 'measure' });
  const base = await bridge.next('memory');
  table.push(`${'0 (baseline)'.padEnd(14)} ${(base.rss / MiB).toFixed(1).padStart(8)} ${(base.heapUsed / MiB).toFixed(2).padStart(9)} ${(base.external / MiB).toFixed(2).padStart(8)}`);
  let running: SpiceServer[] = [];
  try {
    for (const n of counts) {
      const started = performance.now();
      const more = await startQemus(n - running.length);
      const qemuMs = performance.now() - started;
      const specs = more.map((s, i): SessionSpec => ({ name: `vm${running.length + i}`, mode: 'connect', target: `spice://127.0.0.1:${s.port!}`, card: { kind: 'demo' } }));
      running = [...running, ...more];
      bridge.send({ kind: 'add', specs });
      const active = await bridge.next('active');
      bridge.send({ kind: 'measure' });
      const mem = await bridge.next('memory');
      // Heap is what the sessions hold; RSS also counts code and buffers touched once, so it says more at 100 than at 1.
      const rssPer = (mem.rss - base.rss) / n / 1024;
      const heapPer = (mem.heapUsed - base.heapUsed) / n / 1024;
      table.push(
        `${String(n).padEnd(14)} ${(mem.rss / MiB).toFixed(1).padStart(8)} ${(mem.heapUsed / MiB).toFixed(2).padStart(9)} ${(mem.external / MiB).toFixed(2).padStart(8)} ${rssPer.toFixed(0).padStart(8)} ${heapPer.toFixed(0).padStart(9)} ${(active.ms / 1000).toFixed(1).padStart(8)} ${(qemuMs / 1000).toFixed(1).padStart(11)}`,
      );
      rows.push({ label: `serve RSS, ${n} connect sessions`, value: Math.round((mem.rss / MiB) * 10) / 10, unit: 'MiB' });
      rows.push({ label: `serve heap, ${n} connect sessions`, value: Math.round((mem.heapUsed / MiB) * 100) / 100, unit: 'MiB' });
    }
  } finally {
    await bridge.close();
    await Promise.all(running.map((s) => s.stop()));
  }
  return { rows, table, note };
}

// ---------------------------------------------------------------------------------------------
// APDU turnaround under load: passthru sessions, each fed commands back to back.

/** ccid-card-passthru's side of one socket, with a guest that sends the next command as soon as one is answered. */
class LoadSocket {
  readonly samples: number[] = [];
  /** Commands the bridge answered with VSC_Error instead of the card's answer. */
  failed = 0;
  private readonly server: net.Server;
  private socket: net.Socket | undefined;
  private sentAt = 0;
  private running = false;

  private constructor(server: net.Server) {
    this.server = server;
    server.on('connection', (socket) => this.accept(socket));
  }

  static async listen(): Promise<LoadSocket> {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return new LoadSocket(server);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  run(): void {
    this.running = true;
    this.send();
  }

  halt(): void {
    this.running = false;
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private write(m: VscMessage): void {
    if (this.socket !== undefined && !this.socket.destroyed) this.socket.write(encodeVscMessage(m, 'be'));
  }

  private send(): void {
    if (!this.running) return;
    this.sentAt = performance.now();
    this.write({ type: VscMsgType.Apdu, readerId: 0, data: SELECT_PIV });
  }

  private accept(socket: net.Socket): void {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const parser = new VscStreamParser('be');
    socket.on('data', (chunk: Buffer) => {
      for (const r of parser.push(chunk)) {
        if (!r.ok) continue;
        const m = r.message;
        if (m.type === VscMsgType.Init) this.write({ type: VscMsgType.Init, readerId: 0, magic: Uint8Array.from(VSC_MAGIC_BYTES), version: VSC_VERSION, capabilities: [0] });
        else if (m.type === VscMsgType.ReaderAdd || m.type === VscMsgType.Atr || m.type === VscMsgType.CardRemove || m.type === VscMsgType.ReaderRemove) this.write({ type: VscMsgType.Error, readerId: 0, code: VscErrorCode.Success });
        else if (m.type === VscMsgType.Apdu || m.type === VscMsgType.Error) {
          if (m.type === VscMsgType.Error) this.failed += 1;
          this.samples.push(performance.now() - this.sentAt);
          this.send();
        }
      }
    });
  }
}

async function loadRows(): Promise<{ rows: BenchRow[]; table: string[] }> {
  const rows: BenchRow[] = [];
  const table: string[] = [];
  for (const n of LOAD_COUNTS) {
    const sockets = await Promise.all(Array.from({ length: n }, () => LoadSocket.listen()));
    const bridge = new BridgeChild();
    try {
      await bridge.next('ready');
      bridge.send({ kind: 'add', specs: sockets.map((s, i): SessionSpec => ({ name: `load${i}`, mode: 'passthru', target: `127.0.0.1:${s.port}`, card: { kind: 'demo' } })) });
      await bridge.next('active');
      // Warm up (JIT, first key loads), then measure.
      for (const s of sockets) s.run();
      await new Promise((r) => setTimeout(r, 1000));
      for (const s of sockets) {
        s.samples.length = 0;
        s.failed = 0;
      }
      await new Promise((r) => setTimeout(r, LOAD_SECONDS * 1000));
      for (const s of sockets) s.halt();
      const all = sockets.flatMap((s) => s.samples);
      const p = percentiles(all);
      const perSecond = all.length / LOAD_SECONDS;
      const failed = sockets.reduce((a, s) => a + s.failed, 0);
      table.push(`${String(n).padEnd(9)} ${String(p.n).padStart(8)} ${String(failed).padStart(7)} ${perSecond.toFixed(0).padStart(9)} ${p.median.toFixed(3).padStart(10)} ${p.p99.toFixed(3).padStart(9)}`);
      rows.push({ label: `APDU turnaround, ${n} passthru sessions under load`, median: p.median, p99: p.p99, n: p.n, unit: 'ms' });
      rows.push({ label: `APDUs/s, ${n} passthru sessions`, value: Math.round(perSecond), unit: 'APDU/s' });
    } finally {
      await bridge.close();
      await Promise.all(sockets.map((s) => s.close()));
    }
  }
  return { rows, table };
}

async function main(): Promise<void> {
  // `--only memory` or `--only load` runs one half (the other takes minutes of its own).
  const only = process.argv[process.argv.indexOf('--only') + 1];
  const want = (part: string): boolean => !process.argv.includes('--only') || only === part;
  process.stdout.write('serve: the bridge in a child process; demo cards; QEMU paused (-S), no guest\n\n');
  const rows: BenchRow[] = [];
  let memoryNote = '';
  if (want('memory')) {
    const memory = await memoryRows();
    memoryNote = memory.note;
    rows.push(...memory.rows);
    process.stdout.write(`memory (${memory.note})\nsessions      RSS MiB  heap MiB  ext MiB  RSS KiB  heap KiB  up in s  QEMUs in s
                                            per session\n${memory.table.join('\n')}\n\n`);
  }
  if (want('load')) {
    const load = await loadRows();
    rows.push(...load.rows);
    process.stdout.write(`APDU turnaround (SELECT PIV, ${LOAD_SECONDS} s per row, each session fed back to back; socket → bridge → card → socket)\nsessions   APDUs  failed    APDU/s  median ms   p99 ms\n${load.table.join('\n')}\n`);
  }
  const file = writeBenchJson('serve', { rows, memoryNote });
  process.stdout.write(`\n(${file})\n`);
}

if (process.argv.includes('--child')) {
  void child();
} else {
  main().catch((e: unknown) => {
    process.stderr.write(`serve bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  });
}
