// The QEMU command line of the tiny Linux VM: machine, kernel and initramfs, serial console and
// agent, QMP, spice-server (password in a file, TLS with a throwaway CA), USB CCID readers.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import type { GuestImages } from './guest-image.js';
import { GuestVmError, type BootGuestOptions, type SmartcardMode, type SpiceTlsOptions, type UsbController } from './guest-vm-types.js';

export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Distinct free TCP ports on 127.0.0.1 (all held open together, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

function execFileP(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((res, rej) => {
    execFile(cmd, args, { cwd }, (err, _out, stderr) => {
      if (err) rej(new GuestVmError(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else res();
    });
  });
}

/** Throwaway CA + server certificate (CN/SAN 127.0.0.1, localhost) for the SPICE TLS port. */
async function makeTlsDir(dir: string): Promise<{ dir: string; caCert: string }> {
  await mkdir(dir, { recursive: true });
  const days = '2';
  await execFileP('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem',
    '-days', days, '-subj', '/CN=spice-smartcard e2e CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  await execFileP('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr',
    '-subj', '/CN=127.0.0.1'], dir);
  await writeFile(join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  await execFileP('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem',
    '-CAcreateserial', '-out', 'server-cert.pem', '-days', days, '-extfile', 'server.ext'], dir);
  return { dir, caCert: join(dir, 'ca-cert.pem') };
}

function kvmUsable(): boolean {
  try {
    if (!existsSync('/dev/kvm')) return false;
    const r = spawnSync('grep', ['-qwE', 'vmx|svm', '/proc/cpuinfo']);
    if (r.status !== 0) return false;
    const access = spawnSync('sh', ['-c', '[ -r /dev/kvm ] && [ -w /dev/kvm ]']);
    return access.status === 0;
  } catch {
    return false;
  }
}


export interface QemuPlan {
  args: string[];
  spicePort: number | null;
  tlsPort: number | null;
  socketPorts: number[];
  readerCount: number;
  caCertFile: string | null;
}

function usbControllerArgs(usb: UsbController): string[] {
  switch (usb) {
    case 'uhci':
      return ['-device', 'piix3-usb-uhci,id=usb'];
    case 'xhci':
      return ['-device', 'qemu-xhci,id=usb'];
    case 'ehci':
      // EHCI with a UHCI companion (full-speed devices such as usb-ccid are handed to the companion)
      return [
        '-device', 'ich9-usb-ehci1,id=usb,addr=1d.7,multifunction=on',
        '-device', 'ich9-usb-uhci1,id=usb-uhci,masterbus=usb.0,firstport=0,addr=1d.0,multifunction=on',
      ];
  }
}

export async function planQemu(
  qemu: string,
  opts: BootGuestOptions,
  images: Pick<GuestImages, 'kernel' | 'initrd'>,
  runDir: string,
): Promise<QemuPlan> {
  const mode: SmartcardMode = opts.smartcard ?? 'spicevmc';
  const readerCount = mode === 'spicevmc' ? 1 : mode.sockets;
  if (!Number.isInteger(readerCount) || readerCount < 1 || readerCount > 9) {
    throw new GuestVmError(`smartcard.sockets must be 1..9 (one root port + an 8-port hub), got ${readerCount}`);
  }
  const tls: SpiceTlsOptions | null = opts.tls === true ? {} : opts.tls ? opts.tls : null;
  const plain = !(tls?.tlsOnly ?? false);
  const want = (plain && opts.spicePort === undefined ? 1 : 0) + (tls && tls.port === undefined ? 1 : 0) +
    (mode === 'spicevmc' ? 0 : readerCount);
  const free = await freePorts(want);
  const take = (): number => {
    const p = free.shift();
    if (p === undefined) throw new Error('port allocation');
    return p;
  };
  const spicePort = plain ? (opts.spicePort ?? take()) : null;
  const tlsPort = tls ? (tls.port ?? take()) : null;
  const socketPorts = mode === 'spicevmc' ? [] : Array.from({ length: readerCount }, take);

  const accelWanted = opts.accel ?? 'auto';
  const accel = accelWanted === 'auto' ? (kvmUsable() ? 'kvm' : 'tcg') : accelWanted;
  const kernelArgs = [
    'console=ttyS0,115200', 'quiet', 'loglevel=3', 'panic=-1',
    `guest.ccid=${readerCount}`, `guest.pcscd=${(opts.pcscdArgs ?? ['-d']).join(',')}`,
    ...(opts.kernelArgs ?? []),
  ];

  const args: string[] = [
    qemu,
    '-name', opts.name ?? 'spice-smartcard-e2e',
    '-nodefaults', '-no-user-config',
    '-machine', 'q35',
    '-accel', accel, '-cpu', accel === 'kvm' ? 'host' : 'max',
    '-smp', '1', '-m', String(opts.memoryMb ?? 256),
    '-no-reboot', '-display', 'none',
    ...((opts.display ?? 'none') === 'qxl' ? ['-device', 'qxl-vga'] : ['-vga', 'none']),
    '-kernel', images.kernel, '-initrd', images.initrd, '-append', kernelArgs.join(' '),
    '-chardev', 'stdio,id=con0,signal=off', '-serial', 'chardev:con0',
    '-chardev', `socket,id=agent0,path=${join(runDir, 'agent.sock')},server=on,wait=off`, '-serial', 'chardev:agent0',
    '-qmp', `unix:${join(runDir, 'qmp.sock')},server=on,wait=off`,
    '-pidfile', join(runDir, 'qemu.pid'),
  ];

  const spice = ['addr=127.0.0.1'];
  if (spicePort !== null) spice.push(`port=${spicePort}`);
  if (opts.spicePassword !== undefined) {
    const pwFile = join(runDir, 'spice.pw');
    await writeFile(pwFile, opts.spicePassword, { mode: 0o600 });
    args.push('-object', `secret,id=spicepw0,file=${pwFile}`);
    spice.push('password-secret=spicepw0');
  } else {
    spice.push('disable-ticketing=on');
  }
  let caCertFile: string | null = null;
  if (tls && tlsPort !== null) {
    let x509Dir = tls.x509Dir;
    if (!x509Dir) {
      const made = await makeTlsDir(join(runDir, 'tls'));
      x509Dir = made.dir;
      caCertFile = made.caCert;
    }
    spice.push(`tls-port=${tlsPort}`, `x509-dir=${resolve(x509Dir)}`);
  }
  args.push('-spice', spice.join(','));

  args.push(...usbControllerArgs(opts.usb ?? 'uhci'));
  if (mode === 'spicevmc') {
    args.push(
      '-device', 'usb-ccid,id=ccid0,bus=usb.0,port=1',
      '-chardev', 'spicevmc,id=charsmartcard0,name=smartcard',
      '-device', 'ccid-card-passthru,chardev=charsmartcard0,id=smartcard0,bus=ccid0.0',
    );
  } else {
    if (readerCount > 1) args.push('-device', 'usb-hub,id=hub0,bus=usb.0,port=2');
    socketPorts.forEach((port, i) => {
      args.push(
        '-chardev', `socket,id=charsmartcard${i},host=127.0.0.1,port=${port},server=on,wait=off`,
        '-device', `usb-ccid,id=ccid${i},bus=usb.0,port=${i === 0 ? '1' : `2.${i}`}`,
        '-device', `ccid-card-passthru,chardev=charsmartcard${i},id=smartcard${i},bus=ccid${i}.0`,
      );
    });
  }
  args.push(...(opts.extraQemuArgs ?? []));
  return { args, spicePort, tlsPort, socketPorts, readerCount, caCertFile };
}
