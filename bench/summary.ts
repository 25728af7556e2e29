// One table of every bench's headline numbers, read from bench-results/*.json (each bench writes
// its own with bench/results.ts). `npm run bench` prints it at the end; `node dist/bench/summary.js`
// prints the latest files alone.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RESULTS_DIR, type BenchFile, type BenchRow } from './results.js';

function num(n: number | undefined, unit: string): string {
  if (n === undefined || Number.isNaN(n)) return '';
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : Math.abs(n) >= 1 ? 2 : 3;
  return `${n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })} ${unit}`;
}

function line(row: BenchRow): string {
  const main = row.median !== undefined ? `median ${num(row.median, row.unit)}` : num(row.value, row.unit);
  const p99 = row.p99 !== undefined ? `p99 ${num(row.p99, row.unit)}` : '';
  const n = row.n !== undefined ? `n=${row.n}` : '';
  return `  ${row.label.padEnd(66)} ${main.padStart(22)} ${p99.padStart(18)} ${n.padStart(8)}`;
}

/** Prints the summary of files written at or after `since` (all when undefined); returns how many. */
export function printSummary(since?: Date): number {
  let files: string[];
  try {
    files = readdirSync(RESULTS_DIR).filter((f) => f.endsWith('.json')).sort();
  } catch {
    files = [];
  }
  let shown = 0;
  process.stdout.write(`\n== summary (${RESULTS_DIR})\n`);
  for (const f of files) {
    let data: BenchFile;
    try {
      data = JSON.parse(readFileSync(join(RESULTS_DIR, f), 'utf8')) as BenchFile;
    } catch {
      continue;
    }
    if (since !== undefined && new Date(data.at) < since) continue;
    shown++;
    process.stdout.write(`${data.bench}  (${data.at}, load ${data.machine?.loadAverage?.join(' ') ?? '?'})\n`);
    for (const row of data.rows ?? []) process.stdout.write(`${line(row)}\n`);
    if (typeof data['verdict'] === 'string') process.stdout.write(`  ${data['verdict']}\n`);
  }
  if (shown === 0) process.stdout.write('  no bench results\n');
  return shown;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) printSummary();
