// What the PIV applet needs from wherever the PIN and PUK live. The applet owns the rules
// (retry counting, blocking, formats); the store owns checking secrets and remembering state.

export type PivSecretName = 'pin' | 'puk';

/** One atomic, durable change to the stored credentials. */
export interface PivCredentialChange {
  readonly pinTriesLeft?: number;
  readonly pukTriesLeft?: number;
  readonly newPin?: string;
  readonly newPuk?: string;
}

export interface PivCredentials {
  triesLeft(secret: PivSecretName): number;
  maxTries(secret: PivSecretName): number;
  /**
   * Checks a secret. A right PIN or PUK also opens the key store, so keys can be used and a
   * new secret can be set. Does not touch retry counters.
   */
  check(secret: PivSecretName, value: string): Promise<boolean>;
  /** Applies the change durably before resolving (one write, so a crash leaves old or new state). */
  commit(change: PivCredentialChange): Promise<void>;
}
