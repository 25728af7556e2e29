// `connect --demo-card --trace FILE` records what the guest's OpenSC did (a certificate listing and
// a PIN login with a signature); the trace names the guest's commands, holds no PIN, and
// `connect --replay FILE` answers the same listing with the same answers, without the card.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProcess } from '../helpers/cli-process.js';
import { decodeTrace } from '../../src/trace/trace-format.js';
import { describeRecord } from '../../src/trace/trace-show.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const skip = findQemu() === null && !process.env['CI'];
const P11 = '--module /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so';

describe.skipIf(skip)('APDU traces of a real guest session', () => {
  let vm: GuestVm;
  let dir: string;
  let tracePath: string;
  let recordedListing = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trace-e2e-'));
    tracePath = join(dir, 'session.trace');
    vm = await bootGuestVm({ images: await buildGuest() });
  }, 180_000);

  afterAll(async () => {
    await vm?.shutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function withConnect(cardArgs: string[], body: () => Promise<void>): Promise<CliProcess> {
    const cli = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, ...cardArgs, '--json-log']);
    try {
      await cli.waitForEvent('card-inserted', 60_000);
      await vm.waitFor('card_present', 30_000);
      await body();
    } finally {
      expect(await cli.stop()).toBe(0);
      await vm.waitFor('! card_present', 30_000);
    }
    return cli;
  }

  it('records the listing and a PIN login + signature; the PIN is not in the file', async () => {
    await withConnect(['--demo-card', '--trace', tracePath], async () => {
      const list = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
      expect(list.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
      recordedListing = list.stdout;
      const sign = await vm.run(
        ['echo "signed in the guest" > /tmp/data', `pkcs11-tool ${P11} --login --pin 123456 --sign --id 01 --mechanism SHA256-RSA-PKCS -i /tmp/data -o /tmp/sig`].join(' && '),
        { timeoutMs: 120_000 },
      );
      expect(sign.rc, sign.stdout + sign.stderr).toBe(0);
    });
    expect((await stat(tracePath)).mode & 0o777).toBe(0o600);
    const bytes = await readFile(tracePath);
    expect(bytes.includes(Buffer.from('123456'))).toBe(false);
    const { header, messages } = decodeTrace(bytes);
    expect(header).toMatchObject({ version: 1, secrets: false, target: expect.stringContaining('127.0.0.1') });
    expect(messages[0]).toMatchObject({ dir: 'out', type: 3 }); // the trace starts with our ReaderAdd
    const shown = messages.map(describeRecord);
    const commands = new Set(shown.map((r) => r.command).filter((c) => c !== undefined));
    for (const name of ['SELECT', 'GET DATA', 'VERIFY', 'GENERAL AUTHENTICATE']) expect(commands).toContain(name);
    expect(shown.find((r) => r.type === 'ATR' && r.dir === 'out')).toBeDefined();
    expect(shown.filter((r) => r.command === 'VERIFY' && r.hex.length > 10).every((r) => r.redacted)).toBe(true);
    expect(shown.filter((r) => r.command === 'GENERAL AUTHENTICATE').every((r) => r.redacted)).toBe(true);
    expect(shown.some((r) => r.status?.startsWith('9000') === true)).toBe(true);
  }, 240_000);

  it('connect --replay answers the same listing with the same answers', async () => {
    expect(recordedListing).not.toBe('');
    const cli = await withConnect(['--replay', tracePath], async () => {
      const list = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
      expect(list.stdout).toBe(recordedListing);
    });
    const inserted = cli.events.find((e) => e.event === 'card-inserted');
    expect(String(inserted?.['atr'])).toBe('3b0b80f9a00000030800001000');
    expect(cli.stderr).not.toMatch(/not in the trace/);
  }, 180_000);
});
