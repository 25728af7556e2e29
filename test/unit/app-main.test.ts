// The desktop app's main process with Electron replaced by recording fakes (Electron cannot start on
// these machines): single instance, targets from argv and second launches, the window's security
// settings and navigation lock, the bridge's utility process restarted after a crash, and Quit
// stopping the bridge before the app exits; sessions added again after a crash; the "open with"
// setting saved for the page in its own window only; the bridge's control port kept across starts.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SessionSpec, SessionStatus } from '../../src/control/schema.js';

type Handler = (...args: unknown[]) => unknown;

const fakes = vi.hoisted(() => {
  class FakeEmitter {
    readonly handlers = new Map<string, Array<(...args: unknown[]) => unknown>>();
    on(name: string, fn: (...args: unknown[]) => unknown): this {
      this.handlers.set(name, [...(this.handlers.get(name) ?? []), fn]);
      return this;
    }
    once(name: string, fn: (...args: unknown[]) => unknown): this {
      const wrapped = (...args: unknown[]): unknown => {
        this.handlers.set(name, (this.handlers.get(name) ?? []).filter((f) => f !== wrapped));
        return fn(...args);
      };
      return this.on(name, wrapped);
    }
    emit(name: string, ...args: unknown[]): void {
      for (const fn of [...(this.handlers.get(name) ?? [])]) fn(...args);
    }
  }

  class FakeChild extends FakeEmitter {
    static count = 0;
    readonly pid = 1000 + FakeChild.count++;
    readonly posted: unknown[] = [];
    killed = false;
    constructor(
      readonly entry: string,
      readonly args: string[],
      readonly options: unknown,
    ) {
      super();
    }
    postMessage(message: unknown): void {
      this.posted.push(message);
    }
    kill(): boolean {
      this.killed = true;
      queueMicrotask(() => this.emit('exit', 15));
      return true;
    }
  }

  class FakeSession {
    permissionHandler: ((contents: unknown, permission: string, callback: (allow: boolean) => void) => void) | undefined;
    permissionCheck: (() => boolean) | undefined;
    setPermissionRequestHandler(fn: FakeSession['permissionHandler']): void {
      this.permissionHandler = fn;
    }
    setPermissionCheckHandler(fn: () => boolean): void {
      this.permissionCheck = fn;
    }
  }

  class FakeWebContents extends FakeEmitter {
    readonly session = new FakeSession();
    openHandler: ((details: { url: string }) => { action: string }) | undefined;
    setWindowOpenHandler(fn: (details: { url: string }) => { action: string }): void {
      this.openHandler = fn;
    }
  }

  class FakeWindow extends FakeEmitter {
    static all: FakeWindow[] = [];
    readonly webContents = new FakeWebContents();
    readonly loaded: string[] = [];
    shown = 0;
    focused = 0;
    constructor(readonly options: { webPreferences?: Record<string, unknown> }) {
      super();
      FakeWindow.all.push(this);
    }
    loadURL(url: string): Promise<void> {
      this.loaded.push(url);
      return Promise.resolve();
    }
    isMinimized(): boolean {
      return false;
    }
    restore(): void {}
    show(): void {
      this.shown++;
    }
    focus(): void {
      this.focused++;
    }
  }

  class FakeTray extends FakeEmitter {
    static all: FakeTray[] = [];
    tooltip = '';
    menu: unknown;
    destroyed = false;
    constructor(readonly image: unknown) {
      super();
      FakeTray.all.push(this);
    }
    setToolTip(text: string): void {
      this.tooltip = text;
    }
    setImage(): void {}
    setContextMenu(menu: unknown): void {
      this.menu = menu;
    }
    destroy(): void {
      this.destroyed = true;
    }
  }

  const app = Object.assign(new FakeEmitter(), {
    lock: true,
    ready: false,
    quitCalls: 0,
    isPackaged: true,
    readyResolvers: [] as Array<() => void>,
    requestSingleInstanceLock(): boolean {
      return app.lock;
    },
    quit(): void {
      app.quitCalls++;
    },
    isReady(): boolean {
      return app.ready;
    },
    whenReady(): Promise<void> {
      return new Promise((resolve) => app.readyResolvers.push(resolve));
    },
    becomeReady(): void {
      app.ready = true;
      for (const r of app.readyResolvers.splice(0)) r();
    },
  });

  const children: FakeChild[] = [];
  const ipcHandlers = new Map<string, (...args: unknown[]) => unknown>();
  const messages: string[] = [];
  return { FakeChild, FakeWindow, FakeTray, app, children, ipcHandlers, messages };
});

vi.mock('electron', () => ({
  app: fakes.app,
  BrowserWindow: fakes.FakeWindow,
  Tray: fakes.FakeTray,
  Menu: { buildFromTemplate: (template: unknown) => ({ template }) },
  nativeImage: { createFromPath: (path: string) => ({ path }) },
  dialog: {
    showMessageBox: (options: { message: string }) => {
      fakes.messages.push(options.message);
      return Promise.resolve({ response: 0 });
    },
    showOpenDialog: () => Promise.resolve({ canceled: true, filePaths: [] }),
  },
  ipcMain: { handle: (channel: string, fn: (...args: unknown[]) => unknown) => fakes.ipcHandlers.set(channel, fn) },
  utilityProcess: {
    fork: (entry: string, args: string[], options: unknown) => {
      const child = new fakes.FakeChild(entry, args, options);
      fakes.children.push(child);
      return child;
    },
  },
}));

const launched = vi.hoisted(() => [] as string[]);
vi.mock('../../app/main/viewer.js', () => ({
  launchViewer: (uri: string) => {
    launched.push(uri);
    return Promise.resolve(undefined);
  },
}));

const { startDesktopApp } = await import('../../app/main/desktop-app.js');
const { IPC } = await import('../../app/shared/ipc.js');

const OPTIONS = {
  preload: '/app/dist/app/preload/preload.cjs',
  bridge: { entry: '/app/dist/app/bridge/utility-entry.js', restartDelayMs: () => 0, stopTimeoutMs: 200 },
  trayIcons: { ok: 'ok.png', busy: 'busy.png', warn: 'warn.png', bad: 'bad.png', idle: 'idle.png' },
};

function readFileSafe(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !check(); i++) await tick();
  expect(check()).toBe(true);
}

function lastChild(): InstanceType<typeof fakes.FakeChild> {
  const child = fakes.children.at(-1);
  if (child === undefined) throw new Error('no utility process was forked');
  return child;
}

function requests(child: InstanceType<typeof fakes.FakeChild>, type: string): Array<{ id: number; params: Record<string, unknown> }> {
  return child.posted.filter((m): m is { kind: 'request'; id: number; type: string; params: Record<string, unknown> } => (m as { type?: string }).type === type);
}

/** Answers the bridge's requests like the real utility process: session.add echoes a status. */
function answer(child: InstanceType<typeof fakes.FakeChild>): void {
  const seen = new Set<number>();
  const pump = (): void => {
    for (const m of child.posted as Array<{ kind: string; id: number; type: string; params: { spec?: { name: string; mode: 'proxy' } } }>) {
      if (m.kind !== 'request' || seen.has(m.id)) continue;
      seen.add(m.id);
      const result = m.type === 'status.get' ? { apiVersion: 1, bridge: { version: 't', pid: 1, startedAt: 0 }, sessions: [], readers: [], pcsc: { available: false } } : status(m.params.spec?.name ?? 'x', 'connecting');
      child.emit('message', { kind: 'result', id: m.id, type: m.type, result });
    }
  };
  const original = child.postMessage.bind(child);
  child.postMessage = (message: unknown) => {
    original(message);
    queueMicrotask(pump);
  };
  pump();
}

function status(name: string, phase: SessionStatus['phase']): SessionStatus {
  return {
    name,
    mode: 'connect',
    target: 'spice://h:1',
    phase,
    since: 0,
    card: { source: { kind: 'demo' }, name: 'demo', present: true },
    vm: { readerAdded: phase === 'active', cardInserted: phase === 'active' },
    counters: { answered: 0, failed: 0, cardMs: 0 },
    reconnects: 0,
    tracing: false,
  };
}

async function started(argv: string[] = ['/opt/spice-smartcard/spice-smartcard'], options: Parameters<typeof startDesktopApp>[0] = OPTIONS) {
  const desktop = startDesktopApp(options, argv);
  fakes.app.becomeReady();
  await until(() => fakes.children.length === 1);
  const child = lastChild();
  answer(child);
  child.emit('message', { kind: 'ready', url: 'http://127.0.0.1:4567/', token: 'ab'.repeat(16) });
  await tick();
  return { desktop, child, window: fakes.FakeWindow.all.at(-1)! };
}

describe('desktop app main process (Electron mocked)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'app-main-'));
    fakes.app.handlers.clear();
    fakes.app.lock = true;
    fakes.app.ready = false;
    fakes.app.quitCalls = 0;
    fakes.children.length = 0;
    fakes.messages.length = 0;
    fakes.ipcHandlers.clear();
    fakes.FakeWindow.all = [];
    fakes.FakeTray.all = [];
    launched.length = 0;
    // Notices also go to the console; the dialog fake records them.
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  it('a second instance hands over and quits without starting a bridge', async () => {
    fakes.app.lock = false;
    expect(startDesktopApp(OPTIONS, ['/usr/bin/spice-smartcard', join(dir, 'x.vv')])).toBeUndefined();
    fakes.app.becomeReady();
    await tick();
    expect(fakes.app.quitCalls).toBe(1);
    expect(fakes.children).toHaveLength(0);
  });

  it('forks the bridge in a utility process and loads its page with the token in the fragment', async () => {
    const { child, window } = await started();
    expect(child.entry).toBe(OPTIONS.bridge.entry);
    expect(window.loaded).toEqual([`http://127.0.0.1:4567/#token=${'ab'.repeat(16)}`]);
  });

  it('opens the window sandboxed, isolated, without Node', async () => {
    const { window } = await started();
    expect(window.options.webPreferences).toMatchObject({
      preload: OPTIONS.preload,
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      webviewTag: false,
    });
  });

  it('keeps the page on the bridge origin: navigation, new windows, webviews and permissions refused', async () => {
    const { window } = await started();
    const contents = window.webContents;
    const navigate = (url: string): boolean => {
      let prevented = false;
      contents.emit('will-navigate', { preventDefault: () => (prevented = true) }, url);
      return prevented;
    };
    expect(navigate('http://127.0.0.1:4567/index.html')).toBe(false);
    expect(navigate('https://example.com/')).toBe(true);
    expect(navigate('http://127.0.0.1:4568/')).toBe(true);
    expect(navigate('file:///etc/passwd')).toBe(true);
    expect(navigate('not a url')).toBe(true);
    let redirected = false;
    contents.emit('will-redirect', { preventDefault: () => (redirected = true) }, 'http://evil.test/');
    expect(redirected).toBe(true);
    expect(contents.openHandler?.({ url: 'http://127.0.0.1:4567/' })).toEqual({ action: 'deny' });
    let webview = false;
    contents.emit('will-attach-webview', { preventDefault: () => (webview = true) });
    expect(webview).toBe(true);
    let allowed: boolean | undefined;
    contents.session.permissionHandler?.(contents, 'media', (allow) => (allowed = allow));
    expect(allowed).toBe(false);
  });

  it('opens a .vv from the command line as a "with my viewer" session and honours delete-this-file', async () => {
    const vv = join(dir, 'portal console.vv');
    await writeFile(vv, '[virt-viewer]\ntype=spice\nhost=10.0.0.5\nport=5900\npassword=one-time\ndelete-this-file=1\n');
    const { child } = await started(['/opt/spice-smartcard/spice-smartcard', '--enable-logging', vv]);
    await until(() => requests(child, 'session.add').length === 1);
    const [add] = requests(child, 'session.add');
    expect(add?.params).toEqual({
      spec: { name: 'portal-console', mode: 'proxy', target: 'portal console.vv', card: { kind: 'reader', reader: '*' } },
      vv: '[virt-viewer]\ntype=spice\nhost=10.0.0.5\nport=5900\npassword=one-time\ndelete-this-file=1\n',
    });
    expect(existsSync(vv)).toBe(false);
  });

  it('starts the viewer once for a "with my viewer" session opened from the OS, when it listens', async () => {
    const { child } = await started(['/opt/spice-smartcard/spice-smartcard', 'spice://10.0.0.5:5900']);
    await until(() => requests(child, 'session.add').length === 1);
    const listening = { ...status('10.0.0.5-5900', 'listening'), mode: 'proxy' as const, proxy: { listen: '127.0.0.1:5930', uri: 'spice://127.0.0.1:5930', viewers: 0, linked: false } };
    child.emit('message', { kind: 'event', event: { type: 'session', data: { status: listening } } });
    child.emit('message', { kind: 'event', event: { type: 'session', data: { status: listening } } });
    await tick();
    expect(launched).toEqual(['spice://127.0.0.1:5930']);
    // A proxy session the OS did not open (added in the page) is the page's to start a viewer for.
    child.emit('message', { kind: 'event', event: { type: 'session', data: { status: { ...listening, name: 'other' } } } });
    await tick();
    expect(launched).toHaveLength(1);
  });

  it('a second launch forwards its link to the running app and shows the window', async () => {
    const { child, window } = await started();
    const shownBefore = window.shown;
    fakes.app.emit('second-instance', {}, ['/opt/spice-smartcard/spice-smartcard', 'spice+tls://vm.example:5901'], '/home/u');
    await until(() => requests(child, 'session.add').length === 1);
    expect(requests(child, 'session.add')[0]?.params).toMatchObject({ spec: { target: 'spice+tls://vm.example:5901', mode: 'proxy', name: 'vm.example-5901' } });
    expect(window.shown).toBe(shownBefore + 1);
    expect(fakes.FakeWindow.all).toHaveLength(1);
  });

  it('says what it could not open', async () => {
    await started();
    fakes.app.emit('second-instance', {}, ['/opt/spice-smartcard/spice-smartcard', 'https://example.com/?password=secret'], '/home/u');
    await until(() => fakes.messages.length === 1);
    expect(fakes.messages[0]).toContain('not SPICE links');
    expect(fakes.messages[0]).not.toContain('secret');
  });

  it('shows notices from before the app was ready once it is', async () => {
    await started(['/opt/spice-smartcard/spice-smartcard', 'notes.txt']);
    expect(fakes.messages).toEqual(['Not opened: notes.txt (not a .vv file).']);
  });

  it('restarts the utility process after a crash, with a notice, and points the window at the new bridge', async () => {
    const { child, window } = await started();
    child.emit('exit', 139);
    await until(() => fakes.children.length === 2);
    expect(fakes.messages.some((m) => m.includes('stopped unexpectedly') && m.includes('139'))).toBe(true);
    const second = lastChild();
    answer(second);
    second.emit('message', { kind: 'ready', url: 'http://127.0.0.1:5000/', token: 'cd'.repeat(16) });
    await tick();
    expect(window.loaded.at(-1)).toBe(`http://127.0.0.1:5000/#token=${'cd'.repeat(16)}`);
  });

  it('closing the window keeps the bridge and its sessions running', async () => {
    const { child, window } = await started();
    window.emit('closed');
    fakes.app.emit('window-all-closed');
    await tick();
    expect(fakes.app.quitCalls).toBe(0);
    expect(child.posted.some((m) => (m as { kind?: string }).kind === 'stop')).toBe(false);
  });

  it('Quit stops the bridge first (cards leave the VMs), then exits; no restart', async () => {
    const { child } = await started();
    let prevented = false;
    fakes.app.emit('before-quit', { preventDefault: () => (prevented = true) });
    expect(prevented).toBe(true);
    expect(child.posted).toContainEqual({ kind: 'stop' });
    expect(fakes.app.quitCalls).toBe(0);
    child.emit('exit', 0);
    await until(() => fakes.app.quitCalls === 1);
    let preventedAgain = false;
    fakes.app.emit('before-quit', { preventDefault: () => (preventedAgain = true) });
    expect(preventedAgain).toBe(false);
    await tick();
    expect(fakes.children).toHaveLength(1);
    expect(fakes.FakeTray.all[0]?.destroyed).toBe(true);
  });

  it('kills a bridge that does not stop in time', async () => {
    const { child } = await started();
    fakes.app.emit('before-quit', { preventDefault: () => undefined });
    await until(() => fakes.app.quitCalls === 1);
    expect(child.killed).toBe(true);
  });

  it('the tray follows session events', async () => {
    const { child } = await started();
    child.emit('message', { kind: 'event', event: { type: 'session', data: { status: status('vm1', 'active') } } });
    const tray = fakes.FakeTray.all[0]!;
    expect(tray.tooltip).toBe('spice-smartcard: 1 of 1 card in a VM');
    child.emit('message', { kind: 'event', event: { type: 'session', data: { status: { ...status('vm1', 'failed'), problem: { code: 'network', message: 'gone' } } } } });
    expect(tray.tooltip).toBe('spice-smartcard: 0 of 1 card in a VM, 1 needs attention');
  });

  it('answers the preload only for the page in its own window', async () => {
    const { window } = await started();
    const launch = fakes.ipcHandlers.get(IPC.launchViewer) as Handler;
    const fromElsewhere = await launch({ sender: {}, senderFrame: { url: 'http://127.0.0.1:4567/' } }, 'vm1');
    expect(fromElsewhere).toBe('Refused: not the app window.');
    const wrongOrigin = await launch({ sender: window.webContents, senderFrame: { url: 'https://example.com/' } }, 'vm1');
    expect(wrongOrigin).toBe('Refused: not the app window.');
    const noSession = await launch({ sender: window.webContents, senderFrame: { url: 'http://127.0.0.1:4567/' } }, 'vm1');
    expect(noSession).toContain('no viewer address');
  });

  it('ignores malformed messages from the utility process', async () => {
    const { child } = await started();
    for (const junk of [null, 42, 'ready', { kind: 'nope' }, { kind: 'result', id: 999, type: 'status.get', result: {} }]) child.emit('message', junk);
    await tick();
    expect(fakes.messages).toEqual([]);
  });

  describe('after a crash of the bridge', () => {
    const withSpec = (spec: SessionSpec, phase: SessionStatus['phase'], target = spec.target): SessionStatus => ({ ...status(spec.name, phase), mode: spec.mode, target, spec });
    const event = (child: InstanceType<typeof fakes.FakeChild>, s: SessionStatus): void => child.emit('message', { kind: 'event', event: { type: 'session', data: { status: s } } });

    async function crashAndRestart(child: InstanceType<typeof fakes.FakeChild>) {
      const before = fakes.children.length;
      child.emit('exit', 139);
      await until(() => fakes.children.length === before + 1);
      const second = lastChild();
      answer(second);
      second.emit('message', { kind: 'ready', url: 'http://127.0.0.1:5000/', token: 'cd'.repeat(16) });
      return second;
    }

    it('adds its sessions again: no password kept, a stopped one stays stopped, a .vv from the copy the bridge kept', async () => {
      const { child, window } = await started();
      const typed: SessionSpec = { name: 'typed', mode: 'connect', target: 'spice://10.0.0.5:5900', card: { kind: 'soft', path: '/home/u/alice.card' } };
      const idle: SessionSpec = { name: 'idle', mode: 'connect', target: 'spice://10.0.0.6:5900', card: { kind: 'demo' } };
      const copyDir = join(dir, 'spice-smartcard-vv-Q1w2E3');
      await mkdir(copyDir);
      const vv = '[virt-viewer]\ntype=spice\nhost=10.0.0.7\nport=5900\npassword=ticket\ndelete-this-file=1\n';
      await writeFile(join(copyDir, 'session.vv'), vv);
      const portal: SessionSpec = { name: 'portal', mode: 'proxy', target: join(copyDir, 'session.vv'), card: { kind: 'reader', reader: '*' } };
      event(child, withSpec(typed, 'needs-password'));
      event(child, withSpec(typed, 'active'));
      event(child, withSpec(idle, 'stopped'));
      event(child, withSpec(portal, 'active', 'portal.vv'));

      const second = await crashAndRestart(child);
      expect(fakes.messages.some((m) => m.includes('stopped unexpectedly') && m.includes('added again'))).toBe(true);
      await until(() => requests(second, 'session.add').length === 3);
      expect(requests(second, 'session.add').map((r) => r.params)).toEqual([
        { spec: typed },
        { spec: { ...idle, autostart: false } },
        { spec: { ...portal, target: 'portal.vv' }, vv },
      ]);
      // The new bridge has its own copy: the crashed one's (a one-time ticket) is removed.
      await until(() => !existsSync(copyDir));
      expect(window.loaded.at(-1)).toBe(`http://127.0.0.1:5000/#token=${'cd'.repeat(16)}`);
      expect(fakes.messages.filter((m) => m.includes('could not be restored'))).toEqual([]);

      // Another crash restores what the new bridge reported since (its own session events carry the spec).
      event(second, withSpec(typed, 'needs-password'));
      event(second, withSpec({ ...idle, card: { kind: 'none' } }, 'active'));
      const third = await crashAndRestart(second);
      await until(() => requests(third, 'session.add').length === 2);
      expect(requests(third, 'session.add').map((r) => r.params)).toEqual([{ spec: typed }, { spec: { ...idle, card: { kind: 'none' } } }]);
    });

    it('says which session could not come back and why; removed sessions stay removed', async () => {
      const { child } = await started();
      const lost: SessionSpec = { name: 'lost-ticket', mode: 'proxy', target: join(dir, 'spice-smartcard-vv-gone', 'session.vv'), card: { kind: 'demo' } };
      const removed: SessionSpec = { name: 'removed', mode: 'connect', target: 'spice://h:2', card: { kind: 'demo' } };
      const fine: SessionSpec = { name: 'fine', mode: 'connect', target: 'spice://h:3', card: { kind: 'demo' } };
      event(child, withSpec(lost, 'active', 'lost-ticket.vv'));
      event(child, withSpec(removed, 'active'));
      event(child, withSpec(fine, 'active'));
      child.emit('message', { kind: 'event', event: { type: 'session.removed', data: { name: 'removed' } } });

      child.emit('exit', 134);
      await until(() => fakes.children.length === 2);
      const second = lastChild();
      answer(second);
      second.emit('message', { kind: 'ready', url: 'http://127.0.0.1:5000/', token: 'cd'.repeat(16) });
      await until(() => fakes.messages.some((m) => m.includes('could not be restored')));
      expect(requests(second, 'session.add').map((r) => (r.params['spec'] as SessionSpec).name)).toEqual(['fine']);
      const notice = fakes.messages.find((m) => m.includes('could not be restored'))!;
      expect(notice).toContain('lost-ticket: the copy of its .vv file is gone');
      expect(notice).toContain('open the .vv file from your VM portal again');
      expect(notice).not.toContain('removed');
    });

    it('a bridge that goes away again before adding them leaves them, and the .vv copy, to the next one', async () => {
      const { child } = await started();
      const copyDir = join(dir, 'spice-smartcard-vv-again');
      await mkdir(copyDir);
      await writeFile(join(copyDir, 'session.vv'), '[virt-viewer]\ntype=spice\nhost=h\nport=1\n');
      const portal: SessionSpec = { name: 'portal', mode: 'connect', target: join(copyDir, 'session.vv'), card: { kind: 'demo' } };
      event(child, withSpec(portal, 'active', 'portal.vv'));
      child.emit('exit', 139);
      await until(() => fakes.children.length === 2);
      const second = lastChild();
      // Answers status.get only: it dies with the session.add unanswered.
      second.postMessage = (m: unknown) => {
        second.posted.push(m);
        const r = m as { kind: string; id: number; type: string };
        if (r.kind === 'request' && r.type === 'status.get') {
          queueMicrotask(() => second.emit('message', { kind: 'result', id: r.id, type: r.type, result: { apiVersion: 1, bridge: { version: 't', pid: 1, startedAt: 0 }, sessions: [], readers: [], pcsc: { available: false } } }));
        }
      };
      second.emit('message', { kind: 'ready', url: 'http://127.0.0.1:5000/', token: 'cd'.repeat(16) });
      await until(() => requests(second, 'session.add').length === 1);
      const third = await crashAndRestart(second);
      await until(() => requests(third, 'session.add').length === 1);
      expect(requests(third, 'session.add')[0]?.params).toEqual({ spec: { ...portal, target: 'portal.vv' }, vv: '[virt-viewer]\ntype=spice\nhost=h\nport=1\n' });
      await until(() => !existsSync(copyDir));
      expect(fakes.messages.filter((m) => m.includes('could not be restored'))).toEqual([]);
    });

    it('says so when the new bridge refuses a session', async () => {
      const { child } = await started();
      const spec: SessionSpec = { name: 'soft', mode: 'connect', target: 'spice://h:1', card: { kind: 'soft', path: '/gone/alice.card' } };
      event(child, withSpec(spec, 'active'));
      child.emit('exit', 139);
      await until(() => fakes.children.length === 2);
      const second = lastChild();
      // This bridge answers status.get, and refuses session.add as the real one does for a missing card file.
      second.postMessage = (m: unknown) => {
        second.posted.push(m);
        const r = m as { kind: string; id: number; type: string };
        if (r.kind !== 'request') return;
        queueMicrotask(() =>
          second.emit(
            'message',
            r.type === 'status.get'
              ? { kind: 'result', id: r.id, type: r.type, result: { apiVersion: 1, bridge: { version: 't', pid: 1, startedAt: 0 }, sessions: [], readers: [], pcsc: { available: false } } }
              : { kind: 'error', id: r.id, error: { code: 'invalid-params', message: 'spec.card.path: no such card file', path: 'spec.card.path' } },
          ),
        );
      };
      second.emit('message', { kind: 'ready', url: 'http://127.0.0.1:5000/', token: 'cd'.repeat(16) });
      await until(() => fakes.messages.some((m) => m.includes('could not be restored')));
      expect(fakes.messages.find((m) => m.includes('could not be restored'))).toContain('soft: the bridge refused it (spec.card.path: no such card file)');
    });
  });

  describe('the control port, kept so that the page keeps its origin', () => {
    const settingsFile = () => join(dir, 'userData', 'settings.json');
    const portArg = (child: InstanceType<typeof fakes.FakeChild>): string | undefined => {
      const at = child.args.indexOf('--port');
      return at === -1 ? undefined : child.args[at + 1];
    };
    const saved = async (): Promise<unknown> => JSON.parse(await readFile(settingsFile(), 'utf8'));
    const restartApp = async (argv?: string[]) => {
      fakes.children.length = 0;
      fakes.app.handlers.clear();
      fakes.app.ready = false;
      fakes.FakeWindow.all = [];
      return started(argv, { ...OPTIONS, settingsFile: settingsFile() });
    };

    it('the first run asks for any port and records the one it got; the next run asks for that one', async () => {
      const { child } = await started(undefined, { ...OPTIONS, settingsFile: settingsFile() });
      expect(child.args).toEqual(['--version', 'unknown']);
      await until(() => existsSync(settingsFile()));
      expect(await saved()).toEqual({ version: 1, port: 4567 });

      const next = await restartApp();
      expect(portArg(next.child)).toBe('4567');
    });

    it('passes the version and card folder along with the port', async () => {
      await mkdir(join(dir, 'userData'));
      await writeFile(settingsFile(), '{"version": 1, "port": 4567}');
      const { child } = await started(undefined, { ...OPTIONS, bridge: { ...OPTIONS.bridge, args: { version: '2.0.0', cardDirectory: '/u/cards' } }, settingsFile: settingsFile() });
      expect(child.args).toEqual(['--version', '2.0.0', '--card-directory', '/u/cards', '--port', '4567']);
    });

    it('a restarted bridge asks for the port the crashed one had', async () => {
      const { child } = await started(undefined, { ...OPTIONS, settingsFile: settingsFile() });
      child.emit('exit', 139);
      await until(() => fakes.children.length === 2);
      expect(portArg(lastChild())).toBe('4567');
    });

    it('after a fallback to another port: the window, navigation lock and IPC follow the new origin, and the new port is recorded', async () => {
      await mkdir(join(dir, 'userData'));
      await writeFile(settingsFile(), JSON.stringify({ version: 1, open: { mode: 'connect', card: { kind: 'demo' } }, port: 4567 }));
      const { child, window } = await started(undefined, { ...OPTIONS, settingsFile: settingsFile() });
      expect(portArg(child)).toBe('4567');
      child.emit('exit', 139);
      await until(() => fakes.children.length === 2);
      const second = lastChild();
      expect(portArg(second)).toBe('4567');
      answer(second);
      // Another program took 4567 meanwhile: the bridge got a free port instead.
      second.emit('message', { kind: 'ready', url: 'http://127.0.0.1:5000/', token: 'cd'.repeat(16) });
      await until(() => window.loaded.length === 2);
      expect(window.loaded.at(-1)).toBe(`http://127.0.0.1:5000/#token=${'cd'.repeat(16)}`);

      const navigate = (url: string): boolean => {
        let prevented = false;
        window.webContents.emit('will-navigate', { preventDefault: () => (prevented = true) }, url);
        return prevented;
      };
      expect(navigate('http://127.0.0.1:5000/index.html')).toBe(false);
      expect(navigate('http://127.0.0.1:4567/index.html')).toBe(true);
      const get = fakes.ipcHandlers.get(IPC.getOpenDefaults) as Handler;
      const launch = fakes.ipcHandlers.get(IPC.launchViewer) as Handler;
      expect(await get({ sender: window.webContents, senderFrame: { url: 'http://127.0.0.1:4567/' } })).toBeUndefined();
      expect(await launch({ sender: window.webContents, senderFrame: { url: 'http://127.0.0.1:4567/' } }, 'vm1')).toBe('Refused: not the app window.');
      expect(await get({ sender: window.webContents, senderFrame: { url: 'http://127.0.0.1:5000/' } })).toEqual({ mode: 'connect', card: { kind: 'demo' } });

      // The user's own setting stays next to the new port; the next start (or restart) asks for 5000.
      await until(() => (readFileSafe(settingsFile()) ?? '').includes('5000'));
      expect(await saved()).toEqual({ version: 1, open: { mode: 'connect', card: { kind: 'demo' } }, port: 5000 });
      second.emit('exit', 139);
      await until(() => fakes.children.length === 3);
      expect(portArg(lastChild())).toBe('5000');
    });

    it('a bad port in the file is not passed on; the port the bridge gets replaces it', async () => {
      await mkdir(join(dir, 'userData'));
      await writeFile(settingsFile(), '{"version": 1, "port": "4567; rm -rf /"}');
      const { child } = await started(undefined, { ...OPTIONS, settingsFile: settingsFile() });
      expect(portArg(child)).toBeUndefined();
      await until(() => (readFileSafe(settingsFile()) ?? '').includes('"port": 4567'));
      expect(await saved()).toEqual({ version: 1, port: 4567 });
      expect(fakes.messages).toEqual([]);
    });

    it('a corrupt settings file: a free port, a notice, and the file replaced by one that works', async () => {
      await mkdir(join(dir, 'userData'));
      await writeFile(settingsFile(), '{"version": 1, "port": 4');
      const { child } = await started(undefined, { ...OPTIONS, settingsFile: settingsFile() });
      expect(portArg(child)).toBeUndefined();
      expect(fakes.messages.some((m) => m.includes('not valid JSON') && m.includes('replaces the file'))).toBe(true);
      await until(() => (readFileSafe(settingsFile()) ?? '').includes('"port": 4567'));
      expect(await saved()).toEqual({ version: 1, port: 4567 });
    });

    it('a second instance neither starts a bridge nor touches the settings', async () => {
      await mkdir(join(dir, 'userData'));
      await writeFile(settingsFile(), '{"version": 1, "port": 4567}');
      fakes.app.lock = false;
      expect(startDesktopApp({ ...OPTIONS, settingsFile: settingsFile() }, ['/usr/bin/spice-smartcard'])).toBeUndefined();
      fakes.app.becomeReady();
      await tick();
      expect(fakes.children).toHaveLength(0);
      expect(await readFile(settingsFile(), 'utf8')).toBe('{"version": 1, "port": 4567}');
    });
  });

  describe('the "open with" setting', () => {
    const settingsOptions = () => ({ ...OPTIONS, settingsFile: join(dir, 'userData', 'settings.json') });
    const page = (window: InstanceType<typeof fakes.FakeWindow>, url = 'http://127.0.0.1:4567/') => ({ sender: window.webContents, senderFrame: { url } });

    it('is saved and read only for the page on the bridge origin in its own window, checked first', async () => {
      const options = settingsOptions();
      const savedOpen = (): unknown => (JSON.parse(readFileSafe(options.settingsFile) ?? '{}') as { open?: unknown }).open;
      const { window } = await started(undefined, options);
      const set = fakes.ipcHandlers.get(IPC.setOpenDefaults) as Handler;
      const get = fakes.ipcHandlers.get(IPC.getOpenDefaults) as Handler;
      const wanted = { mode: 'connect', card: { kind: 'soft', path: '/home/u/alice.card' } };
      expect(await set({ sender: {}, senderFrame: { url: 'http://127.0.0.1:4567/' } }, wanted)).toBe('Refused: not the app window.');
      expect(await set(page(window, 'https://example.com/'), wanted)).toBe('Refused: not the app window.');
      expect(await set({ sender: window.webContents }, wanted)).toBe('Refused: not the app window.');
      expect(await get({ sender: {}, senderFrame: { url: 'http://127.0.0.1:4567/' } })).toBeUndefined();
      expect(savedOpen()).toBeUndefined();

      expect(await get(page(window))).toEqual({ mode: 'proxy', card: { kind: 'reader', reader: '*' } });
      expect(await set(page(window), { mode: 'passthru', card: { kind: 'demo' } })).toContain('Not saved: open.mode');
      expect(await set(page(window), 'proxy')).toContain('Not saved');
      expect(savedOpen()).toBeUndefined();

      expect(await set(page(window), { ...wanted, card: { ...wanted.card, injected: true } })).toBeUndefined();
      // Next to the control port main recorded when the bridge was ready.
      expect(JSON.parse(await readFile(options.settingsFile, 'utf8'))).toEqual({ version: 1, open: wanted, port: 4567 });
      expect(await get(page(window))).toEqual(wanted);
    });

    it('is what a .vv or link from the OS opens with, in this run and the next', async () => {
      const options = settingsOptions();
      const { window, child } = await started(undefined, options);
      const set = fakes.ipcHandlers.get(IPC.setOpenDefaults) as Handler;
      expect(await set(page(window), { mode: 'connect', card: { kind: 'demo' } })).toBeUndefined();
      fakes.app.emit('second-instance', {}, ['/opt/spice-smartcard/spice-smartcard', 'spice://vm.example:5900'], '/home/u');
      await until(() => requests(child, 'session.add').length === 1);
      expect(requests(child, 'session.add')[0]?.params).toMatchObject({ spec: { mode: 'connect', card: { kind: 'demo' } } });

      // The next start of the app reads it before opening what it was started with.
      fakes.children.length = 0;
      fakes.app.handlers.clear();
      fakes.app.ready = false;
      const next = await started(['/opt/spice-smartcard/spice-smartcard', 'spice://vm.example:5901'], options);
      await until(() => requests(next.child, 'session.add').length === 1);
      expect(requests(next.child, 'session.add')[0]?.params).toMatchObject({ spec: { mode: 'connect', card: { kind: 'demo' }, target: 'spice://vm.example:5901' } });
    });

    it('a corrupt settings file is ignored with a notice, and the defaults apply', async () => {
      const options = settingsOptions();
      await mkdir(join(dir, 'userData'));
      await writeFile(options.settingsFile, '{"version": 1, "open": {"mode": "proxy", "card": ');
      const { child } = await started(['/opt/spice-smartcard/spice-smartcard', 'spice://vm.example:5900'], options);
      await until(() => requests(child, 'session.add').length === 1);
      expect(requests(child, 'session.add')[0]?.params).toMatchObject({ spec: { mode: 'proxy', card: { kind: 'reader', reader: '*' } } });
      expect(fakes.messages.some((m) => m.includes('settings.json') && m.includes('not valid JSON') && m.includes('The defaults apply'))).toBe(true);
    });
  });
});
