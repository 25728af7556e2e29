// GENERAL AUTHENTICATE 00 87 <algorithm> <key> (SP 800-73-4 part 2 §3.2.4) for the four
// asymmetric slots: sign or decrypt with `7C { 82 00, 81 <input> }`, ECDH with
// `7C { 82 00, 85 <peer point> }`. The answer is `7C { 82 <result> }`.
//
// RSA: the host sends the block already padded (PKCS#1 v1.5 or PSS for signatures, the
// ciphertext for decryption) and the card applies the raw private-key operation.
// ECDSA: the host sends the digest; the card signs it as is (no hashing).

import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnly, type AppletResponse } from '../iso7816/command-processor.js';
import { SW } from '../iso7816/status-words.js';
import { TlvError, decodeSingleTlv, decodeTlvList, encodeTlv, findTlv, type Tlv } from '../iso7816/tlv.js';
import { AuthTemplateTag, PivAlgorithm, PivKeyReference, PivSlot, isPivAlgorithm, isPivSlot, type PivAlgorithmId, type PivSlotId } from './constants.js';
import { KeyOperationError, type PivKeyOperations } from './key-operations.js';
import type { PivSecurityState } from './security-state.js';

/** Bytes of an RSA block or of an EC field element, per algorithm. */
const KEY_BYTES: Readonly<Record<PivAlgorithmId, number>> = {
  [PivAlgorithm.RSA_2048]: 256,
  [PivAlgorithm.ECC_P256]: 32,
  [PivAlgorithm.ECC_P384]: 48,
};

type Operation = { readonly kind: 'private'; readonly input: Uint8Array } | { readonly kind: 'ecdh'; readonly point: Uint8Array };

/** Reads the dynamic authentication template; undefined when it is not one we serve. */
function parseTemplate(data: Uint8Array): Operation | undefined {
  let items;
  try {
    const template = decodeSingleTlv(data);
    if (template.tag !== AuthTemplateTag.TEMPLATE) return undefined;
    items = decodeTlvList(template.value, 8);
  } catch (error) {
    if (error instanceof TlvError) return undefined;
    throw error;
  }
  const response = findTlv(items, AuthTemplateTag.RESPONSE);
  const challenge = findTlv(items, AuthTemplateTag.CHALLENGE);
  const exponentiation = findTlv(items, AuthTemplateTag.EXPONENTIATION);
  // Exactly "response requested" plus one input; witnesses (80) belong to the 9B card management key.
  if (items.length !== 2 || response === undefined || response.value.length !== 0) return undefined;
  if (challenge !== undefined && challenge.value.length > 0) return { kind: 'private', input: challenge.value };
  if (exponentiation !== undefined && exponentiation.value.length > 0) return { kind: 'ecdh', point: exponentiation.value };
  return undefined;
}

/** FIPS 186-4 §6.4: use the leftmost bits of a longer digest; a shorter one is a smaller number. */
function fitDigest(digest: Uint8Array, size: number): Uint8Array {
  if (digest.length >= size) return digest.subarray(0, size);
  const out = new Uint8Array(size);
  out.set(digest, size - digest.length);
  return out;
}

/** Access rule of each slot (SP 800-73-4 part 1 table 4b). */
function securitySatisfied(slot: PivSlotId, security: PivSecurityState): boolean {
  switch (slot) {
    case PivSlot.CARD_AUTHENTICATION:
      return true;
    case PivSlot.SIGNATURE:
      return security.pinVerified && security.freshVerification;
    case PivSlot.AUTHENTICATION:
    case PivSlot.KEY_MANAGEMENT:
      return security.pinVerified;
  }
}

function run(keys: PivKeyOperations, slot: PivSlotId, algorithm: PivAlgorithmId, operation: Operation): AppletResponse {
  const size = KEY_BYTES[algorithm];
  if (operation.kind === 'ecdh') {
    // Key agreement is the key management key's job; the point must be uncompressed (04 X Y).
    if (slot !== PivSlot.KEY_MANAGEMENT || algorithm === PivAlgorithm.RSA_2048) return statusOnly(SW.WRONG_DATA);
    if (operation.point.length !== 1 + 2 * size || operation.point[0] !== 0x04) return statusOnly(SW.WRONG_DATA);
    return { sw: SW.OK, data: responseTemplate(keys.ecdh(slot, operation.point)) };
  }
  if (algorithm === PivAlgorithm.RSA_2048) {
    if (operation.input.length !== size) return statusOnly(SW.WRONG_DATA);
    return { sw: SW.OK, data: responseTemplate(keys.rsaPrivate(slot, operation.input)) };
  }
  return { sw: SW.OK, data: responseTemplate(keys.ecdsaSign(slot, fitDigest(operation.input, size))) };
}

function responseTemplate(result: Uint8Array): Uint8Array {
  return encodeTlv(AuthTemplateTag.TEMPLATE, [encodeTlv(AuthTemplateTag.RESPONSE, result)]);
}

/** Challenge sizes of the symmetric algorithms a card management key (9B) may have: 3DES 8, AES 16. */
const MANAGEMENT_CHALLENGE_BYTES: Readonly<Record<number, number>> = { 0x00: 8, 0x03: 8, 0x08: 16, 0x0a: 16, 0x0c: 16 };

/**
 * `00 87 <alg> 9B 7C { 81 00 }`: the first step of card management key authentication, a
 * random challenge from the card. There is no management key here, so nothing can follow, but
 * OpenSC uses exactly this request as its random number source (C_GenerateRandom).
 */
function managementChallenge(command: CommandApdu, random: ((length: number) => Uint8Array) | undefined): AppletResponse {
  const size = MANAGEMENT_CHALLENGE_BYTES[command.p1];
  if (random === undefined || size === undefined) return statusOnly(SW.WRONG_P1P2);
  let items: Tlv[] | undefined;
  try {
    const template = decodeSingleTlv(command.data);
    items = template.tag === AuthTemplateTag.TEMPLATE ? decodeTlvList(template.value, 8) : undefined;
  } catch (error) {
    if (error instanceof TlvError) return statusOnly(SW.WRONG_DATA);
    throw error;
  }
  const request = items?.[0];
  if (items?.length !== 1 || request?.tag !== AuthTemplateTag.CHALLENGE || request.value.length !== 0) return statusOnly(SW.WRONG_DATA);
  return { sw: SW.OK, data: encodeTlv(AuthTemplateTag.TEMPLATE, [encodeTlv(AuthTemplateTag.CHALLENGE, random(size))]) };
}

export function generalAuthenticate(
  command: CommandApdu,
  keys: PivKeyOperations,
  security: PivSecurityState,
  random?: (length: number) => Uint8Array,
): AppletResponse {
  const slot = command.p2;
  const algorithm = command.p1;
  if (slot === PivKeyReference.CARD_MANAGEMENT) return managementChallenge(command, random);
  if (!isPivSlot(slot) || !isPivAlgorithm(algorithm)) return statusOnly(SW.WRONG_P1P2);
  const keyAlgorithm = keys.algorithmOf(slot);
  if (keyAlgorithm === undefined) return statusOnly(SW.REFERENCED_DATA_NOT_FOUND);
  if (keyAlgorithm !== algorithm) return statusOnly(SW.WRONG_P1P2);
  if (!securitySatisfied(slot, security)) return statusOnly(SW.SECURITY_STATUS_NOT_SATISFIED);
  // A "PIN always" verification is spent by any attempt, even one with bad data.
  if (slot === PivSlot.SIGNATURE) security.consumeFreshVerification();
  // The key store may still be locked (a soft card's 9E before any VERIFY since the bridge started).
  if (!keys.isUsable(slot)) return statusOnly(SW.SECURITY_STATUS_NOT_SATISFIED);
  const operation = parseTemplate(command.data);
  if (operation === undefined) return statusOnly(SW.WRONG_DATA);
  try {
    return run(keys, slot, algorithm, operation);
  } catch (error) {
    if (error instanceof KeyOperationError) return statusOnly(SW.WRONG_DATA);
    throw error;
  }
}
