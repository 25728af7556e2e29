// The desktop app's main process: one instance, the bridge in a utility process, one window on the
// bridge's web UI, a tray icon that outlives the window, and targets from the OS turned into sessions.
// Closing the window keeps the cards in their VMs; Quit stops the bridge (cards and readers leave the
// VMs) before the app exits.
import { basename } from 'node:path';
import { app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, Tray, type IpcMainInvokeEvent } from 'electron';
import type { SessionStatus } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';
import type { Tone } from '../shared/describe.js';
import type { PickedVvFile } from '../shared/desktop-api.js';
import { IPC } from '../shared/ipc.js';
import { BridgeHost, type BridgeHostOptions } from './bridge-host.js';
import { DEFAULT_OPEN, readVv, sessionAddFor, type OpenDefaults } from './open-targets.js';
import { parseTarget, parseTargets, type OpenTarget, type ParsedTargets } from './targets.js';
import { trayState } from './tray-menu.js';
import { launchViewer } from './viewer.js';
import { isBridgeUrl, lockDown, pageUrl, windowOptions } from './window.js';

export interface DesktopAppOptions {
  preload: string;
  bridge: BridgeHostOptions;
  /** Tray icon file per tone. */
  trayIcons: Record<Tone, string>;
  openDefaults?: OpenDefaults;
}

/** Takes the single-instance lock and starts the app; undefined when another instance runs (it gets our targets). */
export function startDesktopApp(options: DesktopAppOptions, argv: readonly string[] = process.argv): DesktopApp | undefined {
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return undefined;
  }
  const desktop = new DesktopApp(options);
  desktop.install(argv);
  return desktop;
}

export class DesktopApp {
  readonly bridge: BridgeHost;
  window: BrowserWindow | undefined;
  tray: Tray | undefined;
  readonly sessions = new Map<string, SessionStatus>();
  private readonly pending: OpenTarget[] = [];
  /** Proxy sessions opened from the OS whose viewer starts once they listen. */
  private readonly viewerWanted = new Set<string>();
  private quitting: Promise<void> | undefined;
  /** Notices from before the app was ready (dialogs need a ready app). */
  private readonly earlyNotices: string[] = [];
  private stopped = false;

  constructor(private readonly options: DesktopAppOptions) {
    this.bridge = new BridgeHost(options.bridge);
  }

  install(argv: readonly string[]): void {
    this.queue(parseTargets(argv, { isPackaged: app.isPackaged, cwd: process.cwd() }));
    app.on('second-instance', (_event, secondArgv, workingDirectory) => {
      this.queue(parseTargets(secondArgv, { isPackaged: app.isPackaged, cwd: workingDirectory }));
      this.showWindow();
    });
    // macOS hands over files and links by event, possibly before the app is ready.
    app.on('open-file', (event, path) => {
      event.preventDefault();
      this.queueOne(path);
    });
    app.on('open-url', (event, url) => {
      event.preventDefault();
      this.queueOne(url);
    });
    // No window is not a reason to stop: forwarding goes on, the tray stays.
    app.on('window-all-closed', () => undefined);
    app.on('activate', () => this.showWindow());
    app.on('before-quit', (event) => {
      if (this.stopped) return;
      event.preventDefault();
      void this.quit();
    });

    this.bridge.on('ready', () => {
      if (this.window !== undefined) void this.loadPage(this.window);
      void this.refreshSessions();
      this.openPending();
    });
    this.bridge.on('event', (event) => this.onBridgeEvent(event));
    this.bridge.on('notice', (message) => this.notify(message));

    ipcMain.handle(IPC.pickVv, (event) => this.pickVv(event));
    ipcMain.handle(IPC.launchViewer, (event, name: unknown) => this.launchViewerFor(event, name));

    void app.whenReady().then(() => {
      this.createTray();
      this.bridge.start();
      this.showWindow();
      for (const message of this.earlyNotices.splice(0)) this.notify(message);
    });
  }

  /** Stops the bridge cleanly (bounded), then lets the app exit. */
  quit(): Promise<void> {
    this.quitting ??= (async () => {
      this.tray?.setToolTip('spice-smartcard: stopping, taking the cards out of the VMs');
      await this.bridge.stop();
      this.stopped = true;
      this.tray?.destroy();
      app.quit();
    })();
    return this.quitting;
  }

  showWindow(): void {
    if (!app.isReady()) return;
    if (this.window !== undefined) {
      if (this.window.isMinimized()) this.window.restore();
      this.window.show();
      this.window.focus();
      return;
    }
    const window = new BrowserWindow(windowOptions(this.options.preload));
    this.window = window;
    lockDown(window.webContents, () => this.bridge.endpoint?.url);
    window.once('ready-to-show', () => window.show());
    window.on('closed', () => {
      if (this.window === window) this.window = undefined;
    });
    void this.loadPage(window);
  }

  private async loadPage(window: BrowserWindow): Promise<void> {
    const endpoint = this.bridge.endpoint;
    if (endpoint === undefined) return; // loaded when the bridge is ready
    try {
      await window.loadURL(pageUrl(endpoint));
    } catch (error) {
      this.notify(`The window could not load the bridge's page: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private queue(parsed: ParsedTargets): void {
    for (const ignored of parsed.ignored) this.notify(`Not opened: ${ignored.argument} (${ignored.reason}).`);
    this.pending.push(...parsed.targets);
    this.openPending();
  }

  private queueOne(argument: string): void {
    const target = parseTarget(argument, process.cwd());
    this.queue('reason' in target ? { targets: [], ignored: [{ argument: basename(argument), reason: target.reason }] } : { targets: [target], ignored: [] });
  }

  private openPending(): void {
    if (this.bridge.endpoint === undefined) return;
    for (const target of this.pending.splice(0)) void this.open(target);
  }

  private async open(target: OpenTarget): Promise<void> {
    const defaults = this.options.openDefaults ?? DEFAULT_OPEN;
    try {
      const params = await sessionAddFor(target, defaults, new Set(this.sessions.keys()));
      if (params.spec.mode === 'proxy') this.viewerWanted.add(params.spec.name);
      const status = await this.bridge.request('session.add', params);
      this.onSession(status);
    } catch (error) {
      this.notify(`Could not open ${target.kind === 'vv' ? basename(target.path) : 'the link'}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async refreshSessions(): Promise<void> {
    try {
      const snapshot = await this.bridge.request('status.get', {});
      this.sessions.clear();
      for (const s of snapshot.sessions) this.sessions.set(s.name, s);
      this.updateTray();
    } catch {
      // The next event fills the map; the tray says the bridge is starting meanwhile.
    }
  }

  private onBridgeEvent(event: ControlEvent): void {
    if (event.type === 'session') this.onSession(event.data.status);
    else if (event.type === 'session.removed') {
      this.sessions.delete(event.data.name);
      this.viewerWanted.delete(event.data.name);
      this.updateTray();
    }
  }

  private onSession(status: SessionStatus): void {
    this.sessions.set(status.name, status);
    this.updateTray();
    if (status.phase === 'listening' && status.proxy !== undefined && this.viewerWanted.delete(status.name)) {
      void launchViewer(status.proxy.uri).then((problem) => {
        if (problem !== undefined) this.notify(problem);
      });
    }
  }

  private createTray(): void {
    this.tray = new Tray(nativeImage.createFromPath(this.options.trayIcons.busy));
    this.tray.on('click', () => this.showWindow());
    this.updateTray();
  }

  private updateTray(): void {
    if (this.tray === undefined) return;
    const state = trayState([...this.sessions.values()], this.bridge.endpoint !== undefined, { show: () => this.showWindow(), quit: () => void this.quit() });
    this.tray.setToolTip(state.tooltip);
    this.tray.setImage(nativeImage.createFromPath(this.options.trayIcons[state.tone]));
    this.tray.setContextMenu(Menu.buildFromTemplate(state.menu));
  }

  /** Only the page on the bridge's origin in our window may use the preload's API. */
  private fromPage(event: IpcMainInvokeEvent): boolean {
    const frameUrl = event.senderFrame?.url ?? '';
    return this.window !== undefined && event.sender === this.window.webContents && isBridgeUrl(frameUrl, this.bridge.endpoint?.url);
  }

  private async pickVv(event: IpcMainInvokeEvent): Promise<PickedVvFile | undefined> {
    if (!this.fromPage(event) || this.window === undefined) return undefined;
    const chosen = await dialog.showOpenDialog(this.window, {
      title: 'Open a SPICE connection file',
      filters: [{ name: 'SPICE connection files (.vv)', extensions: ['vv'] }],
      properties: ['openFile'],
    });
    const path = chosen.filePaths[0];
    if (chosen.canceled || path === undefined) return undefined;
    const { content, deleted } = await readVv(path);
    return { fileName: basename(path), content, deleted };
  }

  private async launchViewerFor(event: IpcMainInvokeEvent, name: unknown): Promise<string | undefined> {
    if (!this.fromPage(event)) return 'Refused: not the app window.';
    if (typeof name !== 'string') return 'No session named.';
    const proxy = this.sessions.get(name)?.proxy;
    if (proxy === undefined) return `${name} has no viewer address: only sessions "with my viewer" have one.`;
    return launchViewer(proxy.uri);
  }

  private notify(message: string): void {
    console.warn(`spice-smartcard: ${message}`);
    if (!app.isReady()) {
      this.earlyNotices.push(message);
      return;
    }
    void dialog.showMessageBox({ type: 'warning', title: 'spice-smartcard', message });
  }
}
