// The control API's soft-card requests (softcard.show/create/import): the same code as
// `spice-smartcard card show/create/import`, with secrets from the request params only, never logged.
// Relative paths live under the bridge's card directory and cannot climb out of it.
import { mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { RequestParams, SoftCardInfo } from '../control/schema.js';
import { ControlError } from '../control/service.js';
import { UsageError } from '../cli/exit-codes.js';
import { cardSummary, createSoftCardFile, exists, importIntoSoftCard } from '../card-command.js';
import { DEFAULT_PIN, DEFAULT_PUK } from '../../vsc/soft-card/card-builder.js';
import { CardFileError, type CardDocument } from '../../vsc/soft-card/card-file.js';
import { readCardFile } from '../../vsc/soft-card/card-store.js';
import { KeyImportError, readPkcs12 } from '../../vsc/soft-card/key-import.js';

/** `$XDG_DATA_HOME/spice-smartcard/cards`, or `~/.local/share/spice-smartcard/cards`. */
export function defaultCardDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const data = env['XDG_DATA_HOME'] !== undefined && env['XDG_DATA_HOME'] !== '' ? env['XDG_DATA_HOME'] : join(homedir(), '.local', 'share');
  return join(data, 'spice-smartcard', 'cards');
}

/** An absolute path as given; a relative one under `directory`, refused if it would leave it. */
export function resolveCardPath(path: string, directory: string, field: string): string {
  if (path.trim() === '' || path.includes('\0')) throw new ControlError('invalid-params', 'The card path is empty: give a file name such as "alice.card".', field);
  if (isAbsolute(path)) return path;
  const base = resolve(directory);
  const full = resolve(base, path);
  const inside = relative(base, full);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
    throw new ControlError('invalid-params', `The card path "${path}" leaves the card directory; give a name inside it, or an absolute path.`, field);
  }
  return full;
}

/** A soft card file holds a few keys and certificates: kilobytes. */
export const MAX_CARD_FILE_BYTES = 4 * 1024 * 1024;

/**
 * Refuses what is not a regular file of sensible size before anything reads it whole: a FIFO would
 * hold the request forever, a device such as /dev/zero would fill the bridge's memory and take every
 * session down with it. A missing file passes: the reader reports that with its own words.
 */
export async function checkRegularFile(path: string, maxBytes: number, what: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch {
    return;
  }
  if (!info.isFile()) throw new ControlError('failed', `${path} is not a regular file, so it cannot be ${what}.`, 'path');
  if (info.size > maxBytes) throw new ControlError('failed', `${path} is ${info.size} bytes, more than ${what} ever is (${maxBytes}); is it the right file?`, 'path');
}

export function softCardInfo(path: string, document: CardDocument): SoftCardInfo {
  const summary = cardSummary(path, document);
  return {
    path,
    label: summary.label ?? '',
    slots: summary.slots.map((s) => ({ slot: s.slot, algorithm: s.algorithm, subject: s.subject, notAfter: s.notAfter })),
    pinTriesLeft: summary.pin.triesLeft,
    pukTriesLeft: summary.puk.triesLeft,
  };
}

/** Turns what the card code throws into a control error whose message holds no secret. */
function asControlError(error: unknown, path: string): ControlError {
  if (error instanceof ControlError) return error;
  const cause = error instanceof Error ? error.cause : undefined;
  const code = (error as NodeJS.ErrnoException).code ?? (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new ControlError('not-found', `No card file at ${path}.`, 'path');
  if (code === 'EACCES' || code === 'EPERM') return new ControlError('failed', `No permission to use ${path}.`, 'path');
  if (error instanceof UsageError || error instanceof CardFileError || error instanceof KeyImportError || error instanceof RangeError) {
    return new ControlError('failed', `${error.message}.`.replace(/\.\.$/, '.'));
  }
  return new ControlError('internal', `The card operation failed: ${error instanceof Error ? error.message : String(error)}.`);
}

export class SoftCardService {
  constructor(
    readonly directory: string,
    private readonly warn: (text: string) => void,
  ) {}

  resolve(path: string, field = 'path'): string {
    return resolveCardPath(path, this.directory, field);
  }

  async show(params: RequestParams<'softcard.show'>): Promise<SoftCardInfo> {
    const path = this.resolve(params.path);
    await checkRegularFile(path, MAX_CARD_FILE_BYTES, 'a soft card file');
    try {
      return softCardInfo(path, await readCardFile(path));
    } catch (e) {
      throw asControlError(e, path);
    }
  }

  async create(params: RequestParams<'softcard.create'>): Promise<SoftCardInfo> {
    const path = this.resolve(params.path);
    const days = params.days ?? 365;
    if (!Number.isInteger(days) || days < 1 || days > 36_500) throw new ControlError('invalid-params', 'days must be a whole number from 1 to 36500.', 'days');
    if (params.slots.length === 0) throw new ControlError('invalid-params', 'Name at least one slot (9a, 9c, 9d or 9e).', 'slots');
    if (await exists(path)) throw new ControlError('conflict', `${path} exists; remove it first or choose another name (creating would lose its keys).`, 'path');
    this.defaultsWarning(params.pin, params.puk, path);
    try {
      await this.ensureDirectory(path);
      const document = await createSoftCardFile({
        path,
        subject: params.subject,
        algorithm: params.key,
        slots: [...new Set(params.slots)],
        days,
        pin: params.pin ?? DEFAULT_PIN,
        puk: params.puk ?? DEFAULT_PUK,
        ...(params.label !== undefined ? { label: params.label } : {}),
      });
      return softCardInfo(path, document);
    } catch (e) {
      throw asControlError(e, path);
    }
  }

  async import(params: RequestParams<'softcard.import'>): Promise<SoftCardInfo> {
    const path = this.resolve(params.path);
    await checkRegularFile(path, MAX_CARD_FILE_BYTES, 'a soft card file');
    try {
      const identity = readPkcs12(params.p12, params.p12Password);
      await this.ensureDirectory(path);
      const result = await importIntoSoftCard({
        path,
        slot: params.slot,
        identity,
        pinOfExisting: () => {
          if (params.pin === undefined) return Promise.reject(new ControlError('invalid-params', `The PIN of ${path} is needed to seal the new key: give pin.`, 'pin'));
          return Promise.resolve(params.pin);
        },
        newSecrets: () => {
          this.defaultsWarning(params.pin, undefined, path);
          return Promise.resolve({ pin: params.pin ?? DEFAULT_PIN, puk: DEFAULT_PUK });
        },
        ...(params.label !== undefined ? { label: params.label } : {}),
      });
      return softCardInfo(path, result.document);
    } catch (e) {
      throw asControlError(e, path);
    }
  }

  private defaultsWarning(pin: string | undefined, puk: string | undefined, path: string): void {
    const defaults = [pin === undefined ? 'PIN' : undefined, puk === undefined ? 'PUK' : undefined].filter((x) => x !== undefined);
    if (defaults.length > 0) this.warn(`${path} uses the default ${defaults.join(' and ')}; change it in the guest (pkcs11-tool --change-pin).`);
  }

  private async ensureDirectory(path: string): Promise<void> {
    if (relative(resolve(this.directory), path).startsWith('..')) return;
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    await mkdir(resolve(path, '..'), { recursive: true, mode: 0o700 });
  }
}
