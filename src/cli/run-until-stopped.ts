// Long-running commands run until SIGINT/SIGTERM (then stop cleanly, within a bound) or until
// what they serve goes away (then report why). A second signal forces the exit.
export type StopReason = { kind: 'signal'; signal: NodeJS.Signals } | { kind: 'ended'; error: unknown };

export function untilSignalOr(ended: Promise<unknown>): Promise<StopReason> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write('Second signal: exiting without cleaning up.\n');
        process.exit(130);
      }
      stopping = true;
      resolve({ kind: 'signal', signal });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    ended.then(
      (value) => resolve({ kind: 'ended', error: value }),
      (error: unknown) => resolve({ kind: 'ended', error }),
    );
  });
}
