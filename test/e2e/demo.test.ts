// `npm run demo` as a first-time user runs it (the compiled entry `npm run demo` starts, after its
// build): one VM boot, the demo card forwarded by the real `connect`, the report checked row by
// row, and nothing left running. Also the cheap failures: usage, and a missing QEMU named with
// the apt-get line that installs it.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findQemu } from './guest-vm.js';

const DEMO_MAIN = fileURLToPath(new URL('../../dist/src/demo/main.js', import.meta.url));
const skip = findQemu() === null && !process.env['CI'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function runDemo(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 150_000): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const childEnv = { ...process.env, ...env };
    delete childEnv['SPICE_SMARTCARD_PIN'];
    const child = spawn(process.execPath, [DEMO_MAIN, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      reject(new Error(`the demo did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('npm run demo', () => {
  it.skipIf(skip)('shows the demo card in the VM: reader, ATR, certificates, a signature verified in the VM, clean removal', async () => {
    const r = await runDemo([]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);

    // progress, then the clean-up, on stderr
    expect(r.stderr).toMatch(/\[1\/4\] VM image .* … (cached|built in)/);
    expect(r.stderr).toMatch(/\[2\/4\] Booting the VM .* … up in [\d.]+ s: SPICE on 127\.0\.0\.1:\d+/);
    expect(r.stderr).toMatch(/\[3\/4\] Forwarding the card: spice-smartcard connect spice:\/\/127\.0\.0\.1:\d+ --demo-card … card inserted in the VM/);
    expect(r.stderr).toMatch(/\[4\/4\] .* … done \(5\/5 ok\)/);
    expect(r.stderr).toMatch(/Stopped the bridge and the VM\./);

    // the report on stdout
    const out = r.stdout;
    expect(out).toMatch(/^ {2}VM {6}QEMU .*\((TCG|KVM)\), kernel \S+, USB CCID reader on the SPICE smartcard channel$/m);
    expect(out).toMatch(/^ {2}bridge {2}\$ spice-smartcard connect spice:\/\/127\.0\.0\.1:\d+ --demo-card$/m);
    expect(out).toMatch(/linked \(session 0x[0-9a-f]{8}\), reader added, card inserted; \d+ APDUs forwarded/);
    expect(out).toMatch(/^ {2}ok {6}reader {8}Gemalto Gemplus USB SmartCard Reader 433-Swap \[CCID Interface\] .*, card present$/m);
    expect(out).toMatch(/^ {2}ok {6}card ATR {6}3b:0b:80:f9:a0:00:00:03:08:00:00:10:00, the ATR the bridge sent$/m);
    expect(out).toMatch(/^ {2}ok {6}certificates {2}2 certificates$/m);
    expect(out).toMatch(/01 {2}Certificate for PIV Authentication: CN=Demo Card Authentication, O=spice-smartcard demo \(RSA-2048\)/);
    expect(out).toMatch(/02 {2}Certificate for Digital Signature: CN=Demo Card Signature, O=spice-smartcard demo \(EC 256 bit\)/);
    expect(out).toMatch(/^ {2}ok {6}signature {5}made in the VM with key 01 \(RSA-2048, SHA256-RSA-PKCS\) after PIN login; openssl in the VM: Verified OK$/m);
    expect(out).toMatch(/\$ pkcs11-tool --login --pin 123456 --sign --id 01 --mechanism SHA256-RSA-PKCS/);
    expect(out).toMatch(/^ {2}ok {6}removal {7}connect stopped \(Ctrl-C, exit 0\): the card left the VM/m);
    expect(out).toMatch(/^All 5 checks passed/m);
    expect(out).not.toMatch(/FAILED|skipped/);

    // nothing left running: the VM's SPICE port is closed
    const port = Number(/spice:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    expect(await refused(port)).toBe(true);
    console.log(`demo: ${r.ms} ms`);
  }, 180_000);

  it('a missing QEMU is named with the apt-get line that installs it, before anything starts', async () => {
    const r = await runDemo([], { SPICE_SMARTCARD_QEMU: '/nonexistent/qemu-system-x86_64' }, 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/The demo needs system packages this machine lacks\. Install them with:\n {2}(sudo )?apt-get install -y --no-install-recommends qemu-system-x86\n/);
    expect(r.stderr).toMatch(/On other systems: /);
    expect(r.stderr).not.toMatch(/\[1\/4\]/);
    expect(r.stdout).toBe('');
  });

  it('an unknown option is a usage error', async () => {
    const r = await runDemo(['--bogus'], {}, 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Usage: npm run demo/);
  });
});
