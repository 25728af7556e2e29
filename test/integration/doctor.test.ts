// `doctor` run as a user runs it, against QEMU's real spice-server (no guest) in each state a
// user meets, and with this machine's PC/SC service present (the private pcscd of the PC/SC rig)
// or absent (PCSCLITE_CSOCK_NAME pointing at a socket that does not exist).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChannelType } from '../../spice/constants.js';
import type { SpiceSession } from '../../spice/session.js';
import { resolveConnection } from '../../src/connection-spec.js';
import { openSession } from '../../src/open-session.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { pcscRigSkipReason, RIG_READERS, startPcscRig, type PcscRig } from '../helpers/pcsc-rig.js';
import { checkBinaries } from '../helpers/process.js';
import { startSpiceServer, type SpiceServer } from '../helpers/qemu.js';
import { ScriptedCard } from '../helpers/scripted-card.js';
import { makeTlsFixtures, type TlsFixtures } from '../helpers/tls.js';
import { VpcdCard } from '../helpers/vpcd-card.js';

const binaries = checkBinaries(['qemu-system-x86_64', 'openssl']);
const rigProblem = pcscRigSkipReason();
const NO_PCSCD = { PCSCLITE_CSOCK_NAME: '/nonexistent/pcscd.comm' };

interface Check {
  scope: 'host' | 'vm';
  id: string;
  status: 'ok' | 'warning' | 'problem' | 'skipped';
  summary: string;
  details?: string[];
  fix?: string;
}
interface DoctorJson {
  target: string | null;
  session: boolean;
  checks: Check[];
  problems: number;
  exitCode: number;
}

function parse(r: CliResult): DoctorJson {
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as DoctorJson;
}

/** Each check's status by id, for one scope. */
function statuses(result: DoctorJson, scope: 'host' | 'vm'): Record<string, string> {
  return Object.fromEntries(result.checks.filter((c) => c.scope === scope).map((c) => [c.id, c.status]));
}

function check(result: DoctorJson, id: string): Check {
  const found = result.checks.find((c) => c.id === id);
  if (!found) throw new Error(`no check ${id} in ${JSON.stringify(result)}`);
  return found;
}

describe.skipIf(binaries.skip)(`doctor ${binaries.reason}`, () => {
  let dir: string;
  let tls: TlsFixtures;
  const servers: SpiceServer[] = [];
  let open: SpiceServer;
  let locked: SpiceServer; // password "s3cret"
  let noCard: SpiceServer;
  let tlsOnly: SpiceServer;
  let multiClient: SpiceServer; // SPICE_DEBUG_ALLOW_MC: a second client gets its own session
  let rig: PcscRig | undefined;
  /** A PC/SC service that answers: the rig's, else none (then host checks are not asserted). */
  let pcscEnv: Record<string, string> = NO_PCSCD;

  const server = async (options: Parameters<typeof startSpiceServer>[0]): Promise<SpiceServer> => {
    const s = await startSpiceServer(options);
    servers.push(s);
    return s;
  };
  const doctor = (args: string[], env: Record<string, string> = pcscEnv): Promise<CliResult> =>
    runCli(['doctor', ...args], { env, timeoutMs: 30_000 });
  /** A client holding a session, as remote-viewer would. */
  const viewer = async (s: SpiceServer): Promise<SpiceSession> =>
    openSession(await resolveConnection({ target: `spice://127.0.0.1:${s.port}`, env: {} }));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'doctor-test-'));
    tls = await makeTlsFixtures(join(dir, 'tls'));
    [open, locked, noCard, tlsOnly, multiClient] = await Promise.all([
      server({}),
      server({ password: 's3cret' }),
      server({ smartcard: false }),
      server({ plainPort: false, tls: { x509Dir: tls.x509Dir } }),
      server({ env: { SPICE_DEBUG_ALLOW_MC: '1' } }),
    ]);
    if (rigProblem === undefined) {
      rig = await startPcscRig();
      pcscEnv = { ...rig.env };
    }
  }, 60_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await rig?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('no PC/SC service on this machine: PC/SC problem, exit 3, and how to start it', async () => {
    const r = await doctor(['--json'], NO_PCSCD);
    expect(r.code, r.stderr).toBe(3);
    const result = parse(r);
    expect(result.target).toBeNull();
    expect(statuses(result, 'host')).toMatchObject({ 'pcsc-module': 'ok', 'pcsc-service': 'problem', readers: 'skipped' });
    expect(check(result, 'pcsc-service').summary).toContain('/nonexistent/pcscd.comm');
    expect(check(result, 'pcsc-service').fix).toMatch(/systemctl (start|enable --now) pcscd/);
    expect(result.checks.some((c) => c.scope === 'vm')).toBe(false);
  });

  it('the same in words: each check with what to do', async () => {
    const r = await doctor([], NO_PCSCD);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^This machine$/m);
    expect(r.stdout).toMatch(/PROBLEM\s+PC\/SC service\s+pcscd is not reachable/);
    expect(r.stdout).toMatch(/fix: start it with `systemctl start pcscd`/);
    expect(r.stdout).toMatch(/skipped\s+readers/);
    expect(r.stdout).toMatch(/^1 problem/m);
  });

  it.skipIf(rigProblem !== undefined)(`a PC/SC service with readers and a card: listed, exit 0 ${rigProblem ?? ''}`, async () => {
    const card = new VpcdCard(new ScriptedCard(), rig!.connector(0));
    await card.insert();
    try {
      const r = await doctor(['--json']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const result = parse(r);
      expect(statuses(result, 'host')).toMatchObject({ 'pcsc-module': 'ok', 'pcsc-service': 'ok', readers: 'ok' });
      const readers = check(result, 'readers');
      expect(readers.summary).toBe('2 readers, 1 card');
      expect(readers.details?.[0]).toMatch(new RegExp(`^${RIG_READERS[0]}: card 3B .*; shown to the VM`));
      expect(readers.details?.[1]).toBe(`${RIG_READERS[1]}: no card`);
    } finally {
      card.remove();
    }
  });

  it('a VM ready for a card: reachable, no TLS needed on loopback, no password, smartcard channel offered and free', async () => {
    const r = await doctor([`spice://127.0.0.1:${open.port}`, '--json']);
    const result = parse(r);
    expect(statuses(result, 'vm')).toEqual({ reachable: 'ok', tls: 'ok', password: 'ok', 'smartcard-channel': 'ok', 'smartcard-free': 'ok' });
    expect(check(result, 'password').summary).toBe('none needed');
    expect(check(result, 'smartcard-free').details?.[0]).toMatch(/channels: .*smartcard/);
    expect(result.session).toBe(true);
    expect(r.stderr).toMatch(/a viewer connected to this VM is disconnected/);
    if (rig) expect(r.code, r.stdout).toBe(0);
  });

  it('a VM without a smartcard device: exit 5 with the domain XML to add; the password is still checked', async () => {
    const r = await doctor([`spice://127.0.0.1:${noCard.port}`, '--json'], NO_PCSCD);
    expect(r.code).toBe(5);
    const result = parse(r);
    expect(statuses(result, 'vm')).toEqual({ reachable: 'ok', tls: 'ok', password: 'ok', 'smartcard-channel': 'problem', 'smartcard-free': 'skipped' });
    expect(check(result, 'smartcard-channel').fix).toContain("<smartcard mode='passthrough' type='spicevmc'/>");
  });

  it('a wrong password: exit 4, and the smartcard channel is still seen to be offered', async () => {
    const r = await doctor([`spice://127.0.0.1:${locked.port}`, '--json'], { ...NO_PCSCD, SPICE_PASSWORD: 'wrong' });
    expect(r.code).toBe(4);
    const result = parse(r);
    expect(statuses(result, 'vm')).toEqual({ reachable: 'ok', tls: 'ok', password: 'problem', 'smartcard-channel': 'ok', 'smartcard-free': 'skipped' });
    expect(check(result, 'password').summary).toMatch(/the one from environment was refused/);
    expect(check(result, 'password').fix).toMatch(/--password-file/);
  });

  it('no password for a VM that needs one: exit 4, saying none was given', async () => {
    const r = await doctor([`spice://127.0.0.1:${locked.port}`, '--json'], NO_PCSCD);
    expect(r.code).toBe(4);
    expect(check(parse(r), 'password').summary).toMatch(/none was given/);
  });

  it('the right password: accepted, and the smartcard channel is free', async () => {
    const r = await doctor([`spice://127.0.0.1:${locked.port}`, '--json'], { ...pcscEnv, SPICE_PASSWORD: 's3cret' });
    const result = parse(r);
    expect(statuses(result, 'vm')).toEqual({ reachable: 'ok', tls: 'ok', password: 'ok', 'smartcard-channel': 'ok', 'smartcard-free': 'ok' });
    expect(check(result, 'password').summary).toBe('accepted (from environment)');
  });

  it('nothing listening: exit 3, not reachable', async () => {
    const r = await doctor(['spice://127.0.0.1:1', '--json'], NO_PCSCD);
    expect(r.code).toBe(3);
    const result = parse(r);
    expect(statuses(result, 'vm')).toMatchObject({ reachable: 'problem', tls: 'skipped', password: 'skipped' });
    expect(check(result, 'reachable').summary).toMatch(/connection refused/);
  });

  it('TLS with the right CA: verified; with another CA: exit 3 on TLS', async () => {
    const uri = `spice://127.0.0.1?tls-port=${tlsOnly.tlsPort}`;
    const good = parse(await doctor([uri, '--ca-file', tls.caCertPath, '--host-subject', tls.hostSubject, '--json']));
    expect(statuses(good, 'vm')).toEqual({ reachable: 'ok', tls: 'ok', password: 'ok', 'smartcard-channel': 'ok', 'smartcard-free': 'ok' });
    expect(check(good, 'tls').summary).toMatch(/certificate verified/);
    const bad = await doctor([uri, '--ca-file', tls.otherCaCertPath, '--json'], NO_PCSCD);
    expect(bad.code).toBe(3);
    expect(statuses(parse(bad), 'vm')).toMatchObject({ reachable: 'ok', tls: 'problem', password: 'skipped' });
  });

  it('--no-session checks everything but whether the channel is free, and a connected viewer stays connected', async () => {
    const session = await viewer(open);
    try {
      const r = await doctor([`spice://127.0.0.1:${open.port}`, '--no-session', '--json']);
      const result = parse(r);
      expect(result.session).toBe(false);
      expect(statuses(result, 'vm')).toEqual({ reachable: 'ok', tls: 'ok', password: 'ok', 'smartcard-channel': 'ok', 'smartcard-free': 'skipped' });
      expect(check(result, 'smartcard-free').summary).toMatch(/--no-session/);
      expect(r.stderr).not.toMatch(/disconnected/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(session.state).toBe('ready');
    } finally {
      await session.close();
    }
  });

  it('without --no-session, it says so and the viewer is disconnected', async () => {
    const session = await viewer(open);
    const closed = new Promise<void>((resolve) => session.once('closed', () => resolve()));
    try {
      const r = await doctor([`spice://127.0.0.1:${open.port}`, '--json']);
      expect(r.stderr).toMatch(/a viewer connected to this VM is disconnected now \(--no-session avoids this\)/);
      await closed;
    } finally {
      await session.close();
    }
  });

  it('the smartcard channel held by another client: exit 5', async () => {
    const session = await viewer(multiClient);
    const channel = await session.openChannel(ChannelType.SMARTCARD, 0);
    channel.on('close', () => undefined);
    channel.start();
    try {
      const r = await doctor([`spice://127.0.0.1:${multiClient.port}`, '--json'], NO_PCSCD);
      expect(r.code, r.stdout).toBe(5);
      const free = check(parse(r), 'smartcard-free');
      expect(free.status).toBe('problem');
      expect(free.fix).toMatch(/another client of this session already holds the smartcard channel/);
    } finally {
      await channel.close();
      await session.close();
    }
  });

  it('a malformed target is a usage error (exit 2) before any check runs', async () => {
    const r = await doctor(['spice://127.0.0.1:5900?password=x'], NO_PCSCD);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
  });
});
