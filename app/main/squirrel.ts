// Squirrel.Windows runs the app with --squirrel-* once per install step and expects it to exit. The
// Squirrel maker has no URL-scheme settings, so the schemes are registered here.
import type { App } from 'electron';

const SCHEMES = ['spice', 'spice+tls'];

/** True when argv was a Squirrel event (handled; the caller must not start the app). */
export function handleSquirrelEvent(argv: readonly string[], platform: NodeJS.Platform, app: Pick<App, 'setAsDefaultProtocolClient' | 'removeAsDefaultProtocolClient' | 'quit'>): boolean {
  if (platform !== 'win32') return false;
  const event = argv.find((a) => a.startsWith('--squirrel-'));
  if (event === undefined || event === '--squirrel-firstrun') return false;
  if (event === '--squirrel-install' || event === '--squirrel-updated') for (const s of SCHEMES) app.setAsDefaultProtocolClient(s);
  if (event === '--squirrel-uninstall') for (const s of SCHEMES) app.removeAsDefaultProtocolClient(s);
  app.quit();
  return true;
}
