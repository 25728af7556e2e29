// `doctor`'s look at this machine: the native PC/SC module, the PC/SC service, its readers and
// cards, and a SPICE viewer. PC/SC problems exit 3, as `readers` does when the service is down.
import { spawnSync } from 'node:child_process';
import { ExitCode } from '../cli/exit-codes.js';
import { reportReader, type ReaderReport } from '../cli/readers-command.js';
import { which } from '../host-command.js';
import type { PcscBackendFactory } from '../../vsc/pcsc/backend.js';
import { createPcscSource, SERVICE_START_ADVICE, type PcscReaderInfo } from '../../vsc/pcsc/index.js';
import { loadPcsclite } from '../../vsc/pcsc/pcsclite-backend.js';
import { skipped, type DoctorCheck } from './check.js';

export interface HostCheckOptions {
  /** A PC/SC backend other than pcsclite (tests). */
  backend?: PcscBackendFactory;
  /** How long to wait for the readers' first picture (default 3 s). */
  readyTimeoutMs?: number;
}

const spaced = (hex: string): string => hex.replace(/(..)(?!$)/g, '$1 ');

export async function checkHost(options: HostCheckOptions = {}): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const module = options.backend === undefined ? checkPcscModule() : { id: 'pcsc-module', title: 'PC/SC module', status: 'ok' as const, summary: 'a test backend' };
  checks.push(module);
  if (module.status !== 'ok') {
    checks.push(skipped('pcsc-service', 'PC/SC service', 'not checked: the PC/SC module does not load'));
    checks.push(skipped('readers', 'readers', 'not checked: the PC/SC module does not load'));
  } else {
    checks.push(...(await checkPcscService(options)));
  }
  checks.push(checkViewer());
  return checks;
}

function checkPcscModule(): DoctorCheck {
  try {
    loadPcsclite();
    return { id: 'pcsc-module', title: 'PC/SC module', status: 'ok', summary: 'the pcsclite native module loads' };
  } catch (e) {
    return {
      id: 'pcsc-module',
      title: 'PC/SC module',
      status: 'problem',
      summary: e instanceof Error ? e.message : String(e),
      fix:
        'build it: sudo apt-get install libpcsclite-dev g++ make python3 (Fedora: dnf install pcsc-lite-devel gcc-c++ make), ' +
        'then npm rebuild pcsclite. Soft cards and the demo card work without it.',
      exitCode: ExitCode.NETWORK,
    };
  }
}

async function checkPcscService(options: HostCheckOptions): Promise<DoctorCheck[]> {
  const source = createPcscSource(options.backend === undefined ? {} : { backend: options.backend });
  try {
    source.start();
    await source.ready(options.readyTimeoutMs ?? 3_000);
    if (!source.serviceAvailable) {
      const socket = process.env['PCSCLITE_CSOCK_NAME'];
      const installed = which('pcscd', { sbin: true }) !== null;
      return [
        {
          id: 'pcsc-service',
          title: 'PC/SC service',
          status: 'problem',
          summary: `pcscd is not reachable${socket !== undefined ? ` at ${socket} (PCSCLITE_CSOCK_NAME)` : ''}${installed ? '' : ', and it is not installed'}`,
          fix: installed
            ? `${SERVICE_START_ADVICE}. Soft cards and the demo card work without it.`
            : 'install it: sudo apt-get install pcscd libccid (Fedora: dnf install pcsc-lite pcsc-lite-ccid), then sudo systemctl enable --now pcscd.socket. Soft cards and the demo card work without it.',
          exitCode: ExitCode.NETWORK,
        },
        skipped('readers', 'readers', 'not checked: the PC/SC service is not reachable'),
      ];
    }
    return [{ id: 'pcsc-service', title: 'PC/SC service', status: 'ok', summary: 'pcscd answers' }, readersCheck(source.readers())];
  } finally {
    source.close();
  }
}

function readerLine(r: ReaderReport): string {
  if (r.card !== 'present') return `${r.name}: ${r.card === 'empty' ? 'no card' : `card ${r.card}`}`;
  const usage = r.exclusive ? ', held exclusively by another application' : r.inUse ? ', in use' : '';
  const vm = r.guestAtr === null ? 'cannot be shown to the VM as T=0' : r.atr === r.guestAtr ? 'shown to the VM as is' : `shown to the VM as T=0: ${spaced(r.guestAtr)}`;
  return `${r.name}: card ${spaced(r.atr ?? '')} (${r.protocols.join(',') || 'protocol unknown'}${usage}); ${vm}`;
}

export function readersCheck(readers: readonly PcscReaderInfo[]): DoctorCheck {
  const reports = readers.map(reportReader);
  if (reports.length === 0) {
    return {
      id: 'readers',
      title: 'readers',
      status: 'warning',
      summary: 'no PC/SC reader is connected',
      fix: 'plug in a reader to forward a real card (--reader); soft cards and the demo card need none.',
    };
  }
  const details = reports.map(readerLine);
  const cards = reports.filter((r) => r.card === 'present');
  const summary = `${reports.length} reader${reports.length === 1 ? '' : 's'}, ${cards.length === 0 ? 'no card' : `${cards.length} card${cards.length === 1 ? '' : 's'}`}`;
  const held = cards.filter((r) => r.exclusive);
  if (held.length > 0) {
    return {
      id: 'readers',
      title: 'readers',
      status: 'warning',
      summary: `${summary}; ${held.map((r) => r.name).join(', ')}: held exclusively by another application`,
      details,
      fix: "connect waits until it is free. GnuPG's scdaemon holds cards this way: add pcsc-shared to ~/.gnupg/scdaemon.conf, or gpgconf --kill scdaemon.",
    };
  }
  const unusable = reports.filter((r) => r.card === 'mute' || (r.card === 'present' && r.guestAtr === null));
  if (unusable.length > 0) {
    return {
      id: 'readers',
      title: 'readers',
      status: 'warning',
      summary: `${summary}; ${unusable.map((r) => r.name).join(', ')}: the card cannot be forwarded`,
      details,
      fix: 'take the card out and put it back; a card that stays mute or has no T=0 form cannot go to the VM (docs/pcsc-passthrough.md).',
    };
  }
  if (cards.length === 0) return { id: 'readers', title: 'readers', status: 'ok', summary, details, fix: 'insert a card to forward it.' };
  return { id: 'readers', title: 'readers', status: 'ok', summary, details };
}

function checkViewer(): DoctorCheck {
  const path = which('remote-viewer');
  if (path === null) {
    return {
      id: 'viewer',
      title: 'viewer',
      status: 'warning',
      summary: 'remote-viewer is not installed',
      fix: 'to see the VM\'s screen: sudo apt-get install virt-viewer (Fedora: dnf install virt-viewer). connect and passthru need no viewer.',
    };
  }
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  const version = /version\s+(\S+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1];
  return { id: 'viewer', title: 'viewer', status: 'ok', summary: `remote-viewer${version !== undefined ? ` ${version}` : ''} (${path})` };
}
