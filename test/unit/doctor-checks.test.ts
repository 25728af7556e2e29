// doctor's judgement of readers and cards, and its exit status, from facts in memory.
import { describe, expect, it } from 'vitest';
import { doctorExitCode } from '../../src/cli/doctor-command.js';
import type { DoctorCheck } from '../../src/doctor/check.js';
import { readersCheck } from '../../src/doctor/host-checks.js';
import type { PcscReaderInfo } from '../../vsc/pcsc/index.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const reader = (name: string, fields: Partial<PcscReaderInfo> = {}): PcscReaderInfo => ({ name, presence: 'empty', atr: undefined, exclusive: false, inUse: false, ...fields });
const YUBIKEY_T1 = hex('3b fd 13 00 00 81 31 fe 15 80 73 c0 21 c0 57 59 75 62 69 4b 65 79 40');

describe('readers and cards', () => {
  it('no reader: a warning, since soft cards need none', () => {
    const c = readersCheck([]);
    expect(c.status).toBe('warning');
    expect(c.fix).toMatch(/soft cards and the demo card need none/);
  });

  it('each reader with its card, and the ATR the VM is shown', () => {
    const c = readersCheck([reader('Yubico YubiKey 00 00', { presence: 'present', atr: YUBIKEY_T1 }), reader('Empty 01 00')]);
    expect(c.status).toBe('ok');
    expect(c.summary).toBe('2 readers, 1 card');
    expect(c.details?.[0]).toMatch(/^Yubico YubiKey 00 00: card 3B FD .* \(T=1\); shown to the VM as T=0: 3B 1D 13 80 73/);
    expect(c.details?.[1]).toBe('Empty 01 00: no card');
  });

  it('a card held exclusively by another application: a warning naming scdaemon', () => {
    const c = readersCheck([reader('R 00 00', { presence: 'present', atr: YUBIKEY_T1, exclusive: true })]);
    expect(c.status).toBe('warning');
    expect(c.fix).toMatch(/scdaemon/);
  });

  it('a mute card: a warning', () => {
    expect(readersCheck([reader('R 00 00', { presence: 'mute' })]).status).toBe('warning');
  });
});

describe('exit status', () => {
  const problem = (exitCode: 3 | 4 | 5): DoctorCheck => ({ id: 'x', title: 'x', status: 'problem', summary: '', exitCode });
  const fine: DoctorCheck = { id: 'y', title: 'y', status: 'warning', summary: '' };

  it('0 with warnings only; the VM first problem wins over this machine', () => {
    expect(doctorExitCode([fine], [fine])).toBe(0);
    expect(doctorExitCode([problem(3)], [])).toBe(3);
    expect(doctorExitCode([problem(3)], [fine, problem(4), problem(5)])).toBe(4);
    expect(doctorExitCode([], [problem(5)])).toBe(5);
  });
});
