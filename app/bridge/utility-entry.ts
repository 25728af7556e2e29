/// <reference types="electron" />
// The bridge inside the desktop app: an Electron utility process running the same startServe as the
// CLI `serve`, on loopback, without a connection file (main gets url and token by message). It listens
// on the port main remembered, when it can: the page's origin, and so its localStorage (recent
// connections, theme), stays the same from one start to the next. A native crash in PC/SC ends only
// this process; main starts it again.
import { startServe, ServeStartError, type RunningServe } from '../../src/serve/serve.js';
import { ServeLogger } from '../../src/serve/logger.js';
import { ControlError } from '../../src/control/service.js';
import { isToBridge, type FromBridge, type ToBridge } from '../shared/bridge-messages.js';
import { parseBridgeArgs } from './bridge-args.js';

const port = process.parentPort;
const post = (message: FromBridge): void => port.postMessage(message);

let running: RunningServe | undefined;
let stopping = false;

function stop(): void {
  if (stopping) return;
  stopping = true;
  // Before the bridge is up there is nothing to undo; afterwards close() takes the cards out of the VMs.
  if (running === undefined) return;
  void running.close().finally(() => process.exit(0));
}

function carryOut(message: Extract<ToBridge, { kind: 'request' }>, serve: RunningServe): void {
  const { id } = message;
  // The union of request types is correlated with its params; the bridge checks params itself.
  serve.bridge.request(message.type, message.params as never).then(
    (result) => post({ kind: 'result', id, type: message.type, result } as FromBridge),
    (error: unknown) =>
      post({
        kind: 'error',
        id,
        error: error instanceof ControlError ? error.toBody() : { code: 'internal', message: 'The bridge failed to carry out the request; see its log.' },
      }),
  );
}

// Listening from the start: a Quit can arrive while the bridge is still starting.
port.on('message', (envelope) => {
  const message: unknown = envelope.data;
  if (!isToBridge(message)) return;
  if (message.kind === 'stop') stop();
  else if (running !== undefined && !stopping) carryOut(message, running);
  else post({ kind: 'error', id: message.id, error: { code: 'internal', message: 'The bridge is not running.' } });
});

const HOST = '127.0.0.1';

function portOf(url: string): number {
  return Number(new URL(url).port);
}

async function main(): Promise<void> {
  const args = parseBridgeArgs(process.argv.slice(2));
  const log = new ServeLogger();
  const start = (port: number): Promise<RunningServe> =>
    startServe({
      control: { host: HOST, port, connectionFile: false },
      log,
      version: args.version,
      ...(args.cardDirectory !== undefined ? { cardDirectory: args.cardDirectory } : {}),
    });
  let takenPort: number | undefined;
  try {
    if (args.port !== undefined) {
      try {
        running = await start(args.port);
      } catch (error) {
        // Another program has it (or it cannot be bound any more): any free port does, at the cost of
        // the page's localStorage, which belongs to the old address. startServe left nothing running.
        if (!(error instanceof ServeStartError) || stopping) throw error;
        takenPort = args.port;
      }
    }
    running ??= await start(0);
  } catch (error) {
    if (stopping) process.exit(0);
    post({ kind: 'fatal', message: error instanceof Error ? error.message : String(error) });
    process.exit(1);
  }
  if (takenPort !== undefined) {
    running.log.log(
      'warn',
      `The control port ${HOST}:${takenPort} the app used last time is taken by another program; the bridge listens on ${HOST}:${portOf(running.url)} instead. The page's address changed with it, so its recent connections and theme choice start empty (the app uses this port from now on).`,
    );
  }
  if (stopping) {
    stopping = false;
    stop();
    return;
  }
  running.bridge.subscribe((event) => post({ kind: 'event', event }));
  post({ kind: 'ready', url: running.url, token: running.token });
}

void main();
