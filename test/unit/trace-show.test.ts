import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';
import { runTrace } from '../../src/cli/trace-command.js';
import { UsageError } from '../../src/cli/exit-codes.js';
import { ReplayCard } from '../../src/trace/replay-card.js';
import { TraceRecorder } from '../../src/trace/trace-recorder.js';

const apdu = (...bytes: number[]): VscMessage => ({ type: VscMsgType.Apdu, readerId: 0, data: Uint8Array.from(bytes) });
const ATR = [0x3b, 0x0b, 0x80, 0xf9];
const SELECT_PIV = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
const GET_CHUID = [0x00, 0xcb, 0x3f, 0xff, 0x05, 0x5c, 0x03, 0x5f, 0xc1, 0x02, 0x00];
const VERIFY = [0x00, 0x20, 0x00, 0x80, 0x08, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0xff, 0xff];

function fixture(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'trace-show-')), 'fixture.trace');
  let t = 0;
  const r = new TraceRecorder({ path, tool: '0.1.0', target: '127.0.0.1 (port 5930)', card: 'fixture card', now: () => (t += 250) });
  r.record('out', { type: VscMsgType.ReaderAdd, readerId: 0, name: 'fixture card' });
  r.record('in', { type: VscMsgType.Error, readerId: 0, code: 0 });
  r.record('out', { type: VscMsgType.Atr, readerId: 0, atr: Uint8Array.from(ATR) });
  r.record('in', apdu(...SELECT_PIV));
  r.record('out', apdu(0x61, 0x04, 0x4f, 0x02, 0xaa, 0xbb, 0x90, 0x00));
  r.record('in', apdu(...GET_CHUID));
  r.record('out', apdu(0x6a, 0x82));
  r.record('in', apdu(...VERIFY));
  r.record('out', apdu(0x90, 0x00));
  r.close();
  return path;
}

async function show(args: string[]): Promise<{ code: number; text: string }> {
  let text = '';
  const code = await runTrace(args, (t) => (text += t));
  return { code, text };
}

describe('trace show', () => {
  it('prints time, direction, VSC type, command names, status words, TLV and redaction', async () => {
    const { code, text } = await show(['show', fixture()]);
    expect(code).toBe(0);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^trace v1 by spice-smartcard 0\.1\.0: fixture card → 127\.0\.0\.1 \(port 5930\), started 1970-01-01T00:00:00\.250Z$/);
    expect(text).toMatch(/\+0\.250s {2}card→VM {2}ReaderAdd/);
    expect(text).toMatch(/\+0\.750s {2}card→VM {2}ATR/);
    expect(text).toMatch(/VM→card {2}APDU +reader 0 {2}SELECT\n +00a4040005a000000308\n/);
    expect(text).toMatch(/GET DATA {2}tlv 5C\(3\)/);
    expect(text).toMatch(/6A82 file or application not found/);
    expect(text).toMatch(/VERIFY {2}\[REDACTED\]\n +0020008008ffffffffffffffff\n/);
    expect(text).toMatch(/9000 success/);
    expect(text).toMatch(/9000 success {2}tlv 61\(4\)/);
  });

  it('--json: one object per line, header first', async () => {
    const { text } = await show(['show', fixture(), '--json']);
    const rows = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({ record: 'header', card: 'fixture card', secrets: false });
    expect(rows.filter((r) => r['command'] === 'VERIFY')).toEqual([expect.objectContaining({ redacted: true, hex: '0020008008ffffffffffffffff' })]);
    expect(rows).toHaveLength(10);
  });

  it('a truncated or foreign file is a usage error (exit 2) that says so', async () => {
    const good = readFileSync(fixture());
    const dir = mkdtempSync(join(tmpdir(), 'trace-bad-'));
    writeFileSync(join(dir, 'cut.trace'), good.subarray(0, good.length - 3));
    writeFileSync(join(dir, 'text.trace'), 'hello');
    await expect(show(['show', join(dir, 'cut.trace')])).rejects.toThrow(/cut\.trace is not a usable trace: record 9 is truncated/);
    await expect(show(['show', join(dir, 'text.trace')])).rejects.toThrow(UsageError);
    await expect(show(['show', join(dir, 'missing.trace')])).rejects.toThrow(/Cannot read the trace/);
    await expect(show(['list'])).rejects.toThrow(UsageError);
  });
});

describe('replay card', () => {
  it('answers recorded commands in order with the recorded ATR; a redacted VERIFY matches any PIN of that length; unknown → 6F00 + warning', async () => {
    const warnings: string[] = [];
    const card = ReplayCard.fromBytes(readFileSync(fixture()), (t) => warnings.push(t));
    expect(card.name).toBe('fixture card');
    expect([...card.atr()]).toEqual(ATR);
    expect([...(await card.transmit(Uint8Array.from(SELECT_PIV)))].slice(-2)).toEqual([0x90, 0x00]);
    expect([...(await card.transmit(Uint8Array.from(GET_CHUID)))]).toEqual([0x6a, 0x82]);
    expect([...(await card.transmit(Uint8Array.of(0, 0x20, 0, 0x80, 8, 9, 9, 9, 9, 9, 9, 0xff, 0xff)))]).toEqual([0x90, 0x00]);
    expect([...(await card.transmit(Uint8Array.of(0, 0xb0, 0, 0, 0)))]).toEqual([0x6f, 0x00]);
    expect(warnings).toEqual([expect.stringMatching(/00b00000.* not in the trace; answering 6F00/)]);
    // Wraps around: the guest may start over.
    expect([...(await card.transmit(Uint8Array.from(SELECT_PIV)))].slice(-2)).toEqual([0x90, 0x00]);
  });
});
