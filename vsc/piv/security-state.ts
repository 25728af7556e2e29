// The PIV application's security status: whether the PIN has been verified and whether that
// verification is still fresh for the signature key, whose access rule is "PIN always"
// (SP 800-73-4 part 1 §3.3.2: a VERIFY must come right before each use of key 9C).

export class PivSecurityState {
  #pinVerified = false;
  #fresh = false;

  get pinVerified(): boolean {
    return this.#pinVerified;
  }

  /** True between a successful VERIFY and the next use of a "PIN always" key. */
  get freshVerification(): boolean {
    return this.#fresh;
  }

  pinAccepted(): void {
    this.#pinVerified = true;
    this.#fresh = true;
  }

  /** A "PIN always" key was used: the next use needs another VERIFY. */
  consumeFreshVerification(): void {
    this.#fresh = false;
  }

  clear(): void {
    this.#pinVerified = false;
    this.#fresh = false;
  }
}
