// The host side of PIV: the command APDUs a middleware sends, T=0 style (case 4 without Le),
// and an exchange that follows 61 XX with GET RESPONSE the way OpenSC does. Used by tests,
// the benchmark and diagnostics; the card side never needs it.

import { SHORT_MAX_NC, encodeCommandApdu, parseCommandApdu } from '../iso7816/apdu.js';
import { GET_RESPONSE_INS } from '../iso7816/response-chaining.js';
import { SW, statusWordOf, type StatusWord } from '../iso7816/status-words.js';
import { concatBytes, encodeTag, encodeTlv } from '../iso7816/tlv.js';
import { AuthTemplateTag, PIV_AID, PIV_AID_TRUNCATED_LENGTH, PivIns, PivKeyReference, TAG_LIST_TAG } from './constants.js';
import { padSecret } from './reference-data.js';

export type Transmit = (apdu: Uint8Array) => Promise<Uint8Array>;

export interface CardAnswer {
  readonly data: Uint8Array;
  readonly sw: StatusWord;
}

export function selectPivApdu(aid: Uint8Array = PIV_AID.subarray(0, PIV_AID_TRUNCATED_LENGTH)): Uint8Array {
  return encodeCommandApdu({ cla: 0x00, ins: PivIns.SELECT, p1: 0x04, p2: 0x00, data: aid });
}

export function getDataApdu(tag: number): Uint8Array {
  return encodeCommandApdu({ cla: 0x00, ins: PivIns.GET_DATA, p1: 0x3f, p2: 0xff, data: encodeTlv(TAG_LIST_TAG, encodeTag(tag)) });
}

/** VERIFY with a PIN, or the status query without one. */
export function verifyPinApdu(pin?: string): Uint8Array {
  return encodeCommandApdu({ cla: 0x00, ins: PivIns.VERIFY, p1: 0x00, p2: PivKeyReference.PIN, ...(pin !== undefined ? { data: padSecret(pin) } : {}) });
}

export function changeReferenceDataApdu(secret: 'pin' | 'puk', oldValue: string, newValue: string): Uint8Array {
  const data = new Uint8Array(16);
  data.set(padSecret(oldValue), 0);
  data.set(padSecret(newValue), 8);
  return encodeCommandApdu({ cla: 0x00, ins: PivIns.CHANGE_REFERENCE_DATA, p1: 0x00, p2: secret === 'pin' ? PivKeyReference.PIN : PivKeyReference.PUK, data });
}

export function resetRetryCounterApdu(puk: string, newPin: string): Uint8Array {
  const data = new Uint8Array(16);
  data.set(padSecret(puk), 0);
  data.set(padSecret(newPin), 8);
  return encodeCommandApdu({ cla: 0x00, ins: PivIns.RESET_RETRY_COUNTER, p1: 0x00, p2: PivKeyReference.PIN, data });
}

/**
 * GENERAL AUTHENTICATE for a signature or decryption (`81` challenge) or ECDH (`85` point),
 * split into command-chained APDUs of at most 255 data bytes.
 */
export function generalAuthenticateApdus(algorithm: number, slot: number, input: Uint8Array, kind: 'challenge' | 'exponentiation' = 'challenge'): Uint8Array[] {
  const inputTag = kind === 'challenge' ? AuthTemplateTag.CHALLENGE : AuthTemplateTag.EXPONENTIATION;
  const body = encodeTlv(AuthTemplateTag.TEMPLATE, [encodeTlv(AuthTemplateTag.RESPONSE), encodeTlv(inputTag, input)]);
  return chainedApdus(PivIns.GENERAL_AUTHENTICATE, algorithm, slot, body);
}

/** Splits `data` into chained short APDUs (CLA 10 on all but the last). */
export function chainedApdus(ins: number, p1: number, p2: number, data: Uint8Array, partSize = SHORT_MAX_NC): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let offset = 0; offset < data.length || out.length === 0; offset += partSize) {
    const last = offset + partSize >= data.length;
    out.push(encodeCommandApdu({ cla: last ? 0x00 : 0x10, ins, p1, p2, data: data.subarray(offset, offset + partSize) }));
  }
  return out;
}

/** The same command asking for exactly `le` bytes (00 = 256). */
function withLe(apdu: Uint8Array, le: number): Uint8Array {
  const parsed = parseCommandApdu(apdu);
  if (!parsed.ok) throw new RangeError(parsed.reason);
  const { cla, ins, p1, p2, data } = parsed.apdu;
  return encodeCommandApdu({ cla, ins, p1, p2, data, ne: le === 0 ? 256 : le });
}

function split(response: Uint8Array): CardAnswer {
  const sw = statusWordOf(response);
  if (sw === undefined) throw new Error(`card answered ${response.length} bytes, no status word`);
  return { data: response.subarray(0, response.length - 2), sw };
}

/**
 * Sends one command and collects the whole answer: 61 XX is followed with GET RESPONSE
 * (Le = XX), 6C XX by repeating the command with Le = XX, as OpenSC's sc_transmit does.
 */
export async function exchange(transmit: Transmit, apdu: Uint8Array): Promise<CardAnswer> {
  let answer = split(await transmit(apdu));
  if (answer.sw >> 8 === 0x6c) answer = split(await transmit(withLe(apdu, answer.sw & 0xff)));
  const parts: Uint8Array[] = [answer.data];
  let guard = 0;
  while (answer.sw >> 8 === 0x61) {
    if ((guard += 1) > 1024) throw new Error('endless GET RESPONSE chain');
    answer = split(await transmit(Uint8Array.of(0x00, GET_RESPONSE_INS, 0x00, 0x00, answer.sw & 0xff)));
    if (answer.sw >> 8 === 0x6c) answer = split(await transmit(Uint8Array.of(0x00, GET_RESPONSE_INS, 0x00, 0x00, answer.sw & 0xff)));
    parts.push(answer.data);
  }
  return { data: concatBytes(parts), sw: answer.sw };
}

/** Sends a chain; every link but the last must answer 9000. */
export async function exchangeChain(transmit: Transmit, apdus: readonly Uint8Array[]): Promise<CardAnswer> {
  for (const apdu of apdus.slice(0, -1)) {
    const answer = split(await transmit(apdu));
    if (answer.sw !== SW.OK) return answer;
  }
  const last = apdus[apdus.length - 1];
  if (last === undefined) throw new RangeError('empty chain');
  return exchange(transmit, last);
}
