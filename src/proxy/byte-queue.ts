// Bytes received but not yet consumed, for parsers that wait for a whole field. Link-stage sizes
// only (a few hundred bytes), so joining on demand is cheap.
import { concatBytes } from '../../spice/bytes.js';

export class ByteQueue {
  private parts: Uint8Array[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.parts.push(chunk);
    this.size += chunk.byteLength;
  }

  peek(n: number): Uint8Array {
    return this.joined().subarray(0, n);
  }

  /** A copy: socket chunks are Buffers, whose slice() is a view that later edits would write through. */
  take(n: number): Uint8Array {
    const all = this.joined();
    const head = new Uint8Array(all.subarray(0, n));
    const tail = all.subarray(n);
    this.parts = tail.byteLength > 0 ? [tail] : [];
    this.size = tail.byteLength;
    return head;
  }

  takeAll(): Uint8Array {
    return this.take(this.size);
  }

  private joined(): Uint8Array {
    if (this.parts.length !== 1) this.parts = this.size > 0 ? [concatBytes(this.parts)] : [];
    return this.parts[0] ?? new Uint8Array(0);
  }
}
