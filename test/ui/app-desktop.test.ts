// The page's desktop-only parts in headless Chromium against a real bridge (no VM needed): the
// "open with" setting, shown only when the preload's API is there (a stand-in for it here, as Electron
// cannot start on these machines), and sessions a restarted bridge got back shown on the new page.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionSpec } from '../../src/control/schema.js';
import { uiDirectory } from '../../src/control/ui-files.js';
import { ServeLogger } from '../../src/serve/logger.js';
import { startServe, type RunningServe } from '../../src/serve/serve.js';
import { restorePlan, SessionMemory } from '../../app/main/session-restore.js';
import { checkBinaries } from '../helpers/process.js';
import { launchChromium } from './browser.js';

const binaries = checkBinaries(['chromium']);
if (binaries.skip) console.warn(`test/ui/app-desktop.test.ts skipped: ${binaries.reason}; set CI=1 to fail instead`);

const STEP_MS = 30_000;

/** Runs in the page before its scripts: what the preload exposes, recording what the page asks. */
function fakeDesktopApi({ saved, answer }: { saved: unknown; answer: string | null }): void {
  const calls: unknown[] = [];
  const page = globalThis as unknown as Record<string, unknown>;
  page['__desktopCalls'] = calls;
  page['spiceSmartcardDesktop'] = {
    kind: 'electron',
    pickVvFile: () => Promise.resolve(undefined),
    launchViewer: () => Promise.resolve(undefined),
    getOpenDefaults: () => Promise.resolve(saved),
    setOpenDefaults: (defaults: unknown) => {
      calls.push(JSON.parse(JSON.stringify(defaults)));
      return Promise.resolve(answer ?? undefined);
    },
  };
}

describe.skipIf(binaries.skip)('desktop-only parts of the page in Chromium against a real bridge', () => {
  let dir: string;
  let browser: Browser;
  const serves: RunningServe[] = [];
  const pageErrors: string[] = [];

  const start = async (): Promise<RunningServe> => {
    const serve = await startServe({
      control: { host: '127.0.0.1', port: 0, connectionFile: false },
      log: new ServeLogger({ level: 'error', write: () => undefined }),
      version: 'ui-test',
      cardDirectory: dir,
    });
    serves.push(serve);
    return serve;
  };

  const open = async (serve: RunningServe, desktop?: { saved: unknown; answer: string | null }): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    if (desktop !== undefined) await page.addInitScript(fakeDesktopApi, desktop);
    await page.goto(`${serve.url}#token=${serve.token}`);
    await page.locator('#bridge-state', { hasText: 'Connected to the bridge' }).waitFor({ timeout: STEP_MS });
    return page;
  };

  beforeAll(async () => {
    if (uiDirectory() === undefined) throw new Error('dist/ui is missing: run `npm run build` first (it builds the web UI).');
    dir = await mkdtemp(join(tmpdir(), 'spice-smartcard-ui-desktop-'));
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    for (const serve of serves) await serve.close().catch(() => undefined);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('a browser has no "open with" setting', async () => {
    const page = await open(serves[0] ?? (await start()));
    try {
      expect(await page.locator('#open-defaults-panel').isHidden()).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('in the desktop app, shows the saved setting (a reader not plugged in included) and saves a new one through the API', async () => {
    const serve = serves[0] ?? (await start());
    const page = await open(serve, { saved: { mode: 'connect', card: { kind: 'reader', reader: 'Yubico*' } }, answer: null });
    try {
      await page.locator('#open-defaults-panel').waitFor({ state: 'visible', timeout: STEP_MS });
      await page.locator('#open-card-source option[value="reader:Yubico*"]').waitFor({ state: 'attached', timeout: STEP_MS });
      expect(await page.isChecked('#open-mode-connect')).toBe(true);
      expect(await page.inputValue('#open-card-source')).toBe('reader:Yubico*');
      expect(await page.locator('#open-card-path-field').isHidden()).toBe(true);

      // Keyboard only: the mode, the card, the path, Save.
      await page.focus('#open-mode-connect');
      await page.keyboard.press('ArrowUp');
      expect(await page.isChecked('#open-mode-proxy')).toBe(true);
      await page.selectOption('#open-card-source', 'soft');
      await page.locator('#open-card-path-field').waitFor({ state: 'visible', timeout: STEP_MS });
      await page.focus('#open-defaults-save');
      await page.keyboard.press('Enter');
      await page.locator('#open-defaults-status', { hasText: 'Enter the path of the soft card file' }).waitFor({ timeout: STEP_MS });
      expect(await page.evaluate(() => (globalThis as unknown as { __desktopCalls: unknown[] }).__desktopCalls)).toEqual([]);

      await page.fill('#open-card-path', '/home/u/alice.card');
      await page.focus('#open-defaults-save');
      await page.keyboard.press('Enter');
      await page.locator('#open-defaults-status', { hasText: 'Saved' }).waitFor({ timeout: STEP_MS });
      expect(await page.evaluate(() => (globalThis as unknown as { __desktopCalls: unknown[] }).__desktopCalls)).toEqual([{ mode: 'proxy', card: { kind: 'soft', path: '/home/u/alice.card' } }]);
    } finally {
      await page.close();
    }
  });

  it('shows what main answers when it does not save', async () => {
    const serve = serves[0] ?? (await start());
    const page = await open(serve, { saved: { mode: 'proxy', card: { kind: 'demo' } }, answer: 'Could not save the setting to /x/settings.json: EACCES.' });
    try {
      await page.locator('#open-defaults-panel').waitFor({ state: 'visible', timeout: STEP_MS });
      expect(await page.inputValue('#open-card-source')).toBe('demo');
      await page.click('#open-defaults-save');
      await page.locator('#open-defaults-status', { hasText: 'EACCES' }).waitFor({ timeout: STEP_MS });
    } finally {
      await page.close();
    }
  });

  it('after the bridge restarts, the page on the new bridge shows the sessions main adds again', async () => {
    const first = await start();
    const spec: SessionSpec = { name: 'lab', mode: 'connect', target: 'spice://127.0.0.1:9', card: { kind: 'demo' }, autostart: false };
    await first.bridge.request('session.add', { spec });
    const page = await open(first, { saved: { mode: 'proxy', card: { kind: 'demo' } }, answer: null });
    try {
      await page.locator('#s-lab-phase', { hasText: 'Stopped' }).waitFor({ timeout: STEP_MS });
      // What main remembered from the first bridge's reports.
      const memory = new SessionMemory();
      for (const s of first.bridge.snapshot().sessions) memory.remember(s);
      await first.close();
      await page.locator('#bridge-state', { hasText: 'Lost the bridge' }).waitFor({ timeout: STEP_MS });
      // The app's page does not send the user after an address: main reloads it.
      await page.locator('#bridge-state', { hasText: 'reloads by itself' }).waitFor({ timeout: STEP_MS });

      // Main loads the new bridge's page as soon as it is ready, then adds the sessions again.
      const second = await start();
      await page.goto(`${second.url}#token=${second.token}`);
      await page.locator('#bridge-state', { hasText: 'Connected to the bridge' }).waitFor({ timeout: STEP_MS });
      for (const remembered of memory.takeMissing(new Set(second.bridge.snapshot().sessions.map((s) => s.name)))) {
        const plan = await restorePlan(remembered);
        if (!plan.ok) throw new Error(plan.reason);
        await second.bridge.request('session.add', plan.params);
      }
      await page.locator('#s-lab-phase', { hasText: 'Stopped' }).waitFor({ timeout: STEP_MS });
      expect(await page.locator('#s-lab-heading').count()).toBe(1);
    } finally {
      await page.close();
    }
    expect(pageErrors.filter((e) => !e.includes('WebSocket'))).toEqual([]);
  });
});
