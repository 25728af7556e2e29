// The preload of the sandboxed window: a CommonJS script (sandboxed preloads are not ES modules) that
// may require only 'electron'. It exposes four functions and nothing else: no ipcRenderer, no Node.
// The channel names and the API key are repeated here because a sandboxed preload cannot import our
// modules; test/unit/app-packaging.test.ts runs this file as Electron would and checks them.
import { contextBridge, ipcRenderer } from 'electron';
import type { DesktopApi, OpenDefaults, PickedVvFile } from '../shared/desktop-api.js';

const api: DesktopApi = {
  kind: 'electron',
  pickVvFile: () => ipcRenderer.invoke('spice-smartcard:pick-vv') as Promise<PickedVvFile | undefined>,
  launchViewer: (sessionName: string) => ipcRenderer.invoke('spice-smartcard:launch-viewer', String(sessionName)) as Promise<string | undefined>,
  getOpenDefaults: () => ipcRenderer.invoke('spice-smartcard:get-open-defaults') as Promise<OpenDefaults | undefined>,
  // Main checks the value; it crosses as a structured clone, so nothing of the page's object comes along.
  setOpenDefaults: (defaults: OpenDefaults) => ipcRenderer.invoke('spice-smartcard:set-open-defaults', defaults) as Promise<string | undefined>,
};

contextBridge.exposeInMainWorld('spiceSmartcardDesktop', api);
