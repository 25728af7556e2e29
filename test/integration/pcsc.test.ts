// The PC/SC card source against a real pcscd (private, see test/helpers/pcsc-rig.ts) with
// vsmartcard's vpcd reader and cards served in TypeScript (test/helpers/vpcd-card.ts).
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReaders } from '../../src/cli/readers-command.js';
import type { Card, CardEventMap } from '../../vsc/card.js';
import { createPcscSource, openReaderCard, type PcscNotice, type PcscSource } from '../../vsc/pcsc/index.js';
import { createDemoCard } from '../../vsc/soft-card/demo-card.js';
import { pcscdLogTail, pcscRigSkipReason, RIG_READERS, startPcscRig, type PcscRig } from '../helpers/pcsc-rig.js';
import { defaultAnswer, ScriptedCard, type Answer } from '../helpers/scripted-card.js';
import { VpcdCard } from '../helpers/vpcd-card.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const str = (b: Uint8Array | undefined): string => (b === undefined ? '-' : Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' '));
const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

/** A YubiKey-like T=1 ATR: pcscd talks T=1 to this card, the VM must be shown T=0. */
const T1_ATR = hex('3b fd 13 00 00 81 31 fe 15 80 73 c0 21 c0 57 59 75 62 69 4b 65 79 40');
const T1_GUEST_ATR = '3b 1d 13 80 73 c0 21 c0 57 59 75 62 69 4b 65 79';

/** A T=1 card that hands out a 300-byte object 256 bytes at a time, as such cards do. */
function t1Answer(): Answer {
  let pending: Uint8Array | undefined;
  return (apdu) => {
    if (apdu[1] === 0xcb) {
      const data = pattern(300);
      pending = data.subarray(256);
      return Uint8Array.from([...data.subarray(0, 256), 0x61, pending.length]);
    }
    if (apdu[1] === 0xc0 && pending !== undefined) {
      const out = Uint8Array.from([...pending, 0x90, 0x00]);
      pending = undefined;
      return out;
    }
    return defaultAnswer(apdu);
  };
}

function nextEvent<E extends keyof CardEventMap>(card: Card, event: E, timeoutMs = 8_000): Promise<CardEventMap[E]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${timeoutMs} ms`)), timeoutMs);
    const listener = (...args: CardEventMap[E]): void => {
      clearTimeout(timer);
      card.off(event, listener);
      resolve(args);
    };
    card.on(event, listener);
  });
}

function sourceEvent(source: PcscSource, event: 'card-inserted' | 'card-removed', reader: string, timeoutMs = 8_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} for ${reader} within ${timeoutMs} ms`)), timeoutMs);
    const listener = (name: string): void => {
      if (name !== reader) return;
      clearTimeout(timer);
      resolve();
    };
    if (event === 'card-inserted') source.on(event, listener);
    else source.on(event, listener);
  });
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** Records what reaches the card, to check that T=0 passthrough changes nothing. */
function recording(card: Card, seen: string[]): Card {
  return {
    name: card.name,
    atr: () => card.atr(),
    transmit: (apdu) => {
      seen.push(str(apdu));
      return card.transmit(apdu);
    },
    on: (event, listener) => card.on(event, listener),
    off: (event, listener) => card.off(event, listener),
  };
}

const skipReason = pcscRigSkipReason();

describe.skipIf(skipReason !== undefined)(`PC/SC passthrough with a real pcscd and vpcd${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let rig: PcscRig;

  beforeAll(async () => {
    rig = await startPcscRig();
    // libpcsclite reads it once, at this process's first PC/SC context.
    process.env.PCSCLITE_CSOCK_NAME = rig.env.PCSCLITE_CSOCK_NAME;
  });

  afterAll(async () => {
    await rig?.dispose();
  });

  it('lists the rig\'s readers, empty', async () => {
    const source = createPcscSource();
    source.start();
    await source.ready();
    try {
      expect(source.serviceAvailable).toBe(true);
      expect(source.readers().map((r) => [r.name, r.presence])).toEqual(RIG_READERS.map((name) => [name, 'empty']));
    } finally {
      source.close();
    }
  });

  it('closing the source inside its own event handler does not hang (pcsclite holds the reader\'s mutex there)', async () => {
    const vcard = new VpcdCard(new ScriptedCard(undefined, T1_ATR), rig.connector(0));
    const source = createPcscSource();
    source.start();
    await source.ready();
    try {
      const closedInside = new Promise<void>((resolve) =>
        source.on('card-inserted', () => {
          source.close();
          resolve();
        }),
      );
      await vcard.insert();
      await closedInside;
      // The event loop still turns: timers fire.
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      vcard.remove();
      source.close();
    }
  });

  it('T=1 card: insert and remove events, T=0 ATR for the guest, APDUs adapted both ways', async () => {
    const scripted = new ScriptedCard(t1Answer(), T1_ATR);
    const vcard = new VpcdCard(scripted, rig.connector(0));
    const source = createPcscSource();
    source.start();
    const card = await openReaderCard(RIG_READERS[0], { source });
    try {
      const inserted = nextEvent(card, 'inserted');
      const sourceInserted = sourceEvent(source, 'card-inserted', RIG_READERS[0]);
      await vcard.insert();
      await sourceInserted;
      const [atr] = await inserted;
      expect(str(atr)).toBe(T1_GUEST_ATR);
      expect(card.protocol()).toBe('T=1');
      expect(source.readers().find((r) => r.name === RIG_READERS[0])?.atr).toEqual(T1_ATR);

      // Case 2: straight through.
      expect(str(await card.transmit(hex('00 b0 00 10 04')))).toBe('10 11 12 13 90 00');
      // Case 4 as a T=0 guest sends it (no Le): the card gets Le=00, chains itself; the guest gets 61 XX.
      scripted.commands.length = 0;
      expect(str(await card.transmit(hex('00 cb 3f ff 05 5c 03 5f c1 05')))).toBe('61 00');
      const first = await card.transmit(hex('00 c0 00 00 00'));
      expect(first.length).toBe(258);
      expect(str(first.subarray(256))).toBe('61 2c');
      const last = await card.transmit(hex('00 c0 00 00 2c'));
      expect(str(last.subarray(44))).toBe('90 00');
      expect([...first.subarray(0, 256), ...last.subarray(0, 44)]).toEqual([...pattern(300)]);
      expect(scripted.commands.map(str)).toEqual(['00 cb 3f ff 05 5c 03 5f c1 05 00', '00 c0 00 00 2c']);

      const removed = nextEvent(card, 'removed');
      vcard.remove();
      await removed;
      expect(card.atr()).toBeUndefined();
    } catch (error) {
      throw new Error(`${String(error)}\npcscd log:\n${pcscdLogTail(rig)}`);
    } finally {
      vcard.remove();
      await card.close();
      source.close();
    }
  });

  it('T=0 card (the soft PIV demo card): ATR and APDUs pass unchanged', async () => {
    const demo = await createDemoCard();
    const seen: string[] = [];
    const vcard = new VpcdCard(recording(demo, seen), rig.connector(1));
    const card = await openReaderCard(RIG_READERS[1]);
    try {
      const inserted = nextEvent(card, 'inserted');
      await vcard.insert();
      const [atr] = await inserted;
      expect(str(atr)).toBe(str(demo.atr()));
      expect(card.protocol()).toBe('T=0');
      const select = await card.transmit(hex('00 a4 04 00 09 a0 00 00 03 08 00 00 10 00'));
      expect(select[0]).toBe(0x61);
      const apt = await card.transmit(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, select[1] ?? 0));
      expect(str(apt.subarray(-2))).toBe('90 00');
      expect(apt[0]).toBe(0x61);
      expect(seen).toEqual(['00 a4 04 00 09 a0 00 00 03 08 00 00 10 00', `00 c0 00 00 ${str(select.subarray(1, 2))}`]);
    } finally {
      vcard.remove();
      await card.close();
      await demo.close();
    }
  });

  it('pcscd stopped and started again: said once, recovered by itself, card forwarded again', async () => {
    const scripted = new ScriptedCard(undefined, T1_ATR);
    const vcard = new VpcdCard(scripted, rig.connector(0));
    const card = await openReaderCard(RIG_READERS[0]);
    const notices: PcscNotice[] = [];
    card.on('notice', (n) => notices.push(n));
    const events: string[] = [];
    card.on('inserted', () => events.push('inserted'));
    card.on('removed', () => events.push('removed'));
    try {
      await vcard.insert();
      await until(() => card.atr() !== undefined, 8_000, 'the card');
      await rig.stop();
      await until(() => notices.some((n) => n.code === 'service-down' || n.code === 'service-restarted'), 8_000, 'the outage notice');
      expect(card.atr()).toBeUndefined();
      // Let the source retry a few times while the service is away: it must not repeat itself.
      await new Promise((r) => setTimeout(r, 2_000));
      await rig.start();
      // The new pcscd lives in a new network namespace: the card plugs in again there.
      await vcard.insert();
      await until(() => card.atr() !== undefined, 15_000, 'the card after the restart');
      expect(str(await card.transmit(hex('00 b0 00 00 02')))).toBe('00 01 90 00');
      const codes = notices.map((n) => n.code).filter((c) => c.startsWith('service'));
      expect(codes).toEqual(['service-down', 'service-up']);
      expect(notices.find((n) => n.code === 'service-down')?.message).toMatch(/pcscd\) is not running: start it with `systemctl start pcscd`/);
      expect(events).toEqual(['inserted', 'removed', 'inserted']);
    } catch (error) {
      throw new Error(`${String(error)}\nnotices: ${JSON.stringify(notices)}\npcscd log:\n${pcscdLogTail(rig)}`);
    } finally {
      vcard.remove();
      await card.close();
    }
  });

  it('`readers --json` and `readers` describe the readers; exit 3 with advice when pcscd is down', async () => {
    const vcard = new VpcdCard(new ScriptedCard(undefined, T1_ATR), rig.connector(0));
    const watcher = createPcscSource();
    watcher.start();
    try {
      const present = sourceEvent(watcher, 'card-inserted', RIG_READERS[0]);
      await vcard.insert();
      await present;

      // A fresh PC/SC client can briefly see the reader's previous state under load: ask again.
      const err = new Capture();
      let out = new Capture();
      for (let attempt = 0; attempt < 20; attempt++) {
        out = new Capture();
        expect(await runReaders(['--json'], { out, err })).toBe(0);
        if (out.text.includes('"present"')) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const doc = JSON.parse(out.text) as { service: string; readers: { name: string; card: string; atr: string | null; protocols: string[]; guestAtr: string | null }[] };
      expect(doc.service).toBe('up');
      expect(doc.readers).toEqual([
        {
          name: RIG_READERS[0],
          card: 'present',
          atr: str(T1_ATR).replaceAll(' ', '').toUpperCase(),
          protocols: ['T=1'],
          guestAtr: T1_GUEST_ATR.replaceAll(' ', '').toUpperCase(),
          inUse: false,
          exclusive: false,
        },
        { name: RIG_READERS[1], card: 'empty', atr: null, protocols: [], guestAtr: null, inUse: false, exclusive: false },
      ]);

      const text = new Capture();
      expect(await runReaders([], { out: text, err })).toBe(0);
      expect(text.text).toContain(`${RIG_READERS[0]}\n  card:      present (T=1)\n  ATR:       3B FD 13`);
      expect(text.text).toContain(`${RIG_READERS[1]}\n  card:      none`);

      expect(await runReaders(['--bogus'], { out, err })).toBe(2);

      vcard.remove();
      await rig.stop();
      const downOut = new Capture();
      const downErr = new Capture();
      expect(await runReaders(['--json'], { out: downOut, err: downErr })).toBe(3);
      expect(downErr.text).toMatch(/pcscd\) is not running: start it with `systemctl start pcscd`/);
      expect(JSON.parse(downOut.text)).toMatchObject({ service: 'down', readers: [] });
    } finally {
      vcard.remove();
      watcher.close();
      if (!rig.running()) await rig.start();
    }
  });

  it('`readers --watch --json`: one object per change', async () => {
    const vcard = new VpcdCard(new ScriptedCard(undefined, T1_ATR), rig.connector(0));
    const out = new Capture();
    const controller = new AbortController();
    const run = runReaders(['--watch', '--json'], { out, err: new Capture(), signal: controller.signal });
    const lines = (): { event: string; reader?: string }[] =>
      out.text
        .trim()
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as { event: string; reader?: string });
    try {
      await until(() => lines().filter((l) => l.event === 'reader-added').length === 2, 8_000, 'two readers');
      await vcard.insert();
      await until(() => lines().some((l) => l.event === 'card-inserted'), 8_000, 'card-inserted');
      vcard.remove();
      await until(() => lines().some((l) => l.event === 'card-removed'), 8_000, 'card-removed');
      expect(lines().map((l) => `${l.event} ${l.reader ?? ''}`)).toEqual([
        `reader-added ${RIG_READERS[0]}`,
        `reader-added ${RIG_READERS[1]}`,
        `card-inserted ${RIG_READERS[0]}`,
        `card-removed ${RIG_READERS[0]}`,
      ]);
    } finally {
      controller.abort();
      expect(await run).toBe(0);
      vcard.remove();
    }
  });
});

