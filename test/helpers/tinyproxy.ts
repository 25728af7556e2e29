import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeExit, startProcess, type ManagedProcess } from './process.js';
import { freePort, LOOPBACK, waitForPort } from './ports.js';

export const TINYPROXY_BINARY = 'tinyproxy';

const START_ATTEMPTS = 3;
const PORT_IN_USE = /Could not create listening sockets/;

export interface TinyproxyOptions {
  /** Ports CONNECT may reach; CONNECT to any other port gets 403. Must not be empty (tinyproxy would allow all). */
  connectPorts: readonly number[];
  /** Require `Proxy-Authorization: Basic` with these credentials (tinyproxy answers 407 otherwise). */
  auth?: { username: string; password: string };
  startTimeoutMs?: number;
}

export interface Tinyproxy {
  readonly host: string;
  readonly port: number;
  /** `http://127.0.0.1:PORT` (no credentials), the form a `.vv` `proxy=` key takes. */
  readonly url: string;
  readonly dir: string;
  readonly logPath: string;
  /** tinyproxy's log file so far (connections, CONNECT targets, auth failures). */
  log(): Promise<string>;
  output(): string;
  stop(): Promise<void>;
}

/** tinyproxy's config values are bare words or double-quoted strings with no escapes: refuse anything else. */
function configWord(value: string, what: string): string {
  if (!/^[A-Za-z0-9._~!$&'()*+,;=:@%/-]+$/.test(value)) throw new Error(`${what} has characters tinyproxy.conf cannot hold`);
  return value;
}

export function buildTinyproxyConfig(options: TinyproxyOptions, port: number, logPath: string): string {
  if (options.connectPorts.length === 0) throw new Error('connectPorts must not be empty');
  const lines = [
    `Port ${port}`,
    `Listen ${LOOPBACK}`,
    'Timeout 600',
    `LogFile "${configWord(logPath, 'log path')}"`,
    'LogLevel Info',
    'MaxClients 100',
    'DisableViaHeader Yes',
    // Running as root, tinyproxy wants a user to switch to; staying who we are keeps the temp dir writable.
    ...(typeof process.getuid === 'function' ? [`User ${process.getuid()}`] : []),
    ...(typeof process.getgid === 'function' ? [`Group ${process.getgid()}`] : []),
    ...options.connectPorts.map((connectPort) => `ConnectPort ${connectPort}`),
  ];
  if (options.auth !== undefined) {
    lines.push(`BasicAuth ${configWord(options.auth.username, 'username')} ${configWord(options.auth.password, 'password')}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Starts Debian's tinyproxy in the foreground on a free loopback port and waits until it listens. */
export async function startTinyproxy(options: TinyproxyOptions): Promise<Tinyproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'spice-tinyproxy-'));
  try {
    const logPath = join(dir, 'tinyproxy.log');
    const configPath = join(dir, 'tinyproxy.conf');
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      await writeFile(configPath, buildTinyproxyConfig(options, port, logPath), { mode: 0o600 });
      const child = startProcess(TINYPROXY_BINARY, ['-d', '-c', configPath], { cwd: dir });
      const died = new AbortController();
      void child.exited.then((info) => died.abort(new Error(`tinyproxy ${describeExit(info)}`)));
      try {
        await waitForPort(port, { timeoutMs: options.startTimeoutMs ?? 10_000, signal: died.signal });
        return makeProxy(dir, port, logPath, child);
      } catch (error) {
        await child.stop(1000);
        const output = child.output().trim();
        if (PORT_IN_USE.test(output) && attempt < START_ATTEMPTS) continue;
        const reason = error instanceof Error ? error.message : String(error);
        const log = await readFile(logPath, 'utf8').catch(() => '');
        throw new Error(`tinyproxy did not come up: ${reason}\noutput:\n${output === '' ? '(none)' : output}\nlog:\n${log}`,
          { cause: error });
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

function makeProxy(dir: string, port: number, logPath: string, child: ManagedProcess): Tinyproxy {
  let stopping: Promise<void> | undefined;
  return {
    host: LOOPBACK,
    port,
    url: `http://${LOOPBACK}:${port}`,
    dir,
    logPath,
    log: () => readFile(logPath, 'utf8').catch(() => ''),
    output: () => child.output(),
    stop() {
      stopping ??= (async () => {
        await child.stop(3000);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
