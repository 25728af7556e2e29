// The same keys and certificates in both clients' card stores, so the guest workload is the same
// certificates: three RSA-2048 identities (spice-gtk hands libcacard exactly three
// certificate names; with two it finds no card) made in an NSS database for libcacard's soft CAC card
// (remote-viewer --spice-smartcard-db), exported as PKCS#12 and imported into a soft PIV card file
// (spice-smartcard card import) for our bridge.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const P12_PASSWORD = 'bench';

export interface ReferenceCards {
  dir: string;
  /** sql:DIR for --spice-smartcard-db. */
  nssDb: string;
  /** NSS nicknames for --spice-smartcard-certificates. */
  nicknames: string[];
  /** Soft PIV card file for connect --soft-card. */
  softCard: string;
  dispose(): void;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
}

export function makeReferenceCards(cliPath: string): ReferenceCards {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cards-'));
  const nssDir = join(dir, 'nssdb');
  const softCard = join(dir, 'card.json');
  run('mkdir', ['-p', nssDir]);
  run('certutil', ['-N', '-d', `sql:${nssDir}`, '--empty-password']);
  const identities = [
    { nick: 'bench-auth', slot: '9a', subject: 'CN=Bench Authentication,O=spice-smartcard bench' },
    { nick: 'bench-sign', slot: '9c', subject: 'CN=Bench Signature,O=spice-smartcard bench' },
    { nick: 'bench-keymgmt', slot: '9d', subject: 'CN=Bench Key Management,O=spice-smartcard bench' },
  ];
  const noise = join(dir, 'noise');
  writeFileSync(noise, randomBytes(1024));
  for (const id of identities) {
    const p12 = join(dir, `${id.nick}.p12`);
    // Made by NSS the way libvirt's docs make libcacard's certificates (certutil -x -t CT,CT,CT -S),
    // then exported for our soft card: libcacard found no card in an NSS db filled by pk12util.
    run('certutil', ['-d', `sql:${nssDir}`, '-x', '-t', 'CT,CT,CT', '-S', '-s', id.subject, '-n', id.nick, '-k', 'rsa', '-g', '2048', '-v', '1', '-z', noise]);
    // The bench's throwaway keys, never secrets: the export password is a fixed word.
    run('pk12util', ['-o', p12, '-n', id.nick, '-d', `sql:${nssDir}`, '-W', P12_PASSWORD]);
    run(process.execPath, [cliPath, 'card', 'import', softCard, '--p12', p12, '--slot', id.slot], { SPICE_SMARTCARD_PIN: '123456', SPICE_SMARTCARD_PUK: '12345678', SPICE_SMARTCARD_P12_PASSWORD: P12_PASSWORD });
  }
  return {
    dir,
    nssDb: `sql:${nssDir}`,
    nicknames: identities.map((i) => i.nick),
    softCard,
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
