// The web UI's files for the control server: the compiled renderer in dist/ui/ (built by
// `npm run build`). Found relative to this module, so it works from src/ (tests), dist/ and the
// desktop app's asar archive alike.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the built UI is, or undefined when `npm run build` has not built it. */
export function uiDirectory(start: string = dirname(fileURLToPath(import.meta.url))): string | undefined {
  let dir = start;
  // src/control → root is 2 up; dist/src/control → 3 up.
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'dist', 'ui');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

/** URL prefix → directory, for startControlServer's staticMounts; empty when the UI is not built. */
export function uiMounts(): Record<string, string> {
  const dir = uiDirectory();
  return dir === undefined ? {} : { '/': dir };
}
