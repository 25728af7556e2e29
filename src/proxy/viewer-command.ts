// The viewer command line of `open --viewer CMD`: split like a shell would for the simple cases
// (spaces, single and double quotes, backslash), never run through a shell.
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export class ViewerCommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ViewerCommandError';
  }
}

export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
      continue;
    }
    if (c === '\\' && i + 1 < text.length && (quote === undefined || /["\\$`]/.test(text[i + 1]!))) {
      word += text[++i]!;
      inWord = true;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = undefined;
      else word += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
      continue;
    }
    if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    word += c;
    inWord = true;
  }
  if (quote !== undefined) throw new ViewerCommandError(`the viewer command has an unclosed ${quote} quote`);
  if (inWord) words.push(word);
  if (words.length === 0) throw new ViewerCommandError('the viewer command is empty');
  return words;
}

/** Full path of an executable: a path as given, or the first match on PATH. */
export function findExecutable(name: string, pathVariable: string): string | undefined {
  const candidates = name.includes('/') ? [name] : pathVariable.split(delimiter).filter((d) => d !== '').map((d) => join(d, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** What to tell a user whose viewer is not installed. */
export function missingViewerMessage(name: string): string {
  if (name === 'remote-viewer' || name === 'virt-viewer') {
    return `No SPICE viewer found: "${name}" is not installed. Install virt-viewer (Debian/Ubuntu: apt-get install virt-viewer; Fedora: dnf install virt-viewer), or name another viewer with --viewer CMD.`;
  }
  return `The viewer "${name}" was not found${name.includes('/') ? ' or is not executable' : ' on PATH'}. Check --viewer, or install virt-viewer (Debian/Ubuntu: apt-get install virt-viewer) for remote-viewer.`;
}
