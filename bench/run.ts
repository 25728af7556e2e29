// `npm run bench`: runs every compiled benchmark (dist/bench/*.bench.js) one after another, so
// they do not compete for the CPU. Each prints its own table and writes bench-results/<name>.json;
// the summary of this run's files comes last. Nothing is asserted.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo } from './results.js';
import { printSummary } from './summary.js';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
const started = new Date();
const machine = machineInfo();
process.stdout.write(`${machine.cpu}, ${machine.cores} cores, ${machine.kvm ? 'KVM' : 'no KVM'}, Node ${machine.node}, ${machine.qemu}, load ${machine.loadAverage.join(' ')}\n`);
let failed = 0;
for (const file of files) {
  process.stdout.write(`\n== ${file.replace(/\.bench\.js$/, '')}\n`);
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, file)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
printSummary(started);
process.exitCode = failed === 0 ? 0 : 1;
