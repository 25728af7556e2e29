import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, extname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServeConfig, MAX_CONFIG_BYTES, parseServeConfig, ServeConfigError } from '../../src/serve/config-file.js';
import { parseJsonWithPositions } from '../../src/serve/json-positions.js';
import { validateSessionSpec } from '../../src/serve/session-spec.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'serve-config');
const BASE_DIR = '/etc/spice-smartcard';
const isConfig = (name: string): boolean => !name.endsWith('.expected.json') && !name.endsWith('.errors.txt') && name !== 'README.md';
const stem = (name: string): string => basename(name, extname(name));

async function fixtures(kind: 'valid' | 'invalid'): Promise<string[]> {
  return (await readdir(join(FIXTURES, kind))).filter(isConfig).sort();
}

function parseFixture(text: string, file: string): ReturnType<typeof parseServeConfig> {
  return parseServeConfig(text, { file, baseDir: BASE_DIR });
}

function problemLines(text: string, file: string): string[] {
  try {
    parseFixture(text, file);
  } catch (e) {
    if (e instanceof ServeConfigError) return e.message.split('\n');
    throw e;
  }
  throw new Error(`${file} was accepted`);
}

describe('serve config fixtures', async () => {
  const valid = await fixtures('valid');
  const invalid = await fixtures('invalid');

  it('has fixtures of both formats', () => {
    expect(valid.filter((f) => f.endsWith('.toml')).length).toBeGreaterThanOrEqual(2);
    expect(valid.filter((f) => f.endsWith('.json')).length).toBeGreaterThanOrEqual(2);
    expect(invalid.length).toBeGreaterThanOrEqual(15);
  });

  it.each(valid)('valid/%s gives the expected ServeConfig', async (name) => {
    const text = await readFile(join(FIXTURES, 'valid', name), 'utf8');
    const expected: unknown = JSON.parse(await readFile(join(FIXTURES, 'valid', `${stem(name)}.expected.json`), 'utf8'));
    expect(parseFixture(text, name)).toStrictEqual(expected);
  });

  it.each(invalid)('invalid/%s is refused with the expected lines', async (name) => {
    const text = await readFile(join(FIXTURES, 'invalid', name), 'utf8');
    const expected = (await readFile(join(FIXTURES, 'invalid', `${stem(name)}.errors.txt`), 'utf8')).trimEnd().split('\n');
    expect(problemLines(text, name)).toStrictEqual(expected);
  });

  it('names the line of each key in TOML array-of-tables, sub-tables, dotted keys and inline tables', async () => {
    const text = await readFile(join(FIXTURES, 'invalid', 'values.toml'), 'utf8');
    const lines = text.split('\n');
    for (const problem of problemLines(text, 'values.toml')) {
      const [, line, path] = /^values\.toml:(\d+): ([^:]+):/.exec(problem)!;
      // The last key of the path, or the index's [[sessions]] header, is on the line named.
      const key = /([A-Za-z]+)$/.exec(path!)![1]!;
      expect(lines[Number(line) - 1], problem).toMatch(new RegExp(`\\b${key}\\b|\\[\\[sessions\\]\\]|\\[sessions\\.card\\]`));
    }
  });
});

describe('shipped examples', () => {
  it('contrib/serve.example.toml is a valid config', async () => {
    const file = join(import.meta.dirname, '..', '..', 'contrib', 'serve.example.toml');
    const config = await loadServeConfig(file);
    expect(config.sessions.map((s) => [s.name, s.mode, s.card.kind])).toStrictEqual([
      ['build-vm', 'connect', 'reader'],
      ['test-vm', 'passthru', 'soft'],
      ['desk-vm', 'proxy', 'demo'],
    ]);
  });
});

describe('docs/serve.md', () => {
  it('its TOML and JSON examples are valid and say the same', async () => {
    const doc = await readFile(join(import.meta.dirname, '..', '..', 'docs', 'serve.md'), 'utf8');
    const blocks = [...doc.matchAll(/```(toml|json)\n([\s\S]*?)```/g)].map((m) => ({ format: m[1] as 'toml' | 'json', text: m[2]! }));
    expect(blocks.map((b) => b.format)).toStrictEqual(['toml', 'json']);
    const [toml, json] = blocks.map((b) => parseServeConfig(b.text, { file: `serve.md (${b.format})`, format: b.format, baseDir: BASE_DIR }));
    expect(toml!.sessions).toHaveLength(3);
    expect(json).toStrictEqual(toml);
  });
});

describe('validateSessionSpec', () => {
  const good = { name: 'vm1', mode: 'connect', target: 'spice://h:5900', card: { kind: 'demo' } };

  it('returns the spec with only the known keys, under any path prefix', () => {
    expect(validateSessionSpec(good, 'spec')).toStrictEqual({ ok: true, spec: good });
    const bad = validateSessionSpec({ ...good, card: { kind: 'pcsc' } }, '');
    expect(bad).toStrictEqual({ ok: false, errors: [{ path: 'card.kind', message: 'must be one of demo, soft, reader, replay, none (got "pcsc")' }] });
    const nested = validateSessionSpec({ ...good, mode: 'viewer' }, 'spec');
    expect(nested.ok === false && nested.errors.map((e) => e.path)).toStrictEqual(['spec.mode']);
  });

  it('refuses what is not an object', () => {
    for (const value of [null, 'vm1', 3, [good], undefined]) {
      const result = validateSessionSpec(value, 'spec');
      expect(result.ok).toBe(false);
      expect(result.ok === false && result.errors[0]!.path).toBe('spec');
    }
  });

  it('never repeats a value that could be a secret', () => {
    const secret = 'Tr0ub4dor&3-secret';
    const placements: unknown[] = [
      { ...good, target: `spice://h:5900?password=${secret}` },
      { ...good, target: `spice://h:5900?password=${secret}&port=1` },
      { ...good, target: `spice://${secret}@h:5900` },
      { ...good, target: `spice://h:${secret}` },
      { ...good, target: `ws://h/${secret} x` },
      { ...good, password: secret },
      { ...good, spicePassword: secret },
      { ...good, passwordFile: 42, hostSubject: [secret] },
      { ...good, mode: 'passthru', target: `${secret}:5900x` },
      { ...good, mode: 'proxy', listen: `${secret}` },
      { ...good, card: { kind: 'soft', path: ['x', secret] } },
      { ...good, reconnect: { initialMs: secret } },
      { ...good, autostart: secret },
    ];
    for (const value of placements) {
      const result = validateSessionSpec(value, 'spec');
      expect(result.ok, JSON.stringify(value)).toBe(false);
      expect(JSON.stringify(result)).not.toContain(secret.slice(0, 12));
    }
  });
});

describe('loadServeConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'serve-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const refusal = async (file: string): Promise<string> => {
    const error: unknown = await loadServeConfig(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ServeConfigError);
    return (error as ServeConfigError).message;
  };

  it('resolves relative paths against the file and sniffs JSON in a file of another extension', async () => {
    const file = join(dir, 'serve.conf');
    await writeFile(file, '{ "sessions": [ { "name": "a", "mode": "connect", "target": "vm.vv", "passwordFile": "a.pw", "card": { "kind": "soft", "path": "a.card" } } ] }');
    const config = await loadServeConfig(file);
    expect(config.sessions[0]).toStrictEqual({ name: 'a', mode: 'connect', target: join(dir, 'vm.vv'), passwordFile: join(dir, 'a.pw'), card: { kind: 'soft', path: 'a.card' } });
  });

  it('lists at most 100 problems, then says how many more there are', () => {
    const text = Array.from({ length: 130 }, (_, i) => `[[sessions]]\nname = "s${i}"\nmode = "connect"\ntarget = "spice://h:5900"\ncard.kind = "none"\nbogus = ${i}\n`).join('');
    const lines = problemLines(text, 'many.toml');
    expect(lines).toHaveLength(101);
    expect(lines[0]).toBe('many.toml:6: sessions[0].bogus: unknown key; allowed here: name, mode, target, card, passwordFile, caFile, hostSubject, listen, listenAny, trace, traceSecrets, autostart, reconnect');
    expect(lines[99]).toMatch(/^many\.toml:600: sessions\[99\]\.bogus:/);
    expect(lines[100]).toBe('many.toml: … and 30 more problems');
  });

  it('says what is wrong with an unreadable, binary or oversized file', async () => {
    expect(await refusal(join(dir, 'missing.toml'))).toBe(`${join(dir, 'missing.toml')}: cannot read the config file: no such file`);
    const sub = join(dir, 'sub.toml');
    await mkdir(sub);
    expect(await refusal(sub)).toBe(`${sub}: cannot read the config file: is a directory`);
    const binary = join(dir, 'disk.img');
    await writeFile(binary, Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x80]));
    expect(await refusal(binary)).toBe(`${binary}: the file is not UTF-8 text (is this the right file?)`);
    const big = join(dir, 'big.toml');
    await writeFile(big, `# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`);
    expect(await refusal(big)).toMatch(/^.*big\.toml: the file is \d+ bytes; a config is at most 1048576/);
  });
});

/** Deterministic, so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    s ^= s >>> 12;
    return (s >>> 0) / 0x100000000;
  };
}

const PIECES = ['{', '}', '[', ']', '[[', ']]', '"', "'", '"""', ',', ':', '=', '.', '\n', '#', '\\', '\\u', 'sessions', 'card', 'kind', '0', '-1', '1e999', 'true', 'null', '__proto__', '\u0000', '\ud800', 'é'];

function mutate(text: string, random: () => number): string {
  let out = text;
  const edits = 1 + Math.floor(random() * 4);
  for (let n = 0; n < edits; n++) {
    const at = Math.floor(random() * (out.length + 1));
    const choice = random();
    if (choice < 0.3) out = out.slice(0, at) + out.slice(at + 1 + Math.floor(random() * 8));
    else if (choice < 0.7) out = out.slice(0, at) + PIECES[Math.floor(random() * PIECES.length)]! + out.slice(at);
    else if (choice < 0.85) out = out.slice(0, at);
    else {
      const from = Math.floor(random() * out.length);
      out = out.slice(0, at) + out.slice(from, from + 20) + out.slice(at);
    }
  }
  return out;
}

describe('mutated config text', () => {
  it('is either accepted or refused with ServeConfigError, with lines inside the file', async () => {
    const sources: Array<[string, string]> = [];
    for (const kind of ['valid', 'invalid'] as const) {
      for (const name of await fixtures(kind)) sources.push([name, await readFile(join(FIXTURES, kind, name), 'utf8')]);
    }
    const random = prng(0x5eed);
    let refused = 0;
    for (let round = 0; round < 150; round++) {
      for (const [name, text] of sources) {
        const mutated = mutate(text, random);
        try {
          parseFixture(mutated, name);
        } catch (e) {
          if (!(e instanceof ServeConfigError)) throw new Error(`${name} mutated (round ${round}) threw ${String(e)}:\n${JSON.stringify(mutated)}`);
          refused++;
          const lineCount = mutated.split('\n').length;
          for (const p of e.problems) {
            expect(p.message.length).toBeGreaterThan(0);
            if (p.line !== undefined) expect(p.line >= 1 && p.line <= lineCount, `${name}: ${e.message}`).toBe(true);
          }
        }
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it('random bytes never throw anything else', () => {
    const random = prng(7);
    for (let n = 0; n < 500; n++) {
      const text = Array.from({ length: Math.floor(random() * 80) }, () => String.fromCharCode(Math.floor(random() * 128))).join('');
      for (const file of ['x.json', 'x.toml']) {
        try {
          parseFixture(text, file);
        } catch (e) {
          if (!(e instanceof ServeConfigError)) throw new Error(`${file} ${JSON.stringify(text)} threw ${String(e)}`);
        }
      }
    }
  });

  it('validateSessionSpec takes any value without throwing, and what it accepts validates again unchanged', () => {
    const random = prng(23);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const scalars: unknown[] = ['', 'vm1', 'connect', 'passthru', 'proxy', 'spice://h:5900', '127.0.0.1:2001', 'unix:/s', 'a.vv', 'demo', 'soft', 'x.card', 0, 100, 1e9, -1, 1.5, true, null, [], {}, '\u0000', 'x'.repeat(70)];
    const keys = ['name', 'mode', 'target', 'card', 'kind', 'path', 'reader', 'listen', 'listenAny', 'reconnect', 'initialMs', 'maxMs', 'trace', 'traceSecrets', 'autostart', 'passwordFile', '__proto__', 'constructor'];
    const value = (depth: number): unknown => {
      if (depth > 2 || random() < 0.4) return pick(scalars);
      const obj: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 6); i > 0; i--) Object.defineProperty(obj, pick(keys), { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
      return obj;
    };
    let accepted = 0;
    for (let n = 0; n < 5000; n++) {
      const base: Record<string, unknown> = random() < 0.5 ? { name: 'vm1', mode: pick(['connect', 'passthru', 'proxy']), target: pick(scalars), card: { kind: pick(['demo', 'none', 'soft']) } } : {};
      const v = Object.assign(base, value(0));
      const result = validateSessionSpec(v, 'spec');
      if (result.ok) {
        accepted++;
        expect(validateSessionSpec(result.spec, 'spec')).toStrictEqual(result);
      } else {
        expect(result.errors.length).toBeGreaterThan(0);
        for (const e of result.errors) expect(e.path.startsWith('spec')).toBe(true);
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it('the position-recording JSON parser reads what JSON.parse reads', () => {
    const random = prng(11);
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.3) return [0, -1.5e-3, 12345678901, 'a"\\\n\u0001é😀', true, false, null][Math.floor(random() * 7)];
      if (r < 0.6) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, (_, i) => [`k${i}${'é"'.repeat(i % 2)}`, value(depth + 1)]));
    };
    for (let n = 0; n < 300; n++) {
      const v = value(0);
      for (const text of [JSON.stringify(v), JSON.stringify(v, null, 2)]) expect(parseJsonWithPositions(text).value).toStrictEqual(JSON.parse(text));
    }
    expect(() => parseJsonWithPositions('[1,]')).toThrow(/comma before "\]"/);
  });
});
