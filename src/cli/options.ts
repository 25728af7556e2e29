// Options shared by the commands, and strict argument parsing.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolveConnection, type ConnectionSpec } from '../connection-spec.js';
import { UsageError } from './exit-codes.js';

export const CONNECTION_OPTIONS = {
  'password-file': { type: 'string' },
  'ca-file': { type: 'string' },
  'host-subject': { type: 'string' },
  timeout: { type: 'string' },
  verbose: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T): ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>> {
  return parseArgs({ args, options, allowPositionals: true, strict: true });
}

export function parseTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600) throw new UsageError(`--timeout takes a number of seconds between 0 and 3600, not "${text}".`);
  return Math.round(seconds * 1000);
}

export interface ConnectionOptionValues {
  'password-file'?: string | undefined;
  'ca-file'?: string | undefined;
  'host-subject'?: string | undefined;
  timeout?: string | undefined;
}

/** The connection a command was pointed at, from its target argument and connection options. */
export function connectionFromOptions(target: string, values: ConnectionOptionValues): Promise<ConnectionSpec> {
  const connectTimeoutMs = parseTimeout(values.timeout);
  return resolveConnection({
    target,
    env: process.env,
    ...(values['password-file'] !== undefined ? { passwordFile: values['password-file'] } : {}),
    ...(values['ca-file'] !== undefined ? { caFile: values['ca-file'] } : {}),
    ...(values['host-subject'] !== undefined ? { hostSubject: values['host-subject'] } : {}),
    ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
  });
}
