// The web UI end to end: Debian's headless Chromium against a real bridge (startServe, serving the
// built UI from dist/ui) and QEMU's spice-server with its smartcard device, with a soft card made
// through the page. What the page shows is checked against what the bridge reports.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStatus } from '../../src/control/schema.js';
import { uiDirectory } from '../../src/control/ui-files.js';
import { ServeLogger } from '../../src/serve/logger.js';
import { startServe, type RunningServe } from '../../src/serve/serve.js';
import { checkBinaries } from '../helpers/process.js';
import { startSpiceServer, type SpiceServer } from '../helpers/qemu.js';
import { launchChromium } from './browser.js';

const binaries = checkBinaries(['qemu-system-x86_64', 'chromium']);
if (binaries.skip) console.warn(`test/ui/app-ui.test.ts skipped: ${binaries.reason}; set CI=1 to fail instead`);

const PASSWORD = 'ui-test-Ticket7';
const SESSION = 'test-vm';
const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'screenshots');
const STEP_MS = 30_000;

function vvFile(port: number, password?: string): string {
  return ['[virt-viewer]', 'type=spice', 'host=127.0.0.1', `port=${port}`, ...(password !== undefined ? [`password=${password}`] : []), 'title=Test VM', ''].join('\n');
}

describe.skipIf(binaries.skip)('desktop app UI in Chromium against a real bridge and QEMU', () => {
  let dir: string;
  let server: SpiceServer;
  let serve: RunningServe;
  let browser: Browser;
  let page: Page;
  const logLines: string[] = [];
  /** Console errors and uncaught exceptions of the page (a CSP violation shows up here). */
  const pageErrors: string[] = [];
  let cardPath: string;

  const status = (): SessionStatus | undefined => serve.bridge.snapshot().sessions.find((s) => s.name === SESSION);
  const phaseText = (text: string) => page.locator(`#s-${SESSION}-phase`, { hasText: text }).waitFor({ timeout: STEP_MS });
  const fact = (what: string) => page.locator(`#s-${SESSION}-${what}`).textContent();

  beforeAll(async () => {
    if (uiDirectory() === undefined) throw new Error('dist/ui is missing: run `npm run build` first (it builds the web UI).');
    dir = await mkdtemp(join(tmpdir(), 'spice-smartcard-ui-'));
    cardPath = join(dir, 'alice.card');
    [server, browser] = await Promise.all([startSpiceServer({ password: PASSWORD }), launchChromium()]);
    serve = await startServe({
      control: { host: '127.0.0.1', port: 0, connectionFile: false },
      log: new ServeLogger({ level: 'debug', write: (line) => logLines.push(line) }),
      version: 'ui-test',
      cardDirectory: dir,
    });
    page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${serve.url}#token=${serve.token}`);
    await page.locator('#bridge-state', { hasText: 'Connected to the bridge' }).waitFor({ timeout: STEP_MS });
  });

  afterAll(async () => {
    await browser?.close();
    await serve?.close();
    await server?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('refuses a page without the token, saying where to get it', async () => {
    const bare = await browser.newPage();
    try {
      await bare.goto(serve.url);
      await bare.locator('#bridge-state', { hasText: 'No access token' }).waitFor({ timeout: STEP_MS });
    } finally {
      await bare.close();
    }
  });

  it('says so when the token is wrong, and keeps trying', async () => {
    const wrong = await browser.newPage();
    try {
      await wrong.goto(`${serve.url}#token=${'0'.repeat(64)}`);
      await wrong.locator('#bridge-state', { hasText: 'Cannot reach the bridge' }).waitFor({ timeout: STEP_MS });
      expect(await wrong.locator('#bridge-state').textContent()).toContain('new token');
    } finally {
      await wrong.close();
    }
  });

  it('creates a soft card from the page', async () => {
    await page.click('#softcard-create-summary');
    await page.fill('#softcard-create-path', cardPath);
    await page.fill('#softcard-create-subject', 'CN=Alice UI');
    await page.click('#softcard-create-submit');
    await page.locator('#softcard-result li', { hasText: 'CN=Alice UI' }).waitFor({ timeout: STEP_MS });
    expect(existsSync(cardPath)).toBe(true);
    await page.click('#softcard-create-summary');
  }, 60_000);

  it('opens a .vv standalone: the session becomes active and the VM has reader and card', async () => {
    await page.setInputFiles('#vv-file', { name: `${SESSION}.vv`, mimeType: 'application/x-virt-viewer', buffer: Buffer.from(vvFile(server.port!, PASSWORD)) });
    await page.check('#mode-connect');
    await page.selectOption('#card-source', 'soft');
    await page.fill('#card-path', cardPath);
    await page.click('#connect-submit');
    await phaseText('Card in the VM');
    const s = status();
    expect(s?.phase).toBe('active');
    expect(s?.vm).toEqual({ readerAdded: true, cardInserted: true });
    expect(await fact('reader-added')).toBe('yes');
    expect(await fact('card-inserted')).toBe('yes');
    expect(s?.card.atr).toBeDefined();
    expect(await fact('atr')).toBe(s?.card.atr);
    expect(await page.locator(`[data-session="${SESSION}"] .target`).textContent()).toContain('standalone');
  });

  it('saves light and dark screenshots of a live session', async () => {
    await page.emulateMedia({ colorScheme: 'light' });
    await page.screenshot({ path: join(SCREENSHOTS, 'app-light.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(SCREENSHOTS, 'app-dark.png'), fullPage: true });
    const background = await page.evaluate('getComputedStyle(document.body).backgroundColor');
    expect(background).toBe('rgb(22, 23, 26)');
    await page.emulateMedia({ colorScheme: 'light' });
    expect(await page.evaluate('getComputedStyle(document.body).backgroundColor')).toBe('rgb(247, 247, 245)');
  });

  it('the theme toggle overrides the system theme, and remembers it', async () => {
    const background = () => page.evaluate('getComputedStyle(document.body).backgroundColor');
    await page.click('#theme-toggle');
    expect(await page.textContent('#theme-toggle')).toBe('Theme: light');
    await page.emulateMedia({ colorScheme: 'dark' });
    expect(await background()).toBe('rgb(247, 247, 245)');
    await page.click('#theme-toggle');
    expect(await page.textContent('#theme-toggle')).toBe('Theme: dark');
    await page.emulateMedia({ colorScheme: 'light' });
    expect(await background()).toBe('rgb(22, 23, 26)');
    await page.reload();
    await page.locator('#bridge-state', { hasText: 'Connected to the bridge' }).waitFor({ timeout: STEP_MS });
    expect(await background()).toBe('rgb(22, 23, 26)');
    await page.click('#theme-toggle');
    expect(await page.textContent('#theme-toggle')).toBe('Theme: system');
    expect(await background()).toBe('rgb(247, 247, 245)');
  });

  it('reaches every control with the keyboard alone, with a visible focus ring', async () => {
    // Open the folded soft-card forms by keyboard too, so their fields count.
    const reached = new Set<string>();
    await page.evaluate('document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)');
    for (let i = 0; i < 120; i++) {
      await page.keyboard.press('Tab');
      const focused = (await page.evaluate(
        `(() => { const e = document.activeElement; if (!e || e === document.body) return null;
          const ring = getComputedStyle(e).outlineStyle;
          return { key: e.type === 'radio' ? 'radio:' + e.name : e.id, tag: e.tagName, open: e.tagName === 'SUMMARY' ? e.parentElement.open : null, ring }; })()`,
      )) as { key: string; tag: string; open: boolean | null; ring: string } | null;
      if (focused === null) continue;
      expect(focused.ring, `focus ring on #${focused.key}`).not.toBe('none');
      reached.add(focused.key);
      if (focused.tag === 'SUMMARY' && focused.open === false) await page.keyboard.press('Enter');
    }
    const controls = (await page.evaluate(
      `[...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex="0"]')]
        .filter((e) => !e.disabled && e.getClientRects().length > 0)
        .map((e) => e.type === 'radio' ? 'radio:' + e.name : e.id)`,
    )) as string[];
    expect(controls.length).toBeGreaterThan(20);
    expect(controls).toContain(`s-${SESSION}-eject`);
    expect([...new Set(controls)].filter((c) => !reached.has(c))).toEqual([]);
  }, 90_000);

  it('has no horizontal scrolling at 200% zoom', async () => {
    // 200% zoom of a 1280-pixel-wide window is a 640 CSS-pixel viewport.
    await page.setViewportSize({ width: 640, height: 900 });
    const overflow = await page.evaluate(
      `[document.documentElement, document.getElementById('main')].map((e) => e.scrollWidth - e.clientWidth)`,
    );
    expect(overflow).toEqual([0, 0]);
    await page.evaluate(`document.activeElement && document.activeElement.blur(); document.getElementById('sessions-heading').scrollIntoView()`);
    await page.screenshot({ path: join(SCREENSHOTS, 'app-zoom-200.png'), fullPage: false });
    await page.setViewportSize({ width: 1100, height: 900 });
  });

  it('ejects the card: the page shows it out of the VM, and puts it back', async () => {
    await page.click(`#s-${SESSION}-eject`);
    await phaseText('Reader in the VM, no card');
    expect(await fact('card-inserted')).toBe('no');
    expect(status()?.vm).toEqual({ readerAdded: true, cardInserted: false });
    await page.click(`#s-${SESSION}-insert`);
    await phaseText('Card in the VM');
    expect(status()?.vm.cardInserted).toBe(true);
  });

  it('changes which card goes to the VM', async () => {
    await page.selectOption(`#s-${SESSION}-card-choice`, 'demo');
    await page.click(`#s-${SESSION}-card-submit`);
    await page.locator(`#s-${SESSION}-card`, { hasText: 'Demo card' }).waitFor({ timeout: STEP_MS });
    await phaseText('Card in the VM');
    expect(status()?.card.source).toEqual({ kind: 'demo' });
    expect(status()?.vm.cardInserted).toBe(true);
  });

  it('removes the session: reader and card leave the VM', async () => {
    await page.click(`#s-${SESSION}-remove`);
    await page.locator(`[data-session="${SESSION}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
    expect(status()).toBeUndefined();
  });

  it('asks for the password when the .vv has none, keeps asking after a wrong one, links with the right one', async () => {
    await page.setInputFiles('#vv-file', { name: `${SESSION}.vv`, mimeType: 'application/x-virt-viewer', buffer: Buffer.from(vvFile(server.port!)) });
    await page.check('#mode-connect');
    await page.selectOption('#card-source', 'soft');
    await page.fill('#card-path', cardPath);
    await page.click('#connect-submit');
    await phaseText('Password needed');
    const input = page.locator(`#s-${SESSION}-password`);
    await input.fill('not-the-ticket');
    await page.click(`#s-${SESSION}-password-submit`);
    await phaseText('Wrong password');
    expect(status()?.problem?.code).toBe('auth');
    await page.screenshot({ path: join(SCREENSHOTS, 'app-password.png'), fullPage: false });
    await input.fill(PASSWORD);
    await page.click(`#s-${SESSION}-password-submit`);
    await phaseText('Card in the VM');
    expect(status()?.vm.cardInserted).toBe(true);
    // Neither the bridge's log nor the page ever shows the password.
    expect(logLines.join('\n')).not.toContain(PASSWORD);
    expect(await page.locator('body').innerText()).not.toContain(PASSWORD);
    await page.click(`#s-${SESSION}-remove`);
    await page.locator(`[data-session="${SESSION}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
  }, 90_000);

  it('adds a "with my viewer" session from a typed URI: it waits for the viewer and offers its address; the URI is remembered', async () => {
    const uri = `spice://127.0.0.1:${server.port!}`;
    const name = `127.0.0.1-${server.port!}`;
    await page.fill('#target-uri', uri);
    await page.check('#mode-proxy');
    await page.selectOption('#card-source', 'demo');
    await page.click('#connect-submit');
    await page.locator(`[id="s-${name}-phase"]`, { hasText: 'Waiting for your viewer' }).waitFor({ timeout: STEP_MS });
    const proxy = serve.bridge.snapshot().sessions.find((s) => s.name === name)?.proxy;
    expect(proxy?.uri).toMatch(/^spice:\/\/127\.0\.0\.1:\d+$/);
    expect(await page.locator(`[id="s-${name}-viewer"]`).getAttribute('href')).toBe(proxy?.uri);
    expect(await page.locator(`[id="s-${name}-advice"]`).textContent()).toContain(proxy?.uri);
    expect(await page.locator(`[data-session="${name}"] .target`).textContent()).toContain('with my viewer');
    // Recent connections: the URI is offered again and fills the form back in.
    await page.click(`[id="s-${name}-remove"]`);
    await page.locator(`[data-session="${name}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
    await page.click('#recent-0');
    expect(await page.inputValue('#target-uri')).toBe(uri);
    expect(await page.isChecked('#mode-proxy')).toBe(true);
    expect(await page.inputValue('#card-source')).toBe('demo');
    await page.fill('#target-uri', '');
  });

  it('ran the whole way without a script error or a content-security-policy violation', () => {
    // The server's CSP header lists ws://[::1]:PORT, which Chromium reports as an invalid source and ignores.
    expect(pageErrors.filter((e) => !/invalid source: 'ws:\/\/\[::1\]/.test(e))).toEqual([]);
  });
});
