// One direction of a relayed connection: every byte from `from` goes to `to` in order, unchanged.
// When `to` cannot take more, `from` is paused until it drains, so a slow viewer slows the server
// down instead of filling the proxy's memory. A tap sees each chunk after it was forwarded.
import type { Duplex } from 'node:stream';

export interface RelayOptions {
  tap?: (chunk: Uint8Array) => void;
}

export interface RelayStats {
  bytes: number;
  /** How often `to` pushed back. */
  pauses: number;
}

export function relay(from: Duplex, to: Duplex, options: RelayOptions = {}): RelayStats {
  const stats: RelayStats = { bytes: 0, pauses: 0 };
  const tap = options.tap;
  from.on('data', (chunk: Buffer) => {
    if (to.destroyed || to.writableEnded) return;
    stats.bytes += chunk.byteLength;
    if (!to.write(chunk)) {
      stats.pauses++;
      from.pause();
    }
    tap?.(chunk);
  });
  to.on('drain', () => {
    if (!from.destroyed) from.resume();
  });
  from.once('end', () => {
    if (!to.destroyed && !to.writableEnded) to.end();
  });
  from.resume();
  return stats;
}
