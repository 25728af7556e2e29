// BER-TLV (ISO 7816-4 §5.2; ISO 8825-1) as used by PIV: tags of 1 to 3 bytes (5FC102),
// definite lengths in the short form or 81/82/83 long forms. Pure.
//
// Tags are numbers whose bytes are the tag's bytes (0x5FC102 is 5F C1 02), as PIV writes
// them. Decoding throws only TlvError: input from a host is never trusted.

export type TlvErrorKind = 'truncated' | 'bad-tag' | 'bad-length' | 'too-long';

export class TlvError extends Error {
  readonly kind: TlvErrorKind;
  constructor(kind: TlvErrorKind, message: string) {
    super(message);
    this.name = 'TlvError';
    this.kind = kind;
  }
}

export interface Tlv {
  readonly tag: number;
  /** A view of the decoded input. */
  readonly value: Uint8Array;
}

/** Tags longer than 3 bytes do not occur in PIV or ISO 7816-4 data objects. */
export const MAX_TAG_BYTES = 3;
/** Lengths up to 83 XX XX XX (16 MiB); nothing on a card comes close. */
export const MAX_VALUE_LENGTH = 0xffffff;

/** The tag's bytes: 0x7C -> [7C], 0x5FC102 -> [5F C1 02]. */
export function encodeTag(tag: number): Uint8Array {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffff) throw new RangeError(`tag ${tag} does not fit in ${MAX_TAG_BYTES} bytes`);
  if (tag <= 0xff) return Uint8Array.of(tag);
  if (tag <= 0xffff) return Uint8Array.of(tag >> 8, tag & 0xff);
  return Uint8Array.of(tag >> 16, (tag >> 8) & 0xff, tag & 0xff);
}

/** Shortest definite length form: XX (< 128), 81 XX, 82 XX XX or 83 XX XX XX. */
export function encodeLength(length: number): Uint8Array {
  if (!Number.isInteger(length) || length < 0 || length > MAX_VALUE_LENGTH) throw new RangeError(`TLV length ${length} out of range`);
  if (length < 0x80) return Uint8Array.of(length);
  if (length <= 0xff) return Uint8Array.of(0x81, length);
  if (length <= 0xffff) return Uint8Array.of(0x82, length >> 8, length & 0xff);
  return Uint8Array.of(0x83, length >> 16, (length >> 8) & 0xff, length & 0xff);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** One TLV; `value` may be a list of already encoded TLVs for a constructed object. */
export function encodeTlv(tag: number, value: Uint8Array | readonly Uint8Array[] = new Uint8Array(0)): Uint8Array {
  const body = value instanceof Uint8Array ? value : concatBytes(value);
  return concatBytes([encodeTag(tag), encodeLength(body.length), body]);
}

/** Decodes the TLV at `offset` and returns it with the offset just after it. */
export function decodeTlvAt(bytes: Uint8Array, offset: number): { tlv: Tlv; next: number } {
  let pos = offset;
  const first = bytes[pos];
  if (first === undefined) throw new TlvError('truncated', `no tag at offset ${offset}`);
  pos += 1;
  let tag = first;
  if ((first & 0x1f) === 0x1f) {
    // Multi-byte tag: subsequent bytes have bit 8 set while more follow.
    for (;;) {
      const next = bytes[pos];
      if (next === undefined) throw new TlvError('truncated', `tag at offset ${offset} is cut short`);
      pos += 1;
      if (pos - offset > MAX_TAG_BYTES) throw new TlvError('bad-tag', `tag at offset ${offset} is longer than ${MAX_TAG_BYTES} bytes`);
      tag = tag * 0x100 + next;
      if ((next & 0x80) === 0) break;
    }
  }
  const lengthByte = bytes[pos];
  if (lengthByte === undefined) throw new TlvError('truncated', `tag ${tagHex(tag)} has no length`);
  pos += 1;
  let length = lengthByte;
  if (lengthByte > 0x80) {
    const count = lengthByte & 0x7f;
    if (count > 3) throw new TlvError('bad-length', `tag ${tagHex(tag)} has a ${count}-byte length`);
    length = 0;
    for (let i = 0; i < count; i += 1) {
      const b = bytes[pos];
      if (b === undefined) throw new TlvError('truncated', `length of tag ${tagHex(tag)} is cut short`);
      pos += 1;
      length = length * 0x100 + b;
    }
  } else if (lengthByte === 0x80) {
    throw new TlvError('bad-length', `tag ${tagHex(tag)} uses the indefinite length form`);
  }
  if (pos + length > bytes.length) {
    throw new TlvError('truncated', `tag ${tagHex(tag)} announces ${length} bytes, ${bytes.length - pos} are there`);
  }
  return { tlv: { tag, value: bytes.subarray(pos, pos + length) }, next: pos + length };
}

/** All TLVs that make up `bytes` (one nesting level), in order. */
export function decodeTlvList(bytes: Uint8Array, maxItems = 1024): Tlv[] {
  const out: Tlv[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (out.length >= maxItems) throw new TlvError('too-long', `more than ${maxItems} TLVs`);
    const { tlv, next } = decodeTlvAt(bytes, offset);
    out.push(tlv);
    offset = next;
  }
  return out;
}

/** Exactly one TLV filling `bytes`. */
export function decodeSingleTlv(bytes: Uint8Array): Tlv {
  const { tlv, next } = decodeTlvAt(bytes, 0);
  if (next !== bytes.length) throw new TlvError('too-long', `${bytes.length - next} bytes after tag ${tagHex(tlv.tag)}`);
  return tlv;
}

export function findTlv(list: readonly Tlv[], tag: number): Tlv | undefined {
  return list.find((tlv) => tlv.tag === tag);
}

/** True for tags whose first byte has bit 6 set: the value is itself a list of TLVs. */
export function isConstructedTag(tag: number): boolean {
  const first = tag > 0xffff ? tag >> 16 : tag > 0xff ? tag >> 8 : tag;
  return (first & 0x20) !== 0;
}

function tagHex(tag: number): string {
  return tag.toString(16).toUpperCase().padStart(2, '0');
}
