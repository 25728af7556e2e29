// Electron Forge: packages for Linux (deb, rpm, zip), Windows (Squirrel) and macOS (zip, DMG). Electron
// itself cannot be downloaded on the machines this was written on, so this file is type-checked
// (app/tsconfig.json) but `electron-forge make` has not been run here; see README "Desktop app".
import type { ForgeConfig } from '@electron-forge/shared-types';
import { MakerDeb } from '@electron-forge/maker-deb';
import { MakerDMG } from '@electron-forge/maker-dmg';
import { MakerRpm } from '@electron-forge/maker-rpm';
import { MakerSquirrel } from '@electron-forge/maker-squirrel';
import { MakerZIP } from '@electron-forge/maker-zip';
import { AutoUnpackNativesPlugin } from '@electron-forge/plugin-auto-unpack-natives';
import { FusesPlugin } from '@electron-forge/plugin-fuses';
import { FuseV1Options, FuseVersion } from '@electron/fuses';

/** What the app opens: virt-viewer's connection files and SPICE links (as virt-viewer's own .desktop claims them). */
export const VV_MIME_TYPE = 'application/x-virt-viewer';
export const URL_SCHEMES = ['spice', 'spice+tls'] as const;
const LINUX_MIME_TYPES = [VV_MIME_TYPE, ...URL_SCHEMES.map((s) => `x-scheme-handler/${s}`)];

const config: ForgeConfig = {
  packagerConfig: {
    name: 'spice-smartcard',
    executableName: 'spice-smartcard',
    appBundleId: 'org.spice-smartcard.app',
    appCategoryType: 'public.app-category.utilities',
    icon: 'app/assets/icon',
    // Native modules (pcsclite's .node) are unpacked next to the archive by AutoUnpackNativesPlugin.
    asar: true,
    extraResource: ['app/packaging/spice-smartcard-vv.xml'],
    // The app is dist/ plus runtime dependencies; sources, tests and caches stay out.
    ignore: [/^\/(app\/(main|preload|bridge|renderer|shared|tools)|src|spice|vsc|test|bench|docs|guest|contrib|test-output|\.cache|out)(\/|$)/, /\.ts$/, /\.map$/],
    protocols: [{ name: 'SPICE connection', schemes: [...URL_SCHEMES] }],
    extendInfo: {
      CFBundleDocumentTypes: [
        {
          CFBundleTypeName: 'Virt-viewer connection file',
          CFBundleTypeRole: 'Viewer',
          LSHandlerRank: 'Alternate',
          CFBundleTypeExtensions: ['vv'],
          LSItemContentTypes: ['org.virt-manager.virt-viewer.vv'],
        },
      ],
      UTImportedTypeDeclarations: [
        {
          UTTypeIdentifier: 'org.virt-manager.virt-viewer.vv',
          UTTypeDescription: 'Virt-viewer connection file',
          UTTypeConformsTo: ['public.data'],
          UTTypeTagSpecification: { 'public.filename-extension': ['vv'], 'public.mime-type': [VV_MIME_TYPE] },
        },
      ],
    },
  },
  rebuildConfig: {
    // pcsclite is a NAN module: rebuilt against Electron's headers when packaging.
    onlyModules: ['pcsclite'],
  },
  makers: [
    new MakerDeb(
      {
        options: {
          name: 'spice-smartcard',
          productName: 'spice-smartcard',
          genericName: 'Smartcard for SPICE VMs',
          description: 'Put a smartcard into a virtual machine over SPICE.',
          categories: ['Network', 'Utility'],
          mimeType: LINUX_MIME_TYPES,
          icon: 'app/assets/icon.png',
          depends: ['libpcsclite1'],
          recommends: ['pcscd', 'virt-viewer'],
          scripts: { postinst: 'app/packaging/deb-postinst.sh' },
        },
      },
      ['linux'],
    ),
    new MakerRpm(
      {
        options: {
          name: 'spice-smartcard',
          productName: 'spice-smartcard',
          genericName: 'Smartcard for SPICE VMs',
          description: 'Put a smartcard into a virtual machine over SPICE.',
          license: 'MIT',
          categories: ['Network', 'Utility'],
          mimeType: LINUX_MIME_TYPES,
          icon: 'app/assets/icon.png',
          requires: ['pcsc-lite-libs'],
        },
      },
      ['linux'],
    ),
    new MakerZIP({}, ['linux', 'darwin', 'win32']),
    // Squirrel has no file-association settings: the app registers its URL schemes and .vv itself on
    // --squirrel-install (app/main/squirrel.ts).
    new MakerSquirrel({ name: 'spice_smartcard', setupIcon: 'app/assets/icon.ico' }, ['win32']),
    new MakerDMG({ format: 'ULFO', icon: 'app/assets/icon.icns' }, ['darwin']),
  ],
  plugins: [
    new AutoUnpackNativesPlugin({}),
    new FusesPlugin({
      version: FuseVersion.V1,
      strictlyRequireAllFuses: true,
      [FuseV1Options.RunAsNode]: false,
      [FuseV1Options.EnableCookieEncryption]: true,
      [FuseV1Options.EnableNodeOptionsEnvironmentVariable]: false,
      [FuseV1Options.EnableNodeCliInspectArguments]: false,
      [FuseV1Options.EnableEmbeddedAsarIntegrityValidation]: true,
      [FuseV1Options.OnlyLoadAppFromAsar]: true,
      [FuseV1Options.LoadBrowserProcessSpecificV8Snapshot]: false,
      [FuseV1Options.GrantFileProtocolExtraPrivileges]: false,
    }),
  ],
};

export default config;
