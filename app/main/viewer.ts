// Starts remote-viewer on a proxy session's loopback address: the display is the viewer's, the card
// joins its session through the proxy. Never through a shell; only a loopback spice:// address.
import { spawn } from 'node:child_process';
import { findExecutable } from '../../src/proxy/viewer-command.js';

export const VIEWER = 'remote-viewer';

/** The proxy's address must be a plain spice:// URI on loopback (it is the bridge's own listener). */
export function viewerUriProblem(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'The session reported no usable viewer address.';
  }
  if (url.protocol !== 'spice:') return 'The session reported no usable viewer address.';
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return 'The viewer address is not on this machine; open it in your viewer by hand.';
  return undefined;
}

/** Resolves to an error message, or undefined once the viewer was started. */
export function launchViewer(uri: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const problem = viewerUriProblem(uri);
  if (problem !== undefined) return Promise.resolve(problem);
  const executable = findExecutable(VIEWER, env['PATH'] ?? '');
  if (executable === undefined) {
    return Promise.resolve(
      `No SPICE viewer found: ${VIEWER} is not installed. Install virt-viewer (Debian/Ubuntu: apt-get install virt-viewer; Fedora: dnf install virt-viewer), or connect in standalone mode.`,
    );
  }
  return new Promise((resolve) => {
    const child = spawn(executable, [uri], { detached: true, stdio: 'ignore', env });
    child.once('error', (error) => resolve(`Could not start ${VIEWER}: ${error.message}`));
    child.once('spawn', () => {
      child.unref();
      resolve(undefined);
    });
  });
}
