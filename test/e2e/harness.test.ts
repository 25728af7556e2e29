/**
 * Proves the end-to-end guest harness itself: the guest boots under QEMU with a real spice-server,
 * pcscd in the guest lists QEMU's usb-ccid reader(s) (no card: no client sent an ATR), and the agent
 * moves arbitrary commands and output. One boot per smartcard mode.
 *
 * Skipped (with the reason in the test name) only when qemu-system-x86_64 is missing and CI is unset;
 * with CI=true a missing QEMU fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  bootGuestVm,
  buildGuest,
  findQemu,
  GuestCommandError,
  GuestTimeoutError,
  QEMU_APT_LINE,
  type GuestVm,
} from './guest-vm.js';

const ciValue = (process.env.CI ?? '').toLowerCase();
const inCi = ciValue !== '' && ciValue !== 'false' && ciValue !== '0';
const skipReason =
  findQemu() === null && !inCi ? `qemu-system-x86_64 is not installed (${QEMU_APT_LINE}); CI=true makes this a failure` : null;

/** Reader lines of `opensc-tool --list-readers`: [index, card Yes/No, name]. */
function listedReaders(out: string): Array<{ index: number; card: string; name: string }> {
  const readers: Array<{ index: number; card: string; name: string }> = [];
  for (const line of out.split('\n')) {
    const m = /^(\d+)\s+(Yes|No)\s+(?:PIN pad\s+)?(.+?)\s*$/.exec(line);
    if (m) readers.push({ index: Number(m[1]), card: m[2] ?? '', name: m[3] ?? '' });
  }
  return readers;
}

function timingLine(label: string, vm: GuestVm): string {
  const ev = (n: string) => vm.event(n);
  const ready = ev('pcscd-ready');
  return (
    `[e2e] ${label}: spawn->usb-ccid ${ev('usb-ccid-present')?.hostMs ?? '?'} ms, ` +
    `spawn->pcscd-ready ${ready?.hostMs ?? '?'} ms (guest uptime ${ready?.uptimeMs ?? '?'} ms), ` +
    `spawn->agent-ready ${ev('agent-ready')?.hostMs ?? '?'} ms`
  );
}

function tcpConnects(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = netConnect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      res(true);
    });
    s.on('error', () => res(false));
  });
}

if (skipReason !== null) {
  console.warn(`[e2e] harness tests skipped: ${skipReason}`);
  describe('e2e guest harness', () => {
    it.skip(`SKIPPED: ${skipReason}`, () => undefined);
  });
} else {
  beforeAll(async () => {
    const images = await buildGuest({ onProgress: (l) => console.info(l) });
    console.info(`[e2e] guest build: ${images.ms} ms (${images.cached ? 'cached' : 'built'}), key ${images.key}`);
  }, 10 * 60_000);

  describe('e2e guest harness: spicevmc reader (password + TLS)', () => {
    let vm: GuestVm | undefined;
    const password = 'e2e s3cret "pw"';

    beforeAll(async () => {
      vm = await bootGuestVm({ smartcard: 'spicevmc', spicePassword: password, tls: true });
      console.info(timingLine('spicevmc', vm));
      console.info(`[e2e] qemu: ${vm.commandLine}`);
    }, 120_000);
    afterAll(async () => {
      if (vm) console.info(`[e2e] spicevmc shutdown: ${JSON.stringify(await vm.shutdown())}`);
    }, 30_000);
    const theVm = (): GuestVm => {
      if (!vm) throw new Error('VM did not boot');
      return vm;
    };

    it('lists the QEMU USB CCID reader with no card', async () => {
      const vm = theVm();
      expect(vm.event('pcscd-ready')?.fields.readers).toBe('1');
      const r = await vm.run('opensc-tool --list-readers', { check: true });
      const readers = listedReaders(r.stdout);
      expect(readers, r.stdout).toHaveLength(1);
      expect(readers[0]?.card).toBe('No');
      // QEMU's usb-ccid presents itself with Gemalto's ids (08e6:4433) and QEMU strings
      expect(readers[0]?.name).toMatch(/CCID/);
      const usb = await vm.run(
        'for d in /sys/bus/usb/devices/*; do [ -f $d/idVendor ] && echo "$(cat $d/idVendor):$(cat $d/idProduct) $(cat $d/manufacturer 2>/dev/null) / $(cat $d/product 2>/dev/null)"; done',
      );
      expect(usb.stdout).toMatch(/08e6:4433 QEMU \/ QEMU USB CCID/);
      // pcscd works (debug log in /tmp) and no card is inserted
      expect((await vm.run('card_present')).rc).toBe(1);
      expect((await vm.run('grep -c . /tmp/pcscd.log')).rc).toBe(0);
    });

    it('agent: quotes, newlines, UTF-8, binary output, stderr and rc survive', async () => {
      const vm = theVm();
      const cmd = [
        `printf '%s\\n' "it's \\"quoted\\"" 'back\\slash $HOME' "tab\there"`,
        `echo 'ünïcødé €'`,
        `printf '\\000\\001\\377\\n'`,
        `echo "to stderr" >&2`,
        'exit 7',
      ].join('\n');
      const r = await vm.run(cmd);
      expect(r.rc).toBe(7);
      expect(r.timedOut).toBe(false);
      const expected = Buffer.concat([
        Buffer.from(`it's "quoted"\nback\\slash $HOME\ntab\there\nünïcødé €\n`, 'utf8'),
        Buffer.from([0x00, 0x01, 0xff, 0x0a]),
      ]);
      expect(r.stdoutBytes.equals(expected), r.stdoutBytes.toString('hex')).toBe(true);
      expect(r.stderr).toBe('to stderr\n');
      expect(r.ms).toBeGreaterThanOrEqual(0);

      await expect(vm.run('false', { check: true })).rejects.toBeInstanceOf(GuestCommandError);
      const big = await vm.run(`head -c 65536 /dev/zero | tr '\\000' x`);
      expect(big.stdout).toBe('x'.repeat(65536));
      // a long command goes length-prefixed (RUNX)
      const long = await vm.run(`s='${'y'.repeat(20_000)}'; echo \${#s}`);
      expect(long.stdout).toBe('20000\n');
    });

    it('agent: timeouts kill the command, waitFor polls in the guest, the agent keeps working', async () => {
      const vm = theVm();
      const t = await vm.run('sleep 20; echo never', { timeoutMs: 700 }).catch((e: unknown) => e);
      expect(t).toBeInstanceOf(GuestTimeoutError);
      expect(t instanceof GuestTimeoutError ? t.result?.timedOut : undefined).toBe(true);
      expect((await vm.run('echo alive')).stdout).toBe('alive\n');

      await vm.run('rm -f /tmp/flag; (usleep 600000; echo ok > /tmp/flag) &');
      const w = await vm.waitFor('cat /tmp/flag', 5_000);
      expect(w.stdout).toBe('ok\n');
      await expect(vm.waitFor('false', 300)).rejects.toBeInstanceOf(GuestTimeoutError);
    });

    it('QMP, SPICE ports, TLS, and the password stays off the command line', async () => {
      const vm = theVm();
      expect(await vm.qmp<{ status: string }>('query-status')).toMatchObject({ status: 'running' });
      const spice = await vm.qmp<{ enabled: boolean; port?: number; 'tls-port'?: number; auth?: string }>('query-spice');
      expect(spice).toMatchObject({ enabled: true, port: vm.spicePort, 'tls-port': vm.tlsPort, auth: 'spice' });
      expect(vm.commandLine).not.toContain(password);
      expect(vm.commandLine).toContain('password-secret=');
      expect(vm.commandLine).not.toMatch(/-vga std|qxl/);

      if (vm.spicePort === null || vm.tlsPort === null || vm.caCertFile === null) throw new Error('ports');
      expect(await tcpConnects(vm.spicePort)).toBe(true);
      const ca = readFileSync(vm.caCertFile);
      const tlsPort = vm.tlsPort;
      const authorized = await new Promise<boolean>((res, rej) => {
        const s = tlsConnect({ host: '127.0.0.1', port: tlsPort, ca }, () => {
          res(s.authorized);
          s.destroy();
        });
        s.on('error', rej);
      });
      expect(authorized).toBe(true);
    });
  });

  describe('e2e guest harness: two readers on TCP socket chardevs', () => {
    let vm: GuestVm | undefined;
    beforeAll(async () => {
      vm = await bootGuestVm({ smartcard: { sockets: 2 } });
      console.info(timingLine('sockets:2', vm));
      console.info(`[e2e] qemu: ${vm.commandLine}`);
    }, 120_000);
    afterAll(async () => {
      if (vm) console.info(`[e2e] sockets:2 shutdown: ${JSON.stringify(await vm.shutdown())}`);
    }, 30_000);

    it('lists two readers, no card, and QEMU listens on both socket ports', async () => {
      if (!vm) throw new Error('VM did not boot');
      expect(vm.socketPorts).toHaveLength(2);
      expect(vm.spicePort).not.toBeNull();
      const r = await vm.run('opensc-tool --list-readers', { check: true });
      const readers = listedReaders(r.stdout);
      expect(readers.map((x) => x.index), r.stdout).toEqual([0, 1]);
      expect(readers.every((x) => x.card === 'No' && /CCID/.test(x.name))).toBe(true);
      expect(vm.event('pcscd-ready')?.fields.readers).toBe('2');

      const chardevs = await vm.qmp<Array<{ label: string; filename: string }>>('query-chardev');
      vm.socketPorts.forEach((port, i) => {
        const cd = chardevs.find((c) => c.label === `charsmartcard${i}`);
        expect(cd?.filename).toContain(`127.0.0.1:${port}`);
      });
    });
  });
}
