// Soft PIV cards from `card create`, one per algorithm, used by the guest's OpenSC through
// `connect --soft-card`: certificates listed, a signature made in the guest verifies against the
// certificate, pkcs11-tool's self test passes, a wrong PIN costs a try and three block the card.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { CliProcess } from '../helpers/cli-process.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from './guest-vm.js';

const skip = findQemu() === null && !process.env['CI'];
const PIN = '246810';
const PUK = '13572468';
const P11 = '--module /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so';
const SELECT_PIV = '00:A4:04:00:09:A0:00:00:03:08:00:00:10:00';
const pinApdu = (pin: string): string => `00:20:00:80:08:${[...Buffer.from(pin.padEnd(8, '\xff'), 'latin1')].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

const algorithms = [
  { key: 'rsa2048', mechanism: 'SHA256-RSA-PKCS', format: '' },
  { key: 'p256', mechanism: 'ECDSA-SHA256', format: '--signature-format openssl' },
  { key: 'p384', mechanism: 'ECDSA-SHA384', format: '--signature-format openssl' },
] as const;

describe.skipIf(skip)('soft PIV cards in a real guest', () => {
  let vm: GuestVm;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'soft-card-e2e-'));
    vm = await bootGuestVm({ images: await buildGuest() });
  }, 180_000);

  afterAll(async () => {
    await vm?.shutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let cards = 0;
  async function withCard(key: string, body: (cli: CliProcess) => Promise<void>): Promise<void> {
    const path = join(dir, `${key}-${++cards}.card`);
    const created = await runCli(['card', 'create', path, '--subject', `CN=e2e ${key}`, '--key', key, '--slots', '9a,9c'], {
      env: { SPICE_SMARTCARD_PIN: PIN, SPICE_SMARTCARD_PUK: PUK },
    });
    expect(created.code, created.stderr).toBe(0);
    const cli = new CliProcess(['connect', `spice://127.0.0.1:${vm.spicePort}`, '--soft-card', path, '--json-log']);
    try {
      await cli.waitForEvent('card-inserted', 60_000);
      await vm.waitFor('card_present', 30_000);
      await body(cli);
    } finally {
      expect(await cli.stop()).toBe(0);
      await vm.waitFor('! card_present', 30_000);
    }
  }

  for (const alg of algorithms) {
    it(`${alg.key}: certificates listed, a signature made in the guest verifies, pkcs11-tool --test passes`, async () => {
      await withCard(alg.key, async () => {
        const list = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
        expect(list.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
        const sign = await vm.run(
          [
            'echo "signed in the guest" > /tmp/data',
            `pkcs11-tool ${P11} --login --pin ${PIN} --sign --id 01 --mechanism ${alg.mechanism} ${alg.format} -i /tmp/data -o /tmp/sig`,
            'pkcs15-tool --read-certificate 01 > /tmp/cert.pem',
            'openssl x509 -in /tmp/cert.pem -pubkey -noout > /tmp/pub.pem',
            `openssl dgst -${alg.mechanism.endsWith('384') ? 'sha384' : 'sha256'} -verify /tmp/pub.pem -signature /tmp/sig /tmp/data`,
          ].join(' && '),
          { timeoutMs: 120_000 },
        );
        expect(sign.rc, sign.stdout + sign.stderr).toBe(0);
        expect(sign.stdout).toMatch(/Verified OK/);
        const selfTest = await vm.run(`pkcs11-tool ${P11} --test --login --pin ${PIN}`, { timeoutMs: 240_000 });
        expect(selfTest.rc, selfTest.stdout + selfTest.stderr).toBe(0);
        expect(selfTest.stdout + selfTest.stderr).toMatch(/No errors/);
      });
    }, 240_000);
  }

  it('a wrong PIN costs a try, three block the card, and the PUK unblocks it', async () => {
    await withCard('p256', async () => {
      const tries = async (): Promise<string> => (await vm.run(`opensc-tool -s ${SELECT_PIV} -s 00:20:00:80:00`)).stdout;
      expect(await tries()).toMatch(/SW1=0x63, SW2=0xC3/);
      const wrong = await vm.run(`opensc-tool -s ${SELECT_PIV} -s ${pinApdu('000000')}`);
      expect(wrong.stdout).toMatch(/SW1=0x63, SW2=0xC2/);
      await vm.run(`opensc-tool -s ${SELECT_PIV} -s ${pinApdu('000000')} -s ${pinApdu('111111')}`);
      const blocked = await vm.run(`opensc-tool -s ${SELECT_PIV} -s ${pinApdu(PIN)}`);
      expect(blocked.stdout).toMatch(/SW1=0x69, SW2=0x83/);
      // OpenSC 0.23's pkcs15-tool --unblock-pin says "Not supported" for PIV before sending anything,
      // so the guest sends RESET RETRY COUNTER itself (what yubico-piv-tool -a unblock-pin does).
      const pad = (v: string): string => [...Buffer.from(v.padEnd(8, '\xff'), 'latin1')].map((b) => b.toString(16).padStart(2, '0')).join(':');
      const unblock = await vm.run(`opensc-tool -s ${SELECT_PIV} -s 00:2C:00:80:10:${pad(PUK)}:${pad(PIN)}`);
      expect(unblock.stdout).toMatch(/SW1=0x90, SW2=0x00\)?\s*$/);
      const ok = await vm.run(`opensc-tool -s ${SELECT_PIV} -s ${pinApdu(PIN)}`);
      expect(ok.stdout).toMatch(/SW1=0x90, SW2=0x00/);
    });
  }, 240_000);
});
