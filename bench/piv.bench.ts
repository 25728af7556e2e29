// Throughput of the soft PIV card in process: APDUs per second through the ISO front end and
// the applet, and signatures per second per algorithm. Prints numbers, asserts nothing.
// Run: npm run build && node dist/bench/piv.bench.js

import { createECDH, createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { exchange, exchangeChain, generalAuthenticateApdus, getDataApdu, verifyPinApdu } from '../vsc/piv/host-commands.js';
import type { SlotName } from '../vsc/soft-card/algorithms.js';
import { createCertificate } from '../vsc/soft-card/certificates.js';
import { createMemoryCard } from '../vsc/soft-card/memory-card.js';
import { writeBenchJson, type BenchRow } from './results.js';

const rows: BenchRow[] = [];

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '1');

async function measure(label: string, unit: string, body: () => Promise<number>): Promise<void> {
  // Warm up the JIT and caches first.
  for (let i = 0; i < 20; i += 1) await body();
  let count = 0;
  let operations = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  while (performance.now() < deadline) {
    operations += 1;
    count += await body();
  }
  const elapsed = (performance.now() - start) / 1000;
  const perSecond = (n: number): string => Math.round(n / elapsed).toLocaleString('en-US');
  const extra = count !== operations ? ` (${perSecond(operations)} ${unit}/s)` : '';
  console.log(`${label.padEnd(54)} ${perSecond(count).padStart(9)} ${count !== operations ? 'APDUs' : unit}/s${extra}`);
  rows.push({ label: `soft PIV: ${label}`, value: operations / elapsed, unit: `${unit}/s` });
}

async function main(): Promise<void> {
  const keys: Array<readonly [SlotName, KeyObject]> = [
    ['9a', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey],
    ['9c', generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey],
    ['9d', generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey],
    ['9e', generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey],
  ];
  const slots = await Promise.all(
    keys.map(async ([slot, privateKey]) => ({ slot, privateKey, certificate: await createCertificate({ subject: `CN=Benchmark ${slot}, O=spice-smartcard`, privateKey, slot, days: 1 }) })),
  );
  const { card } = await createMemoryCard({ name: 'bench', pin: '123456', puk: '12345678', slots });
  let apdus = 0;
  const transmit = (apdu: Uint8Array): Promise<Uint8Array> => {
    apdus += 1;
    return card.transmit(apdu);
  };
  const counted = async (run: () => Promise<unknown>): Promise<number> => {
    apdus = 0;
    await run();
    return apdus;
  };

  const certificateSize = (await exchange(transmit, getDataApdu(0x5fc105))).data.length;
  console.log(`soft PIV card, node ${process.version}, ${SECONDS} s per line`);
  await measure('GET DATA discovery (one APDU)', 'objects', () => counted(() => exchange(transmit, Uint8Array.of(0x00, 0xcb, 0x3f, 0xff, 0x03, 0x5c, 0x01, 0x7e, 0x00))));
  await measure(`GET DATA certificate, ${certificateSize} B, 61XX + GET RESPONSE`, 'objects', () => counted(() => exchange(transmit, getDataApdu(0x5fc105))));
  await measure('VERIFY status query', 'APDUs', () => counted(() => transmit(verifyPinApdu())));
  await measure('VERIFY PIN (after the first: no scrypt)', 'APDUs', () => counted(() => transmit(verifyPinApdu('123456'))));

  const sha256 = createHash('sha256').update('benchmark').digest();
  const sha384 = createHash('sha384').update('benchmark').digest();
  const block = new Uint8Array(256).fill(0x5a);
  block[0] = 0x00;
  await transmit(verifyPinApdu('123456'));
  const rsa = generalAuthenticateApdus(0x07, 0x9a, block);
  const p256 = generalAuthenticateApdus(0x11, 0x9e, sha256);
  const p384 = generalAuthenticateApdus(0x14, 0x9d, sha384);
  await measure('RSA-2048 signature, 9A (2 chained + 2 GET RESPONSE)', 'signatures', () => counted(() => exchangeChain(transmit, rsa)));
  await measure('ECDSA P-256 signature, 9E', 'signatures', () => counted(() => exchangeChain(transmit, p256)));
  await measure('ECDSA P-384 signature, 9D', 'signatures', () => counted(() => exchangeChain(transmit, p384)));
  await measure('ECDSA P-256 signature, 9C (with VERIFY each)', 'signatures', () =>
    counted(async () => {
      await transmit(verifyPinApdu('123456'));
      await exchangeChain(transmit, generalAuthenticateApdus(0x11, 0x9c, sha256));
    }),
  );
  const peer = createECDH('secp384r1');
  const ecdh = generalAuthenticateApdus(0x14, 0x9d, peer.generateKeys(), 'exponentiation');
  await measure('ECDH P-384, 9D', 'agreements', () => counted(() => exchangeChain(transmit, ecdh)));
  await card.close();
  writeBenchJson('piv', { rows });
}

await main();
