// What every linked SPICE channel does with the base messages, without I/O: answers PINGs, keeps
// the ACK window, surfaces NOTIFY and DISCONNECTING, and hands channel messages (ids >= 101) up.
import { BaseMsg, BaseMsgc } from './constants.js';
import { FrameParser, encodeFrame, type FrameParserOptions } from './frame-parser.js';
import { decodeDisconnecting, decodeNotify, decodePing, decodeSetAck, encodeAckSync, encodePong, type Notify } from './messages.js';

export type ChannelEvent =
  | { kind: 'message'; type: number; body: Uint8Array }
  | { kind: 'notify'; notify: Notify }
  | { kind: 'disconnecting'; reason: number }
  | { kind: 'ignored'; type: number; size: number; why: string };

export interface ChannelCoreOptions {
  miniHeader: boolean;
  /** Where encoded outbound bytes go (the socket, in production; an array, in tests). */
  send: (bytes: Uint8Array) => void;
  maxMessageSize?: number;
}

export class ChannelCore {
  private readonly parser: FrameParser;
  private readonly miniHeader: boolean;
  private readonly sink: (bytes: Uint8Array) => void;
  private serial = 0n;
  private ackWindow = 0;
  private ackRemaining = 0;
  private pings = 0;

  constructor(options: ChannelCoreOptions) {
    this.miniHeader = options.miniHeader;
    this.sink = options.send;
    const parserOptions: FrameParserOptions = {
      miniHeader: options.miniHeader,
      retainBytes: (type, size) => (type === BaseMsg.PING ? 12 : type === BaseMsg.MIGRATE_DATA ? 0 : size),
    };
    if (options.maxMessageSize !== undefined) parserOptions.maxMessageSize = options.maxMessageSize;
    this.parser = new FrameParser(parserOptions);
  }

  get pingsAnswered(): number {
    return this.pings;
  }

  get atMessageBoundary(): boolean {
    return this.parser.atBoundary;
  }

  /** Sends one message on this channel. */
  send(type: number, body: Uint8Array = new Uint8Array(0)): void {
    this.sink(this.encode(type, body));
  }

  encode(type: number, body: Uint8Array): Uint8Array {
    if (this.miniHeader) return encodeFrame(type, body, { miniHeader: true });
    this.serial += 1n;
    return encodeFrame(type, body, { miniHeader: false, serial: this.serial });
  }

  /** Feeds received bytes. Throws FrameError when the stream is broken beyond repair. */
  receive(chunk: Uint8Array): ChannelEvent[] {
    const events: ChannelEvent[] = [];
    for (const frame of this.parser.push(chunk)) {
      if (frame.type !== BaseMsg.SET_ACK) this.countForAck();
      switch (frame.type) {
        case BaseMsg.PING: {
          const ping = decodePing(frame.body);
          if (ping === undefined) {
            events.push({ kind: 'ignored', type: frame.type, size: frame.size, why: 'PING shorter than 12 bytes' });
            break;
          }
          this.pings++;
          this.send(BaseMsgc.PONG, encodePong(ping));
          break;
        }
        case BaseMsg.SET_ACK: {
          const ack = decodeSetAck(frame.body);
          if (ack === undefined) {
            events.push({ kind: 'ignored', type: frame.type, size: frame.size, why: 'SET_ACK shorter than 8 bytes' });
            break;
          }
          this.ackWindow = ack.window;
          this.ackRemaining = ack.window;
          this.send(BaseMsgc.ACK_SYNC, encodeAckSync(ack.generation));
          break;
        }
        case BaseMsg.NOTIFY: {
          const notify = decodeNotify(frame.body);
          if (notify === undefined) events.push({ kind: 'ignored', type: frame.type, size: frame.size, why: 'NOTIFY too short' });
          else events.push({ kind: 'notify', notify });
          break;
        }
        case BaseMsg.DISCONNECTING: {
          const d = decodeDisconnecting(frame.body);
          events.push({ kind: 'disconnecting', reason: d?.reason ?? 0 });
          break;
        }
        case BaseMsg.MIGRATE:
        case BaseMsg.MIGRATE_DATA:
          events.push({ kind: 'ignored', type: frame.type, size: frame.size, why: 'migration is not supported (we never advertise it)' });
          break;
        case BaseMsg.WAIT_FOR_CHANNELS:
        case BaseMsg.LIST:
          events.push({ kind: 'ignored', type: frame.type, size: frame.size, why: 'only used by display channels' });
          break;
        default:
          if (frame.type >= 100) events.push({ kind: 'message', type: frame.type, body: frame.body });
          else events.push({ kind: 'ignored', type: frame.type, size: frame.size, why: 'unknown base message' });
      }
    }
    return events;
  }

  private countForAck(): void {
    if (this.ackWindow === 0) return;
    this.ackRemaining -= 1;
    if (this.ackRemaining <= 0) {
      this.send(BaseMsgc.ACK);
      this.ackRemaining = this.ackWindow;
    }
  }
}
