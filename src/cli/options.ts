// Options shared by the commands, and strict argument parsing.
import { parseArgs, type ParseArgsConfig } from 'node:util';

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
