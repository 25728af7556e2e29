// The one window: the bridge's web UI, sandboxed, with no Node, and unable to leave the bridge's origin.
import type { BrowserWindowConstructorOptions, WebContents } from 'electron';

export function windowOptions(preloadPath: string): BrowserWindowConstructorOptions {
  return {
    width: 1000,
    height: 800,
    minWidth: 360,
    minHeight: 400,
    title: 'spice-smartcard',
    show: false,
    autoHideMenuBar: true,
    webPreferences: {
      preload: preloadPath,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      spellcheck: false,
    },
  };
}

/** True when `url` is on the bridge's origin (scheme, host and port). */
export function isBridgeUrl(url: string, bridgeUrl: string | undefined): boolean {
  if (bridgeUrl === undefined) return false;
  try {
    return new URL(url).origin === new URL(bridgeUrl).origin;
  } catch {
    return false;
  }
}

/**
 * Keeps the page on the bridge: navigation elsewhere, new windows, webviews and permission requests
 * (camera, notifications, ...) are refused. The bridge's address changes when it restarts, hence a getter.
 */
export function lockDown(contents: WebContents, bridgeUrl: () => string | undefined): void {
  const guard = (event: { preventDefault(): void }, url: string): void => {
    if (!isBridgeUrl(url, bridgeUrl())) event.preventDefault();
  };
  contents.on('will-navigate', guard);
  contents.on('will-redirect', guard);
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  contents.session.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  contents.session.setPermissionCheckHandler(() => false);
}

/** The page's address with the token in the fragment: never sent to the server, never in its logs. */
export function pageUrl(endpoint: { url: string; token: string }): string {
  const url = new URL(endpoint.url);
  url.hash = `token=${endpoint.token}`;
  return url.toString();
}
