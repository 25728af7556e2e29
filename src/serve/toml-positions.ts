// Where each key of a TOML file sits. smol-toml parses the values; this scanner walks the same text
// only to map key paths ("sessions[1].card.kind") to lines: table headers (with [[array]] counting),
// dotted and quoted keys, inline tables and arrays, multi-line strings and comments. It runs after
// smol-toml accepted the file, so it can be lenient; anything it cannot place falls back to the
// nearest enclosing key.
import { parse, TomlError } from 'smol-toml';
import { joinPath } from './config-value.js';
import { rewordTomlError } from './toml-messages.js';
import { ConfigSyntaxError, LineIndex, MAX_NESTING, type ParsedSource, type SourcePosition } from './config-source.js';

class TomlLocator {
  private i = 0;
  readonly positions = new Map<string, SourcePosition>();
  /** Array-of-tables path → elements seen so far. */
  private readonly arrayTables = new Map<string, number>();
  private table = '';
  private readonly lines: LineIndex;

  constructor(private readonly text: string) {
    this.lines = new LineIndex(text);
  }

  run(): void {
    this.positions.set('', { line: 1, column: 1 });
    while (this.i < this.text.length) {
      const before = this.i;
      this.skipBlank(true);
      if (this.i >= this.text.length) break;
      if (this.text.startsWith('[[', this.i)) this.header(true);
      else if (this.text[this.i] === '[') this.header(false);
      else this.keyValue(this.table, 0);
      this.skipToLineEnd();
      if (this.i === before) this.i++;
    }
  }

  private record(path: string, at: number): void {
    if (!this.positions.has(path)) this.positions.set(path, this.lines.at(at));
  }

  /** Spaces, tabs, comments and (with newlines) line ends. */
  private skipBlank(newlines: boolean): void {
    while (this.i < this.text.length) {
      const c = this.text[this.i];
      if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) this.i++;
      else if (c === '#') {
        while (this.i < this.text.length && this.text[this.i] !== '\n') this.i++;
      } else return;
    }
  }

  private skipToLineEnd(): void {
    while (this.i < this.text.length && this.text[this.i] !== '\n') this.i++;
  }

  /** Extends `base` by key segments, stepping into the latest element of any array of tables on the way. */
  private resolve(base: string, segments: string[]): string {
    let path = base;
    for (const segment of segments) {
      path = joinPath(path, segment);
      const count = this.arrayTables.get(path);
      if (count !== undefined) path = joinPath(path, count - 1);
    }
    return path;
  }

  private header(array: boolean): void {
    const at = this.i;
    this.i += array ? 2 : 1;
    this.skipBlank(false);
    const segments = this.dottedKey();
    if (segments.length === 0) return;
    if (!array) {
      this.table = this.resolve('', segments);
      this.record(this.table, at);
      return;
    }
    const parent = this.resolve('', segments.slice(0, -1));
    const full = joinPath(parent, segments[segments.length - 1]!);
    const index = this.arrayTables.get(full) ?? 0;
    this.arrayTables.set(full, index + 1);
    this.record(full, at);
    this.table = joinPath(full, index);
    this.record(this.table, at);
  }

  private dottedKey(): string[] {
    const segments: string[] = [];
    for (;;) {
      this.skipBlank(false);
      const key = this.simpleKey();
      if (key === undefined) return segments;
      segments.push(key);
      this.skipBlank(false);
      if (this.text[this.i] !== '.') return segments;
      this.i++;
    }
  }

  private simpleKey(): string | undefined {
    const c = this.text[this.i];
    if (c === '"') return this.basicString();
    if (c === "'") {
      const end = this.text.indexOf("'", this.i + 1);
      if (end === -1) return undefined;
      const key = this.text.slice(this.i + 1, end);
      this.i = end + 1;
      return key;
    }
    const m = /^[A-Za-z0-9_-]+/.exec(this.text.slice(this.i, this.i + 256));
    if (m === null) return undefined;
    this.i += m[0].length;
    return m[0];
  }

  private basicString(): string {
    let out = '';
    this.i++;
    while (this.i < this.text.length) {
      const c = this.text[this.i]!;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c === '\\') {
        const e = this.text[this.i + 1] ?? '';
        const simple: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', e: '\x1b', '"': '"', '\\': '\\' };
        if (simple[e] !== undefined) {
          out += simple[e];
          this.i += 2;
        } else if (e === 'u' || e === 'U' || e === 'x') {
          const n = e === 'u' ? 4 : e === 'U' ? 8 : 2;
          const code = parseInt(this.text.slice(this.i + 2, this.i + 2 + n), 16);
          out += Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : '';
          this.i += 2 + n;
        } else {
          this.i += 2;
        }
        continue;
      }
      if (c === '\n') return out;
      out += c;
      this.i++;
    }
    return out;
  }

  private keyValue(base: string, depth: number): void {
    const at = this.i;
    const segments = this.dottedKey();
    if (segments.length === 0) return;
    for (let n = 1; n < segments.length; n++) this.record(this.resolve(base, segments.slice(0, n)), at);
    const path = this.resolve(base, segments);
    this.record(path, at);
    this.skipBlank(false);
    if (this.text[this.i] !== '=') return;
    this.i++;
    this.skipBlank(false);
    this.value(path, depth);
  }

  private value(path: string, depth: number): void {
    if (depth > MAX_NESTING) return;
    const rest = (n: number): string => this.text.slice(this.i, this.i + n);
    if (rest(3) === '"""' || rest(3) === "'''") {
      const quote = rest(3);
      this.i += 3;
      while (this.i < this.text.length) {
        if (quote === '"""' && this.text[this.i] === '\\') this.i += 2;
        else if (rest(3) === quote) {
          this.i += 3;
          // Up to two more quotes may belong to the content.
          while (this.text[this.i] === quote[0]) this.i++;
          return;
        } else this.i++;
      }
      return;
    }
    const c = this.text[this.i];
    if (c === '"') {
      this.basicString();
      return;
    }
    if (c === "'") {
      const end = this.text.indexOf("'", this.i + 1);
      this.i = end === -1 ? this.text.length : end + 1;
      return;
    }
    if (c === '[') {
      this.i++;
      for (let index = 0; this.i < this.text.length; index++) {
        this.skipBlank(true);
        if (this.text[this.i] === ']') break;
        const elementPath = joinPath(path, index);
        this.record(elementPath, this.i);
        const before = this.i;
        this.value(elementPath, depth + 1);
        this.skipBlank(true);
        if (this.text[this.i] === ',') this.i++;
        else if (this.i === before) break;
      }
      if (this.text[this.i] === ']') this.i++;
      return;
    }
    if (c === '{') {
      this.i++;
      while (this.i < this.text.length) {
        this.skipBlank(true);
        if (this.text[this.i] === '}') break;
        const before = this.i;
        this.keyValue(path, depth + 1);
        this.skipBlank(true);
        if (this.text[this.i] === ',') this.i++;
        else if (this.i === before) break;
      }
      if (this.text[this.i] === '}') this.i++;
      return;
    }
    // A number, boolean or date (a date may hold a space): up to the next delimiter.
    while (this.i < this.text.length && !',]}#\n\r'.includes(this.text[this.i]!)) this.i++;
  }
}

function syntaxError(error: TomlError, text: string): ConfigSyntaxError {
  const line = Number.isInteger(error.line) && error.line > 0 ? error.line : 1;
  const column = Number.isInteger(error.column) && error.column > 0 ? error.column : 1;
  const at = text.split('\n')[line - 1]?.concat('\n')[column - 1];
  return new ConfigSyntaxError(rewordTomlError(error.message, at), { line, column });
}

export function parseTomlWithPositions(text: string): ParsedSource {
  let value: unknown;
  try {
    value = parse(text, { maxDepth: MAX_NESTING, integersAsBigInt: false });
  } catch (e) {
    if (e instanceof TomlError) throw syntaxError(e, text);
    // Anything else from the parser is still a statement about the file, not a crash of ours.
    throw new ConfigSyntaxError(`not valid TOML: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`, { line: 1, column: 1 });
  }
  const locator = new TomlLocator(text);
  try {
    locator.run();
  } catch {
    // Positions are a courtesy for messages; a scanner slip must not hide the real error.
  }
  return { value, positions: locator.positions };
}
