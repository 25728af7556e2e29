// Progress lines of the demo on stderr: "[2/4] Booting the VM … up in 3.1 s". A step's line
// stays open until it is done, unless something (build output, a notice) must be said meanwhile.

export class Progress {
  private open = false;

  constructor(private readonly out: NodeJS.WritableStream) {}

  say(text: string): void {
    this.close();
    this.out.write(`${text}\n`);
  }

  start(text: string): void {
    this.close();
    this.out.write(`${text} …`);
    this.open = true;
  }

  /** A line under the current step (indented), e.g. the image build's own progress. */
  detail(text: string): void {
    this.close();
    this.out.write(`      ${text}\n`);
  }

  done(text: string): void {
    if (this.open) this.out.write(` ${text}\n`);
    else this.out.write(`      ${text}\n`);
    this.open = false;
  }

  private close(): void {
    if (this.open) this.out.write('\n');
    this.open = false;
  }
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
