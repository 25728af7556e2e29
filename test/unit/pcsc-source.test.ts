import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runReaders } from '../../src/cli/readers-command.js';
import type { BackendReaderStatus, CardProtocol, PcscBackend, PcscBackendEvents, PcscBackendFactory, PcscBackendReader } from '../../vsc/pcsc/backend.js';
import { PcscError, ScardCode } from '../../vsc/pcsc/errors.js';
import { firstReaderCard, openReaderCard, PcscReaderCard, PcscSource, type PcscNotice } from '../../vsc/pcsc/index.js';
import { readerPattern } from '../../vsc/pcsc/glob.js';
import { readerStateFlags, ScardState } from '../../vsc/pcsc/reader-state.js';

const hex = (s: string): Uint8Array => Uint8Array.from((s.match(/[0-9a-f]{2}/gi) ?? []).map((b) => parseInt(b, 16)));
const str = (b: Uint8Array | undefined): string => (b === undefined ? '-' : Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' '));
const T1_ATR = hex('3b fd 13 00 00 81 31 fe 15 80 73 c0 21 c0 57 59 75 62 69 4b 65 79 40');
const T1_GUEST_ATR = '3b 1d 13 80 73 c0 21 c0 57 59 75 62 69 4b 65 79';
const T0_ATR = hex('3b 0a 53 50 49 43 45 2d 54 45 53 54');
const scardError = (code: number, op = 'SCardTransmit'): PcscError =>
  new PcscError(`${op} error: fake.(0x${code.toString(16).padStart(8, '0')})`, code);
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** What is plugged in, independent of any backend instance (it survives a "pcscd restart"). */
interface Hardware {
  name: string;
  card?: { atr: Uint8Array; protocol: CardProtocol };
  exclusive: boolean;
  /** pcsc-lite's insert/remove counter. */
  events: number;
  connectFailures: PcscError[];
  transmitFailures: PcscError[];
  transmitDelayMs: number;
  inFlight: number;
  maxInFlight: number;
  calls: string[];
}

class FakeReader implements PcscBackendReader {
  constructor(readonly hw: Hardware) {}
  get name(): string {
    return this.hw.name;
  }
  connect(): Promise<CardProtocol> {
    this.hw.calls.push('connect shared');
    const failure = this.hw.connectFailures.shift();
    if (failure !== undefined) return Promise.reject(failure);
    if (this.hw.card === undefined) return Promise.reject(scardError(ScardCode.NO_SMARTCARD, 'SCardConnect'));
    return Promise.resolve(this.hw.card.protocol);
  }
  async transmit(apdu: Uint8Array, protocol: CardProtocol, maxResponse: number): Promise<Uint8Array> {
    this.hw.calls.push(`transmit ${protocol} ${maxResponse} ${str(apdu)}`);
    this.hw.inFlight++;
    this.hw.maxInFlight = Math.max(this.hw.maxInFlight, this.hw.inFlight);
    try {
      if (this.hw.transmitDelayMs > 0) await new Promise((r) => setTimeout(r, this.hw.transmitDelayMs));
      const failure = this.hw.transmitFailures.shift();
      if (failure !== undefined) throw failure;
      if (this.hw.card === undefined) throw scardError(ScardCode.REMOVED_CARD);
      // Echo the INS and P2 so answers can be matched to commands.
      return Uint8Array.of(apdu[1] ?? 0, apdu[3] ?? 0, 0x90, 0x00);
    } finally {
      this.hw.inFlight--;
    }
  }
  disconnect(): Promise<void> {
    this.hw.calls.push('disconnect leave');
    return Promise.resolve();
  }
}

class FakeBackend implements PcscBackend {
  closed = false;
  readonly readers = new Map<string, FakeReader>();
  constructor(
    readonly events: PcscBackendEvents,
    readonly pcsc: FakePcsc,
  ) {}
  close(): void {
    this.closed = true;
  }
  status(hw: Hardware): BackendReaderStatus {
    let state = hw.card === undefined ? ScardState.EMPTY : ScardState.PRESENT;
    if (hw.exclusive) state |= ScardState.EXCLUSIVE | ScardState.INUSE;
    // The event counter in the high bits, as pcsc-lite sends it.
    return { state: (state | ScardState.CHANGED | (hw.events << 16)) >>> 0, atr: hw.card?.atr };
  }
  add(hw: Hardware): void {
    const reader = new FakeReader(hw);
    this.readers.set(hw.name, reader);
    this.events.readerAdded(reader);
    this.events.status(reader, this.status(hw));
  }
  announce(): void {
    for (const hw of this.pcsc.hardware.values()) this.add(hw);
    this.events.listed([...this.pcsc.hardware.keys()]);
  }
}

class FakePcsc {
  serviceUp = true;
  readonly hardware = new Map<string, Hardware>();
  readonly instances: FakeBackend[] = [];
  attempts: number[] = [];

  readonly factory: PcscBackendFactory = (events) => {
    this.attempts.push(Date.now());
    if (!this.serviceUp) throw new PcscError('SCardEstablishContext error: Service not available.(0x8010001d)', ScardCode.NO_SERVICE);
    const backend = new FakeBackend(events, this);
    this.instances.push(backend);
    // pcsclite lists readers on the next tick.
    queueMicrotask(() => backend.announce());
    return backend;
  };

  get current(): FakeBackend | undefined {
    const last = this.instances.at(-1);
    return last?.closed ? undefined : last;
  }

  plug(name: string): Hardware {
    const hw: Hardware = { name, exclusive: false, events: 0, connectFailures: [], transmitFailures: [], transmitDelayMs: 0, inFlight: 0, maxInFlight: 0, calls: [] };
    this.hardware.set(name, hw);
    const b = this.current;
    if (b !== undefined) {
      b.add(hw);
      b.events.listed([...this.hardware.keys()]);
    }
    return hw;
  }

  unplug(name: string): void {
    this.hardware.delete(name);
    const b = this.current;
    const reader = b?.readers.get(name);
    if (b !== undefined && reader !== undefined) {
      b.readers.delete(name);
      b.events.listed([...this.hardware.keys()]);
      b.events.readerRemoved(reader);
    }
  }

  insert(name: string, atr: Uint8Array = T1_ATR, protocol: CardProtocol = 'T=1'): void {
    const hw = this.hardware.get(name);
    if (hw === undefined) throw new Error(`no reader ${name}`);
    hw.card = { atr, protocol };
    hw.events++;
    this.report(hw);
  }

  eject(name: string): void {
    const hw = this.hardware.get(name);
    if (hw === undefined) throw new Error(`no reader ${name}`);
    delete hw.card;
    hw.events++;
    this.report(hw);
  }

  report(hw: Hardware): void {
    const b = this.current;
    const reader = b?.readers.get(hw.name);
    if (b !== undefined && reader !== undefined) b.events.status(reader, b.status(hw));
  }

  /** pcscd dies: the running backend's monitor fails. */
  crash(stayDown: boolean): void {
    this.serviceUp = !stayDown;
    this.current?.events.failed(new PcscError('SCardGetStatusChange error: Service was stopped.(0x8010001e)', ScardCode.SERVICE_STOPPED));
  }
}

function record(source: PcscSource): string[] {
  const log: string[] = [];
  source.on('reader-added', (n) => log.push(`+reader ${n}`));
  source.on('reader-removed', (n) => log.push(`-reader ${n}`));
  source.on('card-inserted', (n, atr) => log.push(`+card ${n} ${str(atr)}`));
  source.on('card-removed', (n) => log.push(`-card ${n}`));
  source.on('notice', (n) => log.push(`notice ${n.code}`));
  return log;
}

function started(pcsc: FakePcsc): PcscSource {
  const source = new PcscSource({ backend: pcsc.factory });
  return source;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('reader state', () => {
  it('masks pcsc-lite\'s event counter before reading the bits', () => {
    expect(readerStateFlags(0x10022).presence).toBe('present');
    expect(readerStateFlags(0xffff0012).presence).toBe('empty');
    expect(readerStateFlags(0x00030222).presence).toBe('mute');
    expect(readerStateFlags(0x000501a2)).toEqual({ presence: 'present', exclusive: true, inUse: true });
    expect(readerStateFlags(0x8).presence).toBe('unavailable');
  });
});

describe('reader patterns', () => {
  it('exact names and globs', () => {
    expect(readerPattern('Yubico YubiKey 00 00').matches('Yubico YubiKey 00 00')).toBe(true);
    expect(readerPattern('Yubico YubiKey 00 00').matches('Yubico YubiKey 00 01')).toBe(false);
    expect(readerPattern('Yubico*').matches('Yubico YubiKey OTP+FIDO+CCID 00 00')).toBe(true);
    expect(readerPattern('*CCID 00 0?').matches('Yubico YubiKey OTP+FIDO+CCID 00 01')).toBe(true);
    expect(readerPattern('*CCID 00 0?').matches('Yubico YubiKey OTP+FIDO+CCID 00 10')).toBe(false);
    expect(readerPattern('a.b (c)+').matches('a.b (c)+')).toBe(true);
    expect(readerPattern('a*', true).matches('abc')).toBe(false);
    expect(() => readerPattern('  ')).toThrow(RangeError);
  });
});

describe('PcscSource: hotplug', () => {
  it('follows readers and cards appearing and going', async () => {
    const pcsc = new FakePcsc();
    const source = started(pcsc);
    const log = record(source);
    source.start();
    await source.ready();
    expect(source.readers()).toEqual([]);
    pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    expect(source.readers()[0]).toMatchObject({ name: 'Reader A', presence: 'present' });
    pcsc.eject('Reader A');
    pcsc.insert('Reader A', T0_ATR, 'T=0');
    pcsc.unplug('Reader A');
    expect(log).toEqual([
      '+reader Reader A',
      `+card Reader A ${str(T1_ATR)}`,
      '-card Reader A',
      `+card Reader A ${str(T0_ATR)}`,
      '-card Reader A',
      '-reader Reader A',
    ]);
    source.close();
  });

  it('reports readers present at start, and is ready once each has its first status', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    pcsc.plug('Reader B');
    pcsc.insert('Reader B');
    const source = started(pcsc);
    const log = record(source);
    source.start();
    await source.ready();
    expect(source.readers().map((r) => [r.name, r.presence])).toEqual([
      ['Reader A', 'empty'],
      ['Reader B', 'present'],
    ]);
    expect(log).toEqual(['+reader Reader A', '+reader Reader B', `+card Reader B ${str(T1_ATR)}`]);
    source.close();
  });

  it('sees a card swapped between two polls through the event counter', async () => {
    const pcsc = new FakePcsc();
    const hw = pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    const source = started(pcsc);
    source.start();
    await source.ready();
    const log = record(source);
    hw.events += 2;
    pcsc.report(hw);
    expect(log).toEqual(['-card Reader A', `+card Reader A ${str(T1_ATR)}`]);
    source.close();
  });

  it('drops a reader missing from a new listing even without its own removal event', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    const source = started(pcsc);
    source.start();
    await source.ready();
    const log = record(source);
    pcsc.hardware.delete('Reader A');
    pcsc.current?.events.listed([]);
    expect(log).toEqual(['-reader Reader A']);
    source.close();
  });
});

describe('PcscSource: the PC/SC service', () => {
  it('absent at start: says so once with what to do, retries with a capped backoff, recovers by itself', async () => {
    vi.useFakeTimers();
    const pcsc = new FakePcsc();
    pcsc.serviceUp = false;
    pcsc.plug('Reader A');
    const source = started(pcsc);
    const notices: PcscNotice[] = [];
    source.on('notice', (n) => notices.push(n));
    const log = record(source);
    source.start();
    await source.ready();
    expect(source.serviceAvailable).toBe(false);
    expect(notices).toHaveLength(1);
    expect(notices[0]?.code).toBe('service-down');
    expect(notices[0]?.message).toMatch(/the PC\/SC service \(pcscd\) is not running: start it with `systemctl start pcscd`/);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(notices).toHaveLength(1);
    const gaps = pcsc.attempts.slice(1).map((t, i) => t - (pcsc.attempts[i] ?? 0));
    expect(gaps.slice(0, 7)).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
    pcsc.serviceUp = true;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(source.serviceAvailable).toBe(true);
    expect(notices.map((n) => n.code)).toEqual(['service-down', 'service-up']);
    expect(log.filter((l) => !l.startsWith('notice'))).toEqual(['+reader Reader A']);
    source.close();
  });

  it('restarted pcscd (monitor error, service back at once): readers go and come back, one notice', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    const source = started(pcsc);
    source.start();
    await source.ready();
    const log = record(source);
    const first = pcsc.current;
    pcsc.crash(false);
    await tick();
    expect(first?.closed).toBe(true);
    expect(pcsc.instances).toHaveLength(2);
    expect(log).toEqual(['-card Reader A', '-reader Reader A', 'notice service-restarted', '+reader Reader A', `+card Reader A ${str(T1_ATR)}`]);
    // The dead instance is not listened to any more.
    first?.events.readerRemoved(new FakeReader(pcsc.hardware.get('Reader A') as Hardware));
    expect(source.readers()).toHaveLength(1);
    source.close();
  });

  it('pcscd gone for a while: one "down", one "back", and the backend is recreated', async () => {
    vi.useFakeTimers();
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    const source = started(pcsc);
    source.start();
    await source.ready();
    const log = record(source);
    pcsc.crash(true);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(log).toEqual(['-reader Reader A', 'notice service-down']);
    pcsc.serviceUp = true;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(log).toEqual(['-reader Reader A', 'notice service-down', 'notice service-up', '+reader Reader A']);
    source.close();
  });

  it('a native module that cannot load is reported once and not retried', async () => {
    vi.useFakeTimers();
    let attempts = 0;
    const source = new PcscSource({
      backend: () => {
        attempts++;
        throw new PcscError('the pcsclite native module could not be loaded', undefined, 'unavailable');
      },
    });
    const log = record(source);
    source.start();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(attempts).toBe(1);
    expect(log).toEqual(['notice pcsc-unavailable']);
    expect(source.unavailableReason).toMatch(/native module/);
    source.close();
  });
});

async function openCard(pcsc: FakePcsc, pattern: string): Promise<{ card: PcscReaderCard; log: string[]; source: PcscSource }> {
  const source = started(pcsc);
  const card = await openReaderCard(pattern, { source, sharingDelayMs: 1, sharingAttempts: 3 });
  const log: string[] = [];
  card.on('inserted', (atr) => log.push(`inserted ${str(atr)}`));
  card.on('removed', () => log.push('removed'));
  card.on('notice', (n) => log.push(`notice ${n.code}`));
  return { card, log, source };
}

describe('PcscReaderCard', () => {
  it('is forwarded whenever its reader appears and its card is inserted, as T=0', async () => {
    const pcsc = new FakePcsc();
    const { card, log, source } = await openCard(pcsc, 'Yubico*');
    expect(card.atr()).toBeUndefined();
    pcsc.plug('Other Reader');
    pcsc.insert('Other Reader');
    pcsc.plug('Yubico YubiKey 00 00');
    pcsc.insert('Yubico YubiKey 00 00');
    await tick();
    expect(card.name).toBe('Yubico YubiKey 00 00');
    expect(str(card.atr())).toBe(T1_GUEST_ATR);
    expect(card.protocol()).toBe('T=1');
    expect(str(await card.transmit(hex('00 b0 00 07 02')))).toBe('b0 07 90 00');
    pcsc.eject('Yubico YubiKey 00 00');
    await tick();
    expect(card.atr()).toBeUndefined();
    await expect(card.transmit(hex('00 b0 00 00 10'))).rejects.toThrow(/no card/);
    pcsc.unplug('Yubico YubiKey 00 00');
    pcsc.plug('Yubico YubiKey 00 00');
    pcsc.insert('Yubico YubiKey 00 00', T0_ATR, 'T=0');
    await tick();
    expect(str(card.atr())).toBe(str(T0_ATR));
    expect(log).toEqual([
      'notice reader-waiting',
      'notice reader-found',
      `inserted ${T1_GUEST_ATR}`,
      'removed',
      'notice reader-gone',
      'notice reader-found',
      `inserted ${str(T0_ATR)}`,
    ]);
    const hw = pcsc.hardware.get('Yubico YubiKey 00 00');
    expect(hw?.calls).toEqual(['connect shared']);
    await card.close();
    expect(hw?.calls).toEqual(['connect shared', 'disconnect leave']);
    source.close();
  });

  it('binds at once to a matching reader that already has a card', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    pcsc.plug('Reader B');
    pcsc.insert('Reader B');
    const { card, log, source } = await openCard(pcsc, 'Reader ?');
    expect(card.name).toBe('Reader B');
    expect(str(card.atr())).toBe(T1_GUEST_ATR);
    expect(log).toEqual(['notice reader-found']);
    await card.close();
    source.close();
  });

  it('serialises: one transmit at a time per card, answers in order', async () => {
    const pcsc = new FakePcsc();
    const hw = pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    hw.transmitDelayMs = 5;
    const { card, source } = await openCard(pcsc, 'Reader A');
    const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => card.transmit(Uint8Array.of(0, 0xb0, 0, i, 2))));
    expect(answers.map((a) => a[1])).toEqual([1, 2, 3, 4, 5]);
    expect(hw.maxInFlight).toBe(1);
    await card.close();
    source.close();
  });

  it('retries a sharing violation within the bound (connect and transmit)', async () => {
    const pcsc = new FakePcsc();
    const hw = pcsc.plug('Reader A');
    hw.connectFailures.push(scardError(ScardCode.SHARING_VIOLATION, 'SCardConnect'), scardError(ScardCode.SHARING_VIOLATION, 'SCardConnect'));
    pcsc.insert('Reader A');
    const { card, log, source } = await openCard(pcsc, 'Reader A');
    expect(str(card.atr())).toBe(T1_GUEST_ATR);
    hw.transmitFailures.push(scardError(ScardCode.SHARING_VIOLATION));
    expect(str(await card.transmit(hex('00 b0 00 01 02')))).toBe('b0 01 90 00');
    expect(log).toEqual(['notice reader-found']);
    hw.transmitFailures.push(...Array.from({ length: 3 }, () => scardError(ScardCode.SHARING_VIOLATION)));
    await expect(card.transmit(hex('00 b0 00 01 02'))).rejects.toMatchObject({ kind: 'sharing' });
    await card.close();
    source.close();
  });

  it('a card held exclusively elsewhere: says so once, forwards it when it is let go', async () => {
    const pcsc = new FakePcsc();
    const hw = pcsc.plug('Reader A');
    const { card, log, source } = await openCard(pcsc, 'Reader A');
    hw.exclusive = true;
    hw.connectFailures.push(...Array.from({ length: 3 }, () => scardError(ScardCode.SHARING_VIOLATION, 'SCardConnect')));
    pcsc.insert('Reader A');
    await new Promise((r) => setTimeout(r, 30));
    expect(card.atr()).toBeUndefined();
    expect(log).toEqual(['notice reader-found', 'notice card-busy']);
    hw.exclusive = false;
    pcsc.report(hw);
    await new Promise((r) => setTimeout(r, 30));
    expect(str(card.atr())).toBe(T1_GUEST_ATR);
    expect(log).toEqual(['notice reader-found', 'notice card-busy', `inserted ${T1_GUEST_ATR}`]);
    await card.close();
    source.close();
  });

  it('a reset by another application: reconnects, rejects the command, tells the user and the guest', async () => {
    const pcsc = new FakePcsc();
    const hw = pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    const { card, log, source } = await openCard(pcsc, 'Reader A');
    hw.transmitFailures.push(scardError(ScardCode.RESET_CARD));
    await expect(card.transmit(hex('00 b0 00 01 02'))).rejects.toMatchObject({ kind: 'reset' });
    expect(hw.calls.slice(-3)).toEqual(['transmit T=1 258 00 b0 00 01 02', 'disconnect leave', 'connect shared']);
    await tick();
    expect(log).toEqual(['notice reader-found', 'notice card-reset', `inserted ${T1_GUEST_ATR}`]);
    expect(str(await card.transmit(hex('00 b0 00 02 02')))).toBe('b0 02 90 00');
    await card.close();
    source.close();
  });

  it('an ATR that cannot be made T=0 is reported, not forwarded', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    const { card, log, source } = await openCard(pcsc, 'Reader A');
    pcsc.insert('Reader A', hex('3b f5 18'));
    await tick();
    expect(card.atr()).toBeUndefined();
    expect(log).toEqual(['notice reader-found', 'notice card-unsupported']);
    await card.close();
    source.close();
  });

  it('service down when opened: the card resolves, a late notice listener still hears why', async () => {
    vi.useFakeTimers();
    const pcsc = new FakePcsc();
    pcsc.serviceUp = false;
    const card = await openReaderCard('Reader A', { backend: pcsc.factory });
    const notices: string[] = [];
    card.on('notice', (n) => notices.push(n.code));
    expect(notices).toEqual(['service-down', 'reader-waiting']);
    pcsc.serviceUp = true;
    pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(notices).toEqual(['service-down', 'reader-waiting', 'service-up', 'reader-found']);
    expect(str(card.atr())).toBe(T1_GUEST_ATR);
    await card.close();
    expect(pcsc.current?.closed ?? true).toBe(true);
  });

  it('no events after close', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    pcsc.insert('Reader A');
    const { card, log, source } = await openCard(pcsc, 'Reader A');
    await card.close();
    pcsc.eject('Reader A');
    pcsc.insert('Reader A');
    await tick();
    expect(log).toEqual(['notice reader-found']);
    source.close();
  });
});

describe('firstReaderCard', () => {
  it('undefined without readers or without the service', async () => {
    const none = new FakePcsc();
    expect(await firstReaderCard({ backend: none.factory })).toBeUndefined();
    const down = new FakePcsc();
    down.serviceUp = false;
    down.plug('Reader A');
    expect(await firstReaderCard({ backend: down.factory })).toBeUndefined();
  });

  it('prefers a reader with a card in it', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    pcsc.plug('Reader *B*');
    pcsc.insert('Reader *B*');
    const card = await firstReaderCard({ backend: pcsc.factory });
    expect(card?.name).toBe('Reader *B*');
    expect(str(card?.atr())).toBe(T1_GUEST_ATR);
    await card?.close();
  });
});

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

describe('readers command (fake backend)', () => {
  it('lists readers as text and JSON', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    pcsc.plug('Reader B');
    pcsc.insert('Reader B');
    const out = new Capture();
    expect(await runReaders([], { out, err: new Capture(), backend: pcsc.factory })).toBe(0);
    expect(out.text).toBe(
      'Reader A\n  card:      none\nReader B\n  card:      present (T=1)\n' +
        `  ATR:       ${str(T1_ATR).toUpperCase()}\n  VM ATR:    ${T1_GUEST_ATR.toUpperCase()} (T=0)\n`,
    );
    const json = new Capture();
    expect(await runReaders(['--json'], { out: json, err: new Capture(), backend: pcsc.factory })).toBe(0);
    expect(JSON.parse(json.text)).toEqual({
      service: 'up',
      readers: [
        { name: 'Reader A', card: 'empty', atr: null, protocols: [], guestAtr: null, inUse: false, exclusive: false },
        {
          name: 'Reader B',
          card: 'present',
          atr: str(T1_ATR).replaceAll(' ', '').toUpperCase(),
          protocols: ['T=1'],
          guestAtr: T1_GUEST_ATR.replaceAll(' ', '').toUpperCase(),
          inUse: false,
          exclusive: false,
        },
      ],
    });
  });

  it('no readers; usage errors exit 2', async () => {
    const out = new Capture();
    expect(await runReaders([], { out, err: new Capture(), backend: new FakePcsc().factory })).toBe(0);
    expect(out.text).toBe('No PC/SC readers found.\n');
    const err = new Capture();
    expect(await runReaders(['--nope'], { out, err, backend: new FakePcsc().factory })).toBe(2);
    expect(err.text).toMatch(/Usage: spice-smartcard readers/);
  });

  it('exit 3 and what to do when the service is down', async () => {
    const pcsc = new FakePcsc();
    pcsc.serviceUp = false;
    const out = new Capture();
    const err = new Capture();
    expect(await runReaders(['--json'], { out, err, backend: pcsc.factory })).toBe(3);
    expect(err.text).toMatch(/the PC\/SC service \(pcscd\) is not running: start it with `systemctl start pcscd`/);
    expect(JSON.parse(out.text)).toMatchObject({ service: 'down', readers: [] });
  });

  it('--watch --json: one object per change, until stopped', async () => {
    const pcsc = new FakePcsc();
    pcsc.plug('Reader A');
    const out = new Capture();
    const stop = new AbortController();
    const run = runReaders(['--watch', '--json'], { out, err: new Capture(), backend: pcsc.factory, signal: stop.signal });
    await tick();
    pcsc.insert('Reader A');
    pcsc.eject('Reader A');
    pcsc.crash(false);
    await tick();
    stop.abort();
    expect(await run).toBe(0);
    const events = out.text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { event: string; reader?: string; atr?: string; guestAtr?: string });
    expect(events.map((e) => `${e.event} ${e.reader ?? ''}`.trim())).toEqual([
      'reader-added Reader A',
      'card-inserted Reader A',
      'card-removed Reader A',
      'reader-removed Reader A',
      'service-restarted',
      'reader-added Reader A',
    ]);
    expect(events[1]?.guestAtr).toBe(T1_GUEST_ATR.replaceAll(' ', '').toUpperCase());
  });
});
