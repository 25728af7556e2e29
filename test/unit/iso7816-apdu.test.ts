import { describe, expect, it } from 'vitest';
import { decodeClass, encodeCommandApdu, parseCommandApdu, type CommandApdu } from '../../vsc/iso7816/apdu.js';
import { SW } from '../../vsc/iso7816/status-words.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('parseCommandApdu', () => {
  const ok: ReadonlyArray<readonly [string, string, Partial<Omit<CommandApdu, 'data'>> & { data: string }]> = [
    ['case 1', '00 20 00 80', { apduCase: 1, ne: undefined, data: '' }],
    ['case 2, Le=00 means 256', '00 c0 00 00 00', { apduCase: 2, ne: 256, data: '' }],
    ['case 2, Le=1a', '00 c0 00 00 1a', { apduCase: 2, ne: 0x1a, data: '' }],
    ['case 3', '00 a4 04 00 02 3f 00', { apduCase: 3, ne: undefined, data: '3f00' }],
    ['case 4, Le=00', '00 a4 04 00 02 3f 00 00', { apduCase: 4, ne: 256, data: '3f00' }],
    ['case 4, Le=10', '00 a4 04 00 02 3f 00 10', { apduCase: 4, ne: 16, data: '3f00' }],
    ['case 3, 255 bytes', `00 87 07 9a ff ${'11 '.repeat(255)}`, { apduCase: 3, ne: undefined, data: '11'.repeat(255) }],
  ];
  it.each(ok)('%s', (_name, input, expected) => {
    const result = parseCommandApdu(hex(input));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.apdu.apduCase).toBe(expected.apduCase);
    expect(result.apdu.ne).toBe(expected.ne);
    expect(toHex(result.apdu.data)).toBe(expected.data);
    expect([result.apdu.cla, result.apdu.ins, result.apdu.p1, result.apdu.p2]).toEqual([...hex(input).subarray(0, 4)]);
  });

  const bad: ReadonlyArray<readonly [string, string]> = [
    ['empty', ''],
    ['3 bytes', '00 a4 04'],
    ['Lc longer than the data', '00 a4 04 00 05 a0 00'],
    ['two bytes after the data', '00 a4 04 00 01 a0 00 00'],
    ['extended case 2', '00 cb 3f ff 00 01 00'],
    ['extended case 3', '00 87 07 9a 00 01 00 ' + '00 '.repeat(256)],
    ['extended case 4', '00 87 07 9a 00 00 02 aa bb 00 00'],
  ];
  it.each(bad)('refuses %s with 6700', (_name, input) => {
    const result = parseCommandApdu(hex(input));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.sw).toBe(SW.WRONG_LENGTH);
  });

  it('returns views of the input, not copies', () => {
    const raw = hex('00 a4 04 00 02 3f 00');
    const result = parseCommandApdu(raw);
    if (!result.ok) throw new Error('parse failed');
    expect(result.apdu.data.buffer).toBe(raw.buffer);
  });
});

describe('encodeCommandApdu', () => {
  it.each([
    [{ cla: 0, ins: 0x20, p1: 0, p2: 0x80 }, '00200080'],
    [{ cla: 0, ins: 0xc0, p1: 0, p2: 0, ne: 256 }, '00c0000000'],
    [{ cla: 0x10, ins: 0x87, p1: 7, p2: 0x9a, data: hex('7c00') }, '1087079a027c00'],
    [{ cla: 0, ins: 0xcb, p1: 0x3f, p2: 0xff, data: hex('5c017e'), ne: 256 }, '00cb3fff035c017e00'],
  ])('%o -> %s', (fields, expected) => {
    expect(toHex(encodeCommandApdu(fields))).toBe(expected);
    expect(parseCommandApdu(encodeCommandApdu(fields)).ok).toBe(true);
  });

  it('throws RangeError for values that do not fit a short APDU', () => {
    expect(() => encodeCommandApdu({ cla: 0, ins: 0, p1: 0, p2: 0, data: new Uint8Array(256) })).toThrow(RangeError);
    expect(() => encodeCommandApdu({ cla: 0, ins: 0, p1: 0, p2: 0, ne: 0 })).toThrow(RangeError);
    expect(() => encodeCommandApdu({ cla: 0x100, ins: 0, p1: 0, p2: 0 })).toThrow(RangeError);
  });
});

describe('decodeClass', () => {
  it.each([
    [0x00, { kind: 'interindustry', chained: false, secureMessaging: false, channel: 0 }],
    [0x10, { kind: 'interindustry', chained: true, secureMessaging: false, channel: 0 }],
    [0x0c, { kind: 'interindustry', chained: false, secureMessaging: true, channel: 0 }],
    [0x04, { kind: 'interindustry', chained: false, secureMessaging: true, channel: 0 }],
    [0x03, { kind: 'interindustry', chained: false, secureMessaging: false, channel: 3 }],
    [0x13, { kind: 'interindustry', chained: true, secureMessaging: false, channel: 3 }],
    [0x40, { kind: 'interindustry', chained: false, secureMessaging: false, channel: 4 }],
    [0x5f, { kind: 'interindustry', chained: true, secureMessaging: false, channel: 19 }],
    [0x60, { kind: 'interindustry', chained: false, secureMessaging: true, channel: 4 }],
    [0x20, { kind: 'invalid', chained: false, secureMessaging: false, channel: 0 }],
    [0x80, { kind: 'proprietary', chained: false, secureMessaging: false, channel: 0 }],
    [0xff, { kind: 'invalid', chained: false, secureMessaging: false, channel: 0 }],
  ])('CLA %i', (cla, expected) => {
    expect(decodeClass(cla)).toEqual(expected);
  });
});
