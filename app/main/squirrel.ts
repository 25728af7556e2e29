// Squirrel.Windows runs the app with --squirrel-* once per install step and expects it to exit. The
// Squirrel maker has no URL-scheme or file-type settings, so the app registers both itself: the
// schemes through Electron, the .vv type with reg.exe under HKCU (a per-user install, no admin).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { App } from 'electron';

const SCHEMES = ['spice', 'spice+tls'];

export const VV_PROG_ID = 'spice-smartcard.vv';
const CLASSES = 'HKCU\\Software\\Classes';

/** Runs reg.exe with these arguments; resolves to its exit code and output. */
export type RegRunner = (args: readonly string[]) => Promise<{ code: number; stdout: string }>;

export interface SquirrelDeps {
  /** The app's executable, which the open command starts (process.execPath). */
  exePath: string;
  reg: RegRunner;
}

/** reg.exe commands that make .vv files open with the app (the ProgID, its icon and open command). */
export function vvRegisterCommands(exePath: string): string[][] {
  const progId = `${CLASSES}\\${VV_PROG_ID}`;
  return [
    ['add', progId, '/ve', '/d', 'SPICE connection file', '/f'],
    ['add', `${progId}\\DefaultIcon`, '/ve', '/d', `"${exePath}",0`, '/f'],
    ['add', `${progId}\\shell\\open\\command`, '/ve', '/d', `"${exePath}" "%1"`, '/f'],
    ['add', `${CLASSES}\\.vv`, '/ve', '/d', VV_PROG_ID, '/f'],
    ['add', `${CLASSES}\\.vv`, '/v', 'Content Type', '/d', 'application/x-virt-viewer', '/f'],
    ['add', `${CLASSES}\\.vv\\OpenWithProgids`, '/v', VV_PROG_ID, '/t', 'REG_NONE', '/f'],
  ];
}

/**
 * Takes the .vv type back: our ProgID and our entry in OpenWithProgids. The type's default is removed
 * only while it still names our ProgID (virt-viewer may have taken it since); the MIME type stays.
 */
export async function unregisterVv(reg: RegRunner): Promise<void> {
  await reg(['delete', `${CLASSES}\\${VV_PROG_ID}`, '/f']);
  await reg(['delete', `${CLASSES}\\.vv\\OpenWithProgids`, '/v', VV_PROG_ID, '/f']);
  const current = await reg(['query', `${CLASSES}\\.vv`, '/ve']);
  if (current.code === 0 && new RegExp(`\\sREG_SZ\\s+${VV_PROG_ID.replace('.', '\\.')}\\s*$`, 'm').test(current.stdout)) {
    await reg(['delete', `${CLASSES}\\.vv`, '/ve', '/f']);
  }
}

export async function registerVv(exePath: string, reg: RegRunner): Promise<void> {
  for (const args of vvRegisterCommands(exePath)) await reg(args);
}

/** reg.exe from System32 by full path (not whatever PATH finds), without a shell: "%1" stays literal. */
export const runReg: RegRunner = (args) =>
  new Promise((resolve) => {
    const exe = join(process.env['SystemRoot'] ?? 'C:\\Windows', 'System32', 'reg.exe');
    execFile(exe, [...args], { windowsHide: true, timeout: 10_000 }, (error, stdout) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout: String(stdout) });
    });
  });

/**
 * True when argv was a Squirrel event (handled; the caller must not start the app). The app quits
 * once the registry is written: Squirrel waits for it (for a bounded time) before going on.
 */
export function handleSquirrelEvent(
  argv: readonly string[],
  platform: NodeJS.Platform,
  app: Pick<App, 'setAsDefaultProtocolClient' | 'removeAsDefaultProtocolClient' | 'quit'>,
  deps: SquirrelDeps = { exePath: process.execPath, reg: runReg },
): boolean {
  if (platform !== 'win32') return false;
  const event = argv.find((a) => a.startsWith('--squirrel-'));
  if (event === undefined || event === '--squirrel-firstrun') return false;
  let registry: Promise<void> = Promise.resolve();
  if (event === '--squirrel-install' || event === '--squirrel-updated') {
    for (const s of SCHEMES) app.setAsDefaultProtocolClient(s);
    registry = registerVv(deps.exePath, deps.reg);
  }
  if (event === '--squirrel-uninstall') {
    for (const s of SCHEMES) app.removeAsDefaultProtocolClient(s);
    registry = unregisterVv(deps.reg);
  }
  // A registry failure must not fail the install: the app still runs, only double-click on .vv does not.
  void registry.catch(() => undefined).finally(() => app.quit());
  return true;
}
