// The client's whole answer path, as the reference bench's relay sees it but without QEMU or a
// guest: the bench is a small SPICE server on loopback (test/helpers/viewer.ts's scripted server,
// which links main + smartcard and acknowledges the reader and the card), runs the real
// `spice-smartcard connect spice://… --demo-card` process against it, and then plays a guest's
// PIV middleware on the smartcard channel, one command at a time: SELECT PIV, GET DATA (discovery,
// CHUID, the 9A certificate) and GET RESPONSE until 90 00. Each sample is "server writes the
// command" → "the client's answer is parsed", stamped in the server's 'data' handler.
//
// Floor: the same ping-pong against a bare Node echo process on the same loopback (read a chunk,
// write it back, setNoDelay): what any Node client pays for two socket hops and one loop wake-up.
// The floor and every client take turns command by command, so a busy moment of the shared machine
// hits them alike. Commands go back to back, and with a guest's think time between them (the
// guest under TCG needs milliseconds per command, and a process woken after a pause runs colder).
//
// Environment: TURNAROUND_APDUS (per client and pause, default 20 000), TURNAROUND_GAPS (pauses in
// ms, default "0,1"; 5 shows the cold path best but takes minutes), TURNAROUND_CLI_B=path/to/main.js
// (a second build, e.g. one from before a change, measured in the same turns), TURNAROUND_PROFILE=DIR
// (the clients run under node --cpu-prof).
// Nothing is asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeFrame, FrameParser } from '../spice/frame-parser.js';
import { hasCap } from '../spice/link-codec.js';
import { decodeVscMessage, encodeVscMessage } from '../vsc/codec.js';
import { VscMsgType } from '../vsc/constants.js';
import { startScriptedSpiceServer, type ScriptedSpiceServer } from '../test/helpers/viewer.js';
import { writeBenchJson, type BenchRow } from './results.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const CLI_B = process.env['TURNAROUND_CLI_B'];
const APDUS = Number(process.env['TURNAROUND_APDUS'] ?? 20_000);
const GAPS_MS = (process.env['TURNAROUND_GAPS'] ?? '0,1').split(',').map(Number);
const WARMUP = 2_000;
const PROFILE_DIR = process.env['TURNAROUND_PROFILE'];
const SMARTCARD_CHANNEL = 8;
const SMARTCARD_DATA = 101;
const MINI_HEADER_CAP = 3;

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
/** What OpenSC's PIV driver sends when it lists a card, minus the GET RESPONSEs the answers ask for. */
const SCRIPT: readonly Uint8Array[] = [
  hex('00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00'), // SELECT PIV
  hex('00 CB 3F FF 03 5C 01 7E 00'), // GET DATA discovery object
  hex('00 CB 3F FF 05 5C 03 5F C1 02 00'), // GET DATA CHUID
  hex('00 CB 3F FF 05 5C 03 5F C1 05 00'), // GET DATA 9A certificate (61 XX, then GET RESPONSE)
];

/** utime + stime of a process, in ms (Linux /proc, 10 ms ticks). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

interface Stats {
  median: number;
  p99: number;
  p999: number;
  max: number;
  n: number;
}

function stats(samples: readonly number[]): Stats {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { median: at(0.5), p99: at(0.99), p999: at(0.999), max: sorted[sorted.length - 1] ?? Number.NaN, n: sorted.length };
}

/** One peer the bench plays ping-pong with: sends a command, stamps the answer's arrival. */
interface Driver {
  readonly label: string;
  readonly pid: number | undefined;
  /** Sends the next command; resolves with the turnaround in ms and the command's INS. */
  round(): Promise<{ ms: number; ins: number }>;
  stop(): Promise<void>;
}

function pingPongSocket(socket: net.Socket, next: () => Uint8Array, parse: (chunk: Uint8Array) => boolean): (onClose: () => void) => () => Promise<number> {
  return (onClose) => {
    let pending: { sentAt: number; resolve: (ms: number) => void } | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (!parse(chunk) || pending === undefined) return;
      const ms = performance.now() - pending.sentAt;
      const p = pending;
      pending = undefined;
      p.resolve(ms);
    });
    socket.once('close', onClose);
    return () =>
      new Promise<number>((resolve) => {
        const bytes = next();
        pending = { sentAt: performance.now(), resolve };
        socket.write(bytes);
      });
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

async function startCardClient(label: string, cli: string): Promise<Driver> {
  const server: ScriptedSpiceServer = await startScriptedSpiceServer();
  const execArgv = PROFILE_DIR !== undefined ? ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', PROFILE_DIR] : [];
  const child = spawn(process.execPath, [...execArgv, cli, 'connect', `spice://127.0.0.1:${server.port}`, '--demo-card'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const linked = (): boolean => server.links.some((l) => l.mess.channelType === SMARTCARD_CHANNEL && l.vsc.some((m) => m.type === VscMsgType.Atr));
  await server.waitFor(linked, 20_000).catch(async (e: unknown) => {
    await stopChild(child);
    await server.close();
    throw new Error(`${String(e)}\n${label} said:\n${output}`);
  });
  const link = server.links.find((l) => l.mess.channelType === SMARTCARD_CHANNEL)!;
  const socket = link.socket;
  // The scripted server's own handler has done its job (acknowledgements); from here the bench reads alone.
  socket.removeAllListeners('data');
  const mini = hasCap(link.mess.commonCaps, MINI_HEADER_CAP);
  let serial = 1000n;
  const apdu = (command: Uint8Array): Uint8Array =>
    encodeFrame(SMARTCARD_DATA, encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: command }, 'le'), mini ? { miniHeader: true } : { miniHeader: false, serial: ++serial });
  let step = 0;
  let ins = 0;
  let last: Uint8Array | undefined;
  const next = (): Uint8Array => {
    const n = last?.byteLength ?? 0;
    // 61 XX: the card holds more; fetch it as a guest does.
    if (last !== undefined && n >= 2 && last[n - 2] === 0x61) {
      ins = 0xc0;
      return apdu(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, last[n - 1]!));
    }
    const command = SCRIPT[step++ % SCRIPT.length]!;
    ins = command[1]!;
    return apdu(command);
  };
  const parser = new FrameParser({ miniHeader: mini });
  const parse = (chunk: Uint8Array): boolean => {
    let answered = false;
    for (const f of parser.push(chunk)) {
      if (f.type !== SMARTCARD_DATA) continue;
      const decoded = decodeVscMessage(f.body, 'le');
      if (!decoded.ok) throw new Error(decoded.error.text);
      if (decoded.message.type === VscMsgType.Error) throw new Error(`${label} answered with VSC Error ${decoded.message.code}`);
      if (decoded.message.type === VscMsgType.Apdu) {
        last = decoded.message.data.slice();
        answered = true;
      }
    }
    return answered;
  };
  let stopping = false;
  const send = pingPongSocket(socket, next, parse)(() => {
    if (!stopping) process.stderr.write(`${label}: the smartcard channel closed early\n${output}\n`);
  });
  return {
    label,
    pid: child.pid,
    async round() {
      const ms = await send();
      return { ms, ins };
    },
    async stop() {
      stopping = true;
      await stopChild(child);
      await server.close();
    },
  };
}

/** A bare Node echo in its own process, on the same loopback, timed the same way. */
async function startEcho(size: number): Promise<Driver> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const script = `const s=require('net').connect(${port},'127.0.0.1');s.setNoDelay(true);s.on('data',(d)=>s.write(d));s.on('error',()=>{});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  const socket = await accepted;
  socket.setNoDelay(true);
  const payload = new Uint8Array(size);
  let got = 0;
  const parse = (chunk: Uint8Array): boolean => {
    got += chunk.byteLength;
    if (got < size) return false;
    got = 0;
    return true;
  };
  const send = pingPongSocket(socket, () => payload, parse)(() => undefined);
  return {
    label: `floor: bare Node echo, ${size} B`,
    pid: child.pid,
    async round() {
      return { ms: await send(), ins: 0 };
    },
    async stop() {
      socket.destroy();
      child.kill('SIGKILL');
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const drivers: Driver[] = [await startEcho(30), await startCardClient('connect --demo-card', CLI)];
if (CLI_B !== undefined) drivers.push(await startCardClient(`connect --demo-card (${CLI_B})`, CLI_B));
const rows: BenchRow[] = [];
try {
  for (let i = 0; i < WARMUP; i++) for (const d of drivers) await d.round();
  process.stdout.write(`${'ms (loopback, one command at a time)'.padEnd(60)} ${'median'.padStart(8)} ${'p99'.padStart(8)} ${'p99.9'.padStart(8)} ${'max'.padStart(8)} ${'n'.padStart(7)} ${'CPU µs'.padStart(7)}\n`);
  const names: Record<number, string> = { 0xa4: 'SELECT', 0xcb: 'GET DATA', 0xc0: 'GET RESPONSE' };
  for (const gap of GAPS_MS) {
    const samples = drivers.map(() => [] as number[]);
    const byIns = drivers.map(() => new Map<number, number[]>());
    const cpu0 = drivers.map((d) => cpuMs(d.pid));
    for (let i = 0; i < APDUS; i++) {
      for (let k = 0; k < drivers.length; k++) {
        if (gap > 0) await sleep(gap);
        const { ms, ins } = await drivers[k]!.round();
        samples[k]!.push(ms);
        if (ins === 0) continue;
        const list = byIns[k]!.get(ins) ?? [];
        list.push(ms);
        byIns[k]!.set(ins, list);
      }
    }
    const when = gap === 0 ? 'back to back' : `${gap} ms apart`;
    drivers.forEach((d, k) => {
      const s = stats(samples[k]!);
      const cpuUs = ((cpuMs(d.pid) - cpu0[k]!) * 1000) / APDUS;
      const label = `${d.label}, ${when}`;
      rows.push({ label, median: s.median, p99: s.p99, n: s.n, unit: 'ms' });
      rows.push({ label: `${label}: process CPU per command`, value: cpuUs, unit: 'µs' });
      process.stdout.write(`${label.padEnd(60)} ${s.median.toFixed(4).padStart(8)} ${s.p99.toFixed(4).padStart(8)} ${s.p999.toFixed(4).padStart(8)} ${s.max.toFixed(3).padStart(8)} ${String(s.n).padStart(7)} ${cpuUs.toFixed(1).padStart(7)}\n`);
      for (const [ins, list] of [...byIns[k]!].sort((a, b) => a[0] - b[0])) {
        const t = stats(list);
        process.stdout.write(`${`  INS ${ins.toString(16).padStart(2, '0')} ${names[ins] ?? ''}`.padEnd(60)} ${t.median.toFixed(4).padStart(8)} ${t.p99.toFixed(4).padStart(8)} ${t.p999.toFixed(4).padStart(8)} ${t.max.toFixed(3).padStart(8)} ${String(t.n).padStart(7)}\n`);
      }
    });
  }
} finally {
  for (const d of drivers) await d.stop();
}
writeBenchJson('turnaround', { rows, apdus: APDUS, gapsMs: GAPS_MS, profile: PROFILE_DIR ?? null, compared: CLI_B ?? null });
