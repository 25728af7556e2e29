// Malformed input files given to the built CLI: .vv files to `probe`, soft card files to
// `card show`. Each must end with exit code 2 and one clear line on stderr, never a stack trace.
// Reproduce a failure with HOSTILE_SEED=<seed printed in the failure>.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../helpers/cli.js';
import { Rng, mutate, seedFromEnv } from '../helpers/hostile-spice-server.js';

const SEED = seedFromEnv('HOSTILE_SEED');
let dir = '';

const VALID_VV = [
  '[virt-viewer]',
  'type=spice',
  'title=VM\\s1 \\t tab',
  'ca=-----BEGIN CERTIFICATE-----\\nMIIBdummy\\n-----END CERTIFICATE-----\\n',
  'host-subject=C=XX,O=Test,CN=host',
  'delete-this-file=0',
  'secure-channels=main;inputs;smartcard',
  'host=127.0.0.1',
  'port=1',
  '',
].join('\n');

interface Case {
  name: string;
  content: Uint8Array | string;
  /** A truncated file can still be a usable one; then probe dials 127.0.0.1:1 and fails with exit 3. */
  mayParse?: boolean;
}

function vvCases(rng: Rng): Case[] {
  const cases: Case[] = [
    { name: 'empty', content: '' },
    { name: 'only-newlines', content: '\n\n\n' },
    { name: 'binary', content: rng.bytes(4096) },
    { name: 'nul-bytes', content: new Uint8Array(2048) },
    { name: 'utf16-bom', content: Buffer.from(`\ufeff${VALID_VV}`, 'utf16le') },
    { name: 'elf-like', content: Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.from(rng.bytes(1000))]) },
    { name: 'unknown-groups', content: '[ovirt]\nhost=a\n[something]\nport=5900\n' },
    { name: 'no-group', content: 'type=spice\nhost=127.0.0.1\nport=5900\n' },
    { name: 'unterminated-group', content: '[virt-viewer\ntype=spice\nhost=h\nport=1\n' },
    { name: 'line-without-equals', content: '[virt-viewer]\ntype=spice\nthis is not a key\nhost=h\nport=1\n' },
    { name: 'bad-escape', content: '[virt-viewer]\ntype=spice\nhost=a\\q\nport=5900\n' },
    { name: 'trailing-backslash', content: '[virt-viewer]\ntype=spice\nhost=a\\\nport=5900\n' },
    { name: 'bad-unicode-escape', content: '[virt-viewer]\ntype=spice\nhost=\\u12\nport=5900\n' },
    { name: 'wrong-type', content: '[virt-viewer]\ntype=vnc\nhost=127.0.0.1\nport=5900\n' },
    { name: 'no-port', content: '[virt-viewer]\ntype=spice\nhost=127.0.0.1\n' },
    { name: 'port-not-a-number', content: '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=59x0\n' },
    { name: 'port-huge', content: '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=99999999999999999999\n' },
    { name: 'port-negative-tls', content: '[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=-5\ntls-port=-7\n' },
    { name: 'host-empty', content: '[virt-viewer]\ntype=spice\nhost=\nport=5900\n' },
    { name: 'bad-proxy', content: '[virt-viewer]\ntype=spice\nhost=h\nport=1\nproxy=ht!tp://::::\n' },
    { name: 'huge-value', content: `[virt-viewer]\ntype=spice\nhost=${'a'.repeat(1024 * 1024 + 10)}\nport=5900\n` },
    { name: 'huge-file', content: `[virt-viewer]\ntype=spice\nhost=h\nport=1\n${'# comment padding\n'.repeat(200_000)}` },
    { name: 'huge-garbage', content: rng.bytes(3 * 1024 * 1024) },
    { name: 'many-keys', content: `[virt-viewer]\n${Array.from({ length: 50_000 }, (_, i) => `k${i}=v`).join('\n')}\n` },
  ];
  const valid = Buffer.from(VALID_VV);
  for (let i = 0; i < 12; i++) {
    const cut = rng.int(valid.byteLength);
    cases.push({ name: `truncated-${cut}`, content: valid.subarray(0, cut), mayParse: true });
  }
  for (let i = 0; i < 12; i++) cases.push({ name: `mutated-${i}`, content: mutate(rng, valid), mayParse: true });
  return cases;
}

function expectOneClearLine(r: CliResult, what: string, allowed: readonly number[]): void {
  const context = `${what} (HOSTILE_SEED=${SEED}): exit ${r.code}\nstderr: ${r.stderr.slice(0, 2000)}`;
  expect(allowed, context).toContain(r.code);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  const errors = lines.filter((l) => l.startsWith('spice-smartcard: '));
  // A file that parses gets probe's progress line ("Probing HOST ...") before the error.
  expect(r.code === 2 ? lines.length : errors.length, context).toBe(1);
  expect(errors.length, context).toBe(1);
  expect(errors[0]!, context).toMatch(/^spice-smartcard: .{10,}/);
  expect(r.stderr, context).not.toMatch(/^\s+at /m);
  expect(r.stderr, context).not.toMatch(/internal error|TypeError|RangeError|SyntaxError/);
  expect(errors[0]!.length, context).toBeLessThan(1000);
}

async function inPool<T>(items: readonly T[], width: number, each: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await each(items[next++]!);
    }),
  );
}

describe(`malformed files given to the CLI (seed ${SEED})`, () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'spice-malformed-'));
  });
  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('probe on malformed .vv files: exit 2 and one clear line', async () => {
    const rng = new Rng(SEED ^ 0x9999);
    const cases = vvCases(rng);
    mkdirSync(join(dir, 'a-directory.vv'));
    cases.push({ name: 'a-directory', content: '' });
    await inPool(cases, 4, async (c) => {
      const file = c.name === 'a-directory' ? join(dir, 'a-directory.vv') : join(dir, `${c.name}.vv`);
      if (c.name !== 'a-directory') writeFileSync(file, c.content);
      const started = Date.now();
      const r = await runCli(['probe', file], { timeoutMs: 20_000 });
      if (Date.now() - started > 3000) console.log(`probe ${c.name}: ${Date.now() - started} ms, exit ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''}`);
      expectOneClearLine(r, `probe ${c.name}`, c.mayParse ? [2, 3] : [2]);
    });
    const r = await runCli(['probe', join(dir, 'does-not-exist.vv')]);
    expectOneClearLine(r, 'probe missing file', [2]);
  }, 120_000);

  it('card show on truncated and garbage soft card files: exit 2 and one clear line', async () => {
    const rng = new Rng(SEED ^ 0xaaaa);
    const good = join(dir, 'good.card');
    const created = await runCli(['card', 'create', good, '--subject', 'CN=Malformed Test', '--key', 'p256'], { timeoutMs: 30_000 });
    expect(created.code, created.stderr).toBe(0);
    const valid = readFileSync(good);
    const text = valid.toString('utf8');
    const cases: Case[] = [
      { name: 'empty', content: '' },
      { name: 'binary', content: rng.bytes(2048) },
      { name: 'json-array', content: '[]' },
      { name: 'json-null', content: 'null' },
      { name: 'json-number', content: '42' },
      { name: 'json-string', content: '"card"' },
      { name: 'empty-object', content: '{}' },
      { name: 'huge', content: `{"x":"${'a'.repeat(5 * 1024 * 1024)}"}` },
      { name: 'deep-nesting', content: `${'['.repeat(100_000)}${']'.repeat(100_000)}` },
      { name: 'wrong-field-types', content: text.replace(/"[^"]*"(?=\s*[,}\]])/g, '12345') },
      { name: 'nulls', content: text.replace(/"[^"]*"(?=\s*[,}\]])/g, 'null') },
    ];
    const trimmed = text.trimEnd().length;
    for (let i = 0; i < 12; i++) cases.push({ name: `truncated-${i}`, content: valid.subarray(0, rng.int(trimmed)) });
    await inPool(cases, 4, async (c) => {
      const file = join(dir, `${c.name}.card`);
      writeFileSync(file, c.content);
      const r = await runCli(['card', 'show', file], { timeoutMs: 20_000 });
      expectOneClearLine(r, `card show ${c.name}`, [2]);
    });
  }, 120_000);
});
