// Packaging and the pieces around the window: forge.config.ts (makers per platform, .vv type and
// spice schemes, native modules unpacked, fuses), the web UI build step, the preload's narrow API,
// Squirrel events, .vv reading and the viewer launcher's address check.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FuseV1Options } from '@electron/fuses';


const { default: forgeConfig, VV_MIME_TYPE } = await import('../../forge.config.js');
const { rewriteImports } = await import('../../app/tools/build-ui.js');
const { DESKTOP_API_KEY } = await import('../../app/shared/desktop-api.js');
const { IPC } = await import('../../app/shared/ipc.js');
const { handleSquirrelEvent, VV_PROG_ID } = await import('../../app/main/squirrel.js');
const { asksToBeDeleted, readVv, VvReadError } = await import('../../app/main/open-targets.js');
const { viewerUriProblem } = await import('../../app/main/viewer.js');
const { uiDirectory } = await import('../../src/control/ui-files.js');

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface MakerLike {
  name: string;
  platforms: string[] | null;
  configOrConfigFetcher: { options?: { mimeType?: string[] } };
}

describe('forge.config.ts', () => {
  const makers = (forgeConfig.makers ?? []) as unknown as MakerLike[];
  const byName = (name: string): MakerLike | undefined => makers.find((m) => m.name === name);

  it('has deb, rpm and zip for Linux, Squirrel for Windows, DMG and zip for macOS', () => {
    expect(byName('deb')?.platforms).toEqual(['linux']);
    expect(byName('rpm')?.platforms).toEqual(['linux']);
    expect(byName('zip')?.platforms).toEqual(['linux', 'darwin', 'win32']);
    expect(byName('squirrel')?.platforms).toEqual(['win32']);
    expect(byName('dmg')?.platforms).toEqual(['darwin']);
  });

  it('registers the .vv type and the spice schemes on every platform that has a place for them', () => {
    for (const name of ['deb', 'rpm']) {
      expect(byName(name)?.configOrConfigFetcher.options?.mimeType).toEqual([VV_MIME_TYPE, 'x-scheme-handler/spice', 'x-scheme-handler/spice+tls']);
    }
    expect(VV_MIME_TYPE).toBe('application/x-virt-viewer');
    const packager = forgeConfig.packagerConfig ?? {};
    expect(packager.protocols).toEqual([{ name: 'SPICE connection', schemes: ['spice', 'spice+tls'] }]);
    expect(JSON.stringify(packager.extendInfo)).toContain('"CFBundleTypeExtensions":["vv"]');
  });

  it('packs an asar with native modules unpacked and the fuses hardened', () => {
    expect(forgeConfig.packagerConfig?.asar).toBe(true);
    const plugins = (forgeConfig.plugins ?? []) as unknown as Array<{ name: string; fusesConfig?: Record<number, boolean> }>;
    expect(plugins.map((p) => p.name)).toEqual(expect.arrayContaining(['auto-unpack-natives', 'fuses']));
    const fuses = plugins.find((p) => p.name === 'fuses')?.fusesConfig ?? {};
    expect(fuses[FuseV1Options.RunAsNode]).toBe(false);
    expect(fuses[FuseV1Options.EnableNodeOptionsEnvironmentVariable]).toBe(false);
    expect(fuses[FuseV1Options.EnableNodeCliInspectArguments]).toBe(false);
    expect(fuses[FuseV1Options.EnableCookieEncryption]).toBe(true);
    expect(fuses[FuseV1Options.EnableEmbeddedAsarIntegrityValidation]).toBe(true);
    expect(fuses[FuseV1Options.OnlyLoadAppFromAsar]).toBe(true);
  });

  it('points at icons and packaging files that exist', () => {
    for (const file of ['app/assets/icon.png', 'app/assets/icon.ico', 'app/assets/icon.icns', 'app/packaging/spice-smartcard-vv.xml', 'app/packaging/deb-postinst.sh']) {
      expect(existsSync(join(ROOT, file)), file).toBe(true);
    }
  });
});

describe('uiMounts', () => {
  it('finds dist/ui from src/control, dist/src/control or an asar root, and nothing where there is none', async () => {
    const root = await mkdtemp(join(tmpdir(), 'app-ui-files-'));
    try {
      for (const d of [join(root, 'dist', 'ui'), join(root, 'dist', 'src', 'control'), join(root, 'src', 'control')]) await mkdir(d, { recursive: true });
      expect(uiDirectory(join(root, 'src', 'control'))).toBeUndefined();
      await writeFile(join(root, 'dist', 'ui', 'index.html'), '<!doctype html>');
      expect(uiDirectory(join(root, 'src', 'control'))).toBe(join(root, 'dist', 'ui'));
      expect(uiDirectory(join(root, 'dist', 'src', 'control'))).toBe(join(root, 'dist', 'ui'));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('web UI build step', () => {
  it('points the bare msgpack import at the vendored copy, relative to each module', () => {
    const root = '/p/dist/ui';
    const out = rewriteImports("import { decode, encode } from '@msgpack/msgpack';\nimport { x } from './schema.js';\n", '/p/dist/ui/src/control/client.js', root);
    expect(out.text).toBe("import { decode, encode } from '../../vendor/msgpack/index.mjs';\nimport { x } from './schema.js';\n");
    expect(out.bare).toEqual([]);
  });

  it('reports any other bare import instead of shipping a page that cannot load', () => {
    const out = rewriteImports('import fs from "node:fs";\nexport { a } from "left-pad";\nconst s = "softcard.import";\nfoo.import("x");\n', '/p/dist/ui/app/renderer/a.js', '/p/dist/ui');
    expect(out.bare).toEqual(['node:fs', 'left-pad']);
  });
});

describe('preload', () => {
  it('exposes only its four functions under the agreed key and channels', async () => {
    // Run it as Electron runs a sandboxed preload: CommonJS with a require that knows only 'electron'.
    const exposed = { key: '', api: undefined as unknown, invoked: [] as unknown[][] };
    const electron = {
      contextBridge: {
        exposeInMainWorld: (key: string, api: unknown) => {
          exposed.key = key;
          exposed.api = api;
        },
      },
      ipcRenderer: {
        invoke: (...args: unknown[]) => {
          exposed.invoked.push(args);
          return Promise.resolve(undefined);
        },
      },
    };
    const source = readFileSync(join(ROOT, 'app', 'preload', 'preload.cts'), 'utf8');
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
    const sandboxRequire = (name: string): unknown => {
      if (name !== 'electron') throw new Error(`a sandboxed preload cannot require ${name}`);
      return electron;
    };
    const module = { exports: {} };
    new Function('require', 'module', 'exports', outputText)(sandboxRequire, module, module.exports);
    expect(exposed.key).toBe(DESKTOP_API_KEY);
    const api = exposed.api as Record<string, unknown>;
    expect(Object.keys(api).sort()).toEqual(['getOpenDefaults', 'kind', 'launchViewer', 'pickVvFile', 'setOpenDefaults']);
    await (api['pickVvFile'] as () => Promise<unknown>)();
    await (api['launchViewer'] as (name: unknown) => Promise<unknown>)({ toString: () => 'vm1' });
    await (api['getOpenDefaults'] as () => Promise<unknown>)();
    const defaults = { mode: 'connect', card: { kind: 'demo' } };
    await (api['setOpenDefaults'] as (d: unknown) => Promise<unknown>)(defaults);
    expect(exposed.invoked).toEqual([[IPC.pickVv], [IPC.launchViewer, 'vm1'], [IPC.getOpenDefaults], [IPC.setOpenDefaults, defaults]]);
  });
});

describe('Squirrel events', () => {
  const EXE = 'C:\\Users\\Ann Lee\\AppData\\Local\\spice_smartcard\\app-1.0.0\\spice-smartcard.exe';
  const CLASSES = 'HKCU\\Software\\Classes';
  /** Records Electron's scheme calls and every reg.exe command, in order; `query` answers what reg.exe would print. */
  const fakeApp = (query: { code: number; stdout: string } = { code: 1, stdout: '' }) => {
    const calls: string[] = [];
    const reg: string[][] = [];
    let quit!: () => void;
    const quitted = new Promise<void>((resolve) => (quit = resolve));
    return {
      calls,
      reg,
      quitted,
      app: {
        setAsDefaultProtocolClient: (s: string) => (calls.push(`set ${s}`), true),
        removeAsDefaultProtocolClient: (s: string) => (calls.push(`remove ${s}`), true),
        quit: () => {
          calls.push('quit');
          quit();
        },
      },
      deps: {
        exePath: EXE,
        reg: (args: readonly string[]) => {
          reg.push([...args]);
          calls.push(`reg ${args[0]}`);
          return Promise.resolve(args[0] === 'query' ? query : { code: 0, stdout: '' });
        },
      },
    };
  };

  const REGISTER = [
    ['add', `${CLASSES}\\spice-smartcard.vv`, '/ve', '/d', 'SPICE connection file', '/f'],
    ['add', `${CLASSES}\\spice-smartcard.vv\\DefaultIcon`, '/ve', '/d', `"${EXE}",0`, '/f'],
    ['add', `${CLASSES}\\spice-smartcard.vv\\shell\\open\\command`, '/ve', '/d', `"${EXE}" "%1"`, '/f'],
    ['add', `${CLASSES}\\.vv`, '/ve', '/d', 'spice-smartcard.vv', '/f'],
    ['add', `${CLASSES}\\.vv`, '/v', 'Content Type', '/d', 'application/x-virt-viewer', '/f'],
    ['add', `${CLASSES}\\.vv\\OpenWithProgids`, '/v', 'spice-smartcard.vv', '/t', 'REG_NONE', '/f'],
  ];

  it('registers the schemes and the .vv type under HKCU on install and update, then exits', async () => {
    expect(VV_PROG_ID).toBe('spice-smartcard.vv');
    for (const event of ['--squirrel-install', '--squirrel-updated']) {
      const a = fakeApp();
      expect(handleSquirrelEvent(['app.exe', event, '1.0.0'], 'win32', a.app, a.deps)).toBe(true);
      await a.quitted;
      expect(a.reg).toEqual(REGISTER);
      expect(a.calls).toEqual(['set spice', 'set spice+tls', ...REGISTER.map(() => 'reg add'), 'quit']);
    }
  });

  it('removes the schemes, the ProgID and its OpenWithProgids entry on uninstall; the type default only while it is ours', async () => {
    const ours = fakeApp({ code: 0, stdout: `\r\n${CLASSES.replace('HKCU', 'HKEY_CURRENT_USER')}\\.vv\r\n    (Default)    REG_SZ    spice-smartcard.vv\r\n\r\n` });
    expect(handleSquirrelEvent(['app.exe', '--squirrel-uninstall', '1.0.0'], 'win32', ours.app, ours.deps)).toBe(true);
    await ours.quitted;
    const removal = [
      ['delete', `${CLASSES}\\spice-smartcard.vv`, '/f'],
      ['delete', `${CLASSES}\\.vv\\OpenWithProgids`, '/v', 'spice-smartcard.vv', '/f'],
      ['query', `${CLASSES}\\.vv`, '/ve'],
    ];
    expect(ours.reg).toEqual([...removal, ['delete', `${CLASSES}\\.vv`, '/ve', '/f']]);
    expect(ours.calls.slice(0, 2)).toEqual(['remove spice', 'remove spice+tls']);
    expect(ours.calls.at(-1)).toBe('quit');

    // virt-viewer took .vv since: its default stays.
    const theirs = fakeApp({ code: 0, stdout: '\r\nHKEY_CURRENT_USER\\Software\\Classes\\.vv\r\n    (Default)    REG_SZ    VirtViewer.vv\r\n' });
    handleSquirrelEvent(['app.exe', '--squirrel-uninstall'], 'win32', theirs.app, theirs.deps);
    await theirs.quitted;
    expect(theirs.reg).toEqual(removal);
  });

  it('still exits when reg.exe fails', async () => {
    const a = fakeApp();
    a.deps.reg = () => Promise.reject(new Error('reg.exe not found'));
    expect(handleSquirrelEvent(['app.exe', '--squirrel-install'], 'win32', a.app, a.deps)).toBe(true);
    await a.quitted;
    expect(a.calls).toEqual(['set spice', 'set spice+tls', 'quit']);
  });

  it('is not a Squirrel event elsewhere, or on first run', () => {
    for (const [argv, platform] of [
      [['app', '--squirrel-install'], 'linux'],
      [['app.exe', '--squirrel-firstrun'], 'win32'],
      [['app.exe', 'a.vv'], 'win32'],
    ] as const) {
      const a = fakeApp();
      expect(handleSquirrelEvent(argv, platform, a.app, a.deps)).toBe(false);
      expect(a.calls).toEqual([]);
    }
  });
});

describe('.vv files from the OS', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'app-vv-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds delete-this-file only in the [virt-viewer] group', () => {
    expect(asksToBeDeleted('[virt-viewer]\ntype=spice\ndelete-this-file=1\n')).toBe(true);
    expect(asksToBeDeleted('[virt-viewer]\r\ndelete-this-file = true\r\n')).toBe(true);
    expect(asksToBeDeleted('[virt-viewer]\ndelete-this-file=0\n')).toBe(false);
    expect(asksToBeDeleted('[ovirt]\ndelete-this-file=1\n')).toBe(false);
    expect(asksToBeDeleted('delete-this-file=1\n')).toBe(false);
  });

  it('keeps a file that does not ask to be deleted', async () => {
    const path = join(dir, 'keep.vv');
    await writeFile(path, '[virt-viewer]\ntype=spice\nhost=h\nport=1\n');
    expect(await readVv(path)).toEqual({ content: '[virt-viewer]\ntype=spice\nhost=h\nport=1\n', deleted: false });
    expect(existsSync(path)).toBe(true);
  });

  it('refuses a missing file, a directory, a FIFO (without hanging) and an oversized file', async () => {
    await expect(readVv(join(dir, 'gone.vv'))).rejects.toThrow(/no such file/);
    await expect(readVv(dir)).rejects.toBeInstanceOf(VvReadError);
    const fifo = join(dir, 'fifo.vv');
    execFileSync('mkfifo', [fifo]);
    await expect(readVv(fifo)).rejects.toThrow(/not a regular file/);
    const big = join(dir, 'big.vv');
    await writeFile(big, Buffer.alloc(1024 * 1024 + 1, 0x61));
    await expect(readVv(big)).rejects.toThrow(/too large/);
  });
});

describe('viewer launcher', () => {
  it('only starts the viewer on a loopback spice:// address', () => {
    expect(viewerUriProblem('spice://127.0.0.1:5930')).toBeUndefined();
    expect(viewerUriProblem('spice://localhost:5930')).toBeUndefined();
    expect(viewerUriProblem('spice://10.0.0.5:5930')).toMatch(/not on this machine/);
    expect(viewerUriProblem('--spice-debug')).toMatch(/no usable/);
    expect(viewerUriProblem('file:///bin/sh')).toMatch(/no usable/);
  });
});
