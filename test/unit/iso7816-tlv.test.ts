import { describe, expect, it } from 'vitest';
import {
  TlvError,
  decodeSingleTlv,
  decodeTlvAt,
  decodeTlvList,
  encodeLength,
  encodeTag,
  encodeTlv,
  findTlv,
  isConstructedTag,
} from '../../vsc/iso7816/tlv.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('BER-TLV encoding', () => {
  it.each([
    [0x53, '53'],
    [0x7f61, '7f61'],
    [0x5fc102, '5fc102'],
  ])('tag %i', (tag, expected) => {
    expect(toHex(encodeTag(tag))).toBe(expected);
  });

  it.each([
    [0, '00'],
    [0x7f, '7f'],
    [0x80, '8180'],
    [0xff, '81ff'],
    [0x100, '820100'],
    [0xffff, '82ffff'],
    [0x10000, '83010000'],
  ])('length %i', (length, expected) => {
    expect(toHex(encodeLength(length))).toBe(expected);
  });

  it('nests constructed objects', () => {
    const chuid = encodeTlv(0x53, [encodeTlv(0x34, hex('00112233')), encodeTlv(0xfe)]);
    expect(toHex(chuid)).toBe('5308340400112233fe00');
  });

  it('refuses values that cannot be encoded', () => {
    expect(() => encodeTag(0x1000000)).toThrow(RangeError);
    expect(() => encodeLength(-1)).toThrow(RangeError);
    expect(() => encodeLength(0x1000000)).toThrow(RangeError);
  });

  it('round-trips every length form', () => {
    for (const length of [0, 1, 127, 128, 255, 256, 1000, 65535, 65536]) {
      const value = new Uint8Array(length).map((_, i) => i & 0xff);
      const decoded = decodeSingleTlv(encodeTlv(0x5fc105, value));
      expect(decoded.tag).toBe(0x5fc105);
      expect(decoded.value).toEqual(value);
    }
  });
});

describe('BER-TLV decoding', () => {
  it('reads multi-byte tags and long lengths', () => {
    const { tlv, next } = decodeTlvAt(hex('5f c1 02 81 02 aa bb ff'), 0);
    expect(tlv.tag).toBe(0x5fc102);
    expect(toHex(tlv.value)).toBe('aabb');
    expect(next).toBe(7);
  });

  it('lists and finds siblings', () => {
    const list = decodeTlvList(hex('82 00 81 03 01 02 03'));
    expect(list.map((t) => t.tag)).toEqual([0x82, 0x81]);
    expect(toHex(findTlv(list, 0x81)?.value ?? new Uint8Array())).toBe('010203');
    expect(findTlv(list, 0x85)).toBeUndefined();
  });

  it.each([
    ['no tag', '', 'truncated'],
    ['tag cut short', '5f', 'truncated'],
    ['tag too long', '5f c1 82 83 01 00', 'bad-tag'],
    ['no length', '53', 'truncated'],
    ['indefinite length', '53 80 00 00', 'bad-length'],
    ['4-byte length', '53 84 00 00 00 01 00', 'bad-length'],
    ['length cut short', '53 82 01', 'truncated'],
    ['value cut short', '53 05 01 02', 'truncated'],
    ['value cut short, long form', '53 82 01 00 00', 'truncated'],
  ])('%s -> TlvError %s', (_name, input, kind) => {
    let caught: unknown;
    try {
      decodeTlvAt(hex(input), 0);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(TlvError);
    expect((caught as TlvError).kind).toBe(kind);
  });

  it('refuses trailing bytes after a single TLV', () => {
    expect(() => decodeSingleTlv(hex('53 00 00'))).toThrow(TlvError);
  });

  it('caps the number of siblings', () => {
    expect(() => decodeTlvList(new Uint8Array(20), 5)).toThrow(TlvError);
  });

  it('throws nothing but TlvError on random input', () => {
    let seed = 1;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed >> 16;
    };
    for (let i = 0; i < 20_000; i += 1) {
      const bytes = new Uint8Array(random() % 12).map(() => random() & 0xff);
      try {
        decodeTlvList(bytes);
      } catch (error) {
        expect(error).toBeInstanceOf(TlvError);
      }
    }
  });

  it('knows constructed tags', () => {
    expect(isConstructedTag(0x7c)).toBe(true);
    expect(isConstructedTag(0x53)).toBe(false);
    expect(isConstructedTag(0x7f61)).toBe(true);
    expect(isConstructedTag(0x5fc102)).toBe(false);
  });
});
