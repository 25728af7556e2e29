// Incremental parser for SPICE data messages after the link: mini header (u16 type, u32 size) or
// full header (u64 serial, u16 type, u32 size, u32 sub_list). Accepts bytes split anywhere.
// Bodies that lie inside one chunk are handed out as views, without copying.
import { FULL_HEADER_SIZE, MINI_HEADER_SIZE } from './constants.js';
import { LeWriter, concatBytes, view } from './bytes.js';

/** Above this a message is treated as an attack or a broken stream, and the channel is dropped. */
export const MAX_MESSAGE_SIZE = 16 * 1024 * 1024;

export interface Frame {
  type: number;
  /** Size announced in the header. */
  size: number;
  /** The body, or only its first `retain` bytes when the caller asked to keep less (see retainBytes). */
  body: Uint8Array;
  /** Serial number (full header only). */
  serial?: bigint;
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export interface FrameParserOptions {
  miniHeader: boolean;
  maxMessageSize?: number;
  /**
   * How many body bytes to keep for a message type; the rest is skipped without being buffered.
   * Used so a 256 000-byte PING keeps only its 12-byte id and timestamp.
   */
  retainBytes?: (type: number, size: number) => number;
}

type State = 'header' | 'body';

export class FrameParser {
  private readonly headerSize: number;
  private readonly miniHeader: boolean;
  private readonly maxMessageSize: number;
  private readonly retainBytes: (type: number, size: number) => number;
  private state: State = 'header';
  private dead: FrameError | undefined;
  private readonly headerBuf: Uint8Array;
  private headerFill = 0;
  private type = 0;
  private size = 0;
  private serial: bigint | undefined;
  private retain = 0;
  // Pieces of a body spread over several chunks, kept as views and joined once complete, so memory
  // follows the bytes that really arrived rather than the size a peer announced.
  private bodyParts: Uint8Array[] = [];
  private bodyFill = 0;
  private skipped = 0;

  constructor(options: FrameParserOptions) {
    this.miniHeader = options.miniHeader;
    this.headerSize = options.miniHeader ? MINI_HEADER_SIZE : FULL_HEADER_SIZE;
    this.headerBuf = new Uint8Array(this.headerSize);
    this.maxMessageSize = options.maxMessageSize ?? MAX_MESSAGE_SIZE;
    this.retainBytes = options.retainBytes ?? ((_t, size) => size);
  }

  /** Feeds bytes; returns the messages completed by them. Throws FrameError once the stream is broken. */
  push(chunk: Uint8Array): Frame[] {
    if (this.dead) throw this.dead;
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.byteLength) {
      if (this.state === 'header') {
        const need = this.headerSize - this.headerFill;
        if (this.headerFill === 0 && chunk.byteLength - at >= this.headerSize) {
          this.readHeader(chunk.subarray(at, at + this.headerSize));
          at += this.headerSize;
        } else {
          const n = Math.min(need, chunk.byteLength - at);
          this.headerBuf.set(chunk.subarray(at, at + n), this.headerFill);
          this.headerFill += n;
          at += n;
          if (this.headerFill < this.headerSize) break;
          this.headerFill = 0;
          this.readHeader(this.headerBuf);
        }
        if (this.size === 0) {
          frames.push(this.frame(new Uint8Array(0)));
          continue;
        }
        this.state = 'body';
        continue;
      }
      // body
      const available = chunk.byteLength - at;
      if (this.bodyFill === 0 && this.skipped === 0 && available >= this.size) {
        // Whole body in this chunk: hand out a view.
        frames.push(this.frame(chunk.subarray(at, at + this.retain)));
        at += this.size;
        this.state = 'header';
        continue;
      }
      const remainingBody = this.size - this.bodyFill - this.skipped;
      const n = Math.min(remainingBody, available);
      const keepNow = Math.max(0, Math.min(n, this.retain - this.bodyFill));
      if (keepNow > 0) {
        this.bodyParts.push(chunk.subarray(at, at + keepNow));
        this.bodyFill += keepNow;
      }
      this.skipped += n - keepNow;
      at += n;
      if (this.bodyFill + this.skipped === this.size) {
        frames.push(this.frame(concatBytes(this.bodyParts)));
        this.bodyParts = [];
        this.bodyFill = 0;
        this.skipped = 0;
        this.state = 'header';
      }
    }
    return frames;
  }

  /** True when the stream stopped between messages (a clean end). */
  get atBoundary(): boolean {
    return this.state === 'header' && this.headerFill === 0;
  }

  private readHeader(h: Uint8Array): void {
    const dv = view(h);
    if (this.miniHeader) {
      this.serial = undefined;
      this.type = dv.getUint16(0, true);
      this.size = dv.getUint32(2, true);
    } else {
      this.serial = dv.getBigUint64(0, true);
      this.type = dv.getUint16(8, true);
      this.size = dv.getUint32(10, true);
    }
    if (this.size > this.maxMessageSize) {
      this.dead = new FrameError(`the server announced a message of ${this.size} bytes (type ${this.type}), above the ${this.maxMessageSize}-byte limit`);
      throw this.dead;
    }
    this.retain = Math.max(0, Math.min(this.size, Math.floor(this.retainBytes(this.type, this.size))));
  }

  private frame(body: Uint8Array): Frame {
    const f: Frame = { type: this.type, size: this.size, body };
    if (this.serial !== undefined) f.serial = this.serial;
    return f;
  }
}

/** Serialises one message; the full header needs the sender's serial counter. */
export function encodeFrame(type: number, body: Uint8Array, header: { miniHeader: true } | { miniHeader: false; serial: bigint }): Uint8Array {
  if (header.miniHeader) {
    return new LeWriter(MINI_HEADER_SIZE + body.byteLength).u16(type).u32(body.byteLength).raw(body).done();
  }
  return new LeWriter(FULL_HEADER_SIZE + body.byteLength).u64(header.serial).u16(type).u32(body.byteLength).u32(0).raw(body).done();
}
