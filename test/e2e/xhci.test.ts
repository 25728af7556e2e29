// A guest whose CCID reader sits behind qemu-xhci, the USB controller libvirt gives q35 VMs.
// QEMU 7.2's usb-ccid there breaks the guest's next command after a 64-byte CCID message (a
// 52-byte answer + SW), so the bridge never sends one (docs/qemu-xhci.md). One boot: the demo
// card signs in the guest; every answer length 1..256 from a card in a host PC/SC reader (a
// private pcscd with vsmartcard's vpcd, the card served in TypeScript, read by the code
// `connect --reader` runs) arrives intact with the next command working, for a T=0 card
// (answers passed through) and a T=1 card (answers rebuilt); and, last, the same reader card
// with the plain ISO policy fails as QEMU does, which shows this file can tell the difference.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiceSession } from '../../spice/session.js';
import { createTransport } from '../../spice/transport.js';
import { SpiceCardLink } from '../../src/bridge/spice-card-link.js';
import type { Card } from '../../vsc/card.js';
import { isoChunkPolicy, type ResponseChunkPolicy } from '../../vsc/iso7816/response-chaining.js';
import { createPcscSource, openReaderCard } from '../../vsc/pcsc/index.js';
import { DEMO_CARD_PIN } from '../../vsc/soft-card/demo-card.js';
import { loadSoftCard } from '../../vsc/soft-card/card-source.js';
import { pcscRigSkipReason, RIG_READERS, startPcscRig, type PcscRig } from '../helpers/pcsc-rig.js';
import { ScriptedCard, SCRIPTED_ATR } from '../helpers/scripted-card.js';
import { VpcdCard } from '../helpers/vpcd-card.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const rigProblem = pcscRigSkipReason();
const skip = (findQemu() === null || rigProblem !== undefined) && !process.env['CI'];
const P11 = '--module /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so';
const h = (n: number): string => (n & 0xff).toString(16).padStart(2, '0').toUpperCase();
const readBinary = (le: number): string => `00:B0:00:00:${h(le)}`;

/** The same historical bytes as SCRIPTED_ATR, offered as T=1 (TD1 = 81, TD2 = 01, TCK). */
function t1Atr(): Uint8Array {
  const historical = SCRIPTED_ATR.subarray(2);
  const body = [0x80 | historical.length, 0x81, 0x01, ...historical];
  return Uint8Array.from([0x3b, ...body, body.reduce((x, v) => x ^ v, 0)]);
}

interface ReadResult {
  /** Answers in order: data, SW. */
  readonly answers: { data: number[]; sw: string }[];
  readonly failed: boolean;
  readonly output: string;
}

/** opensc-tool's output for `-s` commands: "Received (SW1=0x90, SW2=0x00):" then a hex dump, 16 bytes a line. */
function parseOpenscTool(stdout: string, stderr: string): ReadResult {
  const answers: { data: number[]; sw: string }[] = [];
  for (const block of stdout.split(/^Sending: /m).slice(1)) {
    const lines = block.split('\n');
    const at = lines.findIndex((l) => l.startsWith('Received'));
    if (at < 0) continue;
    const sw = /SW1=0x(..), SW2=0x(..)/.exec(lines[at] ?? '');
    const data: number[] = [];
    for (const line of lines.slice(at + 1)) {
      // 16 hex bytes in the first 48 columns, then the ASCII rendering.
      const hex = line.slice(0, 48).match(/\b[0-9A-F]{2}\b/g) ?? [];
      data.push(...hex.map((x) => parseInt(x, 16)));
    }
    answers.push({ data, sw: sw ? `${sw[1]}${sw[2]}` : '?' });
  }
  return { answers, failed: /transmit failed/i.test(stdout + stderr), output: `${stdout}\n${stderr}` };
}

describe.skipIf(skip)(`a guest on qemu-xhci (libvirt q35 default) ${rigProblem ?? ''}`, () => {
  let vm: GuestVm;
  let session: SpiceSession;
  let rig: PcscRig;
  const timings: string[] = [];

  /** Forwards `card` for the duration of `body`, then takes it out again. */
  async function withCard(card: Card, body: () => Promise<void>): Promise<void> {
    const link = await SpiceCardLink.open(session, card);
    try {
      await vm.waitFor('card_present', 30_000);
      await body();
    } finally {
      await link.stop();
      await vm.waitFor('! card_present', 30_000);
      await card.close?.();
    }
  }

  /** A scripted card (READ BINARY answers Le bytes) inserted in the host's virtual reader, opened as `--reader` does. */
  async function withReaderCard(atr: Uint8Array, body: () => Promise<void>, chunkPolicy?: ResponseChunkPolicy): Promise<void> {
    const inserted = new VpcdCard(new ScriptedCard(undefined, atr), rig.connector(0));
    await inserted.insert();
    try {
      await readerShows(atr);
      const card = await openReaderCard(RIG_READERS[0], { exactName: true, ...(chunkPolicy ? { chunkPolicy } : {}) });
      await withCard(card, body);
    } finally {
      inserted.remove();
      // The next test reuses this vpcd slot: pcscd must have seen this card leave, or it could keep
      // the old card's ATR and state for the new one (vpcd is polled).
      await readerShows(undefined);
    }
  }

  /** Waits until pcscd reports the rig's first reader with this card's ATR (undefined: empty). */
  async function readerShows(atr: Uint8Array | undefined): Promise<void> {
    const source = createPcscSource();
    source.start();
    try {
      await source.ready();
      const deadline = Date.now() + 15_000;
      for (;;) {
        const reader = source.readers().find((r) => r.name === RIG_READERS[0]);
        const shown = reader?.presence === 'present' ? reader.atr : undefined;
        const done = atr === undefined ? reader?.presence === 'empty' : shown !== undefined && Buffer.from(shown).equals(Buffer.from(atr));
        if (done) return;
        if (Date.now() > deadline) throw new Error(`pcscd did not show the reader ${atr === undefined ? 'empty' : 'with the new card'} within 15 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      source.close();
    }
  }

  /** READ BINARY with Le = 1..256 (00 for 256) and a last command, all in one connection (one opensc-tool). */
  async function readEveryLength(): Promise<void> {
    const started = Date.now();
    const args = [...Array.from({ length: 256 }, (_, i) => readBinary(i + 1)), readBinary(2)].map((a) => `-s ${a}`).join(' ');
    const r = await vm.run(`opensc-tool ${args}`, { timeoutMs: 120_000 });
    timings.push(`257 commands in one opensc-tool: ${Date.now() - started} ms`);
    const result = parseOpenscTool(r.stdout, r.stderr);
    expect(result.failed, result.output.slice(-2000)).toBe(false);
    expect(r.rc, result.output.slice(-2000)).toBe(0);
    expect(result.answers).toHaveLength(257);
    result.answers.forEach((answer, i) => {
      const le = i === 256 ? 2 : i + 1;
      expect(answer.sw, `Le=${le}`).toBe('9000');
      expect(answer.data, `Le=${le}`).toEqual(Array.from({ length: le }, (_, k) => k & 0xff));
    });
  }

  beforeAll(async () => {
    const started = Date.now();
    rig = await startPcscRig();
    // libpcsclite reads the socket path when this process makes its first PC/SC context.
    process.env['PCSCLITE_CSOCK_NAME'] = rig.env.PCSCLITE_CSOCK_NAME;
    vm = await bootGuestVm({ images: await buildGuest(), usb: 'xhci' });
    expect(vm.qemuArgs.join(' ')).toContain('qemu-xhci');
    session = new SpiceSession({ transport: createTransport({ host: '127.0.0.1', port: vm.spicePort!, tls: {} }), password: '' });
    await session.connect();
    timings.push(`boot + SPICE session: ${Date.now() - started} ms`);
  }, 180_000);

  afterAll(async () => {
    await session?.close();
    await vm?.shutdown();
    await rig?.dispose();
    console.log(`xhci e2e timings:\n  ${timings.join('\n  ')}`);
  });

  it('the demo card: certificates listed, a signature made in the guest verifies', async () => {
    const started = Date.now();
    await withCard(await loadSoftCard({ demo: true }), async () => {
      const list = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
      expect(list.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
      const sign = await vm.run(
        [
          'echo "signed in a guest on xhci" > /tmp/data',
          `pkcs11-tool ${P11} --login --pin ${DEMO_CARD_PIN} --sign --id 01 --mechanism SHA256-RSA-PKCS -i /tmp/data -o /tmp/sig`,
          'pkcs15-tool --read-certificate 01 > /tmp/cert.pem',
          'openssl x509 -in /tmp/cert.pem -pubkey -noout > /tmp/pub.pem',
          'openssl dgst -sha256 -verify /tmp/pub.pem -signature /tmp/sig /tmp/data',
        ].join(' && '),
        { timeoutMs: 60_000 },
      );
      expect(sign.rc, sign.stdout + sign.stderr).toBe(0);
      expect(sign.stdout).toMatch(/Verified OK/);
    });
    timings.push(`demo card (list + sign + verify): ${Date.now() - started} ms`);
  }, 120_000);

  it('a T=0 card behind PC/SC: every answer length 1..256 arrives intact, and the next command works', async () => {
    await withReaderCard(SCRIPTED_ATR, readEveryLength);
  }, 120_000);

  it('a T=1 card behind PC/SC: the same', async () => {
    await withReaderCard(t1Atr(), readEveryLength);
  }, 120_000);

  // Last: a failure can leave the guest's pcscd without the card for a while.
  it('control: with the plain ISO policy, a 52-byte answer (64-byte CCID message) makes the next command fail', async () => {
    await withReaderCard(SCRIPTED_ATR, async () => {
      const r = await vm.run(`opensc-tool -s ${readBinary(52)} -s ${readBinary(2)}`, { timeoutMs: 30_000 });
      const result = parseOpenscTool(r.stdout, r.stderr);
      expect(result.answers[0]?.data, result.output).toHaveLength(52);
      expect(result.failed, result.output).toBe(true);
      expect(result.answers, result.output).toHaveLength(1);
    }, isoChunkPolicy);
  }, 60_000);
});
