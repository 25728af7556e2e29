// FASC-N (Federal Agency Smart Credential Number, TIG SCEPACS v2.3 §6): 40 characters of 5 bits
// (4-bit BCD, least significant bit first, then an odd parity bit), packed into 25 bytes. The
// CHUID must carry one; soft cards use the "not a government credential" agency code 9999.

export interface FascNFields {
  /** 4 digits. */
  readonly agencyCode: string;
  /** 4 digits. */
  readonly systemCode: string;
  /** 6 digits. */
  readonly credentialNumber: string;
  /** 1 digit. */
  readonly credentialSeries: string;
  /** 1 digit. */
  readonly individualCredentialIssue: string;
  /** 10 digits. */
  readonly personIdentifier: string;
  /** 1 digit. */
  readonly organizationalCategory: string;
  /** 4 digits. */
  readonly organizationalIdentifier: string;
  /** 1 digit. */
  readonly personAssociationCategory: string;
}

const START_SENTINEL = 0xb;
const FIELD_SEPARATOR = 0xd;
const END_SENTINEL = 0xf;

export const FASC_N_LENGTH = 25;

/** Fields with every digit 9 and a zero person identifier: clearly not an issued credential. */
export const SOFT_CARD_FASC_N: FascNFields = {
  agencyCode: '9999',
  systemCode: '9999',
  credentialNumber: '999999',
  credentialSeries: '1',
  individualCredentialIssue: '1',
  personIdentifier: '0000000000',
  organizationalCategory: '1',
  organizationalIdentifier: '0000',
  personAssociationCategory: '1',
};

export function encodeFascN(fields: FascNFields): Uint8Array {
  const digits = (text: string, count: number, name: string): number[] => {
    if (text.length !== count || !/^[0-9]+$/.test(text)) throw new RangeError(`FASC-N ${name} must be ${count} digits`);
    return [...text].map((c) => c.charCodeAt(0) - 0x30);
  };
  const chars = [
    START_SENTINEL,
    ...digits(fields.agencyCode, 4, 'agency code'),
    FIELD_SEPARATOR,
    ...digits(fields.systemCode, 4, 'system code'),
    FIELD_SEPARATOR,
    ...digits(fields.credentialNumber, 6, 'credential number'),
    FIELD_SEPARATOR,
    ...digits(fields.credentialSeries, 1, 'credential series'),
    FIELD_SEPARATOR,
    ...digits(fields.individualCredentialIssue, 1, 'individual credential issue'),
    FIELD_SEPARATOR,
    ...digits(fields.personIdentifier, 10, 'person identifier'),
    ...digits(fields.organizationalCategory, 1, 'organizational category'),
    ...digits(fields.organizationalIdentifier, 4, 'organizational identifier'),
    ...digits(fields.personAssociationCategory, 1, 'person association category'),
    END_SENTINEL,
  ];
  // Longitudinal redundancy check: XOR of all characters' data bits.
  chars.push(chars.reduce((lrc, c) => lrc ^ c, 0));

  const out = new Uint8Array(FASC_N_LENGTH);
  let bit = 0;
  const put = (value: number): void => {
    if (value) out[bit >> 3] = (out[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
    bit += 1;
  };
  for (const c of chars) {
    let ones = 0;
    for (let i = 0; i < 4; i += 1) {
      const b = (c >> i) & 1;
      ones += b;
      put(b);
    }
    put(ones % 2 === 0 ? 1 : 0);
  }
  return out;
}
