// Finishes the web UI in dist/ui/ after tsc compiled the renderer there: copies the HTML and CSS, copies
// @msgpack/msgpack's ES module build to vendor/, and points the compiled modules' bare
// "@msgpack/msgpack" import at it. The control server's CSP allows no inline script, so an import map
// is not an option; no bundler is needed for one package.
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const STATIC_FILES = ['index.html', 'styles.css'];
const VENDOR: Record<string, { from: string; entry: string }> = {
  '@msgpack/msgpack': { from: 'node_modules/@msgpack/msgpack/dist.esm', entry: 'vendor/msgpack/index.mjs' },
};
/** Static import/export statements as tsc emits them: one per line, at its start. */
const IMPORT = /^(\s*(?:import|export)\b[^'"\n]*?\bfrom\s*|\s*import\s*)(['"])([^'"\n]+)\2/gm;

export function rewriteImports(source: string, fromFile: string, uiRoot: string): { text: string; bare: string[] } {
  const bare: string[] = [];
  const text = source.replace(IMPORT, (whole, lead: string, quote: string, specifier: string) => {
    if (specifier.startsWith('.') || specifier.startsWith('/')) return whole;
    const vendor = VENDOR[specifier];
    if (vendor === undefined) {
      bare.push(specifier);
      return whole;
    }
    let path = relative(dirname(fromFile), join(uiRoot, vendor.entry)).split(sep).join('/');
    if (!path.startsWith('.')) path = `./${path}`;
    return `${lead}${quote}${path}${quote}`;
  });
  return { text, bare };
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'vendor' ? [] : jsFiles(path);
    return name.endsWith('.js') ? [path] : [];
  });
}

export function buildUi(projectRoot: string): void {
  const uiRoot = join(projectRoot, 'dist', 'ui');
  for (const name of STATIC_FILES) copyFileSync(join(projectRoot, 'app', 'renderer', name), join(uiRoot, name));
  copyFileSync(join(projectRoot, 'app', 'assets', 'icon.png'), join(uiRoot, 'favicon.png'));
  for (const vendor of Object.values(VENDOR)) {
    const target = join(uiRoot, dirname(vendor.entry));
    mkdirSync(target, { recursive: true });
    // Only the modules: the package's .d.ts and source maps are of no use to a browser.
    cpSync(join(projectRoot, vendor.from), target, { recursive: true, filter: (source) => statSync(source).isDirectory() || source.endsWith('.mjs') });
  }
  const unresolved: string[] = [];
  for (const file of jsFiles(uiRoot)) {
    const { text, bare } = rewriteImports(readFileSync(file, 'utf8'), file, uiRoot);
    writeFileSync(file, text);
    unresolved.push(...bare.map((b) => `${relative(uiRoot, file)}: "${b}"`));
  }
  if (unresolved.length > 0) {
    throw new Error(`The web UI imports modules a browser cannot resolve (add them to VENDOR in app/tools/build-ui.ts):\n${unresolved.join('\n')}`);
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  // dist/app/tools/build-ui.js → the project root is three levels up.
  buildUi(join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'));
}
