// Little helpers over Uint8Array with explicit little-endian access (the SPICE wire order).

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export function toHex(bytes: Uint8Array, separator = ' '): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(separator);
}

export function fromHex(text: string): Uint8Array {
  const clean = text.replace(/[\s:]/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`not hex: ${text}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Builds a little-endian byte sequence field by field. */
export class LeWriter {
  private readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private at = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.dv = view(this.bytes);
  }

  u8(v: number): this {
    this.dv.setUint8(this.at, v);
    this.at += 1;
    return this;
  }

  u16(v: number): this {
    this.dv.setUint16(this.at, v, true);
    this.at += 2;
    return this;
  }

  u32(v: number): this {
    this.dv.setUint32(this.at, v >>> 0, true);
    this.at += 4;
    return this;
  }

  u64(v: bigint): this {
    this.dv.setBigUint64(this.at, v, true);
    this.at += 8;
    return this;
  }

  raw(b: Uint8Array): this {
    this.bytes.set(b, this.at);
    this.at += b.byteLength;
    return this;
  }

  done(): Uint8Array {
    if (this.at !== this.bytes.byteLength) {
      throw new Error(`LeWriter: wrote ${this.at} of ${this.bytes.byteLength} bytes`);
    }
    return this.bytes;
  }
}
