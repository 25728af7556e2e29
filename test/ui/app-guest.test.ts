// The web UI with a real guest: the tiny Linux VM's pcscd and OpenSC use the card the page put in,
// the page's live APDU counters follow what the guest sent, and ejecting from the page takes the card
// out of the guest's reader.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServeLogger } from '../../src/serve/logger.js';
import { startServe, type RunningServe } from '../../src/serve/serve.js';
import { uiDirectory } from '../../src/control/ui-files.js';
import { bootGuestVm, buildGuest, findQemu, type GuestVm } from '../e2e/guest-vm.js';
import { checkBinaries } from '../helpers/process.js';
import { launchChromium } from './browser.js';

const chromium = checkBinaries(['chromium']);
const skip = (findQemu() === null || chromium.skip) && !process.env['CI'];
const STEP_MS = 60_000;
const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'screenshots');

describe.skipIf(skip)('desktop app UI with a guest using the card', () => {
  let vm: GuestVm;
  let serve: RunningServe;
  let browser: Browser;
  let page: Page;
  let name: string;
  const sel = (what: string): string => `[id="s-${name}-${what}"]`;
  const counters = () => serve.bridge.snapshot().sessions.find((s) => s.name === name)?.counters;

  beforeAll(async () => {
    if (uiDirectory() === undefined) throw new Error('dist/ui is missing: run `npm run build` first (it builds the web UI).');
    [vm, browser] = await Promise.all([buildGuest().then((images) => bootGuestVm({ images })), launchChromium()]);
    serve = await startServe({ control: { host: '127.0.0.1', port: 0, connectionFile: false }, log: new ServeLogger({ write: () => undefined }), version: 'ui-guest-test' });
    page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto(`${serve.url}#token=${serve.token}`);
    await page.locator('#bridge-state', { hasText: 'Connected to the bridge' }).waitFor({ timeout: STEP_MS });
    name = `127.0.0.1-${vm.spicePort!}`;
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await serve?.close();
    await vm?.shutdown();
  });

  it('the guest sees the card the page put in, and the page counts its commands', async () => {
    await page.fill('#target-uri', `spice://127.0.0.1:${vm.spicePort!}`);
    await page.check('#mode-connect');
    await page.selectOption('#card-source', 'demo');
    await page.click('#connect-submit');
    await page.locator(sel('phase'), { hasText: 'Card in the VM' }).waitFor({ timeout: STEP_MS });
    await vm.waitFor('card_present', 30_000);
    const list = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(list.stdout).toMatch(/X\.509 Certificate/);
    // The counters event is rate-limited: wait until the page shows what the bridge counted.
    const least = Math.max(1, counters()?.answered ?? 0);
    let shown = 0;
    for (const end = Date.now() + STEP_MS; shown < least && Date.now() < end; ) {
      shown = Number(await page.textContent(sel('answered')));
      if (shown < least) await page.waitForTimeout(100);
    }
    expect(shown).toBeGreaterThan(0);
    expect(shown).toBeLessThanOrEqual(counters()?.answered ?? 0);
    expect(await page.textContent(sel('sw'))).toMatch(/^[0-9A-F]{4}$/);
    await page.locator(`article[data-session="${name}"]`).screenshot({ path: join(SCREENSHOTS, 'app-session-guest.png') });
  }, 90_000);

  it('eject in the page takes the card out of the guest; insert puts it back', async () => {
    await page.click(sel('eject'));
    await page.locator(sel('phase'), { hasText: 'Reader in the VM, no card' }).waitFor({ timeout: STEP_MS });
    await vm.waitFor('! card_present', 30_000);
    await page.click(sel('insert'));
    await page.locator(sel('phase'), { hasText: 'Card in the VM' }).waitFor({ timeout: STEP_MS });
    await vm.waitFor('card_present', 30_000);
  }, 90_000);
});
