// The demo reads what OpenSC and OpenSSL print in the guest (texts captured from OpenSC 0.23 and
// OpenSSL 3 in the demo VM) and turns its checks into a report and an exit status.
import { describe, expect, it } from 'vitest';
import type { DemoCheck } from '../../src/demo/guest-checks.js';
import {
  lastErrorLine,
  parseAtrLine,
  parseCertificateList,
  parsePublicKey,
  parseReaderList,
  parseSubject,
  signatureRecipe,
} from '../../src/demo/guest-output.js';
import { OTHER_SYSTEMS_ADVICE, prerequisitesAdvice } from '../../src/demo/prerequisites.js';
import { allPassed, formatReport, verdict } from '../../src/demo/report.js';

const READER = 'Gemalto Gemplus USB SmartCard Reader 433-Swap [CCID Interface] (1-0000:00:01.0-1) 00 00';

describe('what the guest prints', () => {
  it('reader list: index, card, name (with or without PIN pad)', () => {
    const text = `# Detected readers (pcsc)\nNr.  Card  Features  Name\n0    Yes   PIN pad   ${READER}\n1    No              Other Reader 01 00\n`;
    expect(parseReaderList(text)).toEqual([
      { index: 0, card: true, name: READER },
      { index: 1, card: false, name: 'Other Reader 01 00' },
    ]);
    expect(parseReaderList('No smart card readers found.\n')).toEqual([]);
  });

  it('ATR line, without the "Using reader" line', () => {
    expect(parseAtrLine(`3b:0b:80:f9:a0:00:00:03:08:00:00:10:00\n`)).toBe('3b0b80f9a00000030800001000');
    expect(parseAtrLine('Using reader with a card: X\n')).toBeUndefined();
  });

  it('certificate list: label and ID of each', () => {
    const text = [
      'X.509 Certificate [Certificate for PIV Authentication]',
      '\tObject Flags   : [0x00]',
      '\tAuthority      : no',
      '\tPath           : ',
      '\tID             : 01',
      '\tEncoded serial : 02 10 0148CAEEE51A032EDF9B802EB16E7C28',
      '',
      'X.509 Certificate [Certificate for Digital Signature]',
      '\tID             : 02',
      '',
    ].join('\n');
    expect(parseCertificateList(text)).toEqual([
      { label: 'Certificate for PIV Authentication', id: '01' },
      { label: 'Certificate for Digital Signature', id: '02' },
    ]);
  });

  it('public key kind and subject from openssl x509 -text', () => {
    expect(parsePublicKey('            Public Key Algorithm: rsaEncryption\n                Public-Key: (2048 bit)\n')).toEqual({ kind: 'rsa', bits: 2048 });
    expect(parsePublicKey('Public Key Algorithm: id-ecPublicKey\n    Public-Key: (384 bit)\n')).toEqual({ kind: 'ec', bits: 384 });
    expect(parsePublicKey('Public Key Algorithm: ED25519\n')).toEqual({ kind: 'other', name: 'ED25519' });
    expect(parseSubject('subject=CN = Demo Card Authentication, O = spice-smartcard demo\nCertificate:\n')).toBe('CN=Demo Card Authentication, O=spice-smartcard demo');
  });

  it('a signature recipe per key kind; none for keys the demo does not cover', () => {
    expect(signatureRecipe({ kind: 'rsa', bits: 2048 })).toMatchObject({ mechanism: 'SHA256-RSA-PKCS', digest: '-sha256', keyLabel: 'RSA-2048' });
    expect(signatureRecipe({ kind: 'ec', bits: 256 })).toMatchObject({ mechanism: 'ECDSA-SHA256', extraArgs: '--signature-format openssl' });
    expect(signatureRecipe({ kind: 'ec', bits: 384 })).toMatchObject({ mechanism: 'ECDSA-SHA384', digest: '-sha384' });
    expect(signatureRecipe({ kind: 'ec', bits: 521 })).toBeUndefined();
    expect(signatureRecipe({ kind: 'other', name: 'ED25519' })).toBeUndefined();
  });

  it('the reason of a failed tool is its last error line', () => {
    const stderr = 'Using slot 0 with a present token (0x0)\nerror: PKCS11 function C_Login failed: rv = CKR_PIN_INCORRECT (0xa0)\nAborting.\n';
    expect(lastErrorLine(stderr)).toBe('error: PKCS11 function C_Login failed: rv = CKR_PIN_INCORRECT (0xa0)');
    expect(lastErrorLine('')).toBe('(no output)');
  });
});

describe('the report', () => {
  const ok = (id: DemoCheck['id'], summary: string): DemoCheck => ({ id, title: id, status: 'ok', summary, details: [], commands: [`cmd-${id}`], ms: 1 });
  const setup = { vm: 'QEMU 7.2 (TCG)', bridge: '$ spice-smartcard connect spice://127.0.0.1:5930 --demo-card', bridgeState: 'linked' };

  it('one row per check with its commands, and a closing line', () => {
    const text = formatReport(setup, [ok('reader', 'R, card present'), { ...ok('signature', 'no PIN'), status: 'skipped', commands: [] }]);
    expect(text).toContain('  ok      reader        R, card present\n                        $ cmd-reader\n');
    expect(text).toContain('  skipped signature     no PIN\n');
    expect(text).toMatch(/All 1 checks passed \(1 skipped\)/);
  });

  it('a failed check fails the demo; skipped ones do not', () => {
    const failed = { ...ok('card', 'x'), status: 'failed' as const };
    expect(verdict([ok('reader', 'r'), failed])).toBe('1 of 2 checks FAILED.');
    expect(allPassed([ok('reader', 'r'), failed])).toBe(false);
    expect(allPassed([ok('reader', 'r'), { ...ok('signature', 's'), status: 'skipped' }])).toBe(true);
    expect(allPassed([])).toBe(false);
  });
});

describe('missing prerequisites', () => {
  it('one apt-get line (sudo unless root), then the other problems', () => {
    const text = prerequisitesAdvice({ missingPackages: ['qemu-system-x86', 'opensc'], problems: ['QEMU lacks usb-ccid.'] }, false);
    expect(text.split('\n')).toEqual([
      'The demo needs system packages this machine lacks. Install them with:',
      '  sudo apt-get install -y --no-install-recommends qemu-system-x86 opensc',
      'then run `npm run demo` again.',
      'QEMU lacks usb-ccid.',
      `On other systems: ${OTHER_SYSTEMS_ADVICE}`,
    ]);
    expect(prerequisitesAdvice({ missingPackages: ['cpio'], problems: [] }, true)).toContain('\n  apt-get install -y --no-install-recommends cpio\n');
  });
});
