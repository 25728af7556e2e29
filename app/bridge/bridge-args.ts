// The utility process's arguments from main: the app version and where soft cards are kept.
export interface BridgeArgs {
  version: string;
  cardDirectory?: string;
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
    }
  }
  return args;
}

export function bridgeArgs(args: BridgeArgs): string[] {
  return ['--version', args.version, ...(args.cardDirectory !== undefined ? ['--card-directory', args.cardDirectory] : [])];
}
