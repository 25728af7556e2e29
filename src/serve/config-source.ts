// What the config parsers hand the validator: the parsed value, and where each key path sits in the
// file, so every message can name a line. Paths use the validator's spelling (joinPath).

export interface SourcePosition {
  /** 1-based. */
  line: number;
  /** 1-based, in characters. */
  column: number;
}

export interface ParsedSource {
  value: unknown;
  /** Key path → where the key (or, for an array element, the element) starts. The root is "". */
  positions: Map<string, SourcePosition>;
}

/** The file is not well-formed JSON or TOML: one message at one place. */
export class ConfigSyntaxError extends Error {
  constructor(
    readonly detail: string,
    readonly position: SourcePosition,
  ) {
    super(`${position.line}:${position.column}: ${detail}`);
    this.name = 'ConfigSyntaxError';
  }
}

/** Line and column of character offsets, by binary search over the line starts (linear work per file). */
export class LineIndex {
  private readonly starts: number[] = [0];

  constructor(private readonly text: string) {
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) this.starts.push(i + 1);
  }

  at(offset: number): SourcePosition {
    const o = Math.max(0, Math.min(offset, this.text.length));
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= o) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: o - this.starts[lo]! + 1 };
  }
}

/** Nesting beyond this is refused: no config needs it, and it bounds the parsers' recursion. */
export const MAX_NESTING = 32;
