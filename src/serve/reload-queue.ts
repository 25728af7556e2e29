// SIGHUP handling for serve: reloads run one after another, never two at once, and a SIGHUP that
// comes while serve is still starting is held and acted on once it has started (not dropped: the
// user edited the config and asked for it to be read).

export class ReloadQueue {
  private started = false;
  private held = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly reload: () => Promise<void>,
    private readonly failed: (error: unknown) => void,
  ) {}

  /** A SIGHUP: runs a reload after any under way; before start(), remembered (several count as one). */
  request(): void {
    if (!this.started) {
      this.held = true;
      return;
    }
    this.chain = this.chain.then(() => this.reload()).catch((e: unknown) => this.failed(e));
  }

  /** Serve is running: a SIGHUP held during the start is acted on now. */
  start(): void {
    this.started = true;
    if (this.held) {
      this.held = false;
      this.request();
    }
  }

  /** Resolves when no reload is under way (before stopping). */
  idle(): Promise<void> {
    return this.chain;
  }
}
