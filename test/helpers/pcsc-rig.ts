// A real, private pcscd for tests: vsmartcard's vpcd reader driver, cards served by VpcdCard.
//
// Isolation: pcscd runs under `unshare --net --mount`:
//  - its own mount namespace, where a temp dir is bind-mounted over /run/pcscd: pcscd 1.9.9
//    ignores PCSCLITE_CSOCK_NAME and always listens on /run/pcscd/pcscd.comm, so its socket is
//    <dir>/run/pcscd.comm on the host and a system pcscd, if any, is untouched;
//  - its own network namespace with only `lo`: vpcd listens on 0.0.0.0:35963 and 35964 (one port
//    per slot), reachable from nowhere else, so parallel rigs never clash. Cards reach those
//    ports through a short-lived `nsenter --net` child that connects and hands the socket back
//    over Node's IPC channel, so APDUs then flow on a direct socket.
// The config is a reader.conf in <dir>/conf passed with `pcscd -c`; Debian 12's vpcd cannot
// connect out to a card (its client mode crashes pcscd), so server mode it is.
//
// PC/SC clients (libpcsclite, so the `pcsclite` package in this process too) find it through
// PCSCLITE_CSOCK_NAME, which libpcsclite reads once, at the first context: set it (rig.env)
// before the first PC/SC call in the process, or run the client in a child with that env.

import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProcess, type ManagedProcess } from './process.js';

export const VPCD_DRIVER = '/usr/lib/pcsc/drivers/serial/libifdvpcd.so';
/** vpcd's own default; private to the rig's network namespace. */
export const VPCD_PORT = 35963;
export const RIG_READER_BASE = 'SpiceTest vpcd';
/** pcscd names a driver's slots "<FRIENDLYNAME> <reader> <slot>"; vpcd has two slots. */
export const RIG_READERS = [`${RIG_READER_BASE} 00 00`, `${RIG_READER_BASE} 00 01`] as const;

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin'])) {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Why the rig cannot run here, or undefined when it can. */
export function pcscRigUnavailable(): string | undefined {
  const missing: string[] = [];
  if (!onPath('pcscd')) missing.push('pcscd (Debian package pcscd)');
  if (!existsSync(VPCD_DRIVER)) missing.push('vpcd (Debian package vsmartcard-vpcd)');
  if (!onPath('unshare') || !onPath('nsenter')) missing.push('unshare/nsenter (util-linux)');
  if (!onPath('ip')) missing.push('ip (iproute2)');
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  if (process.getuid?.() !== 0) return 'needs root (unshare --net --mount)';
  return undefined;
}

/** Skip reason for a test file: only outside CI; in CI a missing rig is a failure. */
export function pcscRigSkipReason(): string | undefined {
  const reason = pcscRigUnavailable();
  if (reason === undefined) return undefined;
  if (process.env.CI) throw new Error(`the PC/SC test rig cannot run in CI: ${reason}`);
  return reason;
}

/** Resolves a socket connected to `port` inside the network namespace of process `pid`. */
export function connectInNetns(pid: number, port: number): Promise<Socket> {
  // CommonJS for `node -e`: connect, hand the socket to the parent, exit.
  const helper = `const s=require('net').connect(${port},'127.0.0.1');` +
    `s.on('connect',()=>process.send('socket',s,()=>process.exit(0)));` +
    `s.on('error',(e)=>{process.send({error:e.message},()=>process.exit(1));});`;
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=/proc/${pid}/ns/net`, process.execPath, '-e', helper], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('message', (message: unknown, handle: unknown) => {
      if (handle instanceof Socket) resolve(handle);
      else reject(new Error(`connecting to vpcd port ${port}: ${JSON.stringify(message)}`));
    });
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`nsenter helper exited with ${code}: ${stderr.trim()}`));
    });
    child.on('error', reject);
  });
}

export interface PcscRig {
  readonly dir: string;
  /** <dir>/run/pcscd.comm */
  readonly socketPath: string;
  /** What a PC/SC client needs in its environment. */
  readonly env: { readonly PCSCLITE_CSOCK_NAME: string };
  readonly readers: readonly string[];
  /** pcscd's PID (also the namespaces' owner), while it runs. */
  pid(): number | undefined;
  running(): boolean;
  /** A connector for VpcdCard: slot 0 or 1. */
  connector(slot: number): () => Promise<Socket>;
  /** pcscd's debug log so far. */
  log(): string;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops pcscd and removes the temp dir. */
  dispose(): Promise<void>;
}

export interface PcscRigOptions {
  /** Log every APDU in pcscd's log (pcscd -a). */
  readonly logApdus?: boolean;
}

export async function startPcscRig(options: PcscRigOptions = {}): Promise<PcscRig> {
  const dir = mkdtempSync(join(tmpdir(), 'pcsc-rig-'));
  const runDir = join(dir, 'run');
  const confDir = join(dir, 'conf');
  mkdirSync(runDir);
  mkdirSync(confDir);
  // The bind mount needs its mount point; creating the empty directory changes nothing for a system pcscd.
  mkdirSync('/run/pcscd', { recursive: true });
  writeFileSync(
    join(confDir, 'vpcd'),
    `FRIENDLYNAME "${RIG_READER_BASE}"\nDEVICENAME   /dev/null:${VPCD_PORT}\nLIBPATH      ${VPCD_DRIVER}\nCHANNELID    ${VPCD_PORT}\n`,
  );
  const socketPath = join(runDir, 'pcscd.comm');
  const logPath = join(dir, 'pcscd.log');
  let proc: ManagedProcess | undefined;
  let previousLogs = '';

  async function start(): Promise<void> {
    if (proc !== undefined && proc.exitInfo() === undefined) return;
    rmSync(socketPath, { force: true });
    // quickack on the namespace's loopback routes: Debian's vpcd writes an APDU's length and body
    // separately without TCP_NODELAY, so every APDU would otherwise wait for our delayed ACK (~40 ms).
    const script =
      'ip link set lo up && ' +
      'ip route replace local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1 && ' +
      'ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1 && ' +
      'mount --bind "$0" /run/pcscd && exec pcscd -f -d $1 -c "$2"';
    proc = startProcess('unshare', ['--net', '--mount', '--propagation', 'private', 'sh', '-c', script, runDir, options.logApdus ? '-a' : '', confDir]);
    const deadline = Date.now() + 10_000;
    // "daemon ready" comes after the readers are added, so PC/SC clients see them from the start.
    while (!proc.output().includes('daemon ready') || !existsSync(socketPath)) {
      const exit = proc.exitInfo();
      if (exit !== undefined) throw new Error(`pcscd exited (${exit.code ?? exit.signal}) while starting:\n${proc.output().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`pcscd did not become ready in 10 s:\n${proc.output().slice(-2000)}`);
      await sleep(20);
    }
  }

  async function stop(): Promise<void> {
    if (proc === undefined) return;
    const p = proc;
    await p.stop(3_000);
    previousLogs += p.output();
    writeFileSync(logPath, previousLogs);
  }

  await start();
  return {
    dir,
    socketPath,
    env: { PCSCLITE_CSOCK_NAME: socketPath },
    readers: RIG_READERS,
    pid: () => (proc?.exitInfo() === undefined ? proc?.pid : undefined),
    running: () => proc !== undefined && proc.exitInfo() === undefined,
    connector(slot: number) {
      return () => {
        const pid = proc?.exitInfo() === undefined ? proc?.pid : undefined;
        if (pid === undefined) return Promise.reject(new Error('pcscd is not running'));
        return connectInNetns(pid, VPCD_PORT + slot);
      };
    },
    log: () => previousLogs + (proc?.output() ?? ''),
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The end of pcscd's log, for failure messages. */
export function pcscdLogTail(rig: PcscRig, lines = 40): string {
  return rig.log().split('\n').slice(-lines).join('\n');
}
