// The VM side killed and restarted under an APDU load, several times: a ServeBridge passthru session
// with the demo card against a ccid-card-passthru socket played here (big-endian VSC as QEMU speaks
// it), on the same port each time. QEMU keeps one command in flight per reader, so every answer the
// socket gets must match the one pending command of that same connection: an answer with nothing
// pending would be an answer sent twice, or an old link's answer on a new link. On the bridge side,
// every command it received (its trace) is counted answered or failed exactly once.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStatus } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { decodeTrace } from '../../src/trace/trace-format.js';
import { encodeVscMessage, VscStreamParser, type VscMessage } from '../../vsc/codec.js';
import { VSC_MAGIC_BYTES, VSC_VERSION, VscErrorCode, VscMsgType } from '../../vsc/constants.js';
import { freePorts } from '../helpers/ports.js';

const RESTARTS = 6;
/** SELECT of the PIV application: the demo card answers it with 90 00 and its properties. */
const SELECT_PIV = Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x09, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00]);
const GET_CHUID = Uint8Array.from([0x00, 0xcb, 0x3f, 0xff, 0x05, 0x5c, 0x03, 0x5f, 0xc1, 0x02, 0x00]);

interface ConnectionLog {
  id: number;
  sent: number;
  answered: number;
  failed: number;
  /** Answers that came with no command pending on this connection. */
  stray: number;
  /** Commands pending when the connection died (QEMU fails them for the guest). */
  lost: number;
}

/** QEMU's ccid-card-passthru socket chardev, with a guest that sends commands back to back. */
class CommandLoopSocket {
  readonly connections: ConnectionLog[] = [];
  private server: net.Server | undefined;
  private socket: net.Socket | undefined;
  private pending = false;
  private carding = false;
  private nextCommand = 0;

  constructor(readonly port: number) {}

  get current(): ConnectionLog | undefined {
    return this.socket !== undefined && !this.socket.destroyed ? this.connections.at(-1) : undefined;
  }

  async start(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** QEMU dies: the socket is reset at once, with a command in flight if there is one. */
  async kill(): Promise<void> {
    const log = this.current;
    if (log !== undefined && this.pending) log.lost += 1;
    this.pending = false;
    this.socket?.resetAndDestroy();
    this.socket = undefined;
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.socket?.destroy();
    this.socket = socket;
    this.pending = false;
    this.carding = false;
    const log: ConnectionLog = { id: this.connections.length + 1, sent: 0, answered: 0, failed: 0, stray: 0, lost: 0 };
    this.connections.push(log);
    const parser = new VscStreamParser('be');
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket === socket && this.pending) log.lost += 1;
      if (this.socket === socket) this.pending = false;
    });
    socket.on('data', (chunk: Buffer) => {
      for (const r of parser.push(chunk)) if (r.ok && this.socket === socket) this.onMessage(socket, log, r.message);
    });
  }

  private write(socket: net.Socket, message: VscMessage): void {
    if (!socket.destroyed) socket.write(encodeVscMessage(message, 'be'));
  }

  private onMessage(socket: net.Socket, log: ConnectionLog, message: VscMessage): void {
    const ack = (): void => this.write(socket, { type: VscMsgType.Error, readerId: 0, code: VscErrorCode.Success });
    switch (message.type) {
      case VscMsgType.Init:
        this.write(socket, { type: VscMsgType.Init, readerId: 0, magic: Uint8Array.from(VSC_MAGIC_BYTES), version: VSC_VERSION, capabilities: [0] });
        return;
      case VscMsgType.ReaderAdd:
      case VscMsgType.ReaderRemove:
        ack();
        return;
      case VscMsgType.Atr:
        ack();
        this.carding = true;
        this.sendCommand(socket, log);
        return;
      case VscMsgType.CardRemove:
        // A command still pending gets its answer (an error) from the bridge all the same.
        ack();
        this.carding = false;
        return;
      case VscMsgType.Apdu:
      case VscMsgType.Error:
        if (!this.pending) {
          log.stray += 1;
          return;
        }
        this.pending = false;
        if (message.type === VscMsgType.Apdu) log.answered += 1;
        else log.failed += 1;
        this.sendCommand(socket, log);
        return;
      default:
        return;
    }
  }

  private sendCommand(socket: net.Socket, log: ConnectionLog): void {
    if (!this.carding || this.pending || socket.destroyed) return;
    this.pending = true;
    log.sent += 1;
    this.write(socket, { type: VscMsgType.Apdu, readerId: 0, data: this.nextCommand++ % 2 === 0 ? SELECT_PIV : GET_CHUID });
  }
}

describe('server killed and restarted under an APDU load', () => {
  let dir: string;
  let bridge: ServeBridge;
  let vm: CommandLoopSocket;
  const statuses: SessionStatus[] = [];

  const status = (): SessionStatus => bridge.snapshot().sessions[0]!;
  const until = async (what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(status())}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'server-restart-'));
    const [port] = await freePorts(1);
    vm = new CommandLoopSocket(port!);
    await vm.start();
    bridge = new ServeBridge({ log: { log: () => undefined }, version: 'test', cardDirectory: dir, pcsc: false });
    bridge.subscribe((e: ControlEvent) => {
      if (e.type === 'session') statuses.push(e.data.status);
    });
  });

  afterAll(async () => {
    await bridge?.close();
    await vm?.kill();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it(`recovers from ${RESTARTS} kills, answering every command it received exactly once`, async () => {
    const trace = join(dir, 'session.trace');
    await bridge.addSession({ name: 'load', mode: 'passthru', target: `127.0.0.1:${vm.port}`, card: { kind: 'demo' }, trace, reconnect: { initialMs: 100, maxMs: 400 } });
    for (let round = 1; round <= RESTARTS; round++) {
      await until(`round ${round}: active`, () => status().phase === 'active' && status().vm.cardInserted);
      const log = vm.current;
      expect(log?.id).toBe(round);
      // Let a load build up, then kill the VM at a varying point of an exchange.
      const target = 30 + round * 7;
      await until(`round ${round}: ${target} answers`, () => (vm.current?.answered ?? 0) >= target);
      await new Promise((r) => setImmediate(r));
      await vm.kill();
      await until(`round ${round}: waiting`, () => status().phase === 'waiting');
      expect(status().problem?.code).toBe('network');
      expect(status().vm).toEqual({ readerAdded: false, cardInserted: false });
      // Let it fail a dial or two against the dead port before the VM is back on the same port.
      await until(`round ${round}: a failed redial`, () => (status().retry?.attempt ?? 0) >= 2);
      await vm.start();
    }
    await until('active after the last restart', () => status().phase === 'active' && status().vm.cardInserted);
    await until('load after the last restart', () => (vm.current?.answered ?? 0) >= 10);
    await bridge.request('session.stop', { name: 'load' });
    const final = status();
    expect(final.phase).toBe('stopped');
    expect(final.reconnects).toBeGreaterThanOrEqual(RESTARTS);

    // The VM side: no answer without its command, on any connection.
    for (const c of vm.connections) {
      expect(c.stray, `connection ${c.id}: answers with no command pending`).toBe(0);
      // One command in flight at a time: each was answered, failed, or lost with its connection.
      expect(c.answered + c.failed + c.lost, `connection ${c.id}`).toBe(c.sent);
    }
    expect(vm.connections.length).toBe(RESTARTS + 1);
    // Every kill caught a command in flight.
    expect(vm.connections.slice(0, RESTARTS).map((c) => c.lost)).toEqual(Array(RESTARTS).fill(1));

    // The bridge side: every command it received was answered or failed once, per its counters.
    const { messages } = decodeTrace(new Uint8Array(await readFile(trace)));
    const received = messages.filter((m) => m.dir === 'in' && m.type === VscMsgType.Apdu).length;
    const answeredOut = messages.filter((m) => m.dir === 'out' && (m.type === VscMsgType.Apdu || m.type === VscMsgType.Error)).length;
    expect(received).toBeGreaterThan(RESTARTS * 30);
    // One answer per command, each on the link the command came on (a dead link's socket drops it).
    expect(answeredOut).toBe(received);
    // The card saw no command twice; a command that came while the reader was being removed is failed by the link without it.
    expect(final.counters.answered + final.counters.failed).toBeLessThanOrEqual(received);
    const sentByVm = vm.connections.reduce((n, c) => n + c.sent, 0);
    expect(received).toBeLessThanOrEqual(sentByVm);
    const answeredByVm = vm.connections.reduce((n, c) => n + c.answered + c.failed, 0);
    expect(answeredByVm).toBeLessThanOrEqual(received);

    // Each outage was reported, and each recovery went through connecting to active.
    const phases = statuses.map((s) => s.phase).filter((p, i, all) => i === 0 || all[i - 1] !== p);
    expect(phases.filter((p) => p === 'waiting').length).toBeGreaterThanOrEqual(RESTARTS);
    expect(phases.filter((p) => p === 'active').length).toBeGreaterThanOrEqual(RESTARTS + 1);
  }, 120_000);
});
