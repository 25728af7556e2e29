// `npm run soak -- --minutes N`: keeps one bridge session busy with guest commands for N minutes
// (default 30) and prints, every minute, the process's memory and handle counts and the APDU
// rate; at the end a verdict on growth over the second half of the run.
//
// The session is the one `spice-smartcard passthru --demo-card` runs (PassthruLink + CardForwarder
// + the demo PIV card), in this process so its heap and handles can be read; the VM side of the
// ccid-card-passthru socket is played by this bench (test/helpers/passthru-vm.ts), so it drives
// APDUs as fast as the bridge answers, with no guest or QEMU to add noise. The workload is what a
// middleware does: SELECT, GET DATA (a 1 KiB certificate through 61 XX / GET RESPONSE), PIN status
// queries, and every 25th round a PIN login and an RSA-2048 signature.
import { parseArgs } from 'node:util';
import { PassthruLink } from '../src/bridge/passthru-link.js';
import { exchange, exchangeChain, generalAuthenticateApdus, getDataApdu, selectPivApdu, verifyPinApdu } from '../vsc/piv/host-commands.js';
import { PivAlgorithm, PivObjectTag, PivSlot } from '../vsc/piv/constants.js';
import { createDemoCard, DEMO_CARD_PIN } from '../vsc/soft-card/demo-card.js';
import { PassthruVm } from '../test/helpers/passthru-vm.js';
import { linearSlope, machineInfo, writeBenchJson } from './results.js';

interface Sample {
  minute: number;
  apdus: number;
  apdusPerSecond: number;
  failed: number;
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  handles: number;
  handleKinds: Record<string, number>;
}

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'interval-seconds': { type: 'string', default: '60' },
    // 0: as fast as the bridge answers (one core busy); a rate leaves the machine to others.
    rate: { type: 'string', default: '0' },
  },
});
const minutes = Number(values.minutes);
const intervalMs = Number(values['interval-seconds']) * 1000;
const rate = Number(values.rate);
if (!(minutes > 0) || !(intervalMs >= 1000) || !(rate >= 0)) {
  process.stderr.write('usage: npm run soak -- [--minutes N (default 30)] [--interval-seconds S (default 60)] [--rate APDUS_PER_SECOND (default 0: unlimited)]\n');
  process.exit(2);
}

const gc = (globalThis as { gc?: () => void }).gc;
const MiB = 1024 * 1024;

function kinds(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of process.getActiveResourcesInfo()) out[k] = (out[k] ?? 0) + 1;
  return out;
}

async function main(): Promise<void> {
  const vm = await PassthruVm.listen({ record: false });
  const card = await createDemoCard();
  const link = await PassthruLink.open({ host: '127.0.0.1', port: vm.port }, card);
  await vm.waitFor(() => vm.atr !== undefined, 'card inserted');

  const transmit = async (apdu: Uint8Array): Promise<Uint8Array> => {
    const answer = await vm.apdu(apdu);
    if (answer.kind !== 'response') throw new Error(`the bridge answered a command with ${answer.kind}`);
    return answer.data;
  };
  // Only the first byte matters: below the modulus, so a raw RSA input the card accepts.
  const signInput = new Uint8Array(256).fill(0x5a);
  signInput[0] = 0;
  signInput[1] = 1;

  let stop = false;
  let apdus = 0;
  let failedRounds = 0;
  const counting = async (apdu: Uint8Array): Promise<Uint8Array> => {
    apdus++;
    return transmit(apdu);
  };
  const driverStarted = performance.now();
  const driver = (async () => {
    for (let round = 0; !stop; round++) {
      if (rate > 0) {
        const ahead = (apdus * 1000) / rate - (performance.now() - driverStarted);
        if (ahead > 1) await new Promise((resolve) => setTimeout(resolve, ahead));
      }
      try {
        await exchange(counting, selectPivApdu());
        await exchange(counting, getDataApdu(PivObjectTag.CHUID));
        const cert = await exchange(counting, getDataApdu(PivObjectTag.CERT_AUTHENTICATION));
        if (cert.sw !== 0x9000 || cert.data.length < 500) throw new Error(`certificate read answered ${cert.sw.toString(16)}`);
        await exchange(counting, verifyPinApdu());
        if (round % 25 === 0) {
          await exchange(counting, verifyPinApdu(DEMO_CARD_PIN));
          const sig = await exchangeChain(counting, generalAuthenticateApdus(PivAlgorithm.RSA_2048, PivSlot.AUTHENTICATION, signInput));
          if (sig.sw !== 0x9000) throw new Error(`signature answered ${sig.sw.toString(16)}`);
        }
      } catch (e) {
        failedRounds++;
        if (!link.isOpen) throw e;
      }
    }
  })();

  const samples: Sample[] = [];
  const started = performance.now();
  let lastApdus = 0;
  let lastAt = started;
  const header = 'minute     APDUs   APDU/s  failed   RSS MiB  heap MiB  ext MiB  handles';
  process.stdout.write(`soak: ${minutes} min, the demo card on a passthru session driven by the bench, sample every ${intervalMs / 1000} s, ${rate > 0 ? `${rate} APDUs/s` : 'APDUs as fast as answered'}${gc ? '' : ' (no --expose-gc: heap numbers include garbage)'}\n${header}\n`);
  const total = minutes * 60_000;
  while (performance.now() - started < total) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, total - (performance.now() - started))));
    gc?.();
    const now = performance.now();
    const mem = process.memoryUsage();
    const handleKinds = kinds();
    const s: Sample = {
      minute: (now - started) / 60_000,
      apdus,
      apdusPerSecond: ((apdus - lastApdus) * 1000) / (now - lastAt),
      failed: failedRounds,
      rssMiB: mem.rss / MiB,
      heapUsedMiB: mem.heapUsed / MiB,
      externalMiB: (mem.external + mem.arrayBuffers) / MiB,
      handles: Object.values(handleKinds).reduce((a, b) => a + b, 0),
      handleKinds,
    };
    lastApdus = apdus;
    lastAt = now;
    samples.push(s);
    process.stdout.write(
      `${s.minute.toFixed(1).padStart(6)} ${String(s.apdus).padStart(9)} ${s.apdusPerSecond.toFixed(0).padStart(8)} ${String(s.failed).padStart(7)} ` +
        `${s.rssMiB.toFixed(1).padStart(9)} ${s.heapUsedMiB.toFixed(2).padStart(9)} ${s.externalMiB.toFixed(2).padStart(8)} ${String(s.handles).padStart(8)}  ${Object.entries(handleKinds).map(([k, n]) => `${k}×${n}`).join(' ')}\n`,
    );
  }
  stop = true;
  await driver.catch((e: unknown) => process.stdout.write(`driver stopped: ${e instanceof Error ? e.message : String(e)}\n`));
  await link.stop();
  await card.close?.();
  await vm.close();

  const second = samples.slice(Math.floor(samples.length / 2));
  const xs = second.map((s) => s.minute);
  const heapSlope = linearSlope(xs, second.map((s) => s.heapUsedMiB));
  const rssSlope = linearSlope(xs, second.map((s) => s.rssMiB));
  const handleCounts = second.map((s) => s.handles);
  const span = (xs[xs.length - 1] ?? 0) - (xs[0] ?? 0);
  const heapGrowth = heapSlope * span;
  const rssGrowth = rssSlope * span;
  const handlesStable = Math.max(...handleCounts) - Math.min(...handleCounts) <= 1;
  // Bounds for "no growth": a leak of even 20 bytes per APDU at this rate would cross them.
  const ok = second.length >= 2 && heapGrowth < 1 && rssGrowth < 8 && handlesStable && failedRounds === 0;
  const verdict = second.length < 2
    ? 'too short for a verdict (fewer than 2 samples in the second half)'
    : `${ok ? 'NO GROWTH' : 'GROWTH OR FAILURES'}: over the second half (${span.toFixed(1)} min) heap ${heapSlope >= 0 ? '+' : ''}${(heapSlope * 1024).toFixed(1)} KiB/min (${heapGrowth.toFixed(2)} MiB), RSS ${rssSlope >= 0 ? '+' : ''}${(rssSlope * 1024).toFixed(1)} KiB/min (${rssGrowth.toFixed(2)} MiB), handles ${Math.min(...handleCounts)}–${Math.max(...handleCounts)}, ${failedRounds} failed rounds, ${apdus} APDUs`;
  process.stdout.write(`verdict: ${verdict}\n`);
  const file = writeBenchJson('soak', { machine: machineInfo(), minutes, rate, samples, heapSlopeMiBPerMin: heapSlope, rssSlopeMiBPerMin: rssSlope, ok, verdict });
  process.stdout.write(`results: ${file}\n`);
  process.exitCode = ok ? 0 : 1;
}

await main();
