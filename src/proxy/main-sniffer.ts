// Reads the server→viewer main-channel stream just enough to learn the session: INIT's session id,
// the channel lists, and a migration switch. It never sees bytes it could change: the relay hands
// it a copy of what it already forwarded. Bytes may be split anywhere; big bodies (the 256 000-byte
// net-test PING, agent data) are skipped without being buffered.
import { MainMsg } from '../../spice/constants.js';
import { FrameError, FrameParser } from '../../spice/frame-parser.js';
import { decodeChannelsList, decodeMainInit, decodeSwitchHost, type ChannelId, type SwitchHost } from '../../spice/messages.js';

export type SniffEvent =
  | { kind: 'init'; sessionId: number }
  | { kind: 'channels'; channels: ChannelId[] }
  | { kind: 'switch-host'; target: SwitchHost }
  /** The stream could not be followed any further; the relay goes on, the sniffer stops. */
  | { kind: 'lost'; reason: string };

/** A list of every possible channel fits in 4 + 2·256·256 bytes; real ones are a dozen bytes. */
const MAX_KEPT_BODY = 4 + 2 * 65536;

export class MainStreamSniffer {
  private readonly parser: FrameParser;
  private lost = false;
  private bytes = 0;

  constructor(options: { miniHeader: boolean }) {
    this.parser = new FrameParser({
      miniHeader: options.miniHeader,
      retainBytes: (type, size) => {
        if (type === MainMsg.INIT) return 32;
        if (type === MainMsg.CHANNELS_LIST || type === MainMsg.MIGRATE_SWITCH_HOST) return Math.min(size, MAX_KEPT_BODY);
        return 0;
      },
    });
  }

  /** Server→viewer bytes seen so far. */
  get seen(): number {
    return this.bytes;
  }

  get following(): boolean {
    return !this.lost;
  }

  push(chunk: Uint8Array): SniffEvent[] {
    if (this.lost) return [];
    this.bytes += chunk.byteLength;
    let frames;
    try {
      frames = this.parser.push(chunk);
    } catch (e) {
      this.lost = true;
      return [{ kind: 'lost', reason: e instanceof FrameError ? e.message : String(e) }];
    }
    const events: SniffEvent[] = [];
    for (const frame of frames) {
      switch (frame.type) {
        case MainMsg.INIT: {
          const init = decodeMainInit(frame.body);
          if (init !== undefined) events.push({ kind: 'init', sessionId: init.sessionId });
          break;
        }
        case MainMsg.CHANNELS_LIST: {
          const channels = decodeChannelsList(frame.body);
          if (channels !== undefined) events.push({ kind: 'channels', channels });
          break;
        }
        case MainMsg.MIGRATE_SWITCH_HOST: {
          const target = decodeSwitchHost(frame.body);
          if (target !== undefined) events.push({ kind: 'switch-host', target });
          break;
        }
      }
    }
    return events;
  }
}
