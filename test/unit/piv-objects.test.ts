// PIV data object builders and the FASC-N encoding.
import { describe, expect, it } from 'vitest';
import { decodeSingleTlv, decodeTlvList } from '../../vsc/iso7816/tlv.js';
import { PIV_AID } from '../../vsc/piv/constants.js';
import { applicationPropertyTemplate, cardCapabilityContainer, certificateObject, chuidObject, discoveryObject, keyHistoryObject } from '../../vsc/piv/data-objects.js';
import { encodeFascN, SOFT_CARD_FASC_N } from '../../vsc/piv/fasc-n.js';
import { isPivAidPrefix } from '../../vsc/piv/select.js';
import { padSecret, unpadSecret } from '../../vsc/piv/reference-data.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('FASC-N', () => {
  it('encodes the widely published all-nines test credential', () => {
    const fascN = encodeFascN({ ...SOFT_CARD_FASC_N, credentialSeries: '0', organizationalCategory: '3' });
    expect(toHex(fascN)).toBe('d4e739da739ced39ce739d836858210842108421c84210c3eb');
  });

  it('encodes the soft card default in 25 bytes', () => {
    expect(encodeFascN(SOFT_CARD_FASC_N).length).toBe(25);
  });

  it('refuses fields of the wrong length or with non-digits', () => {
    expect(() => encodeFascN({ ...SOFT_CARD_FASC_N, agencyCode: '999' })).toThrow(RangeError);
    expect(() => encodeFascN({ ...SOFT_CARD_FASC_N, systemCode: '99a9' })).toThrow(RangeError);
  });
});

describe('data objects', () => {
  it('discovery object carries the AID and the PIV-PIN-only policy', () => {
    expect(toHex(discoveryObject())).toBe('7e124f0ba0000003080000100001005f2f024000');
  });

  it('CHUID has FASC-N, GUID, expiry, empty signature and EDC', () => {
    const chuid = chuidObject({ fascN: new Uint8Array(25), guid: new Uint8Array(16).fill(0xab), expiry: '20350101' });
    const items = decodeTlvList(decodeSingleTlv(chuid).value);
    expect(items.map((t) => [t.tag, t.value.length])).toEqual([[0x30, 25], [0x34, 16], [0x35, 8], [0x3e, 0], [0xfe, 0]]);
    expect(() => chuidObject({ fascN: new Uint8Array(25), guid: new Uint8Array(15), expiry: '20350101' })).toThrow(RangeError);
    expect(() => chuidObject({ fascN: new Uint8Array(25), guid: new Uint8Array(16), expiry: '2035-01-01' })).toThrow(RangeError);
  });

  it('certificate object wraps DER in 70, uncompressed 71 00, FE', () => {
    expect(toHex(certificateObject(Uint8Array.of(0x30, 0x00)))).toBe('530970023000710100fe00');
  });

  it('certificate object uses long length forms for real certificates', () => {
    const object = certificateObject(new Uint8Array(1200));
    expect(toHex(object.subarray(0, 8))).toBe('538204b9708204b0');
  });

  it('key history says no retired keys', () => {
    expect(toHex(keyHistoryObject())).toBe('5308c10100c20100fe00');
  });

  it('CCC card identifier starts with the GSC-IS RID', () => {
    const items = decodeTlvList(decodeSingleTlv(cardCapabilityContainer(new Uint8Array(14))).value);
    expect(toHex(items[0]?.value.subarray(0, 7) ?? new Uint8Array())).toBe('a000000116ff02');
    expect(() => cardCapabilityContainer(new Uint8Array(13))).toThrow(RangeError);
  });

  it('application property template lists the algorithms', () => {
    expect(toHex(applicationPropertyTemplate('X'))).toBe('61224f0600001000010079074f05a000000308500158ac0c800107800111800114060100');
  });
});

describe('AID prefixes and PIN padding', () => {
  it('accepts right-truncations of the AID down to the RID', () => {
    for (let n = 5; n <= 11; n += 1) expect(isPivAidPrefix(PIV_AID.subarray(0, n))).toBe(true);
    expect(isPivAidPrefix(PIV_AID.subarray(0, 4))).toBe(false);
    expect(isPivAidPrefix(Uint8Array.of(...PIV_AID, 0x00))).toBe(false);
  });

  it('pads and unpads PINs and PUKs', () => {
    expect(toHex(padSecret('123456'))).toBe('313233343536ffff');
    expect(unpadSecret(padSecret('123456'), 'pin')).toBe('123456');
    expect(unpadSecret(padSecret('12345678'), 'pin')).toBe('12345678');
    expect(unpadSecret(padSecret('12345'), 'pin')).toBeUndefined();
    expect(unpadSecret(padSecret('abc-def'), 'pin')).toBeUndefined();
    expect(unpadSecret(padSecret('abc-def'), 'puk')).toBe('abc-def');
    expect(unpadSecret(Uint8Array.of(0x31, 0x32, 0x33, 0x00, 0x35, 0x36, 0xff, 0xff), 'puk')).toBeUndefined();
    expect(() => padSecret('123456789')).toThrow(RangeError);
  });
});
