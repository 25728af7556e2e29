// The arguments main starts the bridge's utility process with: what main writes is what the utility
// process reads, and a port that is not one the app could have listened on is dropped (a free one is used).
import { describe, expect, it } from 'vitest';
import { bridgeArgs, isPreferredPort, parseBridgeArgs, type BridgeArgs } from '../../app/bridge/bridge-args.js';

describe('bridge arguments', () => {
  it('round-trip: with and without the card folder and the port', () => {
    const cases: BridgeArgs[] = [
      { version: '1.2.3' },
      { version: '1.2.3', cardDirectory: '/home/u/.config/spice-smartcard/cards' },
      { version: '1.2.3', port: 41234 },
      { version: '0.0.0-dev', cardDirectory: 'C:\\Users\\u\\AppData\\Roaming\\spice-smartcard\\cards', port: 1024 },
      { version: '1', cardDirectory: '--port', port: 65535 },
    ];
    for (const args of cases) expect(parseBridgeArgs(bridgeArgs(args))).toEqual(args);
    expect(bridgeArgs({ version: '1', port: 41234 })).toEqual(['--version', '1', '--port', '41234']);
  });

  it('drops a port that is not a plain unprivileged one; the rest still counts', () => {
    for (const port of ['0', '80', '1023', '65536', '99999', '4e4', '0x9000', '41234.0', ' 41234', '-41234', '']) {
      expect(parseBridgeArgs(['--version', '1', '--port', port, '--card-directory', '/c']), port).toEqual({ version: '1', cardDirectory: '/c' });
    }
    expect(parseBridgeArgs(['--port'])).toEqual({ version: 'unknown' });
    expect(parseBridgeArgs(['--version', '2', '--port', '41234', '--port', 'x'])).toEqual({ version: '2', port: 41234 });
  });

  it('a preferred port is an integer from 1024 to 65535', () => {
    expect([1024, 41234, 65535].every(isPreferredPort)).toBe(true);
    expect([0, 1023, 65536, 41234.5, Number.NaN, Number.POSITIVE_INFINITY, '41234', null, undefined].some(isPreferredPort)).toBe(false);
  });
});
