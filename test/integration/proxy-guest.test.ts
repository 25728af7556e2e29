// End to end with a real guest: `open --demo-card` starts remote-viewer (under Xvfb) through the
// proxy; the guest's pcscd and OpenSC see the card while the viewer stays connected to its display.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProcess } from '../helpers/cli-process.js';
import { startXvfb, viewerEnv, viewerToolsCheck, type VirtualDisplay } from '../helpers/viewer.js';
import { bootGuestVm, buildGuest, type GuestVm } from '../e2e/guest-vm.js';

const tools = viewerToolsCheck();

interface QuerySpice {
  channels?: { 'channel-type': number; 'connection-id': number }[];
}

describe.skipIf(tools.skip)(`open --demo-card with remote-viewer into a real guest ${tools.reason}`, () => {
  let display: VirtualDisplay;
  let vm: GuestVm;
  let cli: CliProcess;

  async function sessions(): Promise<Map<number, number[]>> {
    const r = await vm.qmp<QuerySpice>('query-spice');
    const by = new Map<number, number[]>();
    for (const c of r.channels ?? []) {
      const id = c['connection-id'] >>> 0;
      by.set(id, [...(by.get(id) ?? []), c['channel-type']].sort());
    }
    return by;
  }

  beforeAll(async () => {
    const [images, xvfb] = await Promise.all([buildGuest(), startXvfb()]);
    display = xvfb;
    vm = await bootGuestVm({ images, display: 'qxl', spicePassword: 'guest-pw' });
    cli = new CliProcess(['open', `spice://127.0.0.1:${vm.spicePort}`, '--demo-card', '--json-log', '--viewer', 'remote-viewer'], { ...viewerEnv(display), SPICE_PASSWORD: 'guest-pw' });
    await cli.waitForEvent('card-inserted', 60_000);
  }, 180_000);

  afterAll(async () => {
    await cli?.stop();
    await vm?.shutdown();
    await display?.stop();
  });

  it('the guest lists the reader with the card', async () => {
    await vm.waitFor('card_present', 30_000);
    const r = await vm.run('opensc-tool --list-readers', { check: true });
    expect(r.stdout).toMatch(/Yes\s+.*CCID/);
  });

  it('pkcs15-tool --list-certificates lists the PIV certificates', async () => {
    const r = await vm.run('pkcs15-tool --list-certificates', { check: true, timeoutMs: 60_000 });
    expect(r.stdout.match(/X\.509 Certificate/g)).toHaveLength(2);
    expect(cli.events.filter((e) => e.event === 'apdu').length).toBeGreaterThan(5);
  });

  it("the viewer's display and inputs stay in the one session with the card", async () => {
    const linked = cli.events.find((e) => e.event === 'linked');
    const by = await sessions();
    expect([...by.keys()]).toEqual([linked?.['sessionId']]);
    expect(by.get(Number(linked?.['sessionId']))).toEqual(expect.arrayContaining([1, 2, 3, 8]));
    expect(cli.events.some((e) => e.event === 'viewer-channel' && e['state'] === 'closed')).toBe(false);
  });

  it('closing the viewer ends open cleanly and takes the card out of the guest', async () => {
    const started = cli.events.find((e) => e.event === 'viewer' && e['state'] === 'started');
    process.kill(Number(started?.['pid']), 'SIGTERM');
    expect(await cli.exited).toBe(0);
    await vm.waitFor('! card_present', 30_000);
    expect((await sessions()).size).toBe(0);
  });
});
