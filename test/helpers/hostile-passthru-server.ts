// A loopback TCP server playing QEMU's ccid-card-passthru socket (big-endian VSC, raw stream)
// that misbehaves: random bytes, mutated valid streams, huge lengths, truncation, unknown types,
// floods. Each accepted connection takes the plan `planFor` returns.
import net from 'node:net';
import { encodeVscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';
import { concatBytes } from '../../spice/bytes.js';
import { Rng, mutate, validVscStream } from './hostile-spice-server.js';

export interface PassthruPlan {
  /** Wait for the client's first bytes (its VSC_Init) before writing, as QEMU does. */
  waitForClient: boolean;
  data: Uint8Array[];
  end: 'eof' | 'destroy' | 'hold';
}

export interface HostilePassthruServer {
  port: number;
  close(): Promise<void>;
}

function beHeader(type: number, readerId: number, length: number): Uint8Array {
  const h = new Uint8Array(12);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, false);
  dv.setUint32(4, readerId, false);
  dv.setUint32(8, length, false);
  return h;
}

/** One piece of misbehaviour on the raw big-endian VSC stream. */
export function hostilePassthruBytes(rng: Rng, floodMax = 1000): Uint8Array {
  const valid = validVscStream(rng, 'be');
  switch (rng.int(8)) {
    case 0:
      return rng.bytes(rng.int(512));
    case 1:
    case 2:
      return mutate(rng, valid);
    case 3: // a header whose length disagrees with what follows
      return concatBytes([valid, beHeader(rng.int(12), rng.int(2), 1 + rng.int(100)), rng.bytes(rng.int(20))]);
    case 4: // huge announced length
      return concatBytes([valid, beHeader(rng.pick([VscMsgType.Apdu, VscMsgType.Atr, 77]), 0, rng.pick([0x10001, 0x7fffffff, 0xffffffff])), rng.bytes(rng.int(64))]);
    case 5: // truncated
      return valid.subarray(0, rng.int(valid.byteLength));
    case 6: { // unknown message types
      const parts = [valid];
      for (let i = 0; i < 1 + rng.int(10); i++) {
        const payload = rng.bytes(rng.int(40));
        parts.push(concatBytes([beHeader(10 + rng.int(0xfffffff0), rng.int(3), payload.byteLength), payload]));
      }
      return concatBytes(parts);
    }
    default: { // a flood of Flush / Error / APDU messages
      const one = encodeVscMessage(rng.pick([{ type: VscMsgType.Flush, readerId: 0 }, { type: VscMsgType.Error, readerId: 0, code: 0 }, { type: VscMsgType.Apdu, readerId: 0, data: Uint8Array.of(0, 0xb0, 0, 0, 4) }] as const), 'be');
      const parts = [valid];
      for (let i = 0; i < floodMax / 5 + rng.int((floodMax * 4) / 5); i++) parts.push(one);
      return concatBytes(parts);
    }
  }
}

export async function startHostilePassthruServer(planFor: () => PassthruPlan): Promise<HostilePassthruServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const plan = planFor();
    let started = false;
    const go = (): void => {
      if (started) return;
      started = true;
      for (const d of plan.data) if (!socket.destroyed) socket.write(d);
      if (plan.end === 'eof') socket.end();
      else if (plan.end === 'destroy') socket.destroy();
    };
    socket.on('data', () => go());
    if (!plan.waitForClient) go();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
