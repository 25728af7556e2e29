// Capped exponential backoff for a session that reconnects by itself. Pure: time and randomness
// are injected, so the delays are exact under test. A link that stayed up long enough counts as a
// recovery, and the next failure starts again from the first delay.

export interface BackoffOptions {
  /** First delay after a failure (ms). Default 1 000. */
  initialMs?: number;
  /** Delays double up to this (ms). Default 60 000. */
  maxMs?: number;
  /**
   * Fraction of each delay taken off at random (0 = none, 0.2 = up to 20 % shorter), so that many
   * sessions whose server came back at once do not all dial in the same millisecond. Default 0.2.
   */
  jitter?: number;
  /** A link up at least this long resets the attempts (ms). Default 30 000. */
  resetAfterMs?: number;
  /** Milliseconds clock. Default Date.now. */
  now?: () => number;
  /** Uniform in [0, 1). Default Math.random. */
  random?: () => number;
}

export const BACKOFF_DEFAULTS = { initialMs: 1_000, maxMs: 60_000, jitter: 0.2, resetAfterMs: 30_000 } as const;

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly jitter: number;
  readonly resetAfterMs: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private failures = 0;
  private upSince: number | undefined;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = positive(options.initialMs, BACKOFF_DEFAULTS.initialMs);
    this.maxMs = Math.max(this.initialMs, positive(options.maxMs, BACKOFF_DEFAULTS.maxMs));
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? BACKOFF_DEFAULTS.jitter));
    this.resetAfterMs = Math.max(0, options.resetAfterMs ?? BACKOFF_DEFAULTS.resetAfterMs);
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  /** Failures since the last reset: the number of the retry about to be scheduled is attempt + 1. */
  get attempt(): number {
    return this.failures;
  }

  /** The delay before the next attempt; counts one more failure. */
  next(): number {
    // 2^failures overflows to Infinity long after it passed maxMs; min() keeps it finite.
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 52));
    this.failures += 1;
    const r = Math.min(Math.max(this.random(), 0), 1);
    return Math.round(base * (1 - this.jitter * r));
  }

  /** The link came up: remember when, to judge on the next failure whether it held. */
  up(): void {
    this.upSince = this.now();
  }

  /** The link went down: if it held long enough, the next delay is the first one again. */
  down(): void {
    if (this.upSince !== undefined && this.now() - this.upSince >= this.resetAfterMs) this.failures = 0;
    this.upSince = undefined;
  }

  /** A fresh start (the user started the session again, or gave a new password). */
  reset(): void {
    this.failures = 0;
    this.upSince = undefined;
  }
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}
