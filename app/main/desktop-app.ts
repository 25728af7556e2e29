// The desktop app's main process: one instance, the bridge in a utility process, one window on the
// bridge's web UI, a tray icon that outlives the window, and targets from the OS turned into sessions.
// Closing the window keeps the cards in their VMs; Quit stops the bridge (cards and readers leave the
// VMs) before the app exits. After a crash of the bridge, its sessions are added again. The bridge's
// control port is kept in the settings and asked for again, so the page's origin (where its
// localStorage lives) stays the same across starts; the window and IPC checks follow whatever origin
// the bridge has now.
import { basename } from 'node:path';
import { app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, Tray, type IpcMainInvokeEvent } from 'electron';
import type { SessionStatus } from '../../src/control/schema.js';
import type { ControlEvent } from '../../src/control/service.js';
import type { Tone } from '../shared/describe.js';
import type { OpenDefaults, PickedVvFile } from '../shared/desktop-api.js';
import { IPC } from '../shared/ipc.js';
import { BridgeHost, BridgeRequestError, portOf, type BridgeEndpoint, type BridgeHostOptions } from './bridge-host.js';
import { DEFAULT_OPEN, readVv, sessionAddFor } from './open-targets.js';
import { removeLeftover, restorePlan, SessionMemory } from './session-restore.js';
import { checkOpenDefaults, SettingsStore } from './settings.js';
import { parseTarget, parseTargets, type OpenTarget, type ParsedTargets } from './targets.js';
import { trayState } from './tray-menu.js';
import { launchViewer } from './viewer.js';
import { isBridgeUrl, lockDown, pageUrl, windowOptions } from './window.js';

export interface DesktopAppOptions {
  preload: string;
  bridge: BridgeHostOptions;
  /** Tray icon file per tone. */
  trayIcons: Record<Tone, string>;
  /** Used until the user saves their own in the window. */
  openDefaults?: OpenDefaults;
  /** The user's settings file (in app.getPath('userData')); none: defaults only, nothing saved. */
  settingsFile?: string;
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
  /** The spec of every session the bridge reported, to add them again after it crashed. */
  private readonly memory = new SessionMemory();
  private readonly settings: SettingsStore | undefined;
  private settingsLoaded: Promise<void> = Promise.resolve();

  constructor(private readonly options: DesktopAppOptions) {
    this.bridge = new BridgeHost(options.bridge);
    this.settings = options.settingsFile !== undefined ? new SettingsStore(options.settingsFile) : undefined;
  }

  /** What a .vv or link from the OS opens with: the user's setting, else the app's defaults. */
  get openDefaults(): OpenDefaults {
    return this.settings?.settings?.open ?? this.options.openDefaults ?? DEFAULT_OPEN;
  }

  install(argv: readonly string[]): void {
    const settings = this.settings;
    if (settings !== undefined) {
      this.settingsLoaded = settings.load().then(
        (notice) => {
          if (notice !== undefined) this.notify(notice);
        },
        (error: unknown) => this.notify(`Your settings could not be read (${error instanceof Error ? error.message : String(error)}); the defaults apply.`),
      );
    }
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

    this.bridge.on('ready', (endpoint) => {
      void this.keepPort(endpoint);
      if (this.window !== undefined) void this.loadPage(this.window);
      // Restored sessions first, so targets opened meanwhile do not take their names.
      void this.refreshSessions().then(() => this.openPending());
    });
    this.bridge.on('event', (event) => this.onBridgeEvent(event));
    this.bridge.on('notice', (message) => this.notify(message));

    ipcMain.handle(IPC.pickVv, (event) => this.pickVv(event));
    ipcMain.handle(IPC.launchViewer, (event, name: unknown) => this.launchViewerFor(event, name));
    ipcMain.handle(IPC.getOpenDefaults, (event) => this.getOpenDefaults(event));
    ipcMain.handle(IPC.setOpenDefaults, (event, value: unknown) => this.setOpenDefaults(event, value));

    void app.whenReady().then(async () => {
      this.createTray();
      this.showWindow();
      for (const message of this.earlyNotices.splice(0)) this.notify(message);
      // The port from the last run first: the bridge tries it before any free one.
      await this.settingsLoaded;
      this.bridge.preferredPort = this.settings?.settings?.port;
      this.bridge.start();
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
    try {
      await this.settingsLoaded;
      const params = await sessionAddFor(target, this.openDefaults, new Set(this.sessions.keys()));
      if (params.spec.mode === 'proxy') this.viewerWanted.add(params.spec.name);
      const status = await this.bridge.request('session.add', params);
      this.onSession(status);
    } catch (error) {
      this.notify(`Could not open ${target.kind === 'vv' ? basename(target.path) : 'the link'}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async refreshSessions(): Promise<void> {
    let names: Set<string>;
    try {
      const snapshot = await this.bridge.request('status.get', {});
      this.sessions.clear();
      for (const s of snapshot.sessions) {
        this.sessions.set(s.name, s);
        this.memory.remember(s);
      }
      names = new Set(this.sessions.keys());
      this.updateTray();
    } catch {
      // The next event fills the map; the tray says the bridge is starting meanwhile.
      return;
    }
    await this.restore(names);
  }

  /** Adds again the sessions a crashed bridge took with it; says which could not come back, and why. */
  private async restore(present: ReadonlySet<string>): Promise<void> {
    const missing = this.memory.takeMissing(present);
    if (missing.length === 0) return;
    const failures: string[] = [];
    for (const remembered of missing) {
      const name = remembered.spec.name;
      const plan = await restorePlan(remembered);
      if (!plan.ok) {
        failures.push(`${name}: ${plan.reason}`);
        continue;
      }
      try {
        this.onSession(await this.bridge.request('session.add', plan.params));
      } catch (error) {
        if (error instanceof BridgeRequestError && error.code === 'unavailable') {
          // The bridge went away again: the next one gets it (and the copy is still needed).
          this.memory.keep(remembered);
          continue;
        }
        failures.push(`${name}: the bridge refused it (${error instanceof Error ? error.message : String(error)}); open it again.`);
      }
      // Added, or refused for good: the crashed bridge's copy (it may hold a one-time ticket) goes.
      if (plan.leftover !== undefined) await removeLeftover(plan.leftover).catch(() => undefined);
    }
    if (failures.length > 0) {
      this.notify(`${failures.length === 1 ? 'A session' : `${failures.length} sessions`} could not be restored after the bridge restarted:\n${failures.join('\n')}`);
    }
  }

  private onBridgeEvent(event: ControlEvent): void {
    if (event.type === 'session') this.onSession(event.data.status);
    else if (event.type === 'session.removed') {
      this.sessions.delete(event.data.name);
      this.memory.forget(event.data.name);
      this.viewerWanted.delete(event.data.name);
      this.updateTray();
    }
  }

  private onSession(status: SessionStatus): void {
    this.sessions.set(status.name, status);
    this.memory.remember(status);
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

  private async getOpenDefaults(event: IpcMainInvokeEvent): Promise<OpenDefaults | undefined> {
    if (!this.fromPage(event)) return undefined;
    await this.settingsLoaded;
    return this.openDefaults;
  }

  /** Records the bridge's port for the next start when it is not the one recorded (first run, or taken). */
  private async keepPort(endpoint: BridgeEndpoint): Promise<void> {
    const port = portOf(endpoint.url);
    const settings = this.settings;
    if (port === undefined || settings === undefined) return;
    await this.settingsLoaded;
    if (settings.settings?.port === port) return;
    try {
      await settings.update({ port });
    } catch (error) {
      // Not worth a dialog: this run is unaffected, the next one may get another port (and an empty
      // recent list in the page).
      console.warn(`spice-smartcard: could not record the bridge's port in ${settings.path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async setOpenDefaults(event: IpcMainInvokeEvent, value: unknown): Promise<string | undefined> {
    if (!this.fromPage(event)) return 'Refused: not the app window.';
    if (this.settings === undefined) return 'This app has no settings file to save to.';
    const checked = checkOpenDefaults(value);
    if (!checked.ok) return `Not saved: ${checked.message}.`;
    await this.settingsLoaded;
    try {
      await this.settings.update({ open: checked.value });
      return undefined;
    } catch (error) {
      return `Could not save the setting to ${this.settings.path}: ${error instanceof Error ? error.message : String(error)}.`;
    }
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
