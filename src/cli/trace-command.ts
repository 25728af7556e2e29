// `spice-smartcard trace show FILE [--json]`: a recorded APDU trace, decoded.
import { readFileSync } from 'node:fs';
import { TraceFormatError, decodeTrace } from '../trace/trace-format.js';
import { describeRecord, formatHeader, formatRecord } from '../trace/trace-show.js';
import { parseCommandArgs } from './options.js';
import { ExitCode, UsageError, type ExitCodeNumber } from './exit-codes.js';

const TRACE_HELP = `Usage: spice-smartcard trace show FILE [--json]

Prints a trace recorded with "connect --trace FILE" or "passthru --trace FILE": one line per VSC
message with its time offset, direction, type, and for APDUs the command name, the status word's
meaning and the TLV tags of the data. Redacted PINs and key material are marked [REDACTED].
  --json   one JSON object per line: the header, then one per message`;

const OPTIONS = {
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export function runTrace(args: string[], out: (text: string) => void = (t) => process.stdout.write(t)): Promise<ExitCodeNumber> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    out(`${TRACE_HELP}\n`);
    return Promise.resolve(ExitCode.OK);
  }
  const [sub, file, ...extra] = positionals;
  if (sub !== 'show' || file === undefined || extra.length > 0) throw new UsageError('Usage: spice-smartcard trace show FILE [--json]');
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new UsageError(`Cannot read the trace ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let trace: ReturnType<typeof decodeTrace>;
  try {
    trace = decodeTrace(bytes);
  } catch (e) {
    if (e instanceof TraceFormatError) throw new UsageError(`${file} is not a usable trace: ${e.message}`);
    throw e;
  }
  if (values.json) {
    out(`${JSON.stringify({ record: 'header', ...trace.header })}\n`);
    for (const m of trace.messages) out(`${JSON.stringify({ record: 'message', ...describeRecord(m) })}\n`);
  } else {
    out(`${formatHeader(trace.header)}\n`);
    for (const m of trace.messages) out(`${formatRecord(describeRecord(m))}\n`);
  }
  return Promise.resolve(ExitCode.OK);
}
