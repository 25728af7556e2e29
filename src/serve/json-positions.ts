// A JSON parser that also records where every key is, and refuses duplicate keys (JSON.parse keeps
// the last silently, which would hide a mistake in a hand-written config). RFC 8259 grammar only.
import { joinPath } from './config-value.js';
import { ConfigSyntaxError, LineIndex, MAX_NESTING, type ParsedSource, type SourcePosition } from './config-source.js';

class JsonScanner {
  private i = 0;
  readonly positions = new Map<string, SourcePosition>();
  private readonly lines: LineIndex;

  constructor(private readonly text: string) {
    this.lines = new LineIndex(text);
    if (text.charCodeAt(0) === 0xfeff) this.i = 1;
  }

  parseDocument(): unknown {
    this.skipSpace();
    if (this.i >= this.text.length) this.fail('the file is empty; a config is a JSON object such as { "sessions": [] }');
    this.positions.set('', this.here());
    const value = this.parseValue('', 0);
    this.skipSpace();
    if (this.i < this.text.length) this.fail('unexpected text after the end of the JSON value');
    return value;
  }

  private here(): SourcePosition {
    return this.lines.at(this.i);
  }

  private fail(message: string, at = this.i): never {
    throw new ConfigSyntaxError(message, this.lines.at(at));
  }

  private skipSpace(): void {
    while (this.i < this.text.length) {
      const c = this.text[this.i];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') this.i++;
      else if (c === '/' && (this.text[this.i + 1] === '/' || this.text[this.i + 1] === '*')) this.fail('JSON has no comments; use a .toml config to write comments');
      else return;
    }
  }

  private describeNext(): string {
    if (this.i >= this.text.length) return 'the end of the file';
    const c = this.text[this.i]!;
    return /[\x21-\x7e]/.test(c) ? `"${c}"` : `character U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  }

  private parseValue(path: string, depth: number): unknown {
    if (depth > MAX_NESTING) this.fail(`nested deeper than ${MAX_NESTING} levels`);
    const c = this.text[this.i];
    if (c === '{') return this.parseObject(path, depth);
    if (c === '[') return this.parseArray(path, depth);
    if (c === '"') return this.parseString();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.parseNumber();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.i)) {
        this.i += word.length;
        return value;
      }
    }
    if (c === "'") this.fail('JSON strings use double quotes');
    this.fail(`expected a value (a string, number, object, array, true, false or null), found ${this.describeNext()}`);
  }

  private parseObject(path: string, depth: number): Record<string, unknown> {
    const result: Record<string, unknown> = {};
    const seen = new Map<string, SourcePosition>();
    this.i++;
    this.skipSpace();
    if (this.text[this.i] === '}') {
      this.i++;
      return result;
    }
    for (;;) {
      if (this.text[this.i] !== '"') this.fail(this.text[this.i] === '}' ? 'a comma before "}" is not allowed in JSON' : `expected a key in double quotes, found ${this.describeNext()}`);
      const keyAt = this.here();
      const key = this.parseString();
      const first = seen.get(key);
      if (first !== undefined) this.fail(`duplicate key ${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)} (first at line ${first.line}); give each key once`, this.i - 1);
      seen.set(key, keyAt);
      const keyPath = joinPath(path, key);
      this.positions.set(keyPath, keyAt);
      this.skipSpace();
      if (this.text[this.i] !== ':') this.fail(`expected ":" after the key, found ${this.describeNext()}`);
      this.i++;
      this.skipSpace();
      // defineProperty: a key named __proto__ stays an ordinary key (and is refused later as unknown).
      Object.defineProperty(result, key, { value: this.parseValue(keyPath, depth + 1), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.text[this.i];
      if (c === ',') {
        this.i++;
        this.skipSpace();
        continue;
      }
      if (c === '}') {
        this.i++;
        return result;
      }
      this.fail(`expected "," or "}" after a value, found ${this.describeNext()}`);
    }
  }

  private parseArray(path: string, depth: number): unknown[] {
    const result: unknown[] = [];
    this.i++;
    this.skipSpace();
    if (this.text[this.i] === ']') {
      this.i++;
      return result;
    }
    for (;;) {
      if (this.text[this.i] === ']') this.fail('a comma before "]" is not allowed in JSON');
      const elementPath = joinPath(path, result.length);
      this.positions.set(elementPath, this.here());
      result.push(this.parseValue(elementPath, depth + 1));
      this.skipSpace();
      const c = this.text[this.i];
      if (c === ',') {
        this.i++;
        this.skipSpace();
        continue;
      }
      if (c === ']') {
        this.i++;
        return result;
      }
      this.fail(`expected "," or "]" after an array element, found ${this.describeNext()}`);
    }
  }

  private parseString(): string {
    const start = this.i;
    this.i++;
    let out = '';
    for (;;) {
      if (this.i >= this.text.length) this.fail('a string is not closed (missing ")', start);
      const c = this.text[this.i]!;
      const code = c.charCodeAt(0);
      if (c === '"') {
        this.i++;
        return out;
      }
      if (code < 0x20) this.fail(code === 10 ? 'a string is not closed before the end of the line' : 'a control character in a string must be escaped (\\n, \\t, \\u00XX)');
      if (c !== '\\') {
        out += c;
        this.i++;
        continue;
      }
      const e = this.text[this.i + 1];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && simple[e] !== undefined) {
        out += simple[e];
        this.i += 2;
      } else if (e === 'u') {
        const hex = this.text.slice(this.i + 2, this.i + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail('\\u must be followed by four hex digits');
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += 6;
      } else {
        this.fail('unknown escape in a string (allowed: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
      }
    }
  }

  private parseNumber(): number {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.text.slice(this.i, this.i + 400));
    if (m === null) this.fail('not a valid JSON number');
    const after = this.text[this.i + m[0].length];
    if (after !== undefined && /[0-9A-Za-z.]/.test(after)) this.fail('not a valid JSON number (no leading zeros, hex or trailing dot)');
    this.i += m[0].length;
    return Number(m[0]);
  }
}

export function parseJsonWithPositions(text: string): ParsedSource {
  const scanner = new JsonScanner(text);
  const value = scanner.parseDocument();
  return { value, positions: scanner.positions };
}
