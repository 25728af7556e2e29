import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConnectionFileError, defaultConnectionFilePath, newControlToken, readConnectionFile, removeConnectionFile, writeConnectionFile } from '../../src/control/token.js';

const dir = mkdtempSync(join(tmpdir(), 'control-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const reasonOf = (path: string): string | undefined => {
  try {
    readConnectionFile(path);
    return undefined;
  } catch (e) {
    return e instanceof ConnectionFileError ? e.reason : 'other';
  }
};

describe('control token and connection file', () => {
  it('makes a new 64-hex-digit token every time', () => {
    const a = newControlToken();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(newControlToken()).not.toBe(a);
  });

  it('puts the file in $XDG_RUNTIME_DIR, else in ~/.cache', () => {
    expect(defaultConnectionFilePath({ XDG_RUNTIME_DIR: '/run/user/1000' })).toBe('/run/user/1000/spice-smartcard/control.json');
    expect(defaultConnectionFilePath({})).toBe(join(homedir(), '.cache', 'spice-smartcard', 'control.json'));
    expect(defaultConnectionFilePath({ XDG_RUNTIME_DIR: '' })).toBe(join(homedir(), '.cache', 'spice-smartcard', 'control.json'));
  });

  it('writes mode 0600 in a new 0700 directory, leaves no temporary file, and reads it back', () => {
    const path = join(dir, 'a', 'b', 'control.json');
    const info = { url: 'http://127.0.0.1:7480/', token: newControlToken(), pid: 1234 };
    writeConnectionFile(path, info);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'a', 'b')).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(dir, 'a', 'b'))).toEqual(['control.json']);
    expect(readConnectionFile(path)).toEqual(info);
    const next = { ...info, token: newControlToken() };
    writeConnectionFile(path, next);
    expect(readConnectionFile(path)).toEqual(next);
  });

  it('removes the file only while it holds the given token', () => {
    const path = join(dir, 'rm', 'control.json');
    const token = newControlToken();
    writeConnectionFile(path, { url: 'http://127.0.0.1:1/', token, pid: 1 });
    removeConnectionFile(path, newControlToken());
    expect(existsSync(path)).toBe(true);
    removeConnectionFile(path, token);
    expect(existsSync(path)).toBe(false);
    expect(() => removeConnectionFile(path, token)).not.toThrow();
  });

  it('refuses missing, group- or world-readable and malformed files with what to do', () => {
    expect(() => readConnectionFile(join(dir, 'none.json'))).toThrow(/is "spice-smartcard serve" running\?/);
    expect(reasonOf(join(dir, 'none.json'))).toBe('missing');
    const loose = join(dir, 'loose.json');
    writeFileSync(loose, JSON.stringify({ url: 'http://127.0.0.1:1/', token: newControlToken(), pid: 1 }));
    for (const mode of [0o640, 0o604, 0o644]) {
      chmodSync(loose, mode);
      expect(reasonOf(loose)).toBe('permissions');
    }
    const bad = (content: string): string | undefined => {
      const path = join(dir, `bad-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(path, content, { mode: 0o600 });
      return reasonOf(path);
    };
    expect(bad('not json')).toBe('malformed');
    expect(bad('[]')).toBe('malformed');
    expect(bad(JSON.stringify({ url: 'file:///x', token: newControlToken(), pid: 1 }))).toBe('malformed');
    expect(bad(JSON.stringify({ url: 'http://127.0.0.1:1/', token: 'short', pid: 1 }))).toBe('malformed');
    expect(bad(JSON.stringify({ url: 'http://127.0.0.1:1/', token: newControlToken(), pid: -4 }))).toBe('malformed');
    expect(reasonOf(dir)).toBe('malformed');
  });
});
