// Runtime checks that a decoded msgpack value is a ClientMessage of the schema. The server runs them
// before anything reaches the service, so a service can rely on the shape (not the content) of params.
// No imports beyond the schema: clients in a browser may use it too.
import { REQUEST_TYPES, type ClientMessage, type ControlErrorBody, type RequestType } from './schema.js';

/** Returns an error message without the path ("must be a string"), or undefined when the value fits. */
type Check = (value: unknown, path: string) => FieldError | undefined;

export interface FieldError {
  path: string;
  message: string;
}

export type ValidationResult =
  | { ok: true; message: ClientMessage }
  /** `id` is set when the envelope's id could be read, so the error can be answered instead of closing. */
  | { ok: false; id?: number; error: ControlErrorBody };

const fail = (path: string, message: string): FieldError => ({ path, message });

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const string: Check = (v, p) => (typeof v === 'string' ? undefined : fail(p, 'must be a string'));
const boolean: Check = (v, p) => (typeof v === 'boolean' ? undefined : fail(p, 'must be a boolean'));
const bytes: Check = (v, p) => (v instanceof Uint8Array ? undefined : fail(p, 'must be binary (msgpack bin, a Uint8Array)'));
const object: Check = (v, p) => (isPlainObject(v) ? undefined : fail(p, 'must be a map'));

function integer(min: number, max: number = Number.MAX_SAFE_INTEGER): Check {
  return (v, p) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : fail(p, `must be an integer from ${min} to ${max}`));
}

function oneOf(values: readonly string[]): Check {
  return (v, p) => (typeof v === 'string' && values.includes(v) ? undefined : fail(p, `must be one of ${values.map((x) => `"${x}"`).join(', ')}`));
}

function arrayOf(item: Check, maxItems: number): Check {
  return (v, p) => {
    if (!Array.isArray(v)) return fail(p, 'must be an array');
    if (v.length > maxItems) return fail(p, `must have at most ${maxItems} entries`);
    for (let i = 0; i < v.length; i++) {
      const error = item(v[i], `${p}[${i}]`);
      if (error) return error;
    }
    return undefined;
  };
}

interface FieldSpec {
  check: Check;
  optional?: boolean;
}
type Shape = Record<string, FieldSpec>;

const req = (check: Check): FieldSpec => ({ check });
const opt = (check: Check): FieldSpec => ({ check, optional: true });

/** A map with exactly these fields: unknown fields are refused so a misspelt option does not pass unnoticed. */
function shape(fields: Shape): Check {
  return (v, p) => {
    if (!isPlainObject(v)) return fail(p, 'must be a map');
    for (const key of Object.keys(v)) {
      if (!Object.hasOwn(fields, key)) return fail(`${p}.${key}`, 'is not a known field');
    }
    for (const [key, spec] of Object.entries(fields)) {
      const value = v[key];
      if (value === undefined || !Object.hasOwn(v, key)) {
        if (spec.optional) continue;
        return fail(`${p}.${key}`, 'is required');
      }
      // msgpack has nil where JavaScript has undefined; an absent optional field may come as nil.
      if (value === null && spec.optional) continue;
      const error = spec.check(value, `${p}.${key}`);
      if (error) return error;
    }
    return undefined;
  };
}

const SLOTS = ['9a', '9c', '9d', '9e'] as const;

/** A card source's shape; whether the file or reader exists is the service's to judge. */
const cardSource: Check = (v, p) => {
  if (!isPlainObject(v)) return fail(p, 'must be a map');
  const kind = oneOf(['demo', 'soft', 'reader', 'replay', 'none'])(v['kind'], `${p}.kind`);
  if (kind) return kind;
  switch (v['kind']) {
    case 'soft':
    case 'replay':
      return shape({ kind: req(string), path: req(string) })(v, p);
    case 'reader':
      return shape({ kind: req(string), reader: req(string) })(v, p);
    default:
      return shape({ kind: req(string) })(v, p);
  }
};

/** Every request's params, one entry per request type. */
const PARAMS: { [T in RequestType]: Check } = {
  'status.get': shape({}),
  // The spec's content is checked by the bridge (validateSessionSpec), which names every bad field.
  'session.add': shape({ spec: req(object), password: opt(string), vv: opt(string) }),
  'session.remove': shape({ name: req(string) }),
  'session.start': shape({ name: req(string) }),
  'session.stop': shape({ name: req(string) }),
  'session.password': shape({ name: req(string), password: req(string) }),
  'session.card': shape({ name: req(string), card: req(cardSource) }),
  'session.insert': shape({ name: req(string), present: req(boolean) }),
  'readers.list': shape({}),
  'softcard.show': shape({ path: req(string) }),
  'softcard.create': shape({
    path: req(string),
    subject: req(string),
    key: req(oneOf(['rsa2048', 'p256', 'p384'])),
    slots: req(arrayOf(oneOf(SLOTS), SLOTS.length)),
    days: opt(integer(1, 36_500)),
    label: opt(string),
    pin: opt(string),
    puk: opt(string),
  }),
  'softcard.import': shape({
    path: req(string),
    slot: req(oneOf(SLOTS)),
    p12: req(bytes),
    p12Password: req(string),
    pin: opt(string),
    label: opt(string),
  }),
  'log.tail': shape({ lines: opt(integer(0)) }),
};

const ENVELOPE_KEYS = new Set(['kind', 'id', 'type', 'params']);

function badRequest(error: FieldError, id?: number): ValidationResult {
  return { ok: false, ...(id !== undefined ? { id } : {}), error: { code: 'bad-request', message: `${error.path}: ${error.message}`, path: error.path } };
}

/** Drops the nil values msgpack clients send for absent optional fields, so the service sees absent fields. */
function withoutNulls(params: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(params)) if (value !== null) out[key] = value;
  return out;
}

/** Checks any decoded value; never throws. */
export function validateClientMessage(value: unknown): ValidationResult {
  if (!isPlainObject(value)) return badRequest(fail('message', 'must be a map with kind, id, type and params'));
  const rawId = value['id'];
  const idError = integer(0)(rawId, 'id');
  if (idError) return badRequest(idError);
  const id = rawId as number;
  for (const key of Object.keys(value)) {
    if (!ENVELOPE_KEYS.has(key)) return badRequest(fail(key, 'is not a known field'), id);
  }
  if (value['kind'] !== 'request') return badRequest(fail('kind', 'must be "request"'), id);
  const type = value['type'];
  if (typeof type !== 'string' || !(REQUEST_TYPES as readonly string[]).includes(type)) {
    return badRequest(fail('type', `must be a known request type (${REQUEST_TYPES.join(', ')})`), id);
  }
  const params = value['params'] ?? {};
  const error = PARAMS[type as RequestType](params, 'params');
  if (error) return badRequest(error, id);
  const message = { kind: 'request', id, type, params: withoutNulls(params as Record<string, unknown>) } as ClientMessage;
  return { ok: true, message };
}
