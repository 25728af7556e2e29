// In-process speed of the SPICE and VSC codecs on the path every APDU takes: frame parsing of
// smartcard messages split across reads, and the reader link answering commands from a card.
import { concatBytes } from '../spice/bytes.js';
import { encodeFrame, FrameParser } from '../spice/frame-parser.js';
import { decodeVscMessage, encodeVscMessage } from '../vsc/codec.js';
import { VscMsgType } from '../vsc/constants.js';
import { ReaderLink } from '../vsc/reader-link.js';
import { writeBenchJson, type BenchRow } from './results.js';

const rows: BenchRow[] = [];

function rate(label: string, n: number, ms: number, unit: string): void {
  rows.push({ label, value: n / (ms / 1000), unit: `${unit}/s` });
  process.stdout.write(`${label.padEnd(52)} ${(n / (ms / 1000)).toFixed(0).padStart(12)} ${unit}/s   (${n} in ${ms.toFixed(0)} ms)\n`);
}

function time(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

// 1. Smartcard messages (12-byte VSC header + a 260-byte answer) parsed from 1460-byte reads.
const vsc = encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: new Uint8Array(260) }, 'le');
const frame = encodeFrame(101, vsc, { miniHeader: true });
const stream = concatBytes(Array.from({ length: 2000 }, () => frame));
const reads: Uint8Array[] = [];
for (let at = 0; at < stream.byteLength; at += 1460) reads.push(stream.subarray(at, at + 1460));
let messages = 0;
const rounds = 50;
const parseMs = time(() => {
  for (let r = 0; r < rounds; r++) {
    const p = new FrameParser({ miniHeader: true });
    for (const chunk of reads) messages += p.push(chunk).length;
  }
});
rate('frame parser: smartcard messages from TCP-sized reads', messages, parseMs, 'msg');
rate('frame parser: bytes', stream.byteLength * rounds, parseMs, 'B');

// 2. Decode a guest command, run it through the reader link, encode the answer.
const link = new ReaderLink({ mode: 'spice', now: () => 0 });
link.start();
link.receive({ type: VscMsgType.Error, readerId: 0, code: 0 });
link.cardInserted(Uint8Array.of(0x3b, 0x02, 0x41, 0x42));
link.receive({ type: VscMsgType.Error, readerId: 0, code: 0 });
const command = encodeVscMessage({ type: VscMsgType.Apdu, readerId: 0, data: Uint8Array.of(0, 0xb0, 0, 0, 0) }, 'le');
const answer = new Uint8Array(258);
answer[256] = 0x90;
let answered = 0;
const n = 200_000;
const linkMs = time(() => {
  for (let i = 0; i < n; i++) {
    const decoded = decodeVscMessage(command, 'le');
    if (!decoded.ok) throw new Error(decoded.error.text);
    for (const a of link.receive(decoded.message)) {
      if (a.kind !== 'deliver-apdu') continue;
      for (const b of link.apduAnswered(a.seq, answer)) {
        if (b.kind === 'send') {
          encodeVscMessage(b.message, 'le');
          answered++;
        }
      }
    }
  }
});
rate('reader link: command decoded, answered, encoded', answered, linkMs, 'APDU');
process.stdout.write(`${'reader link: time per APDU'.padEnd(52)} ${((linkMs * 1000) / answered).toFixed(2).padStart(12)} µs\n`);
rows.push({ label: 'reader link: time per APDU', value: (linkMs * 1000) / answered, unit: 'µs' });
writeBenchJson('spice-framing', { rows });
