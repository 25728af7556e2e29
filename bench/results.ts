// What every benchmark writes besides its printed table: one JSON file per bench in
// bench-results/ (gitignored), with the machine it ran on and its headline rows, so `npm run bench`
// can collect every bench's numbers into one summary table (bench/summary.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One headline number of a bench. Times in milliseconds unless `unit` says otherwise. */
export interface BenchRow {
  label: string;
  median?: number;
  p99?: number;
  value?: number;
  unit: string;
  /** How many samples the median and p99 come from. */
  n?: number;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kvm: boolean;
  node: string;
  qemu: string;
  remoteViewer: string;
  libcacard: string;
  loadAverage: number[];
}

export interface BenchFile {
  bench: string;
  at: string;
  machine: MachineInfo;
  rows: BenchRow[];
  [key: string]: unknown;
}

const here = dirname(fileURLToPath(import.meta.url));
/** bench-results/ at the top of the repository (dist/bench/ is two levels down). */
export const RESULTS_DIR = resolve(here, basename(dirname(here)) === 'dist' ? '../..' : '..', 'bench-results');

function firstLine(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 || typeof r.stdout !== 'string') return 'not installed';
  return r.stdout.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

function kvmUsable(): boolean {
  if (!existsSync('/dev/kvm')) return false;
  try {
    return /\b(vmx|svm)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

let machine: MachineInfo | undefined;

export function machineInfo(): MachineInfo {
  machine ??= {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kvm: kvmUsable(),
    node: process.version,
    qemu: firstLine('qemu-system-x86_64', ['--version']),
    remoteViewer: firstLine('remote-viewer', ['--version']),
    libcacard: firstLine('dpkg-query', ['-W', '-f', '${Version}', 'libcacard0']),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
  return { ...machine, loadAverage: loadavg().map((l) => Math.round(l * 100) / 100) };
}

/** Writes bench-results/<bench>.json (the latest run) and returns its path. */
export function writeBenchJson(bench: string, data: { rows?: BenchRow[]; machine?: MachineInfo; [key: string]: unknown }): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${bench}.json`);
  const body: BenchFile = { bench, at: new Date().toISOString(), ...data, machine: data.machine ?? machineInfo(), rows: data.rows ?? [] };
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
  return file;
}

/** Median and 99th percentile of samples (nearest rank). */
export function percentiles(samples: readonly number[]): { median: number; p99: number; n: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { median: at(0.5), p99: at(0.99), n: sorted.length };
}

/** Least-squares slope of y over x (0 for fewer than two points). */
export function linearSlope(xs: readonly number[], ys: readonly number[]): number {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return 0;
  const mx = xs.slice(0, n).reduce((a, b) => a + b, 0) / n;
  const my = ys.slice(0, n).reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
