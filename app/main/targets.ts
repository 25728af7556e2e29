// What the operating system hands the app to open: command-line arguments (first launch, a second
// launch, Linux/Windows file association), macOS open-file paths and open-url links. Pure: turns them
// into .vv paths and SPICE URIs, and says why anything else was ignored.
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type OpenTarget = { kind: 'vv'; path: string } | { kind: 'uri'; uri: string };

export interface ParsedTargets {
  targets: OpenTarget[];
  /** Arguments that were not a .vv file or SPICE link, with the reason (never echoing a whole URI: it may hold a password). */
  ignored: Array<{ argument: string; reason: string }>;
}

export const SPICE_SCHEMES = ['spice', 'spice+tls', 'spice+unix'] as const;
/** Longest argument looked at; a real path or URI is far shorter. */
const MAX_ARGUMENT = 8192;

/**
 * The user's arguments in an argv: after the executable when packaged, after the executable and the app
 * path when run as `electron .`. Chromium switches (`--foo`) and Squirrel's events are not targets.
 */
export function userArguments(argv: readonly string[], isPackaged: boolean): string[] {
  return argv.slice(isPackaged ? 1 : 2).filter((a) => !a.startsWith('-'));
}

export function parseTargets(argv: readonly string[], options: { isPackaged: boolean; cwd: string }): ParsedTargets {
  const parsed: ParsedTargets = { targets: [], ignored: [] };
  for (const argument of userArguments(argv, options.isPackaged)) {
    const one = parseTarget(argument, options.cwd);
    if ('reason' in one) parsed.ignored.push({ argument: shortForm(argument), reason: one.reason });
    else parsed.targets.push(one);
  }
  return parsed;
}

/** One argument, path or URL. */
export function parseTarget(argument: string, cwd: string): OpenTarget | { reason: string } {
  const text = argument.trim();
  if (text === '') return { reason: 'empty argument' };
  if (text.length > MAX_ARGUMENT || /[\0\r\n]/.test(text)) return { reason: 'not a path or link' };
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1]?.toLowerCase();
  // A Windows drive letter ("C:\...") looks like a one-letter scheme.
  if (scheme !== undefined && scheme.length > 1) {
    if ((SPICE_SCHEMES as readonly string[]).includes(scheme)) {
      if (!text.slice(scheme.length + 1).startsWith('//')) return { reason: `a ${scheme}: link needs //HOST after the scheme` };
      return { kind: 'uri', uri: text };
    }
    if (scheme === 'file') {
      let path: string;
      try {
        path = fileURLToPath(text);
      } catch {
        return { reason: 'a file: URL that names no local file' };
      }
      return vvPath(path, cwd);
    }
    return { reason: `${scheme}: links are not SPICE links (spice://, spice+tls://, spice+unix://)` };
  }
  return vvPath(text, cwd);
}

function vvPath(path: string, cwd: string): OpenTarget | { reason: string } {
  if (!/\.vv$/i.test(path)) return { reason: 'not a .vv file' };
  return { kind: 'vv', path: isAbsolute(path) ? path : resolve(cwd, path) };
}

/** Enough of an argument to recognise it in a notice, without a query string or user info. */
export function shortForm(argument: string): string {
  const cut = argument.replace(/\/\/[^/@]*@/, '//').replace(/[?#].*$/s, '');
  return cut.length > 80 ? `${cut.slice(0, 77)}...` : cut;
}
