// What the preload script adds to the page in the desktop app: only what a browser cannot do. The
// page talks to the bridge over the control API like any browser client; this is the rest.
import type { CardSourceSpec } from '../../src/control/schema.js';

/** How the app opens a .vv file or spice link handed over by the OS (a user setting kept by main). */
export interface OpenDefaults {
  mode: 'proxy' | 'connect';
  /** demo, soft, reader or none: what a replay needs (a trace file) is not a default for any VM. */
  card: CardSourceSpec;
}

/** A .vv file the user picked in the native dialog; its content goes to `session.add` as `vv`. */
export interface PickedVvFile {
  fileName: string;
  content: string;
  /** The file asked for delete-this-file=1 and was removed after reading. */
  deleted: boolean;
}

export interface DesktopApi {
  readonly kind: 'electron';
  /** Native open dialog for a .vv file; undefined when the user cancels. */
  pickVvFile(): Promise<PickedVvFile | undefined>;
  /** Starts the SPICE viewer on a proxy session's loopback address; resolves to an error message or undefined. */
  launchViewer(sessionName: string): Promise<string | undefined>;
  /** The saved "open with" defaults for files and links from the OS. */
  getOpenDefaults(): Promise<OpenDefaults | undefined>;
  /** Saves them; resolves to an error message or undefined. */
  setOpenDefaults(defaults: OpenDefaults): Promise<string | undefined>;
}

/** The name under which the preload exposes the API on `window`. */
export const DESKTOP_API_KEY = 'spiceSmartcardDesktop';
