// VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER (SP 800-73-4 part 2 §3.2.1-3.2.3).
//
// Every attempt is counted durably *before* the secret is checked, so cutting the power (or
// killing the bridge) in the middle of a check never gives an attacker a free try. A right
// secret then restores its counter in the same write as any other change.

import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnly, type AppletResponse } from '../iso7816/command-processor.js';
import { SW, verifyFailedStatus } from '../iso7816/status-words.js';
import { PivKeyReference } from './constants.js';
import type { PivCredentialChange, PivCredentials, PivSecretName } from './credentials.js';
import { REFERENCE_DATA_LENGTH, unpadSecret } from './reference-data.js';
import type { PivSecurityState } from './security-state.js';

type Attempt = { readonly kind: 'right' } | { readonly kind: 'done'; readonly response: AppletResponse };

const RESET_SECURITY_STATUS = 0xff;

function triesField(secret: PivSecretName): 'pinTriesLeft' | 'pukTriesLeft' {
  return secret === 'pin' ? 'pinTriesLeft' : 'pukTriesLeft';
}

async function commit(credentials: PivCredentials, change: PivCredentialChange): Promise<boolean> {
  try {
    await credentials.commit(change);
    return true;
  } catch {
    return false;
  }
}

async function attempt(credentials: PivCredentials, secret: PivSecretName, value: string): Promise<Attempt> {
  const left = credentials.triesLeft(secret);
  if (left <= 0) return { kind: 'done', response: statusOnly(SW.AUTH_METHOD_BLOCKED) };
  if (!(await commit(credentials, { [triesField(secret)]: left - 1 }))) {
    return { kind: 'done', response: statusOnly(SW.MEMORY_FAILURE) };
  }
  if (!(await credentials.check(secret, value))) {
    return { kind: 'done', response: statusOnly(verifyFailedStatus(left - 1)) };
  }
  return { kind: 'right' };
}

function pinStatus(credentials: PivCredentials, security: PivSecurityState): AppletResponse {
  const left = credentials.triesLeft('pin');
  if (left <= 0) return statusOnly(SW.AUTH_METHOD_BLOCKED);
  return statusOnly(security.pinVerified ? SW.OK : verifyFailedStatus(left));
}

/**
 * VERIFY 00 20 00 80: with 8 bytes of data checks the PIN; without data reports the status
 * (9000 verified, 63CX not verified with X tries left, 6983 blocked). 00 20 FF 80 resets
 * the verified state. Under T=0 a host sends the no-data forms with P3=00, which parses as
 * Le=256, so only the data length matters here.
 */
export async function verify(command: CommandApdu, credentials: PivCredentials, security: PivSecurityState): Promise<AppletResponse> {
  if (command.p1 !== 0x00 && command.p1 !== RESET_SECURITY_STATUS) return statusOnly(SW.WRONG_P1P2);
  if (command.p2 !== PivKeyReference.PIN) return statusOnly(SW.REFERENCED_DATA_NOT_FOUND);
  if (command.p1 === RESET_SECURITY_STATUS) {
    if (command.data.length !== 0) return statusOnly(SW.WRONG_LENGTH);
    security.clear();
    return statusOnly(SW.OK);
  }
  if (command.data.length === 0) return pinStatus(credentials, security);
  if (command.data.length !== REFERENCE_DATA_LENGTH) return statusOnly(SW.WRONG_LENGTH);
  const pin = unpadSecret(command.data, 'pin');
  if (pin === undefined) return statusOnly(SW.WRONG_DATA);

  const result = await attempt(credentials, 'pin', pin);
  if (result.kind === 'done') {
    security.clear();
    return result.response;
  }
  if (!(await commit(credentials, { pinTriesLeft: credentials.maxTries('pin') }))) return statusOnly(SW.MEMORY_FAILURE);
  security.pinAccepted();
  return statusOnly(SW.OK);
}

/** CHANGE REFERENCE DATA 00 24 00 80|81, data: old and new value, each padded to 8 bytes. */
export async function changeReferenceData(command: CommandApdu, credentials: PivCredentials, security: PivSecurityState): Promise<AppletResponse> {
  if (command.p1 !== 0x00) return statusOnly(SW.WRONG_P1P2);
  const secret: PivSecretName | undefined =
    command.p2 === PivKeyReference.PIN ? 'pin' : command.p2 === PivKeyReference.PUK ? 'puk' : undefined;
  if (secret === undefined) return statusOnly(SW.REFERENCED_DATA_NOT_FOUND);
  if (command.data.length !== 2 * REFERENCE_DATA_LENGTH) return statusOnly(SW.WRONG_LENGTH);
  const oldValue = unpadSecret(command.data.subarray(0, REFERENCE_DATA_LENGTH), secret);
  const newValue = unpadSecret(command.data.subarray(REFERENCE_DATA_LENGTH), secret);
  if (oldValue === undefined || newValue === undefined) return statusOnly(SW.WRONG_DATA);

  const result = await attempt(credentials, secret, oldValue);
  if (result.kind === 'done') {
    if (secret === 'pin') security.clear();
    return result.response;
  }
  const change: PivCredentialChange =
    secret === 'pin'
      ? { pinTriesLeft: credentials.maxTries('pin'), newPin: newValue }
      : { pukTriesLeft: credentials.maxTries('puk'), newPuk: newValue };
  if (!(await commit(credentials, change))) return statusOnly(SW.MEMORY_FAILURE);
  // The holder has just proved knowledge of the PIN, as with VERIFY.
  if (secret === 'pin') security.pinAccepted();
  return statusOnly(SW.OK);
}

/** RESET RETRY COUNTER 00 2C 00 80, data: PUK and new PIN, each padded to 8 bytes. */
export async function resetRetryCounter(command: CommandApdu, credentials: PivCredentials, security: PivSecurityState): Promise<AppletResponse> {
  if (command.p1 !== 0x00) return statusOnly(SW.WRONG_P1P2);
  if (command.p2 !== PivKeyReference.PIN) return statusOnly(SW.REFERENCED_DATA_NOT_FOUND);
  if (command.data.length !== 2 * REFERENCE_DATA_LENGTH) return statusOnly(SW.WRONG_LENGTH);
  const puk = unpadSecret(command.data.subarray(0, REFERENCE_DATA_LENGTH), 'puk');
  const newPin = unpadSecret(command.data.subarray(REFERENCE_DATA_LENGTH), 'pin');
  if (puk === undefined || newPin === undefined) return statusOnly(SW.WRONG_DATA);

  const result = await attempt(credentials, 'puk', puk);
  if (result.kind === 'done') return result.response;
  const change = { pinTriesLeft: credentials.maxTries('pin'), pukTriesLeft: credentials.maxTries('puk'), newPin };
  if (!(await commit(credentials, change))) return statusOnly(SW.MEMORY_FAILURE);
  security.clear();
  return statusOnly(SW.OK);
}
