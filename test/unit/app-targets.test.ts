// What the OS hands the desktop app to open: argv of a first or second launch, macOS open-file/open-url.
import { describe, expect, it } from 'vitest';
import { parseTarget, parseTargets, shortForm, userArguments } from '../../app/main/targets.js';

const CWD = '/home/user/Downloads';

describe('userArguments', () => {
  it('skips the executable when packaged, the executable and app path in development, and every switch', () => {
    expect(userArguments(['/opt/app/spice-smartcard', 'a.vv', '--no-sandbox'], true)).toEqual(['a.vv']);
    expect(userArguments(['/usr/lib/electron', '.', 'a.vv'], false)).toEqual(['a.vv']);
    expect(userArguments(['C:\\app.exe', '--squirrel-firstrun', '--original-process-start-time=123', 'spice://h'], true)).toEqual(['spice://h']);
    expect(userArguments(['/opt/app/spice-smartcard'], true)).toEqual([]);
  });
});

describe('parseTarget', () => {
  const table: Array<[string, ReturnType<typeof parseTarget>]> = [
    ['/tmp/console.vv', { kind: 'vv', path: '/tmp/console.vv' }],
    ['console.vv', { kind: 'vv', path: '/home/user/Downloads/console.vv' }],
    ['../pve/VM 101.VV', { kind: 'vv', path: '/home/user/pve/VM 101.VV' }],
    ['file:///tmp/a%20b.vv', { kind: 'vv', path: '/tmp/a b.vv' }],
    ['spice://10.0.0.5:5900', { kind: 'uri', uri: 'spice://10.0.0.5:5900' }],
    ['SPICE+TLS://vm.example:5901', { kind: 'uri', uri: 'SPICE+TLS://vm.example:5901' }],
    ['spice+unix:///run/vm.sock', { kind: 'uri', uri: 'spice+unix:///run/vm.sock' }],
    ['  spice://h:1  ', { kind: 'uri', uri: 'spice://h:1' }],
  ];
  it.each(table)('%s', (argument, expected) => {
    expect(parseTarget(argument, CWD)).toEqual(expected);
  });

  const refused: Array<[string, string]> = [
    ['', 'empty argument'],
    ['   ', 'empty argument'],
    ['notes.txt', 'not a .vv file'],
    ['/etc/passwd', 'not a .vv file'],
    ['file:///tmp/a.txt', 'not a .vv file'],
    ['file://remote-host/share/a.vv', 'a file: URL that names no local file'],
    ['https://portal.example/console.vv', 'https: links are not SPICE links (spice://, spice+tls://, spice+unix://)'],
    ['vnc://h:5900', 'vnc: links are not SPICE links (spice://, spice+tls://, spice+unix://)'],
    ['javascript:alert(1)', 'javascript: links are not SPICE links (spice://, spice+tls://, spice+unix://)'],
    ['spice:h:5900', 'a spice: link needs //HOST after the scheme'],
    ['a.vv\nb.vv', 'not a path or link'],
    ['a\0.vv', 'not a path or link'],
    ['x'.repeat(9000) + '.vv', 'not a path or link'],
  ];
  it.each(refused)('refuses %j', (argument, reason) => {
    expect(parseTarget(argument, CWD)).toEqual({ reason });
  });

  it('never throws on random input', () => {
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const alphabet = 'spice+tls:/\\.vvfile%00\0\n ?#@:[]-~é';
    for (let i = 0; i < 2000; i++) {
      const text = Array.from({ length: next() % 40 }, () => alphabet[next() % alphabet.length]).join('');
      const result = parseTarget(text, CWD);
      expect('reason' in result || result.kind === 'vv' || result.kind === 'uri').toBe(true);
    }
  });
});

describe('parseTargets', () => {
  it('collects targets in order and says why the rest was ignored, without query strings or user info', () => {
    const parsed = parseTargets(['/opt/app/spice-smartcard', 'a.vv', 'https://user:pw@portal.example/x?ticket=secret', 'spice://h:1'], { isPackaged: true, cwd: CWD });
    expect(parsed.targets).toEqual([
      { kind: 'vv', path: '/home/user/Downloads/a.vv' },
      { kind: 'uri', uri: 'spice://h:1' },
    ]);
    expect(parsed.ignored).toEqual([{ argument: 'https://portal.example/x', reason: 'https: links are not SPICE links (spice://, spice+tls://, spice+unix://)' }]);
  });

  it('shortens long arguments for notices', () => {
    expect(shortForm('a'.repeat(100))).toBe(`${'a'.repeat(77)}...`);
  });
});
