import { describe, expect, it } from 'vitest';
import { Backoff, BACKOFF_DEFAULTS } from '../../src/serve/backoff.js';

describe('Backoff', () => {
  it('doubles from the initial delay up to the cap, without jitter', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(b.attempt).toBe(6);
  });

  it('takes off at most the jitter fraction, as the injected random says', () => {
    const values = [0, 0.5, 0.999999];
    const b = new Backoff({ initialMs: 1_000, maxMs: 10_000, jitter: 0.2, random: () => values.shift() ?? 0 });
    expect(b.next()).toBe(1_000);
    expect(b.next()).toBe(1_800);
    expect(b.next()).toBe(3_200);
  });

  it('has the documented defaults: 1 s, doubling to 60 s, 20 % jitter', () => {
    const b = new Backoff({ random: () => 0 });
    const delays = Array.from({ length: 9 }, () => b.next());
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    expect(BACKOFF_DEFAULTS).toEqual({ initialMs: 1_000, maxMs: 60_000, jitter: 0.2, resetAfterMs: 30_000 });
    const worst = new Backoff({ random: () => 0.9999999 });
    expect(worst.next()).toBe(800);
  });

  it('starts over after a link that held for resetAfterMs, not after a short one', () => {
    let now = 0;
    const b = new Backoff({ initialMs: 100, maxMs: 10_000, jitter: 0, resetAfterMs: 5_000, now: () => now });
    b.next();
    b.next();
    b.up();
    now += 4_999;
    b.down();
    expect(b.next()).toBe(400);
    b.up();
    now += 5_000;
    b.down();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(100);
  });

  it('down() without up() changes nothing; reset() starts over', () => {
    const b = new Backoff({ initialMs: 50, jitter: 0 });
    b.next();
    b.down();
    expect(b.next()).toBe(100);
    b.reset();
    expect(b.next()).toBe(50);
  });

  it('keeps nonsense options sane: max below initial, non-positive values, jitter out of range', () => {
    expect(new Backoff({ initialMs: 500, maxMs: 100, jitter: 0 }).next()).toBe(500);
    expect(new Backoff({ initialMs: -1, jitter: 0 }).next()).toBe(1_000);
    expect(new Backoff({ initialMs: Number.NaN, jitter: 0 }).next()).toBe(1_000);
    expect(new Backoff({ initialMs: 100, jitter: 5, random: () => 0.5 }).next()).toBe(50);
    expect(new Backoff({ initialMs: 100, jitter: -1, random: () => 0.5 }).next()).toBe(100);
  });

  it('stays finite after very many failures', () => {
    const b = new Backoff({ initialMs: 1, maxMs: 7_000, jitter: 0 });
    let last = 0;
    for (let i = 0; i < 2_000; i++) last = b.next();
    expect(last).toBe(7_000);
  });
});
