// The preload of the sandboxed window: a CommonJS script (sandboxed preloads are not ES modules) that
// may require only 'electron'. It exposes two functions and nothing else: no ipcRenderer, no Node.
// The channel names and the API key are repeated here because a sandboxed preload cannot import our
// modules; test/unit/app-packaging.test.ts runs this file as Electron would and checks them.
import { contextBridge, ipcRenderer } from 'electron';
import type { DesktopApi, PickedVvFile } from '../shared/desktop-api.js';

const api: DesktopApi = {
  kind: 'electron',
  pickVvFile: () => ipcRenderer.invoke('spice-smartcard:pick-vv') as Promise<PickedVvFile | undefined>,
  launchViewer: (sessionName: string) => ipcRenderer.invoke('spice-smartcard:launch-viewer', String(sessionName)) as Promise<string | undefined>,
};

contextBridge.exposeInMainWorld('spiceSmartcardDesktop', api);
