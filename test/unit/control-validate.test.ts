import { decode, encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { REQUEST_TYPES, type RequestType } from '../../src/control/schema.js';
import { validateClientMessage } from '../../src/control/validate.js';
import { VALID_PARAMS } from '../helpers/control-fixtures.js';

const request = (type: string, params: unknown, id: unknown = 7): Record<string, unknown> => ({ kind: 'request', id, type, params });

function expectBad(value: unknown, message: string | RegExp, id?: number): void {
  const result = validateClientMessage(value);
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.error.code).toBe('bad-request');
  if (typeof message === 'string') expect(result.error.message).toBe(message);
  else expect(result.error.message).toMatch(message);
  expect(result.id).toBe(id);
}

/** Each entry: a request type, a change to its valid params, and the error it must produce. */
const WRONG: Array<[RequestType, Record<string, unknown>, string]> = [
  ['status.get', { extra: 1 }, 'params.extra: is not a known field'],
  ['session.add', { spec: undefined }, 'params.spec: is required'],
  ['session.add', { spec: 'lab-vm' }, 'params.spec: must be a map'],
  ['session.add', { spec: [1, 2] }, 'params.spec: must be a map'],
  ['session.add', { spec: new Uint8Array(2) }, 'params.spec: must be a map'],
  ['session.add', { password: 123 }, 'params.password: must be a string'],
  ['session.add', { vv: new Uint8Array(3) }, 'params.vv: must be a string'],
  ['session.remove', { name: undefined }, 'params.name: is required'],
  ['session.remove', { name: 5 }, 'params.name: must be a string'],
  ['session.remove', { name: null }, 'params.name: must be a string'],
  ['session.start', { name: true }, 'params.name: must be a string'],
  ['session.stop', { name: {} }, 'params.name: must be a string'],
  ['session.password', { password: undefined }, 'params.password: is required'],
  ['session.password', { password: new Uint8Array(1) }, 'params.password: must be a string'],
  ['session.card', { card: { kind: 'usb' } }, 'params.card.kind: must be one of "demo", "soft", "reader", "replay", "none"'],
  ['session.card', { card: { kind: 'soft' } }, 'params.card.path: is required'],
  ['session.card', { card: { kind: 'reader', reader: 1 } }, 'params.card.reader: must be a string'],
  ['session.card', { card: { kind: 'demo', path: '/x' } }, 'params.card.path: is not a known field'],
  ['session.card', { card: 'demo' }, 'params.card: must be a map'],
  ['session.insert', { present: 'yes' }, 'params.present: must be a boolean'],
  ['session.insert', { present: 1 }, 'params.present: must be a boolean'],
  ['readers.list', { all: true }, 'params.all: is not a known field'],
  ['softcard.show', { path: undefined }, 'params.path: is required'],
  ['softcard.create', { key: 'rsa1024' }, 'params.key: must be one of "rsa2048", "p256", "p384"'],
  ['softcard.create', { slots: '9a' }, 'params.slots: must be an array'],
  ['softcard.create', { slots: ['9a', '9b'] }, 'params.slots[1]: must be one of "9a", "9c", "9d", "9e"'],
  ['softcard.create', { slots: ['9a', '9c', '9d', '9e', '9a'] }, 'params.slots: must have at most 4 entries'],
  ['softcard.create', { days: 1.5 }, 'params.days: must be an integer from 1 to 36500'],
  ['softcard.create', { days: 0 }, 'params.days: must be an integer from 1 to 36500'],
  ['softcard.create', { days: '365' }, 'params.days: must be an integer from 1 to 36500'],
  ['softcard.create', { subject: undefined }, 'params.subject: is required'],
  ['softcard.create', { pin: 123456 }, 'params.pin: must be a string'],
  ['softcard.import', { p12: 'base64' }, 'params.p12: must be binary (msgpack bin, a Uint8Array)'],
  ['softcard.import', { p12: [1, 2, 3] }, 'params.p12: must be binary (msgpack bin, a Uint8Array)'],
  ['softcard.import', { slot: '9b' }, 'params.slot: must be one of "9a", "9c", "9d", "9e"'],
  ['softcard.import', { p12Password: undefined }, 'params.p12Password: is required'],
  ['log.tail', { lines: -1 }, 'params.lines: must be an integer from 0 to 9007199254740991'],
  ['log.tail', { lines: Number.NaN }, 'params.lines: must be an integer from 0 to 9007199254740991'],
];

describe('validateClientMessage', () => {
  it.each(REQUEST_TYPES.map((t) => [t]))('accepts valid %s params, after a msgpack round trip', (type) => {
    const wire = decode(encode(request(type, VALID_PARAMS[type]), { ignoreUndefined: true }));
    const result = validateClientMessage(wire);
    expect(result).toEqual({ ok: true, message: { kind: 'request', id: 7, type, params: VALID_PARAMS[type] } });
  });

  it('has a wrong-field case for every request type', () => {
    expect(new Set(WRONG.map(([type]) => type))).toEqual(new Set(REQUEST_TYPES));
  });

  it.each(WRONG)('%s with %o: %s', (type, change, message) => {
    const params: Record<string, unknown> = { ...VALID_PARAMS[type], ...change };
    for (const [key, value] of Object.entries(change)) if (value === undefined) delete params[key];
    expectBad(request(type, params), message, 7);
  });

  it('treats nil optional fields as absent and leaves them out of the params', () => {
    const result = validateClientMessage(request('softcard.create', { ...VALID_PARAMS['softcard.create'], days: null, pin: null }));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.message.params).not.toHaveProperty('days');
    expect(validateClientMessage({ kind: 'request', id: 1, type: 'status.get' }).ok).toBe(true);
  });

  it('checks the envelope and returns the id when it can be read', () => {
    expectBad(null, 'message: must be a map with kind, id, type and params');
    expectBad([1, 2], 'message: must be a map with kind, id, type and params');
    expectBad(new Uint8Array(4), 'message: must be a map with kind, id, type and params');
    expectBad(request('status.get', {}, 'one'), 'id: must be an integer from 0 to 9007199254740991');
    expectBad(request('status.get', {}, -1), 'id: must be an integer from 0 to 9007199254740991');
    expectBad(request('status.get', {}, 2 ** 60), 'id: must be an integer from 0 to 9007199254740991');
    expectBad({ ...request('status.get', {}), kind: 'result' }, 'kind: must be "request"', 7);
    expectBad({ ...request('status.get', {}), extra: true }, 'extra: is not a known field', 7);
    expectBad(request('session.explode', {}), /^type: must be a known request type \(status\.get, /, 7);
    expectBad(request('toString', {}), /^type: must be a known request type/, 7);
    expectBad(request('status.get', 'x'), 'params: must be a map', 7);
    expectBad(request('status.get', [1]), 'params: must be a map', 7);
  });

  it('names the field in the error path', () => {
    const result = validateClientMessage(request('session.card', { name: 'a', card: { kind: 'soft', path: 3 } }));
    expect(result).toMatchObject({ ok: false, id: 7, error: { code: 'bad-request', path: 'params.card.path' } });
  });

  it('refuses objects that are not plain maps (a msgpack timestamp decodes to a Date)', () => {
    const wire = decode(encode(request('session.remove', { name: new Date(0) })));
    expectBad(wire, 'params.name: must be a string', 7);
    expectBad(request('session.add', { spec: new Date(0) }), 'params.spec: must be a map', 7);
  });

  it('never throws on random msgpack values, and answers bad-request to everything that is not a request', () => {
    let seed = 0x5eed;
    const rand = (n: number): number => {
      // xorshift32: reproducible without a dependency.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const keys = ['kind', 'id', 'type', 'params', 'name', 'spec', 'card', 'p12', 'slots', '__proto__x', 'constructor'];
    const atoms = (): unknown => {
      switch (rand(9)) {
        case 0:
          return null;
        case 1:
          return rand(2) === 0;
        case 2:
          return rand(1000) - 500;
        case 3:
          return rand(1000) / 7;
        case 4:
          return REQUEST_TYPES[rand(REQUEST_TYPES.length)];
        case 5:
          return 'request';
        case 6:
          return new Uint8Array(rand(8));
        case 7:
          return new Date(rand(1e6));
        default:
          return 'x'.repeat(rand(5));
      }
    };
    const value = (depth: number): unknown => {
      const pick = depth > 3 ? 0 : rand(3);
      if (pick === 0) return atoms();
      if (pick === 1) return Array.from({ length: rand(4) }, () => value(depth + 1));
      const obj: Record<string, unknown> = {};
      for (let i = rand(5); i > 0; i--) obj[keys[rand(keys.length)] ?? 'k'] = value(depth + 1);
      return obj;
    };
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const wire = decode(encode(value(0)));
      const result = validateClientMessage(wire);
      if (result.ok) {
        accepted++;
        expect(REQUEST_TYPES).toContain(result.message.type);
        continue;
      }
      expect(result.error.code).toBe('bad-request');
      expect(result.error.message).toMatch(/^[\w.[\]]+: /);
    }
    expect(accepted).toBeLessThan(20_000);
    // Random bytes: whatever decodes must not make the validator throw.
    for (let i = 0; i < 20_000; i++) {
      const bytes = Uint8Array.from({ length: 1 + rand(24) }, () => rand(256));
      let wire: unknown;
      try {
        wire = decode(bytes);
      } catch {
        continue;
      }
      const result = validateClientMessage(wire);
      if (!result.ok) expect(result.error.code).toBe('bad-request');
    }
  });
});
