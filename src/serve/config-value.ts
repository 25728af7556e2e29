// Small checks shared by the session spec and the config file validators: each returns the value or
// records one issue at a key path. Messages name the expected shape and, at most, the *type* of what
// was found: a value may be a secret pasted in the wrong place, so it is only echoed for enumerations.

export interface SpecIssue {
  /** Key path such as "sessions[1].card.kind". */
  path: string;
  message: string;
}

export type PlainObject = Record<string, unknown>;

export function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Uint8Array);
}

/** "a.b", "a[2]", or a quoted segment for keys that are not identifiers. */
export function joinPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  const segment = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
  if (base === '') return /^[A-Za-z_]/.test(segment) ? segment : `[${segment}]`;
  return /^[A-Za-z_]/.test(segment) ? `${base}.${segment}` : `${base}[${segment}]`;
}

export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  if (typeof value === 'bigint') return 'an integer';
  if (typeof value === 'string') return value === '' ? 'an empty string' : 'a string';
  return `a ${typeof value}`;
}

/** A short quoted form of a value known not to be secret (an enumeration's candidate). */
export function quoteShort(value: unknown): string {
  if (typeof value !== 'string') return describeType(value);
  return JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}…` : value);
}

/**
 * Longest string a spec field takes. Each is echoed in every status (twice: target and spec) and in
 * log lines, so one huge value would push status.get and log.tail over the control API's message
 * limit and leave every client unable to see, or remove, the session.
 */
export const MAX_STRING_LENGTH = 4096;

export class IssueList {
  readonly issues: SpecIssue[] = [];

  add(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  get count(): number {
    return this.issues.length;
  }

  string(obj: PlainObject, key: string, base: string, required: boolean, what = 'a string'): string | undefined {
    const path = joinPath(base, key);
    const value = obj[key];
    if (value === undefined) {
      if (required) this.add(path, `missing; ${what} is required`);
      return undefined;
    }
    if (typeof value !== 'string') {
      this.add(path, `must be ${what} (got ${describeType(value)})`);
      return undefined;
    }
    if (value.trim() === '') {
      this.add(path, `must not be empty`);
      return undefined;
    }
    if (value.includes('\0')) {
      this.add(path, `must not contain a NUL character`);
      return undefined;
    }
    if (value.length > MAX_STRING_LENGTH) {
      this.add(path, `is ${value.length} characters long; at most ${MAX_STRING_LENGTH} (the longest path a system takes)`);
      return undefined;
    }
    return value;
  }

  boolean(obj: PlainObject, key: string, base: string): boolean | undefined {
    const value = obj[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') {
      this.add(joinPath(base, key), `must be true or false (got ${describeType(value)})`);
      return undefined;
    }
    return value;
  }

  integer(obj: PlainObject, key: string, base: string, min: number, max: number, unit = ''): number | undefined {
    const value = obj[key];
    if (value === undefined) return undefined;
    const path = joinPath(base, key);
    const n = typeof value === 'bigint' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n)) {
      this.add(path, `must be an integer from ${min} to ${max}${unit} (got ${describeType(value)})`);
      return undefined;
    }
    if (n < min || n > max) {
      this.add(path, `must be from ${min} to ${max}${unit} (got ${n})`);
      return undefined;
    }
    return n;
  }

  oneOf<T extends string>(obj: PlainObject, key: string, base: string, allowed: readonly T[], required: boolean): T | undefined {
    const value = obj[key];
    const path = joinPath(base, key);
    if (value === undefined) {
      if (required) this.add(path, `missing; must be one of ${allowed.join(', ')}`);
      return undefined;
    }
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      this.add(path, `must be one of ${allowed.join(', ')} (got ${quoteShort(value)})`);
      return undefined;
    }
    return value as T;
  }

  object(value: unknown, path: string, required: boolean, hint = ''): PlainObject | undefined {
    if (value === undefined) {
      if (required) this.add(path, `missing${hint}`);
      return undefined;
    }
    if (!isPlainObject(value)) {
      this.add(path, `must be an object (a table in TOML; got ${describeType(value)})${hint}`);
      return undefined;
    }
    return value;
  }
}
