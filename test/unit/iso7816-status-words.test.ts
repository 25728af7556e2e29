import { describe, expect, it } from 'vitest';
import {
  SW,
  describeStatusWord,
  isSuccessStatus,
  isValidStatusWord,
  moreDataStatus,
  responseApdu,
  statusWordOf,
  verifyFailedStatus,
  wrongLeStatus,
} from '../../vsc/iso7816/status-words.js';

describe('status words', () => {
  it.each([
    [0x9000, '9000 success'],
    [0x6100, '6100 256 or more more bytes available (GET RESPONSE)'],
    [0x611a, '611A 26 more bytes available (GET RESPONSE)'],
    [0x6c10, '6C10 wrong Le: repeat with Le=16'],
    [0x63c2, '63C2 verification failed, 2 tries left'],
    [0x6700, '6700 wrong length'],
    [0x6982, '6982 security status not satisfied'],
    [0x6983, '6983 authentication method blocked'],
    [0x6984, '6984 reference data not usable'],
    [0x6985, '6985 conditions of use not satisfied'],
    [0x6a80, '6A80 incorrect parameters in the data field'],
    [0x6a82, '6A82 file or application not found'],
    [0x6a86, '6A86 incorrect parameters P1-P2'],
    [0x6a88, '6A88 referenced data not found'],
    [0x6d00, '6D00 instruction not supported'],
    [0x6e00, '6E00 class not supported'],
    [0x6882, '6882 secure messaging not supported'],
    [0x6f00, '6F00 no precise diagnosis'],
    [0x6f12, '6F12 no precise diagnosis'],
    [0x1234, '1234 not a valid status word'],
  ])('describes %s', (sw, text) => {
    expect(describeStatusWord(sw)).toBe(text);
  });

  it('builds the parameterised codes', () => {
    expect(moreDataStatus(0x1a)).toBe(0x611a);
    expect(moreDataStatus(256)).toBe(0x6100);
    expect(moreDataStatus(5000)).toBe(0x6100);
    expect(wrongLeStatus(16)).toBe(0x6c10);
    expect(wrongLeStatus(256)).toBe(0x6c00);
    expect(verifyFailedStatus(3)).toBe(0x63c3);
    expect(verifyFailedStatus(0)).toBe(0x63c0);
    expect(verifyFailedStatus(99)).toBe(0x63cf);
  });

  it('knows which SW1 values are valid', () => {
    expect(isValidStatusWord(0x90, 0x00)).toBe(true);
    expect(isValidStatusWord(0x61, 0x00)).toBe(true);
    expect(isValidStatusWord(0x6f, 0xff)).toBe(true);
    expect(isValidStatusWord(0x60, 0x00)).toBe(false);
    expect(isValidStatusWord(0x00, 0x00)).toBe(false);
    expect(isValidStatusWord(0xa0, 0x00)).toBe(false);
  });

  it('tells success from errors', () => {
    expect(isSuccessStatus(SW.OK)).toBe(true);
    expect(isSuccessStatus(0x6105)).toBe(true);
    expect(isSuccessStatus(0x63c1)).toBe(true);
    expect(isSuccessStatus(SW.FILE_NOT_FOUND)).toBe(false);
  });

  it('joins data and status', () => {
    expect([...responseApdu(SW.OK, Uint8Array.of(1, 2))]).toEqual([1, 2, 0x90, 0x00]);
    expect([...responseApdu(SW.FILE_NOT_FOUND)]).toEqual([0x6a, 0x82]);
    expect(statusWordOf(Uint8Array.of(1, 0x90, 0))).toBe(0x9000);
    expect(statusWordOf(Uint8Array.of(1))).toBeUndefined();
  });
});
