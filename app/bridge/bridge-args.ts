// The utility process's arguments from main: the app version, where soft cards are kept, and the
// control port the bridge listened on last time (the page's origin, hence where its localStorage is).
export interface BridgeArgs {
  version: string;
  cardDirectory?: string;
  /** Tried first; a free port when it is taken. */
  port?: number;
}

/**
 * A port the app may ask for again: one a loopback listener got from the OS. Privileged ports are
 * never handed out for port 0, so one below 1024 did not come from us.
 */
export function isPreferredPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1024 && value <= 65535;
}

export function parseBridgeArgs(argv: readonly string[]): BridgeArgs {
  const args: BridgeArgs = { version: 'unknown' };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--version' && value !== undefined) {
      args.version = value;
      i++;
    } else if (argv[i] === '--card-directory' && value !== undefined) {
      args.cardDirectory = value;
      i++;
    } else if (argv[i] === '--port' && value !== undefined) {
      // Only a hint: anything but a plain decimal port is dropped and a free port is used.
      const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
      if (isPreferredPort(port)) args.port = port;
      i++;
    }
  }
  return args;
}

export function bridgeArgs(args: BridgeArgs): string[] {
  return [
    '--version',
    args.version,
    ...(args.cardDirectory !== undefined ? ['--card-directory', args.cardDirectory] : []),
    ...(args.port !== undefined ? ['--port', String(args.port)] : []),
  ];
}
