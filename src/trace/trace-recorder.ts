// Appends a session's VSC messages to a trace file (mode 0600), redacting PINs and key material
// unless told to keep them.
import { closeSync, fchmodSync, openSync, writeSync } from 'node:fs';
import type { VscMessage } from '../../vsc/codec.js';
import { VscMsgType } from '../../vsc/constants.js';
import { Redactor } from './redaction.js';
import { TRACE_VERSION, encodeTraceRecord, messageRecord, type TraceMessage } from './trace-format.js';

export interface TraceRecorderOptions {
  path: string;
  tool: string;
  target: string;
  card: string;
  /** Keep PINs and key material (--trace-secrets). */
  secrets?: boolean;
  now?: () => number;
}

export class TraceRecorder {
  private fd: number | undefined;
  private readonly start: number;
  private readonly now: () => number;
  private readonly secrets: boolean;
  private readonly redactors = new Map<number, Redactor>();

  constructor(options: TraceRecorderOptions) {
    this.now = options.now ?? Date.now;
    this.start = this.now();
    this.secrets = options.secrets ?? false;
    this.fd = openSync(options.path, 'a', 0o600);
    fchmodSync(this.fd, 0o600);
    this.write(encodeTraceRecord({ kind: 'header', version: TRACE_VERSION, tool: options.tool, target: options.target, start: this.start, card: options.card, secrets: this.secrets }));
  }

  /** One VSC message: 'in' from the VM, 'out' to it. */
  record(dir: 'in' | 'out', message: VscMessage): void {
    if (this.fd === undefined) return;
    const record = messageRecord(dir, message, this.now() - this.start);
    this.write(encodeTraceRecord(this.secrets ? record : this.redact(record)));
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private redact(record: TraceMessage): TraceMessage {
    if (record.type !== VscMsgType.Apdu) return record;
    let redactor = this.redactors.get(record.readerId);
    if (redactor === undefined) {
      redactor = new Redactor();
      this.redactors.set(record.readerId, redactor);
    }
    const { bytes, redacted } = record.dir === 'in' ? redactor.command(record.payload) : redactor.response(record.payload);
    return { ...record, payload: bytes, redacted };
  }

  private write(bytes: Uint8Array): void {
    if (this.fd === undefined) return;
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(this.fd, bytes, off);
  }
}
