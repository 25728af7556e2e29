// The ISO 7816-4 front end of an emulated card: raw command bytes in, raw response bytes out.
// It does everything that is not the application's business (length parsing, class byte,
// command chaining, 61 XX / GET RESPONSE) so an applet only ever sees complete commands and
// returns whole answers. No I/O of its own; the applet may be asynchronous.

import { decodeClass, parseCommandApdu, type CommandApdu } from './apdu.js';
import { CommandChainAssembler, DEFAULT_MAX_CHAIN_BYTES } from './chaining.js';
import { GET_RESPONSE_INS, ResponseChainer, defaultChunkPolicy, type ResponseChunkPolicy } from './response-chaining.js';
import { SW, responseApdu, type StatusWord } from './status-words.js';

/** What an applet answers: response data (possibly long) and a status word. */
export interface AppletResponse {
  readonly sw: StatusWord;
  readonly data?: Uint8Array;
}

/** An application behind the front end. It gets complete, unchained, basic-channel commands. */
export interface ApduHandler {
  handle(command: CommandApdu): Promise<AppletResponse>;
  /**
   * The answer when the command needs no I/O (no PIN check, no key operation), else undefined and
   * the caller awaits `handle`. Lets the guest's reads be answered without a promise hop.
   */
  handleNow?(command: CommandApdu): AppletResponse | undefined;
}

export interface CommandProcessorOptions {
  /** Defaults to the CCID-safe policy every card of the bridge uses (docs/qemu-xhci.md). */
  readonly chunkPolicy?: ResponseChunkPolicy;
  readonly maxChainBytes?: number;
}

export function statusOnly(sw: StatusWord): AppletResponse {
  return { sw };
}

export class IsoCommandProcessor {
  readonly #handler: ApduHandler;
  readonly #chain: CommandChainAssembler;
  readonly #responses: ResponseChainer;

  constructor(handler: ApduHandler, options: CommandProcessorOptions = {}) {
    this.#handler = handler;
    this.#chain = new CommandChainAssembler(options.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES);
    this.#responses = new ResponseChainer(options.chunkPolicy ?? defaultChunkPolicy);
  }

  /** Forgets a half-received chain and any unread response (card reset or re-insertion). */
  reset(): void {
    this.#chain.reset();
    this.#responses.discard();
  }

  /**
   * Processes one command APDU. Always resolves with at least SW1 SW2 and never more than
   * 256 data bytes; an applet that throws is answered with 6F00.
   */
  async process(raw: Uint8Array): Promise<Uint8Array> {
    return this.answer(raw);
  }

  /**
   * The same as `process`, but the answer comes back at once (not as a promise) when the applet
   * needs no I/O for it: GET RESPONSE, SELECT, GET DATA and every refusal.
   */
  answer(raw: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const parsed = parseCommandApdu(raw);
    if (!parsed.ok) return this.#abandon(parsed.sw);
    const command = parsed.apdu;
    const cls = decodeClass(command.cla);
    // PIV and every ISO application we emulate use interindustry classes only.
    if (cls.kind !== 'interindustry') return this.#abandon(SW.CLA_NOT_SUPPORTED);
    if (cls.secureMessaging) return this.#abandon(SW.SECURE_MESSAGING_NOT_SUPPORTED);
    if (cls.channel !== 0) return this.#abandon(SW.CHANNEL_NOT_SUPPORTED);

    if (command.ins === GET_RESPONSE_INS && !cls.chained) {
      this.#chain.reset();
      return this.#responses.getResponse(command);
    }
    this.#responses.discard();
    const step = this.#chain.accept(command, cls.chained);
    if (step.kind === 'error') return responseApdu(step.sw);
    if (step.kind === 'continue') return responseApdu(SW.OK);

    let now: AppletResponse | undefined;
    try {
      now = this.#handler.handleNow?.(step.apdu);
    } catch {
      now = statusOnly(SW.UNKNOWN_ERROR);
    }
    if (now !== undefined) return this.#responses.respond(now.data ?? new Uint8Array(0), now.sw, step.apdu.ne);
    return this.#handleLater(step.apdu);
  }

  async #handleLater(command: CommandApdu): Promise<Uint8Array> {
    let answer: AppletResponse;
    try {
      answer = await this.#handler.handle(command);
    } catch {
      // An applet bug must not take the guest's reader down: report "no precise diagnosis".
      answer = statusOnly(SW.UNKNOWN_ERROR);
    }
    return this.#responses.respond(answer.data ?? new Uint8Array(0), answer.sw, command.ne);
  }

  #abandon(sw: StatusWord): Uint8Array {
    this.reset();
    return responseApdu(sw);
  }
}
