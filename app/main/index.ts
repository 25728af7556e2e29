// The Electron entry ("main" in package.json): paths of the compiled pieces, then startDesktopApp.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { app } from 'electron';
import { startDesktopApp } from './desktop-app.js';
import { SETTINGS_FILE_NAME } from './settings.js';
import { handleSquirrelEvent } from './squirrel.js';

const here = dirname(fileURLToPath(import.meta.url));
const icons = join(here, '..', '..', '..', 'app', 'assets');

if (!handleSquirrelEvent(process.argv, process.platform, app)) {
  startDesktopApp({
    preload: join(here, '..', 'preload', 'preload.cjs'),
    bridge: {
      entry: join(here, '..', 'bridge', 'utility-entry.js'),
      args: { version: app.getVersion(), cardDirectory: join(app.getPath('userData'), 'cards') },
    },
    settingsFile: join(app.getPath('userData'), SETTINGS_FILE_NAME),
    trayIcons: {
      ok: join(icons, 'tray-ok.png'),
      busy: join(icons, 'tray-busy.png'),
      warn: join(icons, 'tray-warn.png'),
      bad: join(icons, 'tray-bad.png'),
      idle: join(icons, 'tray-idle.png'),
    },
  });
}
