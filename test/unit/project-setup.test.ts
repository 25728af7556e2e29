// The README promises one apt-get line; CI installs .ci/apt-packages.txt. They must not drift apart.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const read = (p: string): string => readFileSync(new URL(p, root), 'utf8');

describe('project setup', () => {
  it('README names exactly the system packages CI installs', () => {
    const line = read('README.md').split('\n').find((l) => l.includes('apt-get install'));
    expect(line).toBeDefined();
    const fromReadme = line!.replace(/.*apt-get install\s+(-y\s+)?(--no-install-recommends\s+)?/, '').trim().split(/\s+/).sort();
    const fromCi = read('.ci/apt-packages.txt').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).sort();
    expect(fromReadme).toEqual(fromCi);
  });

  it('pins every npm dependency to an exact version', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
    for (const [name, version] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
      expect(version, name).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });
});
