import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogLine, SessionPhase } from '../../src/control/schema.js';
import { ServeBridge } from '../../src/serve/bridge.js';
import { formatLogLine, ServeLogger } from '../../src/serve/logger.js';
import { freePort } from '../helpers/ports.js';

const T0 = Date.UTC(2026, 10, 27, 21, 30, 0, 123);

function capture(options: ConstructorParameters<typeof ServeLogger>[0] = {}): { logger: ServeLogger; written: string[] } {
  const written: string[] = [];
  const logger = new ServeLogger({ now: () => T0, write: (line) => written.push(line), ...options });
  return { logger, written };
}

describe('ServeLogger', () => {
  it('writes human lines: time, padded level, [session], message', () => {
    const { logger, written } = capture();
    logger.log('info', 'message', 'vm1');
    logger.log('error', 'no session here');
    expect(written).toStrictEqual(['2026-11-27T21:30:00.123Z info  [vm1] message', '2026-11-27T21:30:00.123Z error no session here']);
  });

  it('writes one JSON object per line with --log-format json', () => {
    const { logger, written } = capture({ format: 'json' });
    logger.log('warn', 'card "x" removed', 'vm1');
    logger.log('info', 'bridge up');
    expect(written.map((l) => JSON.parse(l) as unknown)).toStrictEqual([
      { time: '2026-11-27T21:30:00.123Z', level: 'warn', session: 'vm1', message: 'card "x" removed' },
      { time: '2026-11-27T21:30:00.123Z', level: 'info', message: 'bridge up' },
    ]);
  });

  it('drops lines below the level, for the output and the listeners alike; the level can change', () => {
    const { logger, written } = capture({ level: 'warn' });
    const heard: LogLine[] = [];
    const stop = logger.onLine((line) => heard.push(line));
    logger.log('debug', 'd');
    logger.log('info', 'i');
    logger.log('warn', 'w');
    logger.log('error', 'e');
    logger.setLevel('debug');
    logger.log('debug', 'd2', 's');
    stop();
    logger.log('error', 'after unsubscribe');
    expect(written.map((l) => l.slice(25))).toStrictEqual(['warn  w', 'error e', 'debug [s] d2', 'error after unsubscribe']);
    expect(heard).toStrictEqual([
      { time: T0, level: 'warn', message: 'w' },
      { time: T0, level: 'error', message: 'e' },
      { time: T0, level: 'debug', session: 's', message: 'd2' },
    ]);
  });

  it('keeps one call on one line: newlines and control characters are escaped', () => {
    const { logger, written } = capture();
    logger.log('info', 'a\nfake 2026-01-01T00:00:00.000Z error line\r\u001b[31m', 'x\ny');
    expect(written).toStrictEqual(['2026-11-27T21:30:00.123Z info  [x\\ny] a\\nfake 2026-01-01T00:00:00.000Z error line\\r\\x1b[31m']);
  });

  it('replaces registered secrets wherever they appear, listeners included', () => {
    const { logger, written } = capture({ format: 'json' });
    const heard: LogLine[] = [];
    logger.onLine((line) => heard.push(line));
    logger.redact('s3cret-pw');
    logger.redact('ab'); // too short to redact without mangling ordinary words
    logger.log('info', 'linking with s3cret-pw now (ab)');
    expect(written.join('\n')).not.toContain('s3cret-pw');
    expect(heard[0]!.message).toBe('linking with [redacted] now (ab)');
  });

  it('a listener that throws does not stop the log', () => {
    const { logger, written } = capture();
    logger.onLine(() => {
      throw new Error('broken');
    });
    logger.log('info', 'one');
    logger.log('info', 'two');
    expect(written).toHaveLength(2);
  });

  it('formatLogLine is the same format the logger writes', () => {
    expect(formatLogLine({ time: T0, level: 'debug', message: 'm' }, 'human')).toBe('2026-11-27T21:30:00.123Z debug m');
  });
});

describe('a password given to a session', () => {
  it('never appears in the log, through the bridge, whatever happens to the session', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'serve-logger-'));
    const { logger, written } = capture({ level: 'debug', format: 'json' });
    const bridge = new ServeBridge({ log: logger, version: 'test', pcsc: false, cardDirectory: dir });
    const fromRequest = 'Req-pa55word-7';
    const fromFile = 'File-pa55word-9';
    const later = 'Later-pa55word-3';
    try {
      const passwordFile = join(dir, 'vm.pw');
      await writeFile(passwordFile, `${fromFile}\n`, { mode: 0o600 });
      // Nothing listens on this port: the sessions fail to connect and say so in the log.
      const port = await freePort();
      const waiting = new Promise<void>((resolve) => {
        const seen = new Set<string>();
        bridge.subscribe((event) => {
          const phase: SessionPhase | undefined = event.type === 'session' ? event.data.status.phase : undefined;
          if (event.type === 'session' && phase !== 'connecting' && phase !== 'stopped') seen.add(event.data.status.name);
          if (seen.size === 2) resolve();
        });
      });
      await bridge.request('session.add', { spec: { name: 'a', mode: 'connect', target: `spice://127.0.0.1:${port}`, card: { kind: 'demo' } }, password: fromRequest });
      await bridge.addSession({ name: 'b', mode: 'connect', target: `spice://127.0.0.1:${port}`, card: { kind: 'demo' }, passwordFile }, {});
      await waiting;
      await bridge.request('session.password', { name: 'a', password: later });
      const tail = await bridge.request('log.tail', {});
      await bridge.close();
      const everything = [...written, JSON.stringify(tail), JSON.stringify(bridge.snapshot())].join('\n');
      expect(written.length).toBeGreaterThan(2);
      for (const secret of [fromRequest, fromFile, later]) expect(everything).not.toContain(secret);
    } finally {
      await bridge.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
