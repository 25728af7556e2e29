// What the PC/SC bridge adds to an APDU: the same card, in the same run, through the raw PC/SC
// round trip (pcsclite transmit on the open connection) and through PcscReaderCard (per-card
// queue, T=0 adapter, error handling). Needs the private pcscd rig (root, pcscd, vpcd); prints
// why not otherwise. Raw and bridged exchanges alternate so drift hits both alike.
import { createPcscSource, openReaderCard } from '../vsc/pcsc/index.js';
import { pcscRigUnavailable, RIG_READERS, startPcscRig } from '../test/helpers/pcsc-rig.js';
import { ScriptedCard } from '../test/helpers/scripted-card.js';
import { VpcdCard } from '../test/helpers/vpcd-card.js';
import { writeBenchJson, type BenchRow } from './results.js';

const ROUNDS = Number(process.env.PCSC_BENCH_ROUNDS ?? 2000);
const T1_ATR = Uint8Array.from([0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40]);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

const rows: BenchRow[] = [];

function row(label: string, samples: number[]): { median: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = quantile(sorted, 0.5);
  const p99 = quantile(sorted, 0.99);
  rows.push({ label: `PC/SC: ${label}`, median, p99, n: samples.length, unit: 'ms' });
  process.stdout.write(`${label.padEnd(58)} median ${(median * 1000).toFixed(1).padStart(8)} µs   p99 ${(p99 * 1000).toFixed(1).padStart(8)} µs\n`);
  return { median, p99 };
}

async function main(): Promise<void> {
  const missing = pcscRigUnavailable();
  if (missing !== undefined) {
    process.stdout.write(`skipped: the private pcscd rig cannot run here (${missing})\n`);
    return;
  }
  const rig = await startPcscRig();
  process.env.PCSCLITE_CSOCK_NAME = rig.env.PCSCLITE_CSOCK_NAME;
  const vcard = new VpcdCard(new ScriptedCard(undefined, T1_ATR), rig.connector(0));
  const source = createPcscSource();
  source.start();
  const card = await openReaderCard(RIG_READERS[0], { source });
  try {
    const inserted = new Promise<void>((resolve) => card.on('inserted', () => resolve()));
    await vcard.insert();
    await inserted;
    const reader = source.handle(RIG_READERS[0]);
    const protocol = card.protocol();
    if (reader === undefined || protocol === undefined) throw new Error('the card did not open');

    const read = Uint8Array.of(0x00, 0xb0, 0x00, 0x00, 0x10);
    // A command without Le, as T=0 guests send case-4 commands: the answer reaches the guest
    // through 61 XX and GET RESPONSE (two guest exchanges, one card APDU).
    const case4 = Uint8Array.of(0x00, 0xb0, 0x00, 0x00);
    const raw: number[] = [];
    const bridged: number[] = [];
    const rawCase4: number[] = [];
    const bridgedCase4: number[] = [];
    for (let i = 0; i < 200; i++) {
      await reader.transmit(read, protocol, 258);
      await card.transmit(read);
    }
    for (let i = 0; i < ROUNDS; i++) {
      let t = performance.now();
      await reader.transmit(read, protocol, 258);
      raw.push(performance.now() - t);
      t = performance.now();
      await card.transmit(read);
      bridged.push(performance.now() - t);
      t = performance.now();
      await reader.transmit(Uint8Array.of(0x00, 0xb0, 0x00, 0x00, 0x00), protocol, 258);
      rawCase4.push(performance.now() - t);
      t = performance.now();
      const first = await card.transmit(case4);
      if (first[0] === 0x61) await card.transmit(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, first[1] ?? 0));
      bridgedCase4.push(performance.now() - t);
    }
    process.stdout.write(`PC/SC round trips through a private pcscd + vpcd + a TypeScript card, T=${protocol === 'T=1' ? 1 : 0}, ${ROUNDS} rounds\n`);
    const r = row('raw PC/SC transmit (READ BINARY, 16 bytes)', raw);
    const b = row('through PcscReaderCard (same command)', bridged);
    const added = raw.map((v, i) => (bridged[i] ?? v) - v);
    row('added by the bridge, per APDU (paired difference)', added);
    process.stdout.write(`${'added by the bridge, medians / p99s'.padEnd(58)} ${((b.median - r.median) * 1000).toFixed(1).padStart(15)} µs ${((b.p99 - r.p99) * 1000).toFixed(1).padStart(12)} µs\n`);
    row('raw PC/SC transmit, Le=00 (256 bytes)', rawCase4);
    row('guest: command without Le + GET RESPONSE (256 bytes)', bridgedCase4);
    writeBenchJson('pcsc', { rows });
  } finally {
    vcard.remove();
    await card.close();
    source.close();
    await rig.dispose();
  }
}

await main();
