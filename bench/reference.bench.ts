// Our bridge against the reference client, side by side in one run, on one guest:
// `spice-smartcard connect --soft-card` and remote-viewer (virt-viewer, spice-gtk, libcacard's soft
// CAC card from an NSS database) each serve the same guest workload with the same two RSA-2048
// certificates and keys, one client after the other, both through one timestamping relay in front
// of QEMU's SPICE port (bench/spice-relay.ts). Measured:
//  (a) client turnaround per APDU: server's VSC APDU → the client's answer, at the relay;
//  (b) the guest workload's own time (pkcs15-tool --list-certificates, 10 times, timed in the guest);
//  (c) card insertion on the host → the client's ATR at the relay → the guest's OpenSC lists the card;
//  (d) the client process's RSS after the workload (and its peak, VmHWM).
// Needs QEMU, the guest image tools, remote-viewer, Xvfb, xdotool, certutil/pk12util, openssl;
// prints what is missing otherwise. Writes bench-results/reference.json.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from '../test/e2e/guest-vm.js';
import { findExecutable } from '../test/helpers/process.js';
import { startRemoteViewer, startXvfb, viewerEnv, type VirtualDisplay } from '../test/helpers/viewer.js';
import { makeReferenceCards, type ReferenceCards } from './reference-cards.js';
import { machineInfo, percentiles, writeBenchJson, type BenchRow } from './results.js';
import { TimestampingRelay } from './spice-relay.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const LOOPS = Number(process.env.REFERENCE_BENCH_LOOPS ?? 10);
const INSERTIONS = Number(process.env.REFERENCE_BENCH_INSERTIONS ?? 3);
const CLIENTS = ['spice-smartcard', 'remote-viewer'] as const;
type ClientName = (typeof CLIENTS)[number];

interface ClientRun {
  client: ClientName;
  pid: number;
  /** Card inserted on the host (signal or hotkey sent) / removed. */
  insert(): Promise<void>;
  remove(): Promise<void>;
  stop(): Promise<void>;
}

interface ClientResult {
  client: ClientName;
  turnaround: { median: number; p99: number; n: number; errors: number };
  apdusPerListing: number;
  workload: { totalMs: number; perListingMedianMs: number; perListingMs: number[] };
  insertion: { toAtrMs: number[]; toGuestMs: number[]; note?: string };
  rss: { rssMiB: number; peakMiB: number };
}

function procStatusMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

function missingTools(): string[] {
  const need = ['remote-viewer', 'Xvfb', 'xdotool', 'certutil', 'pk12util', 'openssl'];
  const missing = need.filter((b) => findExecutable(b) === undefined);
  if (findQemu() === null) missing.push('qemu-system-x86_64');
  return missing;
}

async function startOurs(port: number, cards: ReferenceCards): Promise<ClientRun> {
  // As a user runs it: human progress lines, nothing printed per APDU.
  const child: ChildProcess = spawn(process.execPath, [CLI, 'connect', `spice://127.0.0.1:${port}`, '--soft-card', cards.softCard], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const deadline = Date.now() + 60_000;
  while (!out.includes('card inserted in the VM')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`connect did not insert the card: ${out}`);
    await sleep(50);
  }
  return {
    client: 'spice-smartcard',
    pid: child.pid!,
    insert: async () => void child.kill('SIGUSR2'),
    remove: async () => void child.kill('SIGUSR1'),
    stop: async () => {
      child.kill('SIGINT');
      await exited;
    },
  };
}

function xdotool(display: VirtualDisplay, args: string[]): string {
  const r = spawnSync('xdotool', args, { encoding: 'utf8', env: viewerEnv(display), timeout: 10_000 });
  if (r.status !== 0) throw new Error(`xdotool ${args.join(' ')}: ${r.stderr || r.status}`);
  return r.stdout;
}

async function startViewer(port: number, cards: ReferenceCards, display: VirtualDisplay): Promise<ClientRun> {
  const proc = startRemoteViewer(`spice://127.0.0.1:${port}`, display, [
    '--spice-smartcard',
    `--spice-smartcard-db=${cards.nssDb}`,
    `--spice-smartcard-certificates=${cards.nicknames.join(',')}`,
    '--hotkeys=smartcard-insert=shift+f8,smartcard-remove=shift+f9',
  ]);
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`remote-viewer did not start: ${proc.output()}`);
  // The viewer's hotkeys need its window focused; xdotool types them through XTEST.
  const key = async (combo: string): Promise<void> => {
    const windows = xdotool(display, ['search', '--onlyvisible', '--pid', String(pid)]).trim().split('\n').filter(Boolean);
    const w = windows[windows.length - 1];
    if (w === undefined) throw new Error('remote-viewer has no visible window');
    xdotool(display, ['windowfocus', '--sync', w]);
    xdotool(display, ['key', '--clearmodifiers', combo]);
  };
  return {
    client: 'remote-viewer',
    pid,
    insert: () => key('shift+F8'),
    remove: () => key('shift+F9'),
    stop: () => proc.stop(5_000),
  };
}

async function measureClient(vm: GuestVm, relay: TimestampingRelay, run: ClientRun): Promise<ClientResult> {
  relay.label = run.client;
  await vm.waitFor('card_present', 90_000);
  // Warm-up: the guest's pcscd and OpenSC see this card once before anything is timed.
  const warm = await vm.run('pkcs15-tool --list-certificates', { timeoutMs: 120_000 });
  if (warm.rc !== 0 || (warm.stdout.match(/X\.509 Certificate/g)?.length ?? 0) < 2) throw new Error(`${run.client}: the guest does not list both certificates:\n${warm.stdout}${warm.stderr}`);

  const from = relay.turnarounds.length;
  const script = `for i in $(seq ${LOOPS}); do s=$(uptime_ms); pkcs15-tool --list-certificates > /dev/null || exit 1; echo "t $(( $(uptime_ms) - s ))"; done`;
  const work = await vm.run(script, { timeoutMs: 600_000 });
  if (work.rc !== 0) throw new Error(`${run.client}: workload failed: ${work.stderr}`);
  const perListingMs = [...work.stdout.matchAll(/^t (\d+)$/gm)].map((m) => Number(m[1]));
  const samples = relay.turnarounds.slice(from).filter((t) => t.label === run.client);
  const rss = { rssMiB: procStatusMiB(run.pid, 'VmRSS'), peakMiB: procStatusMiB(run.pid, 'VmHWM') };

  const toAtrMs: number[] = [];
  const toGuestMs: number[] = [];
  let note: string | undefined;
  try {
    for (let i = 0; i < INSERTIONS; i++) {
      await run.remove();
      await vm.waitFor('! card_present', 30_000);
      const atrFrom = relay.cardEvents.length;
      // The guest polls every 20 ms; the command is in the guest before the card goes in.
      const seen = vm.run('POLL_US=20000 wait_card 30', { timeoutMs: 40_000 });
      await sleep(500);
      const t0 = performance.now();
      await run.insert();
      const r = await seen;
      const t1 = performance.now();
      if (r.rc !== 0) throw new Error('the guest did not see the card again');
      const atr = relay.cardEvents.slice(atrFrom).find((e) => e.kind === 'atr');
      if (atr !== undefined) toAtrMs.push(atr.at - t0);
      toGuestMs.push(t1 - t0);
    }
  } catch (e) {
    note = `insertion not measured: ${e instanceof Error ? e.message : String(e)}`;
  }
  const p = percentiles(samples.map((s) => s.ms));
  return {
    client: run.client,
    turnaround: { ...p, errors: samples.filter((s) => s.answer === 'error').length },
    apdusPerListing: samples.length / LOOPS,
    workload: { totalMs: work.ms, perListingMedianMs: percentiles(perListingMs).median, perListingMs },
    insertion: { toAtrMs, toGuestMs, ...(note !== undefined ? { note } : {}) },
    rss,
  };
}

function fmt(n: number | undefined, digits = 2): string {
  return n === undefined || Number.isNaN(n) ? '—' : n.toFixed(digits);
}

async function main(): Promise<void> {
  const missing = missingTools();
  if (missing.length > 0) {
    process.stdout.write(`skipped: needs ${missing.join(', ')}\n`);
    return;
  }
  const [images, display] = await Promise.all([buildGuest(), startXvfb()]);
  const cards = makeReferenceCards(CLI);
  let vm: GuestVm | undefined;
  let relay: TimestampingRelay | undefined;
  // A trivial command's serial round trip: what the guest-side poll adds to (c).
  let agentRoundTripMs = Number.NaN;
  const results: ClientResult[] = [];
  try {
    vm = await bootGuestVm({ images, display: 'qxl' });
    relay = await TimestampingRelay.start(vm.spicePort!);
    const trips: number[] = [];
    for (let i = 0; i < 5; i++) trips.push((await vm.run('true')).hostMs);
    agentRoundTripMs = percentiles(trips).median;
    for (const client of CLIENTS) {
      process.stderr.write(`reference bench: ${client}…\n`);
      const run = client === 'spice-smartcard' ? await startOurs(relay.port, cards) : await startViewer(relay.port, cards, display);
      try {
        results.push(await measureClient(vm, relay, run));
      } finally {
        await run.stop();
        await vm.waitFor('! card_present', 30_000).catch(() => undefined);
        await sleep(1_000);
      }
    }
  } finally {
    await relay?.close();
    await vm?.shutdown();
    await display.stop();
    cards.dispose();
  }

  const ours = results.find((r) => r.client === 'spice-smartcard');
  const ref = results.find((r) => r.client === 'remote-viewer');
  const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '—' : `${(b / a).toFixed(2)}×`);
  const med = (xs: number[] | undefined): number | undefined => (xs === undefined || xs.length === 0 ? undefined : percentiles(xs).median);
  const line = (label: string, a: number | undefined, b: number | undefined, unit: string, digits = 2): string =>
    `${label.padEnd(52)} ${`${fmt(a, digits)} ${unit}`.padStart(14)} ${`${fmt(b, digits)} ${unit}`.padStart(14)} ${ratio(a, b).padStart(9)}\n`;
  process.stdout.write(`Reference run: one guest, both clients through one timestamping relay (${LOOPS} listings, ${INSERTIONS} insertions each)\n`);
  process.stdout.write(`${''.padEnd(52)} ${'spice-smartcard'.padStart(14)} ${'remote-viewer'.padStart(14)} ${'rv/ours'.padStart(9)}\n`);
  process.stdout.write(line('(a) APDU turnaround at the relay, median', ours?.turnaround.median, ref?.turnaround.median, 'ms', 3));
  process.stdout.write(line('(a) APDU turnaround at the relay, p99', ours?.turnaround.p99, ref?.turnaround.p99, 'ms', 3));
  process.stdout.write(line('    APDUs timed', ours?.turnaround.n, ref?.turnaround.n, '', 0));
  process.stdout.write(line('    APDUs per pkcs15-tool --list-certificates', ours?.apdusPerListing, ref?.apdusPerListing, '', 1));
  process.stdout.write(line('(b) pkcs15-tool --list-certificates, median', ours?.workload.perListingMedianMs, ref?.workload.perListingMedianMs, 'ms', 0));
  process.stdout.write(line(`(b) the whole workload (${LOOPS} listings), guest time`, ours?.workload.totalMs, ref?.workload.totalMs, 'ms', 0));
  process.stdout.write(line('(c) host insertion → client ATR at the relay, median', med(ours?.insertion.toAtrMs), med(ref?.insertion.toAtrMs), 'ms', 1));
  process.stdout.write(line('(c) host insertion → guest lists the card, median', med(ours?.insertion.toGuestMs), med(ref?.insertion.toGuestMs), 'ms', 0));
  process.stdout.write(line('(d) client RSS after the workload', ours?.rss.rssMiB, ref?.rss.rssMiB, 'MiB', 1));
  process.stdout.write(line('(d) client peak RSS (VmHWM)', ours?.rss.peakMiB, ref?.rss.peakMiB, 'MiB', 1));
  for (const r of results) if (r.insertion.note !== undefined) process.stdout.write(`${r.client}: ${r.insertion.note}\n`);
  process.stdout.write(`(c) includes the guest's 20 ms poll and the serial agent's answer (a trivial command's round trip here: ${fmt(agentRoundTripMs, 0)} ms)\n`);

  const rows: BenchRow[] = [];
  for (const r of results) {
    rows.push({ label: `reference: APDU turnaround, ${r.client}`, median: r.turnaround.median, p99: r.turnaround.p99, n: r.turnaround.n, unit: 'ms' });
    rows.push({ label: `reference: pkcs15-tool --list-certificates, ${r.client}`, median: r.workload.perListingMedianMs, n: r.workload.perListingMs.length, unit: 'ms' });
    const g = med(r.insertion.toGuestMs);
    if (g !== undefined) rows.push({ label: `reference: insertion → guest sees card, ${r.client}`, median: g, n: r.insertion.toGuestMs.length, unit: 'ms' });
    rows.push({ label: `reference: RSS after the workload, ${r.client}`, value: r.rss.rssMiB, unit: 'MiB' });
  }
  const file = writeBenchJson('reference', { machine: machineInfo(), loops: LOOPS, insertions: INSERTIONS, agentRoundTripMs, results, rows });
  process.stdout.write(`results: ${file}\n`);
  if (results.length < CLIENTS.length) process.exitCode = 1;
}

await main();
